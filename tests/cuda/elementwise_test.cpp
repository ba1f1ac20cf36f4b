// CUDA elementwise ops (embedding, RMSNorm, RoPE, SwiGLU, dropout, add, copy) against their CPU fp32 twins.
// The GPU rounds to bf16 where HF does (RMSNorm's normalised value, RoPE's tables and products, SwiGLU's silu);
// the CPU twin is pure fp32, so the expected difference is a few bf16 roundings: tolerance 1e-2 relative
// Frobenius for bf16 outputs, 1e-5 for fp32 outputs (rstd), exact for pure copies and the dropout mask.
#include <gtest/gtest.h>

#include "cuda_test_util.h"
#include "kernels/ops.h"

namespace cotune::testing {
namespace {

TEST(CudaElementwise, Embedding) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(1.0));
  const int64_t V = 151936, C = 1536, T = 333;
  auto table = randn(static_cast<size_t>(V * C), 41, 0.02f);
  std::vector<int32_t> ids(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) ids[static_cast<size_t>(t)] = static_cast<int32_t>((t * 104729 + 7) % V);
  ids[0] = 0;
  ids[1] = static_cast<int32_t>(V - 1);
  std::vector<float> ref(static_cast<size_t>(T * C));
  kernels::embedding_forward(host(ref, Shape{T, C}), host_i32(ids, Shape{T}), host(table, Shape{V, C}));
  Tensor dt = upload(arena, table, Shape{V, C}, DType::bf16), out = arena.alloc(DType::bf16, Shape{T, C});
  poison(out);
  kernels::embedding_forward(out, upload_i32(arena, ids, Shape{T}), dt);
  EXPECT_REL(download(out), ref, 0.0);
}

TEST(CudaElementwise, RmsNorm) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.5));
  for (int64_t C : {1536, 1000}) {  // 1000: the scalar (non-16-byte) path
    const int64_t T = 2048;
    auto x = randn(static_cast<size_t>(T * C), 51);
    add_outlier_channels(x, C, 30.0f);
    auto w = randn(static_cast<size_t>(C), 52, 0.3f);
    for (auto& v : w) v = round_bf16(v + 1.0f);
    std::vector<float> out(static_cast<size_t>(T * C)), rstd(static_cast<size_t>(T));
    kernels::rmsnorm_forward(host(out, Shape{T, C}), host(rstd, Shape{T}), host(x, Shape{T, C}), host(w, Shape{C}),
                             1e-6f);
    Tensor dx = upload(arena, x, Shape{T, C}, DType::bf16), dw = upload(arena, w, Shape{C}, DType::bf16);
    Tensor dout = arena.alloc(DType::bf16, Shape{T, C}), drstd = arena.alloc(DType::f32, Shape{T});
    poison(dout);
    poison(drstd);
    kernels::rmsnorm_forward(dout, drstd, dx, dw, 1e-6f);
    std::printf("C = %ld\n", static_cast<long>(C));
    EXPECT_REL(download(dout), out, 1e-2);
    EXPECT_REL(download(drstd), rstd, 1e-5);

    auto dy = randn(static_cast<size_t>(T * C), 53);
    auto acc = randn(static_cast<size_t>(T * C), 54);
    std::vector<float> ref(static_cast<size_t>(T * C)), ref_acc = acc;
    kernels::rmsnorm_backward(host(ref, Shape{T, C}), host(dy, Shape{T, C}), host(x, Shape{T, C}), host(w, Shape{C}),
                              host(rstd, Shape{T}), false);
    kernels::rmsnorm_backward(host(ref_acc, Shape{T, C}), host(dy, Shape{T, C}), host(x, Shape{T, C}),
                              host(w, Shape{C}), host(rstd, Shape{T}), true);
    Tensor ddy = upload(arena, dy, Shape{T, C}, DType::bf16), ddx = arena.alloc(DType::bf16, Shape{T, C});
    Tensor dacc = upload(arena, acc, Shape{T, C}, DType::bf16);
    poison(ddx);
    kernels::rmsnorm_backward(ddx, ddy, dx, dw, drstd, false);
    kernels::rmsnorm_backward(dacc, ddy, dx, dw, drstd, true);
    EXPECT_REL(download(ddx), ref, 1e-2);
    EXPECT_REL(download(dacc), ref_acc, 1e-2);
  }
}

