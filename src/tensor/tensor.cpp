#include "tensor/tensor.h"

#include <fmt/format.h>

namespace cotune {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::u8: return 1;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  return 0;
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::u8: return "u8";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
  }
  return "?";
}

std::string_view device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

Shape::Shape(std::initializer_list<int64_t> d) {
  if (d.size() > kMaxDims) fail("shape with {} dimensions: at most {} are supported", d.size(), kMaxDims);
  ndim = static_cast<int>(d.size());
  size_t i = 0;
  for (int64_t v : d) {
    if (v < 0) fail("shape dimension {} is negative ({})", i, v);
    dims[i++] = v;
  }
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= dims[static_cast<size_t>(i)];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (dims[static_cast<size_t>(i)] != o.dims[static_cast<size_t>(i)]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[static_cast<size_t>(i)]);
  }
  return s + "]";
}

Tensor Tensor::view(Shape s) const {
  if (s.numel() != numel()) fail("cannot view tensor {} as {}: element counts differ", str(), s.str());
  Tensor t = *this;
  t.shape = s;
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  if (ndim() < 1 || begin < 0 || end < begin || end > dim(0))
    fail("row slice [{}, {}) out of range for tensor {}", begin, end, str());
  int64_t row = ndim() ? numel() / (dim(0) ? dim(0) : 1) : 1;
  if (dim(0) == 0) row = 0;
  Tensor t = *this;
  t.shape.dims[0] = end - begin;
  t.data = static_cast<uint8_t*>(data) + static_cast<size_t>(begin * row) * dtype_size(dtype);
  return t;
}

std::string Tensor::str() const { return fmt::format("{}{}@{}", dtype_name(dtype), shape.str(), device_name(device)); }

void expect_shape(const Tensor& t, const Shape& s, std::string_view what) {
  if (!(t.shape == s)) fail("{}: expected shape {}, got {}", what, s.str(), t.shape.str());
}

void expect_dtype(const Tensor& t, DType d, std::string_view what) {
  if (t.dtype != d) fail("{}: expected dtype {}, got {}", what, dtype_name(d), dtype_name(t.dtype));
}

}  // namespace cotune
