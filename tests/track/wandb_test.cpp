// The W&B sink against a loopback fake server (wandb_fake_server.h): a full run, a resumed run, a server
// that fails mid-run (5xx, timeouts, dropped connections, gone), a wrong key, an unreachable server, and
// offline runs whose .wandb file is read back record by record. Plus the pieces: the transaction log
// framing, settings from the environment and ~/.netrc, key names, /proc parsers.
#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/error.h"
#include "event_decoder.h"
#include "temp_dir.h"
#include "track/system_metrics.h"
#include "track/wandb.h"
#include "track/wandb_store.h"
#include "wandb_fake_server.h"

namespace cotune::track {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::FakeWandbServer;
using testing::parse_message;
using testing::TempDir;
using testing::WireField;

const std::string kKey = "0123456789abcdef0123456789abcdef01234567";  // 40 characters, like a real key

// Options for a sink against `server` with short timings; `env` adds or overrides variables.
wandb::WandbOptions options_for(const std::string& base_url, const fs::path& out,
                                std::map<std::string, std::string> env = {}) {
  env.emplace("WANDB_API_KEY", kKey);
  env.emplace("WANDB_BASE_URL", base_url);
  env.emplace("HOME", out.string());
  wandb::WandbOptions o;
  o.output_dir = out;
  o.project = "cotune-test";
  o.run_name = "a test run";
  o.tags = {"lora", "demo"};
  o.notes = "notes here";
  o.config = {{"lr", 2e-4}, {"lora_r", 16}, {"model", "tiny"}, {"target_modules", {"q_proj", "v_proj"}}};
  o.stream_interval_s = 0.05;
  o.stats_interval_s = 0.1;
  o.request_timeout_s = 0.5;
  o.retry_initial_s = 0.05;
  o.retry_max_s = 0.2;
  o.finish_timeout_s = 10;
  o.getenv = [env](const std::string& k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  o.print = [](const std::string&) {};
  return o;
}

Scalars step_scalars(int64_t step) {
  return {{"epoch", step * 0.1}, {"loss", 2.0 / static_cast<double>(step)}, {"lr", 1e-4 * static_cast<double>(step)},
          {"grad_norm", 0.5}, {"tokens", 1000}, {"tokens_per_s", 1234.5}};
}

std::vector<json> history_of(const testing::FakeRun& r) {
  std::vector<json> out;
  if (!r.lines.count("wandb-history.jsonl")) return out;
  for (const auto& l : r.lines.at("wandb-history.jsonl")) out.push_back(json::parse(l));
  return out;
}

void expect_no_key_anywhere(const FakeWandbServer& server, const fs::path& dir) {
  for (const auto& b : server.bodies()) EXPECT_EQ(b.find(kKey), std::string::npos) << "the API key travelled in a body";
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text.find(kKey), std::string::npos) << "the API key is in " << e.path();
  }
}

// ---- the pieces -------------------------------------------------------------------------------

