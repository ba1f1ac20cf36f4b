// CUDA cross-entropy (unfused) and the chunked LM head + cross-entropy against their CPU fp32 twins, at the
// real vocabulary (151936) and hidden size (1536) on fewer tokens. Tolerances:
//   losses from f32 logits: 1e-5 relative (fp32 exp/log, different summation order)
//   dlogits f32: 1e-4; bf16: 1e-2
//   fused: losses 1e-3 (fp32 logits of a bf16 GEMM vs the CPU's fp32 GEMM), correct exact, dhidden 1e-2
//   (the softmax gradient is rounded to bf16 before the GEMM back, as HF's bf16 logits' gradient is).
#include <gtest/gtest.h>

#include "cuda_test_util.h"
#include "kernels/ops.h"

namespace cotune::testing {
namespace {

std::vector<int32_t> make_targets(int64_t T, int64_t V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(T));
  for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(V));
  t[3] = -100;  // ignored positions
  t[static_cast<size_t>(T - 1)] = -1;
  return t;
}

// The unfused CUDA cross-entropy (forward and backward, f32 and bf16 logits) of [T, V] logits against the CPU's.
void expect_unfused_matches_cpu(Arena& arena, std::vector<float> logits, std::vector<int32_t> targets,
                                int64_t T, int64_t V, float grad_scale) {
  std::vector<float> losses(static_cast<size_t>(T)), dl(static_cast<size_t>(T * V));
  kernels::cross_entropy_forward(host(losses, Shape{T}), host(logits, Shape{T, V}), host_i32(targets, Shape{T}));
  kernels::cross_entropy_backward(host(dl, Shape{T, V}), host(logits, Shape{T, V}), host_i32(targets, Shape{T}),
                                  grad_scale);
  Tensor dtg = upload_i32(arena, targets, Shape{T});
  for (DType dt : {DType::f32, DType::bf16}) {
    Tensor dlog = upload(arena, logits, Shape{T, V}, dt);
    Tensor dloss = arena.alloc(DType::f32, Shape{T}), dgrad = arena.alloc(dt, Shape{T, V});
    poison(dloss);
    poison(dgrad);
    kernels::cross_entropy_forward(dloss, dlog, dtg);
    kernels::cross_entropy_backward(dgrad, dlog, dtg, grad_scale);
    std::printf("V %ld logits %s\n", static_cast<long>(V), dt == DType::f32 ? "f32" : "bf16");
    EXPECT_REL(download(dloss), losses, 1e-5);
    EXPECT_REL(download(dgrad), dl, dt == DType::f32 ? 1e-4 : 1e-2);
  }
}

TEST(CudaCrossEntropy, Unfused) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(1.0));
  const int64_t T = 40, V = 151936;
  auto logits = randn(static_cast<size_t>(T * V), 101, 3.0f);
  auto targets = make_targets(T, V, 102);
  // Make one row's target the argmax by far, so its loss is tiny (precision at small losses).
  logits[static_cast<size_t>(0 * V + targets[0])] = 40.0f;
  expect_unfused_matches_cpu(arena, logits, targets, T, V, 0.5f);
}

// Other vocabulary sizes: rows split over 1, 2 or 5 blocks of a cluster (uneven last segment), and V % 8 != 0 (the
// one-block-per-row kernel).
TEST(CudaCrossEntropy, UnfusedOtherSizes) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(0.5));
  const int64_t T = 12;
  for (int64_t V : {1000, 40000, 99992, 4100, 37}) {
    auto logits = randn(static_cast<size_t>(T * V), 121, 3.0f);
    auto targets = make_targets(T, V, 122);
    logits[static_cast<size_t>(1 * V + V - 1)] = 30.0f;  // the maximum in the last segment
    expect_unfused_matches_cpu(arena, logits, targets, T, V, 0.25f);
  }
}

