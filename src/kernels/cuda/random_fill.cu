// Random normal fill on the GPU (twin of kernels/cpu/random_fill.cpp): a 32B model's random weights are drawn
// where they live instead of on the host. Elements 2j and 2j+1 are one Box-Muller pair from Philox block j;
// logf / sinf / cosf may differ from glibc's in the last ulp, so values equal the CPU's to ~1e-6 relative.
#include <algorithm>

#include "base/rng.h"
#include "kernels/cuda/common.cuh"

namespace cotune::kernels::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void fill_normal_kernel(T* out, int64_t n, uint64_t key, float std) {
  const int64_t pairs = (n + 1) / 2;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < pairs;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Philox4 r = philox4x32(key, static_cast<uint64_t>(j));
    const float u1 = fmaxf(uniform01(r.v[0]), 1e-7f), u2 = uniform01(r.v[1]);
    const float rad = sqrtf(-2.0f * logf(u1));
    float s, c;
    sincosf(6.2831853f * u2, &s, &c);
    out[2 * j] = from_f<T>(std * rad * c);
    if (2 * j + 1 < n) out[2 * j + 1] = from_f<T>(std * rad * s);
  }
}

}  // namespace

void launch_fill_normal(void* out, bool is_bf16, int64_t n, uint64_t key, float std) {
  if (n == 0) return;
  const unsigned blocks = std::min(blocks_for((n + 1) / 2, kThreads), 1u << 20);  // grid-stride beyond
  if (is_bf16)
    fill_normal_kernel<bf16><<<blocks, kThreads, 0, stream()>>>(static_cast<bf16*>(out), n, key, std);
  else
    fill_normal_kernel<float><<<blocks, kThreads, 0, stream()>>>(static_cast<float*>(out), n, key, std);
  check_launch("fill_normal");
}

}  // namespace cotune::kernels::cuda
