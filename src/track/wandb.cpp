#include "track/wandb.h"

#include <openssl/sha.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <exception>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>

#include "base/error.h"
#include "base/log.h"
#include "track/system_metrics.h"
#include "track/wandb_api.h"
#include "track/wandb_store.h"

namespace cotune::track {
namespace fs = std::filesystem;
using nlohmann::json;
using namespace wandb;

#ifndef COTUNE_VERSION_STRING
#define COTUNE_VERSION_STRING "0.0.0"
#endif
#ifndef COTUNE_GIT_COMMIT
#define COTUNE_GIT_COMMIT "unknown"
#endif

namespace {

double unix_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}
double steady_now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// "2026-12-03T11:43:00.837287" (UTC), the prefix the client gives output.log lines in the stream.
std::string iso_time(double unix_s) {
  const auto secs = static_cast<std::time_t>(std::floor(unix_s));
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:06d}", buf, static_cast<int>((unix_s - std::floor(unix_s)) * 1e6));
}

// "20261203_114155", local time, as the client names run folders.
std::string folder_time(double unix_s) {
  const auto secs = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  localtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%d_%H%M%S", &tm);
  return buf;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  std::string hex;
  for (unsigned char c : md) hex += fmt::format("{:02x}", c);
  return hex;
}

void write_file_atomic(const fs::path& path, std::string_view content) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot write {}", tmp.string());
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    if (!out) fail("cannot write {}", tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail("cannot rename {} to {}: {}", tmp.string(), path.string(), ec.message());
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The run id of the newest run folder in `wandb_dir` ((offline-)run-<yyyymmdd_hhmmss>-<id>).
std::optional<std::string> last_run_id(const fs::path& wandb_dir) {
  static const std::regex kName(R"((?:offline-)?run-(\d{8}_\d{6})-([a-z0-9]+))");
  std::error_code ec;
  std::string best_time, best_id;
  for (const auto& e : fs::directory_iterator(wandb_dir, ec)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (e.is_directory() && std::regex_match(name, m, kName) && m[1].str() >= best_time) {
      best_time = m[1].str();
      best_id = m[2].str();
    }
  }
  if (best_id.empty()) return std::nullopt;
  return best_id;
}

// A JSON value for a logged number: integral values as integers (train/global_step 6, not 6.0), NaN and
// infinities as null (JSON has neither).
json number(double v) {
  if (!std::isfinite(v)) return json();
  if (v == std::floor(v) && std::fabs(v) < 9.0e15) return json(static_cast<int64_t>(v));
  return json(v);
}

}  // namespace

std::string wandb_key(std::string_view key) {
  if (key.starts_with("eval_") && key.size() > 5) return "eval/" + std::string(key.substr(5));
  if (key == "lr") return "train/learning_rate";
  if (key == "tokens_per_s") return "train/tokens_per_second";
  return "train/" + std::string(key);
}

// ---- start ----------------------------------------------------------------------------------

