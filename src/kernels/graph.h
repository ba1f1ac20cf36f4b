// CUDA graphs of what this thread enqueues on the kernels' stream (kernels/cuda/context.h): a caller that replays a
// fixed sequence of ops (model/step_graphs.h: one training step per length bucket) captures it once and launches it
// as one graph. Only CUDA builds capture; elsewhere capture_supported() is false and the other calls fail.
//
//   begin_capture(); ...ops on CUDA tensors...; exec = end_capture();   // nothing ran
//   launch(exec); ... destroy(exec);
// A capture that throws half-way must be ended with abort_capture(). Graphs hold the kernels' scratch pointer:
// once scratch_generation() has changed since a capture, that graph is stale.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace cotune::kernels::graph {

bool capture_supported(Device device);
void begin_capture();
void* end_capture();    // an instantiated graph (cudaGraphExec_t)
void abort_capture();   // ends a capture that failed half-way and clears the error
void launch(void* exec);
void destroy(void* exec);
uint64_t scratch_generation();

}  // namespace cotune::kernels::graph
