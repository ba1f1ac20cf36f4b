// Kernels of the optimizer step (kernels/cuda/optim.h): AdamW, gradient norm / clipping / non-finite flag, scaling
// and the deterministic sum. Roundings follow the CPU references (kernels/optim.h) operation by operation; explicit
// __fmaf_rn / __fmul_rn / __fadd_rn keep nvcc from contracting where the reference rounds separately.
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "kernels/cuda/common.cuh"

namespace cotune::kernels::cuda {

namespace {

constexpr int kThreads = 256;

// ---- AdamW ------------------------------------------------------------------------------------------------

// p, g, m, v f32 [n]; grad_scale f32 [1] or null; skip i32 [1] or null. One element per thread (grid-stride).
__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, AdamWScalars s, const float* grad_scale,
                             const int32_t* skip) {
  if (skip && *skip) return;
  const float gs = grad_scale ? *grad_scale : 1.0f;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float pi = s.decays ? __fmul_rn(p[i], s.decay) : p[i];
    const float gi = grad_scale ? __fmul_rn(g[i], gs) : g[i];
    const float mi0 = m[i];
    const float diff = __fsub_rn(gi, mi0);
    const float mi = s.small_w ? __fmaf_rn(s.w, diff, mi0) : __fmaf_rn(__fsub_rn(s.w, 1.0f), diff, gi);
    const float vi = __fmaf_rn(__fmul_rn(s.one_minus_b2, gi), gi, __fmul_rn(v[i], s.b2));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
    pi = __fadd_rn(pi, __fdiv_rn(__fmul_rn(s.neg_step_size, mi), denom));
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
  }
}

// The tensor of the table holding chunk c: the last t with chunk_start[t] <= c.
__device__ __forceinline__ int find_tensor(const int64_t* chunk_start, int count, int64_t c) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int m = (lo + hi + 1) >> 1;
    if (chunk_start[m] <= c) lo = m;
    else hi = m - 1;
  }
  return lo;
}

// One block per chunk of kMultiChunk elements of any tensor; the per-element formula of adamw_kernel.
__global__ void __launch_bounds__(kThreads) adamw_multi_kernel(const AdamWTensor* __restrict__ table,
                                                               const int64_t* __restrict__ chunk_start, int count,
                                                               AdamWScalars s, const float* grad_scale,
                                                               const int32_t* skip) {
  if (skip && *skip) return;
  const float gs = grad_scale ? *grad_scale : 1.0f;
  const int64_t c = blockIdx.x;
  const int t_idx = find_tensor(chunk_start, count, c);
  const AdamWTensor t = table[t_idx];
  const int64_t begin = (c - chunk_start[t_idx]) * kMultiChunk;
  const int64_t end = begin + kMultiChunk < t.n ? begin + kMultiChunk : t.n;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    float pi = s.decays ? __fmul_rn(t.p[i], s.decay) : t.p[i];
    const float gi = grad_scale ? __fmul_rn(t.g[i], gs) : t.g[i];
    const float mi0 = t.m[i];
    const float diff = __fsub_rn(gi, mi0);
    const float mi = s.small_w ? __fmaf_rn(s.w, diff, mi0) : __fmaf_rn(__fsub_rn(s.w, 1.0f), diff, gi);
    const float vi = __fmaf_rn(__fmul_rn(s.one_minus_b2, gi), gi, __fmul_rn(t.v[i], s.b2));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
    pi = __fadd_rn(pi, __fdiv_rn(__fmul_rn(s.neg_step_size, mi), denom));
    t.m[i] = mi;
    t.v[i] = vi;
    t.p[i] = pi;
    if (t.p16) t.p16[i] = __bfloat16_as_ushort(__float2bfloat16_rn(pi));
  }
}

// ---- gradient norm ------------------------------------------------------------------------------------------
constexpr int kGroup = kNormGroup;

struct NormGroup {
  const float* ptr[kGroup];
  int64_t n[kGroup];
  int count;
};

// partials f64 [kNormBlocks] (of this group) = per-block sums of squares over the group's tensors.
__global__ void __launch_bounds__(kThreads) sumsq_partial_kernel(NormGroup grp, double* partials) {
  __shared__ double sh[kThreads];
  double acc = 0.0;
  for (int t = 0; t < grp.count; ++t) {
    const float* x = grp.ptr[t];
    const int64_t n = grp.n[t];
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const double xi = x[i];
      acc += xi * xi;
    }
  }
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = sh[0];
}

