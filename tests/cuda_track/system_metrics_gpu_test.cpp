// On the GPU machine: NVML is found by dlopen and every GPU reports the W&B system metrics.
#include <gtest/gtest.h>

#include <map>

#include "track/system_metrics.h"

namespace cotune::track {
namespace {

TEST(SystemMetricsGpu, NvmlReportsEveryGpu) {
  SystemMonitor monitor;
  ASSERT_TRUE(monitor.has_nvml()) << "libnvidia-ml.so.1 was not found or did not initialise";
  ASSERT_GE(monitor.gpu_count(), 1);
  std::map<std::string, double> m;
  for (const auto& [k, v] : monitor.sample()) m[k] = v;
  for (int i = 0; i < monitor.gpu_count(); ++i) {
    const std::string p = "gpu." + std::to_string(i) + ".";
    for (const char* k : {"gpu", "memory", "memoryAllocated", "memoryAllocatedBytes", "temp", "powerWatts"})
      EXPECT_TRUE(m.count(p + k)) << p + k;
    EXPECT_GE(m[p + "gpu"], 0.0);
    EXPECT_LE(m[p + "gpu"], 100.0);
    EXPECT_GE(m[p + "memoryAllocated"], 0.0);
    EXPECT_LE(m[p + "memoryAllocated"], 100.0);
    EXPECT_GT(m[p + "temp"], 0.0);
    EXPECT_LT(m[p + "temp"], 120.0);
    EXPECT_GT(m[p + "powerWatts"], 0.0);
    EXPECT_LT(m[p + "powerWatts"], 2000.0);
    std::printf("%s: util %.0f%%, memory %.1f%% (%.2f GiB), %.0f C, %.0f W\n", p.c_str(), m[p + "gpu"],
                m[p + "memoryAllocated"], m[p + "memoryAllocatedBytes"] / 1073741824.0, m[p + "temp"],
                m[p + "powerWatts"]);
  }
}

}  // namespace
}  // namespace cotune::track
