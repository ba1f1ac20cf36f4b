// CUDA twins of kernels/cpu/decode.cpp: KV-cache writes and attention of new tokens against the cache
// (bf16 storage, fp32 math). Decode attention reads one query row against up to N cached keys: each warp of a
// block walks a strided share of the keys with an online softmax, then the warps' partial results are merged.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/decode_launch.h"

namespace cotune::kernels::cuda {

namespace {

// One block per token; threads copy KV*D elements of k and v.
__global__ void kv_cache_write_kernel(bf16* k_cache, bf16* v_cache, const bf16* k, const bf16* v,
                                      const int32_t* slot, const int32_t* pos, const KvPaging pg, int64_t KVD) {
  const int64_t t = blockIdx.x;
  const int64_t dst = kv_row(pg, slot[t], pos[t]) * KVD;
  for (int64_t i = threadIdx.x; i < KVD; i += blockDim.x) {
    k_cache[dst + i] = k[t * KVD + i];
    v_cache[dst + i] = v[t * KVD + i];
  }
}

constexpr int kWarps = 4;
constexpr int kMaxPerLane = 8;  // D <= 256

// grid (T, H), block 32 * kWarps. Lane l of a warp owns elements d = l + 32 * i of the head dim.
__global__ void cached_attention_kernel(bf16* out, const bf16* q, const bf16* k_cache, const bf16* v_cache,
                                        const int32_t* slot, const int32_t* pos, const KvPaging pg, int64_t H,
                                        int64_t KV, int64_t D, float scale, int64_t window) {
  const int64_t t = blockIdx.x, h = blockIdx.y;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int per_lane = static_cast<int>(D / 32);
  const int64_t kvh = h / (H / KV);
  const int64_t n = static_cast<int64_t>(pos[t]) + 1;
  const int32_t s = slot[t];
  const int64_t row = KV * D;  // stride between cache rows
  float qr[kMaxPerLane], acc[kMaxPerLane];
  for (int i = 0; i < per_lane; ++i) {
    qr[i] = to_f(q[(t * H + h) * D + lane + 32 * i]) * scale;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int64_t first = window > 0 && n > window ? n - window : 0;  // sliding window: the `window` newest positions
  for (int64_t j = first + warp; j < n; j += kWarps) {
    const int64_t at = kv_row(pg, s, j) * row + kvh * D;
    const bf16* kj = k_cache + at;
    float dot = 0.0f;
    for (int i = 0; i < per_lane; ++i) dot += qr[i] * to_f(kj[lane + 32 * i]);
    dot = warp_sum(dot);
    const float m_new = fmaxf(m, dot);
    const float corr = __expf(m - m_new), p = __expf(dot - m_new);
    l = l * corr + p;
    const bf16* vj = v_cache + at;
    for (int i = 0; i < per_lane; ++i) acc[i] = acc[i] * corr + p * to_f(vj[lane + 32 * i]);
    m = m_new;
  }
  __shared__ float s_m[kWarps], s_l[kWarps];
  __shared__ float s_acc[kWarps][256];
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
  for (int i = 0; i < per_lane; ++i) s_acc[warp][lane + 32 * i] = acc[i];
  __syncthreads();
  if (warp != 0) return;
  float M = -INFINITY;
  for (int w = 0; w < kWarps; ++w) M = fmaxf(M, s_m[w]);
  float L = 0.0f, f[kWarps];
  for (int w = 0; w < kWarps; ++w) {
    f[w] = s_m[w] == -INFINITY ? 0.0f : __expf(s_m[w] - M);
    L += s_l[w] * f[w];
  }
  const float inv = 1.0f / L;
  for (int i = 0; i < per_lane; ++i) {
    const int d = lane + 32 * i;
    float o = 0.0f;
    for (int w = 0; w < kWarps; ++w) o += s_acc[w][d] * f[w];
    out[(t * H + h) * D + d] = __float2bfloat16_rn(o * inv);
  }
}


// ---- small-T linear layers (decode): one warp per output row ---------------------------------------------
constexpr int kGemvMaxT = 8;
constexpr int kGemvWarps = 8;  // rows a block

template <typename OUT>
__device__ __forceinline__ void gemv_store(OUT* out, const float* acc, const bf16* bias, int T, int64_t n, int64_t N,
                                           int lane) {
  const float b = bias ? to_f(bias[n]) : 0.0f;
#pragma unroll
  for (int t = 0; t < kGemvMaxT; ++t) {
    if (t >= T) break;
    const float v = warp_sum(acc[t]);
    if (lane == 0) out[t * N + n] = from_f<OUT>(v + b);
  }
}

// out[T, N] = in[T, K] @ w[N, K]^T (+ bias). K % 8 == 0; 16-byte aligned rows. Lane l reads 8 weights at
// k = 8 l + 256 j; four 16-byte loads are issued before they are used.
template <typename OUT>
__global__ void __launch_bounds__(32 * kGemvWarps) gemv_kernel(OUT* __restrict__ out, const bf16* __restrict__ in,
                                                               const bf16* __restrict__ w,
                                                               const bf16* __restrict__ bias, int T, int64_t N,
                                                               int64_t K) {
  const int lane = threadIdx.x % 32;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  if (n >= N) return;
  const bf16* wr = w + n * K;
  float acc[kGemvMaxT];
#pragma unroll
  for (int t = 0; t < kGemvMaxT; ++t) acc[t] = 0.0f;
  for (int64_t k0 = lane * 8; k0 < K; k0 += 4 * 256) {
    uint4 wv[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t k = k0 + u * 256;
      if (k < K) wv[u] = __ldcs(reinterpret_cast<const uint4*>(wr + k));
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t k = k0 + u * 256;
      if (k >= K) break;
      float wf[8];
      const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&wv[u]);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f2 = __bfloat1622float2(h[i]);
        wf[2 * i] = f2.x;
        wf[2 * i + 1] = f2.y;
      }
#pragma unroll
      for (int t = 0; t < kGemvMaxT; ++t) {
        if (t >= T) break;
        float xf[8];
        load8(in + t * K + k, xf);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[t] = fmaf(wf[i], xf[i], acc[t]);
      }
    }
  }
  gemv_store(out, acc, bias, T, n, N, lane);
}

__device__ __forceinline__ float nf4_scale(const uint8_t* qabsmax, const float* absmax_f32, const float* nested_absmax,
                                           const float* nested_map, float offset, int64_t b, int64_t nested_bs) {
  if (!qabsmax) return absmax_f32[b];
  return __fadd_rn(__fmul_rn(nested_map[qabsmax[b]], nested_absmax[b / nested_bs]), offset);
}

// NF4 twin of gemv_kernel: the weight is dequantized in registers (as nf4_dequantize does, rounded to bf16).
// Lane l reads 16 packed bytes = 32 weights at k = 32 l + 1024 j. K % 32 == 0, blocksize % 32 == 0.
template <typename OUT>
__global__ void __launch_bounds__(32 * kGemvWarps) nf4_gemv_kernel(
    OUT* __restrict__ out, const bf16* __restrict__ in, const uint8_t* __restrict__ packed, const bf16* __restrict__ bias,
    int T, int64_t N, int64_t K, int64_t blocksize, const float* __restrict__ code, const uint8_t* qabsmax,
    const float* absmax_f32, const float* nested_absmax, const float* nested_map, float offset, int64_t nested_bs) {
  __shared__ float sc[16];
  if (threadIdx.x < 16) sc[threadIdx.x] = code[threadIdx.x];
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  if (n >= N) return;
  float acc[kGemvMaxT];
#pragma unroll
  for (int t = 0; t < kGemvMaxT; ++t) acc[t] = 0.0f;
  for (int64_t k0 = lane * 32; k0 < K; k0 += 2 * 1024) {
    uint4 pv[2];
    float am[2];
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int64_t k = k0 + u * 1024;
      if (k < K) {
        const int64_t i0 = n * K + k;
        pv[u] = __ldcs(reinterpret_cast<const uint4*>(packed + i0 / 2));
        am[u] = nf4_scale(qabsmax, absmax_f32, nested_absmax, nested_map, offset, i0 / blocksize, nested_bs);
      }
    }
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int64_t k = k0 + u * 1024;
      if (k >= K) break;
      const uint32_t* words = reinterpret_cast<const uint32_t*>(&pv[u]);
#pragma unroll
      for (int c = 0; c < 4; ++c) {  // 8 weights a word
        float wf[8];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const uint32_t byte = (words[c] >> (8 * j)) & 0xffu;
          wf[2 * j] = round_bf(__fmul_rn(sc[byte >> 4], am[u]));
          wf[2 * j + 1] = round_bf(__fmul_rn(sc[byte & 0xfu], am[u]));
        }
#pragma unroll
        for (int t = 0; t < kGemvMaxT; ++t) {
          if (t >= T) break;
          float xf[8];
          load8(in + t * K + k + 8 * c, xf);
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[t] = fmaf(wf[i], xf[i], acc[t]);
        }
      }
    }
  }
  gemv_store(out, acc, bias, T, n, N, lane);
}

