// Fused kernels of the one-token decode step (CUDA, bf16 activations, batch 1): RMSNorm folded into the
// projections that read it, q/k/v in one launch, gate/up/SwiGLU in one, the residual add folded into the o and
// down projections, and RoPE + KV-cache write + attention in one. A layer is 5 launches instead of 16.
//
// Every rounding is the unfused ops' (rmsnorm, gemv, swiglu, add, rope, kv_cache_write, cached_attention), and the
// bf16 GEMV keeps gemv_kernel's order of accumulation, so a bf16 step is bit-identical to the unfused one. The NF4
// GEMV dequantizes as nf4_dequantize does (bf16(code * absmax)) but reads 16 weights a lane (8 bytes), so its
// fp32 sums are ordered differently from nf4_gemv_kernel's.
//
// Each GEMV warp streams its weight row through two register stages (loads of the next stage are in flight while
// the current one is used). Weights do not depend on earlier kernels, so the first stage is loaded before the
// kernel waits for its predecessor: with programmatic dependent launch (set_decode_pdl) a kernel starts while the
// previous one drains and its weight reads overlap the previous kernel's tail.
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/decode_launch.h"

namespace cotune::kernels::cuda {

namespace {

bool g_pdl = true;

constexpr int kWarps = 4;  // one output row (or a gate/up pair) a warp
constexpr int kThreads = 32 * kWarps;
constexpr int kStages = 4;  // loads a lane issues per row and stage

enum Mode { kSeg = 0, kResid = 1, kSwiglu = 2, kF32 = 3 };

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// As elementwise.cu: bf16(silu(g)) with the accurate expf.
__device__ __forceinline__ float silu_bf(float g) { return round_bf(g / (1.0f + expf(-g))); }

// acc += w . x over 8 weights, in gemv_kernel's order.
__device__ __forceinline__ void fma8(float& acc, const uint4& w, const float* xf) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&w);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f2 = __bfloat1622float2(h[i]);
    acc = fmaf(f2.x, xf[2 * i], acc);
    acc = fmaf(f2.y, xf[2 * i + 1], acc);
  }
}

// bf16 rows: lane l reads 8 weights at k = 8 l + 256 j (gemv_kernel's split).
template <int NR>
struct Bf16Stage {
  static constexpr int64_t kPer = 8, kStride = 256, kSpan = kStages * kStride;
  uint4 v[NR][kStages];
  __device__ __forceinline__ void load(const bf16* const* row, int64_t k0, int64_t K) {
#pragma unroll
    for (int u = 0; u < kStages; ++u) {
      const int64_t k = k0 + u * kStride;
      if (k < K) {
#pragma unroll
        for (int r = 0; r < NR; ++r) v[r][u] = __ldcs(reinterpret_cast<const uint4*>(row[r] + k));
      }
    }
  }
  __device__ __forceinline__ void use(float* acc, const bf16* const*, int64_t k0, int64_t K, const bf16* x) const {
#pragma unroll
    for (int u = 0; u < kStages; ++u) {
      const int64_t k = k0 + u * kStride;
      if (k >= K) break;
      float xf[8];
      load8(x + k, xf);
#pragma unroll
      for (int r = 0; r < NR; ++r) fma8(acc[r], v[r][u], xf);
    }
  }
};

// NF4 rows: lane l reads 8 packed bytes = 16 weights at k = 16 l + 512 j (inside one quantization block, as
// blocksize % 16 == 0), with the block's absmax parts.
struct Nf4Row {
  const uint8_t* packed;  // the row's first byte
  int64_t first;          // index of the row's first element in the tensor
  const DecodeWeight* w;
  const float2* pair;     // shared: pair[b] = (code[b >> 4], code[b & 15])
  const float* nmap;      // shared: nested quant map (nested weights)
};

