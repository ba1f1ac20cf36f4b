#include "kernels/offload.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "base/error.h"
#include "tensor/arena.h"
#ifdef COTUNE_WITH_CUDA
#include "kernels/cuda/offload.h"
#endif

namespace cotune::kernels {

PinnedBuffer::PinnedBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
#ifdef COTUNE_WITH_CUDA
  data_ = cuda::pinned_alloc(bytes);
  pinned_ = data_ != nullptr;
#endif
  if (!data_) data_ = std::malloc(bytes);
  if (!data_) fail("host memory: {:.2f} GiB for offloaded checkpoints could not be allocated", bytes / 1073741824.0);
}

PinnedBuffer::~PinnedBuffer() {
  if (!data_) return;
#ifdef COTUNE_WITH_CUDA
  if (pinned_) {
    cuda::pinned_free(data_);
    return;
  }
#endif
  std::free(data_);
}

PinnedBuffer::PinnedBuffer(PinnedBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)), pinned_(o.pinned_) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    this->~PinnedBuffer();
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    pinned_ = o.pinned_;
  }
  return *this;
}

Tensor PinnedBuffer::view(DType dtype, Shape shape, size_t offset, const char* what) const {
  Tensor t(nullptr, dtype, shape);
  if (offset + t.nbytes() > bytes_)
    fail("{}: {} bytes at offset {} pass the end of a pinned buffer of {} bytes", what, t.nbytes(), offset, bytes_);
  return Tensor(static_cast<uint8_t*>(data_) + offset, dtype, shape);
}

CopyQueue::CopyQueue(Device device, int slots) : device_(device), done_(static_cast<size_t>(slots), nullptr) {
#ifdef COTUNE_WITH_CUDA
  if (device == Device::cuda) {
    stream_ = cuda::copy_stream_create();
    ordered_ = cuda::event_create();
    for (void*& e : done_) e = cuda::event_create();
  }
#endif
}

CopyQueue::~CopyQueue() {
#ifdef COTUNE_WITH_CUDA
  if (device_ == Device::cuda) {
    for (void* e : done_) cuda::event_destroy(e);
    cuda::event_destroy(ordered_);
    cuda::copy_stream_destroy(stream_);
  }
#endif
}

void CopyQueue::copy(int slot, const Tensor& dst, const Tensor& src) {
  if (slot < 0 || slot >= slots()) fail("CopyQueue: slot {} of {}", slot, slots());
  if (dst.nbytes() != src.nbytes()) fail("CopyQueue: copy from {} to {}: sizes differ", src.str(), dst.str());
  if (device_ != Device::cuda) {
    copy_bytes(dst, src);
    return;
  }
#ifdef COTUNE_WITH_CUDA
  cuda::copy_after(stream_, ordered_, done_[static_cast<size_t>(slot)], dst.data, src.data, src.nbytes());
#endif
}

void CopyQueue::wait(int slot) {
  if (slot < 0 || slot >= slots()) fail("CopyQueue: slot {} of {}", slot, slots());
#ifdef COTUNE_WITH_CUDA
  if (device_ == Device::cuda) cuda::wait_event(done_[static_cast<size_t>(slot)]);
#endif
}

}  // namespace cotune::kernels
