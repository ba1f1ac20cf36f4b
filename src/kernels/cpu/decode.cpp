// CPU reference of kernels/decode_ops.h: KV-cache writes and attention of new tokens against the cache.
// The arithmetic follows cpu/attention.cpp step for step (fp32 dot products, max-subtracted exp, the sum in
// double), so decoding with the cache gives the logits of recomputing the whole sequence.
#include <algorithm>
#include <limits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/kv_paging.h"

namespace cotune::kernels::cpu {

// k_cache, v_cache: rows of KV * D addressed by pg (kernels/kv_paging.h); k, v [T, KV, D].
void kv_cache_write(float* k_cache, float* v_cache, const float* k, const float* v, const int32_t* slot,
                    const int32_t* pos, int64_t T, const KvPaging& pg, int64_t KV, int64_t D) {
  const size_t row = static_cast<size_t>(KV * D) * sizeof(float);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t dst = kv_row(pg, slot[t], pos[t]) * KV * D;
    std::memcpy(k_cache + dst, k + t * KV * D, row);
    std::memcpy(v_cache + dst, v + t * KV * D, row);
  }
}

// out[T,H,D], q[T,H,D]; query t reads slot[t]'s cache rows [0, pos[t]].
void cached_attention_forward(float* out, const float* q, const float* k_cache, const float* v_cache,
                              const int32_t* slot, const int32_t* pos, int64_t T, const KvPaging& pg, int64_t H,
                              int64_t KV, int64_t D, float scale, int64_t window) {
  const int64_t group = H / KV;
#pragma omp parallel
  {
    std::vector<float> scores;
#pragma omp for schedule(dynamic) collapse(2)
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t n = static_cast<int64_t>(pos[t]) + 1, kvh = h / group;
        // Sliding window W > 0: only the W newest positions (as attention_forward).
        const int64_t j0 = window > 0 ? std::max<int64_t>(0, n - window) : 0;
        scores.resize(static_cast<size_t>(n));
        const float* qi = q + (t * H + h) * D;
        float mx = -INFINITY;
        for (int64_t j = j0; j < n; ++j) {
          const float* kj = k_cache + (kv_row(pg, slot[t], j) * KV + kvh) * D;
          float dot = 0.0f;
          for (int64_t d = 0; d < D; ++d) dot += qi[d] * kj[d];
          dot *= scale;
          scores[static_cast<size_t>(j)] = dot;
          mx = std::max(mx, dot);
        }
        double sum = 0.0;
        for (int64_t j = j0; j < n; ++j) {
          const float e = std::exp(scores[static_cast<size_t>(j)] - mx);
          scores[static_cast<size_t>(j)] = e;
          sum += e;
        }
        const float inv = static_cast<float>(1.0 / sum);
        float* oi = out + (t * H + h) * D;
        for (int64_t d = 0; d < D; ++d) oi[d] = 0.0f;
        for (int64_t j = j0; j < n; ++j) {
          const float p = scores[static_cast<size_t>(j)] * inv;
          const float* vj = v_cache + (kv_row(pg, slot[t], j) * KV + kvh) * D;
          for (int64_t d = 0; d < D; ++d) oi[d] += p * vj[d];
        }
      }
    }
  }
}

void argmax_advance(const float* logits, int64_t vocab, int32_t* ids, int32_t* pos, int32_t* tokens, int32_t* count) {
  // (v, i) beats (bv, bi): a larger value, or the same value at a lower id; NaN never wins (as the CUDA kernel).
  float bv = -std::numeric_limits<float>::infinity();
  int32_t bi = std::numeric_limits<int32_t>::max();
  for (int64_t j = 0; j < vocab; ++j) {
    const float v = logits[j];
    if (v > bv || (v == bv && j < bi)) {
      bv = v;
      bi = static_cast<int32_t>(j);
    }
  }
  ids[0] = bi;
  tokens[count[0]] = bi;
  ++count[0];
  ++pos[0];
}

}  // namespace cotune::kernels::cpu
