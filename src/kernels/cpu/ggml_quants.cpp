// ggml block quantization, written from the algorithms of ggml-quants.c's reference functions. Every
// floating-point expression keeps ggml's operand order and this file is compiled with -ffp-contract=off
// (no fused multiply-adds), so the bytes match ggml's reference quantizer exactly.
#include "kernels/ggml_quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>

#include "base/error.h"
#include "base/half.h"

namespace cotune::kernels {
namespace {

constexpr GgmlTypeInfo kTypes[] = {
    {GgmlType::f32, "f32", 1, 4},       {GgmlType::f16, "f16", 1, 2},       {GgmlType::q4_0, "q4_0", 32, 18},
    {GgmlType::q4_1, "q4_1", 32, 20},   {GgmlType::q5_0, "q5_0", 32, 22},   {GgmlType::q5_1, "q5_1", 32, 24},
    {GgmlType::q8_0, "q8_0", 32, 34},   {GgmlType::q8_1, "q8_1", 32, 36},   {GgmlType::q2_k, "q2_K", 256, 84},
    {GgmlType::q3_k, "q3_K", 256, 110}, {GgmlType::q4_k, "q4_K", 256, 144}, {GgmlType::q5_k, "q5_K", 256, 176},
    {GgmlType::q6_k, "q6_K", 256, 210}, {GgmlType::q8_k, "q8_K", 256, 292}, {GgmlType::i8, "i8", 1, 1},
    {GgmlType::i16, "i16", 1, 2},       {GgmlType::i32, "i32", 1, 4},       {GgmlType::i64, "i64", 1, 8},
    {GgmlType::f64, "f64", 1, 8},       {GgmlType::bf16, "bf16", 1, 2},
};

constexpr int kQK = 256;             // super-block of the k-quants
constexpr float kGroupMaxEps = 1e-15f;  // below this a group counts as all zero

inline float half_at(const uint8_t* p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return f16_to_f32(h);
}
inline void put_half(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  memcpy(p, &h, 2);
}

// Round to nearest (ties to even) through the float mantissa, as ggml's nearest_int; |v| <= 4194303.
inline int nearest_int(float v) {
  const float shifted = v + 12582912.f;
  int32_t i;
  memcpy(&i, &shifted, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// ---- 32-element blocks -------------------------------------------------------------------------------

// q4_0: d = (the value of largest magnitude) / -8, codes (x/d + 8.5) truncated, at most 15.
void quantize_q4_0(const float* x, uint8_t* y) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  const float d = max / -8;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(y, d);
  for (int j = 0; j < 16; ++j) {
    const float x0 = x[j] * id, x1 = x[16 + j] * id;
    const uint8_t q0 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 8.5f))));
    const uint8_t q1 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 8.5f))));
    y[2 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

void quantize_q4_1(const float* x, uint8_t* y) {
  float min = x[0], max = x[0];
  for (int j = 1; j < 32; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / 15;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(y, d);
  put_half(y + 2, min);
  for (int j = 0; j < 16; ++j) {
    const float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
    const uint8_t q0 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 0.5f))));
    const uint8_t q1 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 0.5f))));
    y[4 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

void quantize_q5_0(const float* x, uint8_t* y) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  const float d = max / -16;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(y, d);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const float x0 = x[j] * id, x1 = x[16 + j] * id;
    const uint8_t q0 = static_cast<uint8_t>(std::min(31, static_cast<int>(static_cast<int8_t>(x0 + 16.5f))));
    const uint8_t q1 = static_cast<uint8_t>(std::min(31, static_cast<int>(static_cast<int8_t>(x1 + 16.5f))));
    y[6 + j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
    qh |= ((q0 & 0x10u) >> 4) << j;
    qh |= ((q1 & 0x10u) >> 4) << (j + 16);
  }
  memcpy(y + 2, &qh, 4);
}

void quantize_q5_1(const float* x, uint8_t* y) {
  float min = x[0], max = x[0];
  for (int j = 1; j < 32; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / 31;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(y, d);
  put_half(y + 2, min);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
    const uint8_t q0 = static_cast<uint8_t>(x0 + 0.5f);
    const uint8_t q1 = static_cast<uint8_t>(x1 + 0.5f);
    y[8 + j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
    qh |= ((q0 & 0x10u) >> 4) << j;
    qh |= ((q1 & 0x10u) >> 4) << (j + 16);
  }
  memcpy(y + 4, &qh, 4);
}

void quantize_q8_0(const float* x, uint8_t* y) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(y, d);
  for (int j = 0; j < 32; ++j) y[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[j] * id)));
}

