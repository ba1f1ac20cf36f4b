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
#include <cstdlib>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/tuning.h"
#include "kernels/cuda/decode_launch.h"

namespace cotune::kernels::cuda {

namespace {

bool g_pdl = true;

constexpr int kWarps = 8;  // warps a GEMV block: kWarps / SPLIT rows, SPLIT warps a row
constexpr int kThreads = 32 * kWarps;
constexpr int kRowsMultiple = 8;  // segment sizes of the q/k/v launch (a block never straddles two)

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

// 8 input values at k: from the block's normed row (f32, shared) or from the input row (bf16, global).
__device__ __forceinline__ void x8(const float* x, int64_t k, float* f) {
  const float4 a = *reinterpret_cast<const float4*>(x + k), b = *reinterpret_cast<const float4*>(x + k + 4);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}
__device__ __forceinline__ void x8(const bf16* x, int64_t k, float* f) { load8(x + k, f); }

// bf16 rows: lane l reads 8 weights at k = 8 l + 256 u within a stage of L loads (256 L weights a warp).
template <int NR, int L>
struct Bf16Stage {
  static constexpr int kLoads = L;
  static constexpr int64_t kPer = 8, kStride = 256, kSpan = kLoads * kStride;
  uint4 v[NR][kLoads];
  template <typename Row>
  __device__ __forceinline__ void load(const Row* row, int64_t k0, int64_t K) {
#pragma unroll
    for (int u = 0; u < kLoads; ++u) {
      const int64_t k = k0 + u * kStride;
      if (k < K) {
#pragma unroll
        for (int r = 0; r < NR; ++r) v[r][u] = __ldcs(reinterpret_cast<const uint4*>(row[r] + k));
      }
    }
  }
  template <typename Row, typename X>
  __device__ __forceinline__ void use(float* acc, const Row*, int64_t k0, int64_t K, const X* x) const {
#pragma unroll
    for (int u = 0; u < kLoads; ++u) {
      const int64_t k = k0 + u * kStride;
      if (k >= K) break;
      float xf[8];
      x8(x, k, xf);
#pragma unroll
      for (int r = 0; r < NR; ++r) {
        const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v[r][u]);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float2 f2 = __bfloat1622float2(h[i]);
          acc[r] = fmaf(f2.x, xf[2 * i], acc[r]);
          acc[r] = fmaf(f2.y, xf[2 * i + 1], acc[r]);
        }
      }
    }
  }
};

// NF4 rows: lane l reads 8 packed bytes = 16 weights at k = 16 l + 512 u (inside one quantization block, as
// blocksize % 16 == 0), with the block's absmax parts; a stage is L loads (512 L weights a warp).
struct Nf4Row {
  const uint8_t* packed;   // the row's first byte
  const uint8_t* qabsmax;  // nested: 8-bit absmax (absmax then holds the nested absmax); else null
  const float* absmax;
  const float* code;       // shared: the 16 code values (one bank each: lookups never conflict)
  const float* nmap;       // shared: nested quant map
  int64_t first;           // index of the row's first element in the tensor
  float offset;
  int bs_shift, nbs_shift;
};

