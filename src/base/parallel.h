// Data-parallel loops on the CPU (OpenMP). Kept in one place so the thread policy is set once.
#pragma once
#include <cstdint>

namespace cotune {

int cpu_threads();  // threads the CPU kernels use (OMP_NUM_THREADS or the core count)

// Calls fn(i) for i in [0, n) across threads; fn must not throw.
template <typename Fn>
void parallel_for(int64_t n, Fn&& fn) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) fn(i);
}

}  // namespace cotune
