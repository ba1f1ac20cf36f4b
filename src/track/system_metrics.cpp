#include "track/system_metrics.h"

#include <dlfcn.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <sstream>

#include "base/log.h"

namespace cotune::track {

namespace {

std::string read_file(const char* path) {
  std::ifstream in(path);
  if (!in) return {};
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace

MemInfo parse_meminfo(std::string_view text) {
  MemInfo m;
  std::istringstream in{std::string(text)};
  std::string key;
  double v = 0;
  std::string unit;
  while (in >> key >> v) {
    std::getline(in, unit);
    if (key == "MemTotal:") m.total_kb = v;
    if (key == "MemAvailable:") m.available_kb = v;
  }
  return m;
}

std::pair<double, int> parse_proc_status(std::string_view text) {
  std::istringstream in{std::string(text)};
  double rss_kb = 0;
  int threads = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) rss_kb = std::strtod(line.c_str() + 6, nullptr);
    if (line.rfind("Threads:", 0) == 0) threads = static_cast<int>(std::strtol(line.c_str() + 8, nullptr, 10));
  }
  return {rss_kb, threads};
}

uint64_t parse_proc_stat_cpu_ticks(std::string_view text) {
  // "pid (comm) state ppid ..." -- comm may hold spaces and parentheses, so count from the last ')'.
  const auto close = text.rfind(')');
  if (close == std::string_view::npos) return 0;
  std::istringstream in{std::string(text.substr(close + 1))};
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; in >> field; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stoull(field);
    if (i == 15) {
      stime = std::stoull(field);
      break;
    }
  }
  return utime + stime;
}

std::vector<std::pair<uint64_t, uint64_t>> parse_core_ticks(std::string_view text) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    if (line.size() < 4 || line.compare(0, 3, "cpu") != 0 || line[3] < '0' || line[3] > '9') continue;
    std::istringstream ls(line);
    std::string name;
    ls >> name;
    uint64_t v, total = 0, idle = 0;
    for (int i = 0; ls >> v; ++i) {
      total += v;
      if (i == 3 || i == 4) idle += v;  // idle, iowait
    }
    out.emplace_back(total - idle, total);
  }
  return out;
}

// ---- NVML (the subset used, declared here so that no NVIDIA header or library is needed to build) ----

struct SystemMonitor::Nvml {
  using Device = void*;
  struct Utilization {
    unsigned int gpu, memory;
  };
  struct Memory {
    unsigned long long total, free, used;
  };
  void* lib = nullptr;
  int (*init)() = nullptr;
  int (*shutdown)() = nullptr;
  int (*count)(unsigned int*) = nullptr;
  int (*handle)(unsigned int, Device*) = nullptr;
  int (*utilization)(Device, Utilization*) = nullptr;
  int (*memory)(Device, Memory*) = nullptr;
  int (*temperature)(Device, int, unsigned int*) = nullptr;  // sensor 0: the GPU die
  int (*power)(Device, unsigned int*) = nullptr;              // milliwatts
  int (*power_limit)(Device, unsigned int*) = nullptr;        // milliwatts
  std::vector<Device> devices;

  template <typename F>
  bool sym(F& f, const char* name) {
    f = reinterpret_cast<F>(dlsym(lib, name));
    return f != nullptr;
  }
};

SystemMonitor::SystemMonitor() {
  last_wall_s_ = now_s();
  last_proc_cpu_s_ = static_cast<double>(parse_proc_stat_cpu_ticks(read_file("/proc/self/stat"))) /
                     static_cast<double>(sysconf(_SC_CLK_TCK));
  last_core_ticks_ = parse_core_ticks(read_file("/proc/stat"));

  void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return;  // no NVIDIA driver: no GPU metrics
  auto n = std::make_unique<Nvml>();
  n->lib = lib;
  const bool all = n->sym(n->init, "nvmlInit_v2") && n->sym(n->shutdown, "nvmlShutdown") &&
                   n->sym(n->count, "nvmlDeviceGetCount_v2") && n->sym(n->handle, "nvmlDeviceGetHandleByIndex_v2") &&
                   n->sym(n->utilization, "nvmlDeviceGetUtilizationRates") &&
                   n->sym(n->memory, "nvmlDeviceGetMemoryInfo") && n->sym(n->temperature, "nvmlDeviceGetTemperature") &&
                   n->sym(n->power, "nvmlDeviceGetPowerUsage") &&
                   n->sym(n->power_limit, "nvmlDeviceGetEnforcedPowerLimit");
  unsigned int count = 0;
  if (!all || n->init() != 0) {
    log::debug("system metrics: NVML found but not usable; no GPU metrics");
    dlclose(lib);
    return;
  }
  if (n->count(&count) == 0)
    for (unsigned int i = 0; i < count; ++i) {
      Nvml::Device d = nullptr;
      if (n->handle(i, &d) == 0) n->devices.push_back(d);
    }
  gpu_count_ = static_cast<int>(n->devices.size());
  nvml_ = std::move(n);
}

