#include "hub/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <thread>

namespace cotune::hub {

std::string HttpResponse::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

namespace {

void global_init_once() {
  static std::once_flag once;  // curl_global_init must run once before any thread uses curl
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  const HttpRequest* request = nullptr;
  HttpResponse* response = nullptr;
  bool streaming = false;  // decided once the status line is known
  bool aborted = false;
  std::FILE* upload = nullptr;
  int64_t upload_left = 0;
  // Stall detection: the last time a byte moved either way (curl's LOW_SPEED averages over seconds of history,
  // so a burst followed by silence would keep a connection alive far past the limit).
  curl_off_t last_down = -1, last_up = -1;
  std::chrono::steady_clock::time_point last_move = std::chrono::steady_clock::now();
  bool stalled = false;
};

int on_progress(void* user, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t ulnow) {
  auto* t = static_cast<Transfer*>(user);
  const auto now = std::chrono::steady_clock::now();
  if (dlnow != t->last_down || ulnow != t->last_up) {
    t->last_down = dlnow, t->last_up = ulnow, t->last_move = now;
    return 0;
  }
  if (now - t->last_move > std::chrono::seconds(t->request->stall_timeout_s)) {
    t->stalled = true;
    return 1;  // curl stops with CURLE_ABORTED_BY_CALLBACK
  }
  return 0;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {  // a new response (after 100-continue): start over
    t->response->headers.clear();
    const auto sp = line.find(' ');
    if (sp != std::string_view::npos) t->response->status = std::strtol(std::string(line.substr(sp + 1, 3)).c_str(), nullptr, 10);
    return size * n;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.remove_suffix(1);
  t->response->headers[name] = std::string(value);
  return size * n;
}

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  const long s = t->response->status;
  if (t->request->on_body && s >= 200 && s < 300) {
    if (!t->request->on_body(*t->response, std::string_view(data, bytes))) {
      t->aborted = true;
      return 0;  // curl stops with CURLE_WRITE_ERROR
    }
    return bytes;
  }
  t->response->body.append(data, bytes);
  return bytes;
}

size_t on_read(char* buffer, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t want = std::min<int64_t>(static_cast<int64_t>(size * n), t->upload_left);
  if (want == 0) return 0;
  const size_t got = std::fread(buffer, 1, want, t->upload);
  t->upload_left -= static_cast<int64_t>(got);
  return got;
}

}  // namespace

struct HttpClient::Impl {
  CURL* curl = nullptr;
};

HttpClient::HttpClient() : impl_(std::make_unique<Impl>()) {
  global_init_once();
  impl_->curl = curl_easy_init();
  if (!impl_->curl) fail("libcurl: curl_easy_init failed");
}

HttpClient::~HttpClient() {
  if (impl_ && impl_->curl) curl_easy_cleanup(impl_->curl);
}

HttpResponse HttpClient::send(const HttpRequest& rq) {
  CURL* c = impl_->curl;
  curl_easy_reset(c);
  HttpResponse response;
  Transfer t;
  t.request = &rq;
  t.response = &response;

  curl_easy_setopt(c, CURLOPT_URL, rq.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, rq.connect_timeout_s);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "cotune/0.1 (huggingface_hub-compatible)");

  curl_slist* headers = nullptr;
  for (const auto& [k, v] : rq.headers) headers = curl_slist_append(headers, (k + ": " + v).c_str());
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip on uploads
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);

  std::string range;
  if (rq.range_start >= 0) {
    range = std::to_string(rq.range_start) + "-" + (rq.range_end >= 0 ? std::to_string(rq.range_end) : "");
    curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
  }

  if (rq.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (rq.method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(rq.body.size()));
  } else if (rq.method == "PUT") {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &t);
    if (!rq.upload_file.empty()) {
      t.upload = std::fopen(rq.upload_file.c_str(), "rb");
      if (!t.upload) {
        curl_slist_free_all(headers);
        fail("cannot open {} for upload", rq.upload_file);
      }
      std::fseek(t.upload, 0, SEEK_END);
      const int64_t file_size = std::ftell(t.upload);
      t.upload_left = rq.upload_length >= 0 ? rq.upload_length : file_size - rq.upload_offset;
      std::fseek(t.upload, static_cast<long>(rq.upload_offset), SEEK_SET);
    } else {
      // Memory body: a temporary FILE keeps one read path.
      t.upload = fmemopen(const_cast<char*>(rq.body.data()), rq.body.size() + 1, "rb");
      t.upload_left = static_cast<int64_t>(rq.body.size());
    }
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(t.upload_left));
  } else if (rq.method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq.method.c_str());
  }

  const CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  if (t.upload) std::fclose(t.upload);
  if (rc != CURLE_OK) {
    if (t.aborted) throw TransportError(fmt::format("{} {}: transfer aborted", rq.method, rq.url));
    if (t.stalled)
      throw TransportError(fmt::format("{} {}: no data for {} s (stalled connection)", rq.method, rq.url, rq.stall_timeout_s));
    throw TransportError(fmt::format("{} {}: {}", rq.method, rq.url, curl_easy_strerror(rc)));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  response.status = status;
  return response;
}

bool is_retryable_status(long s) { return s == 429 || s == 500 || s == 502 || s == 503 || s == 504; }

double retry_delay_s(const RetryPolicy& p, int attempt, const HttpResponse* r) {
  if (r) {
    const std::string ra = r->header("retry-after");
    if (!ra.empty() && std::all_of(ra.begin(), ra.end(), [](unsigned char c) { return std::isdigit(c); }))
      return std::min(p.max_delay_s, std::stod(ra));
  }
  return std::min(p.max_delay_s, p.first_delay_s * std::pow(2.0, attempt));
}

HttpResponse send_with_retries(HttpClient& http, const HttpRequest& rq, const RetryPolicy& p) {
  auto sleep = p.sleep ? p.sleep : [](double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); };
  for (int attempt = 0;; ++attempt) {
    const bool last = attempt + 1 >= p.max_attempts || rq.on_body;
    try {
      HttpResponse r = http.send(rq);
      if (!is_retryable_status(r.status) || last) return r;
      sleep(retry_delay_s(p, attempt, &r));
    } catch (const TransportError&) {
      if (last) throw;
      sleep(retry_delay_s(p, attempt, nullptr));
    }
  }
}

std::string url_encode(std::string_view s, std::string_view keep) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || keep.find(static_cast<char>(c)) != std::string_view::npos) {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

std::string url_origin(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return "";
  const auto path = url.find('/', scheme + 3);
  return std::string(url.substr(0, path));
}

std::string join_url(std::string_view base, std::string_view location) {
  if (location.find("://") != std::string_view::npos) return std::string(location);
  if (location.starts_with('/')) return url_origin(base) + std::string(location);
  const auto q = base.find('?');
  std::string_view b = base.substr(0, q);
  return std::string(b.substr(0, b.rfind('/') + 1)) + std::string(location);
}

}  // namespace cotune::hub
