// Cross-entropy row kernel (lse, argmax, loss, softmax gradient), shared by the unfused cross-entropy and the
// chunked LM-head fusion (cross_entropy.cpp).
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/common.cuh"
#include "kernels/tuning.h"

namespace cotune::kernels::cuda {

namespace {

constexpr int kRowThreads = 1024;
constexpr int kPer = 4;  // elements per thread per tile of the gradient pass

// Block-wide max with the lowest index on ties.
__device__ __forceinline__ void block_argmax(float& v, int& idx, float* sv, int* si) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (ov > v || (ov == v && oi < idx)) {
      v = ov;
      idx = oi;
    }
  }
  __syncthreads();
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = idx;
  }
  __syncthreads();
  v = lane < nwarps ? sv[lane] : -INFINITY;
  idx = lane < nwarps ? si[lane] : 0x7fffffff;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (ov > v || (ov == v && oi < idx)) {
      v = ov;
      idx = oi;
    }
  }
}

// One row of cross-entropy. logits IN [T, V] (row stride ld_in); targets i32 [T]; outputs (each optional):
//   losses f32 [T] = lse - x[target] (0 when target < 0), correct i32 [T] = argmax == target,
//   dlogits OUT [T, V] (row stride ld_out elements) = grad_scale * (softmax - onehot), 0 rows for target < 0.
// The gradient pass reads a tile of the row into registers, syncs, then writes it, so dlogits may overlay the
// logits in place even when OUT is narrower than IN (bf16 over f32, same row start): a tile's writes only touch
// bytes of elements that were already read.
template <typename IN, typename OUT>
__global__ void __launch_bounds__(kRowThreads) ce_row_kernel(float* losses, int32_t* correct, OUT* dlogits,
                                                             int64_t ld_out, const IN* logits, int64_t ld_in,
                                                             const int32_t* targets, int64_t V, float grad_scale) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const int64_t t = blockIdx.x;
  const IN* x = logits + t * ld_in;
  const int target = targets[t];
  float lse = 0.0f, xt = 0.0f;
  int am = 0;
  if (target >= 0) {
    // One pass: running max (lowest index among equal maxima), argmax and the sum of exp relative to the max.
    float mx = -INFINITY, sum = 0.0f;
    int idx = 0x7fffffff;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      const float v = to_f(x[j]);
      if (v > mx) {
        sum = sum * expf(mx - v) + 1.0f;
        mx = v;
        idx = static_cast<int>(j);
      } else {
        sum += expf(v - mx);
      }
    }
    const float my_max = mx;
    block_argmax(mx, idx, sv, si);
    am = idx;
    sum = my_max == -INFINITY ? 0.0f : sum * expf(my_max - mx);
    sum = block_sum(sum, sv);
    lse = mx + logf(sum);
    xt = target < V ? to_f(x[target]) : __int_as_float(0x7fc00000);  // a bad target gives a NaN loss
  }
  if (threadIdx.x == 0) {
    if (losses) losses[t] = target >= 0 ? lse - xt : 0.0f;
    if (correct) correct[t] = target >= 0 && am == target ? 1 : 0;
  }
  if (!dlogits) return;
  OUT* d = dlogits + t * ld_out;
  const int64_t tile = static_cast<int64_t>(blockDim.x) * kPer;
  for (int64_t j0 = 0; j0 < V; j0 += tile) {
    float v[kPer];
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int64_t j = j0 + k * blockDim.x + threadIdx.x;
      v[k] = j < V && target >= 0 ? to_f(x[j]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int64_t j = j0 + k * blockDim.x + threadIdx.x;
      if (j < V) {
        float g = 0.0f;
        if (target >= 0) g = grad_scale * expf(v[k] - lse) - (j == target ? grad_scale : 0.0f);
        d[j] = from_f<OUT>(g);
      }
    }
  }
}

