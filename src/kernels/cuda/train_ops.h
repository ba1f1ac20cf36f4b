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
#include <cstdint>
#include <span>

#include "kernels/optim.h"
#include "kernels/quant.h"
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

// NF4 dequantization of a device-resident Nf4Weight (bitsandbytes layout, see kernels/quant.h) into `out`
// (bf16 or f32 CUDA tensor of q.numel() elements, e.g. the reused per-layer bf16 scratch):
//   out[i] = round(quant_map[code_i] * absmax_f32[i / blocksize]),
//   absmax_f32[b] = nested_quant_map[absmax[b]] * nested_absmax[b / nested_blocksize] + offset (when nested),
// each product and sum rounded to fp32 separately (no FMA), as bitsandbytes computes; bit-identical to the CPU
// reference kernels::nf4_dequantize.
void nf4_dequantize(const Nf4Weight& q, const Tensor& out);
// nf4_dequantize of several weights into bf16 outputs, in one launch per 8 (bit-identical to one call each).
void nf4_dequantize_batch(std::span<const Nf4Weight> qs, std::span<const Tensor> outs);

// ---- LoRA on bf16 operands, raw-pointer forms (gemm.cpp) -----------------------------------------------------
// What ops.h's lora_xa / lora_up / lora_grad_b / lora_grad_a (ColumnBlock forms) and lora_forward / lora_backward
// (on bf16 copies of A/B) launch. The composition of these four is lora_forward / lora_backward. A and B are bf16 with contiguous rows; xa and g are bf16 [T, n] matrices with row stride
// ld_xa / ld_g, so several projections that share an input can keep their xa / g side by side and use one GEMM
// for x @ [A_1; A_2; ...]^T and for the stacked dA / dinp (N = the sum of their ranks).
//   lora_xa:     xa[T,N] = inp[T,IC] @ A[N,IC]^T
//   lora_up:     out[T,OC] += scale * xa[T,R] @ B[OC,R]^T  (out = ..., when not accumulate)
//   lora_grad_b: dB[OC,R] (f32) += scale * dout[T,OC]^T @ xa[T,R];  g[T,R] = scale * dout @ B
//   lora_grad_a: dA[N,IC] (f32) += g[T,N]^T @ inp;  dinp[T,IC] += g @ A[N,IC] (skipped when dinp is undefined;
//                dinp = ..., when not accumulate_dinp)
void lora_xa(void* xa, int64_t ld_xa, const Tensor& inp, const void* A, int64_t N);
void lora_up(const Tensor& out, const void* xa, int64_t ld_xa, const void* B, int64_t R, float scale,
             bool accumulate = true);
void lora_grad_b(float* dB, void* g, int64_t ld_g, const Tensor& dout, const void* xa, int64_t ld_xa, const void* B,
                 int64_t R, float scale);
void lora_grad_a(float* dA, const Tensor& dinp, const void* g, int64_t ld_g, int64_t N, const Tensor& inp,
                 const void* A, bool accumulate_dinp = true);

}  // namespace cotune::kernels::cuda
