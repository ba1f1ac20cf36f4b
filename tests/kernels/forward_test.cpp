// Forward ops of kernels/ops.h (CPU path) against the naive double-precision references of reference.h.
// Tolerances: fp32 kernels vs double, on inputs of magnitude ~1, accumulate errors of a few ulp per term:
// |err| <= 1e-5 + 1e-5*|want| for short reductions, looser where stated.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "base/half.h"
#include "base/rng.h"
#include "kernel_test_util.h"
#include "kernels/ops.h"
#include "reference.h"

namespace cotune::ktest {
namespace ops = cotune::kernels;

// ---- matmul ----------------------------------------------------------------------------------------

TEST(KernelMatmul, AllTransposeCombosWithAlphaBeta) {
  const int64_t M = 7, N = 5, K = 11;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{0.75f, 0.0f}, std::pair{-1.5f, 0.5f},
                                 std::pair{1.0f, 1.0f}}) {
        SCOPED_TRACE(testing::Message() << "trans_a=" << ta << " trans_b=" << tb << " alpha=" << alpha
                                        << " beta=" << beta);
        F32 a = random(ta ? Shape{K, M} : Shape{M, K}, 1 + static_cast<uint64_t>(ta));
        F32 b = random(tb ? Shape{N, K} : Shape{K, N}, 3 + static_cast<uint64_t>(tb));
        F32 out = random({M, N}, 5);
        if (beta == 0.0f) std::fill(out.v.begin(), out.v.end(), std::nanf(""));  // beta = 0 must ignore out
        const std::vector<double> c = beta == 0.0f ? std::vector<double>(static_cast<size_t>(M * N), 0.0) : out.d();
        std::vector<double> want = ref::matmul(a.d(), b.d(), c, M, N, K, ta, tb, alpha, beta);
        ops::matmul(out.t, a.t, b.t, ta, tb, alpha, beta);
        EXPECT_TRUE(all_close(out, want, 1e-5, 1e-5));
      }
}

TEST(KernelMatmul, EmptyInnerDimensionScalesByBeta) {
  F32 a({3, 0}), b({0, 2}), out({3, 2}, 4.0f);
  ops::matmul(out.t, a.t, b.t, false, false, 1.0f, 0.5f);
  for (float e : out.v) EXPECT_EQ(e, 2.0f);
  ops::matmul(out.t, a.t, b.t, false, false, 1.0f, 0.0f);
  for (float e : out.v) EXPECT_EQ(e, 0.0f);
}

TEST(KernelMatmul, DefaultArgumentsOverwrite) {
  F32 a = random({3, 4}, 11), b = random({4, 2}, 12), out({3, 2}, 123.0f);
  ops::matmul(out.t, a.t, b.t, false, false);
  std::vector<double> zero(6, 0.0);
  EXPECT_TRUE(all_close(out, ref::matmul(a.d(), b.d(), zero, 3, 2, 4, false, false, 1, 0), 1e-6, 1e-6));
}

// ---- embedding -------------------------------------------------------------------------------------

TEST(KernelEmbedding, GathersRowsExactly) {
  const int64_t V = 9, C = 6;
  F32 table = random({V, C}, 21);
  I32 ids({3, 0, 8, 3, 5});
  F32 out({ids.size(), C});
  ops::embedding_forward(out.t, ids.t, table.t);
  for (int64_t t = 0; t < ids.size(); ++t)
    for (int64_t c = 0; c < C; ++c) ASSERT_EQ(out[t * C + c], table[ids[t] * C + c]) << "t=" << t << " c=" << c;
}

// ---- RMSNorm ---------------------------------------------------------------------------------------

TEST(KernelRmsnorm, MatchesHfFormulaAndSavesRstd) {
  const int64_t T = 6, C = 64;
  for (float eps : {1e-6f, 1e-2f}) {
    F32 x = random({T, C}, 31, -2.0f, 2.0f), w = random({C}, 32, 0.5f, 1.5f);
    for (int64_t c = 0; c < C; ++c) x[2 * C + c] *= 1e-3f;  // a row where eps matters
    F32 out({T, C}), rstd({T});
    ops::rmsnorm_forward(out.t, rstd.t, x.t, w.t, eps);
    std::vector<double> want_rstd;
    std::vector<double> want = ref::rmsnorm(x.d(), w.d(), T, C, eps, &want_rstd);
    EXPECT_TRUE(all_close(out, want, 1e-5, 1e-5)) << "eps " << eps;
    EXPECT_TRUE(all_close(rstd, want_rstd, 0, 1e-5)) << "eps " << eps;
  }
}