// ---- greedy selection on the device ---------------------------------------------------------------------
constexpr int kArgmaxBlocks = 256, kArgmaxThreads = 256;

// (v, i) beats (bv, bi): larger value, or the same value at a lower index (NaN never wins).
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

__device__ __forceinline__ void block_argmax(float& v, int& i) {
  __shared__ float sv[32];
  __shared__ int si[32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (better(ov, oi, v, i)) { v = ov; i = oi; }
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  if (lane == 0) { sv[warp] = v; si[warp] = i; }
  __syncthreads();
  if (warp == 0) {
    v = lane < nw ? sv[lane] : -INFINITY;
    i = lane < nw ? si[lane] : 0x7fffffff;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, v, o);
      const int oi = __shfl_xor_sync(0xffffffffu, i, o);
      if (better(ov, oi, v, i)) { v = ov; i = oi; }
    }
  }
}

__global__ void argmax_partial_kernel(const float* __restrict__ x, int64_t V, float* pv, int* pi) {
  float v = -INFINITY;
  int i = 0x7fffffff;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < V;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    if (better(x[j], static_cast<int>(j), v, i)) { v = x[j]; i = static_cast<int>(j); }
  block_argmax(v, i);
  if (threadIdx.x == 0) { pv[blockIdx.x] = v; pi[blockIdx.x] = i; }
}

