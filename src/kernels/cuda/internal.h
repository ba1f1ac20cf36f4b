// Host-side helpers shared by the .cpp files of kernels/cuda (not a public header): dtype checks that name the
// op, and the row-major cuBLASLt GEMM (gemm.cpp). Not for .cu files (it includes fmt through base/error.h).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "base/error.h"
#include "tensor/tensor.h"

namespace cotune::kernels::cuda {

inline void need_dtype(const Tensor& t, DType d, const char* op, const char* arg) {
  if (t.dtype != d) fail("{} (CUDA): {} must be {}, got {}", op, arg, dtype_name(d), t.str());
}

// Row-major GEMM on the context stream through cuBLASLt (gemm.cpp):
//   D[M,N] (row stride ldd) = alpha * op(A) @ op(B) + beta * C  (+ bias[N] broadcast over rows, if given)
// C is D itself unless `c` is given (then a matrix of D's type and layout, e.g. a residual stream).
// A is [M,K] (or [K,M] when trans_a) with row stride lda; B is [K,N] (or [N,K] when trans_b) with row stride ldb.
// Types: A, B both bf16 (D bf16 or f32; bias bf16 with a bf16 D) or all f32. fp32 accumulation.
// With `scalars` (a device float[2]), alpha = scalars[0] and beta = scalars[1] are read by the GPU when the GEMM
// runs (the host alpha / beta are ignored): a value that changes between replays of a captured CUDA graph.
void gemm(void* d, DType d_type, const void* a, DType a_type, const void* b, DType b_type, int64_t M, int64_t N,
          int64_t K, bool trans_a, bool trans_b, int64_t lda, int64_t ldb, int64_t ldd, float alpha, float beta,
          const void* bias = nullptr, const void* c = nullptr, const float* scalars = nullptr);

// The chunked LM head + cross-entropy of ops.h's lm_head_cross_entropy (gemm.cpp): per chunk of rows, fp32 logits,
// the row kernel (losses, correct, bf16 gradient ce_scale * (softmax - onehot) over the f32 rows), then
// dhidden = gradient @ weight, with alpha / beta from the device float[2] `scalars` when given (else 1, 0).
void lm_head_ce_chunks(const Tensor& losses, const Tensor& correct, const Tensor& dhidden, const Tensor& hidden,
                       const Tensor& weight, const Tensor& targets, float ce_scale, const float* scalars,
                       const Tensor& workspace, int64_t chunk);

}  // namespace cotune::kernels::cuda