void dequantize_q4_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((b[2 + j] & 0x0f) - 8) * d;
    y[j + 16] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
  }
}

void dequantize_q4_1(const uint8_t* b, float* y) {
  const float d = half_at(b), m = half_at(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(b[4 + j] & 0x0f) * d + m;
    y[j + 16] = static_cast<float>(b[4 + j] >> 4) * d + m;
  }
}

void dequantize_q5_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  uint32_t qh;
  memcpy(&qh, b + 2, 4);
  for (int j = 0; j < 16; ++j) {
    const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10), h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
    y[j] = static_cast<float>(((b[6 + j] & 0x0f) | h0) - 16) * d;
    y[j + 16] = static_cast<float>(((b[6 + j] >> 4) | h1) - 16) * d;
  }
}

void dequantize_q5_1(const uint8_t* b, float* y) {
  const float d = half_at(b), m = half_at(b + 2);
  uint32_t qh;
  memcpy(&qh, b + 4, 4);
  for (int j = 0; j < 16; ++j) {
    const int h0 = static_cast<int>(((qh >> j) << 4) & 0x10), h1 = static_cast<int>((qh >> (j + 12)) & 0x10);
    y[j] = static_cast<float>((b[8 + j] & 0x0f) | h0) * d + m;
    y[j + 16] = static_cast<float>((b[8 + j] >> 4) | h1) * d + m;
  }
}

void dequantize_q8_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

// ---- k-quant helpers ---------------------------------------------------------------------------------

// Asymmetric n-level fit of x[0..n) with weights: a scale and a (non-positive) min, tried over nstep+1
// scalings of the range, keeping the least weighted error (squared or absolute). ggml's make_qkx2_quants.
float fit_scale_min(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux,
                    float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Symmetric fit of x[0..n) to levels -nmax..nmax-1 weighted by x^2, trying 18 scalings around nmax/max.
// ggml's make_qx_quants with rmse_type 1 and no importance weights.
float fit_scale_symmetric(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// The 6-bit scale and min of sub-block j from q4_K / q5_K's 12 packed bytes.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Shared by q4_K (nmax 15) and q5_K (nmax 31): 8 sub-blocks of 32 with a 6-bit scale and min each,
// both scaled by the fp16 super-block d / dmin. Fills scales[12], d, dmin and the levels L[256].
void fit_k_superblock(const float* x, int nmax, float rmin, int nstep, uint8_t* scales12, uint8_t* d_out,
                      uint8_t* dmin_out, uint8_t* L) {
  uint8_t Laux[32];
  float weights[32], mins[8], scales[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = fit_scale_min(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  memset(scales12, 0, 12);
  for (int j = 0; j < 8; ++j) {
    uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
    uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
    ls = std::min<uint8_t>(63, ls);
    lm = std::min<uint8_t>(63, lm);
    if (j < 4) {
      scales12[j] = ls;
      scales12[j + 4] = lm;
    } else {
      scales12[j + 4] = static_cast<uint8_t>((ls & 0x0f) | ((lm & 0x0f) << 4));
      scales12[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      scales12[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  put_half(d_out, max_scale / 63.f);
  put_half(dmin_out, max_min / 63.f);
  const float d_all = half_at(d_out), dmin_all = half_at(dmin_out);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    scale_min_k4(j, scales12, &sc, &m);
    const float d = d_all * sc;
    if (d == 0.0f) continue;
    const float dm = dmin_all * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

void quantize_q4_k(const float* x, uint8_t* y) {
  uint8_t L[kQK];
  fit_k_superblock(x, 15, -1.f, 20, y + 4, y, y + 2, L);
  uint8_t* q = y + 16;
  for (int j = 0; j < kQK; j += 64) {
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    q += 32;
  }
}

void quantize_q5_k(const float* x, uint8_t* y) {
  uint8_t L[kQK];
  fit_k_superblock(x, 31, -0.5f, 15, y + 4, y, y + 2, L);
  uint8_t* qh = y + 16;
  uint8_t* ql = y + 48;
  memset(qh, 0, 32);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < kQK; n += 64) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j], l2 = L[n + j + 32];
      if (l1 > 15) {
        l1 -= 16;
        qh[j] |= m1;
      }
      if (l2 > 15) {
        l2 -= 16;
        qh[j] |= m2;
      }
      ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
    m1 = static_cast<uint8_t>(m1 << 2);
    m2 = static_cast<uint8_t>(m2 << 2);
    ql += 32;
  }
}

void quantize_q6_k(const float* x, uint8_t* y) {
  int8_t L[kQK];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    const float scale = fit_scale_symmetric(16, 32, x + 16 * ib, L + 16 * ib);
    scales[ib] = scale;
    if (std::fabs(scale) > max_abs_scale) {
      max_abs_scale = std::fabs(scale);
      max_scale = scale;
    }
  }
  uint8_t* ql = y;
  uint8_t* qh = y + 128;
  int8_t* sc = reinterpret_cast<int8_t*>(y + 192);
  uint8_t* d_out = y + 208;
  if (max_abs_scale < kGroupMaxEps) {
    memset(y, 0, 210);
    return;
  }
  const float iscale = -128.f / max_scale;
  put_half(d_out, 1 / iscale);
  for (int ib = 0; ib < 16; ++ib) sc[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  const float d_all = half_at(d_out);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * sc[j];
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      int l = nearest_int(x[16 * j + ii] / d);
      l = std::max(-32, std::min(31, l));
      L[16 * j + ii] = static_cast<int8_t>(l + 32);
    }
  }
  for (int j = 0; j < kQK; j += 128) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t q1 = L[j + l] & 0x0f, q2 = L[j + l + 32] & 0x0f, q3 = L[j + l + 64] & 0x0f,
                    q4 = L[j + l + 96] & 0x0f;
      ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                   ((L[j + l + 96] >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}

void dequantize_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* q = b + 16;
  const float d = half_at(b + 80), min = half_at(b + 82);
  int is = 0;
  for (int n = 0; n < kQK; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int half = 0; half < 2; ++half) {
        const uint8_t sc = scales[is++];
        const float dl = d * (sc & 0x0f), ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * half] >> shift) & 3) - ml;
      }
      shift += 2;
    }
    q += 32;
  }
}

