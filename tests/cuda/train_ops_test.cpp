// CUDA trainer ops (kernels/cuda/train_ops.h) against the CPU references of kernels/optim.h and kernels/quant.h.
// AdamW and NF4 dequantization round operation by operation as the references do: expected bit-identical
// (AdamW allowed 1 ulp in case a libm/device sqrt differs; NF4 exact). Grad norm: fp64 accumulation on both
// sides, 1e-6 relative; run twice bit-identical.
#include <gtest/gtest.h>

#include <cstring>

#include "cuda_test_util.h"
#include "kernels/cuda/adamw8bit.h"
#include "kernels/cuda/nf4.h"
#include "kernels/cuda/optim.h"
#include "kernels/ops.h"
#include "kernels/optim.h"
#include "kernels/quant.h"

namespace cotune::testing {
namespace {

using kernels::AdamWHyper;
using kernels::Nf4Buffers;
using kernels::Nf4Weight;

int64_t max_ulp_diff(const std::vector<float>& a, const std::vector<float>& b) {
  int64_t worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    int32_t x, y;
    std::memcpy(&x, &a[i], 4);
    std::memcpy(&y, &b[i], 4);
    if (std::isnan(a[i]) || std::isnan(b[i])) return INT32_MAX;
    worst = std::max<int64_t>(worst, std::llabs(static_cast<int64_t>(x) - y));
  }
  return worst;
}

TEST(CudaTrainOps, AdamWMatchesCpu) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.25));
  const int64_t n = 100003;
  auto p = randn(static_cast<size_t>(n), 501, 0.02f, false), g = randn(static_cast<size_t>(n), 502, 1e-3f, false);
  std::vector<float> m(static_cast<size_t>(n), 0.0f), v(static_cast<size_t>(n), 0.0f);
  Tensor dp = upload(arena, p, Shape{n}, DType::f32), dg = upload(arena, g, Shape{n}, DType::f32);
  Tensor dm = upload(arena, m, Shape{n}, DType::f32), dv = upload(arena, v, Shape{n}, DType::f32);
  AdamWHyper h;
  h.lr = 2e-4;
  h.weight_decay = 0.01;
  for (int64_t step = 1; step <= 3; ++step) {
    h.step = step;
    kernels::cpu::adamw_step(p.data(), g.data(), m.data(), v.data(), n, h);
    kernels::cuda::adamw_step(dp, dg, dm, dv, h);
  }
  EXPECT_LE(max_ulp_diff(download(dp), p), 1);
  EXPECT_LE(max_ulp_diff(download(dm), m), 1);
  EXPECT_LE(max_ulp_diff(download(dv), v), 1);

  // A device clip coefficient scales the gradient first; a set skip flag leaves everything untouched.
  std::vector<float> coef{0.25f};
  std::vector<int32_t> skip{0};
  Tensor dcoef = upload(arena, coef, Shape{1}, DType::f32), dskip = upload_i32(arena, skip, Shape{1});
  h.step = 4;
  std::vector<float> gs = g;
  kernels::cpu::scale_inplace(gs.data(), n, 0.25f);
  kernels::cpu::adamw_step(p.data(), gs.data(), m.data(), v.data(), n, h);
  kernels::cuda::adamw_step(dp, dg, dm, dv, h, dcoef, dskip);
  EXPECT_LE(max_ulp_diff(download(dp), p), 1);
  skip[0] = 1;
  dskip = upload_i32(arena, skip, Shape{1});
  const auto before = download_bytes(dp);
  h.step = 5;
  kernels::cuda::adamw_step(dp, dg, dm, dv, h, dcoef, dskip);
  EXPECT_EQ(download_bytes(dp), before);
}

