#include "common/test_paths.h"

#include <cstdlib>
#include <filesystem>

namespace cotune::testing {

std::string source_dir() {
  if (const char* e = std::getenv("COTUNE_SOURCE_DIR"); e && *e) return e;
  return COTUNE_SOURCE_DIR;
}

std::string golden_dir() { return source_dir() + "/tests/golden"; }

std::optional<std::string> fixtures_dir() {
  namespace fs = std::filesystem;
  std::string p;
  if (const char* e = std::getenv("COTUNE_FIXTURES"); e && *e) p = e;
  else p = source_dir() + "/tests/fixtures";
  std::error_code ec;
  if (!fs::is_directory(p, ec)) return std::nullopt;
  return fs::canonical(p, ec).string();
}

}  // namespace cotune::testing
