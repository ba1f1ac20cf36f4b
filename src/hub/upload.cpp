#include "hub/upload.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>

#include <simdjson.h>

#include "base/log.h"
#include "hub/download.h"
#include "hub/progress_bar.h"

namespace cotune::hub {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string hex(const unsigned char* d, unsigned n) {
  std::string s;
  for (unsigned i = 0; i < n; ++i) s += fmt::format("{:02x}", d[i]);
  return s;
}

// Digest of a prefix + the file's bytes (git's blob header, or none).
std::string digest_file(const EVP_MD* md, const std::string& prefix, const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("cannot read {}", path);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, md, nullptr);
  EVP_DigestUpdate(ctx, prefix.data(), prefix.size());
  std::vector<char> buf(size_t{1} << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) EVP_DigestUpdate(ctx, buf.data(), n);
  std::fclose(f);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx, out, &len);
  EVP_MD_CTX_free(ctx);
  return hex(out, len);
}

std::string read_prefix(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string s(n, '\0');
  in.read(s.data(), static_cast<std::streamsize>(n));
  s.resize(static_cast<size_t>(in.gcount()));
  return s;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read {}", path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct LocalFile {
  std::string path_in_repo;
  std::string local;      // a file, or "" when `bytes` holds the content
  std::string bytes;
  int64_t size = 0;
  std::string sha256, git_sha1;
  std::string mode;       // "lfs" | "regular" (from preupload)
  std::string content() const { return local.empty() ? bytes : read_all(local); }
};

// A scratch file for in-memory contents that go through LFS (rare: a huge README).
std::string repo_url(const HubSettings& s, RepoType t, const std::string& id) {
  return s.endpoint + "/" + repo_url_prefix(t) + id;
}

}  // namespace

std::string git_blob_sha1_file(const std::string& path) {
  return digest_file(EVP_sha1(), "blob " + std::to_string(fs::file_size(path)) + std::string(1, '\0'), path);
}
std::string sha256_file_hex(const std::string& path) { return digest_file(EVP_sha256(), "", path); }

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