// ---- RoPE ------------------------------------------------------------------------------------------

TEST(KernelRope, MatchesHfRotateHalfWithPositionsRestartingPerSequence) {
  const std::vector<int32_t> lens{1, 5, 17};
  for (int64_t D : {16, 128}) {
    for (float theta : {10000.0f, 1000000.0f}) {
      SCOPED_TRACE(testing::Message() << "D=" << D << " theta=" << theta);
      I32 pos(positions_of(lens));
      const int64_t T = pos.size(), NH = 3;
      F32 x = random({T, NH, D}, 41);
      std::vector<double> want = ref::rope(x.d(), pos.v, T, NH, D, theta);
      ops::rope_forward(x.t, pos.t, theta);
      // angles <= 16 rad in fp32: cos/sin error ~1e-6.
      EXPECT_TRUE(all_close(x, want, 1e-5, 1e-5));
    }
  }
}

TEST(KernelRope, PositionZeroIsIdentityAndLargePositionsStayClose) {
  const int64_t T = 4, NH = 2, D = 64;
  I32 pos({0, 0, 1000, 4095});
  F32 x = random({T, NH, D}, 42);
  std::vector<double> x0 = x.d();
  ops::rope_forward(x.t, pos.t, 10000.0f);
  for (int64_t i = 0; i < NH * D; ++i) ASSERT_EQ(x[i], static_cast<float>(x0[static_cast<size_t>(i)]));
  // fp32 angles of ~4000 rad carry ~2.4e-4 absolute error (HF computes them in fp32 too).
  EXPECT_TRUE(all_close(x, ref::rope(x0, pos.v, T, NH, D, 10000.0), 1e-3, 0));
}

TEST(KernelRope, BackwardInvertsForward) {
  I32 pos(positions_of({3, 9}));
  const int64_t T = pos.size(), NH = 2, D = 32;
  F32 x = random({T, NH, D}, 43);
  std::vector<double> x0 = x.d();
  ops::rope_forward(x.t, pos.t, 10000.0f);
  ops::rope_backward(x.t, pos.t, 10000.0f);  // rotation by -angle undoes rotation by +angle
  EXPECT_TRUE(all_close(x, x0, 1e-6, 1e-6));
}

// ---- attention -------------------------------------------------------------------------------------

struct AttnCase {
  std::vector<int32_t> lens;
  int64_t H, KV, D;
};

class KernelAttention : public testing::TestWithParam<AttnCase> {};

TEST_P(KernelAttention, MatchesNaiveOutputAndLse) {
  const AttnCase& c = GetParam();
  I32 cu(cu_seqlens_of(c.lens));
  const int64_t T = cu[cu.size() - 1];
  const int max_len = *std::max_element(c.lens.begin(), c.lens.end());
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
  F32 q = random({T, c.H, c.D}, 51, -2, 2), k = random({T, c.KV, c.D}, 52, -2, 2), v = random({T, c.KV, c.D}, 53);
  F32 out({T, c.H, c.D}), lse({c.H, T});
  ops::attention_forward(out.t, lse.t, q.t, k.t, v.t, cu.t, max_len, scale);
  std::vector<double> want_lse;
  std::vector<double> want = ref::attention(q.d(), k.d(), v.d(), cu.v, T, c.H, c.KV, c.D, scale, &want_lse);
  EXPECT_TRUE(all_close(out, want, 2e-5, 1e-4));
  EXPECT_TRUE(all_close(lse, want_lse, 2e-5, 1e-5));
}

namespace {
std::string attn_case_name(const testing::TestParamInfo<AttnCase>& info) {
  // (fmt, not operator+: g++ 12 -O3 raises a false -Wrestrict on "x" + std::string)
  std::string n = "lens";
  for (int32_t l : info.param.lens) n += fmt::format("_{}", l);
  return n + fmt::format("_H{}_KV{}_D{}", info.param.H, info.param.KV, info.param.D);
}
}  // namespace

INSTANTIATE_TEST_SUITE_P(Packed, KernelAttention,
                         testing::Values(AttnCase{{1, 5, 17}, 4, 2, 128}, AttnCase{{1, 5, 17}, 4, 2, 16},
                                         AttnCase{{17, 1, 5}, 4, 4, 16}, AttnCase{{8}, 4, 1, 16},
                                         AttnCase{{2, 0, 3}, 2, 1, 8}),
                         attn_case_name);

