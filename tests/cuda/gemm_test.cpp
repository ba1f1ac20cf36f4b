// CUDA GEMM ops (matmul, linear, LoRA) against their CPU fp32 twins (kernels/ops.h dispatch on the tensors'
// device). Tolerances (relative Frobenius error):
//   f32 x f32 -> f32:        1e-5 (cuBLASLt COMPUTE_32F, no TF32; only summation order differs)
//   bf16 x bf16 -> f32:      1e-4 (exact bf16 inputs, fp32 accumulation)
//   anything with a bf16 output or bf16-rounded operand: 1e-2 (one bf16 rounding is ~2e-3 relative)
#include <gtest/gtest.h>

#include "cuda_test_util.h"
#include "kernels/ops.h"

namespace cotune::testing {
namespace {

using kernels::cuda::synchronize;

TEST(CudaGemm, MatmulF32AllTransposes) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.5));
  const int64_t M = 200, N = 301, K = 157;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      auto a = randn(static_cast<size_t>(M * K), 1 + ta, 1.0f, false);
      auto b = randn(static_cast<size_t>(K * N), 3 + tb, 1.0f, false);
      auto c = randn(static_cast<size_t>(M * N), 5, 1.0f, false);
      const Shape sa = ta ? Shape{K, M} : Shape{M, K}, sb = tb ? Shape{N, K} : Shape{K, N};
      Tensor da = upload(arena, a, sa, DType::f32), db = upload(arena, b, sb, DType::f32);
      Tensor dc = upload(arena, c, Shape{M, N}, DType::f32);
      kernels::matmul(dc, da, db, ta, tb, 0.5f, 0.25f);
      kernels::matmul(host(c, Shape{M, N}), host(a, sa), host(b, sb), ta, tb, 0.5f, 0.25f);
      std::printf("trans_a=%d trans_b=%d\n", ta, tb);
      EXPECT_REL(download(dc), c, 1e-5);
    }
}

TEST(CudaGemm, MatmulBf16ToF32AndBf16) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.5));
  const int64_t M = 512, N = 8960, K = 1536;
  auto a = randn(static_cast<size_t>(M * K), 11);
  add_outlier_channels(a, K, 20.0f);
  auto b = randn(static_cast<size_t>(N * K), 12, 0.02f);
  std::vector<float> ref(static_cast<size_t>(M * N));
  kernels::matmul(host(ref, Shape{M, N}), host(a, Shape{M, K}), host(b, Shape{N, K}), false, true);
  Tensor da = upload(arena, a, Shape{M, K}, DType::bf16), db = upload(arena, b, Shape{N, K}, DType::bf16);
  Tensor o32 = arena.alloc(DType::f32, Shape{M, N}), o16 = arena.alloc(DType::bf16, Shape{M, N});
  poison(o32);
  poison(o16);
  kernels::matmul(o32, da, db, false, true);
  kernels::matmul(o16, da, db, false, true);
  EXPECT_REL(download(o32), ref, 1e-4);
  EXPECT_REL(download(o16), ref, 1e-2);
}

TEST(CudaGemm, LinearForwardBiasAndBackwardInput) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.5));
  const int64_t T = 300, IC = 1536, OC = 256;
  auto x = randn(static_cast<size_t>(T * IC), 21);
  add_outlier_channels(x, IC, 20.0f);
  auto w = randn(static_cast<size_t>(OC * IC), 22, 0.02f);
  auto bias = randn(static_cast<size_t>(OC), 23, 0.5f);
  std::vector<float> out(static_cast<size_t>(T * OC));
  kernels::linear_forward(host(out, Shape{T, OC}), host(x, Shape{T, IC}), host(w, Shape{OC, IC}), host(bias, Shape{OC}));
  Tensor dx = upload(arena, x, Shape{T, IC}, DType::bf16), dw = upload(arena, w, Shape{OC, IC}, DType::bf16);
  Tensor db = upload(arena, bias, Shape{OC}, DType::bf16), dout = arena.alloc(DType::bf16, Shape{T, OC});
  poison(dout);
  kernels::linear_forward(dout, dx, dw, db);
  EXPECT_REL(download(dout), out, 1e-2);

  // dinp = dy @ W, then accumulate a second time onto it.
  auto dy = randn(static_cast<size_t>(T * OC), 24);
  auto acc = randn(static_cast<size_t>(T * IC), 25);
  std::vector<float> ref = acc;
  kernels::linear_backward_input(host(ref, Shape{T, IC}), host(dy, Shape{T, OC}), host(w, Shape{OC, IC}), true);
  Tensor ddy = upload(arena, dy, Shape{T, OC}, DType::bf16), dacc = upload(arena, acc, Shape{T, IC}, DType::bf16);
  kernels::linear_backward_input(dacc, ddy, dw, true);
  EXPECT_REL(download(dacc), ref, 1e-2);
  std::vector<float> ref2(static_cast<size_t>(T * IC));
  kernels::linear_backward_input(host(ref2, Shape{T, IC}), host(dy, Shape{T, OC}), host(w, Shape{OC, IC}), false);
  poison(dacc);
  kernels::linear_backward_input(dacc, ddy, dw, false);
  EXPECT_REL(download(dacc), ref2, 1e-2);
}