WandbSink::WandbSink(WandbOptions options) : options_(std::move(options)) {
  settings_ = resolve_settings(options_);
  if (!options_.config.is_object()) options_.config = json::object();
  options_.config["cotune_version"] = COTUNE_VERSION_STRING;
  options_.config["cotune_commit"] = COTUNE_GIT_COMMIT;
  if (settings_.mode == Mode::disabled) {
    closed_ = true;
    return;
  }
  start_unix_ = unix_now();
  start_steady_ = steady_now();
  if (settings_.mode == Mode::online) start_online();
  if (settings_.run_id.empty()) {
    if (!settings_.resume.empty())
      if (auto id = last_run_id(settings_.wandb_dir)) settings_.run_id = *id;
    if (settings_.run_id.empty()) settings_.run_id = new_run_id();
  }
  open_run_dir();
  write_start_files();
  if (options_.system_metrics) monitor_ = std::make_unique<SystemMonitor>();
  if (settings_.mode == Mode::online) {
    api_ = std::make_unique<Api>(settings_.base_url, settings_.api_key, options_.request_timeout_s,
                                 "cotune/" COTUNE_VERSION_STRING);
    print(fmt::format("Syncing run {}", settings_.display_name.empty() ? settings_.run_id : settings_.display_name));
    print(fmt::format("⭐️ View project at {}", project_url_));
    print(fmt::format("🚀 View run at {}", run_url_));
  } else {
    print(fmt::format("Logging offline to {}; upload it later with: wandb sync {}", run_dir_.string(),
                      run_dir_.string()));
  }
  sample_system();  // a first sample at once, as the client does (so even a short run has one)
  // Last, so that nothing after it can throw: the listener and the worker hold `this` until close().
  log::set_listener([this](log::Level, std::string_view message) {
    std::lock_guard<std::mutex> lock(console_mu_);
    console_lines_.emplace_back(unix_now(), std::string(message));
  });
  worker_ = std::thread([this] { worker(); });
}

void WandbSink::print(const std::string& line) const {
  if (options_.print) {
    options_.print("wandb: " + line);
  } else {
    log::info("wandb: {}", line);
  }
}

