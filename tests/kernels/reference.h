// Naive double-precision forwards of every op, written from the formulas (HF conventions) and not from
// the kernels: one loop nest per formula, no tricks. They are the spec for both the forward tests and the
// finite differences of the backward tests.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace cotune::ktest::ref {

using Vec = std::vector<double>;

inline size_t z(int64_t i) { return static_cast<size_t>(i); }

// out[M,N] = alpha * op(a) @ op(b) + beta * c
inline Vec matmul(const Vec& a, const Vec& b, const Vec& c, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                  double alpha, double beta) {
  Vec out(z(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double av = ta ? a[z(k * M + m)] : a[z(m * K + k)];
        const double bv = tb ? b[z(n * K + k)] : b[z(k * N + n)];
        s += av * bv;
      }
      out[z(m * N + n)] = alpha * s + beta * c[z(m * N + n)];
    }
  return out;
}

// HF Qwen2RMSNorm: variance = mean(x^2); x * rsqrt(variance + eps); weight * that.
inline Vec rmsnorm(const Vec& x, const Vec& w, int64_t T, int64_t C, double eps, Vec* rstd = nullptr) {
  Vec out(z(T * C));
  if (rstd) rstd->assign(z(T), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    double var = 0;
    for (int64_t c = 0; c < C; ++c) var += x[z(t * C + c)] * x[z(t * C + c)];
    var /= static_cast<double>(C);
    const double r = 1.0 / std::sqrt(var + eps);
    if (rstd) (*rstd)[z(t)] = r;
    for (int64_t c = 0; c < C; ++c) out[z(t * C + c)] = w[z(c)] * (x[z(t * C + c)] * r);
  }
  return out;
}

// HF apply_rotary_pos_emb: emb = cat(freqs, freqs); out = x * cos(emb) + rotate_half(x) * sin(emb),
// rotate_half(x) = cat(-x2, x1); inv_freq[j] = 1 / theta^(2j / D).
inline Vec rope(const Vec& x, const std::vector<int32_t>& pos, int64_t T, int64_t NH, int64_t D, double theta) {
  Vec out(x.size());
  const int64_t half = D / 2;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < NH; ++h) {
      const double* v = x.data() + (t * NH + h) * D;
      double* o = out.data() + (t * NH + h) * D;
      for (int64_t d = 0; d < D; ++d) {
        const int64_t j = d % half;  // emb = cat(freqs, freqs)
        const double inv_freq = 1.0 / std::pow(theta, static_cast<double>(2 * j) / static_cast<double>(D));
        const double angle = pos[z(t)] * inv_freq;
        const double rot = d < half ? -v[d + half] : v[d - half];
        o[d] = v[d] * std::cos(angle) + rot * std::sin(angle);
      }
    }
  return out;
}

// Causal GQA attention over packed sequences, straight from the definition: for query i of sequence s and
// head h, p_j = softmax_j(scale * q_i . k_j) over j in [begin_s, i], out_i = sum_j p_j v_j; kv head = h / (H/KV).
inline Vec attention(const Vec& q, const Vec& k, const Vec& v, const std::vector<int32_t>& cu, int64_t T, int64_t H,
                     int64_t KV, int64_t D, double scale, Vec* lse = nullptr) {
  Vec out(z(T * H * D), 0.0);
  if (lse) lse->assign(z(H * T), 0.0);
  const int64_t group = H / KV;
  for (size_t s = 0; s + 1 < cu.size(); ++s)
    for (int64_t i = cu[s]; i < cu[s + 1]; ++i)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / group;
        Vec sc;
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = cu[s]; j <= i; ++j) {
          double d = 0;
          for (int64_t e = 0; e < D; ++e) d += q[z((i * H + h) * D + e)] * k[z((j * KV + g) * D + e)];
          sc.push_back(scale * d);
          mx = std::max(mx, scale * d);
        }
        double sum = 0;
        for (double x : sc) sum += std::exp(x - mx);
        for (int64_t j = cu[s]; j <= i; ++j) {
          const double p = std::exp(sc[z(j - cu[s])] - mx) / sum;
          for (int64_t e = 0; e < D; ++e) out[z((i * H + h) * D + e)] += p * v[z((j * KV + g) * D + e)];
        }
        if (lse) (*lse)[z(h * T + i)] = mx + std::log(sum);
      }
  return out;
}

inline Vec swiglu(const Vec& gate, const Vec& up) {
  Vec out(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) out[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
  return out;
}

// out[T,OC] = x[T,IC] @ W[OC,IC]^T + b (b empty: no bias)
inline Vec linear(const Vec& x, const Vec& W, const Vec& b, int64_t T, int64_t IC, int64_t OC) {
  Vec out(z(T * OC));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t o = 0; o < OC; ++o) {
      double s = b.empty() ? 0.0 : b[z(o)];
      for (int64_t i = 0; i < IC; ++i) s += x[z(t * IC + i)] * W[z(o * IC + i)];
      out[z(t * OC + o)] = s;
    }
  return out;
}

// out = out0 + scale * (x @ A^T) @ B^T; xa = x @ A^T.
inline Vec lora(const Vec& out0, const Vec& x, const Vec& A, const Vec& B, int64_t T, int64_t IC, int64_t OC,
                int64_t R, double scale, Vec* xa_out = nullptr) {
  Vec xa = linear(x, A, {}, T, IC, R);
  Vec y = linear(xa, B, {}, T, R, OC);
  Vec out(out0.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = out0[i] + scale * y[i];
  if (xa_out) *xa_out = xa;
  return out;
}

// losses[t] = -log softmax(logits[t])[target], 0 for target < 0.
inline Vec cross_entropy(const Vec& logits, const std::vector<int32_t>& targets, int64_t T, int64_t V) {
  Vec losses(z(T), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    if (targets[z(t)] < 0) continue;
    double sum = 0;
    for (int64_t j = 0; j < V; ++j) sum += std::exp(logits[z(t * V + j)]);
    losses[z(t)] = std::log(sum) - logits[z(t * V + targets[z(t)])];
  }
  return losses;
}

inline double sum_weighted(const Vec& out, const Vec& R) {
  double s = 0;
  for (size_t i = 0; i < out.size(); ++i) s += out[i] * R[i];
  return s;
}

}  // namespace cotune::ktest::ref