template <int NR>
struct Nf4Stage {
  static constexpr int64_t kPer = 16, kStride = 512, kSpan = kStages * kStride;
  uint2 v[NR][kStages];
  float am[NR][kStages];    // nested absmax (nested) or absmax (plain)
  uint32_t q[NR][kStages];  // quantized absmax (nested)
  __device__ __forceinline__ void load(const Nf4Row* row, int64_t k0, int64_t K) {
#pragma unroll
    for (int u = 0; u < kStages; ++u) {
      const int64_t k = k0 + u * kStride;
      if (k < K) {
#pragma unroll
        for (int r = 0; r < NR; ++r) {
          const DecodeWeight& w = *row[r].w;
          v[r][u] = __ldcs(reinterpret_cast<const uint2*>(row[r].packed + k / 2));
          const int64_t b = (row[r].first + k) / w.blocksize;
          if (w.qabsmax) {
            q[r][u] = __ldg(w.qabsmax + b);
            am[r][u] = __ldg(w.nested_absmax + b / w.nested_bs);
          } else {
            am[r][u] = __ldg(w.absmax_f32 + b);
          }
        }
      }
    }
  }
  __device__ __forceinline__ void use(float* acc, const Nf4Row* row, int64_t k0, int64_t K, const bf16* x) const {
#pragma unroll
    for (int u = 0; u < kStages; ++u) {
      const int64_t k = k0 + u * kStride;
      if (k >= K) break;
      float xf[16];
      load8(x + k, xf);
      load8(x + k + 8, xf + 8);
#pragma unroll
      for (int r = 0; r < NR; ++r) {
        const DecodeWeight& w = *row[r].w;
        const float s = w.qabsmax ? __fadd_rn(__fmul_rn(row[r].nmap[q[r][u]], am[r][u]), w.offset) : am[r][u];
        const uint32_t words[2] = {v[r][u].x, v[r][u].y};
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float2 c = row[r].pair[(words[j / 4] >> (8 * (j % 4))) & 0xffu];
          acc[r] = fmaf(round_bf(__fmul_rn(c.x, s)), xf[2 * j], acc[r]);
          acc[r] = fmaf(round_bf(__fmul_rn(c.y, s)), xf[2 * j + 1], acc[r]);
        }
      }
    }
  }
};

// Shared memory: NF4 tables (2 weights at most: 2 x 256 float2 + 2 x 256 float), then the normed input (bf16 [K]).
constexpr size_t kTableBytes = 2 * 256 * sizeof(float2) + 2 * 256 * sizeof(float);

