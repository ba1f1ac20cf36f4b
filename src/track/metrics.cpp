#include "track/metrics.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

#include "base/error.h"
#include "base/log.h"
#include "track/tensorboard.h"
#include "track/wandb.h"

namespace cotune::track {
namespace fs = std::filesystem;

// ---- History --------------------------------------------------------------------------------

void History::add(int64_t step, const Scalars& scalars) {
  for (const auto& [key, value] : scalars) {
    auto it = series_.find(key);
    if (it == series_.end()) it = series_.emplace(key, std::vector<Point>{}).first;
    it->second.push_back({step, value});
  }
}

const std::vector<History::Point>& History::series(std::string_view key) const {
  static const std::vector<Point> kEmpty;  // immutable; returned for absent keys
  auto it = series_.find(key);
  return it == series_.end() ? kEmpty : it->second;
}

std::vector<std::string> History::keys() const {
  std::vector<std::string> out;
  for (const auto& kv : series_) out.push_back(kv.first);
  return out;
}

std::optional<double> History::last(std::string_view key) const {
  const auto& s = series(key);
  if (s.empty()) return std::nullopt;
  return s.back().value;
}

// ---- JSONL ----------------------------------------------------------------------------------

namespace {

// The order of issue 5 item 5, then evaluation; anything else follows alphabetically.
constexpr std::array<std::string_view, 11> kWellKnownKeys = {
    "epoch", "loss", "lr", "grad_norm", "tokens", "mean_token_accuracy", "tokens_per_s", "elapsed_s",
    "eval_loss", "eval_mean_token_accuracy", "eval_tokens"};

bool is_integer_key(std::string_view key) {
  return key == "tokens" || key == "eval_tokens" || key == "step";
}

void put_value(nlohmann::ordered_json& j, const std::string& key, double v) {
  if (is_integer_key(key) && std::isfinite(v) && std::fabs(v) < 9.0e15 && v == std::floor(v)) {
    j[key] = static_cast<int64_t>(v);
  } else {
    j[key] = v;  // nlohmann writes NaN / Inf as null
  }
}

std::optional<int64_t> parse_step(const nlohmann::json& j) {
  auto it = j.find("step");
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<int64_t>();
}

std::FILE* open_or_fail(const fs::path& p, const char* mode) {
  std::FILE* f = std::fopen(p.c_str(), mode);
  if (!f) fail("cannot open metrics file {}: {}", p.string(), std::strerror(errno));
  return f;
}

// On resume: keep the records of steps <= resume_step, written to a temp file and renamed over the
// original so a crash here leaves either the old or the new file, never half of one.
void truncate_after_step(const fs::path& file, int64_t resume_step) {
  std::ifstream in(file);
  if (!in) return;  // nothing to keep
  std::vector<std::string> kept;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      // A torn last line is what an interrupted write leaves; anything else is a damaged file.
      if (i + 1 == lines.size()) {
        log::warn("{}: dropping the incomplete last line {} on resume", file.string(), i + 1);
        continue;
      }
      fail("{} line {}: not a JSON object; cannot resume its metrics", file.string(), i + 1);
    }
    auto step = parse_step(j);
    if (step && *step > resume_step) continue;
    kept.push_back(line);
  }
  fs::path tmp = file;
  tmp += ".tmp";
  {
    std::FILE* f = open_or_fail(tmp, "w");
    for (const auto& l : kept) std::fprintf(f, "%s\n", l.c_str());
    if (std::fclose(f) != 0) fail("cannot write {}: {}", tmp.string(), std::strerror(errno));
  }
  fs::rename(tmp, file);
}

}  // namespace

std::string metrics_json_line(int64_t step, const Scalars& scalars) {
  nlohmann::ordered_json j;
  j["step"] = step;
  for (std::string_view k : kWellKnownKeys) {
    auto it = scalars.find(k);
    if (it != scalars.end()) put_value(j, it->first, it->second);
  }
  for (const auto& [k, v] : scalars) {
    if (k == "step") continue;
    if (std::find(kWellKnownKeys.begin(), kWellKnownKeys.end(), k) != kWellKnownKeys.end()) continue;
    put_value(j, k, v);
  }
  return j.dump();
}

JsonlSink::JsonlSink(const fs::path& file, std::optional<int64_t> resume_step) : path_(file) {
  std::error_code ec;
  if (file.has_parent_path()) fs::create_directories(file.parent_path(), ec);
  if (ec) fail("cannot create directory {}: {}", file.parent_path().string(), ec.message());
  if (resume_step) {
    truncate_after_step(file, *resume_step);
    file_ = open_or_fail(file, "a");
  } else {
    file_ = open_or_fail(file, "w");
  }
}

JsonlSink::~JsonlSink() {
  try {
    close();
  } catch (const Error& e) {
    log::error("{}", e.what());
  }
}

void JsonlSink::log(int64_t step, const Scalars& scalars) {
  if (!file_) fail("{}: log() after close()", path_.string());
  std::string line = metrics_json_line(step, scalars);
  line.push_back('\n');
  // One fwrite + fflush a record: an interruption loses at most the line being written. A write that fails
  // part way (a full disk) is cut back to the last whole line, so the file never ends in a torn record.
  const long before = std::ftell(file_);
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    const int e = errno;
    std::fclose(file_);  // drops what stdio still holds; its own error is the one above
    file_ = nullptr;
    if (before >= 0 && ::truncate(path_.c_str(), static_cast<off_t>(before)) != 0)
      log::warn("{}: cannot cut the partly written last line back: {}", path_.string(), std::strerror(errno));
    fail("cannot write {}: {}", path_.string(), std::strerror(e));
  }
}

