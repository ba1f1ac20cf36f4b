// Kernels of train_ops.h: AdamW, gradient norm / clipping / non-finite flag, NF4 dequantization.
// Roundings follow the CPU references (kernels/optim.h, kernels/quant.h) operation by operation; explicit
// __fmaf_rn / __fmul_rn / __fadd_rn keep nvcc from contracting where the reference rounds separately.
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/tuning.h"

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

// ---- NF4 -----------------------------------------------------------------------------------------------------
__device__ __forceinline__ float nf4_absmax(const uint8_t* qabsmax, const float* absmax_f32, const float* nested_absmax,
                                            const float* nested_map, float offset, int64_t b, int64_t nested_bs) {
  if (!qabsmax) return absmax_f32[b];
  return __fadd_rn(__fmul_rn(nested_map[qabsmax[b]], nested_absmax[b / nested_bs]), offset);
}

// The 8 outputs from element i0 on (fewer at the end): packed u8 [ceil(n/2)] (element 2i high nibble), absmax
// (u8 codes + nested, or f32), code table sc[16] -> out (bf16 or f32).
template <typename OUT>
__device__ __forceinline__ void nf4_dequant8(OUT* __restrict__ out, const uint8_t* __restrict__ packed, int64_t n,
                                             int64_t blocksize, const float* sc, const uint8_t* qabsmax,
                                             const float* absmax_f32, const float* nested_absmax,
                                             const float* nested_map, float offset, int64_t nested_bs, int64_t i0) {
  if (i0 + 8 <= n && blocksize % 8 == 0) {
    const float am = nf4_absmax(qabsmax, absmax_f32, nested_absmax, nested_map, offset, i0 / blocksize, nested_bs);
    uint32_t bytes;
    if ((reinterpret_cast<uintptr_t>(packed + i0 / 2) & 3u) == 0) {
      bytes = *reinterpret_cast<const uint32_t*>(packed + i0 / 2);
    } else {
      bytes = 0;
      for (int j = 0; j < 4; ++j) bytes |= static_cast<uint32_t>(packed[i0 / 2 + j]) << (8 * j);
    }
    float f[8];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t byte = (bytes >> (8 * j)) & 0xffu;
      f[2 * j] = __fmul_rn(sc[byte >> 4], am);
      f[2 * j + 1] = __fmul_rn(sc[byte & 0xfu], am);
    }
    if constexpr (std::is_same_v<OUT, bf16>) {
      if ((reinterpret_cast<uintptr_t>(out + i0) & 15u) == 0) {
        store8(out + i0, f);
        return;
      }
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) out[i0 + j] = from_f<OUT>(f[j]);
    return;
  }
  for (int64_t i = i0; i < n && i < i0 + 8; ++i) {
    const float am = nf4_absmax(qabsmax, absmax_f32, nested_absmax, nested_map, offset, i / blocksize, nested_bs);
    const uint8_t byte = packed[i / 2];
    const int c = (i % 2 == 0) ? (byte >> 4) : (byte & 0x0f);
    out[i] = from_f<OUT>(__fmul_rn(sc[c], am));
  }
}

// One thread per 8 outputs; the code table sits in shared memory.
template <typename OUT>
__global__ void nf4_dequant_kernel(OUT* __restrict__ out, const uint8_t* __restrict__ packed, int64_t n,
                                   int64_t blocksize, const float* __restrict__ code, const uint8_t* qabsmax,
                                   const float* absmax_f32, const float* nested_absmax, const float* nested_map,
                                   float offset, int64_t nested_bs) {
  __shared__ float sc[16];
  if (threadIdx.x < 16) sc[threadIdx.x] = code[threadIdx.x];
  __syncthreads();
  const int64_t i0 = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i0 >= n) return;
  nf4_dequant8(out, packed, n, blocksize, sc, qabsmax, absmax_f32, nested_absmax, nested_map, offset, nested_bs, i0);
}

struct Nf4Batch {
  Nf4Job job[kNf4BatchMax];
  int64_t start[kNf4BatchMax + 1];  // first 8-output group of each job
  int count;
};

