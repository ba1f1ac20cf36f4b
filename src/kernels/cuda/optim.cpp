// Tensor-level entry points of optim.h: argument checks, the fp32 scalars of AdamW derived exactly as the
// CPU reference derives them, then the launchers of optim.cu.
#include "kernels/cuda/optim.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cuda/context.h"
#include "kernels/cuda/internal.h"
#include "kernels/cuda/launch.h"

namespace cotune::kernels::cuda {

namespace {
void need_cuda_f32(const Tensor& t, const char* op, const char* arg) {
  if (t.device != Device::cuda) fail("{}: {} must be a CUDA tensor, got {}", op, arg, t.str());
  need_dtype(t, DType::f32, op, arg);
}

AdamWScalars adamw_scalars(const AdamWHyper& h, const Tensor& grad_scale, const Tensor& skip) {
  const char* op = "adamw_step (CUDA)";
  if (h.step < 1) fail("{}: step must be >= 1 (bias corrections), got {}", op, h.step);
  if (grad_scale.data) need_cuda_f32(grad_scale, op, "grad_scale");
  if (skip.data) need_dtype(skip, DType::i32, op, "skip");
  AdamWScalars s{};
  s.decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  s.w = static_cast<float>(1.0 - h.beta1);
  s.small_w = std::fabs(s.w) < 0.5f;
  s.b2 = static_cast<float>(h.beta2);
  s.one_minus_b2 = static_cast<float>(1.0 - h.beta2);
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(h.step));
  s.neg_step_size = static_cast<float>(-(h.lr / bc1));
  s.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  s.eps = static_cast<float>(h.eps);
  s.decays = h.weight_decay != 0.0;
  return s;
}

// A device copy of a host array (from `arena`).
template <typename T>
Tensor upload_table(Arena& arena, const std::vector<T>& host, const char* what) {
  const int64_t bytes = static_cast<int64_t>(host.size() * sizeof(T));
  Tensor t = arena.alloc(DType::u8, {std::max<int64_t>(bytes, 1)}, what);
  if (bytes) copy_bytes(Tensor(t.data, DType::u8, {bytes}, t.device), Tensor(const_cast<T*>(host.data()), DType::u8, {bytes}));
  return t;
}

std::vector<int64_t> chunk_starts(const std::vector<int64_t>& sizes, int64_t chunk) {
  std::vector<int64_t> st(sizes.size() + 1, 0);
  for (size_t i = 0; i < sizes.size(); ++i) st[i + 1] = st[i] + (sizes[i] + chunk - 1) / chunk;
  return st;
}
}  // namespace

void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWHyper& h,
                const Tensor& grad_scale, const Tensor& skip) {
  const char* op = "adamw_step (CUDA)";
  for (const Tensor* t : {&p, &g, &m, &v}) {
    need_cuda_f32(*t, op, "p/g/m/v");
    if (t->numel() != p.numel()) fail("{}: {} and {} differ in size", op, t->str(), p.str());
  }
  const AdamWScalars s = adamw_scalars(h, grad_scale, skip);
  launch_adamw(p.ptr<float>(), g.ptr<float>(), m.ptr<float>(), v.ptr<float>(), p.numel(), s,
               grad_scale.data ? grad_scale.ptr<float>() : nullptr, skip.data ? skip.ptr<int32_t>() : nullptr);
}

void grad_norm_clip(const Tensor& norm, const Tensor& coef, const Tensor& nonfinite, std::span<const Tensor> grads,
                    double max_norm) {
  const char* op = "grad_norm_clip (CUDA)";
  need_cuda_f32(norm, op, "norm");
  if (coef.data) need_cuda_f32(coef, op, "coef");
  if (nonfinite.data) need_dtype(nonfinite, DType::i32, op, "nonfinite");
  for (const Tensor& t : grads) need_cuda_f32(t, op, "gradient");
  const int64_t ng = static_cast<int64_t>(grads.size());
  const int64_t groups = std::max<int64_t>(1, (ng + kNormGroup - 1) / kNormGroup);
  double* partials = static_cast<double*>(scratch(static_cast<size_t>(groups * kNormBlocks) * sizeof(double)));
  std::vector<const float*> ptrs(static_cast<size_t>(kNormGroup));
  std::vector<int64_t> sizes(static_cast<size_t>(kNormGroup));
  for (int64_t gi = 0; gi < groups; ++gi) {
    int count = 0;
    for (int64_t t = gi * kNormGroup; t < std::min<int64_t>((gi + 1) * kNormGroup, ng); ++t, ++count) {
      ptrs[static_cast<size_t>(count)] = grads[static_cast<size_t>(t)].ptr<float>();
      sizes[static_cast<size_t>(count)] = grads[static_cast<size_t>(t)].numel();
    }
    launch_sumsq_partials(ptrs.data(), sizes.data(), count, partials + gi * kNormBlocks);
  }
  launch_norm_finish(partials, groups * kNormBlocks, norm.ptr<float>(), coef.data ? coef.ptr<float>() : nullptr,
                     nonfinite.data ? nonfinite.ptr<int32_t>() : nullptr, static_cast<float>(max_norm),
                     max_norm > 0.0);
}

