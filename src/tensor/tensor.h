// Tensor: a non-owning, contiguous, row-major view (dtype, shape up to 4-D, device) over memory that an
// Arena, a mapped file or a caller owns. No autograd: forward and backward are explicit functions.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "base/error.h"

namespace cotune {

enum class DType : uint8_t { f32, bf16, f16, u8, i32, i64 };
enum class Device : uint8_t { cpu, cuda };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);    // "f32", "bf16", ...
std::string_view device_name(Device d);  // "cpu", "cuda"

constexpr int kMaxDims = 4;

struct Shape {
  int ndim = 0;
  std::array<int64_t, kMaxDims> dims{};

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  int64_t operator[](int i) const { return dims[static_cast<size_t>(i)]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  std::string str() const;  // "[2, 3]"
};

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  Shape shape;

  Tensor() = default;
  Tensor(void* d, DType t, Shape s, Device dev = Device::cpu) : data(d), dtype(t), device(dev), shape(s) {}

  bool defined() const { return data != nullptr || shape.numel() == 0; }
  int ndim() const { return shape.ndim; }
  int64_t dim(int i) const { return shape[i < 0 ? shape.ndim + i : i]; }
  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }

  // Typed pointer; throws if T does not match dtype (uint16_t serves bf16 and f16).
  template <typename T>
  T* ptr() const;

  // Same memory, new shape of equal element count.
  Tensor view(Shape s) const;
  // Rows [begin, end) along dim 0.
  Tensor slice_rows(int64_t begin, int64_t end) const;

  std::string str() const;  // "bf16[2, 3]@cpu"
};

namespace detail {
template <typename T>
constexpr bool dtype_matches(DType t) {
  if constexpr (std::is_same_v<T, float>) return t == DType::f32;
  else if constexpr (std::is_same_v<T, uint16_t>) return t == DType::bf16 || t == DType::f16;
  else if constexpr (std::is_same_v<T, uint8_t>) return t == DType::u8;
  else if constexpr (std::is_same_v<T, int32_t>) return t == DType::i32;
  else if constexpr (std::is_same_v<T, int64_t>) return t == DType::i64;
  else return true;  // void / opaque device types (e.g. __nv_bfloat16)
}
}  // namespace detail

template <typename T>
T* Tensor::ptr() const {
  if (!detail::dtype_matches<T>(dtype)) fail("tensor {}: pointer of the wrong element type requested", str());
  return static_cast<T*>(data);
}

// Throws an Error naming `what` unless t has exactly this shape and dtype.
void expect_shape(const Tensor& t, const Shape& s, std::string_view what);
void expect_dtype(const Tensor& t, DType d, std::string_view what);

}  // namespace cotune
