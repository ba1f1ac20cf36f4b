// CUDA implementations of kernels/ops.h (bf16 storage, fp32 accumulation). Same names and arguments as
// ops.h; shapes, dtypes and devices are already validated by the dispatcher in ops.cpp, so these only
// launch work on the current stream (kernels/cuda/context.h). Compiled only when COTUNE_WITH_CUDA.
#pragma once
#include <cstdint>

#include "kernels/ops.h"
#include "kernels/rope.h"
#include "tensor/tensor.h"

namespace cotune::kernels::cuda {

void matmul(const Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha, float beta);
void embedding_forward(const Tensor& out, const Tensor& ids, const Tensor& table);
void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& inp, const Tensor& weight, float eps);
void rmsnorm_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp, const Tensor& weight,
                      const Tensor& rstd, bool accumulate);
void rope_forward(const Tensor& x, const Tensor& positions, const RopeSpec& rope);
void rope_backward(const Tensor& dx, const Tensor& positions, const RopeSpec& rope);
void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& cu_seqlens, int max_seqlen, float scale,
                       int64_t window = 0);
void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& cu_seqlens, int max_seqlen, float scale,
                        int64_t window = 0);
void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up);
void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout, const Tensor& gate, const Tensor& up);
void linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& bias);
void linear_backward_input(const Tensor& dinp, const Tensor& dout, const Tensor& weight, bool accumulate);
void linear_forward_residual(const Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& residual,
                             const Tensor& bias);
void lora_xa(const ColumnBlock& xa, const Tensor& inp, const Tensor& A);
void lora_up(const Tensor& out, const ColumnBlock& xa, const Tensor& B, float scale, bool accumulate);
void lora_grad_b(const Tensor& dB, const ColumnBlock& g, const Tensor& dout, const ColumnBlock& xa, const Tensor& B,
                 float scale);
void lora_grad_a(const Tensor& dA, const Tensor& dinp, const ColumnBlock& g, const Tensor& inp, const Tensor& A,
                 bool accumulate_dinp);
void lora_forward(const Tensor& out, const Tensor& xa, const Tensor& inp, const Tensor& A, const Tensor& B,
                  float scale);
void lora_backward(const Tensor& dinp, const Tensor& dA, const Tensor& dB, const Tensor& g, const Tensor& dout,
                   const Tensor& inp, const Tensor& xa, const Tensor& A, const Tensor& B, float scale);
void dropout_forward(const Tensor& out, const Tensor& inp, float p, uint64_t seed, uint64_t offset);
void dropout_backward(const Tensor& dinp, const Tensor& dout, float p, uint64_t seed, uint64_t offset);
void fill_normal(const Tensor& out, uint64_t key, float std);
void add(const Tensor& out, const Tensor& a, const Tensor& b);
void copy(const Tensor& dst, const Tensor& src);
void zero(const Tensor& t);
void cross_entropy_forward(const Tensor& losses, const Tensor& logits, const Tensor& targets);
void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& targets, float grad_scale);
void lm_head_cross_entropy(const Tensor& losses, const Tensor& correct, const Tensor& dhidden, const Tensor& hidden,
                           const Tensor& weight, const Tensor& targets, float grad_scale, const Tensor& workspace,
                           int64_t chunk);
void lm_head_cross_entropy_device_scale(const Tensor& losses, const Tensor& correct, const Tensor& dhidden,
                                        const Tensor& hidden, const Tensor& weight, const Tensor& targets,
                                        const Tensor& scalars, const Tensor& workspace, int64_t chunk);

}  // namespace cotune::kernels::cuda
