// Metric sinks: where the trainer's numbers go. One interface (MetricsSink), one fan-out (MetricsHub),
// sinks chosen by name from the recipe (`report_to = ["jsonl", "tensorboard"]`).
//
// The trainer calls, once per optimizer step and once per evaluation:
//
//   auto hub = cotune::track::MetricsHub::open({"jsonl", "tensorboard"}, output_dir);
//   hub.log(step, {{"epoch", 0.25}, {"loss", 1.93}, {"lr", 2e-4}, {"grad_norm", 0.61},
//                  {"tokens", 1830}, {"mean_token_accuracy", 0.58}, {"tokens_per_s", 912},
//                  {"elapsed_s", 41.2}});
//   hub.log(step, {{"eval_loss", 1.88}, {"eval_mean_token_accuracy", 0.6}});   // a separate record
//   hub.log_text(step, "sample/after", "<think>...</think> ...");              // optional
//   ...
//   hub.close();                       // also done by the destructor
//   hub.history().series("loss");      // everything logged, for the end-of-run report
//
// Key conventions (issue 5 item 5): `loss`, `lr` (the rate applied in that step), `grad_norm` (before
// clipping), `tokens` (counted predictions), `mean_token_accuracy`, `tokens_per_s`, `elapsed_s`, `epoch`;
// evaluation keys start with `eval_`. Sinks write whatever keys they are given; none is required.
//
// Not thread-safe: call it from the training loop's thread.
// Every sink flushes each record as it is written, so a run that is killed loses nothing already logged.
// Errors (a directory that cannot be created, a full disk) throw cotune::Error naming the file.
#pragma once
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cotune::track {

// Scalars of one record, by name. A map (sorted) because sinks must not depend on the caller's order;
// the JSONL sink puts the well-known keys first for readability.
using Scalars = std::map<std::string, double, std::less<>>;

// A small table of text (e.g. the before/after answers): column names and rows of cells.
struct Table {
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
};

class MetricsSink {
 public:
  virtual ~MetricsSink() = default;
  // One record: `scalars` at optimizer step `step` (steps count from 1, as transformers does).
  virtual void log(int64_t step, const Scalars& scalars) = 0;
  // A piece of text (e.g. a sampled answer) under `tag`. Sinks that cannot show text ignore it.
  virtual void log_text(int64_t /*step*/, std::string_view /*tag*/, std::string_view /*text*/) {}
  // A table under `key` (W&B shows it as a table). Sinks that cannot show tables ignore it.
  virtual void log_table(int64_t /*step*/, std::string_view /*key*/, const Table& /*table*/) {}
  // End-of-run figures (e.g. train_runtime) that belong in a run summary rather than in the step history.
  virtual void log_summary(const Scalars& /*scalars*/) {}
  // How the run ended (0: completed; 130: stopped by Ctrl-C), for sinks that record it. Before close().
  virtual void set_exit_code(int /*code*/) {}
  virtual void flush() {}
  // Ends the sink; later calls to log() are errors. Calling close() twice is fine.
  virtual void close() {}
  virtual std::string_view name() const = 0;
};

// Everything logged, kept in memory for the end-of-run report (a few MB for 100k steps).
class History {
 public:
  struct Point {
    int64_t step;
    double value;
  };
  void add(int64_t step, const Scalars& scalars);
  // The points of one key in the order they were logged; empty when the key was never logged.
  const std::vector<Point>& series(std::string_view key) const;
  bool has(std::string_view key) const { return !series(key).empty(); }
  std::vector<std::string> keys() const;
  // The last value of `key`, if any.
  std::optional<double> last(std::string_view key) const;

 private:
  std::map<std::string, std::vector<Point>, std::less<>> series_;
};

// Sink names the factory knows, in the order they are documented.
std::vector<std::string> known_sink_names();
// Makes one sink by name: "jsonl" (OUTPUT/metrics.jsonl), "tensorboard" (OUTPUT/tb/) or "wandb" (with the
// WANDB_* environment only; nullptr when WANDB_MODE=disabled); an unknown name fails listing the known ones.
// resume_step: when resuming from a checkpoint taken after step N, the JSONL file keeps the records with
// step <= N (later ones belong to the abandoned tail of the old run) and appends; TensorBoard starts a
// new event file whose first record tells TensorBoard to discard the old files' events after step N.
std::unique_ptr<MetricsSink> make_sink(std::string_view name, const std::filesystem::path& output_dir,
                                       std::optional<int64_t> resume_step = std::nullopt);

// Fans every call out to its sinks and keeps a History of everything logged.
class MetricsHub : public MetricsSink {
 public:
  MetricsHub() = default;
  // Sinks from `report_to`; duplicate names fail. An empty list or ["none"] is allowed (history only).
  // With resume_step N, the history is preloaded from OUTPUT/metrics.jsonl (steps <= N) when that file
  // exists, so the report of a resumed run covers the whole run.
  static MetricsHub open(const std::vector<std::string>& report_to, const std::filesystem::path& output_dir,
                         std::optional<int64_t> resume_step = std::nullopt);

  MetricsHub(MetricsHub&&) = default;
  MetricsHub& operator=(MetricsHub&&) = default;
  ~MetricsHub() override;

  void add_sink(std::unique_ptr<MetricsSink> sink);
  void log(int64_t step, const Scalars& scalars) override;
  void log_text(int64_t step, std::string_view tag, std::string_view text) override;
  void log_table(int64_t step, std::string_view key, const Table& table) override;
  void log_summary(const Scalars& scalars) override;
  void set_exit_code(int code) override;
  void flush() override;
  void close() override;
  std::string_view name() const override { return "hub"; }

  const History& history() const { return history_; }
  History& history() { return history_; }
  std::vector<std::string> sink_names() const;

 private:
  std::vector<std::unique_ptr<MetricsSink>> sinks_;
  History history_;
};

// OUTPUT/metrics.jsonl: one JSON object a line, `step` first, then the well-known keys in the order of
// issue 5 item 5, then the rest alphabetically. `step` and `tokens` are written as integers; a value
// that is not finite (NaN / Inf) is written as null, since JSON has no NaN.
class JsonlSink : public MetricsSink {
 public:
  JsonlSink(const std::filesystem::path& file, std::optional<int64_t> resume_step = std::nullopt);
  ~JsonlSink() override;
  JsonlSink(const JsonlSink&) = delete;
  JsonlSink& operator=(const JsonlSink&) = delete;

  void log(int64_t step, const Scalars& scalars) override;
  void flush() override;
  void close() override;
  std::string_view name() const override { return "jsonl"; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

// One JSONL line for a record, without the newline (the format JsonlSink writes).
std::string metrics_json_line(int64_t step, const Scalars& scalars);

// Reads a metrics.jsonl back (a run's history, for a report or a resume). Lines with step > max_step are
// skipped; null values are skipped; non-numeric fields are ignored. A malformed line fails naming the
// file and line number.
History read_metrics_jsonl(const std::filesystem::path& file,
                           std::optional<int64_t> max_step = std::nullopt);

}  // namespace cotune::track