TEST(CudaElementwise, Rope) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.25));
  const int64_t T = 300, NH = 12, D = 128;
  auto x = randn(static_cast<size_t>(T * NH * D), 61);
  std::vector<int32_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[static_cast<size_t>(t)] = static_cast<int32_t>((t * 37) % 2048);
  const float theta = 10000.0f;
  std::vector<float> ref = x;
  kernels::rope_forward(host(ref, Shape{T, NH, D}), host_i32(pos, Shape{T}), theta);
  Tensor dx = upload(arena, x, Shape{T, NH, D}, DType::bf16), dpos = upload_i32(arena, pos, Shape{T});
  kernels::rope_forward(dx, dpos, theta);
  EXPECT_REL(download(dx), ref, 1e-2);
  auto g = randn(static_cast<size_t>(T * NH * D), 62);
  std::vector<float> gref = g;
  kernels::rope_backward(host(gref, Shape{T, NH, D}), host_i32(pos, Shape{T}), theta);
  Tensor dg = upload(arena, g, Shape{T, NH, D}, DType::bf16);
  kernels::rope_backward(dg, dpos, theta);
  EXPECT_REL(download(dg), gref, 1e-2);
  // KV heads (2) with head dim 64: the other shapes the dispatcher allows.
  const int64_t NK = 2, D2 = 64;
  auto k = randn(static_cast<size_t>(T * NK * D2), 63);
  std::vector<float> kref = k;
  kernels::rope_forward(host(kref, Shape{T, NK, D2}), host_i32(pos, Shape{T}), 1e6f);
  Tensor dk = upload(arena, k, Shape{T, NK, D2}, DType::bf16);
  kernels::rope_forward(dk, dpos, 1e6f);
  EXPECT_REL(download(dk), kref, 1e-2);
}

TEST(CudaElementwise, SwiGlu) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.5));
  const int64_t T = 256, I = 8960;
  const int64_t n = T * I;
  auto gate = randn(static_cast<size_t>(n), 71, 2.0f), up = randn(static_cast<size_t>(n), 72);
  add_outlier_channels(gate, I, 8.0f);
  std::vector<float> out(static_cast<size_t>(n));
  kernels::swiglu_forward(host(out, Shape{T, I}), host(gate, Shape{T, I}), host(up, Shape{T, I}));
  Tensor dg = upload(arena, gate, Shape{T, I}, DType::bf16), du = upload(arena, up, Shape{T, I}, DType::bf16);
  Tensor dout = arena.alloc(DType::bf16, Shape{T, I});
  poison(dout);
  kernels::swiglu_forward(dout, dg, du);
  EXPECT_REL(download(dout), out, 1e-2);
  auto dy = randn(static_cast<size_t>(n), 73);
  std::vector<float> rg(static_cast<size_t>(n)), ru(static_cast<size_t>(n));
  kernels::swiglu_backward(host(rg, Shape{T, I}), host(ru, Shape{T, I}), host(dy, Shape{T, I}), host(gate, Shape{T, I}),
                           host(up, Shape{T, I}));
  Tensor ddy = upload(arena, dy, Shape{T, I}, DType::bf16);
  Tensor ddg = arena.alloc(DType::bf16, Shape{T, I}), ddu = arena.alloc(DType::bf16, Shape{T, I});
  poison(ddg);
  poison(ddu);
  kernels::swiglu_backward(ddg, ddu, ddy, dg, du);
  EXPECT_REL(download(ddg), rg, 1e-2);
  EXPECT_REL(download(ddu), ru, 1e-2);
  // In place (the runner writes the gradients over the gate / up activations): the same bytes, odd tail included.
  for (int64_t m : {n, n - 5}) {
    Tensor g = dg.view({n}).slice_rows(0, m), u = du.view({n}).slice_rows(0, m), d = ddy.view({n}).slice_rows(0, m);
    Tensor og = arena.alloc(DType::bf16, Shape{m}), ou = arena.alloc(DType::bf16, Shape{m});
    kernels::swiglu_backward(og, ou, d, g, u);
    Tensor ig = arena.alloc(DType::bf16, Shape{m}), iu = arena.alloc(DType::bf16, Shape{m});
    copy_bytes(ig, g);
    copy_bytes(iu, u);
    kernels::swiglu_backward(ig, iu, d, ig, iu);
    EXPECT_EQ(download_bytes(ig), download_bytes(og)) << m;
    EXPECT_EQ(download_bytes(iu), download_bytes(ou)) << m;
  }
}

