// Downloads against the loopback fake Hub: the cache layout huggingface_hub writes, revisions, resume after a
// cut connection, retries, parallel ranges, locks, offline mode and the messages of 401 / 403 / 404.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <chrono>
#include <thread>

#include "base/error.h"
#include "fake_hub.h"
#include "hub/client.h"
#include "hub/download.h"
#include "hub/hf_cache.h"
#include "hub/progress_bar.h"

namespace cotune::hub {
namespace {
namespace fs = std::filesystem;
using cotune::testing::FakeHub;
using cotune::testing::git_blob_sha1;
using cotune::testing::sha256_hex;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string pattern_bytes(size_t n, unsigned seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

class HubDownload : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "cotune-dl-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    weights_ = pattern_bytes(300000, 1);
    commit_ = hub_.commit("model", "org/tiny", "main",
                          {{"config.json", "{\"model_type\": \"qwen2\"}"},
                           {"tokenizer.json", "{\"version\": \"1.0\"}"},
                           {"model.safetensors", weights_},
                           {"README.md", "# tiny"},
                           {"sub/extra.txt", "extra"}});
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  HubSettings settings(std::optional<std::string> token = {}) {
    HubSettings s;
    s.endpoint = hub_.endpoint();
    s.cache_dir = root_ / "hub";
    s.token = token;
    s.token_source = token ? "$HF_TOKEN" : "";
    s.progress = false;
    s.retry.first_delay_s = 0.001;
    s.retry.sleep = [this](double secs) { sleeps_.push_back(secs); };
    return s;
  }

  static std::string error_of(const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected cotune::Error";
    return "";
  }

  FakeHub hub_;
  fs::path root_;
  std::string weights_, commit_;
  std::vector<double> sleeps_;
};

TEST_F(HubDownload, WritesHuggingfaceHubCacheLayout) {
  HubClient client(settings());
  DownloadOptions o;
  o.include = default_model_patterns();
  const DownloadResult r = download_snapshot(client, "org/tiny", RepoType::model, o);
  const fs::path repo = root_ / "hub" / "models--org--tiny";
  EXPECT_EQ(r.resolved.commit, commit_);
  EXPECT_EQ(r.resolved.path, repo / "snapshots" / commit_);
  EXPECT_EQ(read_file(repo / "refs" / "main"), commit_);  // no newline, as huggingface_hub writes it
  EXPECT_EQ(r.files_downloaded, 3);                       // README.md and sub/extra.txt are not model files

  const fs::path snap = repo / "snapshots" / commit_;
  EXPECT_EQ(fs::read_symlink(snap / "model.safetensors"), fs::path("../../blobs/" + sha256_hex(weights_)));
  EXPECT_EQ(fs::read_symlink(snap / "config.json"),
            fs::path("../../blobs/" + git_blob_sha1("{\"model_type\": \"qwen2\"}")));
  EXPECT_EQ(read_file(snap / "model.safetensors"), weights_);
  EXPECT_FALSE(fs::exists(snap / "README.md"));
  EXPECT_TRUE(fs::exists(root_ / "hub" / "CACHEDIR.TAG"));
  EXPECT_TRUE(fs::exists(root_ / "hub" / ".locks" / "models--org--tiny" / (sha256_hex(weights_) + ".lock")));
  const std::string tree = read_file(repo / "trees" / (commit_ + ".json"));
  EXPECT_NE(tree.find("\"format_version\": 1"), std::string::npos) << tree;
  EXPECT_NE(tree.find("\"lfs_sha256\": \"" + sha256_hex(weights_) + "\""), std::string::npos) << tree;
  for (auto it = fs::recursive_directory_iterator(repo); it != fs::recursive_directory_iterator(); ++it)
    EXPECT_EQ(it->path().string().find(".incomplete"), std::string::npos) << it->path();

  // The LFS file came from the storage host; a second run downloads nothing.
  bool storage_hit = false;
  for (const auto& q : hub_.requests()) storage_hit |= q.host == "storage" && q.path.starts_with("/lfs/");
  EXPECT_TRUE(storage_hit);
  hub_.clear_requests();
  EXPECT_EQ(download_snapshot(client, "org/tiny", RepoType::model, o).files_downloaded, 0);
  for (const auto& q : hub_.requests()) EXPECT_NE(q.host, "storage") << q.path;

  // --include adds files; the existing blobs are reused.
  o.include = {"*.md", "sub/"};
  EXPECT_EQ(download_snapshot(client, "org/tiny", RepoType::model, o).files_downloaded, 2);
  EXPECT_EQ(read_file(snap / "sub" / "extra.txt"), "extra");
  EXPECT_EQ(fs::read_symlink(snap / "sub" / "extra.txt"), fs::path("../../../blobs/" + git_blob_sha1("extra")));
}

TEST_F(HubDownload, TokenOnlyToTheHubNeverToStorage) {
  hub_.set_token("hf_secret_token_123");
  hub_.set_private("model", "org/tiny", true);
  HubClient client(settings("hf_secret_token_123"));
  download_snapshot(client, "org/tiny", RepoType::model, DownloadOptions{});
  for (const auto& q : hub_.requests()) {
    if (q.host == "hub") EXPECT_TRUE(q.authorized) << q.path;
    else EXPECT_FALSE(q.any_auth) << q.path;
  }
}

TEST_F(HubDownload, BranchesTagsAndCommits) {
  const std::string v2 = hub_.commit("model", "org/tiny", "dev", {{"config.json", "{\"v\": 2}"}});
  hub_.tag("model", "org/tiny", "v1.0", commit_);
  HubClient client(settings());
  DownloadOptions o;
  o.revision = "dev";
  EXPECT_EQ(download_snapshot(client, "org/tiny", RepoType::model, o).resolved.commit, v2);
  o.revision = "v1.0";
  o.include = {"config.json"};
  EXPECT_EQ(download_snapshot(client, "org/tiny", RepoType::model, o).resolved.commit, commit_);
  const fs::path repo = root_ / "hub" / "models--org--tiny";
  EXPECT_EQ(read_file(repo / "refs" / "dev"), v2);
  EXPECT_EQ(read_file(repo / "refs" / "v1.0"), commit_);
  o.revision = v2;  // a commit: no ref written, no revision call
  hub_.clear_requests();
  EXPECT_EQ(download_snapshot(client, "org/tiny", RepoType::model, o).resolved.commit, v2);
  for (const auto& q : hub_.requests()) EXPECT_EQ(q.path.find("/revision/"), std::string::npos) << q.path;
  EXPECT_FALSE(fs::exists(repo / "refs" / v2));
  // An unknown revision says so.
  o.revision = "nope";
  EXPECT_NE(error_of([&] { download_snapshot(client, "org/tiny", RepoType::model, o); }).find("no such revision"),
            std::string::npos);
}

TEST_F(HubDownload, ResumesAfterCutConnectionWithRange) {
  hub_.cut_after("/lfs/", 100000, 2);  // two cuts mid-file: the third attempt finishes it
  HubClient client(settings());
  DownloadOptions o;
  o.include = {"model.safetensors"};
  download_snapshot(client, "org/tiny", RepoType::model, o);
  EXPECT_EQ(read_file(root_ / "hub" / "models--org--tiny" / "snapshots" / commit_ / "model.safetensors"), weights_);
  std::vector<std::string> ranges;
  for (const auto& q : hub_.requests())
    if (q.host == "storage") ranges.push_back(q.range);
  ASSERT_EQ(ranges.size(), 3u);
  EXPECT_EQ(ranges[1], "bytes=100000-299999");
  EXPECT_EQ(ranges[2], "bytes=200000-299999");
}

TEST_F(HubDownload, AStalledTransferIsCutAndResumed) {
  hub_.stall_after("/lfs/", 50000, 3000);  // the server goes silent after 50,000 bytes
  HubClient client(settings());
  DownloadOptions o;
  o.include = {"model.safetensors"};
  o.stall_timeout_s = 1;
  const auto t0 = std::chrono::steady_clock::now();
  download_snapshot(client, "org/tiny", RepoType::model, o);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 2.9);  // gave up on the silent connection before the server woke up
  EXPECT_EQ(read_file(root_ / "hub" / "models--org--tiny" / "snapshots" / commit_ / "model.safetensors"), weights_);
  std::vector<std::string> ranges;
  for (const auto& q : hub_.requests())
    if (q.host == "storage") ranges.push_back(q.range);
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[1], "bytes=50000-299999");
}

