// The fused / side-by-side forms of kernels/ops.h against their unfused compositions on the CPU (fp32), which is
// what their CUDA twins are tested against on the GPU (tests/cuda/gemm_test.cpp): linear_forward_residual =
// linear_forward + add; the LoRA column-block ops = lora_forward / lora_backward; the device-scale LM head =
// lm_head_cross_entropy; nf4_dequantize_batch = nf4_dequantize per weight; zero.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/decode_ops.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "kernel_test_util.h"

namespace cotune {
namespace {

using ktest::F32;
using ktest::random;

void expect_close(const F32& got, const F32& want, float tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (int64_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1.0f + std::fabs(want[i]))) << what << " at " << i;
}

TEST(KernelFusedForms, LinearForwardResidualIsLinearPlusAdd) {
  const int64_t T = 5, IC = 12, OC = 7;
  F32 x = random({T, IC}, 1), w = random({OC, IC}, 2), bias = random({OC}, 3), res = random({T, OC}, 4);
  for (bool with_bias : {false, true}) {
    const Tensor b = with_bias ? bias.t : Tensor();
    F32 want({T, OC}), proj({T, OC});
    kernels::linear_forward(proj.t, x.t, w.t, b);
    kernels::add(want.t, res.t, proj.t);
    F32 got({T, OC});
    kernels::linear_forward_residual(got.t, x.t, w.t, res.t, b);
    expect_close(got, want, 1e-6f, "out");
    F32 in_place = ktest::clone(res);  // out aliases the residual: out += the projection
    kernels::linear_forward_residual(in_place.t, x.t, w.t, in_place.t, b);
    expect_close(in_place, want, 1e-6f, "in place");
  }
  F32 bad({T, OC + 1});
  EXPECT_THROW(kernels::linear_forward_residual(bad.t, x.t, w.t, res.t), Error);
}

// Two projections sharing an input, their A stacked [2R, IC] and xa / g side by side in [T, 2R] matrices, against
// lora_forward / lora_backward per projection.
TEST(KernelFusedForms, LoraColumnBlocksAreLoraForwardBackward) {
  const int64_t T = 6, IC = 10, R = 3, OC0 = 8, OC1 = 5;
  const float scale = 1.5f;
  F32 x = random({T, IC}, 10), As = random({2 * R, IC}, 11);
  F32 B0 = random({OC0, R}, 12), B1 = random({OC1, R}, 13);
  F32 dy0 = random({T, OC0}, 14), dy1 = random({T, OC1}, 15);
  const Tensor A0(As.v.data(), DType::f32, {R, IC}), A1(As.v.data() + R * IC, DType::f32, {R, IC});
  const Tensor* Bs[2] = {&B0.t, &B1.t};
  const Tensor* dys[2] = {&dy0.t, &dy1.t};

  // Reference: lora_forward / lora_backward of each projection (dinp accumulates both).
  F32 ref_out0 = random({T, OC0}, 16), ref_out1 = random({T, OC1}, 17);
  F32 ref_dinp({T, IC}), ref_dA({2 * R, IC}), ref_dB0({OC0, R}), ref_dB1({OC1, R});
  const Tensor dAs[2] = {Tensor(ref_dA.v.data(), DType::f32, {R, IC}),
                         Tensor(ref_dA.v.data() + R * IC, DType::f32, {R, IC})};
  F32* ref_outs[2] = {&ref_out0, &ref_out1};
  F32* ref_dBs[2] = {&ref_dB0, &ref_dB1};
  F32 out0 = ktest::clone(ref_out0), out1 = ktest::clone(ref_out1);
  for (int i = 0; i < 2; ++i) {
    F32 xa({T, R}), g({T, R});
    kernels::lora_forward(ref_outs[i]->t, xa.t, x.t, i ? A1 : A0, *Bs[i], scale);
    kernels::lora_backward(ref_dinp.t, dAs[i], ref_dBs[i]->t, g.t, *dys[i], x.t, xa.t, i ? A1 : A0, *Bs[i], scale);
  }

  // Column blocks: one xa GEMM for both, one stacked dA / dinp GEMM.
  F32 xa({T, 2 * R}), g({T, 2 * R}), dA({2 * R, IC}), dB0({OC0, R}), dB1({OC1, R}), dinp({T, IC});
  kernels::lora_xa({xa.t, 0, 2 * R}, x.t, As.t);
  F32* outs[2] = {&out0, &out1};
  F32* dBs[2] = {&dB0, &dB1};
  for (int i = 0; i < 2; ++i) {
    kernels::lora_up(outs[i]->t, {xa.t, i * R, R}, *Bs[i], scale);
    kernels::lora_grad_b(dBs[i]->t, {g.t, i * R, R}, *dys[i], {xa.t, i * R, R}, *Bs[i], scale);
  }
  kernels::lora_grad_a(dA.t, dinp.t, {g.t, 0, 2 * R}, x.t, As.t, false);
  expect_close(out0, ref_out0, 1e-5f, "out q");
  expect_close(out1, ref_out1, 1e-5f, "out k");
  expect_close(dB0, ref_dB0, 1e-5f, "dB q");
  expect_close(dB1, ref_dB1, 1e-5f, "dB k");
  expect_close(dA, ref_dA, 1e-5f, "dA stacked");
  expect_close(dinp, ref_dinp, 1e-5f, "dinp");

  // lora_up without accumulate writes; lora_grad_a with accumulate adds.
  F32 written({T, OC0}, 7.0f), plain({T, OC0});
  kernels::lora_up(written.t, {xa.t, 0, R}, B0.t, scale, false);
  kernels::lora_up(plain.t, {xa.t, 0, R}, B0.t, scale);
  expect_close(written, plain, 1e-6f, "lora_up =");
  F32 dA2({2 * R, IC}), dinp2 = ktest::clone(dinp);
  kernels::lora_grad_a(dA2.t, dinp2.t, {g.t, 0, 2 * R}, x.t, As.t, true);
  for (int64_t i = 0; i < dinp.size(); ++i) ASSERT_NEAR(dinp2[i], 2 * dinp[i], 1e-5f * (1 + std::fabs(dinp[i])));

  // Columns outside the matrix, or a rank that disagrees with A, are errors naming the op.
  EXPECT_THROW(kernels::lora_xa({xa.t, R, 2 * R}, x.t, As.t), Error);
  EXPECT_THROW(kernels::lora_up(out0.t, {xa.t, 0, R}, B1.t, scale), Error);
}

TEST(KernelFusedForms, LmHeadDeviceScaleIsHostScale) {
  const int64_t T = 7, C = 16, V = 23, chunk = 3;
  F32 h = random({T, C}, 20), w = random({V, C}, 21);
  ktest::I32 targets({1, -100, 22, 0, 5, -100, 9});
  F32 ws({chunk * V});
  F32 loss_a({T}), loss_b({T}), dh_a({T, C}), dh_b({T, C});
  ktest::I32 corr_a{std::vector<int32_t>(T)}, corr_b{std::vector<int32_t>(T)};
  kernels::lm_head_cross_entropy(loss_a.t, corr_a.t, dh_a.t, h.t, w.t, targets.t, 0.25f, ws.t, chunk);
  float scalars[2] = {0.25f, 0.0f};
  kernels::lm_head_cross_entropy_device_scale(loss_b.t, corr_b.t, dh_b.t, h.t, w.t, targets.t,
                                              Tensor(scalars, DType::f32, {2}), ws.t, chunk);
  EXPECT_EQ(loss_a.v, loss_b.v);
  EXPECT_EQ(dh_a.v, dh_b.v);
  EXPECT_EQ(corr_a.v, corr_b.v);
  EXPECT_THROW(kernels::lm_head_cross_entropy_device_scale(loss_b.t, corr_b.t, dh_b.t, h.t, w.t, targets.t,
                                                           Tensor(scalars, DType::f32, {1}), ws.t, chunk),
               Error);
}

TEST(KernelFusedForms, Nf4DequantizeBatchIsOneCallEach) {
  F32 w0 = random({4, 64}, 30), w1 = random({3, 128}, 31);
  kernels::Nf4Buffers q0 = kernels::nf4_quantize(w0.t), q1 = kernels::nf4_quantize(w1.t);
  const kernels::Nf4Weight qs[2] = {q0.view(), q1.view()};
  F32 a0({4, 64}), a1({3, 128}), b0({4, 64}), b1({3, 128});
  kernels::nf4_dequantize(qs[0], a0.t);
  kernels::nf4_dequantize(qs[1], a1.t);
  const Tensor outs[2] = {b0.t, b1.t};
  kernels::nf4_dequantize_batch(qs, outs);
  EXPECT_EQ(a0.v, b0.v);
  EXPECT_EQ(a1.v, b1.v);
  EXPECT_THROW(kernels::nf4_dequantize_batch(qs, std::span<const Tensor>(outs, 1)), Error);
}

TEST(KernelFusedForms, ZeroWritesZeros) {
  F32 x = random({3, 5}, 40);
  kernels::zero(x.t);
  for (float v : x.v) EXPECT_EQ(v, 0.0f);
  kernels::zero(Tensor());  // undefined: nothing to do
}

// swiglu_backward in place (the runner writes the gate / up gradients over the gate / up activations): the same
// values as into separate buffers.
TEST(KernelFusedForms, SwigluBackwardInPlace) {
  const int64_t T = 6, I = 37;
  F32 g = random({T, I}, 31), u = random({T, I}, 32), d = random({T, I}, 33), dg({T, I}), du({T, I});
  kernels::swiglu_backward(dg.t, du.t, d.t, g.t, u.t);
  kernels::swiglu_backward(g.t, u.t, d.t, g.t, u.t);
  expect_close(g, dg, 0.0f, "dgate in place");
  expect_close(u, du, 0.0f, "dup in place");
}

// The device decode loop's greedy step (decode_ops.h argmax_advance), CPU twin: the arg-max over [0, vocab) with the
// lowest id on ties and NaN never winning, written to ids / tokens[count], count and pos advanced.
TEST(KernelFusedForms, ArgmaxAdvance) {
  const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
  std::vector<float> logits = {1.0f, 3.0f, nan, 3.0f, -inf, 9.0f};
  std::vector<float> pv(static_cast<size_t>(kernels::argmax_partials()));
  std::vector<int32_t> pi(pv.size()), ids = {0}, pos = {7}, tokens = {-1, -1, -1}, count = {1};
  auto run = [&](int64_t vocab) {
    kernels::argmax_advance(Tensor(logits.data(), DType::f32, {1, 6}), vocab,
                            Tensor(pv.data(), DType::f32, {static_cast<int64_t>(pv.size())}),
                            Tensor(pi.data(), DType::i32, {static_cast<int64_t>(pi.size())}),
                            Tensor(ids.data(), DType::i32, {1}), Tensor(pos.data(), DType::i32, {1}),
                            Tensor(tokens.data(), DType::i32, {3}), Tensor(count.data(), DType::i32, {1}));
  };
  run(5);  // id 5 (9.0) lies past the vocabulary: 1 and 3 tie at 3.0, the lower wins; the NaN never does
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(tokens, (std::vector<int32_t>{-1, 1, -1}));
  EXPECT_EQ(count[0], 2);
  EXPECT_EQ(pos[0], 8);
  run(6);
  EXPECT_EQ(ids[0], 5);
  EXPECT_EQ(tokens[2], 5);
  EXPECT_EQ(count[0], 3);
  EXPECT_THROW(run(6), Error);  // tokens is full
  count[0] = 0;
  logits = {nan, nan, nan, nan, nan, nan};
  run(6);
  EXPECT_EQ(ids[0], std::numeric_limits<int32_t>::max());  // nothing but NaN: no id (as the CUDA kernel)
  EXPECT_THROW(run(7), Error);  // a vocabulary past the logits
}

}  // namespace
}  // namespace cotune
