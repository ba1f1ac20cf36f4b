// Where tests find their data. Nothing absolute is baked into what runs on the GPU machine: both paths
// can be given by environment (COTUNE_SOURCE_DIR, COTUNE_FIXTURES), the build-time source dir is a fallback.
#pragma once
#include <optional>
#include <string>

namespace cotune::testing {

std::string source_dir();               // the repository root
std::string golden_dir();               // source_dir()/tests/golden
std::optional<std::string> fixtures_dir();  // $COTUNE_FIXTURES, else source_dir()/tests/fixtures (in the repo); nullopt if absent

}  // namespace cotune::testing

// Fails the current test (never skips: the fixtures live in the repository) when the fixtures are not found; else sets `var`.
#define COTUNE_REQUIRE_FIXTURES(var)                                                                  \
  auto var##_opt = ::cotune::testing::fixtures_dir();                                                  \
  if (!var##_opt) GTEST_FAIL() << "fixtures not found: set COTUNE_FIXTURES or restore tests/fixtures"; \
  const std::string var = *var##_opt
