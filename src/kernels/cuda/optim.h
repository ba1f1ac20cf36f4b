// CUDA twins of the trainer's per-step ops (kernels/optim.h): AdamW, the gradient norm and clip, scaling, sums.
// Everything runs on the context stream (kernels/cuda/context.h) and keeps its scalars on the device, so an
// optimizer step needs no host round-trip and can be captured in a CUDA graph:
//
//   grad_norm_clip(norm, coef, nonfinite, grads, max_norm)   // deterministic two-pass reduction
//   scale_by(g, coef) for each gradient                     // torch's in-place clip (or pass coef to adamw_step)
//   adamw_step(p, g, m, v, hyper, coef?, nonfinite)          // skipped on device when nonfinite != 0
//
// The host reads `norm` (and `nonfinite`) later, when it logs, with one copy.
#pragma once
#include <cstdint>
#include <span>

#include "kernels/optim.h"
#include "tensor/arena.h"
#include "tensor/tensor.h"

namespace cotune::kernels::cuda {

// torch.optim.AdamW on device tensors, the formula and operation order of cpu::adamw_step (kernels/optim.h).
// p, g, m, v: f32 CUDA tensors of equal numel (flat buffers of many parameters are fine).
// grad_scale: optional f32 [1] on the device; the gradient is multiplied by it first (one fp32 multiply, as
// the in-place clip does). skip: optional i32 [1] on the device; when non-zero nothing is written.
// The bias corrections use hyper.step (host value; fold it into the graph per step if capturing).
void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWHyper& hyper,
                const Tensor& grad_scale = Tensor(), const Tensor& skip = Tensor());

// Global L2 norm of f32 gradients, clip coefficient and non-finite flag, all written on the device:
//   norm f32 [1]      = sqrt(sum over grads of sum of squares) (fp64 accumulation, one rounding, as the CPU twin)
//   coef f32 [1]      = min(1, (1 / (norm + 1e-6)) * max_norm) (NaN stays NaN); 1 when max_norm <= 0
//   nonfinite i32 [1] = 1 if norm is NaN or Inf, else 0 (may be undefined)
// Deterministic: fixed per-block partials in fp64, summed in a fixed order by one block. Up to any number of
// gradient tensors (launched in groups of 64).
void grad_norm_clip(const Tensor& norm, const Tensor& coef, const Tensor& nonfinite, std::span<const Tensor> grads,
                    double max_norm);

// ---- multi-tensor forms (the optimizer's per-step work in a fixed, small number of launches) ------------------
// Each object builds its device pointer table once, from `arena` (the tensors must outlive it and stay put);
// a call then costs one launch (two for the norm) and no per-tensor host work. Numerics are those of the
// single-tensor functions above, element by element (the norm's fp64 partial sums are grouped differently).
struct AdamWSlot {
  Tensor p, g, m, v;  // f32 CUDA, equal numel
  Tensor p16;         // optional: bf16 copy of p (e.g. LoRA's GEMM operand), rewritten with the update
};
class MultiAdamW {
 public:
  MultiAdamW() = default;
  MultiAdamW(std::span<const AdamWSlot> slots, Arena& arena);
  // adamw_step on every slot: same hyper, grad_scale and skip arguments.
  void step(const AdamWHyper& hyper, const Tensor& grad_scale = Tensor(), const Tensor& skip = Tensor()) const;

 private:
  Tensor table_, chunk_start_;
  int count_ = 0;
  int64_t chunks_ = 0;
};
class MultiGradNorm {
 public:
  MultiGradNorm() = default;
  MultiGradNorm(std::span<const Tensor> grads, Arena& arena);
  // grad_norm_clip over all the gradients (same outputs and semantics).
  void run(const Tensor& norm, const Tensor& coef, const Tensor& nonfinite, double max_norm) const;

 private:
  Tensor table_, chunk_start_, partials_;
  int count_ = 0;
  int64_t chunks_ = 0;
};

// x f32 (any shape) *= s[0], s an f32 [1] device scalar (one fp32 multiply per element, as torch's clip).
void scale_by(const Tensor& x, const Tensor& s);


// out f32 [1] (device) = sum of x (f32 or i32, any shape), accumulated in fp64 by one block in a fixed order
// (deterministic); e.g. the summed loss and the count of correct tokens for logging, read by the host later.
void reduce_sum(const Tensor& out, const Tensor& x);

}  // namespace cotune::kernels::cuda
