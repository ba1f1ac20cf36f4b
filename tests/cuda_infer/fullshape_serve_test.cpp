// The serving decode step at the full DeepSeek-R1-Distill-Qwen-1.5B shape (gpu; the random bf16 model that
// tests/cuda_infer/fullshape_vs_transformers.sh makes, found through COTUNE_FULLSHAPE_DIR/model; skipped without it):
//   - a batched decode step (decode_select over 32 slots of different lengths, paged KV cache, one CUDA graph)
//     gives the logits of per-slot batch-1 decoding (the fused step) within bf16 tolerance and the same greedy ids
//     wherever the choice is not a bf16 near-tie, teacher-forced on the batch-1 ids;
//   - the time of a step for 1, 2, 4, ..., 64 rows, printed as tokens/s; the target is that 32 rows give
//     >= 10x the tokens/s of one.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <random>

#include "cuda_test_util.h"
#include "infer/generator.h"
#include "kernels/cuda/context.h"
#include "model/qwen2.h"

namespace cotune {
namespace {

std::string fullshape_model() {
  const char* d = std::getenv("COTUNE_FULLSHAPE_DIR");
  if (!d || !*d) return {};
  const std::string m = std::string(d) + "/model";
  return std::filesystem::exists(m + "/config.json") ? m : std::string();
}

std::vector<std::vector<int32_t>> random_prompts(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, 151000), len(12, 48);
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(n));
  for (auto& p : out) {
    p.resize(static_cast<size_t>(len(rng)));
    for (auto& x : p) x = id(rng);
  }
  return out;
}