TEST(WandbStore, FramingRoundTripsAcrossBlocks) {
  TempDir tmp;
  const fs::path p = tmp.path() / "run-x.wandb";
  std::vector<std::string> records;
  for (int i = 0; i < 300; ++i) records.push_back(std::string(static_cast<size_t>(i * 37 % 500), static_cast<char>('a' + i % 26)));
  records.push_back(std::string(100000, 'z'));  // spans four blocks: first, middle, middle, last chunks
  records.push_back("");
  {
    wandb::TransactionLog log(p);
    for (const auto& r : records) log.append(r);
    log.close();
  }
  EXPECT_EQ(wandb::read_transaction_log(p), records);
  std::ifstream in(p, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GE(bytes.size(), 14u);
  EXPECT_EQ(bytes.substr(0, 7), std::string(":W&B\xE1\xBE\x00", 7));
  // First chunk: zlib CRC-32 of the type byte then the payload, unmasked, as wandb's leveldb writer.
  const std::string& first = records[0];  // empty record: type 1, length 0
  const unsigned char type = 1;
  const uint32_t crc = static_cast<uint32_t>(::crc32(0L, &type, 1));
  uint32_t stored;
  std::memcpy(&stored, bytes.data() + 7, 4);
  EXPECT_EQ(stored, crc);
  EXPECT_TRUE(first.empty());
  EXPECT_THROW(wandb::TransactionLog again(p), Error);  // never two writers on one log
}

TEST(WandbStore, HistoryRecordFieldNumbers) {
  const std::string rec = wandb::encode_history_record(7, 3, {{"train/loss", "1.5"}});
  const auto fields = parse_message(rec);
  ASSERT_EQ(fields.size(), 2u);
  EXPECT_EQ(fields[0].number, 1u);  // num
  EXPECT_EQ(fields[0].varint, 7u);
  EXPECT_EQ(fields[1].number, 2u);  // history
  const auto hist = parse_message(fields[1].bytes);
  ASSERT_EQ(hist.size(), 2u);
  const auto item = parse_message(hist[0].bytes);
  EXPECT_EQ(item[0].number, 2u);  // nested_key
  EXPECT_EQ(item[0].bytes, "train/loss");
  EXPECT_EQ(item[1].number, 16u);  // value_json
  EXPECT_EQ(item[1].bytes, "1.5");
  EXPECT_EQ(hist[1].number, 2u);  // step { num: 3 }
  EXPECT_EQ(parse_message(hist[1].bytes)[0].varint, 3u);
}

TEST(WandbSettings, EnvironmentNetrcAndPrecedence) {
  TempDir tmp;
  std::ofstream(tmp.path() / ".netrc") << "machine other.host login u password nope\n"
                                       << "machine api.wandb.ai\n  login user\n  password netrc-key-123456\n";
  std::map<std::string, std::string> env = {{"HOME", tmp.path().string()}, {"WANDB_PROJECT", "from-env"},
                                            {"WANDB_ENTITY", "team"}, {"WANDB_TAGS", "a, b"}};
  wandb::WandbOptions o;
  o.output_dir = tmp.path() / "out";
  o.getenv = [&](const std::string& k) -> std::optional<std::string> {
    auto it = env.find(k);
    return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  auto s = wandb::resolve_settings(o);
  EXPECT_EQ(s.mode, wandb::Mode::online);
  EXPECT_EQ(s.api_key, "netrc-key-123456");
  EXPECT_EQ(s.key_source, (tmp.path() / ".netrc").string());
  EXPECT_EQ(s.base_url, "https://api.wandb.ai");
  EXPECT_EQ(s.app_url, "https://wandb.ai");
  EXPECT_EQ(s.project, "from-env");
  EXPECT_EQ(s.entity, "team");
  EXPECT_EQ(s.tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(s.wandb_dir, tmp.path() / "out" / "wandb");
  o.project = "from-recipe";
  env["WANDB_API_KEY"] = "env-key-abcdefgh";
  env["WANDB_DIR"] = "/somewhere";
  env["WANDB_BASE_URL"] = "http://127.0.0.1:9/";
  s = wandb::resolve_settings(o);
  EXPECT_EQ(s.project, "from-recipe");
  EXPECT_EQ(s.api_key, "env-key-abcdefgh");
  EXPECT_EQ(s.key_source, "WANDB_API_KEY");
  EXPECT_EQ(s.wandb_dir, fs::path("/somewhere/wandb"));
  EXPECT_EQ(s.base_url, "http://127.0.0.1:9");
  EXPECT_EQ(s.app_url, "http://127.0.0.1:9");
  env["WANDB_MODE"] = "dryrun";
  EXPECT_EQ(wandb::resolve_settings(o).mode, wandb::Mode::offline);
  o.mode = "disabled";
  EXPECT_EQ(wandb::resolve_settings(o).mode, wandb::Mode::disabled);
  o.mode = "sometimes";
  EXPECT_THROW(wandb::resolve_settings(o), Error);
  o.mode.clear();
  env["WANDB_RESUME"] = "maybe";
  EXPECT_THROW(wandb::resolve_settings(o), Error);
  EXPECT_EQ(wandb::url_host("https://user@api.wandb.ai:443/graphql"), "api.wandb.ai");
  EXPECT_EQ(wandb::new_run_id().size(), 8u);
}

TEST(WandbKeys, HuggingFaceTrainerNames) {
  EXPECT_EQ(wandb_key("loss"), "train/loss");
  EXPECT_EQ(wandb_key("lr"), "train/learning_rate");
  EXPECT_EQ(wandb_key("grad_norm"), "train/grad_norm");
  EXPECT_EQ(wandb_key("epoch"), "train/epoch");
  EXPECT_EQ(wandb_key("tokens_per_s"), "train/tokens_per_second");
  EXPECT_EQ(wandb_key("eval_loss"), "eval/loss");
  EXPECT_EQ(wandb_key("eval_mean_token_accuracy"), "eval/mean_token_accuracy");
}

TEST(SystemMetrics, ProcParsersAndALiveSample) {
  const auto mem = parse_meminfo("MemTotal:       16000000 kB\nMemFree: 1 kB\nMemAvailable:    4000000 kB\n");
  EXPECT_DOUBLE_EQ(mem.total_kb, 16000000);
  EXPECT_DOUBLE_EQ(mem.available_kb, 4000000);
  const auto [rss, threads] = parse_proc_status("Name:\tx\nVmRSS:\t  2048 kB\nThreads:\t7\n");
  EXPECT_DOUBLE_EQ(rss, 2048);
  EXPECT_EQ(threads, 7);
  EXPECT_EQ(parse_proc_stat_cpu_ticks("12 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 100 23 0 0"), 123u);
  const auto cores = parse_core_ticks("cpu  9 9 9 9\ncpu0 10 0 10 80 0 0 0 0\ncpu1 0 0 0 100 0\nintr 1\n");
  ASSERT_EQ(cores.size(), 2u);
  EXPECT_EQ(cores[0], (std::pair<uint64_t, uint64_t>{20, 100}));
  EXPECT_EQ(cores[1], (std::pair<uint64_t, uint64_t>{0, 100}));
  SystemMonitor monitor;
  volatile double sink = 0;
  for (int i = 0; i < 2000000; ++i) sink = sink + i * 1e-9;  // some CPU time to measure
  std::map<std::string, double> m;
  for (const auto& [k, v] : monitor.sample()) m[k] = v;
  ASSERT_TRUE(m.count("cpu"));
  EXPECT_GE(m["cpu"], 0.0);
  ASSERT_TRUE(m.count("memory_percent"));
  EXPECT_GT(m["memory_percent"], 0.0);
  EXPECT_LT(m["memory_percent"], 100.0);
  EXPECT_GT(m["proc.memory.rssMB"], 1.0);
  EXPECT_GE(m["proc.cpu.threads"], 1.0);
  EXPECT_TRUE(m.count("cpu.0.cpu_percent"));
  if (!monitor.has_nvml()) {
    EXPECT_EQ(m.count("gpu.0.gpu"), 0u);
  }
}

// ---- runs against the fake server ------------------------------------------------------------------

TEST(WandbRun, FullRunUploadsConfigHistorySummaryConsoleSystemAndTable) {
  TempDir tmp;
  FakeWandbServer server(kKey);
  auto o = options_for(server.url(), tmp.path());
  std::vector<std::string> printed;
  o.print = [&](const std::string& line) { printed.push_back(line); };
  std::string run_id;
  {
    WandbSink sink(o);
    run_id = sink.run_id();
    EXPECT_EQ(sink.mode(), wandb::Mode::online);
    EXPECT_EQ(sink.run_url(), server.url() + "/fake-entity/cotune-test/runs/" + run_id);
    for (int64_t s = 1; s <= 5; ++s) sink.log(s, step_scalars(s));
    sink.log(5, {{"eval_loss", 1.25}, {"eval_mean_token_accuracy", 0.5}});
    sink.log_console("step 5/5 | loss 0.4\nsecond line");
    sink.log_table(5, "samples", {{"question", "before", "after"}, {{"q1", "b1", "a1"}, {"q2", "b2", "a2"}}});
    sink.log_summary({{"train_runtime", 12.5}});
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a few system-metric samples
    sink.close();
    const auto t = sink.totals();
    EXPECT_EQ(t.history_rows, 7);
    EXPECT_EQ(t.history_uploaded, 7);
    EXPECT_TRUE(t.finished_on_server);
    EXPECT_GE(t.events_rows, 1);
    EXPECT_EQ(t.events_uploaded, t.events_rows);
  }
  EXPECT_EQ(server.problems(), std::vector<std::string>{});
  ASSERT_EQ(server.run_names(), std::vector<std::string>{run_id});
  const auto r = *server.run(run_id);
  EXPECT_EQ(r.entity, "fake-entity");  // the key's default entity (Viewer)
  EXPECT_EQ(r.project, "cotune-test");
  EXPECT_EQ(r.display_name, "a test run");
  EXPECT_EQ(r.notes, "notes here");
  EXPECT_EQ(r.tags, (std::vector<std::string>{"lora", "demo"}));
  EXPECT_EQ(r.config["lr"], 2e-4);
  EXPECT_EQ(r.config["target_modules"], json({"q_proj", "v_proj"}));
  EXPECT_EQ(r.config["cotune_version"], "0.1.0");
  EXPECT_TRUE(r.config.contains("cotune_commit"));

  const auto h = history_of(r);
  ASSERT_EQ(h.size(), 7u);
  for (size_t i = 0; i < h.size(); ++i) EXPECT_EQ(h[i]["_step"], i);
  EXPECT_EQ(h[0]["train/global_step"], 1);
  EXPECT_DOUBLE_EQ(h[0]["train/loss"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(h[2]["train/learning_rate"].get<double>(), 3e-4);
  EXPECT_DOUBLE_EQ(h[4]["train/epoch"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(h[4]["train/tokens_per_second"].get<double>(), 1234.5);
  EXPECT_EQ(h[5]["eval/loss"], 1.25);
  EXPECT_EQ(h[5]["train/global_step"], 5);
  EXPECT_EQ(h[6]["samples"]["_type"], "table-file");
  const std::string table_path = h[6]["samples"]["path"];
  EXPECT_EQ(table_path.rfind("media/table/samples_6_", 0), 0u) << table_path;

  const json summary = json::parse(r.lines.at("wandb-summary.json").at(0));
  EXPECT_DOUBLE_EQ(summary["train/loss"].get<double>(), 0.4);
  EXPECT_EQ(summary["eval/loss"], 1.25);
  EXPECT_EQ(summary["train/train_runtime"], 12.5);
  EXPECT_EQ(summary["samples"]["path"], table_path);

  ASSERT_TRUE(r.lines.count("wandb-events.jsonl"));
  const json ev = json::parse(r.lines.at("wandb-events.jsonl").at(0));
  EXPECT_TRUE(ev.contains("system.cpu"));
  EXPECT_TRUE(ev.contains("system.memory_percent"));
  EXPECT_EQ(ev["_wandb"], true);
  const auto& out = r.lines.at("output.log");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_NE(out[0].find(" step 5/5 | loss 0.4"), std::string::npos);  // "<iso time> <line>"
  EXPECT_NE(out[1].find(" second line"), std::string::npos);

  ASSERT_TRUE(r.uploads.count(table_path));
  EXPECT_EQ(json::parse(r.uploads.at(table_path)),
            json({{"columns", {"question", "before", "after"}}, {"data", {{"q1", "b1", "a1"}, {"q2", "b2", "a2"}}}}));
  for (const char* f : {"wandb-metadata.json", "config.yaml", "output.log", "wandb-summary.json"})
    EXPECT_TRUE(r.uploads.count(f)) << f;
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.exitcode, 0);
  EXPECT_EQ(r.uploaded.size(), r.uploads.size());
  EXPECT_NE(std::find(printed.begin(), printed.end(), "wandb: 🚀 View run at " + server.url() +
                                                          "/fake-entity/cotune-test/runs/" + run_id),
            printed.end());
  expect_no_key_anywhere(server, tmp.path());
}

TEST(WandbRun, ResumeContinuesTheSameRunWithoutDuplicateSteps) {
  TempDir tmp;
  FakeWandbServer server(kKey);
  // The first attempt logged steps 1..4 (its checkpoint was at step 2), then died.
  std::vector<json> old;
  for (int s = 1; s <= 4; ++s) old.push_back({{"_step", s - 1}, {"train/global_step", s}, {"train/loss", 2.0 / s}});
  server.add_run("fake-entity", "cotune-test", "resumeme", old);
  auto o = options_for(server.url(), tmp.path(), {{"WANDB_RUN_ID", "resumeme"}});
  o.resume = true;
  std::vector<std::string> printed;
  o.print = [&](const std::string& line) { printed.push_back(line); };
  {
    WandbSink sink(o);
    EXPECT_EQ(sink.run_id(), "resumeme");
    for (int64_t s = 3; s <= 6; ++s) sink.log(s, step_scalars(s));  // resumed from the step-2 checkpoint
    sink.close();
    EXPECT_EQ(sink.totals().history_skipped, 2);  // steps 3 and 4 are on the server already
  }
  bool reported = false, incomplete = false;
  for (const auto& l : printed) {
    reported |= l.rfind("wandb: uploaded 2/2 history rows", 0) == 0;
    incomplete |= l.find("incomplete") != std::string::npos;
  }
  EXPECT_TRUE(reported) << ::testing::PrintToString(printed);
  EXPECT_FALSE(incomplete) << ::testing::PrintToString(printed);
  EXPECT_EQ(server.problems(), std::vector<std::string>{});
  EXPECT_EQ(server.run_names(), std::vector<std::string>{"resumeme"});
  const auto h = history_of(*server.run("resumeme"));
  ASSERT_EQ(h.size(), 6u);
  for (size_t i = 0; i < h.size(); ++i) {
    EXPECT_EQ(h[i]["_step"], i);
    EXPECT_EQ(h[i]["train/global_step"], i + 1);
  }
  EXPECT_EQ(server.requests("RunResumeStatus"), 1);
}

TEST(WandbRun, ResumeFindsTheOutputFoldersRunWithoutARunId) {
  TempDir tmp;
  FakeWandbServer server(kKey);
  std::string first_id;
  {
    WandbSink sink(options_for(server.url(), tmp.path()));
    first_id = sink.run_id();
    sink.log(1, step_scalars(1));
  }
  auto o = options_for(server.url(), tmp.path());
  o.resume = true;
  WandbSink again(o);
  EXPECT_EQ(again.run_id(), first_id);
  again.log(2, step_scalars(2));
  again.close();
  const auto h = history_of(*server.run(first_id));
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[1]["_step"], 1);
}

TEST(WandbRun, SurvivesFailuresTimeoutsAndDroppedConnectionsWithoutBlocking) {
  TempDir tmp;
  FakeWandbServer server(kKey);
  auto o = options_for(server.url(), tmp.path());
  o.system_metrics = false;
  std::string id;
  double slowest_log_s = 0;
  {
    WandbSink sink(o);
    id = sink.run_id();
    server.fail_500 = 3;
    server.drop = 2;
    server.hang = 2;       // each past the client's 0.5 s timeout
    server.hang_ms = 900;
    for (int64_t s = 1; s <= 40; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      sink.log(s, step_scalars(s));
      slowest_log_s =
          std::max(slowest_log_s, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    sink.close();
    const auto t = sink.totals();
    EXPECT_GE(t.failed_requests, 5);
    EXPECT_EQ(t.history_uploaded, 40);
    EXPECT_TRUE(t.finished_on_server);
  }
  EXPECT_LT(slowest_log_s, 0.1) << "log() waited for the network";
  EXPECT_EQ(server.problems(), std::vector<std::string>{});
  const auto h = history_of(*server.run(id));
  ASSERT_EQ(h.size(), 40u);  // a dropped reply was retried at the same offset: no duplicates
  for (size_t i = 0; i < h.size(); ++i) EXPECT_EQ(h[i]["train/global_step"], i + 1);
}

TEST(WandbRun, ServerGoneMidRunLeavesACompleteLocalRunAndSaysHowToSync) {
  TempDir tmp;
  auto server = std::make_unique<FakeWandbServer>(kKey);
  auto o = options_for(server->url(), tmp.path());
  o.finish_timeout_s = 0.6;
  std::vector<std::string> printed;
  o.print = [&](const std::string& line) { printed.push_back(line); };
  WandbSink sink(o);
  sink.log(1, step_scalars(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  server->stop();  // gone for good
  for (int64_t s = 2; s <= 10; ++s) sink.log(s, step_scalars(s));
  const auto t0 = std::chrono::steady_clock::now();
  sink.close();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 3.0);
  EXPECT_FALSE(sink.totals().finished_on_server);
  bool told = false;
  for (const auto& l : printed) told |= l.find("wandb sync --include-online " + sink.run_dir().string()) != std::string::npos;
  EXPECT_TRUE(told);
  // The transaction log has every step, for `wandb sync`.
  int history = 0, exits = 0;
  for (const auto& rec : wandb::read_transaction_log(sink.transaction_log_path()))
    for (const auto& f : parse_message(rec)) {
      history += f.number == 2;
      exits += f.number == 18;
    }
  EXPECT_EQ(history, 10);
  EXPECT_EQ(exits, 1);
}

TEST(WandbRun, WrongKeyFailsAtStartWithAClearMessage) {
  TempDir tmp;
  FakeWandbServer server("the-right-key-0123456789abcdef0123456789");
  try {
    WandbSink sink(options_for(server.url(), tmp.path()));
    FAIL() << "a wrong key was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("WANDB_API_KEY"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rejected"), std::string::npos) << msg;
    EXPECT_NE(msg.find("HTTP 401"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(kKey), std::string::npos) << "the message shows the key";
  }
  EXPECT_EQ(server.requests("UpsertBucket"), 0);
  auto o = options_for(server.url(), tmp.path(), {{"WANDB_API_KEY", ""}});
  try {
    WandbSink sink(o);
    FAIL() << "no key was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("wandb login"), std::string::npos) << e.what();
  }
}

TEST(WandbRun, UnreachableServerFallsBackToAnOfflineRun) {
  TempDir tmp;
  int dead_port;
  {
    FakeWandbServer gone(kKey);
    dead_port = gone.port();
  }
  auto o = options_for("http://127.0.0.1:" + std::to_string(dead_port), tmp.path());
  WandbSink sink(o);
  EXPECT_EQ(sink.mode(), wandb::Mode::offline);
  EXPECT_EQ(sink.run_dir().filename().string().rfind("offline-run-", 0), 0u) << sink.run_dir();
  sink.log(1, step_scalars(1));
  sink.close();
  EXPECT_TRUE(fs::exists(sink.transaction_log_path()));
}

TEST(WandbRun, OfflineRunWritesTheClientsRecords) {
  TempDir tmp;
  auto o = options_for("http://127.0.0.1:9", tmp.path(), {{"WANDB_MODE", "offline"}, {"WANDB_RUN_ID", "off1234"}});
  fs::path log_path;
  {
    WandbSink sink(o);
    EXPECT_EQ(sink.run_dir().parent_path(), tmp.path() / "wandb");
    EXPECT_EQ(sink.run_dir().filename().string().substr(0, 12), "offline-run-");
    for (int64_t s = 1; s <= 3; ++s) sink.log(s, step_scalars(s));
    sink.log_table(3, "samples", {{"q", "a"}, {{"x", "y"}}});
    sink.log_console("hello console");
    log_path = sink.transaction_log_path();
    EXPECT_EQ(log_path.filename(), "run-off1234.wandb");
  }
  std::map<uint32_t, int> kinds;
  std::string run_id, project, display_name;
  std::vector<std::string> history_keys, output_lines, file_paths;
  int exit_code = -1;
  for (const auto& rec : wandb::read_transaction_log(log_path)) {
    const auto fields = parse_message(rec);
    ASSERT_FALSE(fields.empty());
    EXPECT_EQ(fields[0].number, 1u);  // num
    for (const auto& f : fields) {
      if (f.number == 1) continue;
      ++kinds[f.number];
      const auto body = parse_message(f.bytes);
      if (f.number == 17)  // run
        for (const auto& g : body) {
          if (g.number == 1) run_id = g.bytes;
          if (g.number == 3) project = g.bytes;
          if (g.number == 8) display_name = g.bytes;
        }
      if (f.number == 2)  // history items
        for (const auto& g : body)
          if (g.number == 1) history_keys.emplace_back(parse_message(g.bytes)[0].bytes);
      if (f.number == 13)  // output_raw line
        for (const auto& g : body)
          if (g.number == 3) output_lines.emplace_back(g.bytes);
      if (f.number == 6)
        for (const auto& g : body) file_paths.emplace_back(parse_message(g.bytes)[0].bytes);
      if (f.number == 18) {
        exit_code = 0;
        for (const auto& g : body)
          if (g.number == 1) exit_code = static_cast<int>(g.varint);
      }
    }
  }
  EXPECT_EQ(run_id, "off1234");
  EXPECT_EQ(project, "cotune-test");
  EXPECT_EQ(display_name, "a test run");
  EXPECT_EQ(kinds[17], 1);  // one run record, first
  EXPECT_EQ(kinds[2], 4);   // 3 steps + the table
  EXPECT_GE(kinds[7], 1);   // stats
  EXPECT_EQ(kinds[18], 1);  // exit
  EXPECT_EQ(exit_code, 0);
  EXPECT_NE(std::find(history_keys.begin(), history_keys.end(), "train/loss"), history_keys.end());
  EXPECT_NE(std::find(output_lines.begin(), output_lines.end(), "hello console\n"), output_lines.end());
  for (const auto& p : file_paths) EXPECT_TRUE(fs::exists(log_path.parent_path() / "files" / p)) << p;
  EXPECT_NE(std::find(file_paths.begin(), file_paths.end(), "wandb-summary.json"), file_paths.end());
}

TEST(WandbRun, DisabledModeDoesNothing) {
  TempDir tmp;
  auto o = options_for("http://127.0.0.1:9", tmp.path(), {{"WANDB_MODE", "disabled"}});
  EXPECT_EQ(make_wandb_sink(o), nullptr);
  EXPECT_FALSE(fs::exists(tmp.path() / "wandb"));
}

}  // namespace
}  // namespace cotune::track
