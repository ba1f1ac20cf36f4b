#include "cli/run_folder.h"

#include <algorithm>
#include <filesystem>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"

namespace cotune::cli {
namespace {
namespace fs = std::filesystem;

// What a training run writes into its output folder (cmd_train*.cpp, train/trainer.cpp, train/checkpoint.cpp, track/), and for a
// folder what it holds, so that a folder of the user's that happens to share a name is never taken for ours.
const OutputFolderKind kReportFolder{"a training report", {"index.html", "*.svg"}};
const OutputFolderKind kTensorBoardFolder{"TensorBoard event files", {"events.out.tfevents.*"}};
const OutputFolderKind kSamplesFolder{"before/after answers", {"eval.json", "report.md", "report.html"}};
const OutputFolderKind kWandbFolder{"Weights & Biases run folders", {"run-*", "offline-run-*", "latest-run"}};

struct RunOutput {
  const char* pattern;
  const OutputFolderKind* folder;  // nullptr: a file (or a temp folder of an interrupted write)
};
const RunOutput kRunOutputs[] = {
    {"checkpoint-*.tmp-*", nullptr},     {"checkpoint-*.old-*", nullptr},   {"checkpoint-*", &kCheckpointFolder},
    {"metrics.jsonl", nullptr},          {"metrics.jsonl.tmp", nullptr},    {"adapter", &kAdapterFolder},
    {"adapter.tmp-*", nullptr},          {"adapter.old-*", nullptr},        {"merged", &kModelFolder},
    {"merged.tmp-*", nullptr},           {"merged.old-*", nullptr},         {"tb", &kTensorBoardFolder},
    {"report", &kReportFolder},          {"samples", &kSamplesFolder},      {"samples.tmp-*", nullptr},
    {"samples.old-*", nullptr},          {"wandb", &kWandbFolder}};

const RunOutput* run_output_of(const std::string& name) {
  for (const RunOutput& o : kRunOutputs)
    if (name_matches(name, o.pattern)) return &o;
  return nullptr;
}

}  // namespace

std::vector<std::string> run_outputs_in(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (run_output_of(e.path().filename().string())) found.push_back(e.path().filename().string());
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
    // Every folder is checked before anything is removed: one that holds files cotune does not write there
    // is the user's, and the whole overwrite is refused.
    for (const auto& n : outputs)
      if (const RunOutput* o = run_output_of(n); o && o->folder)
        require_replaceable_directory((fs::path(dir) / n).string(), *o->folder);
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
