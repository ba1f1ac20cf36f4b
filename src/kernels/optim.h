// Optimizer update steps and gradient-norm reductions: the CPU references of what the trainer runs after
// backward. Each step updates one parameter tensor in place; the trainer (src/train/optimizer.h) owns the
// state and calls these per tensor.
//
//  adamw_step         torch.optim.AdamW (single-tensor path, the one torch takes for CPU tensors), same
//                     operation order and the same fused multiply-adds torch's vectorized CPU kernels use
//                     (lerp, addcmul), so results equal torch's to ~1 ulp (tests: <= 1e-6 relative).
//  adamw8bit_step     bitsandbytes AdamW8bit for tensors of >= 4096 elements (bnb's min_8bit_size):
//                     first/second moment stored as u8 codes of the signed/unsigned dynamic map with one
//                     fp32 absmax per block of 256; each step dequantizes, does the fp32 Adam update with
//                     decoupled weight decay and bias correction, and requantizes with a fresh absmax.
//                     Operation order is that of bnb's CPU backend (`_optimizer_update_8bit_blockwise_cpu`):
//                       m = m*b1 + (1-b1)*g;  v = v*b2 + (1-b2)*g*g;  c1 = 1-b1^t;  c2 = sqrt(1-b2^t)
//                       p *= 1 - lr*wd;  p += (-lr/c1) * m / (sqrt(v)/c2 + eps)
//                     (bnb's CUDA kernel applies the weight decay after the update and writes the same
//                     quotient as -lr*c2/c1 * m / (sqrt(v) + eps*c2): equal in exact arithmetic, not bitwise.)
//  adamw_bnb32_step   bnb's 32-bit Adam formula (`_optimizer_update_32bit_cpu`), which AdamW8bit uses for
//                     tensors below min_8bit_size: p *= 1-lr*wd; p += (-lr*c2/c1) * m / (sqrt(v) + eps*c2).
//  grad norm / clip   torch.nn.utils.clip_grad_norm_(norm_type=2): total = sqrt(sum of squares over all
//                     tensors), accumulated in fp64 and rounded once; coef = max_norm / (total + 1e-6) in
//                     fp32, clamped to 1; every gradient is multiplied by coef (also when coef is 1, as torch).
//
// Hyper-parameters are doubles because torch and bnb compute the scalar factors (1 - lr*wd, lr/c1, ...)
// in Python floats and round them to fp32 only when they meet a tensor; cotune does the same.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kernels/quant.h"
#include "tensor/tensor.h"

namespace cotune {
class Arena;
}

namespace cotune::kernels {

struct AdamWHyper {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  int64_t step = 1;  // 1-based count of this update (bias corrections use it); must be >= 1
};

inline constexpr int64_t kMin8bitSize = 4096;  // bnb Optimizer2State min_8bit_size default

namespace cpu {

// p, g, m (exp_avg), v (exp_avg_sq): f32 [n]. m and v start at 0 before step 1.
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamWHyper& h);
// bnb's 32-bit formula (see the top comment); g is multiplied by gnorm_scale first (1 = no scaling).
void adamw_bnb32_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamWHyper& h,
                      float gnorm_scale = 1.0f);
// p, g: f32 [n]; q1, q2: u8 [n] (codes of m in kDynamicMapSigned, of v in kDynamicMapUnsigned);
// absmax1, absmax2: f32 [ceil(n/256)]. All zero before step 1 (bnb initialises them so).
void adamw8bit_step(float* p, const float* g, uint8_t* q1, float* absmax1, uint8_t* q2, float* absmax2, int64_t n,
                    const AdamWHyper& h, QuantRounding r, float gnorm_scale = 1.0f);

// Sum of squares of x f32 [n], accumulated in fp64.
double sum_squares(const float* x, int64_t n);
// x[i] *= s (one fp32 multiply).
void scale_inplace(float* x, int64_t n, float s);

}  // namespace cpu

// ---- tensor entry points (host tensors; the CUDA twins will dispatch here on device) --------------------
// All f32 and of equal numel; throws Error naming the offending tensor.
void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWHyper& h);
// q1/q2 u8 [n], absmax1/absmax2 f32 [ceil(n/256)].
void adamw8bit_step(const Tensor& p, const Tensor& g, const Tensor& q1, const Tensor& absmax1, const Tensor& q2,
                    const Tensor& absmax2, const AdamWHyper& h, QuantRounding r);

// sqrt(sum over tensors of sum of squares), fp64 accumulation, rounded to fp32 (torch returns an fp32 tensor).
float global_grad_norm(std::span<const Tensor> grads);
// The clip factor torch applies for a given total norm: min(1, (1 / (total + 1e-6)) * max_norm) in fp32.
float clip_coefficient(float total_norm, double max_norm);
// clip_grad_norm_: scales every gradient by clip_coefficient(total) and returns the total norm before
// clipping (what HF logs as grad_norm). A non-finite total scales the gradients by 0 (inf) or NaN (NaN),
// as torch does with error_if_nonfinite=False; callers check the returned norm and skip the step.
float clip_grad_norm(std::span<const Tensor> grads, double max_norm);

// ---- the update of many tensors (what train::Optimizer runs each step) ------------------------------------------
// One entry per parameter: p, g f32 [n], its state (8-bit: q1, absmax1, q2, absmax2 as adamw8bit_step; else f32 m,
// v), and on CUDA p16, the bf16 copy of p the update rewrites (undefined: none). On the CPU every tensor is updated
// by the functions above (the f32-state tensors of an 8-bit run by bnb's 32-bit formula, as bnb does); on CUDA
// in a few multi-tensor launches (kernels/cuda/optim.h, adamw8bit.h; the f32-state tensors by torch's formula),
// with the clip coefficient, the norm and a non-finite flag kept on the device.
struct OptimTensor {
  Tensor p, g, p16;
  bool eight_bit = false;
  Tensor m, v, q1, absmax1, q2, absmax2;
};

class MultiTensorAdamW {
 public:
  // eight_bit_run: the optimizer is AdamW 8-bit (decides the CPU formula of its f32-state tensors). `arena` (on
  // the tensors' device) holds the launch tables and the device scalars; it must outlive this object.
  MultiTensorAdamW(std::vector<OptimTensor> tensors, Arena& arena, bool eight_bit_run);
  ~MultiTensorAdamW();
  MultiTensorAdamW(const MultiTensorAdamW&) = delete;
  MultiTensorAdamW& operator=(const MultiTensorAdamW&) = delete;
  // Total gradient norm before clipping (clip_grad_norm above); with max_norm > 0 the gradients are scaled so that
  // it is at most max_norm (on CUDA inside the next step()'s update).
  float clip_grad_norm(double max_norm);
  void step(const AdamWHyper& h);

 private:
  std::vector<OptimTensor> tensors_;
  bool eight_bit_run_ = false, cuda_ = false, clip_pending_ = false;
  Tensor norm_, coef_, nonfinite_;  // CUDA: f32 [1], f32 [1], i32 [1]
  struct Launches;                  // CUDA: the multi-tensor launches with their device pointer tables
  std::unique_ptr<Launches> launches_;
};

}  // namespace cotune::kernels
