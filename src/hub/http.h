// A small HTTP client over libcurl for the Hub protocol: one request at a time per HttpClient (a curl easy
// handle, reused so connections stay open), redirects returned to the caller (so credentials are never sent
// to another host), bodies streamed to a callback or collected, uploads from memory or from a file range.
//
//   HttpClient http;
//   HttpRequest rq;  rq.url = "http://127.0.0.1:8080/api/models/org/name/revision/main";
//   rq.headers.emplace_back("Authorization", "Bearer " + token);
//   HttpResponse r = send_with_retries(http, rq, RetryPolicy{});   // retries 429 / 5xx / cut connections
//   r.status, r.header("x-repo-commit"), r.body
//
// Transport failures (refused, reset, timed out) throw TransportError; HTTP statuses never throw here.
// Messages name the method and URL but never the request headers (the token lives there).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"

namespace cotune::hub {

// A connection-level failure (no HTTP status): refused, reset, cut mid-body, stalled, DNS.
class TransportError : public Error {
 public:
  using Error::Error;
};

struct HttpResponse;

struct HttpRequest {
  std::string method = "GET";  // GET, HEAD, POST, PUT
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;                  // POST / PUT body from memory
  std::string upload_file;           // ... or from this file: bytes [upload_offset, upload_offset + upload_length)
  int64_t upload_offset = 0, upload_length = -1;  // -1: to the end of the file
  int64_t range_start = -1;          // >= 0: ask for bytes [range_start, end] (Range: bytes=N-)
  int64_t range_end = -1;            // >= 0 with range_start: bytes [range_start, range_end]
  long connect_timeout_s = 10;
  long stall_timeout_s = 30;         // no byte moving for this long is a TransportError (a stalled connection)
  // Streams the body of a 2xx response (`head` holds its status and headers); returning false aborts the
  // transfer (TransportError "aborted"). Left empty, the body is collected into HttpResponse::body (error
  // bodies always are).
  std::function<bool(const HttpResponse& head, std::string_view chunk)> on_body;
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names; the last value wins
  std::string body;
  std::string header(const std::string& lower_name) const;  // "" when absent
  bool is_redirect() const { return status >= 300 && status < 400; }
};

class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  HttpResponse send(const HttpRequest& request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Retries with exponential back-off on 429, 500, 502, 503, 504 and TransportError; a Retry-After header
// (seconds) sets the wait. Requests with on_body are not retried here (the download loop resumes them).
struct RetryPolicy {
  int max_attempts = 5;
  double first_delay_s = 1.0;   // then x2 each attempt
  double max_delay_s = 30.0;
  std::function<void(double seconds)> sleep;  // default std::this_thread::sleep_for (tests pass a no-op)
};
bool is_retryable_status(long status);
double retry_delay_s(const RetryPolicy& p, int attempt, const HttpResponse* r);  // attempt 0 = first retry
HttpResponse send_with_retries(HttpClient& http, const HttpRequest& request, const RetryPolicy& policy);

// URL helpers.
std::string url_encode(std::string_view s, std::string_view keep = "");   // percent-encode all but unreserved + keep
std::string url_origin(std::string_view url);                             // "http://host:port"
std::string join_url(std::string_view base, std::string_view location);  // resolves a Location header

}  // namespace cotune::hub
