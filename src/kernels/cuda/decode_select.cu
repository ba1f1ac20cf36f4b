// Token selection for a batch of rows on the device (kernels/select_ops.h): one block of select_math::kThreads
// threads a row. Its CPU twin is cpu/select.cpp: same chunks, same summation orders, same arithmetic; keep the two
// in step.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/decode_launch.h"
#include "kernels/select_math.h"

namespace cotune::kernels::cuda {

namespace {

namespace sm = select_math;
constexpr int kT = sm::kThreads;

__device__ __forceinline__ bool better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

// The block's arg-max of (v, i) (lowest i on ties), in every thread.
__device__ void block_argmax(float& v, int& i, float* sv, int* si) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (better(ov, oi, v, i)) v = ov, i = oi;
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) sv[warp] = v, si[warp] = i;
  __syncthreads();
  if (warp == 0) {
    v = sv[lane], i = si[lane];  // kT / 32 == 32 warps
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, v, o);
      const int oi = __shfl_xor_sync(0xffffffffu, i, o);
      if (better(ov, oi, v, i)) v = ov, i = oi;
    }
    if (lane == 0) sv[0] = v, si[0] = i;
  }
  __syncthreads();
  v = sv[0], i = si[0];
  __syncthreads();
}

// The CPU twin's tree over the kT partial sums in `part` (shared); the result in every thread.
__device__ double block_tree_sum(double* part) {
  __syncthreads();
  for (int s = kT / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) part[threadIdx.x] = part[threadIdx.x] + part[threadIdx.x + s];
    __syncthreads();
  }
  const double r = part[0];
  __syncthreads();
  return r;
}

__global__ void __launch_bounds__(kT) select_kernel(int32_t* ids, const float* logits, int64_t stride, int64_t vocab,
                                                    const sm::Params* params, double* scratch) {
  __shared__ float sv[32];
  __shared__ int si[32];
  __shared__ double part[kT];
  __shared__ unsigned long long s_count;
  __shared__ int s_pick, s_last;
  const int64_t row = blockIdx.x;
  const float* z = logits + row * stride;
  const sm::Params p = params[row];
  const int tid = threadIdx.x;
  int64_t b, e;
  sm::chunk(vocab, tid, b, e);

  // Order-free steps (arg-max, max, the weights) stride the row (coalesced); the sums walk the chunks.
  auto argmax_row = [&]() {
    float v = -INFINITY;
    int i = 0x7fffffff;
    for (int64_t j = tid; j < vocab; j += kT)
      if (better(z[j], static_cast<int>(j), v, i)) v = z[j], i = static_cast<int>(j);
    block_argmax(v, i, sv, si);
    return i == 0x7fffffff ? 0 : i;
  };
  if (p.greedy || vocab <= 0) {
    const int i = vocab <= 0 ? 0 : argmax_row();
    if (tid == 0) ids[row] = i;
    return;
  }
  // The maximum of the scaled row (exact, so any order).
  float m = -INFINITY;
  for (int64_t j = tid; j < vocab; j += kT) m = fmaxf(m, sm::scaled(z[j], p.temperature));
  {
    int dummy = 0;
    block_argmax(m, dummy, sv, si);
  }
  if (m == -INFINITY) {
    const int i = argmax_row();
    if (tid == 0) ids[row] = i;
    return;
  }
  double* w = scratch + row * vocab;
  for (int64_t j = tid; j < vocab; j += kT)
    w[j] = sm::exp_nonpositive(static_cast<double>(sm::scaled(z[j], p.temperature)) - static_cast<double>(m));
  __syncthreads();  // the chunk walks read weights other threads wrote
  auto key = [&](int64_t j) { return sm::order_key(sm::scaled(z[j], p.temperature)); };
  auto chunk_sum = [&](uint32_t t) {
    double s = 0.0;
    for (int64_t j = b; j < e; ++j)
      if (key(j) >= t) s += w[j];
    return s;
  };
  auto mass = [&](uint32_t t) {
    part[tid] = chunk_sum(t);
    return block_tree_sum(part);
  };
  auto count = [&](uint32_t t) {
    unsigned long long c = 0;
    for (int64_t j = b; j < e; ++j) c += key(j) >= t ? 1 : 0;
    if (tid == 0) s_count = 0;
    __syncthreads();
    atomicAdd(&s_count, c);
    __syncthreads();
    const unsigned long long r = s_count;
    __syncthreads();
    return static_cast<int64_t>(r);
  };
  uint32_t kmin = 0;
  if (p.top_k > 0 && p.top_k < vocab) {
    for (int bit = 31; bit >= 0; --bit) {
      const uint32_t cand = kmin | (1u << bit);
      if (count(cand) >= p.top_k) kmin = cand;
    }
  }
  uint32_t theta = kmin;
  if (p.top_p < 1.0f) {
    const double target = static_cast<double>(p.top_p) * mass(kmin);
    uint32_t t = 0;
    for (int bit = 31; bit >= 0; --bit) {
      const uint32_t cand = t | (1u << bit);
      if (mass(cand > kmin ? cand : kmin) >= target) t = cand;
    }
    theta = t > kmin ? t : kmin;
  }
  const double mine = chunk_sum(theta);
  part[tid] = mine;
  __syncthreads();
  __shared__ double pre[kT];
  if (tid == 0) {  // the exclusive prefix of the chunk sums, in chunk order
    double s = 0.0;
    for (int t = 0; t < kT; ++t) {
      pre[t] = s;
      s += part[t];
    }
    s_pick = 0x7fffffff;
    s_last = -1;
  }
  const double total = block_tree_sum(part);  // barriers inside: pre, s_pick and s_last are visible after it
  if (!(total > 0.0)) {
    const int i = argmax_row();
    if (tid == 0) ids[row] = i;
    return;
  }
  const double r = static_cast<double>(sm::draw_uniform(p.seed, p.draw)) * total;
  double cum = pre[tid];
  int last = -1;
  for (int64_t j = b; j < e; ++j) {
    if (key(j) < theta || !(w[j] > 0.0)) continue;
    cum += w[j];
    last = static_cast<int>(j);
    if (r < cum) {
      atomicMin(&s_pick, static_cast<int>(j));
      break;
    }
  }
  if (last >= 0) atomicMax(&s_last, last);
  __syncthreads();
  if (tid == 0) {
    // No hit (rounding at the top end): the last kept id. Its chunk walked to its end only when it had no hit,
    // and then every later chunk had none either, so s_last is the largest kept id.
    ids[row] = s_pick != 0x7fffffff ? s_pick : s_last;
  }
}

}  // namespace

void launch_select_tokens(int32_t* ids, const float* logits, int64_t n, int64_t stride, int64_t vocab,
                          const void* params, void* scratch) {
  if (n == 0) return;
  select_kernel<<<static_cast<unsigned>(n), kT, 0, stream()>>>(ids, logits, stride, vocab,
                                                               static_cast<const sm::Params*>(params),
                                                               static_cast<double*>(scratch));
  check_launch("select_tokens");
}

}  // namespace cotune::kernels::cuda