TEST(CudaCrossEntropy, FusedLmHead) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(2.0));
  const int64_t T = 96, C = 1536, V = 151936, chunk = 40;  // 3 chunks, the last one partial
  auto hidden = randn(static_cast<size_t>(T * C), 111);
  add_outlier_channels(hidden, C, 10.0f);
  auto weight = randn(static_cast<size_t>(V * C), 112, 0.02f);
  auto targets = make_targets(T, V, 113);
  std::vector<float> losses(static_cast<size_t>(T)), dh(static_cast<size_t>(T * C)),
      ws(static_cast<size_t>(chunk * V));
  std::vector<int32_t> correct(static_cast<size_t>(T));
  // Make a few targets the argmax: copy the hidden direction into the target's weight row.
  for (int64_t t : {1, 2, 50}) {
    const int32_t tg = targets[static_cast<size_t>(t)];
    for (int64_t c = 0; c < C; ++c)
      weight[static_cast<size_t>(tg * C + c)] = round_bf16(hidden[static_cast<size_t>(t * C + c)] * 0.05f);
  }
  const float grad_scale = 1.0f / 93.0f;
  kernels::lm_head_cross_entropy(host(losses, Shape{T}), host_i32(correct, Shape{T}), host(dh, Shape{T, C}),
                                 host(hidden, Shape{T, C}), host(weight, Shape{V, C}), host_i32(targets, Shape{T}),
                                 grad_scale, host(ws, Shape{chunk * V}), chunk);
  Tensor dhid = upload(arena, hidden, Shape{T, C}, DType::bf16), dw = upload(arena, weight, Shape{V, C}, DType::bf16);
  Tensor dtg = upload_i32(arena, targets, Shape{T});
  Tensor dloss = arena.alloc(DType::f32, Shape{T}), dcor = arena.alloc(DType::i32, Shape{T});
  Tensor ddh = arena.alloc(DType::bf16, Shape{T, C}), dws = arena.alloc(DType::f32, Shape{chunk * V});
  poison(dloss);
  poison(dcor);
  poison(ddh);
  kernels::lm_head_cross_entropy(dloss, dcor, ddh, dhid, dw, dtg, grad_scale, dws, chunk);
  EXPECT_REL(download(dloss), losses, 1e-3);
  EXPECT_REL(download(ddh), dh, 1e-2);
  auto gc = download(dcor);
  int n_correct = 0;
  for (int64_t t = 0; t < T; ++t) {
    EXPECT_EQ(static_cast<int>(gc[static_cast<size_t>(t)]), correct[static_cast<size_t>(t)]) << "token " << t;
    n_correct += correct[static_cast<size_t>(t)];
  }
  EXPECT_GE(n_correct, 3);
  // Deterministic, and the loss-only path (no dhidden) gives the same losses.
  Tensor ddh2 = arena.alloc(DType::bf16, Shape{T, C}), dloss2 = arena.alloc(DType::f32, Shape{T});
  kernels::lm_head_cross_entropy(dloss2, Tensor(), ddh2, dhid, dw, dtg, grad_scale, dws, chunk);
  EXPECT_EQ(download_bytes(ddh2), download_bytes(ddh));
  EXPECT_EQ(download_bytes(dloss2), download_bytes(dloss));
  Tensor dloss3 = arena.alloc(DType::f32, Shape{T});
  kernels::lm_head_cross_entropy(dloss3, Tensor(), Tensor(), dhid, dw, dtg, grad_scale, dws, 32);
  EXPECT_REL(download(dloss3), losses, 1e-3);
  // The device-scale form (the captured training step's): the scale read from a device {scale, 0}, applied in the
  // dhidden GEMM's epilogue; the same losses and correct flags bit for bit, dhidden against the CPU twin.
  std::vector<float> scalars = {grad_scale, 0.0f};
  Tensor dsc = upload(arena, scalars, Shape{2}, DType::f32);
  Tensor dloss4 = arena.alloc(DType::f32, Shape{T}), dcor4 = arena.alloc(DType::i32, Shape{T});
  Tensor ddh4 = arena.alloc(DType::bf16, Shape{T, C});
  poison(ddh4);
  kernels::lm_head_cross_entropy_device_scale(dloss4, dcor4, ddh4, dhid, dw, dtg, dsc, dws, chunk);
  EXPECT_EQ(download_bytes(dloss4), download_bytes(dloss));
  EXPECT_EQ(download_bytes(dcor4), download_bytes(dcor));
  EXPECT_REL(download(ddh4), dh, 1e-2);
}

}  // namespace
}  // namespace cotune::testing
