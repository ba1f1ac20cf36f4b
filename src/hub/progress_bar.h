// A byte progress bar for transfers on a terminal: "org/name  12.3/310.0 MiB  45.6 MiB/s  ETA 6s".
// Thread-safe (workers add bytes); redrawn at most 5 times a second; silent when stderr is not a terminal.
#pragma once
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace cotune::hub {

class TransferProgress {
 public:
  TransferProgress(std::string label, int64_t total_bytes, bool enabled);
  ~TransferProgress();
  void add(int64_t bytes);
  void finish();  // final line, then a newline
  static std::string format_line(const std::string& label, int64_t done, int64_t total, double seconds);

 private:
  void draw(bool force);
  std::string label_;
  int64_t total_ = 0, done_ = 0;
  bool enabled_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mutex_;
};

}  // namespace cotune::hub
