#include "base/fs.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "base/error.h"

namespace cotune {

namespace fs = std::filesystem;

#define COTUNE_TOKENIZER_FILES \
  "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"

const OutputFolderKind kModelFolder{
    "a model (config.json, *.safetensors, tokenizer files)",
    {"config.json", "generation_config.json", "model.safetensors", "model-*.safetensors", "model.safetensors.index.json",
     "chat_template.jinja", "added_tokens.json", "README.md", COTUNE_TOKENIZER_FILES}};
const OutputFolderKind kAdapterFolder{
    "a LoRA adapter", {"adapter_config.json", "adapter_model.safetensors", "README.md", COTUNE_TOKENIZER_FILES}};
const OutputFolderKind kCheckpointFolder{"a training checkpoint",
                                         {"adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors",
                                          "trainer_state.json", "README.md", COTUNE_TOKENIZER_FILES}};
#undef COTUNE_TOKENIZER_FILES

bool name_matches(std::string_view name, std::string_view pattern) {
  // Greedy glob with backtracking to the last `*` (linear in practice for these short names).
  size_t n = 0, p = 0, star = std::string_view::npos, resume = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = n;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p;
      ++n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

void require_replaceable_directory(const std::string& dst, const OutputFolderKind& kind) {
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(dst, ec);
  if (ec || st.type() == fs::file_type::not_found) return;
  if (st.type() != fs::file_type::directory)
    fail("{}: exists and is not a folder; cotune writes {} as a folder and replaces only folders it wrote. Remove it "
         "or choose another output path",
         dst, kind.what);
  std::vector<std::string> foreign;
  for (const auto& e : fs::directory_iterator(dst, ec)) {
    const std::string n = e.path().filename().string();
    bool known = false;
    for (const char* pattern : kind.names) known = known || name_matches(n, pattern);
    if (!known) foreign.push_back(n);
  }
  if (ec) fail("{}: cannot list the folder: {}", dst, ec.message());
  if (foreign.empty()) return;
  std::sort(foreign.begin(), foreign.end());
  std::string listed;
  for (size_t i = 0; i < foreign.size() && i < 3; ++i) listed += (i ? ", " : "") + foreign[i];
  if (foreign.size() > 3) listed += fmt::format(" and {} more", foreign.size() - 3);
  fail("{}: the folder holds files cotune did not write there ({}); cotune replaces only a folder holding {}. "
       "Remove them or choose another output path",
       dst, listed, kind.what);
}

void replace_directory(const std::string& tmp, const std::string& dst, const OutputFolderKind& kind) {
  require_replaceable_directory(dst, kind);
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
