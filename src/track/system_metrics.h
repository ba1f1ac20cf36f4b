// System metrics for the W&B run's "System" charts, named as the official client names them (the stats
// record's keys; the history stream prefixes them with "system."):
//   cpu                        this process's CPU use, % of one core (psutil's convention)
//   cpu.<i>.cpu_percent        each core's use, %
//   memory_percent             system RAM in use, %
//   proc.memory.rssMB | availableMB | percent, proc.cpu.threads
//   gpu.<i>.gpu                GPU utilisation, %            gpu.<i>.memory   memory-controller utilisation, %
//   gpu.<i>.memoryAllocated    memory in use, % of total     gpu.<i>.memoryAllocatedBytes
//   gpu.<i>.temp               °C                            gpu.<i>.powerWatts, enforcedPowerLimitWatts, powerPercent
// CPU and RAM come from /proc; GPUs from NVML, loaded with dlopen("libnvidia-ml.so.1") when the driver
// has it (never a link-time dependency: a machine without a GPU simply has no gpu.* keys).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cotune::track {

using MetricList = std::vector<std::pair<std::string, double>>;

class SystemMonitor {
 public:
  SystemMonitor();
  ~SystemMonitor();
  SystemMonitor(const SystemMonitor&) = delete;
  SystemMonitor& operator=(const SystemMonitor&) = delete;

  // One sample. CPU percentages are averages since the previous call (or since construction).
  MetricList sample();
  int gpu_count() const { return gpu_count_; }
  bool has_nvml() const { return nvml_ != nullptr; }

 private:
  struct Nvml;
  std::unique_ptr<Nvml> nvml_;
  int gpu_count_ = 0;
  double last_wall_s_ = 0;
  double last_proc_cpu_s_ = 0;
  std::vector<std::pair<uint64_t, uint64_t>> last_core_ticks_;  // (busy, total) per core
};

// /proc parsers (public for tests).
struct MemInfo {
  double total_kb = 0, available_kb = 0;
};
MemInfo parse_meminfo(std::string_view text);
// VmRSS (kB) and Threads from /proc/self/status.
std::pair<double, int> parse_proc_status(std::string_view text);
// utime + stime (clock ticks) from /proc/self/stat.
uint64_t parse_proc_stat_cpu_ticks(std::string_view text);
// Per-core (busy, total) ticks from /proc/stat's "cpuN" lines.
std::vector<std::pair<uint64_t, uint64_t>> parse_core_ticks(std::string_view text);

}  // namespace cotune::track
