// The W&B HTTP API, as the official client (wandb-core) calls it. Learned from its public source and by
// recording its requests to a loopback server (tools/wandb_fake_server.py notes):
//
//   POST {base}/graphql                 {"query": ..., "variables": {...}}, HTTP basic auth "api:<key>"
//     query Viewer                      key check and default entity
//     query RunResumeStatus             an existing run's line counts and history tail (resume)
//     mutation UpsertBucket             create / update the run: name (id), project, entity, displayName,
//                                       notes, tags, host, program, commit, config (JSON string)
//     mutation CreateRunFiles           upload URLs for run files (then PUT each file to its URL)
//   POST {base}/files/{entity}/{project}/{run}/file_stream
//     {"files": {"wandb-history.jsonl": {"offset": N, "content": [line, ...]},
//                "wandb-events.jsonl": ..., "output.log": ..., "wandb-summary.json": {"offset": 0, ...}},
//      "uploaded": [file, ...], "complete": true, "exitcode": 0}
//   Offsets count lines; a POST that is retried sends the same offsets again, so the server's copy does
//   not grow duplicates.
//
// One Api object per thread (it owns a curl handle). Nothing here prints the key.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace cotune::track::wandb {

struct HttpResult {
  long status = 0;     // HTTP status; 0 when no response came (refused, timed out, dropped)
  std::string body;
  std::string error;   // transport error text (curl's), empty when a response came
  bool ok() const { return status >= 200 && status < 300; }
  // Worth retrying: no response, 408, 409 (the server's "conflict, retry"), 429 or 5xx.
  bool transient() const { return status == 0 || status == 408 || status == 409 || status == 429 || status >= 500; }
  std::string describe() const;  // "HTTP 503: <first 200 bytes>" or "connection refused ..."
};

extern const char* const kViewerQuery;
extern const char* const kRunResumeStatusQuery;
extern const char* const kUpsertBucketMutation;
extern const char* const kCreateRunFilesMutation;

class Api {
 public:
  Api(std::string base_url, std::string api_key, double timeout_s, std::string user_agent);
  ~Api();
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  // A GraphQL call. A 200 whose body has "errors" and no data is reported as status 200 with the
  // errors in `graphql_errors()` of the parsed body; callers check `data`.
  HttpResult graphql(std::string_view query, const nlohmann::json& variables);
  HttpResult post_json(const std::string& path, const std::string& body);  // path below base_url
  HttpResult put(const std::string& url, const std::string& body, const std::vector<std::string>& headers);

  const std::string& base_url() const { return base_url_; }

 private:
  HttpResult request(const char* method, const std::string& url, const std::string& body,
                     const std::vector<std::string>& headers, bool auth);
  std::string base_url_, api_key_, user_agent_;
  double timeout_s_;
  void* curl_;  // CURL*
};

// The "data" object of a GraphQL reply, or null when absent; `errors` gets the server's messages.
nlohmann::json graphql_data(const HttpResult& r, std::string* errors);

}  // namespace cotune::track::wandb
