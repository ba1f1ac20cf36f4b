// RMSNorm (HF Qwen2RMSNorm rounding) and rotary embedding (HF rotate-half, bf16 tables) on CUDA.
#include "kernels/cuda/common.cuh"

namespace cotune::kernels::cuda {

namespace {

constexpr int kRowsPerBlock = 8;  // one warp per row

// ---- RMSNorm forward ----------------------------------------------------------------------------------
// inp bf16 [T,C], weight bf16 [C] -> out bf16 [T,C] = bf16(w * bf16(x * rstd)), rstd f32 [T] = 1/sqrt(mean(x^2)+eps).
// One warp per row; the row is read twice (the second time from L1/L2).
template <bool VEC>
__global__ void rmsnorm_forward_kernel(bf16* __restrict__ out, float* __restrict__ rstd, const bf16* __restrict__ inp,
                                       const bf16* __restrict__ weight, int64_t T, int64_t C, float eps) {
  const int lane = threadIdx.x % 32;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (t >= T) return;
  const bf16* x = inp + t * C;
  bf16* o = out + t * C;
  float ss = 0.0f;
  if (VEC) {
    for (int64_t i = lane * 8; i < C; i += 256) {
      float v[8];
      load8(x + i, v);
#pragma unroll
      for (int j = 0; j < 8; ++j) ss += v[j] * v[j];
    }
  } else {
    for (int64_t i = lane; i < C; i += 32) {
      float v = to_f(x[i]);
      ss += v * v;
    }
  }
  ss = warp_sum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
  if (lane == 0) rstd[t] = r;
  if (VEC) {
    for (int64_t i = lane * 8; i < C; i += 256) {
      float v[8], w[8];
      load8(x + i, v);
      load8(weight + i, w);
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = w[j] * round_bf(v[j] * r);
      store8(o + i, v);
    }
  } else {
    for (int64_t i = lane; i < C; i += 32) o[i] = __float2bfloat16_rn(to_f(weight[i]) * round_bf(to_f(x[i]) * r));
  }
}

// ---- RMSNorm backward ---------------------------------------------------------------------------------
// dinp bf16 [T,C] (= or +=) from dout bf16 [T,C], inp, weight, rstd f32 [T]:
//   g = bf16(w * dy) (the gradient of the bf16 normalised value), dx = r * g - x * r^3 * mean(x * g).
template <bool VEC>
__global__ void rmsnorm_backward_kernel(bf16* __restrict__ dinp, const bf16* __restrict__ dout,
                                        const bf16* __restrict__ inp, const bf16* __restrict__ weight,
                                        const float* __restrict__ rstd, int64_t T, int64_t C, bool accumulate) {
  const int lane = threadIdx.x % 32;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (t >= T) return;
  const bf16* x = inp + t * C;
  const bf16* dy = dout + t * C;
  bf16* dx = dinp + t * C;
  const float r = rstd[t];
  float dot = 0.0f;
  if (VEC) {
    for (int64_t i = lane * 8; i < C; i += 256) {
      float v[8], w[8], d[8];
      load8(x + i, v);
      load8(weight + i, w);
      load8(dy + i, d);
#pragma unroll
      for (int j = 0; j < 8; ++j) dot += round_bf(w[j] * d[j]) * v[j];
    }
  } else {
    for (int64_t i = lane; i < C; i += 32) dot += round_bf(to_f(weight[i]) * to_f(dy[i])) * to_f(x[i]);
  }
  dot = warp_sum(dot);
  const float m = dot / static_cast<float>(C) * r * r * r;
  if (VEC) {
    for (int64_t i = lane * 8; i < C; i += 256) {
      float v[8], w[8], d[8], acc[8];
      load8(x + i, v);
      load8(weight + i, w);
      load8(dy + i, d);
      if (accumulate) load8(dx + i, acc);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float g = r * round_bf(w[j] * d[j]) - v[j] * m;
        v[j] = accumulate ? acc[j] + round_bf(g) : g;
      }
      store8(dx + i, v);
    }
  } else {
    for (int64_t i = lane; i < C; i += 32) {
      const float g = r * round_bf(to_f(weight[i]) * to_f(dy[i])) - to_f(x[i]) * m;
      dx[i] = __float2bfloat16_rn(accumulate ? to_f(dx[i]) + round_bf(g) : g);
    }
  }
}

// ---- rotary embedding -----------------------------------------------------------------------------------
struct InvFreq {
  float v[512];
};

// x bf16 [T,NH,D] in place, positions i32 [T]. One block per token; cos/sin of the token's D/2 angles are
// computed once into shared memory (fp32, rounded to bf16 as HF's tables), then every head is rotated:
//   o1 = bf16(bf16(x1*c) - bf16(x2*s)),  o2 = bf16(bf16(x2*c) + bf16(x1*s)),  s -> -s for the backward.
__global__ void rope_kernel(bf16* __restrict__ x, const int32_t* __restrict__ positions, int64_t NH, int64_t D,
                            const __grid_constant__ InvFreq inv_freq, float sign) {
  __shared__ float cs[512], sn[512];
  const int64_t t = blockIdx.x;
  const int64_t half = D / 2;
  const float pos = static_cast<float>(positions[t]);
  for (int64_t j = threadIdx.x; j < half; j += blockDim.x) {
    const float angle = pos * inv_freq.v[j];
    float s, c;
    sincosf(angle, &s, &c);
    cs[j] = round_bf(c);
    sn[j] = sign * round_bf(s);
  }
  __syncthreads();
  bf16* xt = x + t * NH * D;
  // Two pairs (2j, 2j+1) per thread through bf16x2 accesses when D/2 is even.
  if (half % 2 == 0) {
    const int64_t pairs = half / 2;
    for (int64_t idx = threadIdx.x; idx < NH * pairs; idx += blockDim.x) {
      const int64_t h = idx / pairs, j = (idx % pairs) * 2;
      __nv_bfloat162* p1 = reinterpret_cast<__nv_bfloat162*>(xt + h * D + j);
      __nv_bfloat162* p2 = reinterpret_cast<__nv_bfloat162*>(xt + h * D + j + half);
      const float2 a = __bfloat1622float2(*p1), b = __bfloat1622float2(*p2);
      const float c0 = cs[j], c1 = cs[j + 1], s0 = sn[j], s1 = sn[j + 1];
      const float o1x = round_bf(a.x * c0) - round_bf(b.x * s0), o1y = round_bf(a.y * c1) - round_bf(b.y * s1);
      const float o2x = round_bf(b.x * c0) + round_bf(a.x * s0), o2y = round_bf(b.y * c1) + round_bf(a.y * s1);
      *p1 = __floats2bfloat162_rn(o1x, o1y);
      *p2 = __floats2bfloat162_rn(o2x, o2y);
    }
  } else {
    for (int64_t idx = threadIdx.x; idx < NH * half; idx += blockDim.x) {
      const int64_t h = idx / half, j = idx % half;
      bf16* v = xt + h * D;
      const float x1 = to_f(v[j]), x2 = to_f(v[j + half]);
      v[j] = __float2bfloat16_rn(round_bf(x1 * cs[j]) - round_bf(x2 * sn[j]));
      v[j + half] = __float2bfloat16_rn(round_bf(x2 * cs[j]) + round_bf(x1 * sn[j]));
    }
  }
}

}  // namespace