TEST(CudaElementwise, DropoutMatchesCpuMask) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.25));
  const int64_t n = 1000003;
  const float p = 0.1f;
  auto x = randn(static_cast<size_t>(n), 81);
  for (auto& v : x)
    if (v == 0.0f) v = 1.0f;
  for (uint64_t offset : {uint64_t{0}, uint64_t{12345678}}) {
    std::vector<float> ref(static_cast<size_t>(n));
    kernels::dropout_forward(host(ref, Shape{n}), host(x, Shape{n}), p, 42, offset);
    Tensor dx = upload(arena, x, Shape{n}, DType::bf16), dout = arena.alloc(DType::bf16, Shape{n});
    poison(dout);
    kernels::dropout_forward(dout, dx, p, 42, offset);
    auto got = download(dout);
    size_t mismatched = 0, dropped = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      mismatched += (got[i] == 0.0f) != (ref[i] == 0.0f);
      dropped += ref[i] == 0.0f;
    }
    EXPECT_EQ(mismatched, 0u);
    EXPECT_NEAR(static_cast<double>(dropped) / n, p, 0.01);
    EXPECT_REL(got, ref, 1e-2);
    // backward: same mask
    Tensor dback = arena.alloc(DType::bf16, Shape{n});
    kernels::dropout_backward(dback, dx, p, 42, offset);
    EXPECT_EQ(download_bytes(dback), download_bytes(dout));
  }
}

TEST(CudaElementwise, AddAndCopy) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.25));
  const int64_t n = 777777;
  auto a = randn(static_cast<size_t>(n), 91), b = randn(static_cast<size_t>(n), 92);
  std::vector<float> ref(static_cast<size_t>(n));
  kernels::add(host(ref, Shape{n}), host(a, Shape{n}), host(b, Shape{n}));
  Tensor da = upload(arena, a, Shape{n}, DType::bf16), db = upload(arena, b, Shape{n}, DType::bf16);
  Tensor out = arena.alloc(DType::bf16, Shape{n});
  poison(out);
  kernels::add(out, da, db);
  EXPECT_REL(download(out), rounded_bf16(ref), 0.0);  // one rounding of the exact sum
  kernels::add(da, da, db);                            // aliasing
  EXPECT_REL(download(da), rounded_bf16(ref), 0.0);
  Tensor fa = upload(arena, a, Shape{n}, DType::f32), fb = upload(arena, b, Shape{n}, DType::f32);
  Tensor fo = arena.alloc(DType::f32, Shape{n});
  kernels::add(fo, fa, fb);
  EXPECT_REL(download(fo), ref, 0.0);
  // copy: f32 -> bf16 rounds to nearest even, bf16 -> f32 is exact
  auto c = randn(static_cast<size_t>(n), 93, 1.0f, false);
  Tensor fc = upload(arena, c, Shape{n}, DType::f32), bc = arena.alloc(DType::bf16, Shape{n});
  Tensor fc2 = arena.alloc(DType::f32, Shape{n});
  poison(bc);
  poison(fc2);
  kernels::copy(bc, fc);
  EXPECT_REL(download(bc), rounded_bf16(c), 0.0);
  kernels::copy(fc2, bc);
  EXPECT_REL(download(fc2), rounded_bf16(c), 0.0);
  kernels::copy(fc2, fc);
  EXPECT_REL(download(fc2), c, 0.0);
}

TEST(CudaElementwise, FillNormalDrawsTheCpuNumbersOnTheGpu) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(1.0));
  const int64_t n = (int64_t{1} << 24) + 3;  // odd, and many blocks of the grid-stride loop
  const uint64_t key = 0x9E3779B97F4A7C15ull * 11 + 2;
  std::vector<float> ref(static_cast<size_t>(n));
  kernels::fill_normal(host(ref, Shape{n}), key, 0.02f);
  Tensor f = arena.alloc(DType::f32, Shape{n}), b = arena.alloc(DType::bf16, Shape{n});
  poison(f);
  poison(b);
  kernels::fill_normal(f, key, 0.02f);
  kernels::fill_normal(b, key, 0.02f);
  // GPU logf / sincosf are within ~2 ulp of glibc's: fp32 values agree to 1e-6 relative, and the bf16 values are
  // the CPU draw rounded, except where a draw sits within that error of a bf16 rounding boundary.
  EXPECT_REL(download(f), ref, 1e-6);
  const std::vector<float> gb = download(b);
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) off += gb[static_cast<size_t>(i)] != round_bf16(ref[static_cast<size_t>(i)]);
  EXPECT_LT(off, n / 10000) << off << " of " << n << " bf16 draws differ from the CPU's rounded draw";
}

}  // namespace
}  // namespace cotune::testing