// ---- v2: a cluster of blocks per row, the row held in shared memory ------------------------------------------
// Row t is split into C segments of `seg` elements (seg % 8 == 0, V % 8 == 0); block r of the cluster copies its
// segment into shared memory (cp.async in 4 groups, the whole segment in flight), computes its max (lowest index
// on ties) and sum of exp relative to it from shared memory (base 2) as the groups land, the blocks exchange these
// through distributed shared memory and combine them in rank order (identical in every block: deterministic), and
// each block writes the gradient of its segment from shared memory: the logits are read from DRAM once. Every
// write comes after the cluster barrier that follows all of the cluster's reads, so dlogits may overlay the logits
// as in ce_row_kernel.
constexpr int kClusterThreads = 512;

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900  // (only the cluster kernel uses these)
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Wait until at most `pending` (0..3, a constant after unrolling) of this thread's groups are in flight.
__device__ __forceinline__ void cp_async_wait_pending(int pending) {
  switch (pending) {
    case 0: asm volatile("cp.async.wait_group 0;\n" ::: "memory"); break;
    case 1: asm volatile("cp.async.wait_group 1;\n" ::: "memory"); break;
    case 2: asm volatile("cp.async.wait_group 2;\n" ::: "memory"); break;
    default: asm volatile("cp.async.wait_group 3;\n" ::: "memory"); break;
  }
}
// 2^x, one MUFU.EX2 (subnormal results flush to 0).
__device__ __forceinline__ float ex2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// 4 consecutive elements (a quad) from shared memory / to global memory, aligned to the quad's size: a warp
// touches consecutive quads (no bank conflicts, coalesced stores).
__device__ __forceinline__ void smem_load4(const float* p, float* f) {
  const float4 a = *reinterpret_cast<const float4*>(p);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w;
}
__device__ __forceinline__ void smem_load4(const bf16* p, float* f) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
  f[0] = a.x, f[1] = a.y, f[2] = b.x, f[3] = b.y;
}
__device__ __forceinline__ void global_store4(float* p, const float* f) {
  *reinterpret_cast<float4*>(p) = make_float4(f[0], f[1], f[2], f[3]);
}
__device__ __forceinline__ void global_store4(bf16* p, const float* f) {
  uint2 u;
  *reinterpret_cast<__nv_bfloat162*>(&u.x) = __floats2bfloat162_rn(f[0], f[1]);
  *reinterpret_cast<__nv_bfloat162*>(&u.y) = __floats2bfloat162_rn(f[2], f[3]);
  *reinterpret_cast<uint2*>(p) = u;
}

#endif

