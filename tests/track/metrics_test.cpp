#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <cmath>
#include <fstream>
#include <limits>

#include "base/error.h"
#include "temp_dir.h"
#include "track/metrics.h"

namespace cotune::track {
namespace {
namespace fs = std::filesystem;

std::vector<std::string> lines_of(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST(Jsonl, LineFormat) {
  const Scalars s = {{"zeta", 1.5},    {"loss", 2.25},      {"lr", 2e-4},      {"tokens", 1830},
                     {"epoch", 0.25},  {"grad_norm", 0.5},  {"elapsed_s", 4.0}, {"tokens_per_s", 457.5},
                     {"mean_token_accuracy", 0.625}};
  EXPECT_EQ(metrics_json_line(7, s),
            R"({"step":7,"epoch":0.25,"loss":2.25,"lr":0.0002,"grad_norm":0.5,"tokens":1830,)"
            R"("mean_token_accuracy":0.625,"tokens_per_s":457.5,"elapsed_s":4.0,"zeta":1.5})");
  // JSON has no NaN: null. A fractional token count stays a number.
  EXPECT_EQ(metrics_json_line(1, {{"loss", std::numeric_limits<double>::quiet_NaN()}, {"tokens", 2.5}}),
            R"({"step":1,"loss":null,"tokens":2.5})");
  EXPECT_EQ(metrics_json_line(3, {{"eval_loss", 1.5}}), R"({"step":3,"eval_loss":1.5})");
}

TEST(Jsonl, FlushedPerLineAndEvalSeparate) {
  testing::TempDir dir;
  JsonlSink sink(dir.path() / "out" / "metrics.jsonl");
  sink.log(1, {{"loss", 2.0}});
  sink.log(2, {{"loss", 1.5}});
  sink.log(2, {{"eval_loss", 1.75}});
  // Nothing buffered: the file holds every line while the sink is open.
  auto lines = lines_of(dir.path() / "out" / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[2], R"({"step":2,"eval_loss":1.75})");
  sink.close();
  sink.close();  // idempotent
  EXPECT_THROW(sink.log(3, {{"loss", 1.0}}), Error);
}

TEST(Jsonl, FreshRunTruncates) {
  testing::TempDir dir;
  const auto p = dir.path() / "metrics.jsonl";
  std::ofstream(p) << R"({"step":1,"loss":9})" << "\n";
  { JsonlSink sink(p); sink.log(1, {{"loss", 1.0}}); }
  auto lines = lines_of(p);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], R"({"step":1,"loss":1.0})");
}

TEST(Jsonl, ResumeKeepsStepsUpToCheckpointAndDropsTornLine) {
  testing::TempDir dir;
  const auto p = dir.path() / "metrics.jsonl";
  {
    std::ofstream f(p);
    f << R"({"step":1,"loss":3})" << "\n" << R"({"step":2,"loss":2.5})" << "\n" << R"({"step":2,"eval_loss":2.7})" << "\n"
      << R"({"step":3,"loss":2.1})" << "\n" << R"({"step":4,"lo)";  // killed mid-write
  }
  {
    JsonlSink sink(p, /*resume_step=*/2);
    sink.log(3, {{"loss", 2.0}});
  }
  auto lines = lines_of(p);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[2], R"({"step":2,"eval_loss":2.7})");
  EXPECT_EQ(lines[3], R"({"step":3,"loss":2.0})");

  // Damage in the middle is not silently dropped.
  {
    std::ofstream f(p);
    f << R"({"step":1,"loss":3})" << "\n" << "garbage\n" << R"({"step":2,"loss":2})" << "\n";
  }
  EXPECT_THROW(JsonlSink(p, 1), Error);
}

// Issue 14 item 11: a disk that fills mid-write never leaves a torn last line. The child process writes
// under a file-size limit (RLIMIT_FSIZE: writes past it fail with EFBIG, as on a full disk); the line that
// does not fit is cut back and the error names the file.
TEST(Jsonl, FullDiskLeavesNoTornLine) {
  testing::TempDir dir;
  const auto p = dir.path() / "metrics.jsonl";
  std::fflush(nullptr);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int code = 3;
    try {
      JsonlSink sink(p, std::nullopt);
      sink.log(1, {{"loss", 2.5}});
      std::signal(SIGXFSZ, SIG_IGN);
      const rlimit lim{static_cast<rlim_t>(fs::file_size(p) + 10), static_cast<rlim_t>(fs::file_size(p) + 10)};
      ::setrlimit(RLIMIT_FSIZE, &lim);
      sink.log(2, {{"loss", 2.25}, {"grad_norm", 1.5}, {"mean_token_accuracy", 0.5}});
      code = 2;  // the write should have failed
    } catch (const Error& e) {
      code = std::string(e.what()).find(p.string()) != std::string::npos ? 0 : 4;
    }
    std::_Exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const auto lines = lines_of(p);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], R"({"step":1,"loss":2.5})");
  EXPECT_EQ(fs::file_size(p), lines[0].size() + 1);
}

