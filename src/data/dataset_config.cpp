#include "data/dataset_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fnmatch.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "base/error.h"

namespace cotune::data {
namespace fs = std::filesystem;

namespace {

std::vector<std::string> string_or_list(const YAML::Node& n, const std::string& where) {
  if (n.IsScalar()) return {n.as<std::string>()};
  if (n.IsSequence()) {
    std::vector<std::string> out;
    for (const auto& e : n) {
      if (!e.IsScalar()) fail("{}: expected a path string in a data_files list", where);
      out.push_back(e.as<std::string>());
    }
    return out;
  }
  fail("{}: expected a path or a list of paths", where);
}

std::string list_names(const std::vector<DatasetConfig>& configs) {
  std::vector<std::string> names;
  for (const auto& c : configs) names.push_back(c.name + (c.is_default ? " (default)" : ""));
  return fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace

std::vector<DatasetConfig> parse_dataset_card(std::string_view readme, const std::string& where) {
  // Front matter: the text between a first line "---" and the next line "---".
  if (readme.starts_with("\xEF\xBB\xBF")) readme.remove_prefix(3);
  if (!readme.starts_with("---")) return {};
  const size_t body = readme.find('\n');
  if (body == std::string_view::npos) return {};
  size_t end = readme.find("\n---", body);
  if (end == std::string_view::npos) fail("{}: the YAML front matter that starts with --- has no closing ---", where);
  const std::string yaml(readme.substr(body + 1, end - body));
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    fail("{}: malformed YAML front matter: {}", where, e.what());
  }
  if (!root.IsMap() || !root["configs"]) return {};
  const YAML::Node configs = root["configs"];
  if (!configs.IsSequence()) fail("{}: `configs` must be a list of {{config_name, data_files}}", where);
  std::vector<DatasetConfig> out;
  for (size_t i = 0; i < configs.size(); ++i) {
    const YAML::Node c = configs[i];
    const std::string at = fmt::format("{}: configs[{}]", where, i);
    if (!c.IsMap()) fail("{}: expected a mapping with config_name and data_files", at);
    DatasetConfig d;
    d.name = c["config_name"] ? c["config_name"].as<std::string>() : "default";
    d.is_default = c["default"] && c["default"].as<bool>(false);
    const YAML::Node files = c["data_files"];
    if (!files) fail("{} ({}): no data_files", at, d.name);
    if (files.IsScalar()) {
      d.data_files.push_back({"train", {files.as<std::string>()}});
    } else if (files.IsSequence()) {
      const bool split_entries = files.size() > 0 && files[0].IsMap();
      if (split_entries) {
        for (const auto& s : files) {
          if (!s.IsMap() || !s["split"] || !s["path"]) fail("{} ({}): each data_files entry needs split and path", at, d.name);
          d.data_files.push_back({s["split"].as<std::string>(), string_or_list(s["path"], at)});
        }
      } else {
        d.data_files.push_back({"train", string_or_list(files, at)});
      }
    } else if (files.IsMap()) {  // {train: path, test: [paths]}
      for (const auto& kv : files) d.data_files.push_back({kv.first.as<std::string>(), string_or_list(kv.second, at)});
    } else {
      fail("{} ({}): data_files must be a path, a list, or a list of {{split, path}}", at, d.name);
    }
    out.push_back(std::move(d));
  }
  return out;
}

bool data_files_match(const std::string& pattern, const std::string& path) {
  if (pattern == path) return true;
  const int flags = pattern.find("**") != std::string::npos ? 0 : FNM_PATHNAME;
  return ::fnmatch(pattern.c_str(), path.c_str(), flags) == 0;
}

bool is_data_file(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  if (name.empty() || name.front() == '.' || name == "README.md") return false;
  std::string p = path;
  for (const char* z : {".gz", ".zst", ".bz2", ".xz"})
    if (p.ends_with(z)) p.resize(p.size() - std::string_view(z).size());
  for (const char* ext : {".json", ".jsonl", ".csv", ".parquet", ".tsv"})
    if (p.ends_with(ext)) return true;
  return false;
}

std::vector<DatasetConfig> configs_from_parquet_layout(const std::vector<std::string>& repo_files) {
  std::map<std::string, std::set<std::string>> splits;  // config -> split folder
  for (const auto& f : repo_files) {
    if (!f.ends_with(".parquet")) continue;
    const auto a = f.find('/');
    const auto b = a == std::string::npos ? a : f.find('/', a + 1);
    if (b == std::string::npos || f.find('/', b + 1) != std::string::npos) return {};
    splits[f.substr(0, a)].insert(f.substr(a + 1, b - a - 1));
  }
  std::vector<DatasetConfig> out;
  for (const auto& [config, folders] : splits) {
    DatasetConfig d;
    d.name = config;
    for (const auto& folder : folders) {
      const std::string split = folder.starts_with("partial-") ? folder.substr(8) : folder;
      d.data_files.push_back({split, {config + "/" + folder + "/*.parquet"}});
    }
    out.push_back(std::move(d));
  }
  return out;
}

DataFileChoice choose_data_files(const std::vector<DatasetConfig>& configs, const std::vector<std::string>& repo_files,
                                 const std::string& config_name, const std::string& split, const std::string& where) {
  DataFileChoice choice;
  choice.split = split;
  if (configs.empty()) {
    std::vector<std::string> data;
    for (const auto& f : repo_files)
      if (is_data_file(f)) data.push_back(f);
    std::sort(data.begin(), data.end());
    if (!config_name.empty())
      fail("{}: data_config \"{}\" was asked for, but the dataset card (README.md) defines no `configs:`; its data "
           "files: {}. Choose one with data_files = \"...\" (--data-files)",
           where, config_name, data.empty() ? "none" : fmt::format("{}", fmt::join(data, ", ")));
    if (data.empty()) fail("{}: no data files (.json, .jsonl, .csv, .parquet) found", where);
    if (data.size() > 1)
      fail("{}: {} data files and no config chosen; cotune does not concatenate them. Pick one with data_files = "
           "\"...\" (--data-files): {}",
           where, data.size(), fmt::join(data, ", "));
    if (split != "train")
      fail("{}: split \"{}\" asked for, but a single data file holds only the \"train\" split", where, split);
    choice.files = data;
    return choice;
  }

  const DatasetConfig* chosen = nullptr;
  if (!config_name.empty()) {
    for (const auto& c : configs)
      if (c.name == config_name) chosen = &c;
    if (!chosen) fail("{}: no config \"{}\"; the dataset card lists: {}", where, config_name, list_names(configs));
  } else if (configs.size() == 1) {
    chosen = &configs.front();
  } else {
    for (const auto& c : configs)
      if (c.is_default) chosen = &c;
    if (!chosen)
      fail("{}: the dataset has {} configs and none was chosen; add data_config = \"NAME\" (--data-config NAME), one of: "
           "{}",
           where, configs.size(), list_names(configs));
  }
  choice.config = chosen->name;
  const SplitFiles* sf = nullptr;
  for (const auto& s : chosen->data_files)
    if (s.split == split) sf = &s;
  if (!sf) {
    std::vector<std::string> names;
    for (const auto& s : chosen->data_files) names.push_back(s.split);
    fail("{}: config \"{}\" has no split \"{}\"; its splits: {}", where, chosen->name, split, fmt::join(names, ", "));
  }
  for (const auto& f : repo_files)
    for (const auto& p : sf->patterns)
      if (data_files_match(p, f)) {
        choice.files.push_back(f);
        break;
      }
  std::sort(choice.files.begin(), choice.files.end());
  if (choice.files.empty())
    fail("{}: config \"{}\" split \"{}\" names {}, but no file of the dataset matches", where, chosen->name, split,
         fmt::join(sf->patterns, ", "));
  return choice;
}

std::vector<std::string> list_folder_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (it->is_directory() && (name == ".git" || name == ".cache")) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) out.push_back(it->path().lexically_relative(dir).generic_string());
  }
  if (ec) fail("cannot list {}: {}", dir, ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace cotune::data