void WandbSink::start_online() {
  Settings& s = settings_;
  if (s.api_key.empty())
    fail("wandb: no API key for {}: set WANDB_API_KEY, run `wandb login` (it writes ~/.netrc), or log offline "
         "with --wandb-mode offline",
         s.base_url);
  Api api(s.base_url, s.api_key, std::min(options_.request_timeout_s, 20.0), "cotune/" COTUNE_VERSION_STRING);
  auto go_offline = [&](const HttpResult& r) {
    print(fmt::format("cannot reach {} ({}); logging offline instead", s.base_url, r.describe()));
    s.mode = Mode::offline;
  };
  // Key check. One retry for a transient failure, then offline: a flaky network must not cost the run.
  HttpResult r = api.graphql(kViewerQuery, json::object());
  if (r.transient() && r.status != 409) {
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(options_.retry_initial_s * 1000)));
    r = api.graphql(kViewerQuery, json::object());
  }
  if (r.status == 401 || r.status == 403)
    fail("wandb: the API key from {} was rejected by {} (HTTP {}); check it, or run `wandb login --relogin`",
         s.key_source, s.base_url, r.status);
  if (r.transient()) return go_offline(r);
  if (!r.ok()) fail("wandb: key check at {} failed: {}", s.base_url, r.describe());
  std::string errors;
  json data = graphql_data(r, &errors);
  if (data.is_null() || !data.contains("viewer") || data["viewer"].is_null())
    fail("wandb: the API key from {} was rejected by {}{}; check it, or run `wandb login --relogin`", s.key_source,
         s.base_url, errors.empty() ? "" : " (" + errors + ")");
  const json& viewer = data["viewer"];
  if (viewer.contains("username") && viewer["username"].is_string()) username_ = viewer["username"];
  if (s.entity.empty() && viewer.contains("entity") && viewer["entity"].is_string()) s.entity = viewer["entity"];
  print(fmt::format("Currently logged in as: {} ({})", username_.empty() ? "?" : username_, s.entity));

  if (s.run_id.empty() && !s.resume.empty())
    if (auto id = last_run_id(s.wandb_dir)) s.run_id = *id;
  const bool resuming = !s.resume.empty() && !s.run_id.empty();
  if (s.run_id.empty()) s.run_id = new_run_id();

  if (resuming) {
    r = api.graphql(kRunResumeStatusQuery, {{"project", s.project}, {"entity", s.entity}, {"name", s.run_id}});
    if (r.transient()) return go_offline(r);
    data = graphql_data(r, &errors);
    if (!r.ok() || data.is_null()) fail("wandb: resume status of run {} failed: {} {}", s.run_id, r.describe(), errors);
    const json bucket = data.contains("model") && data["model"].is_object() ? data["model"].value("bucket", json()) : json();
    if (bucket.is_null()) {
      if (s.resume == "must")
        fail("wandb: WANDB_RESUME=must but run {}/{}/{} does not exist", s.entity, s.project, s.run_id);
      print(fmt::format("run {} does not exist yet; starting it", s.run_id));
    } else {
      if (s.resume == "never")
        fail("wandb: WANDB_RESUME=never but run {}/{}/{} exists; give a new WANDB_RUN_ID", s.entity, s.project,
             s.run_id);
      auto count = [&](const char* k) { return bucket.contains(k) && bucket[k].is_number() ? bucket[k].get<int64_t>() : 0; };
      history_.offset = count("historyLineCount");
      events_.offset = count("eventsLineCount");
      output_.offset = count("logLineCount");
      next_step_ = history_.offset;
      // historyTail: a JSON string holding a list of the last history rows, each itself a JSON string.
      if (bucket.contains("historyTail") && bucket["historyTail"].is_string()) {
        json tail = json::parse(bucket["historyTail"].get<std::string>(), nullptr, false);
        if (tail.is_array())
          for (const auto& line : tail) {
            json row = line.is_string() ? json::parse(line.get<std::string>(), nullptr, false) : line;
            if (!row.is_object()) continue;
            if (row.contains("_step") && row["_step"].is_number())
              next_step_ = std::max(next_step_, row["_step"].get<int64_t>() + 1);
            if (row.contains("train/global_step") && row["train/global_step"].is_number()) {
              const auto g = row["train/global_step"].get<int64_t>();
              skip_through_global_step_ = std::max(skip_through_global_step_.value_or(g), g);
            }
          }
      }
      if (bucket.contains("summaryMetrics") && bucket["summaryMetrics"].is_string()) {
        json sm = json::parse(bucket["summaryMetrics"].get<std::string>(), nullptr, false);
        if (sm.is_object()) summary_ = sm;
      }
      print(fmt::format("Resuming run {} at history step {}{}", s.run_id, next_step_,
                        skip_through_global_step_
                            ? fmt::format(" (steps up to {} are already logged)", *skip_through_global_step_)
                            : ""));
    }
  }

  json config = json::object();
  for (const auto& [k, v] : options_.config.items()) config[k] = {{"value", v}};
  std::string config_text = redact(config.dump());
  json vars = {{"name", s.run_id},
               {"project", s.project},
               {"entity", s.entity.empty() ? json() : json(s.entity)},
               {"displayName", s.display_name.empty() ? json() : json(s.display_name)},
               {"notes", s.notes.empty() ? json() : json(s.notes)},
               {"tags", s.tags},
               {"config", config_text},
               {"host", host_name()},
               {"program", "cotune"}};
  r = api.graphql(kUpsertBucketMutation, vars);
  if (r.transient()) return go_offline(r);
  data = graphql_data(r, &errors);
  if (!r.ok() || data.is_null() || !data.contains("upsertBucket"))
    fail("wandb: cannot create run {} in {}/{}: {} {}", s.run_id, s.entity, s.project, r.describe(), errors);
  const json bucket = data["upsertBucket"].value("bucket", json::object());
  if (bucket.contains("project") && bucket["project"].is_object()) {
    const json& p = bucket["project"];
    if (p.contains("name") && p["name"].is_string()) s.project = p["name"];
    if (p.contains("entity") && p["entity"].is_object() && p["entity"].contains("name") && p["entity"]["name"].is_string())
      s.entity = p["entity"]["name"];
  }
  if (bucket.contains("displayName") && bucket["displayName"].is_string()) s.display_name = bucket["displayName"];
  project_url_ = fmt::format("{}/{}/{}", s.app_url, s.entity, s.project);
  run_url_ = fmt::format("{}/runs/{}", project_url_, s.run_id);
}

