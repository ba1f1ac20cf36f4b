// Copies between device memory and pinned host memory that overlap with compute: what offloaded checkpointing
// (model/runner.cpp, RunnerOptions::offload_checkpoints) uses to keep each layer's saved input in host memory.
//
// A CopyQueue owns a second stream (on CUDA) and a set of completion slots. copy(i, dst, src) enqueues the copy
// after everything the kernels' stream holds so far and marks slot i when it is done; wait(i) makes the kernels'
// stream wait for slot i. Both are ordinary stream operations, so a step that uses them can be captured in a CUDA
// graph (every copy must be waited for before the capture ends). On the CPU the copy happens at once.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

#include "tensor/tensor.h"

namespace cotune::kernels {

// Page-locked host memory (cudaHostAlloc on a CUDA build; ordinary memory otherwise), for asynchronous copies.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(PinnedBuffer&& o) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  // A host tensor at byte `offset` (throws Error naming `what` past the end).
  Tensor view(DType dtype, Shape shape, size_t offset, const char* what) const;
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  bool pinned_ = false;
};

class CopyQueue {
 public:
  CopyQueue(Device device, int slots);
  ~CopyQueue();
  CopyQueue(const CopyQueue&) = delete;
  CopyQueue& operator=(const CopyQueue&) = delete;
  // dst <- src (same byte count; one side host, the other on `device`, or both host), after what the kernels' stream
  // holds now; slot i marks its completion.
  void copy(int slot, const Tensor& dst, const Tensor& src);
  // The kernels' stream waits for slot i's last copy.
  void wait(int slot);
  int slots() const { return static_cast<int>(done_.size()); }

 private:
  Device device_;
  [[maybe_unused]] void* stream_ = nullptr;   // cudaStream_t (CUDA builds)
  [[maybe_unused]] void* ordered_ = nullptr;  // cudaEvent_t: the kernels' stream's position when a copy is enqueued
  std::vector<void*> done_;   // cudaEvent_t per slot
};

}  // namespace cotune::kernels
