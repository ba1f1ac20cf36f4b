// The Weights & Biases sink: `report_to = ["wandb"]`. A native client of the W&B protocol
// (wandb_api.h) that logs a run as `report_to="wandb"` does in transformers:
//
//   config      every recipe key, the model and data identity, cotune's version and commit (UpsertBucket)
//   history     one row per log() call, keys named as HF's Trainer names them (train/loss,
//               train/learning_rate, train/grad_norm, train/epoch, train/global_step, eval/loss, ...)
//   summary     the last value of every key, plus log_summary()'s end-of-run figures
//   console     every log line (base/log listener) and log_console() text -> output.log
//   system      CPU / RAM (/proc) and GPU (NVML) every stats_interval_s -> wandb-events.jsonl
//   tables      log_table() -> files/media/table/<key>_<step>_<sha>.table.json, a table-file history value
//
// Everything is also written to the run's transaction log, wandb/run-<time>-<id>/run-<id>.wandb
// (offline: wandb/offline-run-<time>-<id>/), in the official client's format, so `wandb sync` can upload
// what the network did not take.
//
// Threads: log() and the other calls come from the training thread; they only append to the local log
// and to bounded in-memory queues. A worker thread samples system metrics and streams the queues to the
// server (file_stream), retrying failed requests with exponential back-off. A server that fails or
// vanishes never stops or slows training: the run keeps logging locally, and close() reports what was
// uploaded and how to `wandb sync` the rest.
//
// Start-up (the constructor) is synchronous: it checks the API key (Viewer) and creates or resumes the
// run (RunResumeStatus, UpsertBucket) before any GPU work, so a wrong key fails at once with a clear
// message; an unreachable server falls back to an offline run.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "track/metrics.h"
#include "track/wandb_settings.h"

namespace cotune::track {

class SystemMonitor;
namespace wandb {
class Api;
class TransactionLog;
}  // namespace wandb

// "loss" -> "train/loss", "lr" -> "train/learning_rate", "tokens_per_s" -> "train/tokens_per_second",
// "eval_loss" -> "eval/loss": the names transformers' WandbCallback gives the same numbers.
std::string wandb_key(std::string_view key);

class WandbSink : public MetricsSink {
 public:
  explicit WandbSink(wandb::WandbOptions options);
  ~WandbSink() override;
  WandbSink(const WandbSink&) = delete;
  WandbSink& operator=(const WandbSink&) = delete;

  void log(int64_t step, const Scalars& scalars) override;
  void log_table(int64_t step, std::string_view key, const Table& table) override;
  void log_summary(const Scalars& scalars) override;
  void set_exit_code(int code) override { exit_code_ = code; }
  // Console text not written through base/log (e.g. progress lines); one or more lines.
  void log_console(std::string_view text);
  void close() override;
  std::string_view name() const override { return "wandb"; }

  // What happened, for the end-of-run message and for tests.
  struct Totals {
    int64_t history_rows = 0, history_uploaded = 0, history_skipped = 0;  // skipped: already on the server (resume)
    int64_t events_rows = 0, events_uploaded = 0;
    int64_t console_lines = 0, console_uploaded = 0;
    int64_t files = 0, files_uploaded = 0;
    int64_t failed_requests = 0;
    bool finished_on_server = false;  // the final "complete" reached the server
  };
  Totals totals() const;
  wandb::Mode mode() const { return settings_.mode; }
  const std::string& run_id() const { return settings_.run_id; }
  const std::string& run_url() const { return run_url_; }
  const std::filesystem::path& run_dir() const { return run_dir_; }
  std::filesystem::path transaction_log_path() const;

 private:
  struct Stream {  // one file_stream file: lines not yet accepted by the server, from `offset` on
    explicit Stream(std::string n) : name(std::move(n)) {}
    std::string name;
    int64_t offset = 0;
    std::deque<std::string> pending;
  };

  void print(const std::string& line) const;
  void start_online();
  void open_run_dir();
  void write_start_files();
  void append_record(const std::string& record);  // to the transaction log; caller holds mu_
  void add_console_locked(std::string_view text, double unix_time);
  void drain_console_locked();
  void queue_line(Stream& s, std::string line);  // caller holds mu_
  nlohmann::json history_row(int64_t step);      // _step/_runtime/_timestamp/train/global_step
  void write_history_locked(nlohmann::json row);
  void worker();
  bool stream_once(bool final_request);          // one file_stream POST; false on failure
  bool upload_files();
  void sample_system();
  double runtime_s() const;
  std::string redact(std::string text) const;

  wandb::WandbOptions options_;
  wandb::Settings settings_;
  std::string run_url_, project_url_, username_;
  std::filesystem::path run_dir_, files_dir_;
  double start_unix_ = 0, start_steady_ = 0;

  mutable std::mutex mu_;  // everything below, except where noted
  std::condition_variable wake_;
  std::unique_ptr<wandb::TransactionLog> log_;
  int64_t record_num_ = 0;
  int64_t next_step_ = 0;                         // the next history row's _step
  std::optional<int64_t> skip_through_global_step_;  // resume: rows up to this step are on the server
  Stream history_{"wandb-history.jsonl"};
  Stream events_{"wandb-events.jsonl"};
  Stream output_{"output.log"};
  nlohmann::json summary_ = nlohmann::json::object();
  bool summary_dirty_ = false;
  int64_t summary_version_ = 0;          // bumped on every change, so an upload racing a change keeps it dirty
  std::vector<std::string> files_;       // run files (relative to files/) to upload at the end
  std::vector<std::string> uploaded_files_;
  bool overflowed_ = false;              // a queue passed max_pending_lines: the rest is for `wandb sync`
  bool stream_broken_ = false;           // the server refused the stream for good (4xx)
  bool closing_ = false;
  bool closed_ = false;
  std::string last_error_;
  Totals totals_;

  std::mutex console_mu_;                // console lines from the log listener, any thread
  std::string console_partial_;
  std::vector<std::pair<double, std::string>> console_lines_;

  std::atomic<int> exit_code_{0};
  std::unique_ptr<wandb::Api> api_;      // the worker's
  std::unique_ptr<SystemMonitor> monitor_;
  std::thread worker_;
};

// Makes the sink when `report_to` asks for it (see MetricsHub::open). Mode disabled gives nullptr.
std::unique_ptr<WandbSink> make_wandb_sink(const wandb::WandbOptions& options);

}  // namespace cotune::track
