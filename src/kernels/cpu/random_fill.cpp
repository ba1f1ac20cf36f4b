// Random normal fill on the CPU (fp32 reference of kernels/cuda/random_fill.cu): the model's random init.
#include <algorithm>
#include <cmath>

#include "base/rng.h"
#include "kernels/cpu/cpu_ops.h"

namespace cotune::kernels::cpu {

void fill_normal(float* out, int64_t n, uint64_t key, float std) {
  // Elements 2j and 2j+1 are one Box-Muller pair from Philox block j: the same numbers for any thread split.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += 2) {
    const Philox4 r = philox4x32(key, static_cast<uint64_t>(i) / 2);
    const float u1 = std::max(uniform01(r.v[0]), 1e-7f), u2 = uniform01(r.v[1]);
    const float rad = std::sqrt(-2.0f * std::log(u1));
    out[i] = std * rad * std::cos(6.2831853f * u2);
    if (i + 1 < n) out[i + 1] = std * rad * std::sin(6.2831853f * u2);
  }
}

}  // namespace cotune::kernels::cpu
