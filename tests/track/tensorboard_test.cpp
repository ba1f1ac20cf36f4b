#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <regex>

#include "common/test_paths.h"
#include "event_decoder.h"
#include "temp_dir.h"
#include "track/metrics.h"
#include "track/tensorboard.h"

namespace cotune::track {
namespace {
namespace fs = std::filesystem;
using testing::decode_event;
using testing::DecodedEvent;

std::vector<DecodedEvent> decode_file(const fs::path& p) {
  std::vector<DecodedEvent> out;
  for (const auto& r : read_tfrecords(p, /*allow_torn_tail=*/false)) out.push_back(decode_event(r));
  return out;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(TensorBoard, TagNames) {
  EXPECT_EQ(tensorboard_tag("loss"), "train/loss");
  EXPECT_EQ(tensorboard_tag("grad_norm"), "train/grad_norm");
  EXPECT_EQ(tensorboard_tag("eval_loss"), "eval/loss");
  EXPECT_EQ(tensorboard_tag("eval_mean_token_accuracy"), "eval/mean_token_accuracy");
}

TEST(TensorBoard, FileNameAndFirstEvent) {
  testing::TempDir dir;
  TensorBoardSink tb(dir.path() / "tb");
  EXPECT_TRUE(std::regex_match(tb.path().filename().string(), std::regex(R"(events\.out\.tfevents\.\d{10}\..+)")))
      << tb.path();
  tb.close();
  auto ev = decode_file(tb.path());
  ASSERT_EQ(ev.size(), 2u);
  ASSERT_TRUE(ev[0].file_version.has_value());
  EXPECT_EQ(*ev[0].file_version, "brain.Event:2");
  EXPECT_GT(ev[0].wall_time, 1.6e9);  // a real clock, seconds since 1970
  // A fresh run: SessionLog START at step 1 hides an older run's events in the same folder.
  EXPECT_EQ(ev[1].session_status, 1);
  EXPECT_EQ(ev[1].step, 1);
  EXPECT_TRUE(ev[1].values.empty());
}

TEST(TensorBoard, RoundTripScalarsAndText) {
  testing::TempDir dir;
  TensorBoardSink tb(dir.path(), {.wall_time = 1700000000.25, .hostname = "h"});
  tb.log(1, {{"loss", 2.5}, {"lr", 2e-4}, {"grad_norm", 0.75}});
  tb.log(2, {{"loss", 2.25}, {"lr", 1.5e-4}});
  tb.log(2, {{"eval_loss", 2.125}});
  tb.log(3, {});  // nothing to write: no record
  tb.log_text(2, "sample/after", "<think>reason</think> answer");
  EXPECT_EQ(tb.path().filename().string(), "events.out.tfevents.1700000000.h");

  // Flushed per record: readable while the sink is still open.
  auto ev = decode_file(tb.path());
  ASSERT_EQ(ev.size(), 6u);
  EXPECT_EQ(ev[0].file_version, "brain.Event:2");
  EXPECT_EQ(ev[1].session_status, 1);
  ev.erase(ev.begin() + 1);  // from here on: the logged records
  EXPECT_DOUBLE_EQ(ev[1].wall_time, 1700000000.25);
  EXPECT_EQ(ev[1].step, 1);
  ASSERT_EQ(ev[1].values.size(), 3u);
  // Sorted by key (Scalars is a sorted map): grad_norm, loss, lr.
  EXPECT_EQ(ev[1].values[0].tag, "train/grad_norm");
  EXPECT_EQ(ev[1].values[0].simple_value, 0.75f);
  EXPECT_EQ(ev[1].values[1].tag, "train/loss");
  EXPECT_EQ(ev[1].values[1].simple_value, 2.5f);
  EXPECT_EQ(ev[1].values[2].tag, "train/lr");
  EXPECT_EQ(ev[1].values[2].simple_value, 2e-4f);
  EXPECT_EQ(ev[2].step, 2);
  EXPECT_EQ(ev[3].step, 2);
  ASSERT_EQ(ev[3].values.size(), 1u);
  EXPECT_EQ(ev[3].values[0].tag, "eval/loss");
  EXPECT_EQ(ev[3].values[0].simple_value, 2.125f);
  ASSERT_EQ(ev[4].values.size(), 1u);
  EXPECT_EQ(ev[4].values[0].tag, "sample/after");
  EXPECT_EQ(ev[4].values[0].text, "<think>reason</think> answer");
  EXPECT_EQ(ev[4].values[0].plugin_name, "text");
  EXPECT_FALSE(ev[4].values[0].simple_value.has_value());
}

TEST(TensorBoard, ResumeWritesSessionStartAndNewFile) {
  testing::TempDir dir;
  fs::path first, second;
  {
    TensorBoardSink tb(dir.path(), {.wall_time = 1700000000.0, .hostname = "h"});
    tb.log(1, {{"loss", 1.0}});
    first = tb.path();
  }
  {
    TensorBoardSink tb(dir.path(), {.resume_step = 40, .wall_time = 1700000000.0, .hostname = "h"});
    second = tb.path();
  }
  EXPECT_NE(first, second);  // same second: a ".1" suffix, never an overwrite
  EXPECT_EQ(second.filename().string(), "events.out.tfevents.1700000000.h.1");
  EXPECT_EQ(decode_file(first).size(), 3u);
  auto ev = decode_file(second);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[1].session_status, 1);  // START
  EXPECT_EQ(ev[1].step, 41);
}

TEST(TensorBoard, LargeAndNegativeStepsEncode) {
  const auto e = decode_event(encode_scalars_event(0.5, int64_t{1} << 40, {{"t", -3.5f}}));
  EXPECT_EQ(e.step, int64_t{1} << 40);
  EXPECT_EQ(e.values.at(0).simple_value, -3.5f);
  EXPECT_EQ(decode_event(encode_scalars_event(0.5, -2, {})).step, -2);
}

TEST(TensorBoard, ThroughTheHubFactory) {
  testing::TempDir dir;
  auto hub = MetricsHub::open({"tensorboard"}, dir.path());
  hub.log(5, {{"loss", 3.0}});
  hub.close();
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir.path() / "tb")) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  auto ev = decode_file(files[0]);
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[2].step, 5);
  EXPECT_EQ(ev[2].values.at(0).tag, "train/loss");
}

