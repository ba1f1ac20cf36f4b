// Cross-entropy row kernel (lse, argmax, loss, softmax gradient), shared by the unfused cross-entropy and the
// chunked LM-head fusion (cross_entropy.cpp).
#include "kernels/cuda/common.cuh"

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

template <typename IN, typename OUT>
void launch_typed(float* losses, int32_t* correct, void* dlogits, int64_t ld_out, const void* logits, int64_t ld_in,
                  const int32_t* targets, int64_t T, int64_t V, float grad_scale) {
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