template <int NR, int L>
struct Nf4Stage {
  static constexpr int kLoads = L;
  static constexpr int64_t kPer = 16, kStride = 512, kSpan = kLoads * kStride;
  uint2 v[NR][kLoads];
  float am[NR][kLoads];    // nested absmax (nested) or absmax (plain)
  uint32_t q[NR][kLoads];  // quantized absmax (nested)
  __device__ __forceinline__ void load(const Nf4Row* row, int64_t k0, int64_t K) {
#pragma unroll
    for (int u = 0; u < kLoads; ++u) {
      const int64_t k = k0 + u * kStride;
      if (k < K) {
#pragma unroll
        for (int r = 0; r < NR; ++r) {
          v[r][u] = __ldcs(reinterpret_cast<const uint2*>(row[r].packed + k / 2));
          const int64_t b = (row[r].first + k) >> row[r].bs_shift;
          if (row[r].qabsmax) {
            q[r][u] = __ldg(row[r].qabsmax + b);
            am[r][u] = __ldg(row[r].absmax + (b >> row[r].nbs_shift));
          } else {
            am[r][u] = __ldg(row[r].absmax + b);
          }
        }
      }
    }
  }
  template <typename X>
  __device__ __forceinline__ void use(float* acc, const Nf4Row* row, int64_t k0, int64_t K, const X* x) const {
#pragma unroll
    for (int u = 0; u < kLoads; ++u) {
      const int64_t k = k0 + u * kStride;
      if (k >= K) break;
      float xf[16];
      x8(x, k, xf);
      x8(x, k + 8, xf + 8);
#pragma unroll
      for (int r = 0; r < NR; ++r) {
        const float s = row[r].qabsmax ? __fadd_rn(__fmul_rn(row[r].nmap[q[r][u]], am[r][u]), row[r].offset) : am[r][u];
        const uint32_t words[2] = {v[r][u].x, v[r][u].y};
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const uint32_t byte = (words[j / 4] >> (8 * (j % 4))) & 0xffu;
          acc[r] = fmaf(round_bf(__fmul_rn(row[r].code[byte >> 4], s)), xf[2 * j], acc[r]);
          acc[r] = fmaf(round_bf(__fmul_rn(row[r].code[byte & 15u], s)), xf[2 * j + 1], acc[r]);
        }
      }
    }
  }
};

__host__ __device__ constexpr int log2i(int64_t v) { return v <= 1 ? 0 : 1 + log2i(v / 2); }

// Shared memory: NF4 tables of 2 weights at most (code maps 2 x 16 float, nested maps 2 x 256 float), then the
// normed row (f32 [K]) and the input row (bf16 [K]).
constexpr size_t kCodeBytes = 2 * 16 * sizeof(float);
constexpr size_t kTableBytes = kCodeBytes + 2 * 256 * sizeof(float);

