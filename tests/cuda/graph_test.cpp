// A sequence of CUDA ops (RMSNorm, linear + LoRA, RoPE, attention forward/backward, SwiGLU, fused LM head,
// grad norm / clip / AdamW) captured in a CUDA graph and replayed gives bit-identical results to running it
// eagerly: no op synchronises, allocates or touches the host inside the step once warmed up (DESIGN.md: a
// training step is captured per length bucket).
#include <gtest/gtest.h>

#include "cuda_test_util.h"
#include "kernels/cuda/optim.h"
#include "kernels/ops.h"

namespace cotune::testing {
namespace {

namespace kc = kernels::cuda;
using kernels::AdamWHyper;

TEST(CudaGraph, CapturedStepReplaysBitIdentical) {
  COTUNE_REQUIRE_GPU();
  Arena arena(Device::cuda, gib(1.0));
  const int64_t T = 256, C = 1536, H = 12, KV = 2, D = 128, R = 16, V = 151936, I = 8960, chunk = 128;
  std::vector<int32_t> cu{0, 100, 256}, pos(static_cast<size_t>(T)), tg(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    pos[static_cast<size_t>(t)] = static_cast<int32_t>(t < 100 ? t : t - 100);
    tg[static_cast<size_t>(t)] = static_cast<int32_t>((t * 7919) % V);
  }
  Tensor dcu = upload_i32(arena, cu, Shape{3}), dpos = upload_i32(arena, pos, Shape{T}), dtg = upload_i32(arena, tg, Shape{T});
  Tensor x = upload(arena, randn(static_cast<size_t>(T * C), 1), Shape{T, C}, DType::bf16);
  Tensor nw = upload(arena, randn(static_cast<size_t>(C), 2, 0.1f), Shape{C}, DType::bf16);
  Tensor wq = upload(arena, randn(static_cast<size_t>(C * C), 3, 0.02f), Shape{C, C}, DType::bf16);
  Tensor bq = upload(arena, randn(static_cast<size_t>(C), 4, 0.1f), Shape{C}, DType::bf16);
  Tensor wk = upload(arena, randn(static_cast<size_t>(KV * D * C), 5, 0.02f), Shape{KV * D, C}, DType::bf16);
  Tensor wg = upload(arena, randn(static_cast<size_t>(I * C), 6, 0.02f), Shape{I, C}, DType::bf16);
  Tensor wl = upload(arena, randn(static_cast<size_t>(V * C), 7, 0.02f), Shape{V, C}, DType::bf16);
  Tensor A = upload(arena, randn(static_cast<size_t>(R * C), 8, 0.02f, false), Shape{R, C}, DType::f32);
  Tensor B = upload(arena, randn(static_cast<size_t>(C * R), 9, 0.02f, false), Shape{C, R}, DType::f32);
  Tensor mA = arena.zeros(DType::f32, Shape{R, C}), vA = arena.zeros(DType::f32, Shape{R, C});

  Tensor h = arena.alloc(DType::bf16, Shape{T, C}), rstd = arena.alloc(DType::f32, Shape{T});
  Tensor q = arena.alloc(DType::bf16, Shape{T, C}), k = arena.alloc(DType::bf16, Shape{T, KV * D});
  Tensor xa = arena.alloc(DType::f32, Shape{T, R}), g = arena.alloc(DType::f32, Shape{T, R});
  Tensor o = arena.alloc(DType::bf16, Shape{T, C}), lse = arena.alloc(DType::f32, Shape{H, T});
  Tensor dq = arena.alloc(DType::bf16, Shape{T, C}), dk = arena.alloc(DType::bf16, Shape{T, KV * D});
  Tensor dv = arena.alloc(DType::bf16, Shape{T, KV * D});
  Tensor gate = arena.alloc(DType::bf16, Shape{T, I}), act = arena.alloc(DType::bf16, Shape{T, I});
  Tensor dgate = arena.alloc(DType::bf16, Shape{T, I}), dup = arena.alloc(DType::bf16, Shape{T, I});
  Tensor losses = arena.alloc(DType::f32, Shape{T}), correct = arena.alloc(DType::i32, Shape{T});
  Tensor dh = arena.alloc(DType::bf16, Shape{T, C}), dx = arena.alloc(DType::bf16, Shape{T, C});
  Tensor ws = arena.alloc(DType::f32, Shape{chunk * V});
  Tensor dA = arena.alloc(DType::f32, Shape{R, C}), dB = arena.alloc(DType::f32, Shape{C, R});
  Tensor norm = arena.alloc(DType::f32, Shape{1}), coef = arena.alloc(DType::f32, Shape{1});
  Tensor flag = arena.alloc(DType::i32, Shape{1});
  Tensor Awork = arena.alloc(DType::f32, Shape{R, C});
  Tensor loss_sum = arena.alloc(DType::f32, Shape{1}), correct_sum = arena.alloc(DType::f32, Shape{1});

  auto step = [&] {
    kernels::copy(Awork, A);
    kernels::rmsnorm_forward(h, rstd, x, nw, 1e-6f);
    kernels::linear_forward(q, h, wq, bq);
    kernels::lora_forward(q, xa, h, Awork, B, 2.0f);
    kernels::linear_forward(k, h, wk, Tensor());
    kernels::rope_forward(q.view(Shape{T, H, D}), dpos, 1e4f);
    kernels::rope_forward(k.view(Shape{T, KV, D}), dpos, 1e4f);
    kernels::attention_forward(o.view(Shape{T, H, D}), lse, q.view(Shape{T, H, D}), k.view(Shape{T, KV, D}),
                          k.view(Shape{T, KV, D}), dcu, 156, 0.088388f);
    kernels::attention_backward(dq.view(Shape{T, H, D}), dk.view(Shape{T, KV, D}), dv.view(Shape{T, KV, D}),
                           o.view(Shape{T, H, D}), q.view(Shape{T, H, D}), k.view(Shape{T, KV, D}),
                           k.view(Shape{T, KV, D}), o.view(Shape{T, H, D}), lse, dcu, 156, 0.088388f);
    kernels::linear_forward(gate, h, wg, Tensor());
    kernels::swiglu_forward(act, gate, gate);
    kernels::swiglu_backward(dgate, dup, act, gate, gate);
    kernels::lm_head_cross_entropy(losses, correct, dh, o, wl, dtg, 1.0f / T, ws, chunk);
    kc::reduce_sum(loss_sum, losses);
    kc::reduce_sum(correct_sum, correct);
    kernels::rmsnorm_backward(dx, dh, x, nw, rstd, false);
    kernels::linear_backward_input(dx, dq, wq, true);
    kernels::zero(dA);  // the LoRA grads accumulate
    kernels::zero(dB);
    kernels::lora_backward(dx, dA, dB, g, dq, h, xa, Awork, B, 2.0f);
    const Tensor grads[] = {dA, dB};
    kc::grad_norm_clip(norm, coef, flag, grads, 1.0);
    AdamWHyper hyper;
    hyper.lr = 1e-3;
    kc::adamw_step(Awork, dA, mA.view(Shape{R, C}), vA, hyper, coef, flag);
  };

  // Eager run (also warms up: GEMM plans, scratch sizes, kernel attributes).
  step();
  kc::synchronize();
  // mA / vA were updated by AdamW; reset them so both runs start equal.
  fill_zero(mA);
  fill_zero(vA);
  step();
  const Tensor outs[] = {q, k, o, lse, dq, dk, dv, act, dgate, dup, losses, correct, dh, dx, dA, dB, norm, coef, Awork,
                         loss_sum, correct_sum};
  std::vector<std::vector<uint8_t>> eager;
  for (const Tensor& t : outs) eager.push_back(download_bytes(t));

  fill_zero(mA);
  fill_zero(vA);
  for (const Tensor& t : outs) poison(t);
  kc::synchronize();
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(kc::stream(), cudaStreamCaptureModeThreadLocal), cudaSuccess);
  step();
  ASSERT_EQ(cudaStreamEndCapture(kc::stream(), &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, kc::stream()), cudaSuccess);
  kc::synchronize();
  for (size_t i = 0; i < std::size(outs); ++i) EXPECT_TRUE(download_bytes(outs[i]) == eager[i]) << "output " << i;
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

}  // namespace
}  // namespace cotune::testing
