#include "cli/hub_data.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "base/error.h"
#include "base/mmap.h"
#include "base/log.h"
#include "data/dataset_config.h"
#include "hub/client.h"
#include "hub/download.h"
#include "hub/hf_cache.h"

namespace cotune::cli {
namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// One file: itself. Several: a folder of links named in order, so the readers see them as one split.
std::string path_for(const fs::path& root, const std::vector<std::string>& files) {
  if (files.size() == 1) return (root / files.front()).string();
  std::string key;
  for (const auto& f : files) key += (root / f).string() + "\n";
  const fs::path dir = fs::path(data::default_cache_dir()) / "splits" /
                       fmt::format("{:016x}", std::hash<std::string>{}(key));
  fs::create_directories(dir);
  for (size_t i = 0; i < files.size(); ++i) {
    const fs::path link = dir / fmt::format("{:05}-{}", i, fs::path(files[i]).filename().string());
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(link, ec))) fs::create_symlink(fs::absolute(root / files[i]), link);
  }
  return dir.string();
}

// Configs of a folder or snapshot: the card's, else the Parquet conversion layout.
std::vector<data::DatasetConfig> configs_of(const fs::path& root, const std::vector<std::string>& files,
                                            const std::string& where) {
  std::vector<data::DatasetConfig> configs;
  if (fs::exists(root / "README.md")) configs = data::parse_dataset_card(read_text(root / "README.md"), "README.md of " + where);
  if (configs.empty()) configs = data::configs_from_parquet_layout(files);
  return configs;
}

DataChoice choose_in_folder(const fs::path& root, const std::string& where, const std::string& data_config,
                            const std::string& data_files, const std::string& split) {
  DataChoice c;
  const std::vector<std::string> files = data::list_folder_files(root.string());
  if (!data_files.empty()) {
    if (!fs::exists(root / data_files))
      fail("data_files: {} has no {} (its data files: {})", where, data_files, [&] {
        std::vector<std::string> d;
        for (const auto& f : files)
          if (data::is_data_file(f)) d.push_back(f);
        return fmt::format("{}", fmt::join(d, ", "));
      }());
    if (split != "train") fail("split \"{}\" asked for, but data_files = \"{}\" is one file: its split is train", split, data_files);
    c.data_path = (root / data_files).string();
    c.description = fmt::format("{}: {}", where, data_files);
    return c;
  }
  const data::DataFileChoice choice = data::choose_data_files(configs_of(root, files, where), files, data_config, split, where);
  c.config = choice.config;
  c.data_path = path_for(root, choice.files);
  c.description = fmt::format("{}{}, split {}: {}", where, choice.config.empty() ? "" : ", config " + choice.config, split,
                              fmt::join(choice.files, ", "));
  return c;
}

bool all_present(const fs::path& root, const std::vector<std::string>& files) {
  return std::all_of(files.begin(), files.end(), [&](const std::string& f) { return fs::exists(root / f); });
}

}  // namespace