TEST(CudaTrainOps, GradNormClipAndNonFinite) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.25));
  // 70 tensors: two launch groups; sizes from tiny to 1e6.
  std::vector<std::vector<float>> hosts;
  std::vector<Tensor> hts, dts;
  for (int i = 0; i < 70; ++i) {
    const int64_t n = i == 5 ? 1000000 : 1 + (i * 7919) % 20000;
    hosts.push_back(randn(static_cast<size_t>(n), 600 + static_cast<uint32_t>(i), 0.01f, false));
  }
  for (auto& h : hosts) {
    const int64_t n = static_cast<int64_t>(h.size());
    hts.push_back(host(h, Shape{n}));
    dts.push_back(upload(arena, h, Shape{n}, DType::f32));
  }
  const float total = kernels::global_grad_norm(hts);
  const double max_norm = 1.0;
  const float coef = kernels::clip_coefficient(total, max_norm);
  Tensor dnorm = arena.alloc(DType::f32, Shape{1}), dcoef = arena.alloc(DType::f32, Shape{1});
  Tensor dflag = arena.alloc(DType::i32, Shape{1});
  poison(dnorm);
  poison(dcoef);
  poison(dflag);
  kernels::cuda::grad_norm_clip(dnorm, dcoef, dflag, dts, max_norm);
  const auto gn = download(dnorm), gc = download(dcoef), gf = download(dflag);
  std::printf("  grad norm cpu %.9g gpu %.9g, coef cpu %.9g gpu %.9g\n", total, gn[0], coef, gc[0]);
  EXPECT_NEAR(gn[0], total, 1e-6 * total);
  EXPECT_NEAR(gc[0], coef, 1e-6 * coef);
  EXPECT_EQ(gf[0], 0.0f);
  const auto b1 = download_bytes(dnorm);
  kernels::cuda::grad_norm_clip(dnorm, dcoef, dflag, dts, max_norm);
  EXPECT_EQ(download_bytes(dnorm), b1);
  // scale_by applies the coefficient in place (one multiply), like the CPU clip.
  kernels::cuda::scale_by(dts[5], dcoef);
  std::vector<float> ref = hosts[5];
  kernels::cpu::scale_inplace(ref.data(), static_cast<int64_t>(ref.size()), gc[0]);
  EXPECT_REL(download(dts[5]), ref, 0.0);
  // Non-finite: one Inf in one tensor sets the flag.
  std::vector<float> bad = hosts[7];
  bad[3] = INFINITY;
  dts[7] = upload(arena, bad, Shape{static_cast<int64_t>(bad.size())}, DType::f32);
  kernels::cuda::grad_norm_clip(dnorm, dcoef, dflag, dts, max_norm);
  EXPECT_EQ(download(dflag)[0], 1.0f);
  // No clipping requested: coef is 1.
  dts[7] = upload(arena, hosts[7], Shape{static_cast<int64_t>(hosts[7].size())}, DType::f32);
  kernels::cuda::grad_norm_clip(dnorm, dcoef, Tensor(), dts, 0.0);
  EXPECT_EQ(download(dcoef)[0], 1.0f);
}

TEST(CudaTrainOps, ZeroAndReduceSum) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.1));
  const int64_t n = 100001;
  auto x = randn(static_cast<size_t>(n), 801, 3.0f, false);
  std::vector<int32_t> c(static_cast<size_t>(n));
  double ref = 0.0;
  int64_t cref = 0;
  for (int64_t i = 0; i < n; ++i) {
    ref += x[static_cast<size_t>(i)];
    c[static_cast<size_t>(i)] = static_cast<int32_t>(i % 3 == 0);
    cref += c[static_cast<size_t>(i)];
  }
  Tensor dx = upload(arena, x, Shape{n}, DType::f32), dc = upload_i32(arena, c, Shape{n});
  Tensor out = arena.alloc(DType::f32, Shape{1}), cout = arena.alloc(DType::f32, Shape{1});
  kernels::cuda::reduce_sum(out, dx);
  kernels::cuda::reduce_sum(cout, dc);
  EXPECT_NEAR(download(out)[0], ref, 1e-6 * std::fabs(ref) + 1e-3);
  EXPECT_EQ(download(cout)[0], static_cast<float>(cref));
  kernels::zero(dx);
  for (float v : download(dx)) ASSERT_EQ(v, 0.0f);
}

// Copies a host NF4 weight's tensors to the device; the returned weight views device memory in `arena`.
Nf4Weight to_device(const Nf4Weight& h, Arena& arena) {
  Nf4Weight d = h;
  auto up = [&](const Tensor& t) {
    Tensor r = arena.alloc(t.dtype, t.shape, "nf4 part");
    copy_bytes(r, t);
    return r;
  };
  d.packed = up(h.packed);
  d.absmax = up(h.absmax);
  d.quant_map = up(h.quant_map);
  if (h.nested) {
    d.nested_absmax = up(h.nested_absmax);
    d.nested_quant_map = up(h.nested_quant_map);
  }
  return d;
}

