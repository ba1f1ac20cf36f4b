// Cross-entropy (unfused reference and the chunked LM-head fusion) on the CPU, fp32.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace cotune::kernels::cpu {

namespace {
// logsumexp of one row, and the index of its maximum (lowest index on ties).
float row_lse(const float* x, int64_t V, int64_t* argmax) {
  float mx = x[0];
  int64_t am = 0;
  for (int64_t j = 1; j < V; ++j)
    if (x[j] > mx) {
      mx = x[j];
      am = j;
    }
  double sum = 0.0;
  for (int64_t j = 0; j < V; ++j) sum += std::exp(static_cast<double>(x[j] - mx));
  if (argmax) *argmax = am;
  return mx + static_cast<float>(std::log(sum));
}
}  // namespace

void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t T, int64_t V) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    if (targets[t] < 0) {
      losses[t] = 0.0f;
      continue;
    }
    const float* x = logits + t * V;
    losses[t] = row_lse(x, V, nullptr) - x[targets[t]];
  }
}

void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets, int64_t T, int64_t V,
                            float grad_scale) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    float* d = dlogits + t * V;
    if (targets[t] < 0) {
      std::fill(d, d + V, 0.0f);
      continue;
    }
    const float* x = logits + t * V;
    const float l = row_lse(x, V, nullptr);
    for (int64_t j = 0; j < V; ++j) d[j] = grad_scale * std::exp(x[j] - l);
    d[targets[t]] -= grad_scale;
  }
}

void lm_head_cross_entropy(float* losses, int32_t* correct, float* dhidden, const float* hidden, const float* weight,
                           const int32_t* targets, int64_t T, int64_t C, int64_t V, float grad_scale,
                           float* workspace, int64_t chunk) {
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t n = std::min(chunk, T - t0);
    float* logits = workspace;  // [n, V]
    matmul(logits, hidden + t0 * C, weight, n, V, C, false, true, 1.0f, 0.0f);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      const int64_t t = t0 + r;
      float* x = logits + r * V;
      if (targets[t] < 0) {
        losses[t] = 0.0f;
        if (correct) correct[t] = 0;
        if (dhidden) std::fill(x, x + V, 0.0f);
        continue;
      }
      int64_t am = 0;
      const float l = row_lse(x, V, &am);
      losses[t] = l - x[targets[t]];
      if (correct) correct[t] = am == targets[t] ? 1 : 0;
      if (dhidden) {
        for (int64_t j = 0; j < V; ++j) x[j] = grad_scale * std::exp(x[j] - l);
        x[targets[t]] -= grad_scale;
      }
    }
    if (dhidden) matmul(dhidden + t0 * C, logits, weight, n, C, V, false, false, 1.0f, 0.0f);
  }
}

}  // namespace cotune::kernels::cpu