template <bool NF4, int MODE, bool NORM>
__global__ void __launch_bounds__(kThreads) decode_gemv_kernel(const __grid_constant__ DecodeGemvArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int NR = MODE == kSwiglu ? 2 : 1;
  pdl_trigger();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // The block's segment (segment sizes are multiples of kWarps, so a block lies in one), the warp's row in it.
  int seg = 0;
  int64_t n = static_cast<int64_t>(blockIdx.x) * kWarps;
  if (MODE == kSeg) {
    while (seg < 2 && n >= a.n[seg]) n -= a.n[seg++];
  }
  n += warp;
  const bool active = n < a.n[seg];
  const int64_t K = a.K;
  const int64_t nr = active ? n : 0;  // inactive warps stream row 0 and store nothing

  float2* pair = reinterpret_cast<float2*>(smem);
  float* nmap = reinterpret_cast<float*>(smem + 2 * 256 * sizeof(float2));
  bf16* hs = reinterpret_cast<bf16*>(smem + (NF4 ? kTableBytes : 0));

  float acc[NR];
#pragma unroll
  for (int r = 0; r < NR; ++r) acc[r] = 0.0f;

  using Stage = std::conditional_t<NF4, Nf4Stage<NR>, Bf16Stage<NR>>;
  using Row = std::conditional_t<NF4, Nf4Row, const bf16*>;
  Stage s0, s1;
  Row rows[NR];
#pragma unroll
  for (int r = 0; r < NR; ++r) {
    const DecodeWeight& w = a.w[MODE == kSwiglu ? r : seg];
    if constexpr (NF4) rows[r] = Nf4Row{w.packed + nr * K / 2, nr * K, &w, pair + 256 * r, nmap + 256 * r};
    else rows[r] = static_cast<const bf16*>(w.w) + nr * K;
  }
  const int64_t k_first = lane * Stage::kPer;
  s0.load(rows, k_first, K);

  // NF4 tables of the block's weights (read-only data: before the wait).
  if constexpr (NF4) {
#pragma unroll
    for (int r = 0; r < NR; ++r) {
      const DecodeWeight& w = a.w[MODE == kSwiglu ? r : seg];
      for (int i = threadIdx.x; i < 256; i += kThreads) {
        pair[256 * r + i] = make_float2(__ldg(w.code + (i >> 4)), __ldg(w.code + (i & 15)));
        if (w.qabsmax) nmap[256 * r + i] = __ldg(w.nested_map + i);
      }
    }
  }
  pdl_wait();  // from here on, read what earlier kernels wrote

  const bf16* x = static_cast<const bf16*>(a.x);
  if constexpr (NORM) {
    // rmsnorm_forward_kernel's arithmetic: warp 0 sums squares in its order, every thread then normalises.
    __shared__ float s_r;
    if (warp == 0) {
      float ss = 0.0f;
      for (int64_t i = lane * 8; i < K; i += 256) {
        float v[8];
        load8(x + i, v);
#pragma unroll
        for (int j = 0; j < 8; ++j) ss += v[j] * v[j];
      }
      ss = warp_sum(ss);
      if (lane == 0) s_r = 1.0f / sqrtf(ss / static_cast<float>(K) + a.eps);
    }
    __syncthreads();
    const float rr = s_r;
    const bf16* nw = static_cast<const bf16*>(a.norm_w);
    for (int64_t i = threadIdx.x * 8; i < K; i += kThreads * 8) {
      float v[8], wv[8];
      load8(x + i, v);
      load8(nw + i, wv);
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = wv[j] * round_bf(v[j] * rr);
      store8(hs + i, v);
    }
    x = hs;
  }
  if (NF4 || NORM) __syncthreads();

  // Two stages in flight: load the one after next while the current one is used.
  for (int64_t k0 = k_first; k0 < K; k0 += 2 * Stage::kSpan) {
    s1.load(rows, k0 + Stage::kSpan, K);
    s0.use(acc, rows, k0, K, x);
    s0.load(rows, k0 + 2 * Stage::kSpan, K);
    s1.use(acc, rows, k0 + Stage::kSpan, K, x);
  }

#pragma unroll
  for (int r = 0; r < NR; ++r) acc[r] = warp_sum(acc[r]);
  if (!active || lane != 0) return;
  if (MODE == kSeg) {
    const bf16* bias = static_cast<const bf16*>(a.bias[seg]);
    const float b = bias ? to_f(bias[n]) : 0.0f;
    static_cast<bf16*>(a.out[seg])[n] = __float2bfloat16_rn(acc[0] + b);
  } else if (MODE == kResid) {  // gemv (no bias) then add: bf16(x + bf16(y))
    bf16* xr = static_cast<bf16*>(a.out[0]);
    xr[n] = __float2bfloat16_rn(to_f(xr[n]) + round_bf(acc[0] + 0.0f));
  } else if (MODE == kSwiglu) {  // gemv gate, gemv up (no bias), swiglu
    const float g = round_bf(acc[0] + 0.0f), u = round_bf(acc[1] + 0.0f);
    static_cast<bf16*>(a.out[0])[n] = __float2bfloat16_rn(silu_bf(g) * u);
  } else {
    const bf16* bias = static_cast<const bf16*>(a.bias[0]);
    static_cast<float*>(a.out[0])[n] = acc[0] + (bias ? to_f(bias[n]) : 0.0f);
  }
}

// ---- RoPE + KV-cache write + attention of one token a slot ------------------------------------------------
constexpr int kAttnWarps = 4;