void dequantize_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  const float d_all = half_at(b + 108);
  // 16 signed 6-bit scales: low 4 bits in bytes 0..7 (two a byte), high 2 bits in bytes 8..11.
  int8_t scales[16];
  const uint8_t* s = b + 96;
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? (s[j] & 0x0f) : (s[j - 8] >> 4);
    const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    scales[j] = static_cast<int8_t>((low | (high << 4)) - 32);
  }
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < kQK; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int half = 0; half < 2; ++half) {
        const float dl = d_all * static_cast<float>(scales[is++]);
        for (int l = 0; l < 16; ++l) {
          const int k = l + 16 * half;
          *y++ = dl * static_cast<float>(((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4));
        }
      }
      shift += 2;
      m = static_cast<uint8_t>(m << 1);
    }
    q += 32;
  }
}

void dequantize_q4_k(const uint8_t* b, float* y) {
  const float d = half_at(b), min = half_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  int is = 0;
  for (int j = 0; j < kQK; j += 64) {
    uint8_t sc, m;
    scale_min_k4(is, scales, &sc, &m);
    const float d1 = d * sc, m1 = min * m;
    scale_min_k4(is + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = min * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0x0f) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    q += 32;
    is += 2;
  }
}

void dequantize_q5_k(const uint8_t* b, float* y) {
  const float d = half_at(b), min = half_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  int is = 0;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < kQK; j += 64) {
    uint8_t sc, m;
    scale_min_k4(is, scales, &sc, &m);
    const float d1 = d * sc, m1 = min * m;
    scale_min_k4(is + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = min * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0x0f) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    ql += 32;
    is += 2;
    u1 = static_cast<uint8_t>(u1 << 2);
    u2 = static_cast<uint8_t>(u2 << 2);
  }
}

void dequantize_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half_at(b + 208);
  for (int n = 0; n < kQK; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is] * static_cast<float>(q1);
      y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
      y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
      y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

using QuantizeBlock = void (*)(const float*, uint8_t*);
using DequantizeBlock = void (*)(const uint8_t*, float*);

