#include "base/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace cotune::log {
namespace {
std::atomic<Level> g_level{Level::info};
std::mutex g_mutex;
Listener g_listener;  // guarded by g_mutex
}  // namespace

void set_level(Level l) { g_level.store(l); }
Level level() { return g_level.load(); }

void write(Level l, std::string_view message) {
  static constexpr const char* kPrefix[] = {"debug: ", "", "warning: ", "error: ", ""};
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "%s%.*s\n", kPrefix[static_cast<int>(l)], static_cast<int>(message.size()),
               message.data());
  std::fflush(stderr);
  if (g_listener) g_listener(l, message);
}

void set_listener(Listener listener) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_listener = std::move(listener);
}

}  // namespace cotune::log
