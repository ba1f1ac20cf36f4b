// CUDA twins of kernels/cpu/decode.cpp: KV-cache writes and attention of new tokens against the cache
// (bf16 storage, fp32 math). Decode attention reads one query row against up to N cached keys: each warp of a
// block walks a strided share of the keys with an online softmax, then the warps' partial results are merged.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/decode_launch.h"

namespace cotune::kernels::cuda {

namespace {

// One block per token; threads copy KV*D elements of k and v.
__global__ void kv_cache_write_kernel(bf16* k_cache, bf16* v_cache, const bf16* k, const bf16* v,
                                      const int32_t* slot, const int32_t* pos, int64_t N, int64_t KVD) {
  const int64_t t = blockIdx.x;
  const int64_t dst = (static_cast<int64_t>(slot[t]) * N + pos[t]) * KVD;
  for (int64_t i = threadIdx.x; i < KVD; i += blockDim.x) {
    k_cache[dst + i] = k[t * KVD + i];
    v_cache[dst + i] = v[t * KVD + i];
  }
}

constexpr int kWarps = 4;
constexpr int kMaxPerLane = 8;  // D <= 256

// grid (T, H), block 32 * kWarps. Lane l of a warp owns elements d = l + 32 * i of the head dim.
__global__ void cached_attention_kernel(bf16* out, const bf16* q, const bf16* k_cache, const bf16* v_cache,
                                        const int32_t* slot, const int32_t* pos, int64_t N, int64_t H, int64_t KV,
                                        int64_t D, float scale) {
  const int64_t t = blockIdx.x, h = blockIdx.y;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int per_lane = static_cast<int>(D / 32);
  const int64_t kvh = h / (H / KV);
  const int64_t n = static_cast<int64_t>(pos[t]) + 1;
  const bf16* kb = k_cache + (static_cast<int64_t>(slot[t]) * N * KV + kvh) * D;
  const bf16* vb = v_cache + (static_cast<int64_t>(slot[t]) * N * KV + kvh) * D;
  const int64_t row = KV * D;  // stride between positions
  float qr[kMaxPerLane], acc[kMaxPerLane];
  for (int i = 0; i < per_lane; ++i) {
    qr[i] = to_f(q[(t * H + h) * D + lane + 32 * i]) * scale;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = warp; j < n; j += kWarps) {
    const bf16* kj = kb + j * row;
    float dot = 0.0f;
    for (int i = 0; i < per_lane; ++i) dot += qr[i] * to_f(kj[lane + 32 * i]);
    dot = warp_sum(dot);
    const float m_new = fmaxf(m, dot);
    const float corr = __expf(m - m_new), p = __expf(dot - m_new);
    l = l * corr + p;
    const bf16* vj = vb + j * row;
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

}  // namespace

void launch_kv_cache_write(void* k_cache, void* v_cache, const void* k, const void* v, const int32_t* slot,
                           const int32_t* pos, int64_t T, int64_t N, int64_t KV, int64_t D) {
  if (T == 0) return;
  kv_cache_write_kernel<<<static_cast<unsigned>(T), 256, 0, stream()>>>(
      static_cast<bf16*>(k_cache), static_cast<bf16*>(v_cache), static_cast<const bf16*>(k),
      static_cast<const bf16*>(v), slot, pos, N, KV * D);
  check_launch("kv_cache_write");
}

void launch_cached_attention(void* out, const void* q, const void* k_cache, const void* v_cache, const int32_t* slot,
                             const int32_t* pos, int64_t T, int64_t N, int64_t H, int64_t KV, int64_t D, float scale) {
  if (T == 0) return;
  dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>(H));
  cached_attention_kernel<<<grid, 32 * kWarps, 0, stream()>>>(
      static_cast<bf16*>(out), static_cast<const bf16*>(q), static_cast<const bf16*>(k_cache),
      static_cast<const bf16*>(v_cache), slot, pos, N, H, KV, D, scale);
  check_launch("cached_attention");
}

}  // namespace cotune::kernels::cuda