TEST_F(HubDownload, ResumesAnIncompleteBlobLeftByAnotherRun) {
  const fs::path blobs = root_ / "hub" / "models--org--tiny" / "blobs";
  fs::create_directories(blobs);
  std::ofstream(blobs / (sha256_hex(weights_) + ".incomplete"), std::ios::binary) << weights_.substr(0, 123456);
  HubClient client(settings());
  DownloadOptions o;
  o.include = {"model.safetensors"};
  download_snapshot(client, "org/tiny", RepoType::model, o);
  EXPECT_EQ(read_file(blobs / sha256_hex(weights_)), weights_);
  for (const auto& q : hub_.requests())
    if (q.host == "storage") {
      EXPECT_EQ(q.range, "bytes=123456-299999");
    }
}

TEST_F(HubDownload, CorruptLfsBlobIsRejectedAndRemoved) {
  hub_.corrupt_next("/lfs/");
  HubClient client(settings());
  DownloadOptions o;
  o.include = {"model.safetensors"};
  const std::string m = error_of([&] { download_snapshot(client, "org/tiny", RepoType::model, o); });
  EXPECT_NE(m.find("does not match the Hub's " + sha256_hex(weights_)), std::string::npos) << m;
  EXPECT_NE(m.find("run again"), std::string::npos) << m;
  const fs::path blobs = root_ / "hub" / "models--org--tiny" / "blobs";
  EXPECT_FALSE(fs::exists(blobs / sha256_hex(weights_)));
  EXPECT_FALSE(fs::exists(blobs / (sha256_hex(weights_) + ".incomplete")));
  download_snapshot(client, "org/tiny", RepoType::model, o);  // the next run gets good bytes
  EXPECT_EQ(read_file(blobs / sha256_hex(weights_)), weights_);
}