TEST(CudaGemm, LoraForwardBackward) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.5));
  for (int64_t R : {16, 64}) {
    const int64_t T = 1000, IC = 1536, OC = 1536;
    const float scale = 2.0f;
    auto x = randn(static_cast<size_t>(T * IC), 31);
    add_outlier_channels(x, IC, 20.0f);
    auto A = randn(static_cast<size_t>(R * IC), 32, 0.02f, false);
    auto B = randn(static_cast<size_t>(OC * R), 33, 0.02f, false);
    auto base = randn(static_cast<size_t>(T * OC), 34);
    std::vector<float> out = base, xa(static_cast<size_t>(T * R));
    kernels::lora_forward(host(out, Shape{T, OC}), host(xa, Shape{T, R}), host(x, Shape{T, IC}), host(A, Shape{R, IC}),
                          host(B, Shape{OC, R}), scale);
    Tensor dx = upload(arena, x, Shape{T, IC}, DType::bf16), dA = upload(arena, A, Shape{R, IC}, DType::f32);
    Tensor dB = upload(arena, B, Shape{OC, R}, DType::f32), dout = upload(arena, base, Shape{T, OC}, DType::bf16);
    Tensor dxa = arena.alloc(DType::f32, Shape{T, R});
    poison(dxa);
    kernels::lora_forward(dout, dxa, dx, dA, dB, scale);
    std::printf("rank %ld\n", static_cast<long>(R));
    EXPECT_REL(download(dxa), xa, 1e-2);
    // The branch alone (out - base) is what LoRA adds; compare that too, it is much smaller than out.
    {
      auto got = download(dout);
      std::vector<float> gd(got.size()), rd(got.size());
      for (size_t i = 0; i < got.size(); ++i) {
        gd[i] = got[i] - base[i];
        rd[i] = out[i] - base[i];
      }
      EXPECT_REL(got, out, 1e-2);
      EXPECT_REL(gd, rd, 5e-2);  // difference of two bf16-rounded tensors: dominated by out's rounding
    }

    auto dy = randn(static_cast<size_t>(T * OC), 35);
    auto gA = randn(static_cast<size_t>(R * IC), 36, 0.1f, false), gB = randn(static_cast<size_t>(OC * R), 37, 0.1f, false);
    auto dinp = randn(static_cast<size_t>(T * IC), 38);
    std::vector<float> rA = gA, rB = gB, rdinp = dinp, rg(static_cast<size_t>(T * R));
    kernels::lora_backward(host(rdinp, Shape{T, IC}), host(rA, Shape{R, IC}), host(rB, Shape{OC, R}),
                           host(rg, Shape{T, R}), host(dy, Shape{T, OC}), host(x, Shape{T, IC}), host(xa, Shape{T, R}),
                           host(A, Shape{R, IC}), host(B, Shape{OC, R}), scale);
    Tensor ddy = upload(arena, dy, Shape{T, OC}, DType::bf16);
    Tensor dgA = upload(arena, gA, Shape{R, IC}, DType::f32), dgB = upload(arena, gB, Shape{OC, R}, DType::f32);
    Tensor ddinp = upload(arena, dinp, Shape{T, IC}, DType::bf16), dg = arena.alloc(DType::f32, Shape{T, R});
    Tensor dxa_ref = upload(arena, xa, Shape{T, R}, DType::f32);
    poison(dg);
    kernels::lora_backward(ddinp, dgA, dgB, dg, ddy, dx, dxa_ref, dA, dB, scale);
    EXPECT_REL(download(dg), rg, 1e-2);
    EXPECT_REL(download(dgA), rA, 1e-2);
    EXPECT_REL(download(dgB), rB, 1e-2);
    EXPECT_REL(download(ddinp), rdinp, 1e-2);
    // Deterministic: the same inputs give the same bits.
    Tensor dgA2 = upload(arena, gA, Shape{R, IC}, DType::f32), dgB2 = upload(arena, gB, Shape{OC, R}, DType::f32);
    Tensor ddinp2 = upload(arena, dinp, Shape{T, IC}, DType::bf16);
    kernels::lora_backward(ddinp2, dgA2, dgB2, dg, ddy, dx, dxa_ref, dA, dB, scale);
    EXPECT_EQ(download_bytes(dgA2), download_bytes(dgA));
    EXPECT_EQ(download_bytes(dgB2), download_bytes(dgB));
    EXPECT_EQ(download_bytes(ddinp2), download_bytes(ddinp));
    // Without dinp (the first layer's input needs no gradient).
    kernels::lora_backward(Tensor(), dgA2, dgB2, dg, ddy, dx, dxa_ref, dA, dB, scale);
    synchronize();
  }
}