TEST(FullShapeServe, BatchedPagedDecodeFollowsBatch1AndScales) {
  COTUNE_REQUIRE_GPU();
  const std::string dir = fullshape_model();
  if (dir.empty()) GTEST_SKIP() << "COTUNE_FULLSHAPE_DIR/model not set (tests/cuda_infer/fullshape_vs_transformers.sh makes it)";
  model::LoadOptions o;
  o.device = Device::cuda;
  model::Qwen2Model m = model::Qwen2Model::load(dir, o);
  const int64_t V = m.config().vocab_size, selectable = 151665;
  const auto prompts = random_prompts(64, 5);
  const int compared = 4, steps = 16;
  std::vector<infer::SelectParams> g1(1);

  // Batch 1, one prompt at a time: ids and logits of every step.
  std::vector<std::vector<int32_t>> ids(compared);
  std::vector<std::vector<std::vector<float>>> lg(compared);
  infer::GeneratorOptions one;
  one.max_batch = 1;
  infer::Generator lone(m, nullptr, one);
  lone.reserve(1024);
  lone.set_selectable(selectable);
  for (int i = 0; i < compared; ++i) {
    int32_t next = lone.prefill_select({0}, {prompts[static_cast<size_t>(i)]}, g1)[0];
    for (int s = 0; s < steps; ++s) {
      ids[static_cast<size_t>(i)].push_back(next);
      next = lone.decode_select({0}, {next}, g1)[0];
      lg[static_cast<size_t>(i)].push_back(lone.last_logits(1));
    }
    lone.release_slot(0);
  }

  infer::GeneratorOptions many;
  many.max_batch = 64;
  infer::Generator gen(m, nullptr, many);
  gen.reserve(1024);
  gen.set_selectable(selectable);
  gen.warm_decode_graphs();
  std::vector<int32_t> slots;
  for (int32_t s = 0; s < 64; ++s) slots.push_back(63 - s);  // slots out of order
  std::vector<infer::SelectParams> g64(64);
  std::vector<int32_t> next = gen.prefill_select(slots, prompts, g64);

  // 32 rows decoded together; the first `compared` fed the batch-1 ids.
  const int64_t n = 32;
  std::vector<int32_t> sl(slots.begin(), slots.begin() + n);
  std::vector<infer::SelectParams> gn(static_cast<size_t>(n));
  int agree = 0, decided = 0;
  double worst = 0.0;
  for (int s = 0; s < steps; ++s) {
    std::vector<int32_t> feed(next.begin(), next.begin() + n);
    for (int i = 0; i < compared; ++i) feed[static_cast<size_t>(i)] = ids[static_cast<size_t>(i)][static_cast<size_t>(s)];
    const std::vector<int32_t> got = gen.decode_select(sl, feed, gn);
    const std::vector<float> rows = gen.last_logits(compared);
    for (int i = 0; i < compared; ++i) {
      const std::vector<float> row(rows.begin() + static_cast<int64_t>(i) * V, rows.begin() + static_cast<int64_t>(i + 1) * V);
      const auto& ref = lg[static_cast<size_t>(i)][static_cast<size_t>(s)];
      const double err = testing::rel_err(row, ref);
      worst = std::max(worst, err);
      EXPECT_LT(err, 2e-2) << "prompt " << i << " step " << s;
      float a = -INFINITY, b = -INFINITY, diff = 0.0f;
      int64_t best = 0;
      for (int64_t j = 0; j < selectable; ++j) {
        const float r = ref[static_cast<size_t>(j)], g = row[static_cast<size_t>(j)];
        if (r > a) b = a, a = r;
        else if (r > b) b = r;
        if (g > row[static_cast<size_t>(best)]) best = j;
        diff = std::max(diff, std::fabs(r - g));
      }
      EXPECT_EQ(got[static_cast<size_t>(i)], static_cast<int32_t>(best)) << "the chosen id is the step's arg-max";
      // Away from bf16 near-ties (top two further apart than twice the rows' largest difference) the ids must agree.
      if (s + 1 < steps && a - b > 2.0f * diff) {
        ++decided;
        agree += got[static_cast<size_t>(i)] == ids[static_cast<size_t>(i)][static_cast<size_t>(s + 1)] ? 1 : 0;
      }
    }
    for (int64_t r = 0; r < n; ++r) next[static_cast<size_t>(r)] = got[static_cast<size_t>(r)];
  }
  fmt::print("batched (32 rows) vs batch 1: worst logits rel. error {:.2e}; greedy ids agree at {}/{} decided steps\n",
             worst, agree, decided);
  EXPECT_EQ(agree, decided);

  // Step time by batch size (graphs captured by warm_decode_graphs).
  double tok_s[65] = {};
  for (int64_t rows_n : {1, 2, 4, 8, 16, 32, 64}) {
    std::vector<int32_t> s2(slots.begin(), slots.begin() + rows_n), tk(next.begin(), next.begin() + rows_n);
    std::vector<infer::SelectParams> gp(static_cast<size_t>(rows_n));
    for (int w = 0; w < 2; ++w) tk = gen.decode_select(s2, tk, gp);
    const int reps = 24;
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) tk = gen.decode_select(s2, tk, gp);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    for (int64_t r = 0; r < rows_n; ++r) next[static_cast<size_t>(r)] = tk[static_cast<size_t>(r)];
    tok_s[rows_n] = static_cast<double>(rows_n) / sec;
    fmt::print("decode_select {:3d} rows: {:7.3f} ms a step, {:9.1f} tok/s ({:5.2f}x one row)\n", rows_n, 1e3 * sec,
               tok_s[rows_n], tok_s[rows_n] / tok_s[1]);
  }
  // The batch-1 generator's own step (bucket 1 of a max_batch 1 generator: the fused step).
  {
    int32_t t = lone.prefill_select({0}, {prompts[0]}, g1)[0];
    for (int w = 0; w < 3; ++w) t = lone.decode_select({0}, {t}, g1)[0];
    const int reps = 48;
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) t = lone.decode_select({0}, {t}, g1)[0];
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    fmt::print("batch-1 generator: {:7.3f} ms a step, {:9.1f} tok/s\n", 1e3 * sec, 1.0 / sec);
  }
  EXPECT_GE(tok_s[32], 10.0 * tok_s[1]) << "issue 18: 32 rows should give >= 10x the tokens/s of one";
}

}  // namespace
}  // namespace cotune
