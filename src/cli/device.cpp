#include "cli/device.h"

#ifdef COTUNE_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include "base/error.h"

namespace cotune::cli {

Device parse_device(const std::string& value, std::string_view what) {
  if (value == "cpu") return Device::cpu;
  if (value != "cuda" && value != "auto") fail("{} must be auto, cpu or cuda, got \"{}\"", what, value);
#ifdef COTUNE_WITH_CUDA
  int n = 0;
  const bool gpu = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  if (!gpu) cudaGetLastError();
  if (value == "cuda" && !gpu) fail("{} cuda: no CUDA GPU is visible", what);
  return gpu ? Device::cuda : Device::cpu;
#else
  if (value == "cuda") fail("{} cuda: this build of cotune has no CUDA backend (configure with -DCOTUNE_CUDA=ON)", what);
  return Device::cpu;
#endif
}

}  // namespace cotune::cli