void JsonlSink::flush() {
  if (file_) std::fflush(file_);
}

void JsonlSink::close() {
  if (!file_) return;
  std::FILE* f = file_;
  file_ = nullptr;
  if (std::fclose(f) != 0) fail("cannot close {}: {}", path_.string(), std::strerror(errno));
}

History read_metrics_jsonl(const fs::path& file, std::optional<int64_t> max_step) {
  std::ifstream in(file);
  if (!in) fail("cannot open metrics file {}", file.string());
  History h;
  size_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      // A torn last line (an interrupted write) is dropped, as truncate_after_step drops it on resume.
      if (in.peek() == std::char_traits<char>::eof()) {
        log::warn("{} line {}: dropping the incomplete last line", file.string(), line_no);
        break;
      }
      fail("{} line {}: expected one JSON object per line", file.string(), line_no);
    }
    auto step = parse_step(j);
    if (!step) fail("{} line {}: missing numeric field \"step\"", file.string(), line_no);
    if (max_step && *step > *max_step) continue;
    Scalars s;
    for (const auto& [k, v] : j.items()) {
      if (k == "step" || !v.is_number()) continue;
      s[k] = v.get<double>();
    }
    h.add(*step, s);
  }
  return h;
}

// ---- factory and hub ------------------------------------------------------------------------

std::vector<std::string> known_sink_names() { return {"jsonl", "tensorboard", "wandb"}; }

std::unique_ptr<MetricsSink> make_sink(std::string_view name, const fs::path& output_dir,
                                       std::optional<int64_t> resume_step) {
  if (name == "jsonl") return std::make_unique<JsonlSink>(output_dir / "metrics.jsonl", resume_step);
  if (name == "tensorboard") {
    TensorBoardOptions tb;
    tb.resume_step = resume_step;
    return std::make_unique<TensorBoardSink>(output_dir / "tb", tb);
  }
  if (name == "wandb") {  // settings from the environment only (the cli passes its own, see cmd_train)
    wandb::WandbOptions wo;
    wo.output_dir = output_dir;
    wo.resume = resume_step.has_value();
    return make_wandb_sink(wo);  // nullptr when disabled
  }
  std::string known;
  for (const auto& n : known_sink_names()) known += (known.empty() ? "" : ", ") + n;
  fail("report_to: unknown sink \"{}\"; known: {}", name, known);
}

MetricsHub MetricsHub::open(const std::vector<std::string>& report_to, const fs::path& output_dir,
                            std::optional<int64_t> resume_step) {
  MetricsHub hub;
  // report_to = ["none"], as in transformers: no sinks (the history is still kept for the report).
  if (report_to.size() == 1 && report_to[0] == "none") return open({}, output_dir, resume_step);
  std::set<std::string> seen;
  for (const auto& n : report_to)
    if (!seen.insert(n).second) fail("report_to: \"{}\" is listed twice", n);
  if (resume_step) {
    fs::path jsonl = output_dir / "metrics.jsonl";
    std::error_code ec;
    // Read before the JSONL sink truncates the file, with the same cut-off it uses.
    if (fs::exists(jsonl, ec)) {
      try {
        hub.history_ = read_metrics_jsonl(jsonl, resume_step);
      } catch (const Error& e) {
        log::warn("resume: the report will start at step {}: {}", *resume_step + 1, e.what());
      }
    }
  }
  for (const auto& n : report_to)
    if (auto sink = make_sink(n, output_dir, resume_step)) hub.add_sink(std::move(sink));
  return hub;
}

MetricsHub::~MetricsHub() {
  try {
    close();
  } catch (const Error& e) {
    log::error("{}", e.what());
  }
}

void MetricsHub::add_sink(std::unique_ptr<MetricsSink> sink) {
  COTUNE_CHECK(sink != nullptr, "MetricsHub::add_sink: null sink");
  sinks_.push_back(std::move(sink));
}

void MetricsHub::log(int64_t step, const Scalars& scalars) {
  history_.add(step, scalars);
  for (auto& s : sinks_) s->log(step, scalars);
}

void MetricsHub::log_text(int64_t step, std::string_view tag, std::string_view text) {
  for (auto& s : sinks_) s->log_text(step, tag, text);
}

void MetricsHub::log_table(int64_t step, std::string_view key, const Table& table) {
  for (auto& s : sinks_) s->log_table(step, key, table);
}

void MetricsHub::log_summary(const Scalars& scalars) {
  for (auto& s : sinks_) s->log_summary(scalars);
}

void MetricsHub::set_exit_code(int code) {
  for (auto& s : sinks_) s->set_exit_code(code);
}

void MetricsHub::flush() {
  for (auto& s : sinks_) s->flush();
}

void MetricsHub::close() {
  // Close every sink even when one fails, then report the first failure.
  std::optional<Error> first;
  for (auto& s : sinks_) {
    try {
      s->close();
    } catch (const Error& e) {
      if (!first) first = e;
    }
  }
  if (first) throw *first;
}

std::vector<std::string> MetricsHub::sink_names() const {
  std::vector<std::string> out;
  for (const auto& s : sinks_) out.emplace_back(s->name());
  return out;
}

}  // namespace cotune::track
