// Reads a dataset file with cotune's record readers (Parquet, CSV, JSON) and reports rows/s and MB/s.
//   bench_data_reader FILE [REPEATS]
// Prints one JSON line: rows, file bytes, JSON bytes produced, best-of-REPEATS seconds, rows/s, file MB/s, peak RSS.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "base/error.h"
#include "data/record_reader.h"

namespace {
int64_t peak_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_data_reader FILE [REPEATS]\n");
    return 2;
  }
  try {
    std::string path = argv[1];
    int repeats = argc > 2 ? std::stoi(argv[2]) : 3;
    double best = 1e30;
    int64_t rows = 0, json_bytes = 0;
    for (int r = 0; r < repeats; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      auto reader = cotune::data::open_record_reader(path);
      std::string_view json;
      cotune::data::RecordLocation loc;
      rows = json_bytes = 0;
      while (reader->next(json, loc)) {
        ++rows;
        json_bytes += static_cast<int64_t>(json.size());
      }
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    auto file_bytes = static_cast<int64_t>(std::filesystem::file_size(path));
    std::printf("{\"system\": \"cotune\", \"format\": \"%s\", \"rows\": %lld, \"file_bytes\": %lld, \"json_bytes\": %lld, "
                "\"seconds\": %.4f, \"rows_per_s\": %.0f, \"file_mb_per_s\": %.1f, \"peak_rss_mib\": %.1f}\n",
                std::string(cotune::data::to_string(cotune::data::detect_data_format(path))).c_str(),
                static_cast<long long>(rows), static_cast<long long>(file_bytes), static_cast<long long>(json_bytes), best,
                static_cast<double>(rows) / best, static_cast<double>(file_bytes) / 1e6 / best,
                static_cast<double>(peak_rss_kib()) / 1024.0);
  } catch (const cotune::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
