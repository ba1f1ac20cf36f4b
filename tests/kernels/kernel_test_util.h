// Helpers of the CPU kernel tests: owning buffers behind Tensor views, seeded random fills, double-precision
// comparisons, and a central-difference gradient of a double-precision forward.
//
// Method of the backward tests (backward_test.cpp): every op has an independent, naive double-precision
// forward written here in the tests (checked against the kernel's forward in forward_test.cpp). A backward
// kernel is fed dout = R for a fixed random R, i.e. it computes the gradient of f = sum(out * R); that
// gradient is compared with the central difference of f over the DOUBLE forward (step 1e-5, truncation and
// rounding error ~1e-9 relative), so the only fp32 error left is the kernel's own. The bound is on the
// whole gradient vector: ||g_kernel - g_fd|| / ||g_fd|| < 1e-5 (the fp32 kernels measure 4e-8 .. 3e-7 here,
// printed with COTUNE_KTEST_VERBOSE=1; a wrong sign, factor, scale or index lands at 1e-3 .. O(1)).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/rng.h"
#include "tensor/tensor.h"

namespace cotune::ktest {

// An owning f32 buffer with a Tensor view over it. Movable (the vector's storage, and so the view, stay put).
struct F32 {
  std::vector<float> v;
  Tensor t;
  explicit F32(Shape s, float fill = 0.0f) : v(static_cast<size_t>(s.numel()), fill), t(v.data(), DType::f32, s) {}
  F32(const F32&) = delete;
  F32& operator=(const F32&) = delete;
  F32(F32&&) = default;
  F32& operator=(F32&&) = default;
  float& operator[](int64_t i) { return v[static_cast<size_t>(i)]; }
  float operator[](int64_t i) const { return v[static_cast<size_t>(i)]; }
  int64_t size() const { return static_cast<int64_t>(v.size()); }
  std::vector<double> d() const { return {v.begin(), v.end()}; }
};

inline F32 clone(const F32& x) {
  F32 y(x.t.shape);
  y.v = x.v;  // same size: the storage, and so y.t, stay put
  y.t.data = y.v.data();
  return y;
}

struct I32 {
  std::vector<int32_t> v;
  Tensor t;
  explicit I32(std::vector<int32_t> values)
      : v(std::move(values)), t(v.data(), DType::i32, Shape{static_cast<int64_t>(v.size())}) {}
  I32(const I32&) = delete;
  I32& operator=(const I32&) = delete;
  I32(I32&&) = default;
  int32_t operator[](int64_t i) const { return v[static_cast<size_t>(i)]; }
  int64_t size() const { return static_cast<int64_t>(v.size()); }
};

// Uniform in [lo, hi), reproducible from `seed`.
inline void fill_uniform(F32& x, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Rng rng(seed);
  for (float& e : x.v) e = lo + (hi - lo) * rng.uniform();
}
inline F32 random(Shape s, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  F32 x(s);
  fill_uniform(x, seed, lo, hi);
  return x;
}

// cu_seqlens and HF-style positions (restarting at 0 in every sequence) from sequence lengths.
inline std::vector<int32_t> cu_seqlens_of(const std::vector<int32_t>& lens) {
  std::vector<int32_t> cu{0};
  for (int32_t l : lens) cu.push_back(cu.back() + l);
  return cu;
}
inline std::vector<int32_t> positions_of(const std::vector<int32_t>& lens) {
  std::vector<int32_t> pos;
  for (int32_t l : lens)
    for (int32_t i = 0; i < l; ++i) pos.push_back(i);
  return pos;
}

inline double norm(const std::vector<double>& a) {
  double s = 0;
  for (double x : a) s += x * x;
  return std::sqrt(s);
}

// ||got - want|| / max(||want||, tiny)
inline double rel_err(const std::vector<double>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double num = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) num += (got[i] - want[i]) * (got[i] - want[i]);
  return std::sqrt(num) / std::max(norm(want), 1e-30);
}

// Element-wise |got - want| <= atol + rtol * |want|; reports the first few offenders.
inline ::testing::AssertionResult all_close(const std::vector<double>& got, const std::vector<double>& want,
                                            double atol, double rtol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
  int bad = 0;
  std::string msg;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double err = std::abs(got[i] - want[i]);
    if (!(err <= atol + rtol * std::abs(want[i]))) {
      if (bad < 5) msg += " [" + std::to_string(i) + "] got " + std::to_string(got[i]) + " want " + std::to_string(want[i]) + ";";
      ++bad;
    }
    if (!(err <= worst)) worst = err;
  }
  if (bad) return ::testing::AssertionFailure() << bad << " of " << got.size() << " elements differ (max abs err " << worst << "):" << msg;
  return ::testing::AssertionSuccess();
}
inline ::testing::AssertionResult all_close(const F32& got, const std::vector<double>& want, double atol,
                                            double rtol) {
  return all_close(got.d(), want, atol, rtol);
}

// Central-difference gradient of f over x (x is perturbed in place and restored). `coords` empty: all.
inline std::vector<double> fd_grad(std::vector<double>& x, const std::function<double()>& f, double h = 1e-5,
                                   const std::vector<size_t>& coords = {}) {
  std::vector<double> g;
  auto one = [&](size_t i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f();
    x[i] = x0 - h;
    const double fm = f();
    x[i] = x0;
    return (fp - fm) / (2 * h);
  };
  if (coords.empty()) {
    g.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) g[i] = one(i);
  } else {
    for (size_t i : coords) g.push_back(one(i));
  }
  return g;
}

// `n` distinct-ish coordinates in [0, size), reproducible.
inline std::vector<size_t> sample_coords(size_t size, size_t n, uint64_t seed) {
  if (n >= size) {
    std::vector<size_t> all(size);
    for (size_t i = 0; i < size; ++i) all[i] = i;
    return all;
  }
  Rng rng(seed);
  std::vector<size_t> c;
  for (size_t i = 0; i < n; ++i) c.push_back(static_cast<size_t>(rng.below(size)));
  return c;
}

inline std::vector<double> pick(const std::vector<double>& g, const std::vector<size_t>& coords) {
  if (coords.empty()) return g;
  std::vector<double> out;
  for (size_t i : coords) out.push_back(g[i]);
  return out;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Relative bound of every gradient check against the double-precision finite difference.
constexpr double kGradTol = 1e-5;

// Expects fn() to throw cotune::Error whose message contains every one of `needles`.
template <typename Fn>
::testing::AssertionResult throws_naming(Fn&& fn, std::initializer_list<const char*> needles) {
  try {
    fn();
  } catch (const Error& e) {
    std::string m = e.what();
    for (const char* n : needles)
      if (m.find(n) == std::string::npos)
        return ::testing::AssertionFailure() << "message \"" << m << "\" does not contain \"" << n << "\"";
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-cotune exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

}  // namespace cotune::ktest