// Scores in the hundreds: the softmax must subtract the row max (a naive exp overflows fp32).
TEST(KernelAttentionMask, LargeScoresStayFiniteAndAccurate) {
  const std::vector<int32_t> lens{3, 9};
  I32 cu(cu_seqlens_of(lens));
  const int64_t T = 12, H = 2, KV = 1, D = 16;
  F32 q = random({T, H, D}, 65, -8, 8), k = random({T, KV, D}, 66, -8, 8), v = random({T, KV, D}, 67);
  F32 out({T, H, D}), lse({H, T});
  ops::attention_forward(out.t, lse.t, q.t, k.t, v.t, cu.t, 9, 0.25f);
  std::vector<double> want_lse;
  std::vector<double> want = ref::attention(q.d(), k.d(), v.d(), cu.v, T, H, KV, D, 0.25, &want_lse);
  // fp32 scores of magnitude ~100 carry ~1e-5 absolute error, which the softmax passes on relatively.
  EXPECT_TRUE(all_close(out, want, 1e-4, 1e-3));
  EXPECT_TRUE(all_close(lse, want_lse, 1e-4, 1e-5));
}

TEST(KernelAttentionMask, FirstTokenOfEverySequenceCopiesItsValue) {
  const std::vector<int32_t> lens{1, 5, 17};
  I32 cu(cu_seqlens_of(lens));
  const int64_t T = 23, H = 4, KV = 2, D = 16;
  F32 q = random({T, H, D}, 54), k = random({T, KV, D}, 55), v = random({T, KV, D}, 56);
  F32 out({T, H, D}), lse({H, T});
  ops::attention_forward(out.t, lse.t, q.t, k.t, v.t, cu.t, 17, 0.25f);
  for (int64_t s = 0; s < 3; ++s) {
    const int64_t i = cu[s];
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t d = 0; d < D; ++d) EXPECT_FLOAT_EQ(out[(i * H + h) * D + d], v[(i * KV + h / 2) * D + d]);
      double qk = 0;
      for (int64_t d = 0; d < D; ++d) qk += double(q[(i * H + h) * D + d]) * k[(i * KV + h / 2) * D + d];
      EXPECT_NEAR(lse[h * T + i], 0.25 * qk, 1e-5) << "lse of a lone key is its scaled score";
    }
  }
}

// A sliding window of 1 leaves each query only its own key: out = its value. A window of W: changing a key W or
// more positions back changes nothing (bit for bit), one inside the window does.
TEST(KernelAttentionMask, SlidingWindowSeesOnlyTheNewestKeys) {
  const std::vector<int32_t> lens{5, 17};
  I32 cu(cu_seqlens_of(lens));
  const int64_t T = 22, H = 4, KV = 2, D = 16;
  F32 q = random({T, H, D}, 64), k = random({T, KV, D}, 65), v = random({T, KV, D}, 66);
  F32 out({T, H, D}), lse({H, T});
  ops::attention_forward(out.t, lse.t, q.t, k.t, v.t, cu.t, 17, 0.25f, 1);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < D; ++d) ASSERT_FLOAT_EQ(out[(i * H + h) * D + d], v[(i * KV + h / 2) * D + d]);
  const int64_t W = 4, i = 5 + 12;  // query 12 of the second sequence
  F32 base({T, H, D}), moved({T, H, D});
  ops::attention_forward(base.t, lse.t, q.t, k.t, v.t, cu.t, 17, 0.25f, W);
  k[((i - W) * KV + 1) * D + 3] += 5.0f;  // outside the window
  ops::attention_forward(moved.t, lse.t, q.t, k.t, v.t, cu.t, 17, 0.25f, W);
  for (int64_t d = 0; d < D; ++d) EXPECT_EQ(moved[(i * H + 3) * D + d], base[(i * H + 3) * D + d]);
  k[((i - W + 1) * KV + 1) * D + 3] += 5.0f;  // the oldest key inside it
  ops::attention_forward(moved.t, lse.t, q.t, k.t, v.t, cu.t, 17, 0.25f, W);
  double diff = 0;
  for (int64_t d = 0; d < D; ++d) diff += std::fabs(moved[(i * H + 3) * D + d] - base[(i * H + 3) * D + d]);
  EXPECT_GT(diff, 1e-3);
}