TEST(HubProgress, LineHasBytesRateAndEta) {
  EXPECT_EQ(TransferProgress::format_line("org/x", 50 << 20, 200 << 20, 10.0),
            "org/x  50.0 MiB / 200.0 MiB (25%)  5.0 MiB/s  ETA 30s");
  EXPECT_EQ(TransferProgress::format_line("org/x", 0, 1000, 0.0), "org/x  0 B / 1000 B (0%)  0 B/s");
}

TEST_F(HubDownload, RetriesServerErrorsAndRateLimits) {
  hub_.fail_next("/revision/", 503, 2);
  hub_.fail_next("/tree/", 429, 1, /*retry_after_s*/ 7);
  hub_.fail_next("/lfs/", 502, 1);
  HubClient client(settings());
  download_snapshot(client, "org/tiny", RepoType::model, DownloadOptions{});
  ASSERT_GE(sleeps_.size(), 4u);
  EXPECT_DOUBLE_EQ(sleeps_[2], 7.0);  // Retry-After wins over the back-off
  EXPECT_EQ(read_file(root_ / "hub" / "models--org--tiny" / "snapshots" / commit_ / "model.safetensors"), weights_);

  hub_.fail_next("/revision/", 500, 100);
  HubSettings s = settings();
  s.retry.max_attempts = 3;
  HubClient failing(s);
  const std::string m = error_of([&] { download_snapshot(failing, "org/tiny", RepoType::model, DownloadOptions{}); });
  EXPECT_NE(m.find("answered 500 after 3 attempts"), std::string::npos) << m;
}

TEST_F(HubDownload, LargeFilesInParallelRangesAndPagedListing) {
  hub_.set_page_size(2);
  hub_.set_delay_ms(1);  // a slow server: every 16 KiB waits
  HubClient client(settings());
  DownloadOptions o;
  o.split_min_bytes = 100000;
  o.split_streams = 3;
  const DownloadResult r = download_snapshot(client, "org/tiny", RepoType::model, o);
  EXPECT_EQ(r.files.size(), 5u);  // all three pages of the listing
  EXPECT_EQ(read_file(r.resolved.path / "model.safetensors"), weights_);
  std::vector<std::string> ranges;
  for (const auto& q : hub_.requests())
    if (q.host == "storage") ranges.push_back(q.range);
  std::sort(ranges.begin(), ranges.end());
  EXPECT_EQ(ranges, (std::vector<std::string>{"bytes=0-99999", "bytes=100000-199999", "bytes=200000-299999"}));
}