// linear_forward_residual = linear_forward + add (CPU twins), with the residual added in the GEMM epilogue.
TEST(CudaGemm, LinearForwardResidualMatchesCpu) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.5));
  const int64_t T = 300, IC = 8960, OC = 1536;
  auto x = randn(static_cast<size_t>(T * IC), 61);
  auto w = randn(static_cast<size_t>(OC * IC), 62, 0.02f);
  auto res = randn(static_cast<size_t>(T * OC), 63);
  std::vector<float> lin(static_cast<size_t>(T * OC)), ref(static_cast<size_t>(T * OC));
  kernels::linear_forward(host(lin, Shape{T, OC}), host(x, Shape{T, IC}), host(w, Shape{OC, IC}), Tensor());
  kernels::add(host(ref, Shape{T, OC}), host(res, Shape{T, OC}), host(lin, Shape{T, OC}));
  Tensor dx = upload(arena, x, Shape{T, IC}, DType::bf16), dw = upload(arena, w, Shape{OC, IC}, DType::bf16);
  Tensor dres = upload(arena, res, Shape{T, OC}, DType::bf16), dout = arena.alloc(DType::bf16, Shape{T, OC});
  poison(dout);
  kernels::linear_forward_residual(dout, dx, dw, dres);
  EXPECT_REL(download(dout), ref, 1e-2);
  EXPECT_EQ(download(dres), res);  // the residual is only read
  // In place (out aliases the residual). Not compared bitwise with the out-of-place result: on the H100,
  // cuBLASLt's in-place result differed from it in the last bf16 bit of some elements (device run 2026-11-25).
  // The runner uses each form consistently, so its checkpointing-on/off bit-identity is unaffected.
  kernels::linear_forward_residual(dres, dx, dw, dres);
  EXPECT_REL(download(dres), ref, 1e-2);
  // With a bias (q/k/v), accumulating onto the output (the runner writes the LoRA branch there first).
  auto bias = randn(static_cast<size_t>(OC), 64, 0.5f);
  std::vector<float> lb(static_cast<size_t>(T * OC)), refb(static_cast<size_t>(T * OC));
  kernels::linear_forward(host(lb, Shape{T, OC}), host(x, Shape{T, IC}), host(w, Shape{OC, IC}), host(bias, Shape{OC}));
  kernels::add(host(refb, Shape{T, OC}), host(res, Shape{T, OC}), host(lb, Shape{T, OC}));
  Tensor dbias = upload(arena, bias, Shape{OC}, DType::bf16), dacc = upload(arena, res, Shape{T, OC}, DType::bf16);
  kernels::linear_forward_residual(dacc, dx, dw, dacc, dbias);
  EXPECT_REL(download(dacc), refb, 1e-2);
}