// grid (T, H), block 32 * kAttnWarps. q, k, v bf16 [T, H|KV, D] un-rotated. Lane l owns elements d = l + 32 i.
// The token's own (rotated) key and value are taken from shared memory; the first head of each group writes them
// to the cache. D % 64 == 0: a lane holds both halves of its rotary pairs.
template <int PER_LANE>
__global__ void __launch_bounds__(32 * kAttnWarps) decode_attention_kernel(
    bf16* __restrict__ out, const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
    bf16* k_cache, bf16* v_cache, const int32_t* slot, const int32_t* pos, int64_t N, int64_t H, int64_t KV,
    int64_t D, float scale, const __grid_constant__ RopeFreq inv_freq) {
  pdl_trigger();
  pdl_wait();
  __shared__ float cs[128], sn[128];
  __shared__ float sk[256], sv[256];
  const int64_t t = blockIdx.x, h = blockIdx.y;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  constexpr int per_lane = PER_LANE, half_lanes = PER_LANE / 2;
  const int64_t half = D / 2, group = H / KV, kvh = h / group;
  const int32_t p = pos[t], s = slot[t];
  const float fp = static_cast<float>(p);
  for (int64_t j = threadIdx.x; j < half; j += blockDim.x) {  // rope_kernel's tables
    float sj, cj;
    sincosf(fp * inv_freq.v[j], &sj, &cj);
    cs[j] = round_bf(cj);
    sn[j] = round_bf(sj);
  }
  __syncthreads();
  // Rotate: o1 = bf16(bf16(x1 c) - bf16(x2 s)), o2 = bf16(bf16(x2 c) + bf16(x1 s)); d = lane + 32 i, its partner
  // d + D/2 is i + per_lane / 2 of the same lane.
  auto rotate = [&](const bf16* src, float* dst) {
#pragma unroll
    for (int i = 0; i < half_lanes; ++i) {
      const int d = lane + 32 * i;
      const float x1 = to_f(src[d]), x2 = to_f(src[d + half]);
      dst[i] = round_bf(round_bf(x1 * cs[d]) - round_bf(x2 * sn[d]));
      dst[i + half_lanes] = round_bf(round_bf(x2 * cs[d]) + round_bf(x1 * sn[d]));
    }
  };
  float qr[PER_LANE], acc[PER_LANE];
  rotate(q + (t * H + h) * D, qr);
#pragma unroll
  for (int i = 0; i < per_lane; ++i) {
    qr[i] *= scale;
    acc[i] = 0.0f;
  }
  const int64_t row = KV * D;
  const int64_t cache0 = static_cast<int64_t>(s) * N * row + kvh * D;
  if (warp == 0) {
    float kr[PER_LANE];
    rotate(k + (t * KV + kvh) * D, kr);
    const bf16* vt = v + (t * KV + kvh) * D;
    const bool writer = h % group == 0;
#pragma unroll
    for (int i = 0; i < per_lane; ++i) {
      const int d = lane + 32 * i;
      sk[d] = kr[i];
      sv[d] = to_f(vt[d]);
      if (writer) {
        k_cache[cache0 + static_cast<int64_t>(p) * row + d] = __float2bfloat16_rn(kr[i]);
        v_cache[cache0 + static_cast<int64_t>(p) * row + d] = vt[d];
      }
    }
  }
  __syncthreads();
  // cached_attention_kernel's loop: warps stride over the positions, online softmax, then merge.
  float m = -INFINITY, l = 0.0f;
  const int64_t n = static_cast<int64_t>(p) + 1;
  for (int64_t j = warp; j < n; j += kAttnWarps) {
    const bool own = j == n - 1;
    const bf16* kj = k_cache + cache0 + j * row;
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < per_lane; ++i) dot += qr[i] * (own ? sk[lane + 32 * i] : to_f(kj[lane + 32 * i]));
    dot = warp_sum(dot);
    const float m_new = fmaxf(m, dot);
    const float corr = __expf(m - m_new), pr = __expf(dot - m_new);
    l = l * corr + pr;
    const bf16* vj = v_cache + cache0 + j * row;
#pragma unroll
    for (int i = 0; i < per_lane; ++i)
      acc[i] = acc[i] * corr + pr * (own ? sv[lane + 32 * i] : to_f(vj[lane + 32 * i]));
    m = m_new;
  }
  __shared__ float s_m[kAttnWarps], s_l[kAttnWarps];
  __shared__ float s_acc[kAttnWarps][256];
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < per_lane; ++i) s_acc[warp][lane + 32 * i] = acc[i];
  __syncthreads();
  if (warp != 0) return;
  float M = -INFINITY;
  for (int w = 0; w < kAttnWarps; ++w) M = fmaxf(M, s_m[w]);
  float L = 0.0f, f[kAttnWarps];
  for (int w = 0; w < kAttnWarps; ++w) {
    f[w] = s_m[w] == -INFINITY ? 0.0f : __expf(s_m[w] - M);
    L += s_l[w] * f[w];
  }
  const float inv = 1.0f / L;
