// Embedding, RMSNorm, rotary embedding, SwiGLU and dropout on the CPU (fp32 reference).
#include <cmath>
#include <cstring>

#include "base/rng.h"
#include "kernels/cpu/cpu_ops.h"

namespace cotune::kernels::cpu {

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T, int64_t C, int64_t V) {
  (void)V;  // range checked by the dispatcher
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) std::memcpy(out + t * C, table + static_cast<int64_t>(ids[t]) * C, C * sizeof(float));
}

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* x = inp + t * C;
    double ss = 0.0;
    for (int64_t i = 0; i < C; ++i) ss += static_cast<double>(x[i]) * x[i];
    float r = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(C)) + eps);
    rstd[t] = r;
    float* o = out + t * C;
    for (int64_t i = 0; i < C; ++i) o[i] = weight[i] * (x[i] * r);
  }
}

void rmsnorm_backward(float* dinp, const float* dout, const float* inp, const float* weight, const float* rstd,
                      int64_t T, int64_t C, bool accumulate) {
  // y = w * x * r, r = (mean(x^2)+eps)^-1/2  =>  dx = r * (w*dy) - x * r^3 * mean(x * w*dy)
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* x = inp + t * C;
    const float* dy = dout + t * C;
    float r = rstd[t];
    double dot = 0.0;
    for (int64_t i = 0; i < C; ++i) dot += static_cast<double>(weight[i] * dy[i]) * x[i];
    float m = static_cast<float>(dot / static_cast<double>(C)) * r * r * r;
    float* dx = dinp + t * C;
    for (int64_t i = 0; i < C; ++i) {
      float v = r * weight[i] * dy[i] - x[i] * m;
      dx[i] = accumulate ? dx[i] + v : v;
    }
  }
}

}  // namespace cotune::kernels::cpu

namespace cotune::kernels {

void rope_inv_freq(float* inv_freq, int64_t D, const RopeSpec& rope) {
  // HF: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), all in fp32.
  for (int64_t j = 0; j < D / 2; ++j) {
    float expo = static_cast<float>(2 * j) / static_cast<float>(D);
    inv_freq[j] = 1.0f / std::pow(rope.theta, expo);
  }
  switch (rope.scaling) {
    case RopeScaling::none: break;
    case RopeScaling::linear:  // _compute_linear_scaling_rope_parameters: inv_freq /= factor
      for (int64_t j = 0; j < D / 2; ++j) inv_freq[j] /= rope.factor;
      break;
    case RopeScaling::llama3: {
      // _compute_llama3_parameters: wavelengths longer than original/low_freq_factor are divided by factor, shorter
      // than original/high_freq_factor kept, those between blended by smooth = (original/wavelen - low) / (high - low).
      const float low_wavelen = rope.original_max_position / rope.low_freq_factor;
      const float high_wavelen = rope.original_max_position / rope.high_freq_factor;
      const auto two_pi = static_cast<float>(2.0 * 3.14159265358979323846);
      for (int64_t j = 0; j < D / 2; ++j) {
        const float f = inv_freq[j];
        const float wavelen = two_pi / f;
        float scaled = wavelen > low_wavelen ? f / rope.factor : f;
        if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
          const float smooth = (rope.original_max_position / wavelen - rope.low_freq_factor) /
                               (rope.high_freq_factor - rope.low_freq_factor);
          scaled = (1.0f - smooth) * scaled / rope.factor + smooth * scaled;
        }
        inv_freq[j] = scaled;
      }
      break;
    }
  }
}

}  // namespace cotune::kernels

namespace cotune::kernels::cpu {

void rope_apply(float* x, const int32_t* positions, int64_t T, int64_t NH, int64_t D, const RopeSpec& rope, float sign) {
  const int64_t half = D / 2;
  float inv_freq[512];
  rope_inv_freq(inv_freq, D, rope);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    float pos = static_cast<float>(positions[t]);
    for (int64_t j = 0; j < half; ++j) {
      float angle = pos * inv_freq[j];
      float c = std::cos(angle), s = sign * std::sin(angle);
      for (int64_t h = 0; h < NH; ++h) {
        float* v = x + (t * NH + h) * D;
        float x1 = v[j], x2 = v[j + half];
        // out = x*cos + rotate_half(x)*sin, rotate_half(x) = [-x2, x1]
        v[j] = x1 * c - x2 * s;
        v[j + half] = x2 * c + x1 * s;
      }
    }
  }
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    float sig = 1.0f / (1.0f + std::exp(-g));
    float silu = g * sig;
    // Both read before either is written: dgate / dup may be gate / up themselves (in place).
    const float du = dout[i] * silu;
    const float dg = dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    dup[i] = du;
    dgate[i] = dg;
  }
}

void dropout(float* out, const float* inp, int64_t n, float p, uint64_t seed, uint64_t offset) {
  const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  // Element i draws word (offset + i) % 4 of Philox block (offset + i) / 4: the same stream for any split
  // of a tensor into pieces, and the same on the GPU.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t g = offset + static_cast<uint64_t>(i);
    const Philox4 r = philox4x32(seed, g / 4, 0);
    const bool keep = uniform01(r.v[g % 4]) >= p;
    out[i] = keep ? inp[i] * keep_scale : 0.0f;
  }
}

}  // namespace cotune::kernels::cpu
