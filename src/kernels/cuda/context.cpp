// Thread-local CUDA context: stream, cuBLASLt handle + workspace, scratch (see context.h).
#include "kernels/cuda/context.h"

#include <cuda_profiler_api.h>

#include <memory>

#include "base/error.h"

namespace cotune::kernels::cuda {

namespace {

constexpr size_t kCublasWorkspace = size_t{32} << 20;  // NVIDIA's recommendation for Hopper

struct Context {
  int device = 0;
  cudaStream_t own_stream = nullptr;
  cudaStream_t user_stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  void* scratch = nullptr;
  size_t scratch_bytes = 0;
  uint64_t scratch_generation = 0;
  int sms = 0;

  Context() {
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaStreamCreateWithFlags(&own_stream, cudaStreamDefault), "cudaStreamCreate");
    check(cublasLtCreate(&lt), "cublasLtCreate");
    check(cudaMalloc(&workspace, kCublasWorkspace), "cudaMalloc (cuBLASLt workspace)");
    check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  }
  ~Context() {
    // Best effort: destructors must not throw.
    if (own_stream) cudaStreamSynchronize(own_stream);
    if (scratch) cudaFree(scratch);
    if (workspace) cudaFree(workspace);
    if (lt) cublasLtDestroy(lt);
    if (own_stream) cudaStreamDestroy(own_stream);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
};

thread_local std::unique_ptr<Context> tl_context;

Context& ctx() {
  if (!tl_context) tl_context = std::make_unique<Context>();
  return *tl_context;
}

}  // namespace

void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear a sticky launch error so the message below is ours
  if (err == cudaErrorMemoryAllocation) {
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail("GPU out of memory in {}: {:.2f} GiB free of {:.2f} GiB ({})", what, free_b / 1073741824.0,
         total_b / 1073741824.0, cudaGetErrorString(err));
  }
  fail("CUDA error in {}: {} ({})", what, cudaGetErrorString(err), cudaGetErrorName(err));
}

void check(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return;
  fail("cuBLAS error in {}: {} ({})", what, cublasGetStatusString(st), static_cast<int>(st));
}

void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

DeviceInfo device_info() {
  DeviceInfo info;
  check(cudaGetDevice(&info.device), "cudaGetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, info.device), "cudaGetDeviceProperties");
  info.name = prop.name;
  info.sm_count = prop.multiProcessorCount;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.l2_bytes = static_cast<size_t>(prop.l2CacheSize);
  info.smem_per_block_optin = prop.sharedMemPerBlockOptin;
  check(cudaMemGetInfo(&info.free_bytes, &info.total_bytes), "cudaMemGetInfo");
  return info;
}

cudaStream_t stream() {
  Context& c = ctx();
  return c.user_stream ? c.user_stream : c.own_stream;
}

void set_stream(cudaStream_t s) { ctx().user_stream = s; }

void synchronize() { check(cudaStreamSynchronize(stream()), "synchronize"); }

void reset_context() { tl_context.reset(); }

void profiler_start() { check(cudaProfilerStart(), "cudaProfilerStart"); }
void profiler_stop() { check(cudaProfilerStop(), "cudaProfilerStop"); }

cublasLtHandle_t cublaslt() { return ctx().lt; }
void* cublaslt_workspace() { return ctx().workspace; }
size_t cublaslt_workspace_bytes() { return kCublasWorkspace; }
int sm_count() { return ctx().sms; }

void* scratch(size_t bytes) {
  Context& c = ctx();
  if (bytes <= c.scratch_bytes) return c.scratch;
  size_t want = bytes + bytes / 4;  // some headroom against repeated small growths
  want = (want + 255) / 256 * 256;
  if (c.scratch) {
    // Work queued on the stream may still read the old buffer.
    check(cudaStreamSynchronize(stream()), "synchronize before growing the scratch buffer");
    check(cudaFree(c.scratch), "cudaFree (scratch)");
    c.scratch = nullptr;
    c.scratch_bytes = 0;
  }
  check(cudaMalloc(&c.scratch, want), "cudaMalloc (kernel scratch)");
  c.scratch_bytes = want;
  ++c.scratch_generation;
  return c.scratch;
}

uint64_t scratch_generation() { return ctx().scratch_generation; }

}  // namespace cotune::kernels::cuda
