#include "cli/run_folder.h"

#include <algorithm>
#include <filesystem>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"

namespace cotune::cli {
namespace {
namespace fs = std::filesystem;

// What a training run writes into its output folder (cmd_train.cpp, train/trainer.cpp, track/).
constexpr const char* kRunOutputs[] = {
    "checkpoint-*", "metrics.jsonl", "metrics.jsonl.tmp", "adapter", "adapter.tmp-*", "adapter.old-*", "tb",
    "report",       "samples",       "merged",            "merged.tmp-*", "merged.old-*"};
}  // namespace

std::vector<std::string> run_outputs_in(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    for (const char* pattern : kRunOutputs)
      if (name_matches(n, pattern)) {
        found.push_back(n);
        break;
      }
  }
  if (ec) fail("{}: cannot list the output folder: {}", dir, ec.message());
  std::sort(found.begin(), found.end());
  return found;
}

void claim_run_folder(const std::string& dir, bool resume, bool overwrite) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (st.type() != fs::file_type::not_found && st.type() != fs::file_type::directory)
    fail("output {}: exists and is not a folder", dir);
  if (resume && overwrite)
    fail("output {}: --resume continues the run in this folder and --overwrite-output replaces it; give one", dir);
  const std::vector<std::string> outputs = run_outputs_in(dir);
  if (!outputs.empty() && !resume) {
    std::string listed;
    for (size_t i = 0; i < outputs.size() && i < 4; ++i) listed += (i ? ", " : "") + outputs[i];
    if (outputs.size() > 4) listed += fmt::format(" and {} more", outputs.size() - 4);
    if (!overwrite)
      fail("output {}: holds another run ({}). Continue it with --resume, replace it with --overwrite-output "
           "(removes only what cotune wrote there), or choose another --output",
           dir, listed);
    for (const auto& n : outputs) {
      fs::remove_all(fs::path(dir) / n, ec);
      if (ec) fail("output {}: cannot remove {}: {}", dir, n, ec.message());
    }
    log::info("--overwrite-output: removed the previous run's {} from {}", listed, dir);
  }
  fs::create_directories(dir, ec);
  if (ec) fail("output {}: cannot create the folder: {}", dir, ec.message());
}

}  // namespace cotune::cli
