// CPU reference of the optimizer steps and gradient clipping; see optim.h for the formulas and their
// sources. Scalars are computed in double and rounded to fp32 where they meet tensors (as torch does with
// Python floats); std::fma marks the places where torch's vectorized CPU kernels fuse (lerp: fmadd(w, end -
// start, start); addcmul: fmadd(value * t1, t2, self); add with alpha: fmadd(other, alpha, self)). Without
// those explicit fmas the project's -ffp-contract=off build rounds every operation separately.
#include <algorithm>
#include <cmath>
#include <vector>

#include "base/parallel.h"
#include "kernels/optim.h"

namespace cotune::kernels {
namespace cpu {

namespace {
void check_hyper(const AdamWHyper& h, const char* who) {
  COTUNE_CHECK(h.step >= 1, "{}: step must be >= 1 (bias corrections), got {}", who, h.step);
}
}  // namespace

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamWHyper& h) {
  check_hyper(h, "adamw_step");
  // torch/optim/adamw.py (_single_tensor_adam with decoupled_weight_decay=True):
  //   param.mul_(1 - lr * wd); exp_avg.lerp_(grad, 1 - beta1)
  //   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
  //   step_size = lr / (1 - beta1**step); denom = (exp_avg_sq.sqrt() / sqrt(1 - beta2**step)).add_(eps)
  //   param.addcdiv_(exp_avg, denom, value=-step_size)
  const float decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  const float w = static_cast<float>(1.0 - h.beta1);  // lerp weight
  const bool small_w = std::fabs(w) < 0.5f;
  const float b2 = static_cast<float>(h.beta2);
  const float one_minus_b2 = static_cast<float>(1.0 - h.beta2);
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(h.step));
  const float neg_step_size = static_cast<float>(-(h.lr / bc1));
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float eps = static_cast<float>(h.eps);
  const bool decays = h.weight_decay != 0.0;
  parallel_for(n, [&](int64_t i) {
    float pi = decays ? p[i] * decay : p[i];
    const float gi = g[i];
    const float diff = gi - m[i];
    // torch lerp: small weight -> start + w*(end-start); else end - (end-start)*(1-w), each as one fma
    const float mi = small_w ? std::fma(w, diff, m[i]) : std::fma(w - 1.0f, diff, gi);
    const float vi = std::fma(one_minus_b2 * gi, gi, v[i] * b2);
    const float denom = std::sqrt(vi) / bc2_sqrt + eps;
    pi = pi + (neg_step_size * mi) / denom;  // addcdiv: self + value * t1 / t2
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
  });
}

void adamw_bnb32_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamWHyper& h,
                      float gnorm_scale) {
  check_hyper(h, "adamw_bnb32_step");
  // bitsandbytes/backends/cpu/ops.py _optimizer_update_32bit_cpu, optimizer "adam":
  //   state1.mul_(beta1).add_(g, alpha=1-beta1); state2.mul_(beta2).addcmul_(g, g, value=1-beta2)
  //   step_size = -lr * c2 / c1; p.mul_(1 - lr*wd) if wd > 0
  //   update = state1 / (state2.sqrt() + eps * c2); p.add_(update, alpha=step_size)
  const float b1 = static_cast<float>(h.beta1), one_minus_b1 = static_cast<float>(1.0 - h.beta1);
  const float b2 = static_cast<float>(h.beta2), one_minus_b2 = static_cast<float>(1.0 - h.beta2);
  const double c1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double c2 = std::sqrt(1.0 - std::pow(h.beta2, static_cast<double>(h.step)));
  const float step_size = static_cast<float>(-h.lr * c2 / c1);
  const float eps_c2 = static_cast<float>(h.eps * c2);
  const float decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  const bool decays = h.weight_decay > 0.0;
  parallel_for(n, [&](int64_t i) {
    const float gi = gnorm_scale == 1.0f ? g[i] : g[i] * gnorm_scale;
    const float mi = std::fma(gi, one_minus_b1, m[i] * b1);
    const float vi = std::fma(one_minus_b2 * gi, gi, v[i] * b2);
    float pi = decays ? p[i] * decay : p[i];
    const float update = mi / (std::sqrt(vi) + eps_c2);
    p[i] = std::fma(update, step_size, pi);
    m[i] = mi;
    v[i] = vi;
  });
}

