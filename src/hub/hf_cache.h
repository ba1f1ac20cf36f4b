// Offline resolution of Hugging Face names through the local cache (the layout huggingface_hub writes):
//
//   <cache>/models--org--name/refs/main                  -> a commit hash (text file)
//   <cache>/models--org--name/snapshots/<commit>/config.json -> ../../blobs/<sha>   (symlinks)
//   <cache>/datasets--org--name/...                        (the same for datasets)
//
// <cache> is $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE (older name), else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub — the order huggingface_hub uses.
//
//   namespace hub = cotune::hub;
//   auto m = hub::resolve("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B");   // refs/main
//   auto d = hub::resolve("FreedomIntelligence/medical-o1-reasoning-SFT", hub::RepoType::dataset);
//   hub::resolve("org/name@v1.0");        // a branch or tag: refs/v1.0
//   hub::resolve("org/name@<40-hex>");    // a commit: snapshots/<commit>
//   hub::resolve("./my-model");           // an existing local folder or file: returned as is
//   m.path  // the snapshot folder to read config.json etc. from
//
// A name that is not in the cache (or whose snapshot is incomplete) is downloaded from the Hub
// (hub/download.h: $HF_ENDPOINT, token from $HF_TOKEN or the login token file), unless $HF_HUB_OFFLINE=1 or
// ResolveOptions::download is false; then it fails with a message naming the folders searched and the
// `cotune download` command that fetches it.
#pragma once
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cotune::hub {

enum class RepoType { model, dataset };

// Reads an environment variable; tests pass a fake one.
using GetEnv = std::function<std::optional<std::string>(const char* name)>;
GetEnv process_env();

// The cache folder, from the environment (the folder need not exist).
std::filesystem::path hf_cache_dir(const GetEnv& env = process_env());

struct Resolved {
  std::filesystem::path path;  // the snapshot folder, or the local path as given
  bool from_cache = false;     // false: a local path
  std::string repo_id;         // "org/name" (empty for a local path)
  std::string revision;        // what was asked for: "main", a branch / tag, or a commit
  std::string commit;          // the snapshot's commit hash (empty for a local path)
};

struct ResolveOptions {
  std::optional<std::filesystem::path> cache_dir;  // default hf_cache_dir(env)
  GetEnv env = process_env();
  bool download = true;                 // fetch what is missing from the Hub (never with HF_HUB_OFFLINE=1)
  std::vector<std::string> include;     // files to fetch; empty: default_model_patterns() for a model, all for a dataset
  std::optional<std::string> token;     // --token (else $HF_TOKEN / the token file)
};

// Resolves `spec`: an existing local path (returned as is, `~` expanded), else "org/name" or
// "org/name@revision" (also "name" without an org) in the cache. Fails with a clear message when the
// name is malformed, not cached, the revision is unknown, or the snapshot has dangling links (an
// interrupted download).
Resolved resolve(std::string_view spec, RepoType type = RepoType::model, const ResolveOptions& options = {});

// "models--org--name" / "datasets--org--name".
std::string cache_folder_name(std::string_view repo_id, RepoType type);

}  // namespace cotune::hub