// partials f64 [gridDim.x]: block j sums chunks j, j + gridDim.x, ... (fixed assignment and order).
__global__ void __launch_bounds__(kThreads) sumsq_multi_kernel(const NormTensor* __restrict__ table,
                                                               const int64_t* __restrict__ chunk_start, int count,
                                                               int64_t total_chunks, double* partials) {
  __shared__ double sh[kThreads];
  double acc = 0.0;
  for (int64_t c = blockIdx.x; c < total_chunks; c += gridDim.x) {
    const int t_idx = find_tensor(chunk_start, count, c);
    const NormTensor t = table[t_idx];
    const int64_t begin = (c - chunk_start[t_idx]) * kMultiChunk;
    const int64_t end = begin + kMultiChunk < t.n ? begin + kMultiChunk : t.n;
    for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
      const double xi = t.x[i];
      acc += xi * xi;
    }
  }
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = sh[0];
}

// One block: total = fixed-order sum of the partials; writes norm, coef and the non-finite flag.
__global__ void __launch_bounds__(kThreads) norm_finish_kernel(const double* partials, int64_t count, float* norm,
                                                               float* coef, int32_t* nonfinite, float max_norm,
                                                               bool clip) {
  __shared__ double sh[kThreads];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const float total = static_cast<float>(sqrt(sh[0]));
    *norm = total;
    if (coef) {
      float c = 1.0f;
      if (clip) {
        const float denom = __fadd_rn(total, 1e-6f);
        c = __fmul_rn(__fdiv_rn(1.0f, denom), max_norm);
        c = c > 1.0f ? 1.0f : c;  // NaN stays NaN
      }
      *coef = c;
    }
    if (nonfinite) *nonfinite = isfinite(total) ? 0 : 1;
  }
}

// out[0] = sum of x[n]; one block of kThreads, per-thread strided fp64 sums, fixed tree.
template <typename T>
__global__ void __launch_bounds__(kThreads) reduce_sum_kernel(float* out, const T* x, int64_t n) {
  __shared__ double sh[kThreads];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += static_cast<double>(x[i]);
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = static_cast<float>(sh[0]);
}

__global__ void scale_by_kernel(float* x, int64_t n, const float* s) {
  const float f = *s;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = __fmul_rn(x[i], f);
}

unsigned capped_blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  const int64_t cap = static_cast<int64_t>(sm_count()) * 8;
  return static_cast<unsigned>(b < 1 ? 1 : (b > cap ? cap : b));
}

}  // namespace

void launch_adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s,
                  const float* grad_scale, const int32_t* skip) {
  if (n == 0) return;
  adamw_kernel<<<capped_blocks(n), kThreads, 0, stream()>>>(p, g, m, v, n, s, grad_scale, skip);
  check_launch("adamw_step");
}

void launch_adamw_multi(const AdamWTensor* table, const int64_t* chunk_start, int count, int64_t total_chunks,
                        const AdamWScalars& s, const float* grad_scale, const int32_t* skip) {
  if (count == 0 || total_chunks == 0) return;
  adamw_multi_kernel<<<static_cast<unsigned>(total_chunks), kThreads, 0, stream()>>>(table, chunk_start, count, s,
                                                                                     grad_scale, skip);
  check_launch("adamw_step (multi-tensor)");
}

void launch_sumsq_multi(const NormTensor* table, const int64_t* chunk_start, int count, int64_t total_chunks,
                        double* partials) {
  sumsq_multi_kernel<<<kNormBlocks, kThreads, 0, stream()>>>(table, chunk_start, count, total_chunks, partials);
  check_launch("grad norm (multi-tensor partials)");
}

void launch_sumsq_partials(const float* const* ptrs, const int64_t* sizes, int count, double* partials) {
  NormGroup grp{};
  grp.count = count < kGroup ? count : kGroup;
  for (int t = 0; t < grp.count; ++t) {
    grp.ptr[t] = ptrs[t];
    grp.n[t] = sizes[t];
  }
  sumsq_partial_kernel<<<kNormBlocks, kThreads, 0, stream()>>>(grp, partials);
  check_launch("grad norm (partials)");
}

void launch_norm_finish(const double* partials, int64_t count, float* norm, float* coef, int32_t* nonfinite,
                        float max_norm, bool clip) {
  norm_finish_kernel<<<1, kThreads, 0, stream()>>>(partials, count, norm, coef, nonfinite, max_norm, clip);
  check_launch("grad norm (finish)");
}

void launch_scale_by(float* x, int64_t n, const float* s) {
  if (n == 0) return;
  scale_by_kernel<<<capped_blocks(n), kThreads, 0, stream()>>>(x, n, s);
  check_launch("scale_by");
}

void launch_reduce_sum(float* out, const void* x, bool is_i32, int64_t n) {
  if (is_i32) reduce_sum_kernel<int32_t><<<1, kThreads, 0, stream()>>>(out, static_cast<const int32_t*>(x), n);
  else reduce_sum_kernel<float><<<1, kThreads, 0, stream()>>>(out, static_cast<const float*>(x), n);
  check_launch("reduce_sum");
}

}  // namespace cotune::kernels::cuda
