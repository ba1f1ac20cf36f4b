// CUDA graph capture of the kernels' stream; callers outside kernels/ use kernels/graph.h.
#pragma once

namespace cotune::kernels::cuda {

// CUDA graph of what this thread launches on its stream between begin and end (an instantiated cudaGraphExec_t).
void graph_begin_capture();
void* graph_end_capture();
void graph_abort_capture();  // ends a capture that failed half-way and clears the error
void graph_launch(void* exec);
void graph_destroy(void* exec);

}  // namespace cotune::kernels::cuda
