// Where tests find their data. Nothing absolute is baked into what runs on the GPU machine: both paths
// can be given by environment (COTUNE_SOURCE_DIR, COTUNE_FIXTURES), the build-time source dir is a fallback.
#pragma once
#include <optional>
#include <string>

namespace cotune::testing {

std::string source_dir();               // the repository root
std::string golden_dir();               // source_dir()/tests/golden
std::optional<std::string> fixtures_dir();  // $COTUNE_FIXTURES, else source_dir()/../shared/fixtures; nullopt if absent

}  // namespace cotune::testing

// Skips the current test with a message when the shared fixtures are not available; else sets `var`.
#define COTUNE_REQUIRE_FIXTURES(var)                                                                  \
  auto var##_opt = ::cotune::testing::fixtures_dir();                                                  \
  if (!var##_opt) GTEST_SKIP() << "shared fixtures not found: set COTUNE_FIXTURES or provide ../shared/fixtures"; \
  const std::string var = *var##_opt
