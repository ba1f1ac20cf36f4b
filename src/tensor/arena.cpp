#include "tensor/arena.h"

#include <cstdlib>
#include <cstring>

#include "base/error.h"

#ifdef COTUNE_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace cotune {

namespace {
constexpr size_t kAlign = 256;
constexpr size_t kChunk = size_t{64} << 20;
size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

uint8_t* raw_alloc(Device dev, size_t bytes) {
  if (dev == Device::cpu) {
    void* p = std::aligned_alloc(kAlign, round_up(bytes));
    if (!p) fail("out of host memory allocating {} bytes", bytes);
    return static_cast<uint8_t*>(p);
  }
#ifdef COTUNE_WITH_CUDA
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    if (err == cudaErrorMemoryAllocation)
      fail("GPU out of memory: asked for {:.2f} GiB, {:.2f} GiB free of {:.2f} GiB ({})", bytes / 1073741824.0,
           free_b / 1073741824.0, total_b / 1073741824.0, cudaGetErrorString(err));
    fail("cudaMalloc of {:.2f} GiB failed: {}", bytes / 1073741824.0, cudaGetErrorString(err));
  }
  return static_cast<uint8_t*>(p);
#else
  fail("this build of cotune has no CUDA backend (configure with COTUNE_CUDA=ON)");
#endif
}

void raw_free(Device dev, uint8_t* p) {
  if (!p) return;
  if (dev == Device::cpu) {
    std::free(p);
    return;
  }
#ifdef COTUNE_WITH_CUDA
  cudaFree(p);
#endif
}
}  // namespace

Arena::Arena(Device device, size_t capacity_bytes) : device_(device), fixed_(capacity_bytes > 0) {
  if (fixed_) add_chunk(capacity_bytes);
}

Arena::~Arena() { free_all(); }

Arena::Arena(Arena&& o) noexcept
    : device_(o.device_), fixed_(o.fixed_), chunks_(std::move(o.chunks_)), peak_(o.peak_) {
  o.chunks_.clear();
}

Arena& Arena::operator=(Arena&& o) noexcept {
  if (this != &o) {
    free_all();
    device_ = o.device_;
    fixed_ = o.fixed_;
    chunks_ = std::move(o.chunks_);
    peak_ = o.peak_;
    o.chunks_.clear();
  }
  return *this;
}

void Arena::free_all() {
  for (auto& c : chunks_) raw_free(device_, c.base);
  chunks_.clear();
}

void Arena::add_chunk(size_t bytes) {
  Chunk c;
  c.size = round_up(bytes);
  c.base = raw_alloc(device_, c.size);
  chunks_.push_back(c);
}

Tensor Arena::alloc(DType dtype, Shape shape, std::string_view what) {
  size_t bytes = round_up(static_cast<size_t>(shape.numel()) * dtype_size(dtype));
  if (bytes == 0) bytes = kAlign;
  Chunk* target = nullptr;
  for (auto& c : chunks_)
    if (c.size - c.used >= bytes) {
      target = &c;
      break;
    }
  if (!target) {
    if (fixed_)
      fail("{} arena full: {} {} needs {} bytes, {} of {} bytes in use", device_name(device_), what, shape.str(),
           bytes, used(), capacity());
    with_context(fmt::format("allocating {} {} ({}, {} bytes on the {})", what, shape.str(), dtype_name(dtype), bytes,
                             device_name(device_)),
                 [&] { add_chunk(bytes > kChunk ? bytes : kChunk); });
    target = &chunks_.back();
  }
  Tensor t(target->base + target->used, dtype, shape, device_);
  target->used += bytes;
  size_t u = used();
  if (u > peak_) peak_ = u;
  return t;
}

Tensor Arena::zeros(DType dtype, Shape shape, std::string_view what) {
  Tensor t = alloc(dtype, shape, what);
  fill_zero(t);
  return t;
}

void Arena::reset() {
  for (auto& c : chunks_) c.used = 0;
}

size_t Arena::used() const {
  size_t u = 0;
  for (auto& c : chunks_) u += c.used;
  return u;
}

size_t Arena::capacity() const {
  size_t u = 0;
  for (auto& c : chunks_) u += c.size;
  return u;
}

void fill_zero(const Tensor& t) {
  if (t.nbytes() == 0) return;
  if (t.device == Device::cpu) {
    std::memset(t.data, 0, t.nbytes());
    return;
  }
#ifdef COTUNE_WITH_CUDA
  if (cudaMemset(t.data, 0, t.nbytes()) != cudaSuccess) fail("cudaMemset failed on {}", t.str());
#endif
}

void copy_bytes(const Tensor& dst, const Tensor& src) {
  if (dst.nbytes() != src.nbytes()) fail("copy from {} to {}: sizes differ", src.str(), dst.str());
  if (src.nbytes() == 0) return;
  if (dst.device == Device::cpu && src.device == Device::cpu) {
    std::memcpy(dst.data, src.data, src.nbytes());
    return;
  }
#ifdef COTUNE_WITH_CUDA
  if (cudaMemcpy(dst.data, src.data, src.nbytes(), cudaMemcpyDefault) != cudaSuccess)
    fail("cudaMemcpy from {} to {} failed", src.str(), dst.str());
#else
  fail("copy to/from a CUDA tensor in a build without CUDA");
#endif
}

}  // namespace cotune
