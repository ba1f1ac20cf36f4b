// CUDA graphs of the kernels' stream (the backend of kernels/graph.h): capture what this thread launches between
// begin and end into an instantiated cudaGraphExec_t, launch it, destroy it.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/graph.h"

namespace cotune::kernels::cuda {

void graph_begin_capture() {
  check(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
}

void* graph_end_capture() {
  cudaGraph_t g = nullptr;
  check(cudaStreamEndCapture(stream(), &g), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  check(err, "cudaGraphInstantiate");
  return exec;
}

void graph_abort_capture() {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream(), &st) == cudaSuccess && st != cudaStreamCaptureStatusNone) {
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(stream(), &g);
    if (g) cudaGraphDestroy(g);
  }
  cudaGetLastError();
}

void graph_launch(void* exec) { check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), stream()), "cudaGraphLaunch"); }

void graph_destroy(void* exec) {
  if (exec) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
}

}  // namespace cotune::kernels::cuda
