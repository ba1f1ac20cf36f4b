// The serving decode step at the full DeepSeek-R1-Distill-Qwen-1.5B shape (gpu; the random bf16 model that
// tests/cuda_infer/fullshape_vs_transformers.sh makes, found through COTUNE_FULLSHAPE_DIR/model; skipped without it):
//   - a batched decode step (decode_select over 32 slots of different lengths, paged KV cache, one CUDA graph) and
//     per-slot batch-1 decoding (the fused step), both teacher-forced on transformers' ids for the golden prompts
//     (golden.safetensors), are as far from transformers' bf16 logits (the batched one at most 1.25x the batch-1
//     one's mean |d|), choose their step's arg-max, and agree wherever the choice is not a bf16 near-tie;
//   - the time of a step for 1, 2, 4, ..., 64 rows, printed as tokens/s; the target is that 32 rows give
//     >= 10x the tokens/s of one.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <random>

#include "cuda_test_util.h"
#include "formats/safetensors.h"
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

std::vector<float> f32_of(const formats::TensorEntry& e) {
  std::vector<float> v(e.nbytes / 4);
  std::memcpy(v.data(), e.data, e.nbytes);
  return v;
}
std::vector<int32_t> i32_of(const formats::TensorEntry& e) {
  std::vector<int32_t> v(e.nbytes / 4);
  std::memcpy(v.data(), e.data, e.nbytes);
  return v;
}
double mean_abs(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += std::fabs(static_cast<double>(a[j]) - b[j]);
  return s / static_cast<double>(n);
}

TEST(FullShapeServe, BatchedPagedDecodeFollowsBatch1AndScales) {
  COTUNE_REQUIRE_GPU();
  const std::string dir = fullshape_model();
  if (dir.empty()) GTEST_SKIP() << "COTUNE_FULLSHAPE_DIR/model not set (tests/cuda_infer/fullshape_vs_transformers.sh makes it)";
  const std::string root = std::getenv("COTUNE_FULLSHAPE_DIR");
  auto gold = formats::SafetensorsFile::open(root + "/golden.safetensors");
  model::LoadOptions o;
  o.device = Device::cuda;
  model::Qwen2Model m = model::Qwen2Model::load(dir, o);
  const int64_t V = m.config().vocab_size, selectable = 151665;
  // The golden prompts first (transformers' bf16 logits of every step, teacher-forced on its own ids), then random
  // prompts up to 64 rows.
  std::vector<std::vector<int32_t>> prompts, want;
  std::vector<std::vector<float>> ref;
  for (int i = 0; gold.find(fmt::format("prompt.{}", i)) && gold.find(fmt::format("base.{}.tokens", i)); ++i) {
    prompts.push_back(i32_of(*gold.find(fmt::format("prompt.{}", i))));
    want.push_back(i32_of(*gold.find(fmt::format("base.{}.tokens", i))));
    ref.push_back(f32_of(*gold.find(fmt::format("base.{}.logits", i))));
  }
  ASSERT_FALSE(prompts.empty()) << "no base goldens in " << root;
  const int compared = static_cast<int>(prompts.size());
  for (auto& p : random_prompts(64 - compared, 5)) prompts.push_back(p);
  const int steps = static_cast<int>(std::min<size_t>(16, want[0].size() - 1));
  std::vector<infer::SelectParams> g1(1);

  // Both paths teacher-forced on transformers' ids: step s feeds want[s] and gives the logits of transformers'
  // row s + 1. Each path's distance to transformers' bf16 logits is its numerical noise; the batched step (other
  // GEMMs, other summation orders) must not be noticeably noisier than the batch-1 fused step.
  infer::GeneratorOptions one;
  one.max_batch = 1;
  infer::Generator lone(m, nullptr, one);
  lone.reserve(1024);
  lone.set_selectable(selectable);
  double lone_d = 0, batch_d = 0;
  std::vector<std::vector<std::vector<float>>> lg(static_cast<size_t>(compared));
  for (int i = 0; i < compared; ++i) {
    lone.prefill_select({0}, {prompts[static_cast<size_t>(i)]}, g1);
    for (int s = 0; s < steps; ++s) {
      lone.decode_select({0}, {want[static_cast<size_t>(i)][static_cast<size_t>(s)]}, g1);
      lg[static_cast<size_t>(i)].push_back(lone.last_logits(1));
      lone_d += mean_abs(lg[static_cast<size_t>(i)].back().data(), ref[static_cast<size_t>(i)].data() + (s + 1) * V, V);
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

  // 32 rows decoded together; the golden rows fed transformers' ids.
  const int64_t n = 32;
  std::vector<int32_t> sl(slots.begin(), slots.begin() + n);
  std::vector<infer::SelectParams> gn(static_cast<size_t>(n));
  int agree = 0, decided = 0;
  for (int s = 0; s < steps; ++s) {
    std::vector<int32_t> feed(next.begin(), next.begin() + n);
    for (int i = 0; i < compared; ++i) feed[static_cast<size_t>(i)] = want[static_cast<size_t>(i)][static_cast<size_t>(s)];
    const std::vector<int32_t> got = gen.decode_select(sl, feed, gn);
    const std::vector<float> rows = gen.last_logits(compared);
    for (int i = 0; i < compared; ++i) {
      const float* row = rows.data() + static_cast<int64_t>(i) * V;
      const auto& one_row = lg[static_cast<size_t>(i)][static_cast<size_t>(s)];
      batch_d += mean_abs(row, ref[static_cast<size_t>(i)].data() + (s + 1) * V, V);
      float a = -INFINITY, b = -INFINITY, diff = 0.0f;
      int64_t best = 0, best1 = 0;
      for (int64_t j = 0; j < selectable; ++j) {
        const float r = one_row[static_cast<size_t>(j)], g = row[j];
        if (r > a) b = a, a = r;
        else if (r > b) b = r;
        if (g > row[best]) best = j;
        if (r > one_row[static_cast<size_t>(best1)]) best1 = j;
        diff = std::max(diff, std::fabs(r - g));
      }
      EXPECT_EQ(got[static_cast<size_t>(i)], static_cast<int32_t>(best)) << "the chosen id is the step's arg-max";
      // Away from bf16 near-ties (top two further apart than twice the rows' largest difference) the ids agree.
      if (a - b > 2.0f * diff) {
        ++decided;
        agree += best == best1 ? 1 : 0;
      }
    }
    for (int64_t r = 0; r < n; ++r) next[static_cast<size_t>(r)] = got[static_cast<size_t>(r)];
  }
  const double cnt = static_cast<double>(compared * steps);
  fmt::print("mean |logits - transformers bf16| over {} prompts x {} steps: batch-1 fused {:.5f}, batched (32 rows) {:.5f} "
             "({:.2f}x); greedy ids agree at {}/{} decided steps\n",
             compared, steps, lone_d / cnt, batch_d / cnt, batch_d / lone_d, agree, decided);
  EXPECT_LE(batch_d, 1.25 * lone_d) << "the batched step is noisier than the batch-1 step";
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