// The rope variants' frequencies against transformers' ROPE_INIT_FUNCTIONS (head dim 128; values printed by
// transformers 5.24): llama3 (Llama 3.1: theta 5e5, factor 8, low 1, high 4, original 8192: wavelengths under 2048
// kept (j <= 28), 2048..8192 blended (j = 30, 32, 34), longer divided by 8 (j >= 35)) and linear (theta 1e5,
// factor 2).
TEST(KernelRope, ScaledFrequenciesMatchTransformers) {
  float f[64];
  ops::RopeSpec llama3(500000.0f);
  llama3.scaling = ops::RopeScaling::llama3;
  llama3.factor = 8.0f;
  llama3.low_freq_factor = 1.0f;
  llama3.high_freq_factor = 4.0f;
  llama3.original_max_position = 8192.0f;
  ops::rope_inv_freq(f, 128, llama3);
  const std::pair<int, double> want[] = {{0, 1.0}, {20, 0.016560440883040428}, {28, 0.0032114461064338684},
                                         {30, 0.0013718936825171113}, {32, 0.0005248460220173001},
                                         {34, 0.0001785077911335975}, {35, 9.556212171446532e-05},
                                         {40, 3.428102354519069e-05}, {45, 1.2297638932068367e-05},
                                         {63, 3.068925877869333e-07}};
  for (auto [j, v] : want) EXPECT_NEAR(f[j], v, 2e-7 * v) << "llama3 j = " << j;
  ops::RopeSpec linear(100000.0f);
  linear.scaling = ops::RopeScaling::linear;
  linear.factor = 2.0f;
  ops::rope_inv_freq(f, 128, linear);
  const std::pair<int, double> want_linear[] = {{0, 0.5}, {20, 0.0136920977383852}, {63, 5.98542510488187e-06}};
  for (auto [j, v] : want_linear) EXPECT_NEAR(f[j], v, 2e-7 * v) << "linear j = " << j;
}

// Changing keys/values of other sequences, or of later tokens of the same sequence, must not change a
// query's output at all (bit for bit): no attention across sequence boundaries, causal within one.
TEST(KernelAttentionMask, NoAttentionAcrossSequencesOrToTheFuture) {
  const std::vector<int32_t> lens{1, 5, 17};
  I32 cu(cu_seqlens_of(lens));
  const int64_t T = 23, H = 4, KV = 2, D = 16;
  F32 q = random({T, H, D}, 57), k = random({T, KV, D}, 58), v = random({T, KV, D}, 59);
  F32 out({T, H, D}), lse({H, T}), out2({T, H, D}), lse2({H, T});
  ops::attention_forward(out.t, lse.t, q.t, k.t, v.t, cu.t, 17, 0.25f);

  // Perturb k, v of sequences 0 and 2: sequence 1 (tokens 1..5) must not move.
  F32 k2 = random({T, KV, D}, 60), v2 = random({T, KV, D}, 61);
  for (int64_t i = 1; i < 6; ++i)
    for (int64_t e = 0; e < KV * D; ++e) {
      k2[i * KV * D + e] = k[i * KV * D + e];
      v2[i * KV * D + e] = v[i * KV * D + e];
    }
  ops::attention_forward(out2.t, lse2.t, q.t, k2.t, v2.t, cu.t, 17, 0.25f);
  for (int64_t i = 1; i < 6; ++i) {
    for (int64_t e = 0; e < H * D; ++e) ASSERT_EQ(out[i * H * D + e], out2[i * H * D + e]) << "token " << i;
    for (int64_t h = 0; h < H; ++h) ASSERT_EQ(lse[h * T + i], lse2[h * T + i]) << "token " << i;
  }
  // ... while sequences 0 and 2 do move.
  EXPECT_NE(out[0], out2[0]);
  EXPECT_NE(out[10 * H * D], out2[10 * H * D]);

  // Perturb k, v of tokens 12.. (inside sequence 2, which spans 6..22): tokens 6..11 must not move.
  F32 k3 = clone(k), v3 = clone(v);
  for (int64_t e = 12 * KV * D; e < T * KV * D; ++e) {
    k3[e] += 1.0f;
    v3[e] -= 1.0f;
  }
  ops::attention_forward(out2.t, lse2.t, q.t, k3.t, v3.t, cu.t, 17, 0.25f);
  for (int64_t i = 0; i < 12; ++i)
    for (int64_t e = 0; e < H * D; ++e) ASSERT_EQ(out[i * H * D + e], out2[i * H * D + e]) << "token " << i;
  for (int64_t i = 12; i < T; ++i) EXPECT_NE(out[i * H * D], out2[i * H * D]) << "token " << i;
}