template <typename IN, typename OUT>
__global__ void __launch_bounds__(kClusterThreads) ce_cluster_kernel(float* losses, int32_t* correct, OUT* dlogits,
                                                                     int64_t ld_out, const IN* logits, int64_t ld_in,
                                                                     const int32_t* targets, int64_t V, int64_t seg,
                                                                     float grad_scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(16) unsigned char smem_raw[];
  IN* s = reinterpret_cast<IN*>(smem_raw);
  __shared__ float sv[32];
  __shared__ int si[32];
  __shared__ float part[3];       // this block's max, sum of exp relative to it, argmax (int bits)
  __shared__ float comb[8 * 3];   // the cluster's partials, copied here
  const int C = static_cast<int>(__clusterSizeInBlocks());
  const int rank = static_cast<int>(__clusterRelativeBlockRank());
  const int64_t t = blockIdx.x / C;
  const int target = targets[t];
  const int64_t j0 = rank * seg;
  const int n = static_cast<int>(j0 < V ? (V - j0 < seg ? V - j0 : seg) : 0);  // elements of this segment
  const int quads = n / 4;
  OUT* d = dlogits ? dlogits + t * ld_out + j0 : nullptr;
  if (target < 0) {
    if (rank == 0 && threadIdx.x == 0) {
      if (losses) losses[t] = 0.0f;
      if (correct) correct[t] = 0;
    }
    if (d) {
      const float z[4] = {};
      for (int q = threadIdx.x; q < quads; q += blockDim.x) global_store4(d + 4 * q, z);
    }
    return;
  }
  const IN* x = logits + t * ld_in;
  float xt = 0.0f;
  if (rank == 0 && threadIdx.x == 0)  // read before the cluster barrier: no block has written yet
    xt = target < V ? to_f(x[target]) : __int_as_float(0x7fc00000);  // a bad target gives a NaN loss
  // The segment is copied in kStages cp.async groups, the max/sum pass starting on the first one (4 stages: 142 us
  // instead of 148 with one on H200, 441 x 151936 f32 -> bf16).
  constexpr int kStages = 4;
  const int chunks = n * static_cast<int>(sizeof(IN)) / 16;  // of 16 bytes
  constexpr int kQuadsPerChunk = 4 / static_cast<int>(sizeof(IN));
  {
    const char* src = reinterpret_cast<const char*>(x + j0);
#pragma unroll
    for (int st = 0; st < kStages; ++st) {
      for (int c = chunks * st / kStages + threadIdx.x; c < chunks * (st + 1) / kStages; c += blockDim.x)
        cp_async16(smem_raw + 16 * c, src + 16 * c);
      cp_async_commit();
    }
  }
  // One pass over the segment (stage by stage as the copies land): running max (lowest index among equal maxima)
  // and the sum of exp relative to it, in base 2 (exp(x - m) = exp2(x log2e - m log2e), one FFMA and one MUFU.EX2
  // an element).
  constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
  float mx = -INFINITY, mxl = 0.0f, sum = 0.0f;  // mxl = mx * log2e (0 while mx = -inf: exp2 gives 0 or NaN)
  int idx = 0x7fffffff;
#pragma unroll
  for (int st = 0; st < kStages; ++st) {
    cp_async_wait_pending(kStages - 1 - st);
    __syncthreads();  // stage st of every thread landed
    const int q1 = chunks * (st + 1) / kStages * kQuadsPerChunk;
    for (int q = chunks * st / kStages * kQuadsPerChunk + threadIdx.x; q < q1; q += blockDim.x) {
      float f[4];
      smem_load4(s + 4 * q, f);
      const float qm = fmaxf(fmaxf(f[0], f[1]), fmaxf(f[2], f[3]));
      if (qm > mx) {
        idx = static_cast<int>(j0) + 4 * q + (f[0] == qm ? 0 : f[1] == qm ? 1 : f[2] == qm ? 2 : 3);
        const float qml = qm * kLog2e;
        if (mx != -INFINITY) sum *= exp2f(mxl - qml);
        mx = qm;
        mxl = qml;
      }
#pragma unroll
      for (int k = 0; k < 4; ++k) sum += ex2_ftz(fmaf(f[k], kLog2e, -mxl));
    }
  }
  const float my_max = mx, my_maxl = mxl;
  block_argmax(mx, idx, sv, si);
  if (my_max != -INFINITY) sum *= exp2f(my_maxl - mx * kLog2e);
  sum = block_sum(sum, sv);
  if (threadIdx.x == 0) {
    part[0] = mx;
    part[1] = sum;  // relative to mx * log2e
    part[2] = __int_as_float(idx);
  }
  __cluster_barrier_arrive();
  __cluster_barrier_wait();  // all reads of the cluster's logits and all partials done
  if (threadIdx.x < C * 3) {
    const float* rp = static_cast<const float*>(__cluster_map_shared_rank(part, threadIdx.x / 3));
    comb[threadIdx.x] = rp[threadIdx.x % 3];
  }
  __cluster_barrier_arrive();  // done with the other blocks' shared memory (waited for before exiting)
  __syncthreads();
  float M = -INFINITY;
  int am = 0x7fffffff;
  for (int r = 0; r < C; ++r)
    if (comb[3 * r] > M) {
      M = comb[3 * r];
      am = __float_as_int(comb[3 * r + 2]);
    }
  const float ML = M * kLog2e;
  float S = 0.0f;
  for (int r = 0; r < C; ++r)
    S += comb[3 * r] != -INFINITY ? comb[3 * r + 1] * exp2f(comb[3 * r] * kLog2e - ML) : comb[3 * r + 1];
  const float lse2 = ML + log2f(S);  // log2(sum of exp2(x log2e)) = lse * log2e
  if (rank == 0 && threadIdx.x == 0) {
    if (losses) losses[t] = lse2 * kLn2 - xt;
    if (correct) correct[t] = am == target ? 1 : 0;
  }
  if (d) {
    for (int q = threadIdx.x; q < quads; q += blockDim.x) {
      float f[4];
      smem_load4(s + 4 * q, f);
#pragma unroll
      for (int k = 0; k < 4; ++k) f[k] = grad_scale * ex2_ftz(fmaf(f[k], kLog2e, -lse2));
      const unsigned kt = static_cast<unsigned>(target - (static_cast<int>(j0) + 4 * q));  // the target's quad
      if (kt < 4u) {
#pragma unroll
        for (int k = 0; k < 4; ++k)
          if (static_cast<unsigned>(k) == kt) f[k] -= grad_scale;
      }
      global_store4(d + 4 * q, f);
    }
  }
  __cluster_barrier_wait();
#endif
}

