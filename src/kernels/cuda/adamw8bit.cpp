#include "kernels/cuda/adamw8bit.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cuda/adamw8bit_launch.h"
#include "kernels/quant.h"

namespace cotune::kernels::cuda {

namespace {
const Adam8bitCodes& codes() {
  static const Adam8bitCodes c = [] {
    Adam8bitCodes x;
    for (int i = 0; i < 256; ++i) {
      x.signed_code[i] = kDynamicMapSigned[i];
      x.unsigned_code[i] = kDynamicMapUnsigned[i];
    }
    return x;
  }();
  return c;
}

Adam8bitScalars scalars(const AdamWHyper& h) {
  if (h.step < 1) fail("adamw8bit_step: step must be >= 1, got {}", h.step);
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
  return s;
}

void check_state(const Tensor& p, const Tensor& g, const Tensor& q1, const Tensor& absmax1, const Tensor& q2,
                 const Tensor& absmax2) {
  const int64_t n = p.numel();
  const int64_t nb = (n + 255) / 256;
  for (const Tensor* t : {&p, &g, &q1, &q2, &absmax1, &absmax2})
    if (t->device != Device::cuda) fail("adamw8bit_step (CUDA): {} is not a CUDA tensor", t->str());
  if (g.numel() != n || q1.numel() != n || q2.numel() != n || absmax1.numel() != nb || absmax2.numel() != nb)
    fail("adamw8bit_step (CUDA): state sizes do not match the parameter {}", p.str());
}
}  // namespace

void adamw8bit_step(const Tensor& p, const Tensor& g, const Tensor& q1, const Tensor& absmax1, const Tensor& q2,
                    const Tensor& absmax2, const AdamWHyper& h, const Tensor& grad_scale, const Tensor& skip) {
  check_state(p, g, q1, absmax1, q2, absmax2);
  const Adam8bitScalars s = scalars(h);
  launch_adamw8bit(p.ptr<float>(), g.ptr<float>(), q1.ptr<uint8_t>(), absmax1.ptr<float>(), q2.ptr<uint8_t>(),
                   absmax2.ptr<float>(), p.numel(), codes(), s, grad_scale.data ? grad_scale.ptr<float>() : nullptr,
                   skip.data ? skip.ptr<int32_t>() : nullptr);
}

MultiAdamW8bit::MultiAdamW8bit(std::span<const Adam8bitSlot> slots, Arena& arena) {
  std::vector<Adam8bitTensor> table;
  std::vector<int64_t> starts{0};
  for (const Adam8bitSlot& sl : slots) {
    check_state(sl.p, sl.g, sl.q1, sl.absmax1, sl.q2, sl.absmax2);
    if (sl.p.dtype != DType::f32 || sl.g.dtype != DType::f32)
      fail("MultiAdamW8bit (CUDA): {} / {} must be f32", sl.p.str(), sl.g.str());
    if (sl.p16.data && (sl.p16.dtype != DType::bf16 || sl.p16.numel() != sl.p.numel()))
      fail("MultiAdamW8bit (CUDA): the bf16 copy {} does not match {}", sl.p16.str(), sl.p.str());
    table.push_back({sl.p.ptr<float>(), sl.g.ptr<float>(), sl.p16.data ? static_cast<uint16_t*>(sl.p16.data) : nullptr,
                     sl.q1.ptr<uint8_t>(), sl.absmax1.ptr<float>(), sl.q2.ptr<uint8_t>(), sl.absmax2.ptr<float>(),
                     sl.p.numel()});
    starts.push_back(starts.back() + (sl.p.numel() + 255) / 256);
  }
  count_ = static_cast<int>(table.size());
  blocks_ = starts.back();
  auto up = [&](const void* src, size_t bytes, const char* what) {
    Tensor t = arena.alloc(DType::u8, {static_cast<int64_t>(std::max<size_t>(bytes, 1))}, what);
    if (bytes)
      copy_bytes(Tensor(t.data, DType::u8, {static_cast<int64_t>(bytes)}, t.device),
                 Tensor(const_cast<void*>(src), DType::u8, {static_cast<int64_t>(bytes)}));
    return t;
  };
  table_ = up(table.data(), table.size() * sizeof(Adam8bitTensor), "adamw8bit table");
  block_start_ = up(starts.data(), starts.size() * sizeof(int64_t), "adamw8bit block starts");
}

void MultiAdamW8bit::step(const AdamWHyper& h, const Tensor& grad_scale, const Tensor& skip) const {
  if (count_ == 0) return;
  const Adam8bitScalars s = scalars(h);
  launch_adamw8bit_multi(static_cast<const Adam8bitTensor*>(table_.data), static_cast<const int64_t*>(block_start_.data),
                         count_, blocks_, codes(), s, grad_scale.data ? grad_scale.ptr<float>() : nullptr,
                         skip.data ? skip.ptr<int32_t>() : nullptr);
}

}  // namespace cotune::kernels::cuda