__global__ void argmax_finish_kernel(const float* pv, const int* pi, int32_t* ids, int32_t* pos, int32_t* tokens,
                                     int32_t* count) {
  float v = pv[threadIdx.x];
  int i = pi[threadIdx.x];
  block_argmax(v, i);
  if (threadIdx.x == 0) {
    if (i == 0x7fffffff) i = 0;  // every logit NaN
    ids[0] = i;
    tokens[count[0]] = i;
    count[0] += 1;
    pos[0] += 1;
  }
}

}  // namespace

void launch_gemv(void* out, bool out_f32, const void* in, const void* w, const void* bias, int64_t T, int64_t N,
                 int64_t K) {
  if (T == 0 || N == 0) return;
  const unsigned grid = static_cast<unsigned>((N + kGemvWarps - 1) / kGemvWarps);
  if (out_f32)
    gemv_kernel<float><<<grid, 32 * kGemvWarps, 0, stream()>>>(static_cast<float*>(out), static_cast<const bf16*>(in),
                                                               static_cast<const bf16*>(w),
                                                               static_cast<const bf16*>(bias), static_cast<int>(T), N, K);
  else
    gemv_kernel<bf16><<<grid, 32 * kGemvWarps, 0, stream()>>>(static_cast<bf16*>(out), static_cast<const bf16*>(in),
                                                              static_cast<const bf16*>(w),
                                                              static_cast<const bf16*>(bias), static_cast<int>(T), N, K);
  check_launch("gemv");
}

void launch_nf4_gemv(void* out, const void* in, const uint8_t* packed, const void* bias, int64_t T, int64_t N,
                     int64_t K, int64_t blocksize, const float* code, const uint8_t* qabsmax, const float* absmax_f32,
                     const float* nested_absmax, const float* nested_map, float offset, int64_t nested_bs) {
  if (T == 0 || N == 0) return;
  const unsigned grid = static_cast<unsigned>((N + kGemvWarps - 1) / kGemvWarps);
  nf4_gemv_kernel<bf16><<<grid, 32 * kGemvWarps, 0, stream()>>>(
      static_cast<bf16*>(out), static_cast<const bf16*>(in), packed, static_cast<const bf16*>(bias),
      static_cast<int>(T), N, K, blocksize, code, qabsmax, absmax_f32, nested_absmax, nested_map, offset, nested_bs);
  check_launch("nf4_gemv");
}

int argmax_partials() { return kArgmaxBlocks; }

void launch_argmax_advance(const float* logits, int64_t V, float* part_v, int32_t* part_i, int32_t* ids, int32_t* pos,
                           int32_t* tokens, int32_t* count) {
  argmax_partial_kernel<<<kArgmaxBlocks, kArgmaxThreads, 0, stream()>>>(logits, V, part_v, part_i);
  check_launch("argmax_partial");
  argmax_finish_kernel<<<1, kArgmaxBlocks, 0, stream()>>>(part_v, part_i, ids, pos, tokens, count);
  check_launch("argmax_finish");
}

void memset_async(void* p, int value, size_t bytes) { check(cudaMemsetAsync(p, value, bytes, stream()), "cudaMemsetAsync"); }

void launch_kv_cache_write(void* k_cache, void* v_cache, const void* k, const void* v, const int32_t* slot,
                           const int32_t* pos, int64_t T, const KvPaging& pg, int64_t KV, int64_t D) {
  if (T == 0) return;
  kv_cache_write_kernel<<<static_cast<unsigned>(T), 256, 0, stream()>>>(
      static_cast<bf16*>(k_cache), static_cast<bf16*>(v_cache), static_cast<const bf16*>(k),
      static_cast<const bf16*>(v), slot, pos, pg, KV * D);
  check_launch("kv_cache_write");
}

void launch_cached_attention(void* out, const void* q, const void* k_cache, const void* v_cache, const int32_t* slot,
                             const int32_t* pos, int64_t T, const KvPaging& pg, int64_t H, int64_t KV, int64_t D,
                             float scale, int64_t window) {
  if (T == 0) return;
  dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>(H));
  cached_attention_kernel<<<grid, 32 * kWarps, 0, stream()>>>(
      static_cast<bf16*>(out), static_cast<const bf16*>(q), static_cast<const bf16*>(k_cache),
      static_cast<const bf16*>(v_cache), slot, pos, pg, H, KV, D, scale, window);
  check_launch("cached_attention");
}

}  // namespace cotune::kernels::cuda