// The cluster kernel when it applies: an sm_90+ device, V % 8 == 0, 16-byte aligned rows in and out, and a row
// that fits the shared memory of 8 blocks. Segments of at most kSegTarget bytes (2-3 blocks per SM; the fewest
// blocks per row that get there), or up to kSegMax with 8 blocks. Tuning::ce_kernel = v1 (key ce_kernel) selects
// ce_row_kernel (benchmarks).
constexpr int64_t kSegTarget = 80 * 1024, kSegMax = 200 * 1024;

bool cluster_capable() {
  if (kernels::tuning().ce_kernel == Tuning::Generation::v1) return false;
  static const bool ok = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    return major >= 9;
  }();
  return ok;
}

template <typename IN, typename OUT>
bool launch_cluster(float* losses, int32_t* correct, void* dlogits, int64_t ld_out, const void* logits, int64_t ld_in,
                    const int32_t* targets, int64_t T, int64_t V, float grad_scale) {
  if (!cluster_capable() || V % 8 != 0 || V >= (int64_t{1} << 31) || T * 8 >= (int64_t{1} << 31)) return false;
  if (!aligned16(logits) || (ld_in * static_cast<int64_t>(sizeof(IN))) % 16 != 0) return false;
  if (dlogits && (!aligned16(dlogits) || (ld_out * static_cast<int64_t>(sizeof(OUT))) % 16 != 0)) return false;
  int C = 1;
  int64_t seg = 0;
  for (; C <= 8; ++C) {
    seg = ((V + C - 1) / C + 7) / 8 * 8;
    if (seg * static_cast<int64_t>(sizeof(IN)) <= kSegTarget) break;
  }
  if (C > 8) {
    C = 8;
    seg = ((V + 7) / 8 + 7) / 8 * 8;
    if (seg * static_cast<int64_t>(sizeof(IN)) > kSegMax) return false;
  }
  const int smem = static_cast<int>(seg * static_cast<int64_t>(sizeof(IN)));
  const auto kernel = ce_cluster_kernel<IN, OUT>;
  static bool configured = false;  // per instantiation
  if (!configured) {
    // The largest shared-memory carveout: 3 blocks of a 151936-wide f32 row's eighth (74 KiB) per SM.
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSegMax)) !=
            cudaSuccess ||
        cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared) !=
            cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    configured = true;
  }
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(T * C));
  cfg.blockDim = dim3(kClusterThreads);
  cfg.dynamicSmemBytes = static_cast<size_t>(smem);
  cfg.stream = stream();
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(C);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  (void)cudaLaunchKernelEx(&cfg, kernel, losses, correct, static_cast<OUT*>(dlogits), ld_out,
                           static_cast<const IN*>(logits), ld_in, targets, V, seg, grad_scale);
  return true;  // a failed launch leaves its error for check_launch
}

template <typename IN, typename OUT>
void launch_typed(float* losses, int32_t* correct, void* dlogits, int64_t ld_out, const void* logits, int64_t ld_in,
                  const int32_t* targets, int64_t T, int64_t V, float grad_scale) {
  if (launch_cluster<IN, OUT>(losses, correct, dlogits, ld_out, logits, ld_in, targets, T, V, grad_scale)) return;
  ce_row_kernel<IN, OUT><<<static_cast<unsigned>(T), kRowThreads, 0, stream()>>>(
      losses, correct, static_cast<OUT*>(dlogits), ld_out, static_cast<const IN*>(logits), ld_in, targets, V,
      grad_scale);
}

}  // namespace

void launch_ce_rows(float* losses, int32_t* correct, void* dlogits, bool dlogits_bf16, int64_t ld_out,
                    const void* logits, bool logits_bf16, int64_t ld_in, const int32_t* targets, int64_t T, int64_t V,
                    float grad_scale) {
  if (T == 0) return;
  if (logits_bf16) {
    if (dlogits_bf16) launch_typed<bf16, bf16>(losses, correct, dlogits, ld_out, logits, ld_in, targets, T, V, grad_scale);
    else launch_typed<bf16, float>(losses, correct, dlogits, ld_out, logits, ld_in, targets, T, V, grad_scale);
  } else {
    if (dlogits_bf16) launch_typed<float, bf16>(losses, correct, dlogits, ld_out, logits, ld_in, targets, T, V, grad_scale);
    else launch_typed<float, float>(losses, correct, dlogits, ld_out, logits, ld_in, targets, T, V, grad_scale);
  }
  check_launch("cross-entropy rows");
}

}  // namespace cotune::kernels::cuda
