// The family-dependent step between the q/k projections and the attention: Qwen3's per-head RMSNorm of q and k,
// then RoPE (with the architecture's scaling). One definition for the training forward and backward
// (model/layer_train.cpp) and for decoding (infer/generator.cpp), so a family feature lives in one place.
#pragma once
#include "model/architecture.h"
#include "tensor/tensor.h"

namespace cotune::model {

struct LayerWeights;

// With qk_norm, the projections write q_pre / k_pre and the norm writes q / k; rstd_q / rstd_k hold the norm's
// 1/rms per (token, head) for the backward. All undefined without qk_norm.
struct QkNormActs {
  Tensor q_pre, k_pre;    // [T, H*D], [T, KV*D] (act): the projections' outputs
  Tensor rstd_q, rstd_k;  // [T*H], [T*KV] (f32)
};

// q [T, H*D], k [T, KV*D] become what the attention reads: q = rope(qnorm(q_pre)) (without qk_norm: rope(q), in
// place). positions i32 [T].
void attention_inputs_forward(const Architecture& arch, const LayerWeights& w, const Tensor& q, const Tensor& k,
                              const Tensor& positions, const QkNormActs& acts);
// The transpose: dq, dk [T, H*D], [T, KV*D] (gradients of the attention's q, k) become, in place, the gradients of
// the rotated values; with qk_norm, dq_pre / dk_pre receive the gradients of the projections' outputs (the ones
// to pass to the projection backward). Returns those: {dq_pre, dk_pre} or {dq, dk}.
struct QkGrads {
  Tensor dq, dk;
};
QkGrads attention_inputs_backward(const Architecture& arch, const LayerWeights& w, const Tensor& dq, const Tensor& dk,
                                  const Tensor& positions, const QkNormActs& acts, const Tensor& dq_pre,
                                  const Tensor& dk_pre);

}  // namespace cotune::model