// GQA: query heads 2g and 2g+1 share kv head g. With equal queries in both heads the outputs are equal.
TEST(KernelAttentionMask, GqaHeadsShareTheirKvHead) {
  I32 cu(cu_seqlens_of({6}));
  const int64_t T = 6, H = 4, KV = 2, D = 8;
  F32 q = random({T, H, D}, 62), k = random({T, KV, D}, 63), v = random({T, KV, D}, 64);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t d = 0; d < D; ++d) {
      q[(t * H + 1) * D + d] = q[(t * H + 0) * D + d];  // heads 0, 1 -> kv 0
      q[(t * H + 3) * D + d] = q[(t * H + 2) * D + d];  // heads 2, 3 -> kv 1
    }
  F32 out({T, H, D}), lse({H, T});
  ops::attention_forward(out.t, lse.t, q.t, k.t, v.t, cu.t, 6, 0.3f);
  for (int64_t t = 1; t < T; ++t)
    for (int64_t d = 0; d < D; ++d) {
      EXPECT_EQ(out[(t * H + 0) * D + d], out[(t * H + 1) * D + d]);
      EXPECT_EQ(out[(t * H + 2) * D + d], out[(t * H + 3) * D + d]);
      EXPECT_NE(out[(t * H + 0) * D + d], out[(t * H + 2) * D + d]);
    }
}

// ---- SwiGLU / linear / LoRA ------------------------------------------------------------------------

TEST(KernelSwiglu, MatchesSiluTimesUp) {
  F32 gate = random({5, 33}, 71, -6, 6), up = random({5, 33}, 72, -2, 2), out({5, 33});
  ops::swiglu_forward(out.t, gate.t, up.t);
  EXPECT_TRUE(all_close(out, ref::swiglu(gate.d(), up.d()), 1e-6, 1e-5));
}

TEST(KernelSwiglu, ExtremeGatesStayFinite) {
  F32 gate({6}), up({6}, 2.0f), out({6}), R({6}, 1.0f), dg({6}), du({6});
  const float g[6] = {-1000.0f, -100.0f, -20.0f, 20.0f, 100.0f, 1000.0f};
  for (int i = 0; i < 6; ++i) gate[i] = g[i];
  ops::swiglu_forward(out.t, gate.t, up.t);
  ops::swiglu_backward(dg.t, du.t, R.t, gate.t, up.t);
  for (int i = 0; i < 6; ++i) {
    const double sig = 1.0 / (1.0 + std::exp(-double(g[i])));
    EXPECT_NEAR(out[i], g[i] * sig * 2.0, 1e-4 * std::abs(g[i])) << g[i];
    EXPECT_NEAR(du[i], g[i] * sig, 1e-4 * std::abs(g[i])) << g[i];
    EXPECT_NEAR(dg[i], 2.0 * sig * (1.0 + g[i] * (1.0 - sig)), 1e-4) << g[i];
  }
}

TEST(KernelLinear, WithAndWithoutBias) {
  const int64_t T = 6, IC = 40, OC = 9;
  F32 x = random({T, IC}, 81), W = random({OC, IC}, 82), b = random({OC}, 83), out({T, OC}, 7.0f);
  ops::linear_forward(out.t, x.t, W.t, Tensor());
  EXPECT_TRUE(all_close(out, ref::linear(x.d(), W.d(), {}, T, IC, OC), 1e-5, 1e-5)) << "no bias";
  ops::linear_forward(out.t, x.t, W.t, b.t);
  EXPECT_TRUE(all_close(out, ref::linear(x.d(), W.d(), b.d(), T, IC, OC), 1e-5, 1e-5)) << "bias";
}

TEST(KernelLora, ForwardAddsScaledBranchAndSavesXa) {
  const int64_t T = 5, IC = 24, OC = 10, R = 4;
  const float scale = 2.0f;  // alpha / r
  F32 x = random({T, IC}, 91), A = random({R, IC}, 92), B = random({OC, R}, 93), out = random({T, OC}, 94);
  F32 xa({T, R}, 99.0f);
  std::vector<double> want_xa;
  std::vector<double> want = ref::lora(out.d(), x.d(), A.d(), B.d(), T, IC, OC, R, scale, &want_xa);
  ops::lora_forward(out.t, xa.t, x.t, A.t, B.t, scale);
  EXPECT_TRUE(all_close(out, want, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(xa, want_xa, 1e-5, 1e-5));
}

// ---- elementwise -----------------------------------------------------------------------------------

TEST(KernelElementwise, AddAllowsAliasing) {
  F32 a = random({4, 5}, 95), b = random({4, 5}, 96), out({4, 5});
  ops::add(out.t, a.t, b.t);
  for (int64_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], a[i] + b[i]);
  F32 a2 = clone(a);
  ops::add(a2.t, a2.t, b.t);  // out aliases a
  EXPECT_EQ(a2.v, out.v);
  F32 b2 = clone(b);
  ops::add(b2.t, a.t, b2.t);  // out aliases b
  EXPECT_EQ(b2.v, out.v);
}

