// A loopback fake of the Hugging Face Hub for tests (and, through fake_hub_main, for tools/ scripts that point
// huggingface_hub at it with HF_ENDPOINT). Two cpp-httplib servers on 127.0.0.1, random free ports:
//   the Hub     /api/{models|datasets}/{org}/{name}/revision/{rev}, .../tree/{rev}?recursive=true (paged),
//               HEAD/GET /{datasets/}{org}/{name}/resolve/{rev}/{path} (X-Repo-Commit, ETag, X-Linked-Etag,
//               X-Linked-Size; LFS files answer 302 to the storage host), /api/repos/create, .../preupload/{rev},
//               /{datasets/}{org}/{name}.git/info/lfs/objects/batch (basic and multipart), .../commit/{rev} (NDJSON),
//               .../branch/{name}
//   the storage /lfs/{sha256} (Range), /upload/{sha256} (PUT), /part/{sha256}/{n} (PUT, ETag), /complete/{sha256}
// Faults on demand: a status for the next N matching requests (401/403/404/429/5xx, with Retry-After), a connection
// cut after N body bytes, a slow server (delay per 16 KiB chunk). Every request is recorded (method, path, whether
// it carried the expected token, body) so upload tests can check the protocol exchange.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace cotune::testing {

struct FakeRequest {
  std::string host;    // "hub" or "storage"
  std::string method;  // GET, HEAD, POST, PUT
  std::string path;    // decoded path, with the query string when there was one
  bool authorized = false;  // carried "Authorization: Bearer <the hub's token>"
  bool any_auth = false;    // carried any Authorization header
  std::string range;        // the Range header
  std::string content_type;
  std::string body;         // first 1 MiB
};

struct FakeRepoFile {
  std::string content;
  bool lfs = false;
};

class FakeHub {
 public:
  FakeHub();
  ~FakeHub();
  FakeHub(const FakeHub&) = delete;
  FakeHub& operator=(const FakeHub&) = delete;

  std::string endpoint() const;          // http://127.0.0.1:<hub port>
  std::string storage_endpoint() const;  // http://127.0.0.1:<storage port>

  // Repos: type "model" or "dataset". A commit replaces the whole tree of `branch` (created when missing)
  // and returns its 40-hex hash. Files named *.safetensors / *.parquet / *.bin / *.gguf or over 1 MiB are LFS.
  std::string commit(const std::string& type, const std::string& repo_id, const std::string& branch,
                     const std::map<std::string, std::string>& files);
  void tag(const std::string& type, const std::string& repo_id, const std::string& tag, const std::string& commit);
  // Access: a private repo answers 401 (RepoNotFound) without the token, a gated one 401/403 (GatedRepo).
  void set_token(const std::string& token);  // the one token the fake accepts (also required for writes)
  void set_private(const std::string& type, const std::string& repo_id, bool v);
  void set_gated(const std::string& type, const std::string& repo_id, bool v);
  void set_page_size(int n);                 // tree listing entries per page (default 1000)
  void set_multipart_threshold(int64_t bytes, int64_t chunk);  // LFS uploads at least this big go multipart

  // Faults. `match` is a substring of the request path.
  void fail_next(const std::string& match, int status, int times = 1, int retry_after_s = -1);
  void cut_after(const std::string& match, int64_t bytes, int times = 1);  // close the connection mid-body
  void set_delay_ms(int ms);                                               // per 16 KiB chunk of file bodies
  void corrupt_next(const std::string& match, int times = 1);              // flip the first byte of a file body
  void stall_after(const std::string& match, int64_t bytes, int ms, int times = 1);  // go silent mid-body, then cut

  std::vector<FakeRequest> requests() const;
  void clear_requests();
  // The files of a revision (branch, tag or commit), or nullopt when the repo / revision does not exist.
  std::optional<std::map<std::string, FakeRepoFile>> files(const std::string& type, const std::string& repo_id,
                                                           const std::string& revision) const;
  bool repo_exists(const std::string& type, const std::string& repo_id) const;
  bool repo_is_private(const std::string& type, const std::string& repo_id) const;
  std::vector<std::string> commit_messages(const std::string& type, const std::string& repo_id) const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

std::string git_blob_sha1(const std::string& content);
std::string sha256_hex(const std::string& content);

}  // namespace cotune::testing
