// Logging to stderr. The only global mutable state in cotune is the log level.
#pragma once
#include <fmt/format.h>

#include <functional>
#include <string_view>

namespace cotune::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, quiet = 4 };

void set_level(Level level);
Level level();
void write(Level level, std::string_view message);

// A listener that also receives every message written (after the level filter), e.g. the W&B sink,
// which uploads the run's console output. Called under the logger's lock, from the thread that logs: it
// must be quick and must not log. Pass an empty function to remove it.
using Listener = std::function<void(Level, std::string_view)>;
void set_listener(Listener listener);

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::debug) write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::info) write(Level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::warn) write(Level::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::error) write(Level::error, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace cotune::log