std::string WandbSink::redact(std::string text) const {
  const std::string& key = settings_.api_key;
  if (key.size() < 8) return text;  // nothing that short is a key; avoid mangling ordinary text
  for (size_t p = text.find(key); p != std::string::npos; p = text.find(key, p)) text.replace(p, key.size(), "***");
  return text;
}

double WandbSink::runtime_s() const { return steady_now() - start_steady_; }

void WandbSink::open_run_dir() {
  const std::string prefix = settings_.mode == Mode::offline ? "offline-run-" : "run-";
  std::error_code ec;
  fs::create_directories(settings_.wandb_dir, ec);
  if (ec) fail("wandb: cannot create {}: {}", settings_.wandb_dir.string(), ec.message());
  run_dir_ = settings_.wandb_dir / (prefix + folder_time(start_unix_) + "-" + settings_.run_id);
  for (int n = 1; fs::exists(run_dir_, ec); ++n)  // two runs of one id in one second
    run_dir_ = settings_.wandb_dir / fmt::format("{}{}-{}-{}", prefix, folder_time(start_unix_ + n), settings_.run_id, n);
  files_dir_ = run_dir_ / "files";
  fs::create_directories(files_dir_, ec);
  if (ec) fail("wandb: cannot create {}: {}", files_dir_.string(), ec.message());
  const fs::path latest = settings_.wandb_dir / "latest-run";
  fs::remove(latest, ec);
  fs::create_directory_symlink(run_dir_.filename(), latest, ec);  // as the client does; optional

  log_ = std::make_unique<TransactionLog>(transaction_log_path());
  RunRecordFields run;
  run.run_id = settings_.run_id;
  run.entity = settings_.entity;
  run.project = settings_.project;
  run.display_name = settings_.display_name;
  run.notes = settings_.notes;
  run.tags = settings_.tags;
  run.host = host_name();
  run.start_time = start_unix_;
  run.starting_step = next_step_;
  run.resumed = next_step_ > 0;
  for (const auto& [k, v] : options_.config.items()) run.config.push_back({k, redact(v.dump())});
  std::lock_guard<std::mutex> lock(mu_);
  append_record(encode_run_record(++record_num_, run));
}

fs::path WandbSink::transaction_log_path() const { return run_dir_ / ("run-" + settings_.run_id + ".wandb"); }

void WandbSink::write_start_files() {
  json meta = {{"program", "cotune"},
               {"host", host_name()},
               {"startedAt", iso_time(start_unix_) + "Z"},
               {"cotune_version", COTUNE_VERSION_STRING}};
  {
    const std::string os = read_text("/proc/sys/kernel/osrelease");
    if (!os.empty()) meta["os"] = "Linux-" + os.substr(0, os.find('\n'));
  }
  std::string yaml;
  for (const auto& [k, v] : options_.config.items()) yaml += k + ":\n  value: " + redact(v.dump()) + "\n";
  write_file_atomic(files_dir_ / "wandb-metadata.json", meta.dump(2));
  write_file_atomic(files_dir_ / "config.yaml", yaml);
  std::lock_guard<std::mutex> lock(mu_);
  files_ = {"wandb-metadata.json", "config.yaml"};
  append_record(encode_files_record(++record_num_, files_));
}

void WandbSink::append_record(const std::string& record) { log_->append(record); }

// ---- logging (training thread) ----------------------------------------------------------------

json WandbSink::history_row(int64_t step) {
  return json{{"_step", next_step_}, {"_runtime", runtime_s()}, {"_timestamp", unix_now()}, {"train/global_step", step}};
}

void WandbSink::queue_line(Stream& s, std::string line) {
  if (settings_.mode != Mode::online || stream_broken_ || overflowed_) return;
  if (s.pending.size() >= options_.max_pending_lines) {
    overflowed_ = true;  // keep what is queued (contiguous offsets); the rest is in the .wandb file
    return;
  }
  s.pending.push_back(std::move(line));
}