TEST(CudaTrainOps, Nf4DequantizeBitExact) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.5));
  struct Case {
    int64_t rows, cols;
    bool nested;
  };
  for (const Case c : {Case{1536, 1536, true}, Case{256, 8960, true}, Case{10, 50, true}, Case{96, 200, false},
                       Case{7, 9, true}}) {
    auto w = randn(static_cast<size_t>(c.rows * c.cols), 700, 0.02f);
    add_outlier_channels(w, c.cols, 30.0f, 2);
    Tensor hw = host(w, Shape{c.rows, c.cols});
    Nf4Buffers buf = kernels::nf4_quantize(hw, c.nested);
    Nf4Weight hq = buf.view();
    Nf4Weight dq = to_device(hq, arena);
    for (DType dt : {DType::bf16, DType::f32}) {
      const int64_t n = c.rows * c.cols;
      std::vector<float> ref32(static_cast<size_t>(n));
      std::vector<uint16_t> ref16(static_cast<size_t>(n));
      if (dt == DType::f32) kernels::nf4_dequantize(hq, Tensor(ref32.data(), DType::f32, Shape{c.rows, c.cols}));
      else kernels::nf4_dequantize(hq, Tensor(ref16.data(), DType::bf16, Shape{c.rows, c.cols}));
      Tensor out = arena.alloc(dt, Shape{c.rows, c.cols});
      poison(out);
      kernels::cuda::nf4_dequantize(dq, out);
      const auto got = download_bytes(out);
      const void* ref = dt == DType::f32 ? static_cast<const void*>(ref32.data()) : ref16.data();
      EXPECT_EQ(std::memcmp(got.data(), ref, got.size()), 0)
          << c.rows << "x" << c.cols << (c.nested ? " nested" : "") << (dt == DType::f32 ? " f32" : " bf16");
    }
  }
}

}  // namespace
}  // namespace cotune::testing

namespace cotune::testing {
namespace {

// Several weights in one launch: byte-identical to one nf4_dequantize each (odd sizes, both absmax kinds, more
// weights than one batch holds).
TEST(CudaTrainOps, Nf4DequantizeBatchMatchesSingle) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.5));
  struct Case {
    int64_t rows, cols;
    bool nested;
  };
  const std::vector<Case> cases = {{1536, 1536, true}, {256, 1536, true}, {7, 9, true},   {96, 200, false},
                                   {8960, 64, true},   {10, 50, true},    {3, 5, false},  {64, 64, true},
                                   {33, 17, true},     {128, 256, false}};
  std::vector<Nf4Buffers> bufs;
  std::vector<Nf4Weight> qs;
  std::vector<Tensor> batch_out, single_out;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    auto w = randn(static_cast<size_t>(c.rows * c.cols), 710 + static_cast<uint32_t>(i), 0.02f);
    bufs.push_back(kernels::nf4_quantize(host(w, Shape{c.rows, c.cols}), c.nested));
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    qs.push_back(to_device(bufs[i].view(), arena));
    batch_out.push_back(arena.alloc(DType::bf16, Shape{cases[i].rows, cases[i].cols}));
    single_out.push_back(arena.alloc(DType::bf16, Shape{cases[i].rows, cases[i].cols}));
    poison(batch_out.back());
    kernels::cuda::nf4_dequantize(qs.back(), single_out.back());
  }
  kernels::cuda::nf4_dequantize_batch(qs, batch_out);
  for (size_t i = 0; i < cases.size(); ++i)
    EXPECT_EQ(download_bytes(batch_out[i]), download_bytes(single_out[i])) << cases[i].rows << "x" << cases[i].cols;
}