TEST(KernelElementwise, CopyConvertsThroughBf16AndF16) {
  F32 x({6}), back({6});
  const float vals[6] = {1.0f, -2.5f, 3.140625f, 1.0f + 1.0f / 256, 65504.0f, 0.0f};
  for (int i = 0; i < 6; ++i) x[i] = vals[i];
  std::vector<uint16_t> h(6);
  for (DType dt : {DType::bf16, DType::f16}) {
    Tensor half(h.data(), dt, Shape{6});
    ops::copy(half, x.t);
    ops::copy(back.t, half);
    EXPECT_EQ(back[0], 1.0f);
    EXPECT_EQ(back[1], -2.5f);
    EXPECT_EQ(back[2], 3.140625f);  // exact in both (8 significant bits)
    EXPECT_EQ(back[5], 0.0f);
    if (dt == DType::bf16) EXPECT_EQ(back[3], 1.0f) << "1 + 2^-8 rounds to even in bf16 (7 stored bits)";
    else EXPECT_EQ(back[3], 1.0f + 1.0f / 256) << "exact in f16 (10 stored bits)";
    EXPECT_EQ(back[4], dt == DType::f16 ? 65504.0f : 65536.0f);
  }
  F32 y({6});
  ops::copy(y.t, x.t);
  EXPECT_EQ(y.v, x.v);
}

// ---- cross-entropy ---------------------------------------------------------------------------------

TEST(KernelCrossEntropy, ForwardWithIgnoredTargets) {
  const int64_t T = 6, V = 50;
  F32 logits = random({T, V}, 101, -5, 5);
  logits[3 * V + 7] = 60.0f;  // a peaked row: the max-subtraction must keep it finite
  I32 targets({4, -100, 0, 7, -100, 49});
  F32 losses({T}, 5.0f);
  ops::cross_entropy_forward(losses.t, logits.t, targets.t);
  EXPECT_TRUE(all_close(losses, ref::cross_entropy(logits.d(), targets.v, T, V), 1e-5, 1e-5));
  EXPECT_EQ(losses[1], 0.0f);
  EXPECT_EQ(losses[4], 0.0f);
}

TEST(KernelCrossEntropy, BackwardIsSoftmaxMinusOnehotAndZeroOnIgnoredRows) {
  const int64_t T = 4, V = 13;
  F32 logits = random({T, V}, 102, -3, 3);
  I32 targets({2, -100, 12, 0});
  F32 d({T, V}, 9.0f);
  const float gs = 0.25f;
  ops::cross_entropy_backward(d.t, logits.t, targets.t, gs);
  for (int64_t t = 0; t < T; ++t) {
    double sum = 0, row = 0;
    for (int64_t j = 0; j < V; ++j) sum += std::exp(double(logits[t * V + j]));
    for (int64_t j = 0; j < V; ++j) {
      double want = targets[t] < 0 ? 0.0 : gs * (std::exp(double(logits[t * V + j])) / sum - (j == targets[t]));
      EXPECT_NEAR(d[t * V + j], want, 1e-6) << "t=" << t << " j=" << j;
      row += d[t * V + j];
    }
    EXPECT_NEAR(row, 0.0, 1e-6);
  }
}

// ---- fused LM head + cross-entropy vs its unfused composition --------------------------------------