void adamw8bit_step(float* p, const float* g, uint8_t* q1, float* absmax1, uint8_t* q2, float* absmax2, int64_t n,
                    const AdamWHyper& h, QuantRounding r, float gnorm_scale) {
  check_hyper(h, "adamw8bit_step");
  // bitsandbytes/backends/cpu/ops.py _optimizer_update_8bit_blockwise_cpu, optimizer "adam" (AdamW8bit):
  //   s1 = dequant(state1), s2 = dequant(state2)      (code[q] * absmax per block of 256)
  //   s1.mul_(beta1).add_(grad, alpha=1-beta1); s2.mul_(beta2).addcmul_(grad, grad, value=1-beta2)
  //   denom = (s2.sqrt() / c2).add_(eps); p.mul_(1 - lr*wd) if wd > 0; p.addcdiv_(s1, denom, value=-lr/c1)
  //   state1, absmax1 = quantize_blockwise(s1); state2, absmax2 = quantize_blockwise(s2)
  // The whole tensor is dequantized, updated and requantized; per element it is the same as per block.
  const float b1 = static_cast<float>(h.beta1), one_minus_b1 = static_cast<float>(1.0 - h.beta1);
  const float b2 = static_cast<float>(h.beta2), one_minus_b2 = static_cast<float>(1.0 - h.beta2);
  const double c1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double c2 = std::sqrt(1.0 - std::pow(h.beta2, static_cast<double>(h.step)));
  const float c2f = static_cast<float>(c2);
  const float eps = static_cast<float>(h.eps);
  const float neg_lr_c1 = static_cast<float>(-h.lr / c1);
  const float decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  const bool decays = h.weight_decay > 0.0;
  std::vector<float> s1(static_cast<size_t>(n)), s2(static_cast<size_t>(n));
  dequantize_blockwise_8bit(q1, absmax1, kDynamicMapSigned, n, kOptimBlocksize, s1.data());
  dequantize_blockwise_8bit(q2, absmax2, kDynamicMapUnsigned, n, kOptimBlocksize, s2.data());
  parallel_for(n, [&](int64_t i) {
    const size_t k = static_cast<size_t>(i);
    const float gi = gnorm_scale == 1.0f ? g[i] : g[i] * gnorm_scale;
    const float mi = std::fma(gi, one_minus_b1, s1[k] * b1);
    const float vi = std::fma(one_minus_b2 * gi, gi, s2[k] * b2);
    const float denom = std::sqrt(vi) / c2f + eps;
    float pi = decays ? p[i] * decay : p[i];
    p[i] = pi + (neg_lr_c1 * mi) / denom;
    s1[k] = mi;
    s2[k] = vi;
  });
  quantize_blockwise_8bit(s1.data(), n, kDynamicMapSigned, kOptimBlocksize, q1, absmax1, r);
  quantize_blockwise_8bit(s2.data(), n, kDynamicMapUnsigned, kOptimBlocksize, q2, absmax2, r);
}

double sum_squares(const float* x, int64_t n) {
  // Fixed chunks summed in order: the result does not depend on the thread count (resume is bit-identical).
  constexpr int64_t kChunk = 1 << 14;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  parallel_for(chunks, [&](int64_t c) {
    double s = 0.0;
    for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) s += static_cast<double>(x[i]) * x[i];
    partial[static_cast<size_t>(c)] = s;
  });
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

void scale_inplace(float* x, int64_t n, float s) {
  parallel_for(n, [&](int64_t i) { x[i] *= s; });
}

}  // namespace cpu

namespace {
void expect_host_f32(const Tensor& t, int64_t n, std::string_view what) {
  if (t.device != Device::cpu)
    fail("{}: {} is on {}; the CPU reference needs host tensors", what, t.str(), device_name(t.device));
  if (t.dtype != DType::f32 || t.numel() != n) fail("{}: {} is not f32 with {} elements", what, t.str(), n);
}
}  // namespace

void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWHyper& h) {
  const int64_t n = p.numel();
  expect_host_f32(p, n, "adamw_step param");
  expect_host_f32(g, n, "adamw_step grad");
  expect_host_f32(m, n, "adamw_step exp_avg");
  expect_host_f32(v, n, "adamw_step exp_avg_sq");
  cpu::adamw_step(p.ptr<float>(), g.ptr<float>(), m.ptr<float>(), v.ptr<float>(), n, h);
}

void adamw8bit_step(const Tensor& p, const Tensor& g, const Tensor& q1, const Tensor& absmax1, const Tensor& q2,
                    const Tensor& absmax2, const AdamWHyper& h, QuantRounding r) {
  const int64_t n = p.numel();
  const int64_t nb = num_blocks(n, kOptimBlocksize);
  expect_host_f32(p, n, "adamw8bit_step param");
  expect_host_f32(g, n, "adamw8bit_step grad");
  expect_host_f32(absmax1, nb, "adamw8bit_step absmax1");
  expect_host_f32(absmax2, nb, "adamw8bit_step absmax2");
  for (const Tensor* q : {&q1, &q2})
    if (q->dtype != DType::u8 || q->numel() != n || q->device != Device::cpu)
      fail("adamw8bit_step: state {} is not a host u8 tensor of {} elements", q->str(), n);
  cpu::adamw8bit_step(p.ptr<float>(), g.ptr<float>(), q1.ptr<uint8_t>(), absmax1.ptr<float>(), q2.ptr<uint8_t>(),
                      absmax2.ptr<float>(), n, h, r);
}

float global_grad_norm(std::span<const Tensor> grads) {
  double total = 0.0;
  for (const Tensor& t : grads) {
    expect_host_f32(t, t.numel(), "global_grad_norm");
    total += cpu::sum_squares(t.ptr<float>(), t.numel());
  }
  return static_cast<float>(std::sqrt(total));
}

float clip_coefficient(float total_norm, double max_norm) {
  // torch: clip_coef = max_norm / (total_norm + 1e-6) with total_norm an fp32 tensor; a Python number
  // divided by a tensor is Tensor.__rtruediv__ = reciprocal() * number. Then clamp(max=1.0) (NaN stays NaN).
  const float denom = total_norm + static_cast<float>(1e-6);
  const float coef = (1.0f / denom) * static_cast<float>(max_norm);
  return coef > 1.0f ? 1.0f : coef;
}

float clip_grad_norm(std::span<const Tensor> grads, double max_norm) {
  const float total = global_grad_norm(grads);
  const float coef = clip_coefficient(total, max_norm);
  for (const Tensor& t : grads) cpu::scale_inplace(t.ptr<float>(), t.numel(), coef);
  return total;
}

}  // namespace cotune::kernels