void WandbSink::write_history_locked(json row) {
  std::vector<JsonItem> items;
  for (const auto& [k, v] : row.items()) {
    items.push_back({k, v.dump()});
    summary_[k] = v;
  }
  const int64_t step = row["_step"].get<int64_t>();
  append_record(encode_history_record(++record_num_, step, items));
  append_record(encode_summary_record(++record_num_, items));
  summary_dirty_ = true;
  ++summary_version_;
  queue_line(history_, row.dump());
  ++totals_.history_rows;
  ++next_step_;
}

void WandbSink::log(int64_t step, const Scalars& scalars) {
  if (closed_ && settings_.mode == Mode::disabled) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (closing_) fail("wandb: log() after close()");
  if (skip_through_global_step_ && step <= *skip_through_global_step_) {
    ++totals_.history_skipped;  // a resumed run replays these steps bit for bit; W&B has them already
    return;
  }
  json row = history_row(step);
  for (const auto& [k, v] : scalars) {
    if (k == "step") continue;
    row[wandb_key(k)] = number(v);
  }
  write_history_locked(std::move(row));
}

void WandbSink::log_table(int64_t step, std::string_view key, const Table& table) {
  if (settings_.mode == Mode::disabled) return;
  json t = {{"columns", table.columns}, {"data", table.rows}};
  const std::string content = redact(t.dump());
  const std::string sha = sha256_hex(content);
  std::lock_guard<std::mutex> lock(mu_);
  if (closing_) fail("wandb: log_table() after close()");
  const std::string rel = fmt::format("media/table/{}_{}_{}.table.json", key, next_step_, sha.substr(0, 20));
  std::error_code ec;
  fs::create_directories((files_dir_ / rel).parent_path(), ec);
  write_file_atomic(files_dir_ / rel, content);
  files_.push_back(rel);
  append_record(encode_files_record(++record_num_, {rel}));
  json row = history_row(step);
  row[std::string(key)] = {{"_type", "table-file"}, {"path", rel}, {"sha256", sha}, {"size", content.size()},
                           {"ncols", table.columns.size()}, {"nrows", table.rows.size()}};
  write_history_locked(std::move(row));
}

void WandbSink::log_summary(const Scalars& scalars) {
  if (settings_.mode == Mode::disabled) return;
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<JsonItem> items;
  for (const auto& [k, v] : scalars) {
    const std::string key = wandb_key(k);
    summary_[key] = number(v);
    items.push_back({key, summary_[key].dump()});
  }
  append_record(encode_summary_record(++record_num_, items));
  summary_dirty_ = true;
  ++summary_version_;
}

void WandbSink::log_console(std::string_view text) {
  if (settings_.mode == Mode::disabled) return;
  std::lock_guard<std::mutex> lock(console_mu_);
  console_lines_.emplace_back(unix_now(), std::string(text));
}

// Moves console text from the listener's buffer to the log, output.log and the stream. Holds mu_.
void WandbSink::drain_console_locked() {
  std::vector<std::pair<double, std::string>> batch;
  {
    std::lock_guard<std::mutex> lock(console_mu_);
    batch.swap(console_lines_);
  }
  if (batch.empty()) return;
  std::ofstream out(files_dir_ / "output.log", std::ios::app | std::ios::binary);
  for (auto& [time, text] : batch) {
    std::stringstream ss(redact(text));
    for (std::string line; std::getline(ss, line);) {
      if (const auto cr = line.rfind('\r'); cr != std::string::npos) line = line.substr(cr + 1);  // a redrawn line
      append_record(encode_output_record(++record_num_, time, line + "\n", false));
      out << line << '\n';
      queue_line(output_, iso_time(time) + " " + line);
      ++totals_.console_lines;
    }
  }
  if (totals_.console_lines > 0 && std::find(files_.begin(), files_.end(), "output.log") == files_.end()) {
    files_.push_back("output.log");
    append_record(encode_files_record(++record_num_, {"output.log"}));
  }
}