TEST(KernelLmHeadCrossEntropy, MatchesUnfusedCompositionForEveryChunkSize) {
  const int64_t T = 11, C = 24, V = 37;
  const float gs = 1.0f / 9.0f;
  F32 hidden = random({T, C}, 111), W = random({V, C}, 112);
  I32 targets({3, -100, 0, 36, 5, 5, -100, 17, 2, 30, -100});
  // Unfused: logits = linear(hidden), losses = CE, dlogits = CE backward, dhidden = dlogits @ W.
  F32 logits({T, V}), ulosses({T}), dlogits({T, V}), udhidden({T, C});
  ops::linear_forward(logits.t, hidden.t, W.t, Tensor());
  ops::cross_entropy_forward(ulosses.t, logits.t, targets.t);
  ops::cross_entropy_backward(dlogits.t, logits.t, targets.t, gs);
  ops::linear_backward_input(udhidden.t, dlogits.t, W.t, false);
  std::vector<int32_t> ucorrect(T, 0);
  for (int64_t t = 0; t < T; ++t) {
    int64_t am = 0;
    for (int64_t j = 1; j < V; ++j)
      if (logits[t * V + j] > logits[t * V + am]) am = j;
    ucorrect[static_cast<size_t>(t)] = targets[t] >= 0 && am == targets[t];
  }
  // And the double-precision truth for the losses.
  std::vector<double> want_losses =
      ref::cross_entropy(ref::linear(hidden.d(), W.d(), {}, T, C, V), targets.v, T, V);
  EXPECT_TRUE(all_close(ulosses, want_losses, 1e-5, 1e-5));

  for (int64_t chunk : {int64_t{1}, int64_t{3}, T, T + 5}) {
    SCOPED_TRACE(testing::Message() << "chunk=" << chunk);
    F32 losses({T}, 3.0f), dhidden({T, C}, 3.0f), ws({std::min(chunk, T) * V}, 3.0f);
    I32 correct(std::vector<int32_t>(T, 7));
    ops::lm_head_cross_entropy(losses.t, correct.t, dhidden.t, hidden.t, W.t, targets.t, gs, ws.t, chunk);
    EXPECT_TRUE(all_close(losses, ulosses.d(), 1e-6, 1e-5));
    EXPECT_TRUE(all_close(dhidden, udhidden.d(), 1e-6, 1e-5));
    EXPECT_EQ(correct.v, ucorrect);
    // Without dhidden and correct (evaluation): the same losses.
    F32 losses2({T});
    ops::lm_head_cross_entropy(losses2.t, Tensor(), Tensor(), hidden.t, W.t, targets.t, gs, ws.t, chunk);
    EXPECT_EQ(losses2.v, losses.v);
  }
}

TEST(KernelLmHeadCrossEntropy, CorrectFlagsIncludingTiesAndIgnored) {
  // Logits = hidden @ W^T with one-hot hiddens: row t of the logits is column hot[t] of W^T = W[:, hot[t]].
  const int64_t T = 5, C = 4, V = 6;
  F32 W({V, C}, 0.0f);
  // Column c of W is the logit vector of a token whose hidden is e_c.
  const float cols[C][V] = {{0, 1, 5, 0, 0, 5},   // tie between tokens 2 and 5: argmax = 2 (lowest index)
                            {0, 0, 0, 0, 9, 1},   // argmax 4
                            {3, 0, 0, 0, 0, 0},   // argmax 0
                            {0, 0, 0, 2, 0, 0}};  // argmax 3
  for (int64_t c = 0; c < C; ++c)
    for (int64_t v = 0; v < V; ++v) W[v * C + c] = cols[c][v];
  F32 hidden({T, C}, 0.0f);
  const int hot[T] = {0, 0, 1, 2, 3};
  for (int64_t t = 0; t < T; ++t) hidden[t * C + hot[t]] = 1.0f;
  I32 targets({2, 5, 4, 1, -100});
  const std::vector<int32_t> want{1, 0, 1, 0, 0};
  for (int64_t chunk : {1, 2, 5, 8}) {
    F32 losses({T}), dh({T, C}), ws({std::min<int64_t>(chunk, T) * V});
    I32 correct(std::vector<int32_t>(T, -1));
    ops::lm_head_cross_entropy(losses.t, correct.t, dh.t, hidden.t, W.t, targets.t, 1.0f, ws.t, chunk);
    EXPECT_EQ(correct.v, want) << "chunk " << chunk;
    EXPECT_EQ(losses[4], 0.0f);
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(dh[4 * C + c], 0.0f) << "ignored token has no gradient";
  }
}

// ---- dropout ---------------------------------------------------------------------------------------

