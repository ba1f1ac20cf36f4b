// cotune::Error — the one exception type. Every message names the file / field / tensor at fault and
// what was expected; callers add context as the error travels up ("while loading model X: ...").
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace cotune {

class Error : public std::runtime_error {
 public:
  explicit Error(std::string msg) : std::runtime_error(std::move(msg)) {}
};

// Throws cotune::Error with an fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Runs fn(); an Error escaping it is rethrown with `context: ` prepended.
template <typename Fn>
auto with_context(const std::string& context, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    throw Error(context + ": " + e.what());
  }
}

}  // namespace cotune

// Invariant check that is cheap enough to keep in release builds.
#define COTUNE_CHECK(cond, ...)                 \
  do {                                          \
    if (!(cond)) ::cotune::fail(__VA_ARGS__);   \
  } while (0)
