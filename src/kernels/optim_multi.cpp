// kernels/optim.h MultiTensorAdamW: the CPU functions tensor by tensor, or the CUDA multi-tensor launches.
#include <utility>

#include "base/error.h"
#include "kernels/optim.h"
#include "tensor/arena.h"
#ifdef COTUNE_WITH_CUDA
#include "kernels/cuda/adamw8bit.h"
#include "kernels/cuda/optim.h"
#endif

namespace cotune::kernels {

struct MultiTensorAdamW::Launches {
#ifdef COTUNE_WITH_CUDA
  cuda::MultiAdamW8bit eight_bit;
  cuda::MultiAdamW fp32;
  cuda::MultiGradNorm norm;
#endif
};

MultiTensorAdamW::MultiTensorAdamW(std::vector<OptimTensor> tensors, Arena& arena, bool eight_bit_run)
    : tensors_(std::move(tensors)), eight_bit_run_(eight_bit_run), cuda_(arena.device() == Device::cuda) {
  for (const OptimTensor& t : tensors_)
    if (t.p.device != arena.device() || t.g.device != arena.device())
      fail("MultiTensorAdamW: {} / {} are not on the optimizer's {}", t.p.str(), t.g.str(), device_name(arena.device()));
  if (!cuda_) return;
#ifdef COTUNE_WITH_CUDA
  norm_ = arena.zeros(DType::f32, {1}, "grad norm");
  coef_ = arena.zeros(DType::f32, {1}, "clip coefficient");
  nonfinite_ = arena.zeros(DType::i32, {1}, "non-finite flag");
  std::vector<cuda::Adam8bitSlot> s8;
  std::vector<cuda::AdamWSlot> s32;
  std::vector<Tensor> grads;
  for (const OptimTensor& t : tensors_) {
    const int64_t n = t.p.numel();
    const Tensor p = t.p.view({n}), g = t.g.view({n});
    const Tensor p16 = t.p16.data ? t.p16.view({n}) : Tensor();
    if (t.eight_bit) s8.push_back({p, g, t.q1, t.absmax1, t.q2, t.absmax2, p16});
    else s32.push_back({p, g, t.m, t.v, p16});
    grads.push_back(t.g);
  }
  launches_ = std::make_unique<Launches>();
  launches_->eight_bit = cuda::MultiAdamW8bit(s8, arena);
  launches_->fp32 = cuda::MultiAdamW(s32, arena);
  launches_->norm = cuda::MultiGradNorm(grads, arena);
#else
  fail("MultiTensorAdamW: CUDA tensors in a build without CUDA");
#endif
}

MultiTensorAdamW::~MultiTensorAdamW() = default;

float MultiTensorAdamW::clip_grad_norm(double max_norm) {
#ifdef COTUNE_WITH_CUDA
  if (cuda_) {
    launches_->norm.run(norm_, coef_, nonfinite_, max_norm);
    clip_pending_ = max_norm > 0;
    float norm = 0;
    copy_bytes(Tensor(&norm, DType::f32, {1}), norm_);
    return norm;
  }
#endif
  std::vector<Tensor> grads;
  for (const OptimTensor& t : tensors_) grads.push_back(t.g);
  if (max_norm <= 0) return global_grad_norm(grads);
  return kernels::clip_grad_norm(grads, max_norm);
}

void MultiTensorAdamW::step(const AdamWHyper& h) {
#ifdef COTUNE_WITH_CUDA
  if (cuda_) {
    const Tensor scale = clip_pending_ ? coef_ : Tensor();
    launches_->eight_bit.step(h, scale, nonfinite_);
    launches_->fp32.step(h, scale, nonfinite_);
    clip_pending_ = false;
    return;
  }
#endif
  for (const OptimTensor& t : tensors_) {
    const int64_t n = t.p.numel();
    const Tensor p = t.p.view({n}), g = t.g.view({n});
    if (t.eight_bit) {
      adamw8bit_step(p, g, t.q1, t.absmax1, t.q2, t.absmax2, h, QuantRounding::nearest);
    } else if (eight_bit_run_) {
      // bnb keeps small tensors in fp32 state and updates them with its 32-bit formula.
      cpu::adamw_bnb32_step(p.ptr<float>(), g.ptr<float>(), t.m.ptr<float>(), t.v.ptr<float>(), n, h);
    } else {
      adamw_step(p, g, t.m, t.v, h);
    }
  }
  clip_pending_ = false;
}

}  // namespace cotune::kernels
