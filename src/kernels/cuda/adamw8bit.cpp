#include "kernels/cuda/adamw8bit.h"

#include <cmath>

#include "kernels/cuda/adamw8bit_launch.h"
#include "kernels/quant.h"

namespace cotune::kernels::cuda {

void adamw8bit_step(const Tensor& p, const Tensor& g, const Tensor& q1, const Tensor& absmax1, const Tensor& q2,
                    const Tensor& absmax2, const AdamWHyper& h, const Tensor& grad_scale, const Tensor& skip) {
  const int64_t n = p.numel();
  const int64_t nb = (n + 255) / 256;
  for (const Tensor* t : {&p, &g, &q1, &q2, &absmax1, &absmax2})
    if (t->device != Device::cuda) fail("adamw8bit_step (CUDA): {} is not a CUDA tensor", t->str());
  if (g.numel() != n || q1.numel() != n || q2.numel() != n || absmax1.numel() != nb || absmax2.numel() != nb)
    fail("adamw8bit_step (CUDA): state sizes do not match the parameter {}", p.str());
  if (h.step < 1) fail("adamw8bit_step: step must be >= 1, got {}", h.step);
  static const Adam8bitCodes codes = [] {
    Adam8bitCodes c;
    for (int i = 0; i < 256; ++i) {
      c.signed_code[i] = kDynamicMapSigned[i];
      c.unsigned_code[i] = kDynamicMapUnsigned[i];
    }
    return c;
  }();
  const double c1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  Adam8bitScalars s;
  s.b1 = static_cast<float>(h.beta1);
  s.one_minus_b1 = static_cast<float>(1.0 - h.beta1);
  s.b2 = static_cast<float>(h.beta2);
  s.one_minus_b2 = static_cast<float>(1.0 - h.beta2);
  s.c2 = static_cast<float>(std::sqrt(1.0 - std::pow(h.beta2, static_cast<double>(h.step))));
  s.eps = static_cast<float>(h.eps);
  s.neg_lr_c1 = static_cast<float>(-h.lr / c1);
  s.decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  s.decays = h.weight_decay > 0.0 ? 1 : 0;
  launch_adamw8bit(p.ptr<float>(), g.ptr<float>(), q1.ptr<uint8_t>(), absmax1.ptr<float>(), q2.ptr<uint8_t>(),
                   absmax2.ptr<float>(), n, codes, s, grad_scale.data ? grad_scale.ptr<float>() : nullptr,
                   skip.data ? skip.ptr<int32_t>() : nullptr);
}

}  // namespace cotune::kernels::cuda
