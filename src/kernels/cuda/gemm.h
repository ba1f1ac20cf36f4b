// The raw-pointer LoRA GEMMs of gemm.cpp (cuBLASLt, bf16 operands, fp32 accumulation): what ops.h's column-block
// forms and lora_forward / lora_backward launch, and what the kernel benchmarks time directly.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace cotune::kernels::cuda {

// ---- LoRA on bf16 operands, raw-pointer forms (gemm.cpp) -----------------------------------------------------
// What ops.h's lora_xa / lora_up / lora_grad_b / lora_grad_a (ColumnBlock forms) and lora_forward / lora_backward
// (on bf16 copies of A/B) launch. The composition of these four is lora_forward / lora_backward. A and B are bf16 with contiguous rows; xa and g are bf16 [T, n] matrices with row stride
// ld_xa / ld_g, so several projections that share an input can keep their xa / g side by side and use one GEMM
// for x @ [A_1; A_2; ...]^T and for the stacked dA / dinp (N = the sum of their ranks).
//   lora_xa:     xa[T,N] = inp[T,IC] @ A[N,IC]^T
//   lora_up:     out[T,OC] += scale * xa[T,R] @ B[OC,R]^T  (out = ..., when not accumulate)
//   lora_grad_b: dB[OC,R] (f32) += scale * dout[T,OC]^T @ xa[T,R];  g[T,R] = scale * dout @ B
//   lora_grad_a: dA[N,IC] (f32) += g[T,N]^T @ inp;  dinp[T,IC] += g @ A[N,IC] (skipped when dinp is undefined;
//                dinp = ..., when not accumulate_dinp)
void lora_xa(void* xa, int64_t ld_xa, const Tensor& inp, const void* A, int64_t N);
void lora_up(const Tensor& out, const void* xa, int64_t ld_xa, const void* B, int64_t R, float scale,
             bool accumulate = true);
void lora_grad_b(float* dB, void* g, int64_t ld_g, const Tensor& dout, const void* xa, int64_t ld_xa, const void* B,
                 int64_t R, float scale);
void lora_grad_a(float* dA, const Tensor& dinp, const void* g, int64_t ld_g, int64_t N, const Tensor& inp,
                 const void* A, bool accumulate_dinp = true);

}  // namespace cotune::kernels::cuda
