// Helpers of the CUDA op tests: random host data (with outlier channels), upload as bf16 / f32, download,
// NaN poisoning (to prove every output element is written), relative Frobenius error.
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "base/half.h"
#include "kernels/cuda/context.h"
#include "tensor/arena.h"
#include "tensor/tensor.h"

namespace cotune::testing {

#define COTUNE_REQUIRE_GPU()                                                     \
  if (::cotune::kernels::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"

// Values exactly representable in bf16 (so the CPU twin sees the GPU's inputs).
inline std::vector<float> randn(size_t n, uint32_t seed, float stddev = 1.0f, bool bf16_exact = true) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = bf16_exact ? round_bf16(dist(rng)) : dist(rng);
  return v;
}

// Multiplies a few columns (channels) of a [rows, cols] matrix by `factor`: the outlier channels of real LLM
// activations, which stress rounding and reductions.
inline void add_outlier_channels(std::vector<float>& v, int64_t cols, float factor, int count = 4, bool bf16_exact = true) {
  const int64_t rows = static_cast<int64_t>(v.size()) / cols;
  for (int c = 0; c < count; ++c) {
    const int64_t ch = (c * 7919 + 13) % cols;
    for (int64_t r = 0; r < rows; ++r) {
      float& x = v[static_cast<size_t>(r * cols + ch)];
      x = bf16_exact ? round_bf16(x * factor) : x * factor;
    }
  }
}

inline std::vector<float> rounded_bf16(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = round_bf16(v[i]);
  return r;
}

inline Tensor host(std::vector<float>& v, Shape s) { return Tensor(v.data(), DType::f32, s); }
inline Tensor host_i32(std::vector<int32_t>& v, Shape s) { return Tensor(v.data(), DType::i32, s); }

inline Tensor upload(Arena& arena, const std::vector<float>& v, Shape s, DType dt) {
  Tensor t = arena.alloc(dt, s, "test input");
  if (dt == DType::f32) {
    copy_bytes(t, Tensor(const_cast<float*>(v.data()), DType::f32, s));
  } else {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
    copy_bytes(t, Tensor(h.data(), DType::bf16, s));
  }
  return t;
}

inline Tensor upload_i32(Arena& arena, const std::vector<int32_t>& v, Shape s) {
  Tensor t = arena.alloc(DType::i32, s, "test indices");
  copy_bytes(t, Tensor(const_cast<int32_t*>(v.data()), DType::i32, s));
  return t;
}

// Fills a device tensor with 0xFF bytes: NaN for f32 and bf16, -1 for i32.
inline void poison(const Tensor& t) {
  kernels::cuda::synchronize();
  ASSERT_EQ(cudaMemset(t.data, 0xFF, t.nbytes()), cudaSuccess);
}

inline std::vector<float> download(const Tensor& t) {
  kernels::cuda::synchronize();
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (t.dtype == DType::f32) {
    copy_bytes(Tensor(out.data(), DType::f32, t.shape), t);
  } else if (t.dtype == DType::bf16) {
    std::vector<uint16_t> h(out.size());
    copy_bytes(Tensor(h.data(), DType::bf16, t.shape), t);
    for (size_t i = 0; i < h.size(); ++i) out[i] = bf16_to_f32(h[i]);
  } else if (t.dtype == DType::i32) {
    std::vector<int32_t> h(out.size());
    copy_bytes(Tensor(h.data(), DType::i32, t.shape), t);
    for (size_t i = 0; i < h.size(); ++i) out[i] = static_cast<float>(h[i]);
  } else {
    ADD_FAILURE() << "download: unsupported dtype";
  }
  return out;
}

// Raw bytes of a device tensor (for bit-identity checks).
inline std::vector<uint8_t> download_bytes(const Tensor& t) {
  kernels::cuda::synchronize();
  std::vector<uint8_t> out(t.nbytes());
  EXPECT_EQ(cudaMemcpy(out.data(), t.data, t.nbytes(), cudaMemcpyDeviceToHost), cudaSuccess);
  return out;
}

inline size_t count_nonfinite(const std::vector<float>& v) {
  size_t n = 0;
  for (float x : v) n += std::isfinite(x) ? 0 : 1;
  return n;
}

// ||got - ref|| / ||ref|| in double; NaN if any element of got is not finite.
inline double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size()) return NAN;
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return NAN;
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Checks the relative Frobenius error and that every element was written (no NaN left from poisoning).
#define EXPECT_REL(got, ref, tol)                                                                               \
  do {                                                                                                          \
    const auto& g_ = (got);                                                                                     \
    const size_t bad_ = ::cotune::testing::count_nonfinite(g_);                                                 \
    EXPECT_EQ(bad_, 0u) << #got << ": " << bad_ << " of " << g_.size() << " elements not finite (unwritten?)"; \
    const double e_ = ::cotune::testing::rel_err(g_, (ref));                                                    \
    EXPECT_LE(e_, (tol)) << #got << " vs " << #ref;                                                             \
    std::printf("  %-28s rel err %.3e (tol %.1e)\n", #got, e_, static_cast<double>(tol));                        \
  } while (0)

inline size_t gib(double g) { return static_cast<size_t>(g * 1073741824.0); }

}  // namespace cotune::testing
