#include "kernels/device_memory.h"

#ifdef COTUNE_WITH_CUDA
#include "kernels/cuda/context.h"
#endif

namespace cotune::kernels {

DeviceMemory device_memory(Device device) {
#ifdef COTUNE_WITH_CUDA
  if (device == Device::cuda) {
    const cuda::DeviceInfo info = cuda::device_info();
    return {info.total_bytes, info.free_bytes};
  }
#endif
  (void)device;
  return {};
}

}  // namespace cotune::kernels