// One GEMV launch of the decode step; the grid covers every row once. WIDE: one stage of loads covers a whole row
// (rows of up to 1536 weights), all issued before the kernel waits for its predecessor; one warp a row. Else a row
// is split over SPLIT warps (stages of 1024 weights dealt round-robin, two in flight), whose sums are added in warp
// order. The RMSNorm prologue stages the input row in shared memory and leaves the normed row there (f32).
template <bool NF4, int MODE, bool NORM, int SPLIT, bool WIDE>
__global__ void __launch_bounds__(kThreads, NF4 ? 4 : 2) decode_gemv_kernel(const __grid_constant__ DecodeGemvArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int NR = MODE == kSwiglu ? 2 : 1;
  constexpr int RPB = kWarps / SPLIT;
  constexpr int L = WIDE ? (NF4 ? 3 : 6) : (NF4 ? 2 : 4);
  using Stage = std::conditional_t<NF4, Nf4Stage<NR, L>, Bf16Stage<NR, L>>;
  using Row = std::conditional_t<NF4, Nf4Row, const bf16*>;
  pdl_trigger();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, rw = warp / SPLIT, ws = warp % SPLIT;
  // The block's segment (segment sizes are multiples of kRowsMultiple, so a block lies in one), the warp's row.
  int seg = 0;
  int64_t n = static_cast<int64_t>(blockIdx.x) * RPB;
  if (MODE == kSeg) {
    while (seg < 2 && n >= a.n[seg]) n -= a.n[seg++];
  }
  n += rw;
  const bool active = n < a.n[seg];
  const int64_t K = a.K;
  const int64_t nr = active ? n : 0;  // inactive warps stream row 0 and store nothing

  float* code = reinterpret_cast<float*>(smem);
  float* nmap = reinterpret_cast<float*>(smem + kCodeBytes);
  float* hs = reinterpret_cast<float*>(smem + (NF4 ? kTableBytes : 0));
  bf16* xb = reinterpret_cast<bf16*>(hs + (NORM ? K : 0));

  float acc[NR];
#pragma unroll
  for (int r = 0; r < NR; ++r) acc[r] = 0.0f;

  Stage s0, s1;
  Row rows[NR];
#pragma unroll
  for (int r = 0; r < NR; ++r) {
    const DecodeWeight& w = a.w[MODE == kSwiglu ? r : seg];
    if constexpr (NF4) {
      rows[r] = Nf4Row{w.packed + nr * K / 2, w.qabsmax, w.qabsmax ? w.nested_absmax : w.absmax_f32,
                       code + 16 * r, nmap + 256 * r, nr * K, w.offset, log2i(w.blocksize), log2i(w.nested_bs)};
    } else {
      rows[r] = static_cast<const bf16*>(w.w) + nr * K;
    }
  }
  const int64_t step = SPLIT * Stage::kSpan;
  const int64_t k_first = lane * Stage::kPer + ws * Stage::kSpan;
  s0.load(rows, k_first, K);  // weights do not depend on earlier kernels: before the wait

  if constexpr (NF4) {  // the tables of the block's weights (read-only)
#pragma unroll
    for (int r = 0; r < NR; ++r) {
      const DecodeWeight& w = a.w[MODE == kSwiglu ? r : seg];
      for (int i = threadIdx.x; i < 256; i += kThreads) {
        if (i < 16) code[16 * r + i] = __ldg(w.code + i);
        if (w.qabsmax) nmap[256 * r + i] = __ldg(w.nested_map + i);
      }
    }
  }
  pdl_wait();  // from here on, read what earlier kernels wrote

  const bf16* xg = static_cast<const bf16*>(a.x);
  if constexpr (NORM) {
    // The row into shared memory (one 16-byte access a thread), then rmsnorm_forward_kernel's arithmetic: warp 0
    // sums squares in its order, every thread normalises (bf16(w * bf16(x * r)), kept as f32).
    for (int64_t i = threadIdx.x * 8; i < K; i += kThreads * 8)
      *reinterpret_cast<uint4*>(xb + i) = *reinterpret_cast<const uint4*>(xg + i);
    __syncthreads();
    __shared__ float s_r;
    if (warp == 0) {
      float ss = 0.0f;
      for (int64_t i = lane * 8; i < K; i += 256) {
        float v[8];
        load8(xb + i, v);
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
      load8(xb + i, v);
      load8(nw + i, wv);
#pragma unroll
      for (int j = 0; j < 8; ++j) hs[i + j] = round_bf(wv[j] * round_bf(v[j] * rr));
    }
  }
  if (NF4 || NORM) __syncthreads();

  auto run = [&](const auto* x) {
    if constexpr (WIDE) {
      s0.use(acc, rows, k_first, K, x);
    } else {  // two stages in flight: load the one after next while the current one is used
      for (int64_t k0 = k_first; k0 < K; k0 += 2 * step) {
        s1.load(rows, k0 + step, K);
        s0.use(acc, rows, k0, K, x);
        s0.load(rows, k0 + 2 * step, K);
        s1.use(acc, rows, k0 + step, K, x);
      }
    }
  };
  if constexpr (NORM) run(static_cast<const float*>(hs));
  else run(xg);

#pragma unroll
  for (int r = 0; r < NR; ++r) acc[r] = warp_sum(acc[r]);
  if constexpr (SPLIT > 1) {
    __shared__ float part[kWarps][NR];
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < NR; ++r) part[warp][r] = acc[r];
    }
    __syncthreads();
    if (ws != 0) return;
#pragma unroll
    for (int r = 0; r < NR; ++r) {
      acc[r] = part[rw * SPLIT][r];
#pragma unroll
      for (int w = 1; w < SPLIT; ++w) acc[r] += part[rw * SPLIT + w][r];
    }
  }
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

// ---- RoPE + KV-cache write + attention of one token a slot (split over blocks) -----------------------------
constexpr int kAttnWarps = 4;
constexpr int kAttnSplits = 8;   // blocks a (token, head); each warp takes every (kAttnSplits * kAttnWarps)-th position
constexpr int kAttnBatch = 8;    // positions a warp has in flight

