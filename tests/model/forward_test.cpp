// The Qwen2 forward pass on CPU against transformers (fp32, eager attention), from the goldens of
// tools/make_golden.py: packed variable-length batches, logits within 1e-4 absolute.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/test_paths.h"
#include "formats/safetensors.h"
#include "golden_io.h"
#include "model/qwen2.h"

namespace cotune {
namespace {

class GoldenForward : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenForward, PackedLogitsMatchTransformers) {
  const std::string dir = testing::golden_dir() + "/model/" + GetParam();
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  auto golden = formats::SafetensorsFile::open(dir + "/forward.safetensors");
  model::PackedBatch batch = testing::read_batch(golden);
  std::vector<float> want = testing::read_f32(golden, "logits");

  model::RunnerOptions ro;
  ro.max_tokens = 64;
  ro.training = false;
  model::Qwen2Runner runner(m, nullptr, ro);
  std::vector<float> got = runner.forward_logits(batch);
  ASSERT_EQ(got.size(), want.size());
  float max_err = 0.0f;
  for (size_t i = 0; i < got.size(); ++i) max_err = std::max(max_err, std::fabs(got[i] - want[i]));
  EXPECT_LE(max_err, 1e-4f) << "max |logit - transformers| over " << got.size() << " logits";

  // The fused chunked LM-head cross-entropy gives the same per-token losses; a small chunk forces
  // several chunks over the batch.
  ro.ce_chunk = 7;
  model::Qwen2Runner runner2(m, nullptr, ro);
  model::StepStats st = runner2.forward_backward(batch, false, 1.0f);
  std::vector<float> losses = testing::read_f32(golden, "losses");
  double want_sum = 0;
  for (float l : losses) want_sum += l;
  EXPECT_EQ(st.counted, batch.counted());
  EXPECT_NEAR(st.loss_sum, want_sum, 1e-5 * std::fabs(want_sum));
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenForward, ::testing::Values("r1like", "tied"));

TEST(Forward, PackingIsolatesSequences) {
  // Logits of a sequence do not depend on what it is packed with.
  const std::string dir = testing::golden_dir() + "/model/r1like";
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  model::RunnerOptions ro;
  ro.max_tokens = 64;
  ro.training = false;
  model::Qwen2Runner runner(m, nullptr, ro);
  std::vector<int32_t> a = {5, 6, 7, 8, 9}, b = {100, 101, 102};
  auto alone = runner.forward_logits(model::PackedBatch::from_sequences({b}));
  auto packed = runner.forward_logits(model::PackedBatch::from_sequences({a, b}));
  const size_t V = static_cast<size_t>(m.config().vocab_size);
  ASSERT_EQ(packed.size(), 8 * V);
  for (size_t i = 0; i < alone.size(); ++i) ASSERT_NEAR(alone[i], packed[5 * V + i], 1e-5f) << i;
}

TEST(Forward, RejectsBadBatch) {
  const std::string dir = testing::golden_dir() + "/model/tied";
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  model::RunnerOptions ro;
  ro.max_tokens = 8;
  ro.training = false;
  model::Qwen2Runner runner(m, nullptr, ro);
  std::vector<int32_t> long_seq(9, 3);
  EXPECT_THROW(runner.forward_logits(model::PackedBatch::from_sequences({long_seq})), Error);
  EXPECT_THROW(runner.forward_logits(model::PackedBatch::from_sequences({{3, 99999}})), Error);
}

}  // namespace
}  // namespace cotune
