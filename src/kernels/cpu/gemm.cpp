// GEMM, linear layers and the LoRA branch on the CPU (OpenBLAS sgemm; fp32).
#include <cblas.h>

#include <cstring>

#include "kernels/cpu/cpu_ops.h"

namespace cotune::kernels::cpu {

void matmul(float* out, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
            float alpha, float beta) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < M * N; ++i) out[i] = beta == 0.0f ? 0.0f : beta * out[i];
    return;
  }
  const int64_t lda = trans_a ? M : K;
  const int64_t ldb = trans_b ? K : N;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, out, static_cast<blasint>(N));
}

void gemm_strided(float* out, int64_t ldo, const float* a, int64_t lda, const float* b, int64_t ldb, int64_t M,
                  int64_t N, int64_t K, bool trans_a, bool trans_b, float alpha, float beta) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) out[i * ldo + j] = beta == 0.0f ? 0.0f : beta * out[i * ldo + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, out, static_cast<blasint>(ldo));
}

void linear_forward_residual(float* out, const float* inp, const float* weight, const float* residual,
                             const float* bias, int64_t T, int64_t IC, int64_t OC) {
  if (out != residual) std::memcpy(out, residual, static_cast<size_t>(T * OC) * sizeof(float));
  matmul(out, inp, weight, T, OC, IC, false, true, 1.0f, 1.0f);  // out += inp @ weight^T
  if (bias) {
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      float* o = out + t * OC;
      for (int64_t j = 0; j < OC; ++j) o[j] += bias[j];
    }
  }
}

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t T, int64_t IC,
                    int64_t OC) {
  // out[T,OC] = inp[T,IC] @ weight[OC,IC]^T (+ bias)
  matmul(out, inp, weight, T, OC, IC, false, true, 1.0f, 0.0f);
  if (bias) {
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      float* o = out + t * OC;
      for (int64_t j = 0; j < OC; ++j) o[j] += bias[j];
    }
  }
}

void linear_backward_input(float* dinp, const float* dout, const float* weight, int64_t T, int64_t IC, int64_t OC,
                           bool accumulate) {
  // dinp[T,IC] (+)= dout[T,OC] @ weight[OC,IC]
  matmul(dinp, dout, weight, T, IC, OC, false, false, 1.0f, accumulate ? 1.0f : 0.0f);
}

void lora_forward(float* out, float* xa, const float* inp, const float* A, const float* B, int64_t T, int64_t IC,
                  int64_t OC, int64_t R, float scale) {
  matmul(xa, inp, A, T, R, IC, false, true, 1.0f, 0.0f);    // xa[T,R] = inp @ A^T
  matmul(out, xa, B, T, OC, R, false, true, scale, 1.0f);   // out += scale * xa @ B^T
}

void lora_backward(float* dinp, float* dA, float* dB, float* g, const float* dout, const float* inp, const float* xa,
                   const float* A, const float* B, int64_t T, int64_t IC, int64_t OC, int64_t R, float scale) {
  matmul(dB, dout, xa, OC, R, T, true, false, scale, 1.0f);  // dB[OC,R] += scale * dout^T @ xa
  matmul(g, dout, B, T, R, OC, false, false, scale, 0.0f);   // g[T,R] = scale * dout @ B
  matmul(dA, g, inp, R, IC, T, true, false, 1.0f, 1.0f);     // dA[R,IC] += g^T @ inp
  if (dinp) matmul(dinp, g, A, T, IC, R, false, false, 1.0f, 1.0f);  // dinp += g @ A
}

void add(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

}  // namespace cotune::kernels::cpu