// Several weights: thread g handles group g of the concatenation (its job found by a scan over <= 8 starts);
// the code tables are read through the cache (a block may span two weights).
__global__ void nf4_dequant_batch_kernel(Nf4Batch b) {
  const int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= b.start[b.count]) return;
  int t = 0;
  while (t + 1 < b.count && b.start[t + 1] <= g) ++t;
  const Nf4Job& j = b.job[t];
  nf4_dequant8(static_cast<bf16*>(j.out), j.packed, j.n, j.blocksize, j.code, j.qabsmax, j.absmax_f32,
               j.nested_absmax, j.nested_map, j.offset, j.nested_bs, (g - b.start[t]) * 8);
}

// The batch kernel v2: each warp takes 32 consecutive groups of 32 outputs (16 packed bytes each) per round,
// kNf4Unroll rounds (loads issued first): lane l loads group l with one 16-byte load and decodes its absmax once,
// the warp stages the codes and absmax in shared memory, and store k of lane l writes the 8 outputs of packed
// word 32k + l (16 bytes), so that each store instruction of the warp covers 512 contiguous bytes. The job is
// found once per CTA (a CTA never spans two weights). Needs packed and out 16-byte aligned, blocksize % 32 == 0
// and n / 32 < 2^31; the last n % 32 outputs of a weight go element by element. Same formulas as nf4_dequant8:
// bit-identical.
constexpr int kNf4Threads = 256;
constexpr int kNf4Unroll = 2;  // 4: 43 us instead of 40 on H200 (8 blocks an SM: the same)
constexpr int64_t kNf4TileGroups = int64_t{kNf4Threads} * kNf4Unroll;  // groups of 32 outputs per CTA

struct Nf4BatchV2 {
  Nf4Job job[kNf4BatchMax];
  uint32_t block_start[kNf4BatchMax + 1];  // first CTA of each job
  int count;
};

__global__ void __launch_bounds__(kNf4Threads) nf4_dequant_batch_v2_kernel(const __grid_constant__ Nf4BatchV2 b) {
  __shared__ float sc[16];
  __shared__ uint4 sq[kNf4Threads / 32][kNf4Unroll][32];
  __shared__ float sam[kNf4Threads / 32][kNf4Unroll][32];
  int t = 0;
  while (t + 1 < b.count && b.block_start[t + 1] <= blockIdx.x) ++t;
  const Nf4Job& j = b.job[t];
  if (threadIdx.x < 16) sc[threadIdx.x] = j.code[threadIdx.x];
  const uint32_t full = static_cast<uint32_t>(j.n / 32);  // complete groups
  const uint32_t per_block = static_cast<uint32_t>(j.blocksize / 32);
  const uint32_t nested_bs = static_cast<uint32_t>(j.nested_bs);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // First group of this warp's round u: w0 + 32 u.
  const uint32_t w0 = (blockIdx.x - b.block_start[t]) * static_cast<uint32_t>(kNf4TileGroups) +
                      static_cast<uint32_t>(warp) * 32 * kNf4Unroll;
#pragma unroll
  for (int u = 0; u < kNf4Unroll; ++u) {
    const uint32_t g = w0 + 32 * u + lane;
    if (g < full) {
      sq[warp][u][lane] = __ldg(reinterpret_cast<const uint4*>(j.packed) + g);
      const uint32_t blk = g / per_block;
      sam[warp][u][lane] = j.qabsmax ? __fadd_rn(__fmul_rn(__ldg(j.nested_map + __ldg(j.qabsmax + blk)),
                                                           __ldg(j.nested_absmax + blk / nested_bs)),
                                                 j.offset)
                                     : __ldg(j.absmax_f32 + blk);
    }
  }
  __syncthreads();  // sc, and the warp's staging
  bf16* out = static_cast<bf16*>(j.out);
#pragma unroll
  for (int u = 0; u < kNf4Unroll; ++u) {
    const uint32_t* words = reinterpret_cast<const uint32_t*>(&sq[warp][u][0]);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int c = 32 * k + lane;  // packed word of the round: group c / 4, outputs 8 (c % 4) ... of it
      const uint32_t g = w0 + 32 * u + c / 4;
      if (g < full) {
        const uint32_t w = words[c];
        const float am = sam[warp][u][c / 4];
        uint4 o;
        uint32_t* h = reinterpret_cast<uint32_t*>(&o);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const uint32_t byte = (w >> (8 * e)) & 0xffu;
          const __nv_bfloat162 v =
              __floats2bfloat162_rn(__fmul_rn(sc[byte >> 4], am), __fmul_rn(sc[byte & 0xfu], am));
          h[e] = *reinterpret_cast<const uint32_t*>(&v);
        }
        *reinterpret_cast<uint4*>(out + (static_cast<int64_t>(w0 + 32 * u) * 32 + 8 * c)) = o;
      }
    }
    const uint32_t g = w0 + 32 * u + lane;
    if (g == full && j.n % 32 != 0) {
      for (int64_t i = static_cast<int64_t>(full) * 32; i < j.n; ++i) {
        const float a = nf4_absmax(j.qabsmax, j.absmax_f32, j.nested_absmax, j.nested_map, j.offset,
                                   i / j.blocksize, j.nested_bs);
        const uint8_t byte = j.packed[i / 2];
        const int cd = (i % 2 == 0) ? (byte >> 4) : (byte & 0x0f);
        out[i] = from_f<bf16>(__fmul_rn(sc[cd], a));
      }
    }
  }
}

