#include "cli/data_choice.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>

#include "base/error.h"
#include "cli/did_you_mean.h"
#include "hub/hf_cache.h"

namespace cotune::cli {
namespace fs = std::filesystem;

std::vector<std::string> data_files_in(const std::string& folder) {
  static const char* const kExtensions[] = {".json", ".jsonl", ".parquet", ".csv", ".tsv", ".arrow"};
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(folder, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.starts_with('.')) {  // .cache/, .git/ of a clone
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_directory() && it.depth() >= 1) it.disable_recursion_pending();
    if (!it->is_regular_file()) continue;
    const std::string ext = it->path().extension().string();
    if (std::find(std::begin(kExtensions), std::end(kExtensions), ext) != std::end(kExtensions))
      out.push_back(fs::relative(it->path(), folder).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string resolve_data_path(const std::string& data, const std::string& data_files) {
  const std::string path = hub::resolve(data, hub::RepoType::dataset).path.string();
  std::error_code ec;
  const bool folder = fs::is_directory(path, ec);
  if (!data_files.empty()) {
    if (!folder)
      fail("--data-files \"{}\" needs --data to be a folder or dataset repo, but {} is a file", data_files, path);
    const fs::path file = fs::path(path) / data_files;
    if (!fs::exists(file, ec)) {
      const auto files = data_files_in(path);
      fail("--data-files: {} does not exist; the data files of {} are: {}{}", file.string(), data,
           files.empty() ? "none" : fmt::format("{}", fmt::join(files, ", ")), did_you_mean(data_files, files));
    }
    return file.string();
  }
  if (!folder) return path;
  const auto files = data_files_in(path);
  if (files.size() > 1)
    fail("--data {} holds {} data files: {}. cotune reads one; choose one with --data-files (or --data-config)",
         data, files.size(), fmt::join(files, ", "));
  if (files.size() == 1) return (fs::path(path) / files.front()).string();
  return path;
}

}  // namespace cotune::cli