void WandbSink::sample_system() {
  if (!monitor_) return;
  const MetricList m = monitor_->sample();
  const double t = unix_now();
  std::vector<JsonItem> items;
  json line = json::object();
  for (const auto& [k, v] : m) {
    items.push_back({k, json(v).dump()});
    line["system." + k] = v;
  }
  line["_wandb"] = true;
  line["_timestamp"] = t;
  line["_runtime"] = runtime_s();
  std::lock_guard<std::mutex> lock(mu_);
  if (!log_ || closing_) return;  // close() has written the exit record
  try {
    append_record(encode_stats_record(++record_num_, t, items));
  } catch (const Error& e) {
    last_error_ = e.what();
  }
  queue_line(events_, line.dump());
  ++totals_.events_rows;
}

// ---- the worker: system metrics and uploads ---------------------------------------------------------

bool WandbSink::stream_once(bool final_request) {
  json files = json::object();
  size_t n_history = 0, n_events = 0, n_output = 0;
  bool sent_summary = false;
  int64_t sent_summary_version = 0;
  constexpr size_t kMaxLinesPerRequest = 2000;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto take = [&](Stream& s, size_t& n) {
      n = std::min(s.pending.size(), kMaxLinesPerRequest);
      if (n == 0) return;
      json content = json::array();
      for (size_t i = 0; i < n; ++i) content.push_back(s.pending[i]);
      files[s.name] = {{"offset", s.offset}, {"content", std::move(content)}};
    };
    take(history_, n_history);
    take(events_, n_events);
    take(output_, n_output);
    if (summary_dirty_ || final_request) {
      json summary = summary_;
      summary["_wandb"] = {{"runtime", static_cast<int64_t>(runtime_s())}};
      files["wandb-summary.json"] = {{"offset", 0}, {"content", json::array({redact(summary.dump())})}};
      sent_summary = summary_dirty_;
      sent_summary_version = summary_version_;
    }
  }
  json body = {{"files", files}};
  if (final_request) {
    std::lock_guard<std::mutex> lock(mu_);
    body["uploaded"] = uploaded_files_;
    body["complete"] = true;
    body["exitcode"] = exit_code_.load();
  } else if (files.empty()) {
    return true;  // nothing to send
  }
  const std::string path =
      fmt::format("/files/{}/{}/{}/file_stream", settings_.entity, settings_.project, settings_.run_id);
  const HttpResult r = api_->post_json(path, body.dump());
  std::lock_guard<std::mutex> lock(mu_);
  if (!r.ok()) {
    ++totals_.failed_requests;
    last_error_ = r.describe();
    if (!r.transient()) stream_broken_ = true;
    return false;
  }
  auto done = [](Stream& s, size_t n, int64_t& uploaded) {
    s.pending.erase(s.pending.begin(), s.pending.begin() + static_cast<std::ptrdiff_t>(n));
    s.offset += static_cast<int64_t>(n);
    uploaded += static_cast<int64_t>(n);
  };
  done(history_, n_history, totals_.history_uploaded);
  done(events_, n_events, totals_.events_uploaded);
  done(output_, n_output, totals_.console_uploaded);
  if (sent_summary && sent_summary_version == summary_version_) summary_dirty_ = false;  // else a newer one waits
  if (final_request) totals_.finished_on_server = true;
  return true;
}