// The bf16-operand LoRA entry points (train_ops.h) the runner uses, with two projections sharing one input
// "stacked" (xa, g side by side with row stride 2R; one GEMM for x @ [A1; A2]^T, one for the stacked dA and dinp),
// against the CPU twins of lora_forward / lora_backward applied per projection. bf16-exact A/B (the GPU uses
// bf16 copies); tolerances as above.
// The runner's bf16 LoRA path: ops.h's column-block forms (two projections sharing an input, A stacked, xa / g side
// by side in [T, 2R]) on bf16 operands against lora_forward / lora_backward on the CPU.
TEST(CudaGemm, LoraColumnBlocksStackedMatchCpu) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.5));
  const int64_t T = 300, IC = 1536, R = 16, OC[2] = {1536, 256};
  const float scale = 2.0f;
  auto x = randn(static_cast<size_t>(T * IC), 41);
  add_outlier_channels(x, IC, 20.0f);
  std::vector<float> A[2], B[2], base[2], out[2], xa[2], dy[2], gA[2], gB[2], rg[2];
  std::vector<float> Astack;
  for (int i = 0; i < 2; ++i) {
    A[i] = randn(static_cast<size_t>(R * IC), 42 + static_cast<uint32_t>(i), 0.02f);
    B[i] = randn(static_cast<size_t>(OC[i] * R), 44 + static_cast<uint32_t>(i), 0.02f);
    base[i] = randn(static_cast<size_t>(T * OC[i]), 46 + static_cast<uint32_t>(i));
    dy[i] = randn(static_cast<size_t>(T * OC[i]), 48 + static_cast<uint32_t>(i));
    gA[i] = randn(static_cast<size_t>(R * IC), 50 + static_cast<uint32_t>(i), 0.1f, false);
    gB[i] = randn(static_cast<size_t>(OC[i] * R), 52 + static_cast<uint32_t>(i), 0.1f, false);
    out[i] = base[i];
    xa[i].resize(static_cast<size_t>(T * R));
    rg[i].resize(static_cast<size_t>(T * R));
    Astack.insert(Astack.end(), A[i].begin(), A[i].end());
  }
  auto dinp0 = randn(static_cast<size_t>(T * IC), 54);
  std::vector<float> rdinp = dinp0, rA[2] = {gA[0], gA[1]}, rB[2] = {gB[0], gB[1]};
  for (int i = 0; i < 2; ++i) {
    kernels::lora_forward(host(out[i], Shape{T, OC[i]}), host(xa[i], Shape{T, R}), host(x, Shape{T, IC}),
                          host(A[i], Shape{R, IC}), host(B[i], Shape{OC[i], R}), scale);
    kernels::lora_backward(host(rdinp, Shape{T, IC}), host(rA[i], Shape{R, IC}), host(rB[i], Shape{OC[i], R}),
                           host(rg[i], Shape{T, R}), host(dy[i], Shape{T, OC[i]}), host(x, Shape{T, IC}),
                           host(xa[i], Shape{T, R}), host(A[i], Shape{R, IC}), host(B[i], Shape{OC[i], R}), scale);
  }
  Tensor dx = upload(arena, x, Shape{T, IC}, DType::bf16), dAs = upload(arena, Astack, Shape{2 * R, IC}, DType::bf16);
  Tensor dxa = arena.alloc(DType::bf16, Shape{T, 2 * R}), dg = arena.alloc(DType::bf16, Shape{T, 2 * R});
  poison(dxa);
  poison(dg);
  std::vector<float> gAstack = gA[0];
  gAstack.insert(gAstack.end(), gA[1].begin(), gA[1].end());
  Tensor ddA = upload(arena, gAstack, Shape{2 * R, IC}, DType::f32);
  Tensor ddinp = upload(arena, dinp0, Shape{T, IC}, DType::bf16);
  Tensor dB[2], dout[2], ddy[2], ddB[2];
  for (int i = 0; i < 2; ++i) {
    dB[i] = upload(arena, B[i], Shape{OC[i], R}, DType::bf16);
    dout[i] = upload(arena, base[i], Shape{T, OC[i]}, DType::bf16);
    ddy[i] = upload(arena, dy[i], Shape{T, OC[i]}, DType::bf16);
    ddB[i] = upload(arena, gB[i], Shape{OC[i], R}, DType::f32);
  }
  kernels::lora_xa({dxa, 0, 2 * R}, dx, dAs);
  for (int i = 0; i < 2; ++i) kernels::lora_up(dout[i], {dxa, i * R, R}, dB[i], scale);
  for (int i = 0; i < 2; ++i) kernels::lora_grad_b(ddB[i], {dg, i * R, R}, ddy[i], {dxa, i * R, R}, dB[i], scale);
  kernels::lora_grad_a(ddA, ddinp, {dg, 0, 2 * R}, dx, dAs);
  const auto gxa = download(dxa), gg = download(dg), gdA = download(ddA);
  for (int i = 0; i < 2; ++i) {
    std::vector<float> xa_i, g_i;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t r = 0; r < R; ++r) {
        xa_i.push_back(gxa[static_cast<size_t>(t * 2 * R + i * R + r)]);
        g_i.push_back(gg[static_cast<size_t>(t * 2 * R + i * R + r)]);
      }
    std::printf("projection %d\n", i);
    EXPECT_REL(xa_i, xa[i], 1e-2);
    EXPECT_REL(g_i, rg[i], 1e-2);
    EXPECT_REL(download(dout[i]), out[i], 1e-2);
    EXPECT_REL(download(ddB[i]), rB[i], 1e-2);
    EXPECT_REL(std::vector<float>(gdA.begin() + i * R * IC, gdA.begin() + (i + 1) * R * IC), rA[i], 1e-2);
  }
  EXPECT_REL(download(ddinp), rdinp, 1e-2);
  // dinp written, not accumulated (the runner's first write of a gradient): only the LoRA part.
  std::vector<float> only(static_cast<size_t>(T * IC));
  for (size_t i = 0; i < only.size(); ++i) only[i] = rdinp[i] - dinp0[i];
  Tensor dfresh = arena.alloc(DType::bf16, Shape{T, IC});
  poison(dfresh);
  kernels::lora_grad_a(ddA, dfresh, {dg, 0, 2 * R}, dx, dAs, false);
  EXPECT_REL(download(dfresh), only, 2e-2);
}

}  // namespace
}  // namespace cotune::testing