// grid (H, kAttnSplits, T), block 32 * kAttnWarps. q, k, v bf16 [T, H|KV, D] un-rotated. Lane l owns the EPL =
// D / 32 contiguous elements d = EPL l + e. The token's own rotated key and value come from shared memory; one block
// of each group writes them to the cache. Each block leaves its (max, sum, unnormalised output) in `part`; the last
// block of a (token, head) to finish merges them in split order and resets the head's counter.
template <int D>
__global__ void __launch_bounds__(32 * kAttnWarps) decode_attention_kernel(
    bf16* __restrict__ out, const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
    bf16* k_cache, bf16* v_cache, const int32_t* slot, const int32_t* pos, float* part, int32_t* counters,
    const KvPaging pg, int64_t H, int64_t KV, float scale, const __grid_constant__ RopeFreq inv_freq) {
  constexpr int EPL = D / 32, HALF = D / 2;
  pdl_trigger();
  pdl_wait();
  __shared__ float cs[HALF], sn[HALF];
  __shared__ __align__(16) float sq[D], sk[D], sv[D];
  const int64_t h = blockIdx.x, split = blockIdx.y, t = blockIdx.z;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t group = H / KV, kvh = h / group;
  const int32_t p = pos[t], s = slot[t];
  const float fp = static_cast<float>(p);
  for (int j = threadIdx.x; j < HALF; j += blockDim.x) {  // rope_kernel's tables
    float sj, cj;
    sincosf(fp * inv_freq.v[j], &sj, &cj);
    cs[j] = round_bf(cj);
    sn[j] = round_bf(sj);
  }
  __syncthreads();
  // rope_kernel's rotation: o1 = bf16(bf16(x1 c) - bf16(x2 s)), o2 = bf16(bf16(x2 c) + bf16(x1 s)).
  const bf16* qh = q + (t * H + h) * D;
  const bf16* kh = k + (t * KV + kvh) * D;
  const bf16* vh = v + (t * KV + kvh) * D;
  for (int j = threadIdx.x; j < HALF; j += blockDim.x) {
    float x1 = to_f(qh[j]), x2 = to_f(qh[j + HALF]);
    sq[j] = round_bf(round_bf(x1 * cs[j]) - round_bf(x2 * sn[j])) * scale;
    sq[j + HALF] = round_bf(round_bf(x2 * cs[j]) + round_bf(x1 * sn[j])) * scale;
    x1 = to_f(kh[j]), x2 = to_f(kh[j + HALF]);
    sk[j] = round_bf(round_bf(x1 * cs[j]) - round_bf(x2 * sn[j]));
    sk[j + HALF] = round_bf(round_bf(x2 * cs[j]) + round_bf(x1 * sn[j]));
    sv[j] = to_f(vh[j]);
    sv[j + HALF] = to_f(vh[j + HALF]);
  }
  __syncthreads();
  const int64_t row = KV * D;
  // The first element of position j's key / value row of this KV head (paged: through the slot's block table).
  auto at = [&](int64_t j) { return kv_row(pg, s, j) * row + kvh * D; };
  if (split == 0 && h % group == 0) {
    const int64_t own = at(p);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
      k_cache[own + d] = __float2bfloat16_rn(sk[d]);
      v_cache[own + d] = __float2bfloat16_rn(sv[d]);
    }
  }
  float qv[EPL], acc[EPL];
#pragma unroll
  for (int e = 0; e < EPL; ++e) {
    qv[e] = sq[lane * EPL + e];
    acc[e] = 0.0f;
  }
  // Online softmax over this warp's positions, kAttnBatch at a time (their loads issued together).
  constexpr int NW = kAttnSplits * kAttnWarps;
  const int64_t n = static_cast<int64_t>(p) + 1;
  float m = -INFINITY, l = 0.0f;
  for (int64_t j0 = split * kAttnWarps + warp; j0 < n; j0 += NW * kAttnBatch) {
    float kf[kAttnBatch][EPL], vf[kAttnBatch][EPL];
#pragma unroll
    for (int b = 0; b < kAttnBatch; ++b) {
      const int64_t j = j0 + b * NW;
      if (j < n - 1) {
        const int64_t aj = at(j) + lane * EPL;
        const bf16* kj = k_cache + aj;
        const bf16* vj = v_cache + aj;
#pragma unroll
        for (int e = 0; e < EPL; e += 2) {
          const float2 kk = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(kj + e));
          const float2 vv = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(vj + e));
          kf[b][e] = kk.x, kf[b][e + 1] = kk.y, vf[b][e] = vv.x, vf[b][e + 1] = vv.y;
        }
      } else if (j == n - 1) {
#pragma unroll
        for (int e = 0; e < EPL; ++e) kf[b][e] = sk[lane * EPL + e], vf[b][e] = sv[lane * EPL + e];
      }
    }
    float sc[kAttnBatch];
    float bm = -INFINITY;
