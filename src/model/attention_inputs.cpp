#include "model/attention_inputs.h"

#include "base/error.h"
#include "kernels/ops.h"
#include "model/qwen2.h"

namespace cotune::model {

namespace ops = cotune::kernels;

namespace {
// [T, NH*D] as [T*NH, D] (one RMSNorm row a head), and as [T, NH, D] (one rope / attention head).
Tensor per_head_rows(const Tensor& t, int64_t D) { return t.view({t.dim(0) * (t.dim(1) / D), D}); }
Tensor heads(const Tensor& t, int64_t D) { return t.view({t.dim(0), t.dim(1) / D, D}); }
}  // namespace

void attention_inputs_forward(const Architecture& arch, const LayerWeights& w, const Tensor& q, const Tensor& k,
                              const Tensor& positions, const QkNormActs& acts) {
  const int64_t D = arch.head_dim;
  if (arch.qk_norm) {
    if (!acts.q_pre.data || !w.q_norm.data) fail("attention inputs: q/k norm without its buffers or weights");
    // Qwen3RMSNorm over head_dim, as the layers' norms (f32 statistics, the normalised value rounded to the
    // activation dtype before the weight multiply).
    ops::rmsnorm_forward(per_head_rows(q, D), acts.rstd_q, per_head_rows(acts.q_pre, D), w.q_norm, arch.rms_eps);
    ops::rmsnorm_forward(per_head_rows(k, D), acts.rstd_k, per_head_rows(acts.k_pre, D), w.k_norm, arch.rms_eps);
  }
  ops::rope_forward(heads(q, D), positions, arch.rope);
  ops::rope_forward(heads(k, D), positions, arch.rope);
}

QkGrads attention_inputs_backward(const Architecture& arch, const LayerWeights& w, const Tensor& dq, const Tensor& dk,
                                  const Tensor& positions, const QkNormActs& acts, const Tensor& dq_pre,
                                  const Tensor& dk_pre) {
  const int64_t D = arch.head_dim;
  ops::rope_backward(heads(dq, D), positions, arch.rope);
  ops::rope_backward(heads(dk, D), positions, arch.rope);
  if (!arch.qk_norm) return {dq, dk};
  ops::rmsnorm_backward(per_head_rows(dq_pre, D), per_head_rows(dq, D), per_head_rows(acts.q_pre, D), w.q_norm,
                        acts.rstd_q, false);
  ops::rmsnorm_backward(per_head_rows(dk_pre, D), per_head_rows(dk, D), per_head_rows(acts.k_pre, D), w.k_norm,
                        acts.rstd_k, false);
  return {dq_pre, dk_pre};
}

}  // namespace cotune::model