// NF4 quantization on the GPU (kernels::nf4_quantize_to, what a 4-bit base's loader and random init use) is
// byte-identical to the host reference nf4_quantize: codes, absmax codes, nested absmax and offset, from bf16 and
// f32 weights, odd sizes and outlier channels included (a partial last block, a padded last nibble).
TEST(CudaTrainOps, Nf4QuantizeOnGpuBitExact) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.5)), scratch(Device::cuda, gib(0.1));
  struct Case {
    int64_t rows, cols;
  };
  for (const Case c : {Case{1536, 1536}, Case{256, 8960}, Case{10, 50}, Case{7, 9}, Case{1, 1}, Case{3, 67}}) {
    for (DType dt : {DType::bf16, DType::f32}) {
      const int64_t n = c.rows * c.cols;
      auto w = randn(static_cast<size_t>(n), 720, 0.02f);
      if (c.cols > 2) add_outlier_channels(w, c.cols, 30.0f, 2);
      std::vector<uint16_t> w16(w.size());
      for (size_t i = 0; i < w.size(); ++i) w16[i] = f32_to_bf16(w[i]);
      const Tensor hw = dt == DType::f32 ? host(w, Shape{c.rows, c.cols}) : Tensor(w16.data(), DType::bf16, Shape{c.rows, c.cols});
      Nf4Buffers ref = kernels::nf4_quantize(hw);
      Tensor dw = arena.alloc(dt, Shape{c.rows, c.cols});
      copy_bytes(dw, hw);
      scratch.reset();
      const Nf4Weight q = kernels::nf4_quantize_to(dw, arena, scratch);
      const std::string what = std::to_string(c.rows) + "x" + std::to_string(c.cols) + (dt == DType::f32 ? " f32" : " bf16");
      ASSERT_EQ(q.packed.device, Device::cuda) << what;
      EXPECT_EQ(download_bytes(q.packed), ref.packed) << what;
      EXPECT_EQ(download_bytes(q.absmax), ref.absmax_q) << what;
      std::vector<uint8_t> nested(ref.nested_absmax.size() * 4);
      std::memcpy(nested.data(), ref.nested_absmax.data(), nested.size());
      EXPECT_EQ(download_bytes(q.nested_absmax), nested) << what;
      EXPECT_EQ(q.offset, ref.offset) << what;
      EXPECT_TRUE(q.nested) << what;
      q.validate(what);
    }
  }
}

