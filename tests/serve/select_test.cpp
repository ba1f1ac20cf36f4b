// The token selection a GPU server runs (kernels/select_ops.h), through its CPU twin: greedy is infer::argmax,
// sampling draws the host Rng's uniforms, follows softmax(logits / temperature), keeps exactly the top-k / top-p
// sets; and the Generator's batched prefill_select / decode_select give a lone generator's greedy ids (CPU).
// The GPU kernel is checked against this twin id for id in tests/cuda_infer/serve_batch_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "base/rng.h"
#include "common/test_paths.h"
#include "infer/generator.h"
#include "infer/sampler.h"
#include "kernels/select_ops.h"
#include "model/qwen2.h"

namespace cotune {
namespace {

using kernels::SelectParams;
namespace sm = kernels::select_math;

std::vector<float> random_row(size_t n, uint32_t seed, float scale = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

SelectParams sampling(float temperature, float top_p, int32_t top_k, uint64_t seed, uint64_t draw) {
  SelectParams p;
  p.greedy = 0;
  p.temperature = temperature;
  p.top_p = top_p;
  p.top_k = top_k;
  p.seed = seed;
  p.draw = draw;
  return p;
}

TEST(SelectTwin, GreedyIsTheArgmaxOfTheSelectableIds) {
  for (uint32_t s = 0; s < 20; ++s) {
    auto row = random_row(5000, s);
    const int64_t vocab = 4000 + s * 37;
    row[static_cast<size_t>(vocab)] = 1e9f;  // past the selectable ids: never chosen
    row[17] = row[900] = 100.0f;               // a tie: the lower id
    EXPECT_EQ(kernels::select_row_reference(row.data(), vocab, SelectParams{}), 17);
    row[17] = row[900] = -1.0f;
    EXPECT_EQ(kernels::select_row_reference(row.data(), vocab, SelectParams{}),
              infer::argmax(std::span<const float>(row.data(), static_cast<size_t>(vocab))));
  }
}

TEST(SelectTwin, ExpIsAccurate) {
  for (double x = -745.0; x <= 0.0; x += 0.0137) {
    const double want = std::exp(x);
    const double got = sm::exp_nonpositive(x);
    if (want < 1e-300) continue;  // subnormal range: absolute error only
    EXPECT_NEAR(got / want, 1.0, 4e-16) << x;
  }
  EXPECT_EQ(sm::exp_nonpositive(0.0), 1.0);
  EXPECT_EQ(sm::exp_nonpositive(-INFINITY), 0.0);
}

TEST(SelectTwin, DrawsAreTheHostRngStream) {
  for (uint64_t seed : {0ull, 1ull, 12345678901ull}) {
    Rng rng(seed, 0);
    for (uint64_t d = 0; d < 11; ++d) EXPECT_EQ(sm::draw_uniform(seed, d), rng.uniform()) << seed << " " << d;
  }
}

// Frequencies of the chosen ids over `draws` draws of one row.
std::map<int32_t, double> frequencies(const std::vector<float>& row, SelectParams p, int draws) {
  std::map<int32_t, double> f;
  for (int d = 0; d < draws; ++d) {
    p.draw = static_cast<uint64_t>(d);
    f[kernels::select_row_reference(row.data(), static_cast<int64_t>(row.size()), p)] += 1.0 / draws;
  }
  return f;
}

TEST(SelectTwin, SamplingFollowsTheTemperedSoftmax) {
  const std::vector<float> row = {1.0f, 2.0f, 3.0f, -INFINITY, NAN};
  auto f = frequencies(row, sampling(2.0f, 1.0f, 0, 7, 0), 6000);
  const double e0 = std::exp(0.5), e1 = std::exp(1.0), e2 = std::exp(1.5), z = e0 + e1 + e2;
  EXPECT_NEAR(f[0], e0 / z, 0.03);
  EXPECT_NEAR(f[1], e1 / z, 0.03);
  EXPECT_NEAR(f[2], e2 / z, 0.03);
  EXPECT_EQ(f.count(3) + f.count(4), 0u);  // -inf and NaN are never drawn
}

TEST(SelectTwin, TopKAndTopPKeepExactlyTheirSets) {
  // probabilities 0.5, 0.3, 0.15, 0.05 (ids shuffled)
  std::vector<float> row = {std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
  auto p07 = frequencies(row, sampling(1.0f, 0.7f, 0, 3, 0), 4000);  // {0.5, 0.3}: 0.5 < 0.7 <= 0.8
  EXPECT_EQ(p07.size(), 2u);
  EXPECT_NEAR(p07[1], 0.5 / 0.8, 0.03);
  EXPECT_NEAR(p07[3], 0.3 / 0.8, 0.03);
  auto p09 = frequencies(row, sampling(1.0f, 0.9f, 0, 3, 0), 4000);  // {0.5, 0.3, 0.15}
  EXPECT_EQ(p09.size(), 3u);
  EXPECT_EQ(p09.count(2), 0u);
  auto k1 = frequencies(row, sampling(1.0f, 1.0f, 1, 3, 0), 200);
  EXPECT_EQ(k1.size(), 1u);
  EXPECT_EQ(k1.begin()->first, 1);
  auto k3p = frequencies(row, sampling(1.0f, 0.6f, 3, 3, 0), 2000);  // top-3 {0.5, 0.3, 0.15}, then 0.5/0.95 < 0.6
  EXPECT_EQ(k3p.size(), 2u);
  EXPECT_EQ(k3p.count(0) + k3p.count(2), 0u);
  auto tiny = frequencies(row, sampling(0.7f, 1e-6f, 0, 3, 0), 200);  // top_p -> 0: the arg-max alone
  EXPECT_EQ(tiny.size(), 1u);
  EXPECT_EQ(tiny.begin()->first, 1);
}

TEST(SelectTwin, LargeRowsAreReproducibleAndSeedDependent) {
  const auto row = random_row(151936, 5);
  const int64_t vocab = 151665;
  const SelectParams a = sampling(0.6f, 0.95f, 0, 42, 3);
  const int32_t x = kernels::select_row_reference(row.data(), vocab, a);
  EXPECT_EQ(kernels::select_row_reference(row.data(), vocab, a), x);
  EXPECT_LT(x, vocab);
  int differ = 0;
  for (uint64_t seed = 0; seed < 8; ++seed)
    differ += kernels::select_row_reference(row.data(), vocab, sampling(0.6f, 0.95f, 0, seed, 3)) != x ? 1 : 0;
  EXPECT_GE(differ, 6);
  // The tensor entry point on host rows gives the twin's choices.
  std::vector<float> two(row.begin(), row.end());
  two.insert(two.end(), row.begin(), row.end());
  std::vector<SelectParams> prm = {SelectParams{}, a};
  std::vector<int32_t> ids(2, -1);
  kernels::select_tokens(Tensor(ids.data(), DType::i32, {2}), Tensor(two.data(), DType::f32, {2, 151936}),
                         Tensor(prm.data(), DType::i32, {2, 8}), Tensor(), vocab);
  EXPECT_EQ(ids[0], infer::argmax(std::span<const float>(row.data(), static_cast<size_t>(vocab))));
  EXPECT_EQ(ids[1], x);
}

// The Generator's batched entry points on the CPU: prompts started together and decoded together choose what a
// lone generator's greedy generate() chooses, slot by slot.
TEST(SelectGenerator, BatchedSelectGivesTheLoneGreedyIds) {
  model::Qwen2Model m = model::Qwen2Model::load(testing::golden_dir() + "/model/r1like");
  const std::vector<std::vector<int32_t>> prompts = {{1, 5, 17, 42, 99}, {1, 200, 3}, {7}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
  const int64_t steps = 8;
  std::vector<std::vector<int32_t>> want;
  for (const auto& p : prompts) {
    infer::Generator lone(m, nullptr);
    infer::GenerationOptions o;
    o.max_new_tokens = steps + 1;
    want.push_back(lone.generate({p}, o, nullptr)[0].ids);
  }
  infer::GeneratorOptions go;
  go.max_batch = 6;
  go.prefill_chunk = 8;  // prompts span forwards
  infer::Generator gen(m, nullptr, go);
  gen.reserve(40);
  const std::vector<int32_t> slots = {4, 0, 2, 5};
  std::vector<SelectParams> greedy(prompts.size());
  std::vector<int32_t> next = gen.prefill_select(slots, prompts, greedy);
  std::vector<std::vector<int32_t>> got(prompts.size());
  for (int64_t s = 0; s < steps; ++s) {
    for (size_t i = 0; i < prompts.size(); ++i) got[i].push_back(next[i]);
    next = gen.decode_select(slots, next, greedy);
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    got[i].push_back(next[i]);
    EXPECT_EQ(got[i], want[i]) << "prompt " << i;
    EXPECT_EQ(gen.length(slots[i]), static_cast<int64_t>(prompts[i].size()) + steps);
  }
  // Sampling rows: the same seeds and draws choose the same ids again.
  std::vector<SelectParams> sp;
  for (size_t i = 0; i < prompts.size(); ++i) sp.push_back(infer::select_params(
      [] { infer::SamplingOptions o; o.do_sample = true; o.temperature = 0.8f; o.top_p = 0.9f; o.seed = 11; return o; }(), i));
  auto a = gen.prefill_select(slots, prompts, sp);
  auto b = gen.prefill_select(slots, prompts, sp);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace cotune
