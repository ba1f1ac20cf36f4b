#include "kernels/graph.h"

#include "base/error.h"
#ifdef COTUNE_WITH_CUDA
#include "kernels/cuda/context.h"
#include "kernels/cuda/graph.h"
#endif

namespace cotune::kernels::graph {

#ifdef COTUNE_WITH_CUDA
bool capture_supported(Device device) { return device == Device::cuda; }
void begin_capture() { cuda::graph_begin_capture(); }
void* end_capture() { return cuda::graph_end_capture(); }
void abort_capture() { cuda::graph_abort_capture(); }
void launch(void* exec) { cuda::graph_launch(exec); }
void destroy(void* exec) { cuda::graph_destroy(exec); }
uint64_t scratch_generation() { return cuda::scratch_generation(); }
#else
namespace {
[[noreturn]] void no_graphs() { fail("CUDA graphs: this build has no CUDA backend"); }
}  // namespace
bool capture_supported(Device) { return false; }
void begin_capture() { no_graphs(); }
void* end_capture() { no_graphs(); }
void abort_capture() {}
void launch(void*) { no_graphs(); }
void destroy(void*) {}
uint64_t scratch_generation() { return 0; }
#endif

}  // namespace cotune::kernels::graph
