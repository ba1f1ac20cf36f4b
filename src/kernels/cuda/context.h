// The CUDA execution context of the kernels in kernels/cuda: one per host thread (thread_local), created
// lazily on first use on the device current at that moment. It holds
//   - the stream every kernel and GEMM of cuda_ops.h / optim.h / nf4.h is launched on. By default a *blocking*
//     stream created by the context (not the legacy default stream, so a step can be captured in a CUDA
//     graph; blocking, so the synchronous cudaMemset/cudaMemcpy of tensor/arena.cpp stay ordered with it);
//     set_stream() points it at a caller's stream instead (e.g. one per data-parallel process);
//   - the cuBLASLt handle, a 32 MiB cuBLASLt workspace and a cache of the chosen GEMM algorithms;
//   - a growable device scratch buffer used by ops that need temporaries (bf16 copies of the small LoRA
//     matrices, attention backward's row sums, grad-norm partials). It grows with cudaMalloc (which is not
//     allowed inside graph capture: run one step uncaptured first so every buffer reaches its size).
// Nothing here is shared between threads; a thread that uses another device must call reset_context() first.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace cotune::kernels::cuda {

struct DeviceInfo {
  int device = 0;
  std::string name;          // "NVIDIA H100 80GB HBM3"
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;
  size_t total_bytes = 0;    // global memory
  size_t free_bytes = 0;     // free now (cudaMemGetInfo)
  size_t l2_bytes = 0;
  size_t smem_per_block_optin = 0;
};

// Properties of the current device (free memory is read fresh on each call).
DeviceInfo device_info();
// Number of CUDA devices (0 when there is no driver / GPU; never throws).
int device_count();

// Stream of this thread's context.
cudaStream_t stream();
// Makes this thread's kernels run on `s` (nullptr: back to the context's own stream). The caller keeps `s` alive.
void set_stream(cudaStream_t s);
// Waits for all work on this thread's stream; throws Error with the CUDA message if any of it failed.
void synchronize();
// Destroys this thread's context (stream, handle, buffers); the next use creates a fresh one.
void reset_context();

// GEMM plans of this thread (gemm.cpp): how many problem shapes were planned (descriptors + cuBLASLt heuristic)
// and the host seconds that took. A benchmark reads them to see what varying shapes cost.
struct GemmPlanStats {
  int64_t plans = 0;
  double host_s = 0;
};
GemmPlanStats gemm_plan_stats();
// cudaProfilerStart / Stop: mark a region for `ncu --profile-from-start off`.
void profiler_start();
void profiler_stop();

// ---- for the kernel files ----------------------------------------------------------------------------
cublasLtHandle_t cublaslt();
void* cublaslt_workspace();
size_t cublaslt_workspace_bytes();
int sm_count();
// Device scratch of at least `bytes` (256-byte aligned), valid until the next call of scratch(). Stream-ordered
// reuse: kernels that used the previous scratch on this stream finish before later ones overwrite it.
void* scratch(size_t bytes);
// Changes whenever scratch() moves to a new buffer: a captured CUDA graph that used the old one is stale.
uint64_t scratch_generation();

// Throws Error("CUDA error in <what>: <message>") unless err == cudaSuccess (an out-of-memory error adds the
// free / total device memory).
void check(cudaError_t err, const char* what);
void check(cublasStatus_t st, const char* what);
// Checks the last launch error (cudaGetLastError) after a kernel launch named `kernel`.
void check_launch(const char* kernel);

}  // namespace cotune::kernels::cuda