#pragma unroll
    for (int b = 0; b < kAttnBatch; ++b) {
      float d = 0.0f;
#pragma unroll
      for (int e = 0; e < EPL; ++e) d = fmaf(qv[e], kf[b][e], d);
      d = warp_sum(d);
      sc[b] = j0 + b * NW < n ? d : -INFINITY;
      bm = fmaxf(bm, sc[b]);
    }
    const float m_new = fmaxf(m, bm);
    const float corr = __expf(m - m_new);
    l *= corr;
#pragma unroll
    for (int e = 0; e < EPL; ++e) acc[e] *= corr;
#pragma unroll
    for (int b = 0; b < kAttnBatch; ++b) {
      if (j0 + b * NW >= n) break;
      const float pr = __expf(sc[b] - m_new);
      l += pr;
#pragma unroll
      for (int e = 0; e < EPL; ++e) acc[e] = fmaf(pr, vf[b][e], acc[e]);
    }
    m = m_new;
  }
  // Merge the block's warps, then leave the block's part.
  __shared__ float s_m[kAttnWarps], s_l[kAttnWarps];
  __shared__ __align__(16) float s_acc[kAttnWarps][D];
  __shared__ bool s_last;
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
#pragma unroll
  for (int e = 0; e < EPL; ++e) s_acc[warp][lane * EPL + e] = acc[e];
  __syncthreads();
  float* mine = part + ((t * H + h) * kAttnSplits + split) * (D + 2);
  float M = -INFINITY;
  for (int w = 0; w < kAttnWarps; ++w) M = fmaxf(M, s_m[w]);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float o = 0.0f;
    for (int w = 0; w < kAttnWarps; ++w) o += s_m[w] == -INFINITY ? 0.0f : s_acc[w][d] * __expf(s_m[w] - M);
    mine[2 + d] = o;
  }
  if (threadIdx.x == 0) {
    float L = 0.0f;
    for (int w = 0; w < kAttnWarps; ++w) L += s_m[w] == -INFINITY ? 0.0f : s_l[w] * __expf(s_m[w] - M);
    mine[0] = M;
    mine[1] = L;
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) s_last = atomicAdd(counters + t * H + h, 1) == kAttnSplits - 1;
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  const float* parts = part + (t * H + h) * kAttnSplits * (D + 2);
  float G = -INFINITY;
  for (int i = 0; i < kAttnSplits; ++i) G = fmaxf(G, __ldcg(parts + i * (D + 2)));
  float L = 0.0f;
  for (int i = 0; i < kAttnSplits; ++i) {
    const float mi = __ldcg(parts + i * (D + 2));
    if (mi != -INFINITY) L += __ldcg(parts + i * (D + 2) + 1) * __expf(mi - G);
  }
  const float inv = 1.0f / L;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float o = 0.0f;
    for (int i = 0; i < kAttnSplits; ++i) {
      const float mi = __ldcg(parts + i * (D + 2));
      if (mi != -INFINITY) o += __ldcg(parts + i * (D + 2) + 2 + d) * __expf(mi - G);
    }
    out[(t * H + h) * D + d] = __float2bfloat16_rn(o * inv);
  }
  if (threadIdx.x == 0) counters[t * H + h] = 0;
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

template <bool NF4, int MODE, bool NORM, int SPLIT, bool WIDE>
void launch_variant(const char* what, const DecodeGemvArgs& a, int64_t rows, size_t smem) {
  auto kern = decode_gemv_kernel<NF4, MODE, NORM, SPLIT, WIDE>;
  static size_t smem_set = 48 * 1024;
  if (smem > smem_set) {
    check(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), what);
    smem_set = smem;
  }
  constexpr int rpb = kWarps / SPLIT;
  launch_ex(what, kern, dim3(static_cast<unsigned>((rows + rpb - 1) / rpb)), dim3(kThreads), smem, a);
}