#pragma unroll
  for (int i = 0; i < per_lane; ++i) {
    const int d = lane + 32 * i;
    float o = 0.0f;
    for (int w = 0; w < kAttnWarps; ++w) o += s_acc[w][d] * f[w];
    out[(t * H + h) * D + d] = __float2bfloat16_rn(o * inv);
  }
}

template <typename Kernel, typename... Args>
void launch_ex(const char* what, Kernel kernel, dim3 grid, dim3 block, size_t smem, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream();
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = g_pdl ? 1 : 0;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  check(cudaLaunchKernelEx(&cfg, kernel, args...), what);
  check_launch(what);
}

template <int MODE, bool NORM>
void launch_gemv_mode(const char* what, const DecodeGemvArgs& a, int64_t rows) {
  const bool nf4 = a.w[0].packed != nullptr;
  const size_t smem = (nf4 ? kTableBytes : 0) + (NORM ? static_cast<size_t>(a.K) * 2 : 0);
  const dim3 grid(static_cast<unsigned>((rows + kWarps - 1) / kWarps));
  if (nf4) {
    auto kern = decode_gemv_kernel<true, MODE, NORM>;
    if (smem > 48 * 1024) check(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), what);
    launch_ex(what, kern, grid, dim3(kThreads), smem, a);
  } else {
    auto kern = decode_gemv_kernel<false, MODE, NORM>;
    if (smem > 48 * 1024) check(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), what);
    launch_ex(what, kern, grid, dim3(kThreads), smem, a);
  }
}

}  // namespace

void set_decode_pdl(bool on) { g_pdl = on; }
bool decode_pdl() { return g_pdl; }
int decode_gemv_rows_multiple() { return kWarps; }

void launch_decode_norm_qkv(const DecodeGemvArgs& a) {
  launch_gemv_mode<kSeg, true>("decode_norm_qkv", a, a.n[0] + a.n[1] + a.n[2]);
}
void launch_decode_residual(const DecodeGemvArgs& a) { launch_gemv_mode<kResid, false>("decode_residual", a, a.n[0]); }
void launch_decode_norm_swiglu(const DecodeGemvArgs& a) {
  launch_gemv_mode<kSwiglu, true>("decode_norm_swiglu", a, a.n[0]);
}
void launch_decode_logits(const DecodeGemvArgs& a) { launch_gemv_mode<kF32, false>("decode_logits", a, a.n[0]); }

void launch_decode_attention(void* out, const void* q, const void* k, const void* v, void* k_cache, void* v_cache,
                             const int32_t* slot, const int32_t* pos, int64_t T, int64_t N, int64_t H, int64_t KV,
                             int64_t D, float scale, const RopeFreq& inv_freq) {
  if (T == 0) return;
  auto kern = D == 64 ? decode_attention_kernel<2> : D == 128 ? decode_attention_kernel<4>
            : D == 192 ? decode_attention_kernel<6> : decode_attention_kernel<8>;
  launch_ex("decode_attention", kern, dim3(static_cast<unsigned>(T), static_cast<unsigned>(H)), dim3(32 * kAttnWarps),
            0, static_cast<bf16*>(out), static_cast<const bf16*>(q), static_cast<const bf16*>(k),
            static_cast<const bf16*>(v), static_cast<bf16*>(k_cache), static_cast<bf16*>(v_cache), slot, pos, N, H, KV,
            D, scale, inv_freq);
}

}  // namespace cotune::kernels::cuda
