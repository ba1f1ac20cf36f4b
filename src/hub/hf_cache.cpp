#include "hub/hf_cache.h"

#include <algorithm>
#include <cctype>
#include <iterator>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "base/error.h"
#include "base/log.h"
#include "hub/client.h"
#include "hub/download.h"

namespace cotune::hub {
namespace fs = std::filesystem;

Resolved resolve_cached(const std::string& repo_id, const std::string& revision, RepoType type, const fs::path& cache,
                        const std::string& source, bool offline);

GetEnv process_env() {
  return [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (!v || !*v) return std::nullopt;
    return std::string(v);
  };
}

namespace {

const char* type_word(RepoType t) { return repo_type_word(t); }

fs::path expand_user(const std::string& p, const GetEnv& env) {
  if (p == "~" || p.starts_with("~/")) {
    if (auto home = env("HOME")) return fs::path(*home) / p.substr(p.size() > 1 ? 2 : 1);
  }
  return p;
}

// The cache folder and where it came from, for error messages.
std::pair<fs::path, std::string> cache_dir_and_source(const GetEnv& env) {
  if (auto v = env("HF_HUB_CACHE")) return {expand_user(*v, env), "$HF_HUB_CACHE"};
  if (auto v = env("HUGGINGFACE_HUB_CACHE")) return {expand_user(*v, env), "$HUGGINGFACE_HUB_CACHE"};
  if (auto v = env("HF_HOME")) return {expand_user(*v, env) / "hub", "$HF_HOME/hub"};
  if (auto v = env("XDG_CACHE_HOME")) return {expand_user(*v, env) / "huggingface" / "hub", "$XDG_CACHE_HOME/huggingface/hub"};
  if (auto v = env("HOME")) return {fs::path(*v) / ".cache" / "huggingface" / "hub", "~/.cache/huggingface/hub"};
  return {fs::path(".cache") / "huggingface" / "hub", "./.cache/huggingface/hub (no $HOME)"};
}


// Hub rules for a repo id part: letters, digits, '-', '_', '.'; no "--" or ".."; not starting or ending
// with '-' or '.'.
bool valid_id_part(std::string_view s) {
  if (s.empty() || s.size() > 96) return false;
  if (s.find("--") != std::string_view::npos || s.find("..") != std::string_view::npos) return false;
  if (s.front() == '-' || s.front() == '.' || s.back() == '-' || s.back() == '.') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

bool looks_like_path(std::string_view s) {
  s = s.substr(0, s.find('@'));  // a revision may hold slashes (refs/pr/1)
  return s.starts_with('/') || s.starts_with('.') || s.starts_with('~') ||
         std::count(s.begin(), s.end(), '/') > 1 || s.find('\\') != std::string_view::npos;
}

std::string trim(std::string s) {
  const auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

// Names under DIR (recursively for refs, e.g. refs/pr/1), for "what is there" in error messages.
std::string list_names(const fs::path& dir, bool recursive) {
  std::vector<std::string> names;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return "none";
  if (recursive) {
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
      if (it->is_regular_file()) names.push_back(it->path().lexically_relative(dir).string());
  } else {
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
      names.push_back(it->path().filename().string());
  }
  if (names.empty()) return "none";
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// config.json with weights (or an index), or an adapter: what cotune loads from a model folder.
bool has_model_files(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / "adapter_config.json", ec)) return true;
  if (!fs::exists(dir / "config.json", ec)) return false;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (it->path().extension() == ".safetensors" || it->path().filename() == "model.safetensors.index.json") return true;
  return false;
}

// "; it holds: a, b, c" -- the entries of a folder next to a mistyped name, at most 8.
std::string folder_listing(const fs::path& dir) {
  std::error_code ec;
  std::vector<std::string> names;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    names.push_back(it->path().filename().string());
  std::sort(names.begin(), names.end());
  if (names.empty()) return "";
  std::string out = "; it holds: ";
  for (size_t i = 0; i < names.size() && i < 8; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > 8) out += fmt::format(" and {} more", names.size() - 8);
  return out;
}

}  // namespace

fs::path hf_cache_dir(const GetEnv& env) { return cache_dir_and_source(env).first; }

std::string cache_folder_name(std::string_view repo_id, RepoType type) {
  std::string out = type == RepoType::model ? "models--" : "datasets--";
  for (char c : repo_id) {
    if (c == '/') out += "--";
    else out.push_back(c);
  }
  return out;
}

Resolved resolve(std::string_view spec_in, RepoType type, const ResolveOptions& options) {
  const std::string spec(spec_in);
  const char* what = type_word(type);
  if (spec.empty()) fail("{} name is empty: expected a local folder, org/name or org/name@revision", what);

  // 1. A local path wins, as in transformers' from_pretrained.
  const fs::path local = expand_user(spec, options.env);
  std::error_code ec;
  if (fs::exists(local, ec)) {
    Resolved r;
    r.path = local;
    return r;
  }
  if (looks_like_path(spec)) fail("{} path {} does not exist", what, local.string());

  // 2. org/name[@revision]
  std::string repo_id = spec, revision = "main";
  if (auto at = spec.find('@'); at != std::string::npos) {
    repo_id = spec.substr(0, at);
    revision = spec.substr(at + 1);
    if (revision.empty()) fail("{} \"{}\": empty revision after '@'", what, spec);
  }
  const auto slash = repo_id.find('/');
  const bool valid = slash == std::string::npos
                         ? valid_id_part(repo_id)
                         : valid_id_part(std::string_view(repo_id).substr(0, slash)) &&
                               valid_id_part(std::string_view(repo_id).substr(slash + 1));
  if (!valid)
    fail("{} \"{}\" is neither an existing local path nor a Hugging Face name (org/name or org/name@revision)",
         what, spec);
  if (revision.starts_with('/') || revision.find("..") != std::string::npos || revision.find('\\') != std::string::npos)
    fail("{} \"{}\": revision \"{}\" is not a branch, tag or commit name", what, spec, revision);

  auto [cache, source] = cache_dir_and_source(options.env);
  if (options.cache_dir) cache = *options.cache_dir, source = "the given cache folder";
  // "runs/nope" where ./runs exists (and no such repo is cached) is a mistyped local path far more often than a
  // Hub name: say so instead of trying to download it.
  if (const fs::path first = expand_user(repo_id.substr(0, slash), options.env);
      slash != std::string::npos && fs::is_directory(first, ec) &&
      !fs::is_directory(cache / cache_folder_name(repo_id, type), ec))
    fail("{} path {} does not exist (the folder {} does, but holds no {}){}", what, local.string(), first.string(),
         fs::path(repo_id).filename().string(), folder_listing(first));
  const bool offline = env_flag(options.env, "HF_HUB_OFFLINE");
  try {
    Resolved r = resolve_cached(repo_id, revision, type, cache, source, offline);
    // A model snapshot that another tool filled only partly (hf_hub_download of config.json, say) lacks the
    // weights: fetch the rest when allowed.
    if (type == RepoType::model && options.download && !offline && !has_model_files(r.path)) throw Error("incomplete");
    return r;
  } catch (const Error&) {
    if (!options.download || offline) throw;
    log::info("{} {} ({}) is not complete in the cache; downloading", what, repo_id, revision);
    HubSettings s = HubSettings::from_env(options.env, options.token);
    s.cache_dir = cache;
    HubClient hub(s);
    DownloadOptions d;
    d.revision = revision;
    d.include = options.include;
    if (d.include.empty() && type == RepoType::model) d.include = default_model_patterns();
    return with_context(fmt::format("downloading {} {}", what, repo_id),
                        [&] { return download_snapshot(hub, repo_id, type, d).resolved; });
  }
}

Resolved resolve_cached(const std::string& repo_id, const std::string& revision, RepoType type, const fs::path& cache,
                        const std::string& source, bool offline) {
  const char* what = type_word(type);
  std::error_code ec;
  const fs::path repo_dir = cache / cache_folder_name(repo_id, type);
  const std::string download_hint = fmt::format(
      "{}Fetch it with `cotune download {}{}{}` (or give a local folder).",
      offline ? "HF_HUB_OFFLINE is set, so nothing is downloaded. " : "",
      type == RepoType::dataset ? "--repo-type dataset " : "", repo_id, revision == "main" ? "" : " --revision " + revision);

  if (!fs::is_directory(repo_dir, ec)) {
    std::string other_hint;
    const RepoType other = type == RepoType::model ? RepoType::dataset : RepoType::model;
    if (fs::is_directory(cache / cache_folder_name(repo_id, other), ec))
      other_hint = fmt::format(" (a {} of that name is cached)", type_word(other));
    fail("{} \"{}\" is not a local path and is not in the Hugging Face cache{}.\n  searched: {} (cache from {})\n  {}",
         what, repo_id, other_hint, repo_dir.string(), source, download_hint);
  }

  // 3. The revision: a ref (branch or tag) names a commit; a full commit hash names its snapshot.
  std::string commit;
  const fs::path ref_file = repo_dir / "refs" / revision;
  if (fs::is_regular_file(ref_file, ec)) {
    std::ifstream in(ref_file);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    commit = trim(text);
    if (!is_commit_hash(commit))
      fail("{}: expected a 40-character commit hash, found \"{}\"", ref_file.string(), commit);
  } else if (is_commit_hash(revision)) {
    commit = revision;
  } else {
    fail("{} \"{}\": revision \"{}\" is not in the cache at {}\n  cached refs: {}\n  cached snapshots: {}\n  {}", what,
         repo_id, revision, repo_dir.string(), list_names(repo_dir / "refs", true),
         list_names(repo_dir / "snapshots", false), download_hint);
  }

  const fs::path snapshot = repo_dir / "snapshots" / commit;
  if (!fs::is_directory(snapshot, ec)) {
    if (revision != commit)
      fail("{} \"{}\": refs/{} points to commit {}, but {} is missing (an interrupted download?)\n  {}", what, repo_id,
           revision, commit, snapshot.string(), download_hint);
    fail("{} \"{}\": commit {} is not in the cache ({} is missing)\n  cached snapshots: {}\n  {}", what, repo_id, commit,
         snapshot.string(), list_names(repo_dir / "snapshots", false), download_hint);
  }

  // 4. Snapshot files are symlinks into blobs/; a dangling one means the blob never arrived.
  for (auto it = fs::recursive_directory_iterator(snapshot, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::error_code ec2;
    if (it->is_symlink(ec2) && !fs::exists(it->path(), ec2))
      fail("{} \"{}\": {} is a broken link to {} (an interrupted download?)\n  {}", what, repo_id, it->path().string(),
           fs::read_symlink(it->path(), ec2).string(), download_hint);
  }
  if (ec) fail("cannot list {}: {}", snapshot.string(), ec.message());

  Resolved r;
  r.path = snapshot;
  r.from_cache = true;
  r.repo_id = repo_id;
  r.revision = revision;
  r.commit = commit;
  return r;
}

}  // namespace cotune::hub
