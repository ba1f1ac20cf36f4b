// Causal grouped-query attention over packed variable-length sequences, CPU fp32 reference.
// Scores are formed one query row at a time (O(L) memory per thread); softmax in fp32 with the max
// subtracted; lse[H,T] saved for the backward pass, which recomputes the probabilities from it.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace cotune::kernels::cpu {

// The first key query i (of a sequence starting at `begin`) sees: causal, and with a sliding window of W > 0 only
// the W newest keys, itself included (transformers' sliding_window_causal: kv_idx > q_idx - W).
static int64_t first_key(int64_t begin, int64_t i, int64_t window) {
  return window > 0 ? std::max(begin, i - window + 1) : begin;
}

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* cu_seqlens, int64_t S, int64_t T, int64_t H, int64_t KV, int64_t D, float scale, int64_t window) {
  const int64_t group = H / KV;
#pragma omp parallel
  {
    std::vector<float> scores;
#pragma omp for schedule(dynamic) collapse(2)
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t begin = cu_seqlens[s], end = cu_seqlens[s + 1];
        const int64_t kvh = h / group;
        scores.resize(static_cast<size_t>(std::max<int64_t>(end - begin, 1)));
        for (int64_t i = begin; i < end; ++i) {
          const float* qi = q + (i * H + h) * D;
          const int64_t lo = first_key(begin, i, window);
          float mx = -INFINITY;
          for (int64_t j = lo; j <= i; ++j) {
            const float* kj = k + (j * KV + kvh) * D;
            float dot = 0.0f;
            for (int64_t d = 0; d < D; ++d) dot += qi[d] * kj[d];
            dot *= scale;
            scores[static_cast<size_t>(j - begin)] = dot;
            mx = std::max(mx, dot);
          }
          double sum = 0.0;
          for (int64_t j = lo; j <= i; ++j) {
            float e = std::exp(scores[static_cast<size_t>(j - begin)] - mx);
            scores[static_cast<size_t>(j - begin)] = e;
            sum += e;
          }
          const float inv = static_cast<float>(1.0 / sum);
          float* oi = out + (i * H + h) * D;
          for (int64_t d = 0; d < D; ++d) oi[d] = 0.0f;
          for (int64_t j = lo; j <= i; ++j) {
            const float p = scores[static_cast<size_t>(j - begin)] * inv;
            const float* vj = v + (j * KV + kvh) * D;
            for (int64_t d = 0; d < D; ++d) oi[d] += p * vj[d];
          }
          lse[h * T + i] = mx + static_cast<float>(std::log(sum));
        }
      }
    }
  }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const int32_t* cu_seqlens, int64_t S,
                        int64_t T, int64_t H, int64_t KV, int64_t D, float scale, int64_t window) {
  const int64_t group = H / KV;
  // Each (sequence, kv head) is independent: it owns dk/dv rows of its kv head and dq rows of its q heads.
#pragma omp parallel for schedule(dynamic) collapse(2)
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t kvh = 0; kvh < KV; ++kvh) {
      const int64_t begin = cu_seqlens[s], end = cu_seqlens[s + 1];
      for (int64_t j = begin; j < end; ++j) {
        std::fill(dk + (j * KV + kvh) * D, dk + (j * KV + kvh + 1) * D, 0.0f);
        std::fill(dv + (j * KV + kvh) * D, dv + (j * KV + kvh + 1) * D, 0.0f);
      }
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
        for (int64_t i = begin; i < end; ++i) {
          const float* qi = q + (i * H + h) * D;
          const float* doi = dout + (i * H + h) * D;
          const float* oi = out + (i * H + h) * D;
          float* dqi = dq + (i * H + h) * D;
          float di = 0.0f;  // D_i = dout_i . out_i
          for (int64_t d = 0; d < D; ++d) di += doi[d] * oi[d];
          for (int64_t d = 0; d < D; ++d) dqi[d] = 0.0f;
          const float l = lse[h * T + i];
          for (int64_t j = first_key(begin, i, window); j <= i; ++j) {
            const float* kj = k + (j * KV + kvh) * D;
            const float* vj = v + (j * KV + kvh) * D;
            float dot = 0.0f, dp = 0.0f;
            for (int64_t d = 0; d < D; ++d) {
              dot += qi[d] * kj[d];
              dp += doi[d] * vj[d];
            }
            const float p = std::exp(dot * scale - l);
            const float ds = p * (dp - di) * scale;
            float* dkj = dk + (j * KV + kvh) * D;
            float* dvj = dv + (j * KV + kvh) * D;
            for (int64_t d = 0; d < D; ++d) {
              dqi[d] += ds * kj[d];
              dkj[d] += ds * qi[d];
              dvj[d] += p * doi[d];
            }
          }
        }
      }
    }
  }
}

}  // namespace cotune::kernels::cpu