SystemMonitor::~SystemMonitor() {
  if (!nvml_) return;
  nvml_->shutdown();
  dlclose(nvml_->lib);
}

MetricList SystemMonitor::sample() {
  MetricList m;
  const double wall = now_s();
  const double dt = wall - last_wall_s_;
  const double tck = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double proc_cpu_s = static_cast<double>(parse_proc_stat_cpu_ticks(read_file("/proc/self/stat"))) / tck;
  if (dt > 0) m.emplace_back("cpu", 100.0 * (proc_cpu_s - last_proc_cpu_s_) / dt);
  const auto cores = parse_core_ticks(read_file("/proc/stat"));
  for (size_t i = 0; i < cores.size() && i < last_core_ticks_.size(); ++i) {
    const double busy = static_cast<double>(cores[i].first - last_core_ticks_[i].first);
    const double total = static_cast<double>(cores[i].second - last_core_ticks_[i].second);
    m.emplace_back("cpu." + std::to_string(i) + ".cpu_percent", total > 0 ? 100.0 * busy / total : 0.0);
  }
  last_wall_s_ = wall;
  last_proc_cpu_s_ = proc_cpu_s;
  last_core_ticks_ = cores;

  const MemInfo mem = parse_meminfo(read_file("/proc/meminfo"));
  const auto [rss_kb, threads] = parse_proc_status(read_file("/proc/self/status"));
  if (mem.total_kb > 0) {
    m.emplace_back("memory_percent", 100.0 * (mem.total_kb - mem.available_kb) / mem.total_kb);
    m.emplace_back("proc.memory.availableMB", mem.available_kb / 1024.0);
    m.emplace_back("proc.memory.percent", 100.0 * rss_kb / mem.total_kb);
  }
  m.emplace_back("proc.memory.rssMB", rss_kb / 1024.0);
  m.emplace_back("proc.cpu.threads", threads);

  if (nvml_) {
    for (size_t i = 0; i < nvml_->devices.size(); ++i) {
      Nvml::Device d = nvml_->devices[i];
      const std::string p = "gpu." + std::to_string(i) + ".";
      Nvml::Utilization u{};
      if (nvml_->utilization(d, &u) == 0) {
        m.emplace_back(p + "gpu", u.gpu);
        m.emplace_back(p + "memory", u.memory);
      }
      Nvml::Memory mi{};
      if (nvml_->memory(d, &mi) == 0 && mi.total > 0) {
        m.emplace_back(p + "memoryAllocated", 100.0 * static_cast<double>(mi.used) / static_cast<double>(mi.total));
        m.emplace_back(p + "memoryAllocatedBytes", static_cast<double>(mi.used));
      }
      unsigned int t = 0;
      if (nvml_->temperature(d, 0, &t) == 0) m.emplace_back(p + "temp", t);
      unsigned int mw = 0, limit = 0;
      if (nvml_->power(d, &mw) == 0) {
        m.emplace_back(p + "powerWatts", mw / 1000.0);
        if (nvml_->power_limit(d, &limit) == 0 && limit > 0) {
          m.emplace_back(p + "enforcedPowerLimitWatts", limit / 1000.0);
          m.emplace_back(p + "powerPercent", 100.0 * mw / limit);
        }
      }
    }
  }
  return m;
}

}  // namespace cotune::track
