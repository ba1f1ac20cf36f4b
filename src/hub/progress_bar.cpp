#include "hub/progress_bar.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace cotune::hub {

namespace {
std::string human_bytes(double b) {
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
  if (b >= 1024.0) return fmt::format("{:.1f} KiB", b / 1024.0);
  return fmt::format("{:.0f} B", b);
}
std::string human_time(double s) {
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}
}  // namespace

TransferProgress::TransferProgress(std::string label, int64_t total_bytes, bool enabled)
    : label_(std::move(label)), total_(total_bytes), enabled_(enabled && isatty(2)),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

TransferProgress::~TransferProgress() {
  if (enabled_ && !finished_ && done_ > 0) std::fputc('\n', stderr);
}

std::string TransferProgress::format_line(const std::string& label, int64_t done, int64_t total, double seconds) {
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
  std::string line = fmt::format("{}  {} / {}", label, human_bytes(static_cast<double>(done)), human_bytes(static_cast<double>(total)));
  if (total > 0) line += fmt::format(" ({:.0f}%)", 100.0 * static_cast<double>(done) / static_cast<double>(total));
  line += fmt::format("  {}/s", human_bytes(rate));
  if (rate > 0 && total > done) line += "  ETA " + human_time(static_cast<double>(total - done) / rate);
  return line;
}

void TransferProgress::add(int64_t bytes) {
  std::lock_guard lock(mutex_);
  done_ += bytes;
  draw(false);
}

void TransferProgress::finish() {
  std::lock_guard lock(mutex_);
  if (finished_) return;
  draw(true);
  if (enabled_) std::fputc('\n', stderr);
  finished_ = true;
}

void TransferProgress::draw(bool force) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_draw_ < std::chrono::milliseconds(200)) return;
  last_draw_ = now;
  const double s = std::chrono::duration<double>(now - start_).count();
  std::fprintf(stderr, "\r%s\x1b[K", format_line(label_, done_, total_, s).c_str());
  std::fflush(stderr);
}

}  // namespace cotune::hub
