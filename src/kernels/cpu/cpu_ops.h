// CPU fp32 reference kernels: simple loops + OpenMP, BLAS for GEMM. These are the spec that the CUDA
// kernels are tested against. Shapes and semantics are documented in kernels/ops.h; here every
// tensor is a raw row-major float / int32 pointer.
#pragma once
#include <cstdint>

#include "kernels/rope.h"

namespace cotune::kernels::cpu {

// out[M,N] = alpha * op(a) @ op(b) + beta * out (cblas_sgemm).
void matmul(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
            float alpha, float beta);

// The same with explicit row strides (out ldo, a lda, b ldb): sub-matrices of wider ones (LoRA column blocks).
void gemm_strided(float* out, int64_t ldo, const float* a, int64_t lda, const float* b, int64_t ldb, int64_t M,
                  int64_t N, int64_t K, bool trans_a, bool trans_b, float alpha, float beta);

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T, int64_t C, int64_t V);

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C, float eps);
void rmsnorm_backward(float* dinp, const float* dout, const float* inp, const float* weight, const float* rstd,
                      int64_t T, int64_t C, bool accumulate);

// x[T,NH,D] in place; sign = +1 forward, -1 backward (rotation by -angle).
void rope_apply(float* x, const int32_t* positions, int64_t T, int64_t NH, int64_t D, const RopeSpec& rope, float sign);

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* cu_seqlens, int64_t S, int64_t T, int64_t H, int64_t KV, int64_t D, float scale,
                       int64_t window);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const int32_t* cu_seqlens, int64_t S,
                        int64_t T, int64_t H, int64_t KV, int64_t D, float scale,
                        int64_t window);

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n);

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t T, int64_t IC,
                    int64_t OC);
// out[T,OC] = residual + inp @ weight^T (+ bias); out may alias residual.
void linear_forward_residual(float* out, const float* inp, const float* weight, const float* residual,
                             const float* bias, int64_t T, int64_t IC, int64_t OC);
void linear_backward_input(float* dinp, const float* dout, const float* weight, int64_t T, int64_t IC, int64_t OC,
                           bool accumulate);

void lora_forward(float* out, float* xa, const float* inp, const float* A, const float* B, int64_t T, int64_t IC,
                  int64_t OC, int64_t R, float scale);
void lora_backward(float* dinp, float* dA, float* dB, float* g, const float* dout, const float* inp, const float* xa,
                   const float* A, const float* B, int64_t T, int64_t IC, int64_t OC, int64_t R, float scale);

void dropout(float* out, const float* inp, int64_t n, float p, uint64_t seed, uint64_t offset);
// N(0, std) from Philox4x32-10 under `key`: elements 2j, 2j+1 are the Box-Muller pair of block j.
void fill_normal(float* out, int64_t n, uint64_t key, float std);

void add(float* out, const float* a, const float* b, int64_t n);

void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t T, int64_t V);
void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets, int64_t T, int64_t V,
                            float grad_scale);
void lm_head_cross_entropy(float* losses, int32_t* correct, float* dhidden, const float* hidden, const float* weight,
                           const int32_t* targets, int64_t T, int64_t C, int64_t V, float grad_scale,
                           float* workspace, int64_t chunk);

}  // namespace cotune::kernels::cpu