bool WandbSink::upload_files() {
  std::vector<std::string> todo;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& f : files_)
      if (std::find(uploaded_files_.begin(), uploaded_files_.end(), f) == uploaded_files_.end()) todo.push_back(f);
  }
  if (todo.empty()) return true;
  const HttpResult r = api_->graphql(kCreateRunFilesMutation, {{"entity", settings_.entity},
                                                               {"project", settings_.project},
                                                               {"run", settings_.run_id},
                                                               {"files", todo}});
  std::string errors;
  const json data = r.ok() ? graphql_data(r, &errors) : json();
  if (data.is_null() || !data.contains("createRunFiles") || !data["createRunFiles"].is_object()) {
    std::lock_guard<std::mutex> lock(mu_);
    ++totals_.failed_requests;
    last_error_ = r.ok() ? "CreateRunFiles: " + errors : r.describe();
    return false;
  }
  const json& crf = data["createRunFiles"];
  std::vector<std::string> headers;
  if (crf.contains("uploadHeaders") && crf["uploadHeaders"].is_array())
    for (const auto& h : crf["uploadHeaders"])
      if (h.is_string()) headers.push_back(h.get<std::string>());
  bool all = true;
  if (crf.contains("files") && crf["files"].is_array())
    for (const auto& f : crf["files"]) {
      if (!f.is_object() || !f.contains("name") || !f.contains("uploadUrl") || !f["uploadUrl"].is_string()) continue;
      const std::string name = f["name"];
      const HttpResult put = api_->put(f["uploadUrl"], read_text(files_dir_ / name), headers);
      std::lock_guard<std::mutex> lock(mu_);
      if (put.ok()) {
        uploaded_files_.push_back(name);
        ++totals_.files_uploaded;
      } else {
        ++totals_.failed_requests;
        last_error_ = "upload of " + name + ": " + put.describe();
        all = false;
      }
    }
  return all;
}

void WandbSink::worker() {
  const bool online = settings_.mode == Mode::online;
  const double interval = options_.stream_interval_s;
  double next_stream = steady_now() + interval;
  double next_stats = steady_now() + options_.stats_interval_s;
  double retry_at = 0, last_post = steady_now();
  int failures = 0;
  std::mt19937 jitter_rng(std::random_device{}());
  auto backoff = [&] {
    const double base = std::min(options_.retry_max_s, options_.retry_initial_s * std::pow(2.0, std::min(failures - 1, 20)));
    return base * std::uniform_real_distribution<double>(0.75, 1.25)(jitter_rng);
  };
  bool warned = false;
  auto note_result = [&](bool ok) {
    if (ok) {
      if (warned) print(fmt::format("upload resumed after {} failed attempt(s)", failures));
      failures = 0;
      warned = false;
      return;
    }
    ++failures;
    retry_at = steady_now() + backoff();
    if (!warned) {
      std::string err, dir = run_dir_.string();
      bool broken;
      {
        std::lock_guard<std::mutex> lock(mu_);
        err = last_error_;
        broken = stream_broken_;
      }
      print(broken ? fmt::format("the server refused the upload ({}); the run continues in {}", err, dir)
                   : fmt::format("upload failed ({}); retrying with back-off, the run is kept in {}", err, dir));
      warned = true;
    }
  };
  auto broken = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    return stream_broken_;
  };
  for (;;) {
    bool closing;
    {
      std::unique_lock<std::mutex> lock(mu_);
      double until = std::min(next_stream, next_stats);
      if (retry_at > 0) until = std::max(until, std::min(retry_at, next_stats));
      const auto wait_s = std::max(0.0, until - steady_now());
      wake_.wait_for(lock, std::chrono::duration<double>(wait_s), [&] { return closing_; });
      closing = closing_;
      if (!closing && log_) drain_console_locked();
    }
    if (closing) break;
    const double now = steady_now();
    if (now >= next_stats) {
      sample_system();
      next_stats = now + options_.stats_interval_s;
    }
    if (online && !broken() && now >= next_stream && now >= retry_at) {
      bool ok = stream_once(false);
      // A heartbeat keeps the run "running" on the server through long quiet phases (sampling, eval).
      if (ok && now - last_post > 30.0 && options_.system_metrics == false) ok = stream_once(false);
      if (ok) last_post = now;
      note_result(ok);
      next_stream = now + interval;
    }
  }
  if (!online) return;
  // Closing: upload what is left, the run files, then the final "complete" -- all within finish_timeout_s.
  const double deadline = steady_now() + options_.finish_timeout_s;
  auto sleep_until_retry = [&] {
    const double until = std::min(retry_at, deadline);
    while (steady_now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  };
  auto pending = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    return !history_.pending.empty() || !events_.pending.empty() || !output_.pending.empty() || summary_dirty_;
  };
  while (!broken() && pending() && steady_now() < deadline) {
    const bool ok = stream_once(false);
    note_result(ok);
    if (!ok) sleep_until_retry();
  }
  while (!broken() && steady_now() < deadline) {
    const bool ok = upload_files();
    note_result(ok);
    if (ok) break;
    sleep_until_retry();
  }
  while (!broken() && !pending() && steady_now() < deadline) {
    const bool ok = stream_once(true);
    note_result(ok);
    if (ok) break;
    sleep_until_retry();
  }
}

