#include "base/fs.h"

#include <unistd.h>

#include <filesystem>

#include "base/error.h"

namespace cotune {

namespace fs = std::filesystem;

void replace_directory(const std::string& tmp, const std::string& dst) {
  std::error_code ec;
  const fs::path old = dst + ".old-" + std::to_string(::getpid());
  const bool had = fs::exists(dst, ec);
  if (had) {
    fs::remove_all(old, ec);
    fs::rename(dst, old, ec);
    if (ec) fail("cannot move the previous {} aside: {}", dst, ec.message());
  }
  fs::rename(tmp, dst, ec);
  if (ec) fail("cannot move {} into place as {}: {}", tmp, dst, ec.message());
  if (had) fs::remove_all(old, ec);
}

std::string fresh_temp_dir_for(const std::string& dst) {
  const std::string tmp = dst + ".tmp-" + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) fail("cannot create {}: {}", tmp, ec.message());
  return tmp;
}

void copy_files_if_present(const std::string& from, const std::string& to, std::initializer_list<const char*> names) {
  if (from.empty()) return;
  for (const char* f : names) {
    const fs::path src = fs::path(from) / f;
    std::error_code ec;
    if (!fs::is_regular_file(src, ec)) continue;
    fs::copy_file(src, fs::path(to) / f, fs::copy_options::overwrite_existing, ec);
    if (ec) fail("cannot copy {} to {}: {}", src.string(), to, ec.message());
  }
}

void copy_tokenizer_files(const std::string& from, const std::string& to) {
  copy_files_if_present(from, to,
                        {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"});
}

}  // namespace cotune