void launch_rope(void* x, const int32_t* positions, int64_t T, int64_t NH, int64_t D, const float* inv_freq,
                 float sign) {
  if (T == 0 || NH == 0) return;
  InvFreq inv{};
  for (int64_t j = 0; j < D / 2 && j < 512; ++j) inv.v[j] = inv_freq[j];
  rope_kernel<<<static_cast<unsigned>(T), 256, 0, stream()>>>(static_cast<bf16*>(x), positions, NH, D, inv, sign);
  check_launch("rope");
}

void launch_rmsnorm_forward(void* out, float* rstd, const void* inp, const void* weight, int64_t T, int64_t C,
                            float eps) {
  if (T == 0) return;
  const bool vec = C % 8 == 0 && aligned16(out) && aligned16(inp) && aligned16(weight);
  const unsigned blocks = blocks_for(T, kRowsPerBlock);
  auto o = static_cast<bf16*>(out);
  auto in = static_cast<const bf16*>(inp);
  auto w = static_cast<const bf16*>(weight);
  if (vec) rmsnorm_forward_kernel<true><<<blocks, 32 * kRowsPerBlock, 0, stream()>>>(o, rstd, in, w, T, C, eps);
  else rmsnorm_forward_kernel<false><<<blocks, 32 * kRowsPerBlock, 0, stream()>>>(o, rstd, in, w, T, C, eps);
  check_launch("rmsnorm_forward");
}

void launch_rmsnorm_backward(void* dinp, const void* dout, const void* inp, const void* weight, const float* rstd,
                             int64_t T, int64_t C, bool accumulate) {
  if (T == 0) return;
  const bool vec = C % 8 == 0 && aligned16(dinp) && aligned16(dout) && aligned16(inp) && aligned16(weight);
  const unsigned blocks = blocks_for(T, kRowsPerBlock);
  auto dx = static_cast<bf16*>(dinp);
  auto dy = static_cast<const bf16*>(dout);
  auto in = static_cast<const bf16*>(inp);
  auto w = static_cast<const bf16*>(weight);
  if (vec)
    rmsnorm_backward_kernel<true><<<blocks, 32 * kRowsPerBlock, 0, stream()>>>(dx, dy, in, w, rstd, T, C, accumulate);
  else
    rmsnorm_backward_kernel<false><<<blocks, 32 * kRowsPerBlock, 0, stream()>>>(dx, dy, in, w, rstd, T, C, accumulate);
  check_launch("rmsnorm_backward");
}

}  // namespace cotune::kernels::cuda
