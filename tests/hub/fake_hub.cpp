#include "fake_hub.h"

#include <httplib.h>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>
#include <thread>

namespace cotune::testing {

namespace {

using json = nlohmann::json;

std::string digest_hex(const EVP_MD* md, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, md, nullptr);
  std::string hex;
  static const char* digits = "0123456789abcdef";
  for (unsigned i = 0; i < len; ++i) {
    hex.push_back(digits[out[i] >> 4]);
    hex.push_back(digits[out[i] & 15]);
  }
  return hex;
}

std::string base64_decode(const std::string& in) {
  std::string out;
  int val = 0, bits = -8;
  for (unsigned char c : in) {
    int d;
    if (c >= 'A' && c <= 'Z') d = c - 'A';
    else if (c >= 'a' && c <= 'z') d = c - 'a' + 26;
    else if (c >= '0' && c <= '9') d = c - '0' + 52;
    else if (c == '+') d = 62;
    else if (c == '/') d = 63;
    else continue;
    val = (val << 6) + d;
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

bool lfs_rule(const std::string& path, size_t size) {
  for (const char* ext : {".safetensors", ".parquet", ".bin", ".gguf"})
    if (path.ends_with(ext)) return true;
  return size > (size_t{1} << 20);
}

struct Commit {
  std::string hash;
  std::string message;
  std::map<std::string, FakeRepoFile> files;
};

struct Repo {
  std::map<std::string, std::string> refs;  // branch / tag -> commit
  std::map<std::string, Commit> commits;
  std::vector<std::string> history;         // commit messages, oldest first
  bool is_private = false, gated = false;
};

struct Fault {
  std::string match;
  int status = 0;
  int times = 0;
  int retry_after = -1;
  int64_t cut_bytes = -1;
  bool corrupt = false;
  int stall_ms = 0;  // with cut_bytes: silent this long before the cut
};

}  // namespace

struct FakeHub::State {
  mutable std::mutex mutex;
  std::map<std::string, Repo> repos;                  // "model:org/name"
  std::map<std::string, std::string> lfs_objects;     // sha256 -> bytes
  std::map<std::string, std::map<int, std::string>> parts;  // multipart uploads in progress
  std::vector<FakeRequest> log;
  std::vector<Fault> faults;
  std::string token;
  int page_size = 1000;
  int delay_ms = 0;
  int stall_ms = 0;  // set by apply_fault for the body being served (under the mutex)
  int64_t multipart_threshold = int64_t{1} << 40, multipart_chunk = 5 << 20;
  int counter = 0;
  httplib::Server hub, storage;
  int hub_port = 0, storage_port = 0;
  std::thread hub_thread, storage_thread;

  std::string hub_url() const { return "http://127.0.0.1:" + std::to_string(hub_port); }
  std::string storage_url() const { return "http://127.0.0.1:" + std::to_string(storage_port); }

  // ---- helpers, called with the mutex held ---------------------------------------------------------
  static std::string key(const std::string& type, const std::string& id) { return type + ":" + id; }

  const Commit* find_commit(const Repo& r, const std::string& rev) const {
    auto ref = r.refs.find(rev);
    const std::string hash = ref != r.refs.end() ? ref->second : rev;
    auto c = r.commits.find(hash);
    return c == r.commits.end() ? nullptr : &c->second;
  }

  std::string add_commit(Repo& r, const std::string& branch, std::map<std::string, FakeRepoFile> files,
                         const std::string& message) {
    std::string seed = std::to_string(++counter) + branch;
    for (const auto& [p, f] : files) seed += p + git_blob_sha1(f.content);
    Commit c;
    c.hash = digest_hex(EVP_sha1(), seed);
    c.message = message;
    c.files = std::move(files);
    for (const auto& [p, f] : c.files)
      if (f.lfs) lfs_objects[sha256_hex(f.content)] = f.content;
    r.refs[branch] = c.hash;
    r.history.push_back(message);
    const std::string h = c.hash;
    r.commits[h] = std::move(c);
    return h;
  }

  void record(const std::string& host, const httplib::Request& req) {
    FakeRequest f;
    f.host = host;
    f.method = req.method;
    f.path = req.path;
    if (!req.params.empty()) {
      std::string q;
      for (const auto& [k, v] : req.params) q += (q.empty() ? "?" : "&") + k + "=" + v;
      f.path += q;
    }
    const std::string auth = req.get_header_value("Authorization");
    f.any_auth = !auth.empty();
    f.authorized = !token.empty() && auth == "Bearer " + token;
    f.range = req.get_header_value("Range");
    f.content_type = req.get_header_value("Content-Type");
    f.body = req.body.substr(0, size_t{1} << 20);
    log.push_back(std::move(f));
  }

  // A pending fault for this path: answers it (true) or arms a connection cut (cut_bytes).
  bool apply_fault(const httplib::Request& req, httplib::Response& res, int64_t& cut_bytes) {
    for (auto& f : faults) {
      if (f.times <= 0 || req.path.find(f.match) == std::string::npos) continue;
      if (f.corrupt) {
        if (req.method == "HEAD") continue;
        --f.times;
        cut_bytes = -2;  // serve_bytes: corrupt the body
        return false;
      }
      if (f.cut_bytes >= 0) {
        if (req.method == "HEAD") continue;
        --f.times;
        cut_bytes = f.cut_bytes;
        stall_ms = f.stall_ms;
        return false;
      }
      --f.times;
      res.status = f.status;
      if (f.retry_after >= 0) res.set_header("Retry-After", std::to_string(f.retry_after));
      res.set_content(json{{"error", "injected fault " + std::to_string(f.status)}}.dump(), "application/json");
      return true;
    }
    return false;
  }

  // 401 / 403 / 404 like the Hub, with X-Error-Code. True when the request may proceed.
  bool check_access(const httplib::Request& req, httplib::Response& res, const std::string& type,
                    const std::string& id, bool write) {
    const std::string auth = req.get_header_value("Authorization");
    const bool has_token = !auth.empty();
    const bool valid = !token.empty() && auth == "Bearer " + token;
    auto it = repos.find(key(type, id));
    auto deny = [&](int status, const std::string& code, const std::string& msg) {
      res.status = status;
      res.set_header("X-Error-Code", code);
      res.set_header("X-Error-Message", msg);
      res.set_content(json{{"error", msg}}.dump(), "application/json");
      return false;
    };
    if (it == repos.end() || (it->second.is_private && !valid)) {
      if (!has_token) return deny(401, "RepoNotFound", "Repository not found");
      return deny(404, "RepoNotFound", "Repository not found");
    }
    if (it->second.gated && !valid) {
      if (!has_token) return deny(401, "GatedRepo", "Access to this repo is restricted; you must be authenticated");
      return deny(403, "GatedRepo", "Access to gated repo is restricted. You must have access to it and be authenticated");
    }
    if (write && !valid) return deny(has_token ? 403 : 401, "Forbidden", "You don't have the rights to write here");
    return true;
  }

  void serve_bytes(const httplib::Request& req, httplib::Response& res, std::shared_ptr<const std::string> data,
                   int64_t cut_bytes, const std::string& content_type) {
    const int delay = delay_ms;
    const int stall = stall_ms;
    stall_ms = 0;
    if (cut_bytes == -2 && !data->empty()) {
      auto bad = std::make_shared<std::string>(*data);
      (*bad)[0] = static_cast<char>((*bad)[0] ^ 0x5a);
      data = bad;
      cut_bytes = -1;
    }
    auto sent = std::make_shared<int64_t>(0);
    res.set_content_provider(data->size(), content_type,
                             [data, delay, stall, cut_bytes, sent](size_t offset, size_t length, httplib::DataSink& sink) {
                               const size_t n = std::min<size_t>(length, 16384);
                               if (delay > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
                               if (cut_bytes >= 0 && *sent + static_cast<int64_t>(n) > cut_bytes) {
                                 const size_t part = static_cast<size_t>(std::max<int64_t>(0, cut_bytes - *sent));
                                 if (part > 0) sink.write(data->data() + offset, part);
                                 if (stall > 0) std::this_thread::sleep_for(std::chrono::milliseconds(stall));
                                 return false;  // the connection drops mid-body (after a silence)
                               }
                               sink.write(data->data() + offset, n);
                               *sent += static_cast<int64_t>(n);
                               return true;
                             });
    (void)req;
  }
};

std::string git_blob_sha1(const std::string& content) {
  return digest_hex(EVP_sha1(), "blob " + std::to_string(content.size()) + std::string(1, '\0') + content);
}
std::string sha256_hex(const std::string& content) { return digest_hex(EVP_sha256(), content); }

FakeHub::FakeHub() : state_(std::make_unique<State>()) {
  State& s = *state_;
  using httplib::Request;
  using httplib::Response;
  const std::string repo_re = "([A-Za-z0-9._-]+/[A-Za-z0-9._-]+)";

  // ---- hub: read API ------------------------------------------------------------------------------------
  s.hub.Get("/api/(models|datasets)/" + repo_re + "/revision/(.+)", [&s](const Request& req, Response& res) {
    std::lock_guard lock(s.mutex);
    s.record("hub", req);
    int64_t cut = -1;
    if (s.apply_fault(req, res, cut)) return;
    const std::string type = req.matches[1].str() == "models" ? "model" : "dataset";
    const std::string id = req.matches[2], rev = req.matches[3];
    if (!s.check_access(req, res, type, id, false)) return;
    const Commit* c = s.find_commit(s.repos[State::key(type, id)], rev);
    if (!c) {
      res.status = 404;
      res.set_header("X-Error-Code", "RevisionNotFound");
      res.set_content(json{{"error", "Invalid rev id: " + rev}}.dump(), "application/json");
      return;
    }
    json siblings = json::array();
    for (const auto& [p, f] : c->files) siblings.push_back({{"rfilename", p}});
    res.set_content(json{{"id", id}, {"sha", c->hash}, {"private", s.repos[State::key(type, id)].is_private},
                         {"siblings", siblings}}
                        .dump(),
                    "application/json");
  });

  s.hub.Get("/api/(models|datasets)/" + repo_re + "/tree/(.+)", [&s](const Request& req, Response& res) {
    std::lock_guard lock(s.mutex);
    s.record("hub", req);
    int64_t cut = -1;
    if (s.apply_fault(req, res, cut)) return;
    const std::string type = req.matches[1].str() == "models" ? "model" : "dataset";
    const std::string id = req.matches[2], rev = req.matches[3];
    if (!s.check_access(req, res, type, id, false)) return;
    const Commit* c = s.find_commit(s.repos[State::key(type, id)], rev);
    if (!c) {
      res.status = 404;
      res.set_header("X-Error-Code", "RevisionNotFound");
      return;
    }
    // Folders first as the Hub lists them do not matter to clients; only files are listed (recursive).
    std::vector<json> entries;
    for (const auto& [p, f] : c->files) {
      const std::string pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:" + sha256_hex(f.content) +
                                  "\nsize " + std::to_string(f.content.size()) + "\n";
      json e{{"type", "file"}, {"oid", git_blob_sha1(f.lfs ? pointer : f.content)}, {"size", f.content.size()}, {"path", p}};
      if (f.lfs) e["lfs"] = {{"oid", sha256_hex(f.content)}, {"size", f.content.size()}, {"pointerSize", pointer.size()}};
      entries.push_back(e);
    }
    const size_t start = req.has_param("cursor") ? std::stoul(req.get_param_value("cursor")) : 0;
    const size_t end = std::min(entries.size(), start + static_cast<size_t>(s.page_size));
    json page = json::array();
    for (size_t i = start; i < end; ++i) page.push_back(entries[i]);
    if (end < entries.size())
      res.set_header("Link", "<" + s.hub_url() + "/api/" + req.matches[1].str() + "/" + id + "/tree/" + c->hash +
                                 "?recursive=true&cursor=" + std::to_string(end) + ">; rel=\"next\"");
    res.set_content(page.dump(), "application/json");
  });

  // resolve: /{datasets/}org/name/resolve/<rev>/<path>; the revision may hold '/' (refs/convert/parquet), so it
  // is the longest known ref that prefixes the rest, or a commit hash.
  auto resolve = [&s](const Request& req, Response& res) {
    std::lock_guard lock(s.mutex);
    s.record("hub", req);
    int64_t cut = -1;
    if (s.apply_fault(req, res, cut)) return;
    const std::string type = req.matches[1].str().empty() ? "model" : "dataset";
    const std::string id = req.matches[2], rest = req.matches[3];
    if (!s.check_access(req, res, type, id, false)) return;
    Repo& repo = s.repos[State::key(type, id)];
    std::string rev, path;
    for (const auto& [ref, hash] : repo.refs)
      if (rest.starts_with(ref + "/") && ref.size() > rev.size()) rev = ref;
    if (rev.empty() && rest.size() > 41 && rest[40] == '/') rev = rest.substr(0, 40);
    const Commit* c = rev.empty() ? nullptr : s.find_commit(repo, rev);
    if (!c) {
      res.status = 404;
      res.set_header("X-Error-Code", "RevisionNotFound");
      res.set_content(json{{"error", "Revision not found"}}.dump(), "application/json");
      return;
    }
    path = rest.substr(rev.size() + 1);
    auto f = c->files.find(path);
    if (f == c->files.end()) {
      res.status = 404;
      res.set_header("X-Error-Code", "EntryNotFound");
      res.set_header("X-Repo-Commit", c->hash);
      res.set_content(json{{"error", "Entry not found"}}.dump(), "application/json");
      return;
    }
    res.set_header("X-Repo-Commit", c->hash);
    if (f->second.lfs) {
      const std::string sha = sha256_hex(f->second.content);
      res.set_header("X-Linked-Etag", "\"" + sha + "\"");
      res.set_header("X-Linked-Size", std::to_string(f->second.content.size()));
      res.set_header("ETag", "\"" + git_blob_sha1(f->second.content) + "\"");
      res.set_redirect(s.storage_url() + "/lfs/" + sha, 302);
      return;
    }
    res.set_header("ETag", "\"" + git_blob_sha1(f->second.content) + "\"");
    s.serve_bytes(req, res, std::make_shared<const std::string>(f->second.content), cut, "application/octet-stream");
  };
  s.hub.Get("/(datasets/)?" + repo_re + "/resolve/(.+)", resolve);

  // ---- hub: write API -----------------------------------------------------------------------------------
  s.hub.Post("/api/repos/create", [&s](const Request& req, Response& res) {
    std::lock_guard lock(s.mutex);
    s.record("hub", req);
    int64_t cut = -1;
    if (s.apply_fault(req, res, cut)) return;
    const std::string auth = req.get_header_value("Authorization");
    if (s.token.empty() || auth != "Bearer " + s.token) {
      res.status = 401;
      res.set_content(json{{"error", "Invalid username or password."}}.dump(), "application/json");
      return;
    }
    const json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("name")) {
      res.status = 400;
      return;
    }
    const std::string type = body.value("type", "model");
    std::string id = body["name"].get<std::string>();
    if (body.contains("organization") && body["organization"].is_string())
      id = body["organization"].get<std::string>() + "/" + id;
    const std::string k = State::key(type, id);
    const std::string url = s.hub_url() + "/" + (type == "dataset" ? "datasets/" : "") + id;
    if (s.repos.count(k)) {
      res.status = 409;
      res.set_content(json{{"error", "You already created this " + type + " repo"}, {"url", url}}.dump(), "application/json");
      return;
    }
    Repo& r = s.repos[k];
    r.is_private = body.value("private", false);
    s.add_commit(r, "main", {{".gitattributes", {"*.safetensors filter=lfs diff=lfs merge=lfs -text\n", false}}},
                 "initial commit");
    res.set_content(json{{"url", url}, {"name", id}}.dump(), "application/json");
  });

  s.hub.Post("/api/(models|datasets)/" + repo_re + "/branch/(.+)", [&s](const Request& req, Response& res) {
    std::lock_guard lock(s.mutex);
    s.record("hub", req);
    const std::string type = req.matches[1].str() == "models" ? "model" : "dataset";
    const std::string id = req.matches[2], branch = req.matches[3];
    if (!s.check_access(req, res, type, id, true)) return;
    Repo& r = s.repos[State::key(type, id)];
    if (r.refs.count(branch)) {
      res.status = 409;
      res.set_content(json{{"error", "Reference already exists"}}.dump(), "application/json");
      return;
    }
    r.refs[branch] = r.refs["main"];
    res.set_content("{}", "application/json");
  });

  s.hub.Post("/api/(models|datasets)/" + repo_re + "/preupload/(.+)", [&s](const Request& req, Response& res) {
    std::lock_guard lock(s.mutex);
    s.record("hub", req);
    int64_t cut = -1;
    if (s.apply_fault(req, res, cut)) return;
    const std::string type = req.matches[1].str() == "models" ? "model" : "dataset";
    const std::string id = req.matches[2], rev = req.matches[3];
    if (!s.check_access(req, res, type, id, true)) return;
    const Commit* c = s.find_commit(s.repos[State::key(type, id)], rev);
    const json body = json::parse(req.body, nullptr, false);
    json out = json::array();
    for (const auto& f : body["files"]) {
      const std::string path = f["path"];
      const std::string sample = base64_decode(f["sample"].get<std::string>());
      const bool lfs = lfs_rule(path, f["size"].get<size_t>()) || sample.find('\0') != std::string::npos;
      json e{{"path", path}, {"uploadMode", lfs ? "lfs" : "regular"}, {"shouldIgnore", false}};
      if (c) {
        auto it = c->files.find(path);
        if (it != c->files.end())
          e["oid"] = it->second.lfs ? sha256_hex(it->second.content) : git_blob_sha1(it->second.content);
      }
      out.push_back(e);
    }
    res.set_content(json{{"files", out}, {"commitOid", c ? c->hash : ""}}.dump(), "application/json");
  });

  auto lfs_batch = [&s](const Request& req, Response& res) {
    std::lock_guard lock(s.mutex);
    s.record("hub", req);
    int64_t cut = -1;
    if (s.apply_fault(req, res, cut)) return;
    const std::string type = req.matches[1].str().empty() ? "model" : "dataset";
    const std::string id = req.matches[2];
    if (!s.check_access(req, res, type, id, true)) return;
    const json body = json::parse(req.body, nullptr, false);
    json objects = json::array();
    std::string transfer = "basic";
    for (const auto& o : body["objects"]) {
      const std::string oid = o["oid"];
      const int64_t size = o["size"];
      json e{{"oid", oid}, {"size", size}};
      if (!s.lfs_objects.count(oid)) {
        json verify{{"href", s.hub_url() + "/" + (type == "dataset" ? "datasets/" : "") + id + ".git/info/lfs/objects/verify"},
                    {"header", json::object()}};
        if (size >= s.multipart_threshold) {
          transfer = "multipart";
          json header{{"chunk_size", std::to_string(s.multipart_chunk)}};
          const int64_t n = (size + s.multipart_chunk - 1) / s.multipart_chunk;
          for (int64_t i = 1; i <= n; ++i) {
            char num[8];
            std::snprintf(num, sizeof num, "%05d", static_cast<int>(i));
            header[num] = s.storage_url() + "/part/" + oid + "/" + std::to_string(i);
          }
          e["actions"] = {{"upload", {{"href", s.storage_url() + "/complete/" + oid}, {"header", header}}}, {"verify", verify}};
        } else {
          e["actions"] = {{"upload", {{"href", s.storage_url() + "/upload/" + oid}, {"header", json::object()}}},
                          {"verify", verify}};
        }
      }
      objects.push_back(e);
    }
    res.set_content(json{{"transfer", transfer}, {"objects", objects}}.dump(), "application/vnd.git-lfs+json");
  };
  s.hub.Post("/(datasets/)?" + repo_re + "\\.git/info/lfs/objects/batch", lfs_batch);

  s.hub.Post("/(datasets/)?" + repo_re + "\\.git/info/lfs/objects/verify", [&s](const Request& req, Response& res) {
    std::lock_guard lock(s.mutex);
    s.record("hub", req);
    const json body = json::parse(req.body, nullptr, false);
    const std::string oid = body.value("oid", "");
    auto it = s.lfs_objects.find(oid);
    if (it == s.lfs_objects.end() || sha256_hex(it->second) != oid ||
        static_cast<int64_t>(it->second.size()) != body.value("size", int64_t{-1})) {
      res.status = 422;
      res.set_content(json{{"error", "object not uploaded or corrupt"}}.dump(), "application/json");
      return;
    }
    res.set_content("{}", "application/json");
  });

  s.hub.Post("/api/(models|datasets)/" + repo_re + "/commit/(.+)", [&s](const Request& req, Response& res) {
    std::lock_guard lock(s.mutex);
    s.record("hub", req);
    int64_t cut = -1;
    if (s.apply_fault(req, res, cut)) return;
    const std::string type = req.matches[1].str() == "models" ? "model" : "dataset";
    const std::string id = req.matches[2], rev = req.matches[3];
    if (!s.check_access(req, res, type, id, true)) return;
    Repo& r = s.repos[State::key(type, id)];
    if (!r.refs.count(rev)) {
      res.status = 404;
      res.set_header("X-Error-Code", "RevisionNotFound");
      res.set_content(json{{"error", "Invalid rev id: " + rev}}.dump(), "application/json");
      return;
    }
    std::map<std::string, FakeRepoFile> files = r.commits[r.refs[rev]].files;
    std::string message = "(no header)";
    size_t pos = 0;
    while (pos < req.body.size()) {
      size_t nl = req.body.find('\n', pos);
      if (nl == std::string::npos) nl = req.body.size();
      const std::string line = req.body.substr(pos, nl - pos);
      pos = nl + 1;
      if (line.empty()) continue;
      const json op = json::parse(line, nullptr, false);
      if (!op.is_object()) {
        res.status = 400;
        res.set_content(json{{"error", "malformed NDJSON line"}}.dump(), "application/json");
        return;
      }
      const std::string k = op.value("key", "");
      const json& v = op["value"];
      if (k == "header") {
        message = v.value("summary", "");
      } else if (k == "file") {
        files[v["path"]] = {base64_decode(v["content"]), false};
      } else if (k == "lfsFile") {
        auto obj = s.lfs_objects.find(v["oid"]);
        if (obj == s.lfs_objects.end()) {
          res.status = 422;
          res.set_content(json{{"error", "LFS object " + v["oid"].get<std::string>() + " was never uploaded"}}.dump(),
                          "application/json");
          return;
        }
        files[v["path"]] = {obj->second, true};
      } else if (k == "deletedFile") {
        files.erase(v["path"].get<std::string>());
      }
    }
    const std::string hash = s.add_commit(r, rev, std::move(files), message);
    res.set_content(json{{"commitOid", hash}, {"commitUrl", s.hub_url() + "/" + id + "/commit/" + hash}}.dump(),
                    "application/json");
  });

  // ---- storage --------------------------------------------------------------------------------------------
  s.storage.Get("/lfs/([0-9a-f]{64})", [&s](const Request& req, Response& res) {
    std::shared_ptr<const std::string> data;
    int64_t cut = -1;
    {
      std::lock_guard lock(s.mutex);
      s.record("storage", req);
      if (s.apply_fault(req, res, cut)) return;
      auto it = s.lfs_objects.find(req.matches[1]);
      if (it == s.lfs_objects.end()) {
        res.status = 404;
        return;
      }
      data = std::make_shared<const std::string>(it->second);
    }
    s.serve_bytes(req, res, data, cut, "application/octet-stream");
  });
  s.storage.Put("/upload/([0-9a-f]{64})", [&s](const Request& req, Response& res) {
    std::lock_guard lock(s.mutex);
    s.record("storage", req);
    int64_t cut = -1;
    if (s.apply_fault(req, res, cut)) return;
    if (req.get_header_value("Authorization").size()) {  // storage URLs are pre-signed: a token here is a leak
      res.status = 400;
      res.set_content("Authorization header sent to the storage host", "text/plain");
      return;
    }
    s.lfs_objects[req.matches[1]] = req.body;
    res.set_content("", "text/plain");
  });
  s.storage.Put("/part/([0-9a-f]{64})/([0-9]+)", [&s](const Request& req, Response& res) {
    std::lock_guard lock(s.mutex);
    s.record("storage", req);
    s.parts[req.matches[1]][std::stoi(req.matches[2])] = req.body;
    res.set_header("ETag", "\"" + digest_hex(EVP_md5(), req.body) + "\"");
    res.set_content("", "text/plain");
  });
  s.storage.Post("/complete/([0-9a-f]{64})", [&s](const Request& req, Response& res) {
    std::lock_guard lock(s.mutex);
    s.record("storage", req);
    const json body = json::parse(req.body, nullptr, false);
    auto& parts = s.parts[req.matches[1]];
    std::string all;
    for (const auto& p : body["parts"]) {
      const int n = p["partNumber"];
      auto it = parts.find(n);
      std::string expected = digest_hex(EVP_md5(), it == parts.end() ? std::string() : it->second);
      expected.insert(expected.begin(), '"');
      expected.push_back('"');
      if (it == parts.end() || p["etag"].get<std::string>() != expected) {
        res.status = 400;
        res.set_content("part " + std::to_string(n) + " missing or etag mismatch", "text/plain");
        return;
      }
      all += it->second;
    }
    s.lfs_objects[req.matches[1]] = all;
    s.parts.erase(req.matches[1]);
    res.set_content("{}", "application/json");
  });

  for (auto* server : {&s.hub, &s.storage}) {
    server->new_task_queue = [] { return new httplib::ThreadPool(64); };  // idle keep-alive connections hold a thread
    server->set_keep_alive_max_count(100);
    server->set_read_timeout(10, 0);
    server->set_payload_max_length(size_t{1} << 32);
  }
  s.hub_port = s.hub.bind_to_any_port("127.0.0.1");
  s.storage_port = s.storage.bind_to_any_port("127.0.0.1");
  if (s.hub_port <= 0 || s.storage_port <= 0) throw std::runtime_error("FakeHub: cannot bind 127.0.0.1");
  s.hub_thread = std::thread([&s] { s.hub.listen_after_bind(); });
  s.storage_thread = std::thread([&s] { s.storage.listen_after_bind(); });
  for (int i = 0; i < 200 && !(s.hub.is_running() && s.storage.is_running()); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

FakeHub::~FakeHub() {
  state_->hub.stop();
  state_->storage.stop();
  if (state_->hub_thread.joinable()) state_->hub_thread.join();
  if (state_->storage_thread.joinable()) state_->storage_thread.join();
}

std::string FakeHub::endpoint() const { return state_->hub_url(); }
std::string FakeHub::storage_endpoint() const { return state_->storage_url(); }

std::string FakeHub::commit(const std::string& type, const std::string& repo_id, const std::string& branch,
                            const std::map<std::string, std::string>& files) {
  std::lock_guard lock(state_->mutex);
  std::map<std::string, FakeRepoFile> fs;
  for (const auto& [p, c] : files) fs[p] = {c, lfs_rule(p, c.size())};
  return state_->add_commit(state_->repos[State::key(type, repo_id)], branch, std::move(fs), "commit");
}

void FakeHub::tag(const std::string& type, const std::string& repo_id, const std::string& tag, const std::string& commit) {
  std::lock_guard lock(state_->mutex);
  state_->repos[State::key(type, repo_id)].refs[tag] = commit;
}

void FakeHub::set_token(const std::string& token) {
  std::lock_guard lock(state_->mutex);
  state_->token = token;
}
void FakeHub::set_private(const std::string& type, const std::string& repo_id, bool v) {
  std::lock_guard lock(state_->mutex);
  state_->repos[State::key(type, repo_id)].is_private = v;
}
void FakeHub::set_gated(const std::string& type, const std::string& repo_id, bool v) {
  std::lock_guard lock(state_->mutex);
  state_->repos[State::key(type, repo_id)].gated = v;
}
void FakeHub::set_page_size(int n) {
  std::lock_guard lock(state_->mutex);
  state_->page_size = n;
}
void FakeHub::set_multipart_threshold(int64_t bytes, int64_t chunk) {
  std::lock_guard lock(state_->mutex);
  state_->multipart_threshold = bytes;
  state_->multipart_chunk = chunk;
}
void FakeHub::fail_next(const std::string& match, int status, int times, int retry_after_s) {
  std::lock_guard lock(state_->mutex);
  state_->faults.push_back(Fault{match, status, times, retry_after_s, -1});
}
void FakeHub::cut_after(const std::string& match, int64_t bytes, int times) {
  std::lock_guard lock(state_->mutex);
  state_->faults.push_back(Fault{match, 0, times, -1, bytes});
}
void FakeHub::corrupt_next(const std::string& match, int times) {
  std::lock_guard lock(state_->mutex);
  Fault f{match, 0, times, -1, -1};
  f.corrupt = true;
  state_->faults.push_back(f);
}
void FakeHub::stall_after(const std::string& match, int64_t bytes, int ms, int times) {
  std::lock_guard lock(state_->mutex);
  Fault f{match, 0, times, -1, bytes};
  f.stall_ms = ms;
  state_->faults.push_back(f);
}
void FakeHub::set_delay_ms(int ms) {
  std::lock_guard lock(state_->mutex);
  state_->delay_ms = ms;
}
std::vector<FakeRequest> FakeHub::requests() const {
  std::lock_guard lock(state_->mutex);
  return state_->log;
}
void FakeHub::clear_requests() {
  std::lock_guard lock(state_->mutex);
  state_->log.clear();
}
std::optional<std::map<std::string, FakeRepoFile>> FakeHub::files(const std::string& type, const std::string& repo_id,
                                                                  const std::string& revision) const {
  std::lock_guard lock(state_->mutex);
  auto it = state_->repos.find(State::key(type, repo_id));
  if (it == state_->repos.end()) return std::nullopt;
  const Commit* c = state_->find_commit(it->second, revision);
  if (!c) return std::nullopt;
  return c->files;
}
bool FakeHub::repo_exists(const std::string& type, const std::string& repo_id) const {
  std::lock_guard lock(state_->mutex);
  return state_->repos.count(State::key(type, repo_id)) > 0;
}
bool FakeHub::repo_is_private(const std::string& type, const std::string& repo_id) const {
  std::lock_guard lock(state_->mutex);
  auto it = state_->repos.find(State::key(type, repo_id));
  return it != state_->repos.end() && it->second.is_private;
}
std::vector<std::string> FakeHub::commit_messages(const std::string& type, const std::string& repo_id) const {
  std::lock_guard lock(state_->mutex);
  auto it = state_->repos.find(State::key(type, repo_id));
  return it == state_->repos.end() ? std::vector<std::string>{} : it->second.history;
}

}  // namespace cotune::testing