// The optimizer's multi-tensor launches against the single-tensor functions, tensor by tensor: bit-identical
// parameters and states (the per-element formulas are the same), and the bf16 copies equal to bf16(p).
TEST(CudaTrainOps, MultiTensorOptimizerMatchesSingleTensor) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.25));
  const std::vector<int64_t> sizes = {4096, 24576, 5000, 300, 1, 143360, 4097, 8191};
  const int nt = static_cast<int>(sizes.size());
  AdamWHyper h;
  h.lr = 2e-4;
  h.weight_decay = 0.01;
  std::vector<float> coef{0.5f};
  std::vector<int32_t> flag{0};
  Tensor dcoef = upload(arena, coef, Shape{1}, DType::f32), dflag = upload_i32(arena, flag, Shape{1});
  for (int eight = 0; eight < 2; ++eight) {
    std::vector<Tensor> pa, pb, g, sa1, sa2, sb1, sb2, am_a1, am_a2, am_b1, am_b2, p16;
    std::vector<kernels::cuda::AdamWSlot> s32;
    std::vector<kernels::cuda::Adam8bitSlot> s8;
    for (int i = 0; i < nt; ++i) {
      const int64_t n = sizes[static_cast<size_t>(i)], nb = (n + 255) / 256;
      auto p = randn(static_cast<size_t>(n), 900 + static_cast<uint32_t>(i), 0.02f, false);
      pa.push_back(upload(arena, p, Shape{n}, DType::f32));
      pb.push_back(upload(arena, p, Shape{n}, DType::f32));
      g.push_back(upload(arena, randn(static_cast<size_t>(n), 950 + static_cast<uint32_t>(i), 1e-3f, false), Shape{n},
                         DType::f32));
      const DType st = eight ? DType::u8 : DType::f32;
      for (auto* v : {&sa1, &sa2, &sb1, &sb2}) v->push_back(arena.zeros(st, Shape{n}));
      for (auto* v : {&am_a1, &am_a2, &am_b1, &am_b2}) v->push_back(arena.zeros(DType::f32, Shape{nb}));
      p16.push_back(arena.zeros(DType::bf16, Shape{n}));
      if (eight) s8.push_back({pb.back(), g.back(), sb1.back(), am_b1.back(), sb2.back(), am_b2.back(), p16.back()});
      else s32.push_back({pb.back(), g.back(), sb1.back(), sb2.back(), p16.back()});
    }
    kernels::cuda::MultiAdamW m32(s32, arena);
    kernels::cuda::MultiAdamW8bit m8(s8, arena);
    for (int64_t step = 1; step <= 3; ++step) {
      h.step = step;
      const Tensor scale = step == 2 ? dcoef : Tensor();
      for (int i = 0; i < nt; ++i) {
        if (eight)
          kernels::cuda::adamw8bit_step(pa[static_cast<size_t>(i)], g[static_cast<size_t>(i)], sa1[static_cast<size_t>(i)],
                                        am_a1[static_cast<size_t>(i)], sa2[static_cast<size_t>(i)],
                                        am_a2[static_cast<size_t>(i)], h, scale, dflag);
        else
          kernels::cuda::adamw_step(pa[static_cast<size_t>(i)], g[static_cast<size_t>(i)], sa1[static_cast<size_t>(i)],
                                    sa2[static_cast<size_t>(i)], h, scale, dflag);
      }
      if (eight) m8.step(h, scale, dflag);
      else m32.step(h, scale, dflag);
    }
    for (int i = 0; i < nt; ++i) {
      const size_t k = static_cast<size_t>(i);
      EXPECT_EQ(download_bytes(pa[k]), download_bytes(pb[k])) << "tensor " << i << " eight_bit " << eight;
      EXPECT_EQ(download_bytes(sa1[k]), download_bytes(sb1[k])) << "tensor " << i;
      EXPECT_EQ(download_bytes(sa2[k]), download_bytes(sb2[k])) << "tensor " << i;
      if (eight) {
        EXPECT_EQ(download_bytes(am_a1[k]), download_bytes(am_b1[k])) << "tensor " << i;
        EXPECT_EQ(download_bytes(am_a2[k]), download_bytes(am_b2[k])) << "tensor " << i;
      }
      EXPECT_EQ(download(p16[k]), rounded_bf16(download(pb[k]))) << "tensor " << i;
    }
    // A set skip flag leaves everything untouched.
    flag[0] = 1;
    Tensor dskip = upload_i32(arena, flag, Shape{1});
    flag[0] = 0;
    const auto before = download_bytes(pb[1]);
    h.step = 4;
    if (eight) m8.step(h, Tensor(), dskip);
    else m32.step(h, Tensor(), dskip);
    EXPECT_EQ(download_bytes(pb[1]), before);
  }

  // The multi-tensor norm against the CPU reference (fp64 on both sides) and run-to-run bit-identical.
  std::vector<std::vector<float>> hosts;
  std::vector<Tensor> hts, dts;
  for (int i = 0; i < 150; ++i) {
    const int64_t n = i == 5 ? 1000000 : 1 + (i * 7919) % 20000;
    hosts.push_back(randn(static_cast<size_t>(n), 700 + static_cast<uint32_t>(i), 0.01f, false));
  }
  for (auto& hv : hosts) {
    const int64_t n = static_cast<int64_t>(hv.size());
    hts.push_back(host(hv, Shape{n}));
    dts.push_back(upload(arena, hv, Shape{n}, DType::f32));
  }
  const float total = kernels::global_grad_norm(hts);
  const float cref = kernels::clip_coefficient(total, 1.0);
  kernels::cuda::MultiGradNorm norm(dts, arena);
  Tensor dnorm = arena.alloc(DType::f32, Shape{1}), dc = arena.alloc(DType::f32, Shape{1});
  Tensor dnf = arena.alloc(DType::i32, Shape{1});
  poison(dnorm);
  poison(dc);
  poison(dnf);
  norm.run(dnorm, dc, dnf, 1.0);
  EXPECT_NEAR(download(dnorm)[0], total, 1e-6 * total);
  EXPECT_NEAR(download(dc)[0], cref, 1e-6 * cref);
  EXPECT_EQ(download(dnf)[0], 0.0f);
  const auto b1 = download_bytes(dnorm);
  norm.run(dnorm, dc, dnf, 1.0);
  EXPECT_EQ(download_bytes(dnorm), b1);
}

}  // namespace
}  // namespace cotune::testing