template <bool NF4, int MODE, bool NORM>
void launch_split(const char* what, const DecodeGemvArgs& a, int64_t rows, size_t smem) {
  // NF4 takes the WIDE kernel only with Tuning::decode_nf4_wide (key decode_nf4_wide; a switch for bench_decode).
  const bool nf4_wide = kernels::tuning().decode_nf4_wide;
  if ((!NF4 || nf4_wide) && a.K <= 1536) {  // a row in one stage of loads (WIDE)
    launch_variant<NF4, MODE, NORM, 1, true>(what, a, rows, smem);
    return;
  }
  // SPLIT: more warps for short row counts, at most one a stage of 1024 weights; bf16 up to ~32 warps a
  // multiprocessor, NF4 (dequantizing: more work a byte, 4 blocks a multiprocessor) within one wave.
  const int64_t stages = (a.K + 1023) / 1024, warp_slots = static_cast<int64_t>(sm_count()) * 32;
  int split = 1;
  while (split < 4 && split * 2 <= stages && (NF4 ? rows * split * 2 <= warp_slots : rows * split < warp_slots)) split *= 2;
  switch (split) {
    case 1: launch_variant<NF4, MODE, NORM, 1, false>(what, a, rows, smem); break;
    case 2: launch_variant<NF4, MODE, NORM, 2, false>(what, a, rows, smem); break;
    default: launch_variant<NF4, MODE, NORM, 4, false>(what, a, rows, smem); break;
  }
}

template <int MODE, bool NORM>
void launch_gemv_mode(const char* what, const DecodeGemvArgs& a, int64_t rows) {
  const bool nf4 = a.w[0].packed != nullptr;
  const size_t smem = (nf4 ? kTableBytes : 0) + (NORM ? static_cast<size_t>(a.K) * 6 : 0);
  if (nf4) launch_split<true, MODE, NORM>(what, a, rows, smem);
  else launch_split<false, MODE, NORM>(what, a, rows, smem);
}

}  // namespace

void set_decode_pdl(bool on) { g_pdl = on; }
bool decode_pdl() { return g_pdl; }
int decode_gemv_rows_multiple() { return kRowsMultiple; }
int decode_attention_splits() { return kAttnSplits; }

void launch_decode_norm_qkv(const DecodeGemvArgs& a) {
  launch_gemv_mode<kSeg, true>("decode_norm_qkv", a, a.n[0] + a.n[1] + a.n[2]);
}
void launch_decode_residual(const DecodeGemvArgs& a) { launch_gemv_mode<kResid, false>("decode_residual", a, a.n[0]); }
void launch_decode_norm_swiglu(const DecodeGemvArgs& a) {
  launch_gemv_mode<kSwiglu, true>("decode_norm_swiglu", a, a.n[0]);
}
void launch_decode_logits(const DecodeGemvArgs& a) { launch_gemv_mode<kF32, false>("decode_logits", a, a.n[0]); }

void launch_decode_attention(void* out, const void* q, const void* k, const void* v, void* k_cache, void* v_cache,
                             const int32_t* slot, const int32_t* pos, float* part, int32_t* counters, int64_t T,
                             const KvPaging& pg, int64_t H, int64_t KV, int64_t D, float scale,
                             const RopeFreq& inv_freq) {
  if (T == 0) return;
  auto kern = D == 64 ? decode_attention_kernel<64> : D == 128 ? decode_attention_kernel<128>
            : D == 192 ? decode_attention_kernel<192> : decode_attention_kernel<256>;
  launch_ex("decode_attention", kern,
            dim3(static_cast<unsigned>(H), static_cast<unsigned>(kAttnSplits), static_cast<unsigned>(T)),
            dim3(32 * kAttnWarps), 0, static_cast<bf16*>(out), static_cast<const bf16*>(q),
            static_cast<const bf16*>(k), static_cast<const bf16*>(v), static_cast<bf16*>(k_cache),
            static_cast<bf16*>(v_cache), slot, pos, part, counters, pg, H, KV, scale, inv_freq);
}

}  // namespace cotune::kernels::cuda