TEST(KernelDropout, DeterministicKeepFractionScaleAndBackwardMask) {
  const int64_t n = 40001;  // not a multiple of 4
  const float p = 0.3f;
  F32 x = random({n}, 121, 0.5f, 1.5f);  // nonzero, so a zero output means "dropped"
  F32 a({n}), b({n}), c({n});
  ops::dropout_forward(a.t, x.t, p, 1234, 0);
  ops::dropout_forward(b.t, x.t, p, 1234, 0);
  EXPECT_EQ(a.v, b.v) << "same seed and offset give the same mask";
  ops::dropout_forward(c.t, x.t, p, 1235, 0);
  EXPECT_NE(a.v, c.v) << "another seed gives another mask";

  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (a[i] != 0.0f) {
      ++kept;
      ASSERT_FLOAT_EQ(a[i], x[i] / (1.0f - p)) << i;
    }
  }
  const double frac = double(kept) / double(n);
  EXPECT_NEAR(frac, 1.0 - p, 0.01);  // binomial sd ~0.0023

  // Backward: dinp = dout * keep / (1-p) with the forward's mask.
  F32 dout = random({n}, 122, 0.5f, 1.5f), dinp({n});
  ops::dropout_backward(dinp.t, dout.t, p, 1234, 0);
  for (int64_t i = 0; i < n; ++i) {
    if (a[i] == 0.0f) ASSERT_EQ(dinp[i], 0.0f) << i;
    else ASSERT_FLOAT_EQ(dinp[i], dout[i] / (1.0f - p)) << i;
  }

  // In place (out aliases inp) gives the same result.
  F32 y = clone(x);
  ops::dropout_forward(y.t, y.t, p, 1234, 0);
  EXPECT_EQ(y.v, a.v);

  // p = 0 keeps everything unscaled.
  ops::dropout_forward(c.t, x.t, 0.0f, 1234, 0);
  EXPECT_EQ(c.v, x.v);
}

// The mask of element i is uniform(seed, offset + i) (ops.h): dropping the tail [k, n) of a tensor with
// offset k must reproduce the tail of dropping the whole tensor with offset 0 (how a caller splits one tensor).
namespace {
void expect_tail_matches(const std::vector<int64_t>& offsets) {
  const int64_t n = 64;
  const float p = 0.5f;
  F32 x({n}, 1.0f), full({n});
  ops::dropout_forward(full.t, x.t, p, 77, 0);
  for (int64_t k : offsets) {
    F32 tail({n - k});
    ops::dropout_forward(tail.t, x.t.slice_rows(k, n), p, 77, static_cast<uint64_t>(k));
    int64_t differ = 0;
    for (int64_t i = 0; i < n - k; ++i) differ += tail[i] != full[k + i];
    EXPECT_EQ(differ, 0) << "offset " << k << ": " << differ << " of " << n - k
                         << " mask bits differ from elements [" << k << ", " << n << ") of the offset-0 call";
  }
}

}  // namespace

TEST(KernelDropout, OffsetAddressesTheSameStream) { expect_tail_matches({4, 8, 20, 60}); }

// Offsets that are not a multiple of 4 (one Philox block = 4 elements) must address the stream the same way.
TEST(KernelDropout, UnalignedOffsetAddressesTheSameStream) { expect_tail_matches({1, 2, 3, 5, 13}); }

// ---- random init -----------------------------------------------------------------------------------

TEST(KernelFillNormal, BoxMullerPairsOfPhiloxBlocksInDoubleAndTheRightMoments) {
  const int64_t n = 200001;  // odd: the last pair has one element
  const uint64_t key = 3407 * 0x9E3779B97F4A7C15ull + 5;
  F32 out({n});
  ops::fill_normal(out.t, key, 0.02f);
  double sum = 0, sq = 0, worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const Philox4 r = philox4x32(key, static_cast<uint64_t>(i / 2));
    const double u1 = std::max(static_cast<double>(uniform01(r.v[0])), 1e-7), u2 = uniform01(r.v[1]);
    const double want = 0.02 * std::sqrt(-2.0 * std::log(u1)) *
                        (i % 2 == 0 ? std::cos(6.2831853 * u2) : std::sin(6.2831853 * u2));
    worst = std::max(worst, std::abs(out[i] - want));
    sum += out[i];
    sq += static_cast<double>(out[i]) * out[i];
  }
  EXPECT_LT(worst, 1e-7);  // a few fp32 ulp of values up to 0.02 * 5.7 (log, sqrt, sin/cos in fp32)
  EXPECT_NEAR(sum / n, 0.0, 3 * 0.02 / std::sqrt(static_cast<double>(n)));
  EXPECT_NEAR(std::sqrt(sq / n), 0.02, 0.02 * 0.01);
  // bf16 output = the f32 draw rounded once.
  std::vector<uint16_t> b(static_cast<size_t>(n));
  ops::fill_normal(Tensor(b.data(), DType::bf16, Shape{n}), key, 0.02f);
  F32 back({n});
  ops::copy(back.t, Tensor(b.data(), DType::bf16, Shape{n}));
  for (int64_t i = 0; i < n; i += 997) ASSERT_EQ(back[i], round_bf16(out[i])) << i;
}

}  // namespace cotune::ktest
