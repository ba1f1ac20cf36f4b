// Finite-difference checks of every backward kernel of kernels/ops.h (CPU path).
//
// For each op: f = sum(out * R) (R fixed, random), so the backward kernel is run with dout = R. The
// reference gradient is the central difference (h = 1e-5) of f evaluated with the DOUBLE-precision forward of
// reference.h at the same fp32 input values; its own error is ~1e-9 relative, so the comparison measures the
// kernel alone. Bound: ||g_kernel - g_fd|| / ||g_fd|| < kGradTol = 1e-5 over the whole gradient vector (or
// over a fixed random sample of its coordinates for the D = 128 cases). Outputs the API says are written (=)
// are pre-filled with NaN; outputs it says accumulate (+=) are pre-filled with random values that must be kept.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "kernel_test_util.h"
#include "kernels/ops.h"
#include "reference.h"

namespace cotune::ktest {
namespace ops = cotune::kernels;
using Vec = std::vector<double>;

namespace {

void expect_grad(const char* what, const Vec& got, const Vec& fd) {
  ASSERT_GT(norm(fd), 1e-8) << what << ": degenerate test, zero reference gradient";
  const double err = rel_err(got, fd);
  if (std::getenv("COTUNE_KTEST_VERBOSE")) std::printf("[grad] %-50s rel err %.2e\n", what, err);
  EXPECT_LT(err, kGradTol) << what << ": relative error of the gradient vector vs finite differences";
}

// got - prior, element-wise (the part an accumulating kernel added).
Vec minus(const F32& got, const F32& prior) {
  Vec d(got.v.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = double(got.v[i]) - double(prior.v[i]);
  return d;
}

F32 nan_filled(Shape s) { return F32(s, std::nanf("")); }

}  // namespace

// ---- RMSNorm ---------------------------------------------------------------------------------------

TEST(KernelBackward, RmsnormWriteAndAccumulate) {
  const int64_t T = 5, C = 32;
  const float eps = 1e-5f;
  F32 x = random({T, C}, 201), w = random({C}, 202, 0.5f, 1.5f), R = random({T, C}, 203);
  F32 out({T, C}), rstd({T});
  ops::rmsnorm_forward(out.t, rstd.t, x.t, w.t, eps);

  Vec xd = x.d(), wd = w.d(), Rd = R.d();
  Vec fd = fd_grad(xd, [&] { return ref::sum_weighted(ref::rmsnorm(xd, wd, T, C, eps), Rd); });

  F32 dx = nan_filled({T, C});
  ops::rmsnorm_backward(dx.t, R.t, x.t, w.t, rstd.t, false);
  expect_grad("rmsnorm dinp (accumulate=false)", dx.d(), fd);

  F32 prior = random({T, C}, 204, -3, 3), acc = clone(prior);
  ops::rmsnorm_backward(acc.t, R.t, x.t, w.t, rstd.t, true);
  expect_grad("rmsnorm dinp (accumulate=true, minus prior)", minus(acc, prior), fd);
}

// ---- RoPE ------------------------------------------------------------------------------------------

TEST(KernelBackward, Rope) {
  const std::vector<int32_t> lens{1, 5, 17};
  I32 pos(positions_of(lens));
  const int64_t T = pos.size();
  for (int64_t D : {16, 128}) {
    const int64_t NH = D == 16 ? 3 : 1;
    const float theta = 10000.0f;
    F32 x = random({T, NH, D}, 211), R = random({T, NH, D}, 212);
    Vec xd = x.d(), Rd = R.d();
    std::vector<size_t> coords = D == 16 ? std::vector<size_t>{} : sample_coords(xd.size(), 400, 213);
    Vec fd = fd_grad(xd, [&] { return ref::sum_weighted(ref::rope(xd, pos.v, T, NH, D, theta), Rd); }, 1e-5, coords);
    F32 dx = clone(R);  // in place: dx holds dout on entry, dinp on exit
    ops::rope_backward(dx.t, pos.t, theta);
    expect_grad(D == 16 ? "rope dx (D=16)" : "rope dx (D=128)", pick(dx.d(), coords), fd);
  }
}

// ---- attention -------------------------------------------------------------------------------------

struct AttnGradCase {
  std::vector<int32_t> lens;
  int64_t H, KV, D;
  size_t sample;  // coordinates checked per input (0: all)
};

class KernelAttentionBackward : public testing::TestWithParam<AttnGradCase> {};

TEST_P(KernelAttentionBackward, PackedGqa) {
  const AttnGradCase& c = GetParam();
  I32 cu(cu_seqlens_of(c.lens));
  const int64_t T = cu[cu.size() - 1];
  const int max_len = *std::max_element(c.lens.begin(), c.lens.end());
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
  F32 q = random({T, c.H, c.D}, 221, -1.5f, 1.5f), k = random({T, c.KV, c.D}, 222, -1.5f, 1.5f);
  F32 v = random({T, c.KV, c.D}, 223), R = random({T, c.H, c.D}, 224);
  F32 out({T, c.H, c.D}), lse({c.H, T});
  ops::attention_forward(out.t, lse.t, q.t, k.t, v.t, cu.t, max_len, scale);
  F32 dq = nan_filled({T, c.H, c.D}), dk = nan_filled({T, c.KV, c.D}), dv = nan_filled({T, c.KV, c.D});
  ops::attention_backward(dq.t, dk.t, dv.t, R.t, q.t, k.t, v.t, out.t, lse.t, cu.t, max_len, scale);

  Vec qd = q.d(), kd = k.d(), vd = v.d(), Rd = R.d();
  auto f = [&] { return ref::sum_weighted(ref::attention(qd, kd, vd, cu.v, T, c.H, c.KV, c.D, scale), Rd); };
  const std::vector<size_t> cq = c.sample ? sample_coords(qd.size(), c.sample, 225) : std::vector<size_t>{};
  const std::vector<size_t> ck = c.sample ? sample_coords(kd.size(), c.sample, 226) : std::vector<size_t>{};
  expect_grad("attention dq", pick(dq.d(), cq), fd_grad(qd, f, 1e-5, cq));
  expect_grad("attention dk", pick(dk.d(), ck), fd_grad(kd, f, 1e-5, ck));
  expect_grad("attention dv", pick(dv.d(), ck), fd_grad(vd, f, 1e-5, ck));
}

namespace {
std::string attn_grad_case_name(const testing::TestParamInfo<AttnGradCase>& info) {
  // (fmt, not operator+: g++ 12 -O3 raises a false -Wrestrict on "x" + std::string)
  std::string n = "lens";
  for (int32_t l : info.param.lens) n += fmt::format("_{}", l);
  return n + fmt::format("_H{}_KV{}_D{}", info.param.H, info.param.KV, info.param.D);
}
}  // namespace

INSTANTIATE_TEST_SUITE_P(Packed, KernelAttentionBackward,
                         testing::Values(AttnGradCase{{1, 5, 17}, 4, 2, 16, 0},
                                         AttnGradCase{{1, 5, 17}, 4, 2, 128, 300},
                                         AttnGradCase{{6, 1, 4}, 4, 1, 8, 0},
                                         AttnGradCase{{3, 0, 7}, 2, 2, 8, 0}),
                         attn_grad_case_name);

// ---- SwiGLU ----------------------------------------------------------------------------------------

TEST(KernelBackward, Swiglu) {
  const int64_t T = 3, I = 17;
  F32 gate = random({T, I}, 231, -5, 5), up = random({T, I}, 232, -2, 2), R = random({T, I}, 233);
  F32 dgate = nan_filled({T, I}), dup = nan_filled({T, I});
  ops::swiglu_backward(dgate.t, dup.t, R.t, gate.t, up.t);
  Vec gd = gate.d(), ud = up.d(), Rd = R.d();
  auto f = [&] { return ref::sum_weighted(ref::swiglu(gd, ud), Rd); };
  expect_grad("swiglu dgate", dgate.d(), fd_grad(gd, f));
  expect_grad("swiglu dup", dup.d(), fd_grad(ud, f));
}

// ---- linear ----------------------------------------------------------------------------------------

TEST(KernelBackward, LinearInputWriteAndAccumulate) {
  const int64_t T = 4, IC = 12, OC = 7;
  F32 x = random({T, IC}, 241), W = random({OC, IC}, 242), b = random({OC}, 243), R = random({T, OC}, 244);
  Vec xd = x.d(), Wd = W.d(), bd = b.d(), Rd = R.d();
  Vec fd = fd_grad(xd, [&] { return ref::sum_weighted(ref::linear(xd, Wd, bd, T, IC, OC), Rd); });
  F32 dx = nan_filled({T, IC});
  ops::linear_backward_input(dx.t, R.t, W.t, false);
  expect_grad("linear dinp (accumulate=false)", dx.d(), fd);
  F32 prior = random({T, IC}, 245, -3, 3), acc = clone(prior);
  ops::linear_backward_input(acc.t, R.t, W.t, true);
  expect_grad("linear dinp (accumulate=true, minus prior)", minus(acc, prior), fd);
}

// ---- LoRA ------------------------------------------------------------------------------------------

TEST(KernelBackward, LoraAccumulatesDaDbDinp) {
  const int64_t T = 5, IC = 12, OC = 8, R = 3;
  const float scale = 2.0f;
  F32 x = random({T, IC}, 251), A = random({R, IC}, 252), B = random({OC, R}, 253), out0 = random({T, OC}, 254);
  F32 Rw = random({T, OC}, 255);
  F32 out = clone(out0), xa({T, R});
  ops::lora_forward(out.t, xa.t, x.t, A.t, B.t, scale);

  Vec xd = x.d(), Ad = A.d(), Bd = B.d(), o0 = out0.d(), Rd = Rw.d();
  auto f = [&] { return ref::sum_weighted(ref::lora(o0, xd, Ad, Bd, T, IC, OC, R, scale), Rd); };
  Vec fdA = fd_grad(Ad, f), fdB = fd_grad(Bd, f), fdx = fd_grad(xd, f);

  F32 pA = random({R, IC}, 256, -2, 2), pB = random({OC, R}, 257, -2, 2), px = random({T, IC}, 258, -2, 2);
  F32 dA = clone(pA), dB = clone(pB), dx = clone(px), g = nan_filled({T, R});
  ops::lora_backward(dx.t, dA.t, dB.t, g.t, Rw.t, x.t, xa.t, A.t, B.t, scale);
  expect_grad("lora dA (minus prior)", minus(dA, pA), fdA);
  expect_grad("lora dB (minus prior)", minus(dB, pB), fdB);
  expect_grad("lora dinp (minus prior)", minus(dx, px), fdx);
  // g[t, r] = scale * sum_o dout[t, o] * B[o, r] (the documented workspace content).
  Vec want_g(static_cast<size_t>(T * R), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t o = 0; o < OC; ++o)
        want_g[ref::z(t * R + r)] += scale * Rd[ref::z(t * OC + o)] * Bd[ref::z(o * R + r)];
  EXPECT_TRUE(all_close(g, want_g, 1e-5, 1e-5)) << "lora g workspace";

  // A second call accumulates again (gradient accumulation over micro-batches): dA = prior + 2 grad.
  ops::lora_backward(dx.t, dA.t, dB.t, g.t, Rw.t, x.t, xa.t, A.t, B.t, scale);
  Vec twice = fdA;
  for (double& e : twice) e *= 2;
  expect_grad("lora dA after two calls (minus prior)", minus(dA, pA), twice);

  // dinp undefined: skipped, dA/dB still accumulate.
  F32 dA2 = clone(pA), dB2 = clone(pB);
  ops::lora_backward(Tensor(), dA2.t, dB2.t, g.t, Rw.t, x.t, xa.t, A.t, B.t, scale);
  expect_grad("lora dA without dinp", minus(dA2, pA), fdA);
  expect_grad("lora dB without dinp", minus(dB2, pB), fdB);
}

// ---- cross-entropy ---------------------------------------------------------------------------------

TEST(KernelBackward, CrossEntropy) {
  const int64_t T = 5, V = 13;
  const float gs = 0.2f;
  F32 logits = random({T, V}, 261, -3, 3);
  I32 targets({2, -100, 12, 0, 7});
  F32 d = nan_filled({T, V});
  ops::cross_entropy_backward(d.t, logits.t, targets.t, gs);
  Vec ld = logits.d();
  Vec fd = fd_grad(ld, [&] {
    Vec l = ref::cross_entropy(ld, targets.v, T, V);
    double s = 0;
    for (double e : l) s += gs * e;
    return s;
  });
  expect_grad("cross_entropy dlogits", d.d(), fd);
}

TEST(KernelBackward, LmHeadCrossEntropyDhidden) {
  const int64_t T = 7, C = 8, V = 11;
  const float gs = 1.0f / 5.0f;
  F32 hidden = random({T, C}, 271), W = random({V, C}, 272);
  I32 targets({1, 10, -100, 0, 5, -100, 3});
  Vec hd = hidden.d(), Wd = W.d();
  Vec fd = fd_grad(hd, [&] {
    Vec l = ref::cross_entropy(ref::linear(hd, Wd, {}, T, C, V), targets.v, T, V);
    double s = 0;
    for (double e : l) s += gs * e;
    return s;
  });
  for (int64_t chunk : {1, 3, 7, 100}) {
    F32 losses({T}), dh = nan_filled({T, C}), ws({std::min<int64_t>(chunk, T) * V});
    ops::lm_head_cross_entropy(losses.t, Tensor(), dh.t, hidden.t, W.t, targets.t, gs, ws.t, chunk);
    expect_grad(fmt::format("lm_head_cross_entropy dhidden, chunk {}", chunk).c_str(), dh.d(), fd);
  }
}

// ---- dropout ---------------------------------------------------------------------------------------

// Dropout is linear in its input for a fixed mask: the backward is exactly the forward's Jacobian.
TEST(KernelBackward, DropoutIsTheForwardsJacobian) {
  const int64_t n = 101;
  const float p = 0.25f;
  F32 x = random({n}, 281), R = random({n}, 282), out({n}), dx({n});
  ops::dropout_forward(out.t, x.t, p, 9, 8);
  ops::dropout_backward(dx.t, R.t, p, 9, 8);
  // f = sum(out * R) = sum_i x_i m_i R_i / (1-p)  =>  df/dx_i = m_i R_i / (1-p); check via one-hot inputs.
  for (int64_t i = 0; i < n; ++i) {
    F32 e({n}, 0.0f), y({n});
    e[i] = 1.0f;
    ops::dropout_forward(y.t, e.t, p, 9, 8);
    ASSERT_FLOAT_EQ(dx[i], y[i] * R[i]) << i;
  }
}

// DESIGN.md: backward reductions are deterministic (no floating-point atomics), so a resumed run is
// bit-identical. Repeated calls (with OpenMP threads) must give the same bits.
TEST(KernelBackward, BitwiseDeterministic) {
  I32 cu(cu_seqlens_of({7, 30, 3}));
  const int64_t T = 40, H = 4, KV = 2, D = 32;
  F32 q = random({T, H, D}, 291), k = random({T, KV, D}, 292), v = random({T, KV, D}, 293), R = random({T, H, D}, 294);
  F32 out({T, H, D}), lse({H, T});
  ops::attention_forward(out.t, lse.t, q.t, k.t, v.t, cu.t, 30, 0.2f);
  std::vector<float> first;
  for (int rep = 0; rep < 3; ++rep) {
    F32 dq({T, H, D}), dk({T, KV, D}), dv({T, KV, D});
    ops::attention_backward(dq.t, dk.t, dv.t, R.t, q.t, k.t, v.t, out.t, lse.t, cu.t, 30, 0.2f);
    std::vector<float> all = dq.v;
    all.insert(all.end(), dk.v.begin(), dk.v.end());
    all.insert(all.end(), dv.v.begin(), dv.v.end());
    if (rep == 0) first = all;
    else EXPECT_EQ(all, first) << "attention_backward, repetition " << rep;
  }
  const int64_t C = 16, V = 50;
  F32 hidden = random({T, C}, 295), W = random({V, C}, 296);
  std::vector<int32_t> tg(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) tg[static_cast<size_t>(t)] = t % 5 == 0 ? -100 : static_cast<int32_t>((t * 7) % V);
  I32 targets(tg);
  std::vector<float> first_dh;
  for (int rep = 0; rep < 3; ++rep) {
    F32 losses({T}), dh({T, C}), ws({8 * V});
    ops::lm_head_cross_entropy(losses.t, Tensor(), dh.t, hidden.t, W.t, targets.t, 0.1f, ws.t, 8);
    if (rep == 0) first_dh = dh.v;
    else EXPECT_EQ(dh.v, first_dh) << "lm_head_cross_entropy, repetition " << rep;
  }
}

}  // namespace cotune::ktest
