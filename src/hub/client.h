// The Hub's HTTP API as huggingface_hub calls it, plus the settings it reads from the environment.
//
//   endpoint   $HF_ENDPOINT, else https://huggingface.co
//   token      --token, else $HF_TOKEN (or the older $HUGGING_FACE_HUB_TOKEN), else the file
//              `huggingface-cli login` writes: $HF_TOKEN_PATH, else $HF_HOME/token (~/.cache/huggingface/token)
//   offline    $HF_HUB_OFFLINE=1 (also true/yes/on): no request is made at all
//
// Calls used (repo ids keep their '/', revisions are percent-encoded whole, "refs/convert/parquet" included):
//   GET  /api/{models|datasets}/{repo}/revision/{rev}       -> {"sha": <commit>, "siblings": [...]}
//   GET  /api/{models|datasets}/{repo}/tree/{commit}?recursive=true  (paged by Link: <...>; rel="next")
//        -> [{"type": "file", "oid": <git sha1>, "size": N, "path": ..., "lfs": {"oid": <sha256>, "size": N}}]
//   HEAD /{repo}/resolve/{rev}/{path}  (datasets/{repo}/...)  -> X-Repo-Commit, ETag / X-Linked-Etag,
//        X-Linked-Size, Location (the storage host, for LFS files)
// The token is sent only to the endpoint's origin; it never appears in a message, log line or report.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hub/hf_cache.h"
#include "hub/http.h"

namespace cotune::hub {

struct HubSettings {
  std::string endpoint = "https://huggingface.co";  // no trailing '/'
  std::optional<std::string> token;                  // never printed
  std::string token_source;                          // "--token", "$HF_TOKEN", or the token file's path
  bool offline = false;
  std::filesystem::path cache_dir;
  RetryPolicy retry;
  bool progress = true;  // a progress bar when stderr is a terminal

  // Reads HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, the token file and the cache folder. A token flag wins.
  static HubSettings from_env(const GetEnv& env = process_env(), const std::optional<std::string>& token_flag = {});
};

// "$HF_HOME" (default $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface).
std::filesystem::path hf_home(const GetEnv& env = process_env());
// True for 1, true, yes, on (any case), as huggingface_hub reads boolean variables.
bool env_flag(const GetEnv& env, const char* name);

const char* repo_type_word(RepoType t);         // "model" | "dataset"
std::string repo_url_prefix(RepoType t);        // "" | "datasets/"
std::string api_prefix(RepoType t);             // "models" | "datasets"

struct RepoFileInfo {
  std::string path;
  int64_t size = 0;         // bytes of the file (of the LFS object for LFS files)
  std::string blob_id;      // git blob sha1
  std::string lfs_sha256;   // "" for a regular (non-LFS) file
  bool is_lfs() const { return !lfs_sha256.empty(); }
};

struct FileMetadata {
  std::string commit;    // X-Repo-Commit
  std::string etag;      // X-Linked-Etag, else ETag, without quotes / W/
  std::string location;  // where to GET the bytes (Location of a redirect, else the resolve URL)
  int64_t size = -1;     // X-Linked-Size, else Content-Length (of a non-redirect)
};

class HubClient {
 public:
  explicit HubClient(HubSettings settings);
  const HubSettings& settings() const { return settings_; }

  // The commit a branch / tag / commit names (fails with a message that says what to do on 401/403/404).
  std::string resolve_commit(const std::string& repo_id, RepoType type, const std::string& revision);
  // Every file of the repo at `commit` (recursive tree listing, all pages).
  std::vector<RepoFileInfo> list_files(const std::string& repo_id, RepoType type, const std::string& commit);
  // HEAD on the resolve URL (relative redirects followed, as huggingface_hub does).
  FileMetadata file_metadata(const std::string& repo_id, RepoType type, const std::string& revision,
                             const std::string& path);
  std::string resolve_url(const std::string& repo_id, RepoType type, const std::string& revision,
                          const std::string& path) const;

  // Sends with retries; adds the token when the URL is on the endpoint's origin. `what` names the call in
  // errors ("repo info of model org/name"); a non-2xx status throws Error (see http_error_message).
  HttpResponse call(HttpRequest rq, const std::string& what, const std::string& repo_id, RepoType type);
  // The same without the status check.
  HttpResponse send(HttpRequest rq);
  void add_auth(HttpRequest& rq) const;

  // An actionable message for a failed call: gated repos say where to ask for access, 401 says how to log in,
  // 404 says whether the repo, revision or file is missing. Never contains the token.
  std::string http_error_message(const HttpResponse& r, const std::string& what, const std::string& repo_id,
                                 RepoType type) const;

 private:
  HubSettings settings_;
  HttpClient http_;
};

// "abc" / W/"abc" -> abc
std::string normalize_etag(std::string etag);
bool is_commit_hash(std::string_view s);

}  // namespace cotune::hub
