// CPU twin of the selection kernel (cuda/decode_select.cu): the same steps over the same per-thread chunks, the
// same summation orders (sequential within a chunk, the kernel's tree over the chunks' sums, a sequential
// prefix for the draw), the same exactly rounded arithmetic (kernels/select_math.h; compiled with
// -ffp-contract=off). Keep the two in step.
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/select_ops.h"

namespace cotune::kernels {

namespace sm = select_math;

namespace {

// (v, i) beats (bv, bi): larger value, or the same value at a lower id; NaN never wins.
bool better(float v, int32_t i, float bv, int32_t bi) { return v > bv || (v == bv && i < bi); }

int32_t argmax_row(const float* z, int64_t vocab) {
  float bv = -INFINITY;
  int32_t bi = 0x7fffffff;
  for (int64_t i = 0; i < vocab; ++i)
    if (better(z[i], static_cast<int32_t>(i), bv, bi)) bv = z[i], bi = static_cast<int32_t>(i);
  return bi == 0x7fffffff ? 0 : bi;
}

// The kernel's tree over kThreads partial sums: for s = kThreads/2 .. 1: part[i] += part[i + s] (i < s).
double tree_sum(std::array<double, sm::kThreads>& part) {
  for (int s = sm::kThreads / 2; s > 0; s >>= 1)
    for (int i = 0; i < s; ++i) part[static_cast<size_t>(i)] += part[static_cast<size_t>(i + s)];
  return part[0];
}

}  // namespace

int32_t select_row_reference(const float* z, int64_t vocab, const SelectParams& p) {
  if (vocab <= 0) return 0;
  if (p.greedy) return argmax_row(z, vocab);
  const float T = p.temperature;
  float m = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i) m = std::fmax(m, sm::scaled(z[i], T));
  if (m == -INFINITY) return argmax_row(z, vocab);
  std::vector<double> w(static_cast<size_t>(vocab));
  std::vector<uint32_t> key(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) {
    const float y = sm::scaled(z[i], T);
    key[static_cast<size_t>(i)] = sm::order_key(y);
    w[static_cast<size_t>(i)] = sm::exp_nonpositive(static_cast<double>(y) - static_cast<double>(m));
  }
  std::array<double, sm::kThreads> part{};
  // Sum of w over ids whose key >= t, chunk by chunk; the chunk sums are left in part (then tree-summed).
  auto chunk_sums = [&](uint32_t t) {
    for (int th = 0; th < sm::kThreads; ++th) {
      int64_t b, e;
      sm::chunk(vocab, th, b, e);
      double s = 0.0;
      for (int64_t i = b; i < e; ++i)
        if (key[static_cast<size_t>(i)] >= t) s += w[static_cast<size_t>(i)];
      part[static_cast<size_t>(th)] = s;
    }
  };
  auto mass = [&](uint32_t t) {
    chunk_sums(t);
    return tree_sum(part);
  };
  auto count = [&](uint32_t t) {
    int64_t c = 0;
    for (int64_t i = 0; i < vocab; ++i) c += key[static_cast<size_t>(i)] >= t ? 1 : 0;
    return c;
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
  chunk_sums(theta);
  std::array<double, sm::kThreads> sums = part;
  const double total = tree_sum(part);
  if (!(total > 0.0)) return argmax_row(z, vocab);
  const double r = static_cast<double>(sm::draw_uniform(p.seed, p.draw)) * total;
  double pre = 0.0;
  int32_t last = -1;
  for (int th = 0; th < sm::kThreads; ++th) {
    int64_t b, e;
    sm::chunk(vocab, th, b, e);
    double cum = pre;
    for (int64_t i = b; i < e; ++i) {
      if (key[static_cast<size_t>(i)] < theta || !(w[static_cast<size_t>(i)] > 0.0)) continue;
      cum += w[static_cast<size_t>(i)];
      last = static_cast<int32_t>(i);
      if (r < cum) return static_cast<int32_t>(i);
    }
    pre += sums[static_cast<size_t>(th)];
  }
  return last >= 0 ? last : argmax_row(z, vocab);  // rounding at the top end
}

namespace cpu {
void select_tokens(int32_t* ids, const float* logits, int64_t n, int64_t stride, int64_t vocab,
                   const SelectParams* params) {
#pragma omp parallel for schedule(dynamic) if (n > 1)
  for (int64_t r = 0; r < n; ++r) ids[r] = select_row_reference(logits + r * stride, vocab, params[r]);
}
}  // namespace cpu

}  // namespace cotune::kernels
