// CUDA causal GQA attention over packed varlen sequences (simple and flash kernels) against the CPU fp32 twin,
// at the model's shapes: 12 query heads, 2 KV heads, head dim 128, sequences {1, 17, 300, 1024, 2048} packed.
// Tolerances (relative Frobenius): out 1e-2 (bf16 output; flash also rounds P to bf16), lse 1e-4,
// dq/dk/dv 2e-2 (flash rounds P and dS to bf16 for the tensor cores, as FlashAttention-2 does).
// Backward must be bit-identical run to run (no floating-point atomics).
#include <gtest/gtest.h>

#include <cstdlib>
#include <numeric>

#include "cuda_test_util.h"
#include "kernels/cuda/attention.h"
#include "kernels/tuning.h"
#include "kernels/ops.h"

namespace cotune::testing {
namespace {

using kernels::cuda::AttentionImpl;

struct Problem {
  std::vector<int32_t> cu;
  int64_t T = 0, H = 12, KV = 2, D = 128;
  int max_seqlen = 0;
  int64_t window = 0;  // sliding window (0: full causal)
  std::vector<float> q, k, v, dout;
  // CPU reference results
  std::vector<float> out, lse, dq, dk, dv;
};

Problem make_problem(const std::vector<int>& lens, int64_t H, int64_t KV, int64_t D, uint32_t seed,
                     int64_t window = 0) {
  Problem p;
  p.window = window;
  p.H = H;
  p.KV = KV;
  p.D = D;
  p.cu.push_back(0);
  for (int L : lens) {
    p.cu.push_back(p.cu.back() + L);
    p.max_seqlen = std::max(p.max_seqlen, L);
  }
  p.T = p.cu.back();
  p.q = randn(static_cast<size_t>(p.T * H * D), seed);
  p.k = randn(static_cast<size_t>(p.T * KV * D), seed + 1);
  p.v = randn(static_cast<size_t>(p.T * KV * D), seed + 2);
  add_outlier_channels(p.k, D, 4.0f, 2);  // a few large channels sharpen some rows' attention
  add_outlier_channels(p.v, KV * D, 10.0f);
  p.dout = randn(static_cast<size_t>(p.T * H * D), seed + 3);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  p.out.resize(p.q.size());
  p.lse.resize(static_cast<size_t>(H * p.T));
  p.dq.resize(p.q.size());
  p.dk.resize(p.k.size());
  p.dv.resize(p.v.size());
  const int64_t S = static_cast<int64_t>(lens.size());
  kernels::attention_forward(host(p.out, Shape{p.T, H, D}), host(p.lse, Shape{H, p.T}), host(p.q, Shape{p.T, H, D}),
                             host(p.k, Shape{p.T, KV, D}), host(p.v, Shape{p.T, KV, D}),
                             host_i32(p.cu, Shape{S + 1}), p.max_seqlen, scale, window);
  kernels::attention_backward(host(p.dq, Shape{p.T, H, D}), host(p.dk, Shape{p.T, KV, D}),
                              host(p.dv, Shape{p.T, KV, D}), host(p.dout, Shape{p.T, H, D}),
                              host(p.q, Shape{p.T, H, D}), host(p.k, Shape{p.T, KV, D}), host(p.v, Shape{p.T, KV, D}),
                              host(p.out, Shape{p.T, H, D}), host(p.lse, Shape{H, p.T}), host_i32(p.cu, Shape{S + 1}),
                              p.max_seqlen, scale, window);
  return p;
}

void run_and_check(const Problem& p, AttentionImpl impl, Arena& arena) {
  const int64_t T = p.T, H = p.H, KV = p.KV, D = p.D, S = static_cast<int64_t>(p.cu.size()) - 1;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  Tensor q = upload(arena, p.q, Shape{T, H, D}, DType::bf16), k = upload(arena, p.k, Shape{T, KV, D}, DType::bf16);
  Tensor v = upload(arena, p.v, Shape{T, KV, D}, DType::bf16);
  Tensor cu = upload_i32(arena, p.cu, Shape{S + 1});
  Tensor out = arena.alloc(DType::bf16, Shape{T, H, D}), lse = arena.alloc(DType::f32, Shape{H, T});
  poison(out);
  poison(lse);
  kernels::cuda::attention_forward_impl(impl, out, lse, q, k, v, cu, p.max_seqlen, scale, p.window);
  std::printf("%s attention, T = %ld\n",
              impl == AttentionImpl::flash ? "flash" : (impl == AttentionImpl::flash_m64 ? "flash_m64" : "simple"),
              static_cast<long>(T));
  EXPECT_REL(download(out), p.out, 1e-2);
  EXPECT_REL(download(lse), p.lse, 1e-4);

  // Backward from the CPU's out (rounded to bf16) so both sides differentiate the same forward.
  Tensor dout = upload(arena, p.dout, Shape{T, H, D}, DType::bf16);
  Tensor dq = arena.alloc(DType::bf16, Shape{T, H, D}), dk = arena.alloc(DType::bf16, Shape{T, KV, D});
  Tensor dv = arena.alloc(DType::bf16, Shape{T, KV, D});
  poison(dq);
  poison(dk);
  poison(dv);
  kernels::cuda::attention_backward_impl(impl, dq, dk, dv, dout, q, k, v, out, lse, cu, p.max_seqlen, scale, p.window);
  EXPECT_REL(download(dq), p.dq, 2e-2);
  EXPECT_REL(download(dk), p.dk, 2e-2);
  EXPECT_REL(download(dv), p.dv, 2e-2);
  const auto bq = download_bytes(dq), bk = download_bytes(dk), bv = download_bytes(dv);
  poison(dq);
  poison(dk);
  poison(dv);
  kernels::cuda::attention_backward_impl(impl, dq, dk, dv, dout, q, k, v, out, lse, cu, p.max_seqlen, scale, p.window);
  EXPECT_TRUE(download_bytes(dq) == bq) << "dq not bit-identical across runs";
  EXPECT_TRUE(download_bytes(dk) == bk) << "dk not bit-identical across runs";
  EXPECT_TRUE(download_bytes(dv) == bv) << "dv not bit-identical across runs";
}

class CudaAttention : public ::testing::TestWithParam<AttentionImpl> {};

TEST_P(CudaAttention, PackedVarlenModelShapes) {
  COTUNE_REQUIRE_GPU();
  static const Problem p = make_problem({1, 17, 300, 1024, 2048}, 12, 2, 128, 201);
  Arena arena(Device::cuda, gib(1.0));
  run_and_check(p, GetParam(), arena);
}

TEST_P(CudaAttention, ShortAndUnevenSequences) {
  COTUNE_REQUIRE_GPU();
  // Lengths around the 64-row tiles, an empty sequence, and MHA-style GQA group 4.
  static const Problem p = make_problem({63, 64, 65, 0, 129, 5}, 8, 2, 128, 301);
  Arena arena(Device::cuda, gib(0.25));
  run_and_check(p, GetParam(), arena);
}

TEST_P(CudaAttention, NoGqa) {
  COTUNE_REQUIRE_GPU();
  // H == KV: the flash backward writes dK/dV directly (no per-head shares to reduce).
  static const Problem p = make_problem({200, 77}, 4, 4, 128, 351);
  Arena arena(Device::cuda, gib(0.25));
  run_and_check(p, GetParam(), arena);
}

TEST_P(CudaAttention, OneLongSequence) {
  COTUNE_REQUIRE_GPU();
  // The training guide's shape: one sequence, a grid too small for the GPU, so the flash kernels split the
  // causal ranges of long tiles over several blocks (partials merged in a fixed order).
  static const Problem p = make_problem({2027}, 12, 2, 128, 451);
  Arena arena(Device::cuda, gib(0.5));
  run_and_check(p, GetParam(), arena);
}

// Mistral's sliding window: a window shorter than the longest sequences runs the simple kernels (the automatic
// choice), against the CPU's windowed reference; a window no sequence reaches changes nothing (flash stays); the
// flash kernels refuse a window that matters.
TEST(CudaAttentionWindow, SlidingWindowMatchesCpu) {
  COTUNE_REQUIRE_GPU();
  static const Problem p = make_problem({1, 17, 300, 64, 129}, 8, 2, 128, 551, 100);
  Arena arena(Device::cuda, gib(0.25));
  run_and_check(p, AttentionImpl::automatic, arena);
  run_and_check(p, AttentionImpl::simple, arena);
  static const Problem wide = make_problem({1, 17, 300, 64, 129}, 8, 2, 128, 551, 300);  // = max_seqlen
  static const Problem full = make_problem({1, 17, 300, 64, 129}, 8, 2, 128, 551);
  EXPECT_EQ(wide.out, full.out);  // the CPU reference: a window of max_seqlen is full causal attention
  run_and_check(wide, AttentionImpl::flash, arena);
  const int64_t T = p.T;
  Tensor q = upload(arena, p.q, Shape{T, 8, 128}, DType::bf16), k = upload(arena, p.k, Shape{T, 2, 128}, DType::bf16);
  Tensor v = upload(arena, p.v, Shape{T, 2, 128}, DType::bf16);
  Tensor cu = upload_i32(arena, p.cu, Shape{static_cast<int64_t>(p.cu.size())});
  Tensor out = arena.alloc(DType::bf16, Shape{T, 8, 128}), lse = arena.alloc(DType::f32, Shape{8, T});
  EXPECT_THROW(kernels::cuda::attention_forward_impl(AttentionImpl::flash, out, lse, q, k, v, cu, p.max_seqlen, 0.1f, 100),
               Error);
}

// Sets the flash kernels' work split (kernels::Tuning::attention_split_*, read at every call) for one scope.
struct ScopedSplit {
  explicit ScopedSplit(const char* v) : scope(with_split(v)) {}
  static kernels::Tuning with_split(const char* v) {
    kernels::Tuning t = kernels::tuning();
    kernels::parse_attention_split(v, "attention_split", t);
    return t;
  }
  kernels::ScopedTuning scope;
};

TEST_P(CudaAttention, ForcedSplits) {
  COTUNE_REQUIRE_GPU();
  // Tiny chunks everywhere (including chunks of a 128-row tile whose rows see no key, empty sequences, and key
  // tiles shared by several heads in one dk/dv block), then uneven ones on the packed model shapes.
  static const Problem shortp = make_problem({63, 64, 65, 0, 129, 5}, 8, 2, 128, 301);
  static const Problem packed = make_problem({1, 17, 300, 1024, 2048}, 12, 2, 128, 201);
  Arena arena(Device::cuda, gib(1.0));
  {
    ScopedSplit split("1,1,1");
    run_and_check(shortp, GetParam(), arena);
  }
  {
    ScopedSplit split("3,5,7");
    run_and_check(packed, GetParam(), arena);
  }
  {
    ScopedSplit split("0,0,100");
    run_and_check(packed, GetParam(), arena);
  }
}

INSTANTIATE_TEST_SUITE_P(Impl, CudaAttention,
                         ::testing::Values(AttentionImpl::simple, AttentionImpl::flash, AttentionImpl::flash_m64),
                         [](const ::testing::TestParamInfo<AttentionImpl>& i) {
                           return i.param == AttentionImpl::flash       ? std::string("flash")
                                  : i.param == AttentionImpl::flash_m64 ? std::string("flash_m64")
                                                                        : std::string("simple");
                         });

TEST(CudaAttentionSimple, HeadDim64) {
  COTUNE_REQUIRE_GPU();
  const Problem p = make_problem({100, 37}, 4, 1, 64, 401);
  Arena arena(Device::cuda, gib(0.25));
  run_and_check(p, AttentionImpl::simple, arena);
}

}  // namespace
}  // namespace cotune::testing
