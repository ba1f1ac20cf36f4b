// 8-bit AdamW (bitsandbytes' blockwise scheme): one CUDA block of 256 threads per quantization block of 256
// elements. Each thread dequantizes its two moments, does the fp32 AdamW update in the CPU reference's order,
// then the block finds the new absmax of each moment (max is exact, so deterministic) and requantizes to the
// nearest code (torch.bucketize over the code midpoints, as the CPU reference).
#include <cmath>

#include <cstdint>

#include <cuda_bf16.h>

#include "kernels/cuda/adamw8bit_launch.h"
#include "kernels/cuda/context.h"

namespace cotune::kernels::cuda {

namespace {

constexpr int kBlock = 256;


// Number of midpoints strictly below v (upper bound of mid < v over the ascending array).
__device__ int bucketize(float v, const float* mid) {
  int lo = 0, hi = 255;
  while (lo < hi) {
    const int m = (lo + hi) >> 1;
    if (mid[m] < v) lo = m + 1;
    else hi = m;
  }
  return lo;
}

__device__ float block_max(float x, float* red) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = x;
  __syncthreads();
  float r = red[0];
  for (int i = 1; i < kBlock / 32; ++i) r = fmaxf(r, red[i]);
  __syncthreads();
  return r;
}

// Block b (256 elements) of one tensor; the caller's block has filled mid1/mid2 (shared code midpoints).
__device__ __forceinline__ void adamw8bit_block(float* __restrict__ p, const float* __restrict__ g,
                                                uint16_t* __restrict__ p16, uint8_t* __restrict__ q1,
                                                float* __restrict__ absmax1, uint8_t* __restrict__ q2,
                                                float* __restrict__ absmax2, int64_t n, int64_t b,
                                                const Adam8bitCodes& codes, const Adam8bitScalars& s,
                                                const float* grad_scale, const float* mid1, const float* mid2,
                                                float* red) {
  const int64_t i = b * kBlock + threadIdx.x;
  const bool live = i < n;
  float mi = 0.0f, vi = 0.0f;
  if (live) {
    const float s1 = __fmul_rn(codes.signed_code[q1[i]], absmax1[b]);
    const float s2 = __fmul_rn(codes.unsigned_code[q2[i]], absmax2[b]);
    const float gi = grad_scale ? __fmul_rn(g[i], *grad_scale) : g[i];
    mi = __fmaf_rn(gi, s.one_minus_b1, __fmul_rn(s1, s.b1));
    vi = __fmaf_rn(__fmul_rn(s.one_minus_b2, gi), gi, __fmul_rn(s2, s.b2));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.c2), s.eps);
    const float pi = s.decays ? __fmul_rn(p[i], s.decay) : p[i];
    const float pn = __fadd_rn(pi, __fdiv_rn(__fmul_rn(s.neg_lr_c1, mi), denom));
    p[i] = pn;
    if (p16) p16[i] = __bfloat16_as_ushort(__float2bfloat16_rn(pn));
  }
  const float am1 = block_max(live ? fabsf(mi) : 0.0f, red);
  const float am2 = block_max(live ? fabsf(vi) : 0.0f, red);
  if (threadIdx.x == 0) {
    absmax1[b] = am1;
    absmax2[b] = am2;
  }
  if (live) {
    const float inv1 = __fdiv_rn(1.0f, fmaxf(am1, 1e-38f));
    const float inv2 = __fdiv_rn(1.0f, fmaxf(am2, 1e-38f));
    q1[i] = static_cast<uint8_t>(bucketize(fminf(fmaxf(__fmul_rn(mi, inv1), -1.0f), 1.0f), mid1));
    q2[i] = static_cast<uint8_t>(bucketize(fminf(fmaxf(__fmul_rn(vi, inv2), -1.0f), 1.0f), mid2));
  }
}

__device__ __forceinline__ void fill_midpoints(const Adam8bitCodes& codes, float* mid1, float* mid2) {
  for (int i = threadIdx.x; i < 255; i += kBlock) {
    mid1[i] = __fdiv_rn(__fadd_rn(codes.signed_code[i], codes.signed_code[i + 1]), 2.0f);
    mid2[i] = __fdiv_rn(__fadd_rn(codes.unsigned_code[i], codes.unsigned_code[i + 1]), 2.0f);
  }
  __syncthreads();
}

__global__ void __launch_bounds__(kBlock) adamw8bit_kernel(float* __restrict__ p, const float* __restrict__ g,
                                                           uint8_t* __restrict__ q1, float* __restrict__ absmax1,
                                                           uint8_t* __restrict__ q2, float* __restrict__ absmax2,
                                                           int64_t n, Adam8bitCodes codes, Adam8bitScalars s, const float* grad_scale,
                                                           const int32_t* skip) {
  if (skip && *skip) return;
  __shared__ float mid1[255], mid2[255], red[kBlock / 32];
  fill_midpoints(codes, mid1, mid2);
  adamw8bit_block(p, g, nullptr, q1, absmax1, q2, absmax2, n, blockIdx.x, codes, s, grad_scale, mid1, mid2, red);
}

// One CUDA block per 256-element block of any tensor of the table (found by binary search over block_start).
__global__ void __launch_bounds__(kBlock) adamw8bit_multi_kernel(const Adam8bitTensor* __restrict__ table,
                                                                 const int64_t* __restrict__ block_start, int count,
                                                                 Adam8bitCodes codes, Adam8bitScalars s,
                                                                 const float* grad_scale, const int32_t* skip) {
  if (skip && *skip) return;
  __shared__ float mid1[255], mid2[255], red[kBlock / 32];
  fill_midpoints(codes, mid1, mid2);
  const int64_t gb = blockIdx.x;
  int lo = 0, hi = count - 1;
  while (lo < hi) {  // the last t with block_start[t] <= gb
    const int m = (lo + hi + 1) >> 1;
    if (block_start[m] <= gb) lo = m;
    else hi = m - 1;
  }
  const Adam8bitTensor t = table[lo];
  adamw8bit_block(t.p, t.g, t.p16, t.q1, t.absmax1, t.q2, t.absmax2, t.n, gb - block_start[lo], codes, s, grad_scale,
                  mid1, mid2, red);
}

}  // namespace

void launch_adamw8bit(float* p, const float* g, uint8_t* q1, float* absmax1, uint8_t* q2, float* absmax2, int64_t n,
                      const Adam8bitCodes& codes, const Adam8bitScalars& s, const float* grad_scale,
                      const int32_t* skip) {
  if (n == 0) return;
  const int64_t nb = (n + kBlock - 1) / kBlock;
  adamw8bit_kernel<<<static_cast<unsigned>(nb), kBlock, 0, stream()>>>(p, g, q1, absmax1, q2, absmax2, n, codes, s,
                                                                         grad_scale, skip);
  check_launch("adamw8bit_step");
}

void launch_adamw8bit_multi(const Adam8bitTensor* table, const int64_t* block_start, int count, int64_t total_blocks,
                            const Adam8bitCodes& codes, const Adam8bitScalars& s, const float* grad_scale,
                            const int32_t* skip) {
  if (count == 0 || total_blocks == 0) return;
  adamw8bit_multi_kernel<<<static_cast<unsigned>(total_blocks), kBlock, 0, stream()>>>(table, block_start, count, codes,
                                                                                       s, grad_scale, skip);
  check_launch("adamw8bit_step (multi-tensor)");
}

}  // namespace cotune::kernels::cuda
