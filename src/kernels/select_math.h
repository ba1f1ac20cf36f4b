// The arithmetic of on-device token selection (kernels/select_ops.h), shared by the CUDA kernel and its CPU twin so
// that both pick the same id from the same logits: every operation here is exactly rounded IEEE (division, the
// multiply-adds written as fma, no library exp), so host and device compute the same bits. Files that include this
// on the host compile with -ffp-contract=off (a contracted a * b + c would round once instead of twice).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "base/half.h"
#include "base/rng.h"

namespace cotune::kernels::select_math {

// Threads a row is split over (the kernel's block size; the CPU twin walks the same chunks in the same order).
constexpr int kThreads = 1024;

// Per-row parameters of a selection, 32 bytes (an i32 [n, 8] tensor on the device).
struct Params {
  uint64_t seed = 0;       // Philox key of the row's request
  uint64_t draw = 0;       // index of this draw in the request's stream (= tokens sampled before)
  float temperature = 1;   // > 0 when sampling
  float top_p = 1;         // (0, 1]; 1: off
  int32_t top_k = 0;       // 0: off
  int32_t greedy = 1;      // 1: arg-max (lowest id on ties), the other fields unused
};
static_assert(sizeof(Params) == 32, "Params is copied as 8 i32 a row");

// The draw's uniform in [0, 1): word `draw` of the Philox stream (seed, 0), as base/rng.h's Rng hands them out, so
// the n-th sampled token of a request uses the same number as the host sampler's n-th draw.
COTUNE_HD inline float draw_uniform(uint64_t seed, uint64_t draw) {
  const Philox4 b = philox4x32(seed, draw / 4);
  return uniform01(b.v[draw % 4]);
}

// A float as an unsigned key with the same order (-inf lowest); NaN is treated as -inf by the callers.
COTUNE_HD inline uint32_t order_key(float y) {
  uint32_t bits;
  std::memcpy(&bits, &y, sizeof(bits));
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

COTUNE_HD inline double fma_d(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

COTUNE_HD inline float div_f(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// exp(x) for x <= 0 in double: x = k ln2 + r (|r| <= ln2 / 2, Cody-Waite split), exp(r) by its Taylor series to
// r^14 in Horner form (relative error ~1e-16), times 2^k. Deterministic across host and device.
COTUNE_HD inline double exp_nonpositive(double x) {
  if (!(x > -740.0)) return 0.0;  // also -inf and NaN
  constexpr double kInvLn2 = 1.4426950408889634, kLn2Hi = 6.93147180369123816490e-01,
                   kLn2Lo = 1.90821492927058770002e-10;
  const double k = floor(fma_d(x, kInvLn2, 0.5));
  double r = fma_d(-k, kLn2Hi, x);
  r = fma_d(-k, kLn2Lo, r);
  double p = 1.0 / 87178291200.0;  // 1/14!
  constexpr double kInvFact[14] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                   1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,       1.0 / 720.0,
                                   1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,          1.0 / 2.0,
                                   1.0,                1.0};
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int i = 0; i < 14; ++i) p = fma_d(p, r, kInvFact[i]);
  return ldexp(p, static_cast<int>(k));
}

// Ids [begin, end) of thread t's chunk of a row of `vocab` ids.
COTUNE_HD inline void chunk(int64_t vocab, int t, int64_t& begin, int64_t& end) {
  const int64_t per = (vocab + kThreads - 1) / kThreads;
  begin = per * t;
  end = begin + per;
  if (begin > vocab) begin = vocab;
  if (end > vocab) end = vocab;
}

// The scaled logit of a sampled row: logit / temperature, NaN as -inf.
COTUNE_HD inline float scaled(float z, float temperature) {
  const float y = div_f(z, temperature);
  return y != y ? -INFINITY : y;
}

}  // namespace cotune::kernels::select_math