MultiAdamW::MultiAdamW(std::span<const AdamWSlot> slots, Arena& arena) {
  const char* op = "MultiAdamW (CUDA)";
  std::vector<AdamWTensor> table;
  std::vector<int64_t> sizes;
  for (const AdamWSlot& sl : slots) {
    for (const Tensor* t : {&sl.p, &sl.g, &sl.m, &sl.v}) {
      need_cuda_f32(*t, op, "p/g/m/v");
      if (t->numel() != sl.p.numel()) fail("{}: {} and {} differ in size", op, t->str(), sl.p.str());
    }
    if (sl.p16.data && (sl.p16.dtype != DType::bf16 || sl.p16.numel() != sl.p.numel()))
      fail("{}: the bf16 copy {} does not match {}", op, sl.p16.str(), sl.p.str());
    table.push_back({sl.p.ptr<float>(), sl.g.ptr<float>(), sl.m.ptr<float>(), sl.v.ptr<float>(),
                     sl.p16.data ? static_cast<uint16_t*>(sl.p16.data) : nullptr, sl.p.numel()});
    sizes.push_back(sl.p.numel());
  }
  const std::vector<int64_t> st = chunk_starts(sizes, kMultiChunk);
  count_ = static_cast<int>(table.size());
  chunks_ = st.back();
  table_ = upload_table(arena, table, "adamw table");
  chunk_start_ = upload_table(arena, st, "adamw chunk starts");
}

void MultiAdamW::step(const AdamWHyper& h, const Tensor& grad_scale, const Tensor& skip) const {
  if (count_ == 0) return;
  const AdamWScalars s = adamw_scalars(h, grad_scale, skip);
  launch_adamw_multi(static_cast<const AdamWTensor*>(table_.data), static_cast<const int64_t*>(chunk_start_.data),
                     count_, chunks_, s, grad_scale.data ? grad_scale.ptr<float>() : nullptr,
                     skip.data ? skip.ptr<int32_t>() : nullptr);
}

MultiGradNorm::MultiGradNorm(std::span<const Tensor> grads, Arena& arena) {
  std::vector<NormTensor> table;
  std::vector<int64_t> sizes;
  for (const Tensor& t : grads) {
    need_cuda_f32(t, "MultiGradNorm (CUDA)", "gradient");
    table.push_back({t.ptr<float>(), t.numel()});
    sizes.push_back(t.numel());
  }
  const std::vector<int64_t> st = chunk_starts(sizes, kMultiChunk);
  count_ = static_cast<int>(table.size());
  chunks_ = st.back();
  table_ = upload_table(arena, table, "grad norm table");
  chunk_start_ = upload_table(arena, st, "grad norm chunk starts");
  partials_ = arena.alloc(DType::i64, {kNormBlocks}, "grad norm partials (f64)");
}

void MultiGradNorm::run(const Tensor& norm, const Tensor& coef, const Tensor& nonfinite, double max_norm) const {
  const char* op = "MultiGradNorm (CUDA)";
  need_cuda_f32(norm, op, "norm");
  if (coef.data) need_cuda_f32(coef, op, "coef");
  if (nonfinite.data) need_dtype(nonfinite, DType::i32, op, "nonfinite");
  double* partials = static_cast<double*>(partials_.data);
  launch_sumsq_multi(static_cast<const NormTensor*>(table_.data), static_cast<const int64_t*>(chunk_start_.data),
                     count_, chunks_, partials);
  launch_norm_finish(partials, kNormBlocks, norm.ptr<float>(), coef.data ? coef.ptr<float>() : nullptr,
                     nonfinite.data ? nonfinite.ptr<int32_t>() : nullptr, static_cast<float>(max_norm),
                     max_norm > 0.0);
}

void scale_by(const Tensor& x, const Tensor& s) {
  need_cuda_f32(x, "scale_by (CUDA)", "x");
  need_cuda_f32(s, "scale_by (CUDA)", "s");
  launch_scale_by(x.ptr<float>(), x.numel(), s.ptr<float>());
}

void reduce_sum(const Tensor& out, const Tensor& x) {
  need_cuda_f32(out, "reduce_sum (CUDA)", "out");
  if (x.device != Device::cuda || (x.dtype != DType::f32 && x.dtype != DType::i32))
    fail("reduce_sum (CUDA): x must be an f32 or i32 CUDA tensor, got {}", x.str());
  launch_reduce_sum(out.ptr<float>(), x.data, x.dtype == DType::i32, x.numel());
}

}  // namespace cotune::kernels::cuda
