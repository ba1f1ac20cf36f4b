#include "hub/download.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include <openssl/evp.h>

#include "base/log.h"
#include "hub/progress_bar.h"

namespace cotune::hub {
namespace fs = std::filesystem;

namespace {

constexpr const char* kCacheDirTag =
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by huggingface_hub.\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/\n";

// flock(2) on <cache>/.locks/<repo folder>/<etag>.lock: two processes never write one blob at once.
class BlobLock {
 public:
  explicit BlobLock(const fs::path& path) {
    fs::create_directories(path.parent_path());
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot open lock file {}: {}", path.string(), std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0)
      if (errno != EINTR) fail("cannot lock {}: {}", path.string(), std::strerror(errno));
  }
  ~BlobLock() {
    if (fd_ >= 0) {
      ::flock(fd_, LOCK_UN);
      ::close(fd_);
    }
  }
  BlobLock(const BlobLock&) = delete;
  BlobLock& operator=(const BlobLock&) = delete;

 private:
  int fd_ = -1;
};

int64_t file_size_or_zero(const fs::path& p) {
  std::error_code ec;
  const auto s = fs::file_size(p, ec);
  return ec ? 0 : static_cast<int64_t>(s);
}

std::string sha256_file(const fs::path& p) {
  std::FILE* f = std::fopen(p.c_str(), "rb");
  if (!f) fail("cannot read {} to check its SHA-256", p.string());
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(size_t{1} << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) EVP_DigestUpdate(ctx, buf.data(), n);
  std::fclose(f);
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  std::string hex;
  for (unsigned i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

bool is_sha256_hex(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

void write_text_atomic(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::random_device rd;
  const fs::path tmp = p.parent_path() / fmt::format("{}.{:08x}.tmp", p.filename().string(), rd());
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    if (!out) fail("cannot write {}", tmp.string());
  }
  fs::rename(tmp, p);
}

struct FetchContext {
  const HubClient* hub;  // for add_auth (thread-safe: reads settings only)
  const RetryPolicy* retry;
  TransferProgress* progress;
  int max_attempts;
  std::string what;      // "<path> of model org/name" for messages
  long stall_timeout_s = 30;
  std::string repo_id;
  RepoType type = RepoType::model;
};

// Downloads bytes [begin, end) of `url` (end = -1: to the end) into `part`, appending to what it already has.
// Redirects are followed by hand, so the token goes only to the Hub's own origin. Resumes after cut connections
// and retryable statuses (back-off, Retry-After) up to max_attempts.
void fetch_range(const FetchContext& cx, const std::string& url, const fs::path& part, int64_t begin, int64_t end) {
  HttpClient http;
  int failures = 0;
  std::string last_problem;
  while (true) {
    const int64_t have = file_size_or_zero(part);
    if (end >= 0 && begin + have >= end) return;
    std::FILE* out = std::fopen(part.c_str(), "ab");
    if (!out) fail("cannot write {}: {}", part.string(), std::strerror(errno));
    HttpRequest rq;
    rq.url = url;
    rq.stall_timeout_s = cx.stall_timeout_s;
    const int64_t from = begin + have;
    if (from > 0 || end >= 0) rq.range_start = from;
    if (end >= 0) rq.range_end = end - 1;
    bool restart = false;  // the server ignored the Range: start the part over
    rq.on_body = [&](const HttpResponse& head, std::string_view chunk) {
      if (head.status == 200 && from > 0) {
        restart = true;
        return false;
      }
      if (std::fwrite(chunk.data(), 1, chunk.size(), out) != chunk.size()) return false;
      cx.progress->add(static_cast<int64_t>(chunk.size()));
      return true;
    };
    HttpResponse r;
    bool transport_failed = false;
    try {
      for (int hops = 0;; ++hops) {
        HttpRequest hop = rq;
        cx.hub->add_auth(hop);
        r = http.send(hop);
        if (!r.is_redirect()) break;
        const std::string loc = r.header("location");
        if (loc.empty() || hops >= 10) fail("{}: redirect without Location (or more than 10) at {}", cx.what, rq.url);
        rq.url = join_url(rq.url, loc);
      }
    } catch (const TransportError& e) {
      transport_failed = !restart;
      last_problem = e.what();
    }
    std::fclose(out);
    if (restart) {
      fs::resize_file(part, 0);
      continue;
    }
    if (!transport_failed) {
      if (r.status == 200 || r.status == 206) {
        if (end < 0) return;   // whole file read to its end
        continue;              // checks the length at the loop's top (a short body resumes)
      }
      if (r.status == 416) {   // nothing left in that range
        if (end < 0) return;
        fs::resize_file(part, 0);
      } else if (!is_retryable_status(r.status)) {
        throw Error(cx.hub->http_error_message(r, "downloading " + cx.what, cx.repo_id, cx.type));
      }
      last_problem = fmt::format("HTTP {}", r.status);
    }
    if (++failures >= cx.max_attempts)
      fail("downloading {}: gave up after {} attempts ({}); run the same command again to resume from the {} bytes "
           "kept in {}",
           cx.what, failures, last_problem, file_size_or_zero(part), part.string());
    log::debug("downloading {}: {} (attempt {}), resuming", cx.what, last_problem, failures);
    const double wait = retry_delay_s(*cx.retry, failures - 1, transport_failed ? nullptr : &r);
    if (cx.retry->sleep) cx.retry->sleep(wait);
    else std::this_thread::sleep_for(std::chrono::duration<double>(wait));
  }
}

struct Job {
  RepoFileInfo file;
};

}  // namespace

std::vector<std::string> default_model_patterns() {
  return {"*.safetensors",       "*.safetensors.index.json", "config.json",        "generation_config.json",
          "tokenizer.json",      "tokenizer_config.json",    "special_tokens_map.json", "added_tokens.json",
          "vocab.json",          "merges.txt",               "tokenizer.model",    "chat_template.jinja",
          "chat_template.json",  "adapter_config.json"};
}

bool glob_match(const std::string& pattern, const std::string& path) {
  std::string p = pattern;
  if (p.ends_with('/')) p += '*';  // "folder/" means everything under it (huggingface_hub's rule)
  return ::fnmatch(p.c_str(), path.c_str(), 0) == 0;
}

bool matches_any(const std::vector<std::string>& patterns, const std::string& path) {
  return patterns.empty() ||
         std::any_of(patterns.begin(), patterns.end(), [&](const std::string& p) { return glob_match(p, path); });
}

void write_ref(const fs::path& repo_dir, const std::string& revision, const std::string& commit) {
  if (revision == commit) return;
  const fs::path ref = repo_dir / "refs" / revision;
  std::ifstream in(ref);
  std::string current((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (current != commit) write_text_atomic(ref, commit);
}

void write_tree_cache(const fs::path& repo_dir, const std::string& commit, const std::vector<RepoFileInfo>& files) {
  std::vector<const RepoFileInfo*> sorted;
  for (const auto& f : files) sorted.push_back(&f);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->path < b->path; });
  nlohmann::ordered_json doc;
  doc["format_version"] = 1;
  doc["files"] = nlohmann::ordered_json::object();
  for (const auto* f : sorted) {
    nlohmann::ordered_json e;
    e["size"] = f->size;
    e["blob_id"] = f->blob_id;
    if (f->is_lfs()) {
      e["lfs_sha256"] = f->lfs_sha256;
      e["lfs_size"] = f->size;
    }
    doc["files"][f->path] = e;
  }
  write_text_atomic(repo_dir / "trees" / (commit + ".json"), doc.dump(1, ' ', true));
}

DownloadResult download_files(HubClient& hub, const std::string& repo_id, RepoType type, const std::string& revision,
                              const std::string& commit, const std::vector<RepoFileInfo>& files,
                              const DownloadOptions& o) {
  const fs::path cache = fs::absolute(hub.settings().cache_dir);
  const std::string folder = cache_folder_name(repo_id, type);
  const fs::path repo_dir = cache / folder;
  const fs::path snapshot = repo_dir / "snapshots" / commit;
  fs::create_directories(repo_dir);
  if (!fs::exists(cache / "CACHEDIR.TAG")) write_text_atomic(cache / "CACHEDIR.TAG", kCacheDirTag);
  write_ref(repo_dir, revision, commit);

  std::vector<RepoFileInfo> todo;
  int64_t total = 0;
  for (const auto& f : files) {
    std::error_code ec;
    if (fs::exists(snapshot / f.path, ec)) continue;
    todo.push_back(f);
    total += f.size;
  }
  DownloadResult result;
  result.files = files;
  result.resolved.path = snapshot;
  result.resolved.from_cache = true;
  result.resolved.repo_id = repo_id;
  result.resolved.revision = revision;
  result.resolved.commit = commit;
  if (todo.empty()) return result;

  TransferProgress progress(repo_id, total, hub.settings().progress);
  std::atomic<size_t> next{0};
  std::atomic<int64_t> bytes{0};
  std::atomic<int> count{0};
  std::mutex error_mutex;
  std::string first_error;

  auto worker = [&] {
    HubClient client(hub.settings());
    for (size_t i = next++; i < todo.size(); i = next++) {
      {
        std::lock_guard lock(error_mutex);
        if (!first_error.empty()) return;
      }
      const RepoFileInfo& f = todo[i];
      try {
        const std::string what = fmt::format("{} of {} {}", f.path, repo_type_word(type), repo_id);
        const FileMetadata meta = client.file_metadata(repo_id, type, commit, f.path);
        if (!meta.commit.empty() && meta.commit != commit)
          log::warn("{}: the Hub served commit {} for a request at {}", what, meta.commit, commit);
        const std::string etag = meta.etag;
        if (etag.find('/') != std::string::npos || etag.find("..") != std::string::npos)
          fail("{}: the Hub sent an ETag that is not a file name", what);
        const int64_t size = meta.size >= 0 ? meta.size : f.size;
        const fs::path blob = repo_dir / "blobs" / etag;
        const fs::path pointer = snapshot / f.path;
        fs::create_directories(blob.parent_path());
        fs::create_directories(pointer.parent_path());
        {
          BlobLock lock(cache / ".locks" / folder / (etag + ".lock"));
          if (!fs::exists(blob)) {
            const fs::path incomplete = blob.string() + ".incomplete";
            FetchContext cx{&client, &hub.settings().retry, &progress, o.max_attempts_per_file, what, o.stall_timeout_s,
                            repo_id, type};
            const int64_t already = file_size_or_zero(incomplete);
            progress.add(already);
            if (size >= o.split_min_bytes && o.split_streams > 1 && already == 0) {
              // Ranges in parallel, each into its own part file (each resumable), then joined.
              const int n = o.split_streams;
              const int64_t step = (size + n - 1) / n;
              std::vector<fs::path> parts;
              std::vector<std::thread> threads;
              std::vector<std::string> errors(static_cast<size_t>(n));
              for (int k = 0; k < n; ++k) {
                parts.push_back(blob.string() + fmt::format(".incomplete.part{}", k));
                progress.add(file_size_or_zero(parts.back()));
              }
              for (int k = 0; k < n; ++k) {  // (parts is complete before any thread reads it)
                const int64_t b = k * step, e = std::min(size, (k + 1) * step);
                threads.emplace_back([&, k, b, e] {
                  try {
                    fetch_range(cx, meta.location, parts[static_cast<size_t>(k)], b, e);
                  } catch (const std::exception& ex) {
                    errors[static_cast<size_t>(k)] = ex.what();
                  }
                });
              }
              for (auto& t : threads) t.join();
              for (const auto& e : errors)
                if (!e.empty()) throw Error(e);
              std::ofstream joined(incomplete, std::ios::binary | std::ios::trunc);
              for (const auto& p : parts) {
                std::ifstream in(p, std::ios::binary);
                joined << in.rdbuf();
              }
              joined.close();
              if (!joined) fail("cannot write {}", incomplete.string());
              for (const auto& p : parts) fs::remove(p);
            } else {
              fetch_range(cx, meta.location, incomplete, 0, size >= 0 ? size : -1);
            }
            const int64_t got = file_size_or_zero(incomplete);
            if (size >= 0 && got != size) {
              fs::remove(incomplete);
              fail("{}: received {} bytes, the Hub announced {}; the partial file was removed, run again", what, got, size);
            }
            if (is_sha256_hex(etag)) {
              const std::string sha = sha256_file(incomplete);
              if (sha != etag) {
                fs::remove(incomplete);
                fail("{}: SHA-256 {} does not match the Hub's {}; the corrupt download was removed, run again", what,
                     sha, etag);
              }
            }
            fs::rename(incomplete, blob);
            bytes += got;
            ++count;
          }
          std::error_code ec;
          if (!fs::exists(fs::symlink_status(pointer, ec))) {
            fs::create_symlink(blob.lexically_relative(pointer.parent_path()), pointer);
          }
        }
      } catch (const std::exception& e) {
        std::lock_guard lock(error_mutex);
        if (first_error.empty()) first_error = e.what();
        return;
      }
    }
  };
  const int n = std::max(1, std::min<int>(o.parallel_files, static_cast<int>(todo.size())));
  std::vector<std::thread> threads;
  for (int k = 0; k < n; ++k) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  progress.finish();
  if (!first_error.empty()) throw Error(first_error);
  result.bytes_downloaded = bytes;
  result.files_downloaded = count;
  return result;
}

DownloadResult download_snapshot(HubClient& hub, const std::string& repo_id, RepoType type, const DownloadOptions& o) {
  const std::string commit = is_commit_hash(o.revision) ? o.revision : hub.resolve_commit(repo_id, type, o.revision);
  const std::vector<RepoFileInfo> all = hub.list_files(repo_id, type, commit);
  const fs::path repo_dir = fs::absolute(hub.settings().cache_dir) / cache_folder_name(repo_id, type);
  std::vector<RepoFileInfo> wanted;
  for (const auto& f : all)
    if (matches_any(o.include, f.path)) wanted.push_back(f);
  if (wanted.empty())
    fail("{} {} at {} has no file matching {} (files: {})", repo_type_word(type), repo_id, o.revision,
         fmt::join(o.include, ", "), all.size());
  fs::create_directories(repo_dir);
  write_tree_cache(repo_dir, commit, all);
  DownloadResult r = download_files(hub, repo_id, type, o.revision, commit, wanted, o);
  fs::create_directories(r.resolved.path);
  r.files = all;
  return r;
}

}  // namespace cotune::hub
