#include "hub/client.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>

#include <simdjson.h>

namespace cotune::hub {
namespace fs = std::filesystem;

namespace {

std::string trim(std::string s) {
  const auto sp = [](unsigned char c) { return std::isspace(c) != 0; };
  while (!s.empty() && sp(s.back())) s.pop_back();
  size_t i = 0;
  while (i < s.size() && sp(s[i])) ++i;
  return s.substr(i);
}

fs::path expand_home(const std::string& p, const GetEnv& env) {
  if (p == "~" || p.starts_with("~/"))
    if (auto home = env("HOME")) return fs::path(*home) / p.substr(p.size() > 1 ? 2 : 1);
  return p;
}

// The next page of a paged listing: Link: <url>; rel="next"
std::string next_link(const std::string& link) {
  size_t pos = 0;
  while ((pos = link.find('<', pos)) != std::string::npos) {
    const auto close = link.find('>', pos);
    if (close == std::string::npos) break;
    const auto rel_end = link.find(',', close);
    const std::string params = link.substr(close, rel_end == std::string::npos ? std::string::npos : rel_end - close);
    if (params.find("rel=\"next\"") != std::string::npos) return link.substr(pos + 1, close - pos - 1);
    pos = close;
  }
  return "";
}

}  // namespace

bool is_commit_hash(std::string_view s) {
  return s.size() == 40 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool env_flag(const GetEnv& env, const char* name) {
  auto v = env(name);
  if (!v) return false;
  std::string s = *v;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s == "1" || s == "true" || s == "yes" || s == "on";
}

fs::path hf_home(const GetEnv& env) {
  if (auto v = env("HF_HOME")) return expand_home(*v, env);
  if (auto v = env("XDG_CACHE_HOME")) return expand_home(*v, env) / "huggingface";
  if (auto v = env("HOME")) return fs::path(*v) / ".cache" / "huggingface";
  return fs::path(".cache") / "huggingface";
}

HubSettings HubSettings::from_env(const GetEnv& env, const std::optional<std::string>& token_flag) {
  HubSettings s;
  if (auto e = env("HF_ENDPOINT")) s.endpoint = *e;
  while (s.endpoint.ends_with('/')) s.endpoint.pop_back();
  s.offline = env_flag(env, "HF_HUB_OFFLINE");
  s.cache_dir = hf_cache_dir(env);
  if (token_flag && !token_flag->empty()) {
    s.token = *token_flag, s.token_source = "--token";
  } else if (auto t = env("HF_TOKEN")) {
    s.token = trim(*t), s.token_source = "$HF_TOKEN";
  } else if (auto t2 = env("HUGGING_FACE_HUB_TOKEN")) {
    s.token = trim(*t2), s.token_source = "$HUGGING_FACE_HUB_TOKEN";
  } else {
    const fs::path file = env("HF_TOKEN_PATH") ? expand_home(*env("HF_TOKEN_PATH"), env) : hf_home(env) / "token";
    std::ifstream in(file);
    if (in) {
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      text = trim(text);
      if (!text.empty()) s.token = text, s.token_source = file.string();
    }
  }
  if (s.token && s.token->empty()) s.token.reset();
  return s;
}

const char* repo_type_word(RepoType t) { return t == RepoType::model ? "model" : "dataset"; }
std::string repo_url_prefix(RepoType t) { return t == RepoType::model ? "" : "datasets/"; }
std::string api_prefix(RepoType t) { return t == RepoType::model ? "models" : "datasets"; }

std::string normalize_etag(std::string e) {
  if (e.starts_with("W/")) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

HubClient::HubClient(HubSettings settings) : settings_(std::move(settings)) {}

void HubClient::add_auth(HttpRequest& rq) const {
  if (settings_.token && url_origin(rq.url) == url_origin(settings_.endpoint))
    rq.headers.emplace_back("Authorization", "Bearer " + *settings_.token);
}

HttpResponse HubClient::send(HttpRequest rq) {
  if (settings_.offline)
    fail("HF_HUB_OFFLINE is set: not contacting {} ({} {}); unset it, or use files already in the cache",
         settings_.endpoint, rq.method, rq.url);
  add_auth(rq);
  try {
    return send_with_retries(http_, rq, settings_.retry);
  } catch (const TransportError& e) {
    fail("cannot reach the Hub at {}: {} (after {} attempts; check the network, or set HF_HUB_OFFLINE=1 to use the "
         "cache only)",
         settings_.endpoint, e.what(), settings_.retry.max_attempts);
  }
}

HttpResponse HubClient::call(HttpRequest rq, const std::string& what, const std::string& repo_id, RepoType type) {
  HttpResponse r = send(std::move(rq));
  if (r.status < 200 || r.status >= 300) throw Error(http_error_message(r, what, repo_id, type));
  return r;
}

std::string HubClient::http_error_message(const HttpResponse& r, const std::string& what, const std::string& repo_id,
                                          RepoType type) const {
  const std::string code = r.header("x-error-code");
  std::string server_message = r.header("x-error-message");
  if (server_message.empty() && r.body.size() < 2000) {
    simdjson::dom::parser p;
    simdjson::dom::element doc;
    std::string_view msg;
    if (!p.parse(r.body).get(doc) && doc.is_object() && !doc["error"].get_string().get(msg)) server_message = std::string(msg);
  }
  const std::string repo_page = settings_.endpoint + "/" + repo_url_prefix(type) + repo_id;
  const std::string login =
      settings_.token ? fmt::format("the token from {} was sent", settings_.token_source)
                      : "no token was sent: set HF_TOKEN, run `huggingface-cli login` (it writes $HF_HOME/token), or pass --token";
  std::string msg;
  if (code == "GatedRepo" || (r.status == 403 && server_message.find("gated") != std::string::npos)) {
    msg = fmt::format("{} {} is gated: ask for access at {} (logged in, accept the conditions), then use a token of "
                      "that account ({})",
                      repo_type_word(type), repo_id, repo_page, login);
  } else if (r.status == 401) {
    msg = settings_.token
              ? fmt::format("{}: the Hub did not accept the token from {} for {} {} (expired or revoked, or the repo is "
                            "private to another account or does not exist); make a new token at {}/settings/tokens",
                            what, settings_.token_source, repo_type_word(type), repo_id, settings_.endpoint)
              : fmt::format("{}: {} {} needs authentication (a private or gated repo, or it does not exist): {}; check "
                            "that the name is right and that your account can see {}",
                            what, repo_type_word(type), repo_id, login, repo_page);
  } else if (r.status == 403) {
    msg = fmt::format("{}: access to {} {} is forbidden with the token from {}: the token may be read-only (an "
                      "upload needs a write token) or your account lacks access to {}",
                      what, repo_type_word(type), repo_id, settings_.token ? settings_.token_source : "(none)", repo_page);
  } else if (r.status == 404 && code == "RevisionNotFound") {
    msg = fmt::format("{}: {} {} has no such revision (branch, tag or commit)", what, repo_type_word(type), repo_id);
  } else if (r.status == 404 && code == "EntryNotFound") {
    msg = fmt::format("{}: no such file in {} {}", what, repo_type_word(type), repo_id);
  } else if (r.status == 404) {
    msg = fmt::format("{}: {} {} was not found on {} (check the name{})", what, repo_type_word(type), repo_id,
                      settings_.endpoint, type == RepoType::model ? ", or add --repo-type dataset" : "");
  } else if (r.status == 429) {
    msg = fmt::format("{}: the Hub keeps answering 429 (rate limited) after {} attempts; wait a few minutes{}", what,
                      settings_.retry.max_attempts, settings_.token ? "" : " or log in (authenticated limits are higher)");
  } else if (r.status >= 500) {
    msg = fmt::format("{}: the Hub answered {} after {} attempts (a server problem; try again later)", what, r.status,
                      settings_.retry.max_attempts);
  } else {
    msg = fmt::format("{}: the Hub answered HTTP {}", what, r.status);
  }
  if (!server_message.empty() && server_message.size() < 500) msg += fmt::format(" [Hub: {}]", server_message);
  return msg;
}

std::string HubClient::resolve_url(const std::string& repo_id, RepoType type, const std::string& revision,
                                   const std::string& path) const {
  return fmt::format("{}/{}{}/resolve/{}/{}", settings_.endpoint, repo_url_prefix(type), repo_id, url_encode(revision),
                     url_encode(path, "/"));
}

std::string HubClient::resolve_commit(const std::string& repo_id, RepoType type, const std::string& revision) {
  HttpRequest rq;
  rq.url = fmt::format("{}/api/{}/{}/revision/{}", settings_.endpoint, api_prefix(type), repo_id, url_encode(revision));
  const HttpResponse r =
      call(rq, fmt::format("revision \"{}\" of {} {}", revision, repo_type_word(type), repo_id), repo_id, type);
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  std::string_view sha;
  if (p.parse(r.body).get(doc) || doc["sha"].get_string().get(sha) || !is_commit_hash(sha))
    fail("{}: the Hub's repo info has no 40-hex \"sha\" (is {} a Hub endpoint?)", rq.url, settings_.endpoint);
  return std::string(sha);
}

std::vector<RepoFileInfo> HubClient::list_files(const std::string& repo_id, RepoType type, const std::string& commit) {
  std::vector<RepoFileInfo> out;
  std::string url = fmt::format("{}/api/{}/{}/tree/{}?recursive=true&expand=false", settings_.endpoint, api_prefix(type),
                                repo_id, url_encode(commit));
  for (int page = 0; !url.empty(); ++page) {
    if (page > 100000) fail("{}: the tree listing does not end", url);
    HttpRequest rq;
    rq.url = url;
    const HttpResponse r = call(rq, fmt::format("file list of {} {}", repo_type_word(type), repo_id), repo_id, type);
    simdjson::dom::parser p;
    simdjson::dom::element doc;
    simdjson::dom::array arr;
    if (p.parse(r.body).get(doc) || doc.get_array().get(arr)) fail("{}: expected a JSON array of tree entries", url);
    for (simdjson::dom::element e : arr) {
      std::string_view kind, path, oid;
      int64_t size = 0;
      if (e["type"].get_string().get(kind) || kind != "file") continue;
      if (e["path"].get_string().get(path) || e["oid"].get_string().get(oid) || e["size"].get_int64().get(size))
        fail("{}: a tree entry lacks path / oid / size", url);
      RepoFileInfo f;
      f.path = std::string(path), f.blob_id = std::string(oid), f.size = size;
      simdjson::dom::element lfs;
      if (!e["lfs"].get(lfs) && lfs.is_object()) {
        std::string_view sha;
        int64_t lsize = 0;
        if (!lfs["oid"].get_string().get(sha)) f.lfs_sha256 = std::string(sha);
        if (!lfs["size"].get_int64().get(lsize)) f.size = lsize;
      }
      out.push_back(std::move(f));
    }
    const std::string next = next_link(r.header("link"));
    url = next.empty() ? "" : join_url(url, next);
  }
  return out;
}

FileMetadata HubClient::file_metadata(const std::string& repo_id, RepoType type, const std::string& revision,
                                      const std::string& path) {
  HttpRequest rq;
  rq.method = "HEAD";
  rq.url = resolve_url(repo_id, type, revision, path);
  rq.headers.emplace_back("Accept-Encoding", "identity");
  const std::string what = fmt::format("{} in {} {} at {}", path, repo_type_word(type), repo_id, revision);
  HttpResponse r;
  for (int hops = 0;; ++hops) {
    r = send(rq);
    if (!r.is_redirect()) break;
    const std::string loc = r.header("location");
    if (loc.empty() || loc.find("://") != std::string::npos || hops > 5) break;  // only relative redirects
    rq.url = join_url(rq.url, loc);
  }
  if (r.status >= 400) throw Error(http_error_message(r, what, repo_id, type));
  FileMetadata m;
  m.commit = r.header("x-repo-commit");
  m.etag = normalize_etag(!r.header("x-linked-etag").empty() ? r.header("x-linked-etag") : r.header("etag"));
  m.location = r.header("location").empty() ? rq.url : join_url(rq.url, r.header("location"));
  const std::string size = !r.header("x-linked-size").empty() ? r.header("x-linked-size")
                           : r.is_redirect()                   ? ""
                                                               : r.header("content-length");
  if (!size.empty()) m.size = std::stoll(size);
  if (m.etag.empty())
    fail("{}: the Hub sent no ETag for it (a proxy that strips headers? HF_ENDPOINT is {})", what, settings_.endpoint);
  return m;
}

}  // namespace cotune::hub
