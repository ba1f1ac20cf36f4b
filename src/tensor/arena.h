// Arena: owns device or host memory and hands out Tensors by bump allocation. Plan the buffers of a
// step once, allocate them from an arena, and never allocate inside the step loop.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

#include "tensor/tensor.h"

namespace cotune {

class Arena {
 public:
  // capacity_bytes == 0: grows in chunks as needed (host only); else a fixed budget allocated up front.
  explicit Arena(Device device = Device::cpu, size_t capacity_bytes = 0);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  Arena(Arena&&) noexcept;
  Arena& operator=(Arena&&) noexcept;

  // Uninitialised tensor, 256-byte aligned. Throws Error (naming `what`, the request and the budget) when full.
  Tensor alloc(DType dtype, Shape shape, std::string_view what = "tensor");
  // Zero-filled tensor.
  Tensor zeros(DType dtype, Shape shape, std::string_view what = "tensor");

  void reset();  // forget every allocation (keeps the memory)
  Device device() const { return device_; }
  size_t used() const;
  size_t capacity() const;
  size_t peak() const { return peak_; }

 private:
  struct Chunk {
    uint8_t* base = nullptr;
    size_t size = 0;
    size_t used = 0;
  };
  Device device_;
  bool fixed_;
  std::vector<Chunk> chunks_;
  size_t peak_ = 0;
  void add_chunk(size_t bytes);
  void free_all();
};

// Memset / copy that work on either device (CUDA ones are synchronous on the default stream).
void fill_zero(const Tensor& t);
void copy_bytes(const Tensor& dst, const Tensor& src);  // same nbytes; any device pair

}  // namespace cotune