QuantizeBlock quantizer(GgmlType t) {
  switch (t) {
    case GgmlType::q4_0: return quantize_q4_0;
    case GgmlType::q4_1: return quantize_q4_1;
    case GgmlType::q5_0: return quantize_q5_0;
    case GgmlType::q5_1: return quantize_q5_1;
    case GgmlType::q8_0: return quantize_q8_0;
    case GgmlType::q4_k: return quantize_q4_k;
    case GgmlType::q5_k: return quantize_q5_k;
    case GgmlType::q6_k: return quantize_q6_k;
    default: return nullptr;
  }
}

DequantizeBlock dequantizer(GgmlType t) {
  switch (t) {
    case GgmlType::q4_0: return dequantize_q4_0;
    case GgmlType::q4_1: return dequantize_q4_1;
    case GgmlType::q5_0: return dequantize_q5_0;
    case GgmlType::q5_1: return dequantize_q5_1;
    case GgmlType::q8_0: return dequantize_q8_0;
    case GgmlType::q2_k: return dequantize_q2_k;
    case GgmlType::q3_k: return dequantize_q3_k;
    case GgmlType::q4_k: return dequantize_q4_k;
    case GgmlType::q5_k: return dequantize_q5_k;
    case GgmlType::q6_k: return dequantize_q6_k;
    default: return nullptr;
  }
}

bool plain_float(GgmlType t) { return t == GgmlType::f32 || t == GgmlType::f16 || t == GgmlType::bf16; }

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t type) {
  for (const auto& t : kTypes)
    if (static_cast<uint32_t>(t.type) == type) return &t;
  return nullptr;
}

const GgmlTypeInfo& ggml_type_info(GgmlType type) {
  const GgmlTypeInfo* t = ggml_type_info(static_cast<uint32_t>(type));
  COTUNE_CHECK(t, "ggml type {} is not known to cotune", static_cast<uint32_t>(type));
  return *t;
}

const char* ggml_type_name(GgmlType type) { return ggml_type_info(type).name; }

int64_t ggml_bytes(GgmlType type, int64_t n) {
  const GgmlTypeInfo& t = ggml_type_info(type);
  COTUNE_CHECK(n % t.block_size == 0, "{} elements are not a whole number of {} blocks ({} elements each)", n, t.name,
               t.block_size);
  return n / t.block_size * t.type_size;
}

bool ggml_can_dequantize(GgmlType type) { return plain_float(type) || dequantizer(type) != nullptr; }
bool ggml_can_quantize(GgmlType type) { return plain_float(type) || quantizer(type) != nullptr; }

void ggml_dequantize(GgmlType type, const void* src, float* dst, int64_t n) {
  const auto* s = static_cast<const uint8_t*>(src);
  switch (type) {
    case GgmlType::f32: memcpy(dst, s, static_cast<size_t>(n) * 4); return;
    case GgmlType::f16:
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      return;
    case GgmlType::bf16:
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    default: break;
  }
  const DequantizeBlock f = dequantizer(type);
  COTUNE_CHECK(f, "cannot dequantize ggml type {}", ggml_type_name(type));
  const GgmlTypeInfo& t = ggml_type_info(type);
  COTUNE_CHECK(n % t.block_size == 0, "{} elements are not a whole number of {} blocks", n, t.name);
  const int64_t blocks = n / t.block_size;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) f(s + b * t.type_size, dst + b * t.block_size);
}

void ggml_quantize(GgmlType type, const float* src, void* dst, int64_t n) {
  auto* d = static_cast<uint8_t*>(dst);
  switch (type) {
    case GgmlType::f32: memcpy(d, src, static_cast<size_t>(n) * 4); return;
    case GgmlType::f16:
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_f16(src[i]);
        memcpy(d + 2 * i, &h, 2);
      }
      return;
    case GgmlType::bf16:
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(src[i]);
        memcpy(d + 2 * i, &h, 2);
      }
      return;
    default: break;
  }
  const QuantizeBlock f = quantizer(type);
  COTUNE_CHECK(f, "cotune cannot quantize to ggml type {}", ggml_type_name(type));
  const GgmlTypeInfo& t = ggml_type_info(type);
  COTUNE_CHECK(n % t.block_size == 0, "{} elements are not a whole number of {} blocks", n, t.name);
  const int64_t blocks = n / t.block_size;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) f(src + b * t.block_size, d + b * t.type_size);
}

}  // namespace cotune::kernels
