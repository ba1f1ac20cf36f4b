// CUDA twins of the trainer's per-step ops (kernels/optim.h) and of NF4 dequantization (kernels/quant.h).
// Everything runs on the context stream (kernels/cuda/context.h) and keeps its scalars on the device, so an
// optimizer step needs no host round-trip and can be captured in a CUDA graph:
//
//   grad_norm_clip(norm, coef, nonfinite, grads, max_norm)   // deterministic two-pass reduction
//   scale_by(g, coef) for each gradient                     // torch's in-place clip (or pass coef to adamw_step)
//   adamw_step(p, g, m, v, hyper, coef?, nonfinite)          // skipped on device when nonfinite != 0
//
// The host reads `norm` (and `nonfinite`) later, when it logs, with one copy.
#pragma once
#include <span>

#include "kernels/optim.h"
#include "kernels/quant.h"
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

// x f32 (any shape) *= s[0], s an f32 [1] device scalar (one fp32 multiply per element, as torch's clip).
void scale_by(const Tensor& x, const Tensor& s);

// Zero-fills a CUDA tensor on the context stream (cudaMemsetAsync: graph-capturable, unlike tensor/arena.h's
// fill_zero, which is synchronous on the legacy default stream). E.g. the LoRA gradients before accumulation.
void zero(const Tensor& t);

// out f32 [1] (device) = sum of x (f32 or i32, any shape), accumulated in fp64 by one block in a fixed order
// (deterministic); e.g. the summed loss and the count of correct tokens for logging, read by the host later.
void reduce_sum(const Tensor& out, const Tensor& x);

// NF4 dequantization of a device-resident Nf4Weight (bitsandbytes layout, see kernels/quant.h) into `out`
// (bf16 or f32 CUDA tensor of q.numel() elements, e.g. the reused per-layer bf16 scratch):
//   out[i] = round(quant_map[code_i] * absmax_f32[i / blocksize]),
//   absmax_f32[b] = nested_quant_map[absmax[b]] * nested_absmax[b / nested_blocksize] + offset (when nested),
// each product and sum rounded to fp32 separately (no FMA), as bitsandbytes computes; bit-identical to the CPU
// reference kernels::nf4_dequantize.
void nf4_dequantize(const Nf4Weight& q, const Tensor& out);

}  // namespace cotune::kernels::cuda
