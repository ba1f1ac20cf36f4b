#include "kernels/cuda/offload.h"

#include <cuda_runtime.h>

#include "kernels/cuda/context.h"

namespace cotune::kernels::cuda {

void* pinned_alloc(size_t bytes) {
  void* p = nullptr;
  if (cudaHostAlloc(&p, bytes, cudaHostAllocDefault) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return p;
}

void pinned_free(void* p) { cudaFreeHost(p); }

void* copy_stream_create() {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags (copy stream)");
  return s;
}

void copy_stream_destroy(void* s) {
  if (s) cudaStreamDestroy(static_cast<cudaStream_t>(s));
}

void* event_create() {
  cudaEvent_t e = nullptr;
  check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  return e;
}

void event_destroy(void* e) {
  if (e) cudaEventDestroy(static_cast<cudaEvent_t>(e));
}

void copy_after(void* copy_stream, void* ordered, void* done, void* dst, const void* src, size_t bytes) {
  const auto cs = static_cast<cudaStream_t>(copy_stream);
  check(cudaEventRecord(static_cast<cudaEvent_t>(ordered), stream()), "cudaEventRecord (before an offload copy)");
  check(cudaStreamWaitEvent(cs, static_cast<cudaEvent_t>(ordered), 0), "cudaStreamWaitEvent (offload copy)");
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cs), "cudaMemcpyAsync (offload copy)");
  check(cudaEventRecord(static_cast<cudaEvent_t>(done), cs), "cudaEventRecord (offload copy done)");
}

void wait_event(void* done) {
  check(cudaStreamWaitEvent(stream(), static_cast<cudaEvent_t>(done), 0), "cudaStreamWaitEvent (offload wait)");
}

}  // namespace cotune::kernels::cuda