PushResult push_folder(HubClient& hub, const std::string& dir, const std::string& repo_id, const PushOptions& o) {
  const HubSettings& s = hub.settings();
  if (!s.token)
    fail("pushing to {} needs a write token: set HF_TOKEN, run `huggingface-cli login` (it writes $HF_HOME/token), "
         "or pass --token",
         repo_id);
  const auto slash = repo_id.find('/');
  if (slash == std::string::npos || repo_id.find('/', slash + 1) != std::string::npos)
    fail("push target \"{}\" must be org/name (or user/name)", repo_id);
  const char* word = repo_type_word(o.type);
  PushResult result;
  result.repo_url = repo_url(s, o.type, repo_id);

  // ---- local files ----------------------------------------------------------------------------------------
  std::map<std::string, LocalFile> files;
  if (!dir.empty()) {
    if (!fs::is_directory(dir)) fail("push: {} is not a folder", dir);
    for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
      if (!it->is_regular_file()) continue;
      const std::string rel = it->path().lexically_relative(dir).generic_string();
      if (matches_any(o.exclude, rel) && !o.exclude.empty()) continue;
      files[rel] = LocalFile{rel, it->path().string(), "", 0, "", "", ""};
    }
  }
  for (const auto& [rel, local] : o.extra_files) {
    if (!fs::is_regular_file(local)) fail("push: {} (for {}) is not a file", local, rel);
    files[rel] = LocalFile{rel, local, "", 0, "", "", ""};
  }
  for (const auto& [rel, bytes] : o.contents) files[rel] = LocalFile{rel, "", bytes, 0, "", "", ""};
  if (files.empty()) fail("push: nothing to upload{}", dir.empty() ? "" : " in " + dir);
  for (auto& [rel, f] : files) {
    if (f.local.empty()) {
      f.size = static_cast<int64_t>(f.bytes.size());
      f.git_sha1 = "";  // computed below from bytes
      EVP_MD_CTX* ctx = EVP_MD_CTX_new();
      unsigned char out[EVP_MAX_MD_SIZE];
      unsigned len = 0;
      const std::string head = "blob " + std::to_string(f.bytes.size()) + std::string(1, '\0');
      EVP_DigestInit_ex(ctx, EVP_sha1(), nullptr);
      EVP_DigestUpdate(ctx, head.data(), head.size());
      EVP_DigestUpdate(ctx, f.bytes.data(), f.bytes.size());
      EVP_DigestFinal_ex(ctx, out, &len);
      f.git_sha1 = hex(out, len);
      EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
      EVP_DigestUpdate(ctx, f.bytes.data(), f.bytes.size());
      EVP_DigestFinal_ex(ctx, out, &len);
      f.sha256 = hex(out, len);
      EVP_MD_CTX_free(ctx);
    } else {
      f.size = static_cast<int64_t>(fs::file_size(f.local));
      f.sha256 = sha256_file_hex(f.local);
      f.git_sha1 = git_blob_sha1_file(f.local);
    }
  }

  // ---- 1. the repo, 2. the branch -----------------------------------------------------------------------
  {
    HttpRequest rq;
    rq.method = "POST";
    rq.url = s.endpoint + "/api/repos/create";
    rq.headers.emplace_back("Content-Type", "application/json");
    json body{{"name", repo_id.substr(slash + 1)}, {"organization", repo_id.substr(0, slash)}, {"private", o.private_repo}};
    if (o.type != RepoType::model) body["type"] = word;
    rq.body = body.dump();
    const HttpResponse r = hub.send(rq);
    if (r.status == 409) {
      log::debug("{} {} exists", word, repo_id);
    } else if (r.status >= 200 && r.status < 300) {
      result.created_repo = true;
      log::info("created {} {}{}", word, repo_id, o.private_repo ? " (private)" : "");
    } else {
      throw Error(hub.http_error_message(r, fmt::format("creating {} {}", word, repo_id), repo_id, o.type));
    }
  }
  const std::string api = fmt::format("{}/api/{}/{}", s.endpoint, api_prefix(o.type), repo_id);
  if (o.revision != "main") {
    HttpRequest rq;
    rq.method = "POST";
    rq.url = api + "/branch/" + url_encode(o.revision);
    const HttpResponse r = hub.send(rq);
    if (r.status != 409 && (r.status < 200 || r.status >= 300))
      throw Error(hub.http_error_message(r, fmt::format("creating branch {} of {}", o.revision, repo_id), repo_id, o.type));
  }

  // ---- 3. preupload: modes and what changed ------------------------------------------------------------
  std::vector<LocalFile*> order;
  for (auto& [rel, f] : files) order.push_back(&f);
  std::vector<LocalFile*> changed;
  for (size_t start = 0; start < order.size(); start += 256) {
    json list = json::array();
    for (size_t i = start; i < std::min(order.size(), start + 256); ++i) {
      const LocalFile& f = *order[i];
      const std::string sample = f.local.empty() ? f.bytes.substr(0, 512) : read_prefix(f.local, 512);
      list.push_back({{"path", f.path_in_repo}, {"sample", base64_encode(sample)}, {"size", f.size}});
    }
    HttpRequest rq;
    rq.method = "POST";
    rq.url = api + "/preupload/" + url_encode(o.revision);
    rq.headers.emplace_back("Content-Type", "application/json");
    rq.body = json{{"files", list}}.dump();
    const HttpResponse r = hub.call(rq, fmt::format("preparing the upload to {} {}", word, repo_id), repo_id, o.type);
    const json answer = json::parse(r.body, nullptr, false);
    if (!answer.is_object() || !answer.contains("files") || !answer["files"].is_array())
      fail("preupload of {}: the Hub's answer has no \"files\" list", repo_id);
    for (const auto& e : answer["files"]) {
      const std::string path = e.value("path", "");
      auto it = files.find(path);
      if (it == files.end()) continue;
      LocalFile& f = it->second;
      f.mode = e.value("uploadMode", "regular");
      if (e.value("shouldIgnore", false)) continue;
      const std::string remote = e.contains("oid") && e["oid"].is_string() ? e["oid"].get<std::string>() : "";
      const std::string mine = f.mode == "lfs" ? f.sha256 : f.git_sha1;
      if (!remote.empty() && remote == mine) {
        ++result.unchanged;
        continue;
      }
      changed.push_back(&f);
    }
  }
  if (changed.empty()) {
    log::info("{} {}: all {} files are already up to date; nothing committed", word, repo_id, result.unchanged);
    return result;
  }

  // ---- 4. LFS objects ------------------------------------------------------------------------------------
  std::vector<LocalFile*> lfs;
  for (auto* f : changed)
    if (f->mode == "lfs") lfs.push_back(f);
  if (!lfs.empty()) {
    int64_t total = 0;
    json objects = json::array();
    std::map<std::string, LocalFile*> by_oid;
    for (auto* f : lfs) {
      if (by_oid.count(f->sha256)) continue;
      by_oid[f->sha256] = f;
      objects.push_back({{"oid", f->sha256}, {"size", f->size}});
      total += f->size;
    }
    HttpRequest rq;
    rq.method = "POST";
    rq.url = fmt::format("{}/{}{}.git/info/lfs/objects/batch", s.endpoint, repo_url_prefix(o.type), repo_id);
    rq.headers.emplace_back("Accept", "application/vnd.git-lfs+json");
    rq.headers.emplace_back("Content-Type", "application/vnd.git-lfs+json");
    rq.body = json{{"operation", "upload"}, {"transfers", {"basic", "multipart"}}, {"objects", objects},
                   {"hash_algo", "sha256"}, {"ref", {{"name", o.revision}}}}
                  .dump();
    const HttpResponse r = hub.call(rq, fmt::format("LFS batch for {} {}", word, repo_id), repo_id, o.type);
    const json batch = json::parse(r.body, nullptr, false);
    if (!batch.is_object() || !batch.contains("objects")) fail("LFS batch of {}: the answer has no \"objects\"", repo_id);
    TransferProgress progress("uploading " + repo_id, total, s.progress);
    for (const auto& obj : batch["objects"]) {
      const std::string oid = obj.value("oid", "");
      if (obj.contains("error"))
        fail("LFS upload of {} to {} refused: {}", by_oid.count(oid) ? by_oid[oid]->path_in_repo : oid, repo_id,
             obj["error"].dump());
      auto fit = by_oid.find(oid);
      if (fit == by_oid.end()) continue;
      LocalFile& f = *fit->second;
      if (!obj.contains("actions") || !obj["actions"].contains("upload")) {  // already on the storage
        progress.add(f.size);
        continue;
      }
      std::optional<std::string> scratch;  // in-memory content goes through a temporary file
      std::string local = f.local;
      if (local.empty()) {
        scratch = (fs::temp_directory_path() / ("cotune-upload-" + f.sha256)).string();
        std::ofstream(*scratch, std::ios::binary) << f.bytes;
        local = *scratch;
      }
      const json& up = obj["actions"]["upload"];
      const json header = up.value("header", json::object());
      const std::string href = up.value("href", "");
      auto put = [&](const std::string& url, int64_t offset, int64_t length, const json& headers) {
        HttpRequest p;
        p.method = "PUT";
        p.url = url;
        p.upload_file = local;
        p.upload_offset = offset;
        p.upload_length = length;
        for (auto it = headers.begin(); it != headers.end(); ++it)
          if (it.value().is_string()) p.headers.emplace_back(it.key(), it.value().get<std::string>());
        HttpResponse pr = hub.send(p);  // pre-signed storage URLs get no token (add_auth checks the origin)
        if (pr.status < 200 || pr.status >= 300)
          fail("uploading {} to {}: the storage answered HTTP {}", f.path_in_repo, repo_id, pr.status);
        progress.add(length);
        return pr;
      };
      if (header.contains("chunk_size")) {
        const int64_t chunk = std::stoll(header["chunk_size"].is_string() ? header["chunk_size"].get<std::string>()
                                                                         : header["chunk_size"].dump());
        std::vector<std::pair<int, std::string>> urls;
        for (auto it = header.begin(); it != header.end(); ++it)
          if (!it.key().empty() && std::all_of(it.key().begin(), it.key().end(), ::isdigit))
            urls.emplace_back(std::stoi(it.key()), it.value().get<std::string>());
        std::sort(urls.begin(), urls.end());
        if (chunk <= 0 || static_cast<int64_t>(urls.size()) != (f.size + chunk - 1) / chunk)
          fail("LFS multipart upload of {}: {} part URLs for {} bytes in chunks of {}", f.path_in_repo, urls.size(),
               f.size, chunk);
        json parts = json::array();
        for (size_t i = 0; i < urls.size(); ++i) {
          const int64_t off = static_cast<int64_t>(i) * chunk;
          const HttpResponse pr = put(urls[i].second, off, std::min(chunk, f.size - off), json::object());
          const std::string etag = pr.header("etag");
          if (etag.empty()) fail("LFS multipart upload of {}: part {} came back without an ETag", f.path_in_repo, i + 1);
          parts.push_back({{"partNumber", i + 1}, {"etag", etag}});
        }
        HttpRequest done;
        done.method = "POST";
        done.url = href;
        done.headers.emplace_back("Accept", "application/vnd.git-lfs+json");
        done.headers.emplace_back("Content-Type", "application/vnd.git-lfs+json");
        done.body = json{{"oid", oid}, {"parts", parts}}.dump();
        hub.call(done, fmt::format("completing the multipart upload of {}", f.path_in_repo), repo_id, o.type);
      } else {
        put(href, 0, f.size, header);
      }
      if (obj["actions"].contains("verify")) {
        HttpRequest v;
        v.method = "POST";
        v.url = obj["actions"]["verify"].value("href", "");
        v.headers.emplace_back("Content-Type", "application/vnd.git-lfs+json");
        v.body = json{{"oid", oid}, {"size", f.size}}.dump();
        hub.call(v, fmt::format("verifying the upload of {}", f.path_in_repo), repo_id, o.type);
      }
      if (scratch) fs::remove(*scratch);
      ++result.lfs_uploaded;
    }
    progress.finish();
  }

  // ---- 5. the commit ---------------------------------------------------------------------------------------
  std::string ndjson = json{{"key", "header"}, {"value", {{"summary", o.commit_message}, {"description", o.commit_description}}}}.dump() + "\n";
  for (auto* f : changed) {
    if (f->mode == "lfs") {
      ndjson += json{{"key", "lfsFile"},
                     {"value", {{"path", f->path_in_repo}, {"algo", "sha256"}, {"oid", f->sha256}, {"size", f->size}}}}
                    .dump() + "\n";
    } else {
      ndjson += json{{"key", "file"},
                     {"value", {{"content", base64_encode(f->content())}, {"path", f->path_in_repo}, {"encoding", "base64"}}}}
                    .dump() + "\n";
    }
  }
  HttpRequest rq;
  rq.method = "POST";
  rq.url = api + "/commit/" + url_encode(o.revision);
  rq.headers.emplace_back("Content-Type", "application/x-ndjson");
  rq.body = std::move(ndjson);
  const HttpResponse r = hub.call(rq, fmt::format("committing to {} {}", word, repo_id), repo_id, o.type);
  const json answer = json::parse(r.body, nullptr, false);
  result.commit = answer.is_object() ? answer.value("commitOid", "") : "";
  result.commit_url = answer.is_object() ? answer.value("commitUrl", "") : "";
  result.files_committed = static_cast<int>(changed.size());
  return result;
}

}  // namespace cotune::hub
