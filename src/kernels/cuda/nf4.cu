// Kernels of NF4 dequantization (kernels/cuda/nf4.h; the CPU twin is kernels::nf4_dequantize, cpu/quant_cpu.cpp):
// one weight, or up to kNf4BatchMax weights in one launch. Roundings as bitsandbytes (each product and sum to fp32
// separately: __fmul_rn / __fadd_rn), bit-identical to the CPU reference.
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/tuning.h"

namespace cotune::kernels::cuda {

namespace {

constexpr int kThreads = 256;

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

}  // namespace

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

namespace {

// ---- NF4 quantization (twin of cpu::nf4_quantize) ---------------------------------------------------------------
struct Nf4Mid {
  float v[15];  // the midpoints of the NF4 code table, computed on the host exactly as the CPU reference does
};

// bucketize(v, mid, 15): the number of midpoints strictly below v (torch.bucketize, right=False).
__device__ __forceinline__ int nf4_code_of(float v, const Nf4Mid& m) {
  int c = 0;
#pragma unroll
  for (int i = 0; i < 15; ++i) c += m.v[i] < v ? 1 : 0;
  return c;
}

// One warp per block of 64 elements: lane j holds elements 2j and 2j + 1 (one packed byte). The absmax is the
// warp's max of |x| (max is exact, so any order gives the CPU's value); v = clamp(x * (1 / max(absmax, 1e-38)),
// -1, 1) with IEEE division and multiplication, as the CPU computes it; elements past n take the code of 0.0.
template <typename IN>
__global__ void nf4_quantize_kernel(const IN* __restrict__ x, int64_t n, const Nf4Mid mid, uint8_t* __restrict__ packed,
                                    float* __restrict__ absmax) {
  const int lane = threadIdx.x & 31;
  const int64_t b = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int64_t nb = (n + 63) / 64;
  if (b >= nb) return;
  const int64_t i0 = b * 64 + 2 * lane;
  const float x0 = i0 < n ? to_f(x[i0]) : 0.0f, x1 = i0 + 1 < n ? to_f(x[i0 + 1]) : 0.0f;
  float am = fmaxf(fabsf(x0), fabsf(x1));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, o));
  if (lane == 0) absmax[b] = am;
  const float inv = __fdiv_rn(1.0f, fmaxf(am, 1e-38f));
  const int c0 = i0 < n ? nf4_code_of(fminf(fmaxf(__fmul_rn(x0, inv), -1.0f), 1.0f), mid) : nf4_code_of(0.0f, mid);
  const int c1 = i0 + 1 < n ? nf4_code_of(fminf(fmaxf(__fmul_rn(x1, inv), -1.0f), 1.0f), mid) : nf4_code_of(0.0f, mid);
  if (i0 < n) packed[i0 / 2] = static_cast<uint8_t>((c0 << 4) | c1);
}

}  // namespace

void launch_nf4_quantize(const void* x, bool x_bf16, int64_t n, const float* code, uint8_t* packed, float* absmax) {
  if (n == 0) return;
  Nf4Mid mid{};
  for (int i = 0; i < 15; ++i) mid.v[i] = (code[i] + code[i + 1]) / 2.0f;
  const int64_t warps = (n + 63) / 64;
  const unsigned blocks = static_cast<unsigned>((warps * 32 + kThreads - 1) / kThreads);
  if (x_bf16)
    nf4_quantize_kernel<bf16><<<blocks, kThreads, 0, stream()>>>(static_cast<const bf16*>(x), n, mid, packed, absmax);
  else
    nf4_quantize_kernel<float><<<blocks, kThreads, 0, stream()>>>(static_cast<const float*>(x), n, mid, packed, absmax);
  check_launch("nf4_quantize");
}

}  // namespace cotune::kernels::cuda