TEST(Jsonl, ReadBackDropsATornLastLine) {
  testing::TempDir dir;
  const auto p = dir.path() / "metrics.jsonl";
  std::ofstream(p) << R"({"step":1,"loss":3})" << "\n" << R"({"step":2,"lo)";
  const History h = read_metrics_jsonl(p);
  ASSERT_EQ(h.series("loss").size(), 1u);
}

TEST(Jsonl, ReadBack) {
  testing::TempDir dir;
  const auto p = dir.path() / "metrics.jsonl";
  {
    JsonlSink sink(p);
    sink.log(1, {{"loss", 2.0}, {"lr", 1e-4}});
    sink.log(2, {{"loss", std::numeric_limits<double>::infinity()}});
    sink.log(2, {{"eval_loss", 1.5}});
    sink.log(3, {{"loss", 1.0}});
  }
  History h = read_metrics_jsonl(p);
  ASSERT_EQ(h.series("loss").size(), 2u);  // the null (Inf) is skipped
  EXPECT_EQ(h.series("loss")[1].step, 3);
  EXPECT_EQ(h.series("eval_loss").at(0).value, 1.5);
  EXPECT_EQ(*h.last("lr"), 1e-4);
  EXPECT_EQ(read_metrics_jsonl(p, 2).series("loss").size(), 1u);

  std::ofstream(p, std::ios::app) << "{\"loss\": 1}\n";
  try {
    read_metrics_jsonl(p);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 5"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("step"), std::string::npos) << e.what();
  }
}

// A sink that records calls, to test the hub's fan-out.
struct RecordingSink : MetricsSink {
  std::vector<std::string>* log_;
  explicit RecordingSink(std::vector<std::string>* log) : log_(log) {}
  void log(int64_t step, const Scalars& s) override { log_->push_back(fmt::format("log {} {}", step, s.size())); }
  void log_text(int64_t step, std::string_view tag, std::string_view) override {
    log_->push_back(fmt::format("text {} {}", step, tag));
  }
  void flush() override { log_->push_back("flush"); }
  void close() override { log_->push_back("close"); }
  std::string_view name() const override { return "rec"; }
};

TEST(Hub, FansOutAndKeepsHistory) {
  std::vector<std::string> a, b;
  MetricsHub hub;
  hub.add_sink(std::make_unique<RecordingSink>(&a));
  hub.add_sink(std::make_unique<RecordingSink>(&b));
  hub.log(1, {{"loss", 2.0}, {"lr", 0.1}});
  hub.log(2, {{"loss", 1.0}});
  hub.log_text(2, "sample", "x");
  hub.flush();
  hub.close();
  const std::vector<std::string> expected = {"log 1 2", "log 2 1", "text 2 sample", "flush", "close"};
  EXPECT_EQ(a, expected);
  EXPECT_EQ(b, expected);
  EXPECT_EQ(hub.history().series("loss").size(), 2u);
  EXPECT_EQ(hub.history().series("lr").size(), 1u);
  EXPECT_TRUE(hub.history().series("nope").empty());
  EXPECT_EQ(hub.history().keys(), (std::vector<std::string>{"loss", "lr"}));
}

TEST(Hub, FactoryByName) {
  testing::TempDir dir;
  auto hub = MetricsHub::open({"jsonl", "tensorboard"}, dir.path());
  EXPECT_EQ(hub.sink_names(), (std::vector<std::string>{"jsonl", "tensorboard"}));
  hub.log(1, {{"loss", 1.25}});
  hub.close();
  EXPECT_TRUE(fs::exists(dir.path() / "metrics.jsonl"));
  EXPECT_TRUE(fs::is_directory(dir.path() / "tb"));
  EXPECT_EQ(lines_of(dir.path() / "metrics.jsonl").at(0), R"({"step":1,"loss":1.25})");

  try {
    MetricsHub::open({"jsonl", "mlflow"}, dir.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("mlflow"), std::string::npos) << m;
    EXPECT_NE(m.find("tensorboard"), std::string::npos) << m;  // lists the known names
  }
  EXPECT_THROW(MetricsHub::open({"jsonl", "jsonl"}, dir.path()), Error);
  EXPECT_TRUE(MetricsHub::open({}, dir.path()).sink_names().empty());
  EXPECT_TRUE(MetricsHub::open({"none"}, dir.path()).sink_names().empty());
}

TEST(Hub, ResumePreloadsHistory) {
  testing::TempDir dir;
  {
    auto hub = MetricsHub::open({"jsonl"}, dir.path());
    for (int s = 1; s <= 5; ++s) hub.log(s, {{"loss", 5.0 - s}});
  }
  auto hub = MetricsHub::open({"jsonl"}, dir.path(), 3);
  EXPECT_EQ(hub.history().series("loss").size(), 3u);
  hub.log(4, {{"loss", 0.5}});
  hub.close();
  EXPECT_EQ(hub.history().series("loss").back().value, 0.5);
  EXPECT_EQ(lines_of(dir.path() / "metrics.jsonl").size(), 4u);
}

}  // namespace
}  // namespace cotune::track