TEST_F(HubDownload, ConcurrentDownloadsOfOneRepoShareTheCache) {
  hub_.set_delay_ms(1);
  std::vector<std::thread> threads;
  std::vector<std::string> errors(3);
  for (int k = 0; k < 3; ++k)
    threads.emplace_back([&, k] {
      try {
        HubClient client(settings());
        download_snapshot(client, "org/tiny", RepoType::model, DownloadOptions{});
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(k)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  EXPECT_EQ(read_file(root_ / "hub" / "models--org--tiny" / "snapshots" / commit_ / "model.safetensors"), weights_);
}

TEST_F(HubDownload, GatedPrivateAndMissingReposSayWhatToDo) {
  hub_.set_token("hf_secret_token_123");
  hub_.commit("model", "org/gated", "main", {{"config.json", "{}"}});
  hub_.set_gated("model", "org/gated", true);
  HubClient anonymous(settings());
  std::string m = error_of([&] { download_snapshot(anonymous, "org/gated", RepoType::model, DownloadOptions{}); });
  EXPECT_NE(m.find("is gated: ask for access at " + hub_.endpoint() + "/org/gated"), std::string::npos) << m;
  EXPECT_NE(m.find("HF_TOKEN"), std::string::npos) << m;

  HubClient wrong(settings("hf_wrong_token_456"));
  m = error_of([&] { download_snapshot(wrong, "org/gated", RepoType::model, DownloadOptions{}); });
  EXPECT_NE(m.find("is gated"), std::string::npos) << m;
  EXPECT_EQ(m.find("hf_wrong_token_456"), std::string::npos) << m;  // never the token itself

  hub_.set_private("model", "org/tiny", true);
  m = error_of([&] { download_snapshot(anonymous, "org/tiny", RepoType::model, DownloadOptions{}); });
  EXPECT_NE(m.find("needs authentication"), std::string::npos) << m;
  EXPECT_NE(m.find("huggingface-cli login"), std::string::npos) << m;

  m = error_of([&] { download_snapshot(anonymous, "org/absent", RepoType::dataset, DownloadOptions{}); });
  EXPECT_NE(m.find("org/absent"), std::string::npos) << m;
}

TEST_F(HubDownload, ResolveDownloadsWhenMissingUnlessOffline) {
  std::map<std::string, std::string> vars{{"HF_ENDPOINT", hub_.endpoint()}, {"HF_HOME", root_.string()}};
  ResolveOptions o;
  o.env = [&](const char* n) -> std::optional<std::string> {
    auto it = vars.find(n);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  vars["HF_HUB_OFFLINE"] = "1";
  const std::string m = error_of([&] { resolve("org/tiny", RepoType::model, o); });
  EXPECT_NE(m.find("HF_HUB_OFFLINE"), std::string::npos) << m;
  EXPECT_NE(m.find("cotune download org/tiny"), std::string::npos) << m;
  EXPECT_TRUE(hub_.requests().empty());

  vars.erase("HF_HUB_OFFLINE");
  const Resolved r = resolve("org/tiny", RepoType::model, o);
  EXPECT_EQ(r.commit, commit_);
  EXPECT_EQ(read_file(r.path / "config.json"), "{\"model_type\": \"qwen2\"}");
  // A snapshot another tool filled only partly (config.json alone) is completed when online.
  fs::remove(r.path / "model.safetensors");
  EXPECT_EQ(read_file(resolve("org/tiny", RepoType::model, o).path / "model.safetensors"), weights_);
  // Cached now: offline works.
  vars["HF_HUB_OFFLINE"] = "1";
  hub_.clear_requests();
  EXPECT_EQ(resolve("org/tiny", RepoType::model, o).path, r.path);
  EXPECT_TRUE(hub_.requests().empty());
}

TEST(HubSettingsTest, TokenOrderAndEndpoint) {
  std::string tmpl = (fs::temp_directory_path() / "cotune-tok-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const fs::path home = tmpl;
  std::ofstream(home / "token") << "hf_from_file\n";
  std::map<std::string, std::string> vars{{"HF_HOME", home.string()}, {"HF_ENDPOINT", "http://127.0.0.1:9/"}};
  auto env = [&](const char* n) -> std::optional<std::string> {
    auto it = vars.find(n);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  HubSettings s = HubSettings::from_env(env);
  EXPECT_EQ(s.endpoint, "http://127.0.0.1:9");
  EXPECT_EQ(*s.token, "hf_from_file");
  EXPECT_EQ(s.token_source, (home / "token").string());
  vars["HF_TOKEN"] = "hf_env";
  EXPECT_EQ(*HubSettings::from_env(env).token, "hf_env");
  EXPECT_EQ(*HubSettings::from_env(env, std::string("hf_flag")).token, "hf_flag");
  EXPECT_EQ(HubSettings::from_env(env, std::string("hf_flag")).token_source, "--token");
  vars["HF_HUB_OFFLINE"] = "true";
  EXPECT_TRUE(HubSettings::from_env(env).offline);
  fs::remove_all(home);
}

TEST(HubGlob, HuggingfaceHubRules) {
  EXPECT_TRUE(glob_match("*.safetensors", "model-00001-of-00002.safetensors"));
  EXPECT_TRUE(glob_match("*.json", "sub/dir/a.json"));  // '*' crosses '/', as fnmatch without FNM_PATHNAME
  EXPECT_TRUE(glob_match("data/", "data/train.parquet"));
  EXPECT_FALSE(glob_match("config.json", "generation_config.json"));
  EXPECT_TRUE(matches_any({}, "anything"));
}

}  // namespace
}  // namespace cotune::hub
