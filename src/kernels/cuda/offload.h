// The CUDA side of kernels/offload.h: pinned host memory, a copy stream and events ordered against the kernels'
// stream (kernels/cuda/context.h).
#pragma once
#include <cstddef>

namespace cotune::kernels::cuda {

void* pinned_alloc(size_t bytes);  // nullptr when page-locked memory is refused (the caller falls back)
void pinned_free(void* p);
void* copy_stream_create();        // a non-blocking stream
void copy_stream_destroy(void* s);
void* event_create();              // timing disabled
void event_destroy(void* e);
// On `copy_stream`: wait for the kernels' stream's current position (recorded in `ordered`), copy, record `done`.
void copy_after(void* copy_stream, void* ordered, void* done, void* dst, const void* src, size_t bytes);
// The kernels' stream waits for `done`.
void wait_event(void* done);

}  // namespace cotune::kernels::cuda