// Tuning::nf4_kernel = v1 (key nf4_kernel) selects the previous batch kernel (benchmarks).
bool nf4_use_v1() { return kernels::tuning().nf4_kernel == Tuning::Generation::v1; }

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

void launch_nf4_dequantize_batch(const Nf4Job* jobs, int count) {
  if (count <= 0) return;
  Nf4Batch b{};
  b.count = count < kNf4BatchMax ? count : kNf4BatchMax;
  b.start[0] = 0;
  for (int t = 0; t < b.count; ++t) {
    b.job[t] = jobs[t];
    b.start[t + 1] = b.start[t] + (jobs[t].n + 7) / 8;
  }
  if (b.start[b.count] == 0) return;
  bool v2 = !nf4_use_v1();
  Nf4BatchV2 b2{};
  b2.count = b.count;
  int64_t blocks = 0;
  for (int t = 0; t < b.count && v2; ++t) {
    const Nf4Job& j = b.job[t];
    v2 = aligned16(j.out) && aligned16(j.packed) && j.blocksize % 32 == 0 && j.n / 32 < (int64_t{1} << 31) &&
         (j.qabsmax ? j.nested_bs > 0 && j.nested_bs < (int64_t{1} << 31) : true);
    b2.job[t] = j;
    b2.block_start[t] = static_cast<uint32_t>(blocks);
    blocks += (j.n + 32 * kNf4TileGroups - 1) / (32 * kNf4TileGroups);
  }
  if (v2 && blocks < (int64_t{1} << 31)) {
    b2.block_start[b.count] = static_cast<uint32_t>(blocks);
    nf4_dequant_batch_v2_kernel<<<static_cast<unsigned>(blocks), kNf4Threads, 0, stream()>>>(b2);
    check_launch("nf4_dequantize (batch)");
    return;
  }
  nf4_dequant_batch_kernel<<<blocks_for(b.start[b.count], kThreads), kThreads, 0, stream()>>>(b);
  check_launch("nf4_dequantize (batch)");
}

void launch_nf4_dequantize(void* out, bool out_bf16, const uint8_t* packed, int64_t n, int64_t blocksize,
                           const float* code, const uint8_t* qabsmax, const float* absmax_f32,
                           const float* nested_absmax, const float* nested_map, float offset, int64_t nested_bs) {
  if (n == 0) return;
  const unsigned blocks = blocks_for((n + 7) / 8, kThreads);
  if (out_bf16)
    nf4_dequant_kernel<bf16><<<blocks, kThreads, 0, stream()>>>(static_cast<bf16*>(out), packed, n, blocksize, code,
                                                               qabsmax, absmax_f32, nested_absmax, nested_map, offset,
                                                               nested_bs);
  else
    nf4_dequant_kernel<float><<<blocks, kThreads, 0, stream()>>>(static_cast<float*>(out), packed, n, blocksize, code,
                                                                qabsmax, absmax_f32, nested_absmax, nested_map, offset,
                                                                nested_bs);
  check_launch("nf4_dequantize");
}

}  // namespace cotune::kernels::cuda
