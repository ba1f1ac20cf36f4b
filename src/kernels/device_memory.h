// Memory of the device the kernels run on, queried (cudaMemGetInfo) when asked: what a caller that plans buffers
// (model/buffer_plan.cpp: whether to keep the attention outputs) or reports usage (the trainer's metrics) reads,
// without reaching into kernels/cuda.
#pragma once
#include <cstddef>

#include "tensor/tensor.h"

namespace cotune::kernels {

struct DeviceMemory {
  size_t total_bytes = 0;  // 0 on the CPU (not tracked)
  size_t free_bytes = 0;
};
DeviceMemory device_memory(Device device);

}  // namespace cotune::kernels