DataChoice resolve_data(const std::string& data, const std::string& data_config, const std::string& data_files,
                        data::Selection& selection, const std::optional<std::string>& token) {
  const std::string split = selection.split;
  selection.split = "train";  // the files chosen below are the split
  std::error_code ec;
  // ---- a local file or folder ---------------------------------------------------------------------------
  const hub::Resolved local = [&] {
    hub::ResolveOptions o;
    o.download = false;
    try {
      return hub::resolve(data, hub::RepoType::dataset, o);
    } catch (const Error&) {
      return hub::Resolved{};
    }
  }();
  if (!local.path.empty() && !local.from_cache) {
    if (fs::is_regular_file(local.path, ec)) {
      if (!data_config.empty()) fail("data_config = \"{}\" needs a dataset folder or repo, but {} is a file", data_config, data);
      if (!data_files.empty()) fail("data_files = \"{}\" needs a dataset folder or repo, but {} is a file", data_files, data);
      if (split != "train") fail("selection '{}': {} is one file, which holds only the 'train' split", selection.spec, data);
      DataChoice c;
      c.data_path = c.description = local.path.string();
      return c;
    }
    if (!fs::is_directory(local.path, ec)) require_regular_file(local.path.string());  // a FIFO: refused, not read
    return choose_in_folder(local.path, local.path.string(), data_config, data_files, split);
  }

  const std::string name = data.substr(0, data.find('@'));
  if (data.empty() || name.starts_with('/') || name.starts_with('.') || name.starts_with('~') ||
      std::count(name.begin(), name.end(), '/') > 1)
    fail("data: {} is not an existing file or folder (nor a Hub dataset name org/name)", data);

  // ---- a Hub dataset: the cache first (a complete choice there needs no network) ------------------------
  hub::HubSettings settings = hub::HubSettings::from_env(hub::process_env(), token);
  std::string repo_id = data, revision = "main";
  if (auto at = data.find('@'); at != std::string::npos) repo_id = data.substr(0, at), revision = data.substr(at + 1);
  if (!local.path.empty()) {
    try {
      DataChoice c = choose_in_folder(local.path, repo_id, data_config, data_files, split);
      if (fs::exists(c.data_path)) {
        c.repo_id = repo_id;
        c.revision = local.revision;
        c.commit = local.commit;
        return c;
      }
    } catch (const Error& e) {
      if (settings.offline) throw;
      log::debug("cached {} does not answer the choice ({}); asking the Hub", repo_id, e.what());
    }
  }
  if (settings.offline)
    fail("dataset {} is not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set; unset it or run `cotune download "
         "--repo-type dataset {}` while online",
         repo_id, settings.cache_dir.string(), repo_id);

  hub::HubClient client(settings);
  const std::string where = "dataset " + repo_id;
  auto fetch = [&](const std::string& rev, const std::string& commit, const std::vector<hub::RepoFileInfo>& all,
                   const std::vector<std::string>& wanted) {
    std::vector<hub::RepoFileInfo> pick;
    for (const auto& f : all)
      if (std::find(wanted.begin(), wanted.end(), f.path) != wanted.end()) pick.push_back(f);
    return hub::download_files(client, repo_id, hub::RepoType::dataset, rev, commit, pick, hub::DownloadOptions{});
  };
  return with_context("while fetching " + where, [&] {
    const std::string commit = hub::is_commit_hash(revision) ? revision
                                                             : client.resolve_commit(repo_id, hub::RepoType::dataset, revision);
    std::vector<hub::RepoFileInfo> all = client.list_files(repo_id, hub::RepoType::dataset, commit);
    const fs::path repo_dir = fs::absolute(settings.cache_dir) / hub::cache_folder_name(repo_id, hub::RepoType::dataset);
    fs::create_directories(repo_dir);
    hub::write_tree_cache(repo_dir, commit, all);
    std::vector<std::string> paths;
    bool has_data = false, has_readme = false;
    for (const auto& f : all) {
      paths.push_back(f.path);
      has_data |= data::is_data_file(f.path);
      has_readme |= f.path == "README.md";
    }
    if (has_readme) fetch(revision, commit, all, {"README.md"});
    const fs::path snapshot = repo_dir / "snapshots" / commit;
    std::vector<data::DatasetConfig> configs;
    if (has_readme) configs = data::parse_dataset_card(read_text(snapshot / "README.md"), "README.md of " + where);

    std::string rev = revision, used_commit = commit;
    std::vector<hub::RepoFileInfo> listing = all;
    if (data_files.empty() && configs.empty() && !has_data) {
      // Script-based or otherwise file-less datasets: the Hub's Parquet conversion.
      const std::string parquet_ref = "refs/convert/parquet";
      log::info("{} has no data files on {}; using its Parquet conversion ({})", where, revision, parquet_ref);
      used_commit = client.resolve_commit(repo_id, hub::RepoType::dataset, parquet_ref);
      listing = client.list_files(repo_id, hub::RepoType::dataset, used_commit);
      rev = parquet_ref;
      paths.clear();
      for (const auto& f : listing) paths.push_back(f.path);
      configs = data::configs_from_parquet_layout(paths);
      if (configs.empty())
        fail("{} has no data files and its {} branch does not have the {{config}}/{{split}}/*.parquet layout", where,
             parquet_ref);
    }
    std::vector<std::string> chosen;
    std::string config;
    if (!data_files.empty()) {
      if (std::find(paths.begin(), paths.end(), data_files) == paths.end()) {
        std::vector<std::string> d;
        for (const auto& p : paths)
          if (data::is_data_file(p)) d.push_back(p);
        fail("data_files: {} has no file {} (its data files: {})", where, data_files, fmt::join(d, ", "));
      }
      if (split != "train") fail("split \"{}\" asked for, but data_files = \"{}\" is one file: its split is train", split, data_files);
      chosen = {data_files};
    } else {
      const data::DataFileChoice choice = data::choose_data_files(configs, paths, data_config, split, where);
      chosen = choice.files;
      config = choice.config;
    }
    const hub::DownloadResult got = fetch(rev, used_commit, listing, chosen);
    const fs::path root = repo_dir / "snapshots" / used_commit;
    if (!all_present(root, chosen)) fail("{}: the download finished but {} lacks some of {}", where, root.string(), fmt::join(chosen, ", "));
    DataChoice c;
    c.repo_id = repo_id;
    c.config = config;
    c.revision = rev;
    c.commit = used_commit;
    c.data_path = path_for(root, chosen);
    c.description = fmt::format("{}{}{}, split {}: {}", where, rev == revision ? "" : " (" + rev + ")",
                                config.empty() ? "" : ", config " + config, split, fmt::join(chosen, ", "));
    (void)got;
    return c;
  });
}

}  // namespace cotune::cli