// ---- end ------------------------------------------------------------------------------------

WandbSink::Totals WandbSink::totals() const {
  std::lock_guard<std::mutex> lock(mu_);
  return totals_;
}

void WandbSink::close() {
  if (closed_) return;
  closed_ = true;
  if (std::uncaught_exceptions() > 0 && exit_code_ == 0) exit_code_ = 1;  // closed while an error unwinds
  log::set_listener({});
  {
    std::lock_guard<std::mutex> lock(mu_);
    drain_console_locked();
    json summary = summary_;
    summary["_wandb"] = {{"runtime", static_cast<int64_t>(runtime_s())}};
    write_file_atomic(files_dir_ / "wandb-summary.json", redact(summary.dump()));
    files_.push_back("wandb-summary.json");
    append_record(encode_files_record(++record_num_, {"wandb-summary.json"}));
    append_record(encode_exit_record(++record_num_, exit_code_, static_cast<int64_t>(runtime_s())));
    log_->close();
    closing_ = true;
    summary_dirty_ = true;
    ++summary_version_;
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
  const Totals t = totals();
  const std::string dir = run_dir_.string();
  if (settings_.mode == Mode::offline) {
    print(fmt::format("offline run saved: {} history rows, {} system-metric samples, {} console lines", t.history_rows,
                      t.events_rows, t.console_lines));
    print(fmt::format("upload it with: wandb sync {}", dir));
    return;
  }
  const bool complete = t.finished_on_server && t.history_uploaded == t.history_rows &&
                        t.events_uploaded == t.events_rows && t.console_uploaded == t.console_lines &&
                        t.files_uploaded == static_cast<int64_t>(files_.size());
  print(fmt::format("uploaded {}/{} history rows, {}/{} system-metric samples, {}/{} console lines, {}/{} files{}",
                    t.history_uploaded, t.history_rows, t.events_uploaded, t.events_rows,
                    t.console_uploaded, t.console_lines, t.files_uploaded, files_.size(),
                    t.failed_requests > 0 ? fmt::format(" ({} failed requests retried)", t.failed_requests) : ""));
  if (complete) {
    print(fmt::format("🚀 View run {} at: {}", settings_.display_name.empty() ? settings_.run_id : settings_.display_name,
                      run_url_));
  } else {
    std::string err;
    {
      std::lock_guard<std::mutex> lock(mu_);
      err = last_error_;
    }
    print(fmt::format("the upload is incomplete{}; the whole run is saved in {}", err.empty() ? "" : " (" + err + ")",
                      dir));
    print(fmt::format("upload it with: wandb sync --include-online {}", dir));
  }
}

WandbSink::~WandbSink() {
  try {
    close();
  } catch (const Error& e) {
    log::error("{}", e.what());
  }
  if (worker_.joinable()) {  // close() failed before the worker was told to stop
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    wake_.notify_all();
    worker_.join();
  }
}

std::unique_ptr<WandbSink> make_wandb_sink(const WandbOptions& options) {
  auto sink = std::make_unique<WandbSink>(options);
  if (sink->mode() == Mode::disabled) return nullptr;
  return sink;
}

}  // namespace cotune::track