// The bytes of a small fixed run, pinned. tools/check_tensorboard.py reads the same golden file with the
// tensorboard package, so the exact bytes checked here are bytes TensorBoard is known to accept.
// Regenerate (after an intended format change) with COTUNE_UPDATE_GOLDEN=1.
void write_golden_run(const fs::path& dir) {
  TensorBoardSink tb(dir, {.wall_time = 1700000000.5, .hostname = "golden-host"});
  for (int step = 1; step <= 4; ++step) {
    tb.log(step, {{"loss", 3.0 - 0.25 * step}, {"lr", 1e-4 * step}, {"grad_norm", 0.5 + step}, {"tokens", 100.0 * step}});
  }
  tb.log(4, {{"eval_loss", 2.125}, {"eval_mean_token_accuracy", 0.5}});
  tb.log_text(4, "sample/after", "<think>short reasoning</think> answer");
}

TEST(TensorBoard, GoldenBytes) {
  testing::TempDir dir;
  write_golden_run(dir.path());
  const fs::path name = "events.out.tfevents.1700000000.golden-host";
  const fs::path golden = fs::path(cotune::testing::golden_dir()) / "track" / "tb" / name;
  const std::string bytes = slurp(dir.path() / name);
  if (const char* u = std::getenv("COTUNE_UPDATE_GOLDEN"); u && *u == '1') {
    fs::create_directories(golden.parent_path());
    std::ofstream(golden, std::ios::binary) << bytes;
  }
  if (!fs::exists(golden)) GTEST_SKIP() << "golden file missing: " << golden << " (COTUNE_UPDATE_GOLDEN=1 writes it)";
  EXPECT_EQ(bytes, slurp(golden)) << "event bytes differ from " << golden;
  auto ev = decode_file(golden);
  ASSERT_EQ(ev.size(), 8u);
  EXPECT_EQ(ev[5].step, 4);
  EXPECT_EQ(ev[5].values.at(1).simple_value, 2.0f);  // loss at step 4 (keys sorted: grad_norm, loss, ...)
}

}  // namespace
}  // namespace cotune::track
