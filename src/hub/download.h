// Downloads a repo snapshot into the Hugging Face cache, writing the tree huggingface_hub writes:
//
//   <cache>/CACHEDIR.TAG
//   <cache>/models--org--name/blobs/<etag>                    the bytes (etag: sha256 for LFS files, git sha1 else)
//   <cache>/models--org--name/snapshots/<commit>/<path>       -> ../../blobs/<etag> (relative symlinks)
//   <cache>/models--org--name/refs/<branch or tag>            the commit, no newline (not for a commit revision)
//   <cache>/models--org--name/trees/<commit>.json             the tree listing (huggingface_hub >= 1.x)
//   <cache>/.locks/models--org--name/<etag>.lock              flock(2) while a blob is written
//
// A blob is written to <etag>.incomplete and renamed when whole: an interrupted download resumes from the
// bytes it has (HTTP Range); LFS blobs are checked against their SHA-256 before the rename. Files download in
// parallel, and a large file in several ranges at once. Retries with back-off on 429 / 5xx / cut connections.
//
//   HubClient hub(HubSettings::from_env());
//   DownloadOptions o;  o.revision = "main";  o.include = default_model_patterns();
//   Resolved r = download_snapshot(hub, "org/name", RepoType::model, o);   // r.path = the snapshot folder
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hub/client.h"
#include "hub/hf_cache.h"

namespace cotune::hub {

struct DownloadOptions {
  std::string revision = "main";
  std::vector<std::string> include;  // fnmatch globs ('*' crosses '/'); empty = every file
  int parallel_files = 4;
  int64_t split_min_bytes = int64_t{128} << 20;  // files at least this big download in `split_streams` ranges
  int split_streams = 4;
  int max_attempts_per_file = 8;     // resumed attempts after cut connections / 5xx
  long stall_timeout_s = 30;         // a transfer with no byte for this long is cut and resumed
};

// What cotune needs of a model: weights, their index, configs and tokenizer files (adapters included).
std::vector<std::string> default_model_patterns();
bool glob_match(const std::string& pattern, const std::string& path);  // huggingface_hub's fnmatch rule
bool matches_any(const std::vector<std::string>& patterns, const std::string& path);

struct DownloadResult {
  Resolved resolved;
  std::vector<RepoFileInfo> files;  // the files of the commit (all, not only the downloaded ones)
  int64_t bytes_downloaded = 0;
  int files_downloaded = 0;         // not counting files already in the cache
};

DownloadResult download_snapshot(HubClient& hub, const std::string& repo_id, RepoType type, const DownloadOptions& o);

// Downloads exactly `paths` (repo-relative) of `commit` (already resolved), e.g. a dataset config's files.
DownloadResult download_files(HubClient& hub, const std::string& repo_id, RepoType type, const std::string& revision,
                              const std::string& commit, const std::vector<RepoFileInfo>& files,
                              const DownloadOptions& o);

// Writes refs/<revision> (atomically) when the revision is not the commit itself.
void write_ref(const std::filesystem::path& repo_dir, const std::string& revision, const std::string& commit);
// trees/<commit>.json in huggingface_hub's format (json.dump indent=1, paths sorted).
void write_tree_cache(const std::filesystem::path& repo_dir, const std::string& commit,
                      const std::vector<RepoFileInfo>& files);

}  // namespace cotune::hub
