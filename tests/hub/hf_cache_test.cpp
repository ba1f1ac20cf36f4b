#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "base/error.h"
#include "hub/hf_cache.h"

namespace cotune::hub {
namespace {
namespace fs = std::filesystem;

const std::string kCommitA = "0123456789abcdef0123456789abcdef01234567";
const std::string kCommitB = "fedcba9876543210fedcba9876543210fedcba98";

// A fake Hugging Face cache laid out as huggingface_hub writes it: files under snapshots/<commit>/ are
// relative symlinks to blobs/<hash>; refs/<branch> holds the commit.
class FakeCache : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "cotune-hub-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    cache_ = root_ / "hub";
    add_snapshot("models--org--model", kCommitA, {{"config.json", "{\"a\":1}"}, {"tokenizer.json", "{}"}});
    add_snapshot("models--org--model", kCommitB, {{"config.json", "{\"b\":2}"}});
    write(cache_ / "models--org--model" / "refs" / "main", kCommitA + "\n");  // HF writes no newline; accept one
    write(cache_ / "models--org--model" / "refs" / "v2", kCommitB);
    write(cache_ / "models--org--model" / "refs" / "pr" / "1", kCommitB);
    add_snapshot("datasets--org--data", kCommitB, {{"data/train.json", "[]"}});
    write(cache_ / "datasets--org--data" / "refs" / "main", kCommitB);
    add_snapshot("models--gpt2", kCommitA, {{"config.json", "{}"}});
    write(cache_ / "models--gpt2" / "refs" / "main", kCommitA);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  static void write(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }

  void add_snapshot(const std::string& folder, const std::string& commit, const std::map<std::string, std::string>& files) {
    const fs::path repo = cache_ / folder;
    for (const auto& [name, text] : files) {
      const std::string blob = std::to_string(std::hash<std::string>{}(folder + commit + name));
      write(repo / "blobs" / blob, text);
      const fs::path link = repo / "snapshots" / commit / name;
      fs::create_directories(link.parent_path());
      fs::create_symlink(fs::relative(repo / "blobs" / blob, link.parent_path()), link);
    }
  }

  ResolveOptions opts() const {
    ResolveOptions o;
    o.cache_dir = cache_;
    o.download = false;  // the cache alone (download_test.cpp covers the Hub)
    return o;
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

  fs::path root_, cache_;
};

TEST_F(FakeCache, CacheDirFromEnvironment) {
  auto env_of = [](std::map<std::string, std::string> m) -> GetEnv {
    return [m](const char* name) -> std::optional<std::string> {
      auto it = m.find(name);
      if (it == m.end()) return std::nullopt;
      return it->second;
    };
  };
  EXPECT_EQ(hf_cache_dir(env_of({{"HF_HUB_CACHE", "/a"}, {"HF_HOME", "/b"}, {"HOME", "/h"}})), fs::path("/a"));
  EXPECT_EQ(hf_cache_dir(env_of({{"HUGGINGFACE_HUB_CACHE", "/old"}, {"HF_HOME", "/b"}})), fs::path("/old"));
  EXPECT_EQ(hf_cache_dir(env_of({{"HF_HOME", "/b"}, {"HOME", "/h"}})), fs::path("/b/hub"));
  EXPECT_EQ(hf_cache_dir(env_of({{"XDG_CACHE_HOME", "/x"}, {"HOME", "/h"}})), fs::path("/x/huggingface/hub"));
  EXPECT_EQ(hf_cache_dir(env_of({{"HOME", "/h"}})), fs::path("/h/.cache/huggingface/hub"));
  EXPECT_EQ(hf_cache_dir(env_of({{"HF_HOME", "~/hf"}, {"HOME", "/h"}})), fs::path("/h/hf/hub"));

  // The environment, not just an explicit folder, drives resolve().
  ResolveOptions o;
  o.download = false;
  o.env = env_of({{"HF_HOME", root_.string()}});
  EXPECT_EQ(resolve("org/model", RepoType::model, o).commit, kCommitA);
}

TEST_F(FakeCache, FolderNames) {
  EXPECT_EQ(cache_folder_name("org/name", RepoType::model), "models--org--name");
  EXPECT_EQ(cache_folder_name("org/name", RepoType::dataset), "datasets--org--name");
  EXPECT_EQ(cache_folder_name("gpt2", RepoType::model), "models--gpt2");
}

TEST_F(FakeCache, MainRef) {
  const Resolved r = resolve("org/model", RepoType::model, opts());
  EXPECT_TRUE(r.from_cache);
  EXPECT_EQ(r.repo_id, "org/model");
  EXPECT_EQ(r.revision, "main");
  EXPECT_EQ(r.commit, kCommitA);
  EXPECT_EQ(r.path, cache_ / "models--org--model" / "snapshots" / kCommitA);
  std::ifstream in(r.path / "config.json");  // through the symlink into blobs/
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "{\"a\":1}");
}

TEST_F(FakeCache, BranchTagCommitAndNestedRef) {
  EXPECT_EQ(resolve("org/model@v2", RepoType::model, opts()).commit, kCommitB);
  EXPECT_EQ(resolve("org/model@pr/1", RepoType::model, opts()).commit, kCommitB);
  const Resolved r = resolve("org/model@" + kCommitB, RepoType::model, opts());
  EXPECT_EQ(r.commit, kCommitB);
  EXPECT_EQ(r.revision, kCommitB);
  EXPECT_EQ(r.path.filename(), kCommitB);
}

TEST_F(FakeCache, NameWithoutOrgAndDataset) {
  EXPECT_EQ(resolve("gpt2", RepoType::model, opts()).commit, kCommitA);
  const Resolved d = resolve("org/data", RepoType::dataset, opts());
  EXPECT_EQ(d.path, cache_ / "datasets--org--data" / "snapshots" / kCommitB);
  EXPECT_TRUE(fs::exists(d.path / "data" / "train.json"));
}

TEST_F(FakeCache, LocalPathReturnedAsIs) {
  const fs::path local = root_ / "my-model";
  fs::create_directories(local);
  const Resolved r = resolve(local.string(), RepoType::model, opts());
  EXPECT_FALSE(r.from_cache);
  EXPECT_EQ(r.path, local);
  EXPECT_TRUE(r.commit.empty());

  ResolveOptions o = opts();
  o.env = [this](const char* n) -> std::optional<std::string> {
    if (std::string(n) == "HOME") return root_.string();
    return std::nullopt;
  };
  EXPECT_EQ(resolve("~/my-model", RepoType::model, o).path, local);

  const std::string m = error_of([&] { resolve((root_ / "nope").string(), RepoType::model, opts()); });
  EXPECT_NE(m.find("does not exist"), std::string::npos) << m;
}

TEST_F(FakeCache, MissingRepoNamesSearchedFolderAndDownloadCommand) {
  const std::string m = error_of([&] { resolve("org/absent", RepoType::model, opts()); });
  EXPECT_NE(m.find("org/absent"), std::string::npos) << m;
  EXPECT_NE(m.find((cache_ / "models--org--absent").string()), std::string::npos) << m;
  EXPECT_NE(m.find("cotune download org/absent"), std::string::npos) << m;

  // Asking for a model that is cached as a dataset says so.
  const std::string d = error_of([&] { resolve("org/data", RepoType::model, opts()); });
  EXPECT_NE(d.find("a dataset of that name is cached"), std::string::npos) << d;
}

TEST_F(FakeCache, UnknownRevisionListsWhatIsCached) {
  const std::string m = error_of([&] { resolve("org/model@v9", RepoType::model, opts()); });
  EXPECT_NE(m.find("\"v9\""), std::string::npos) << m;
  EXPECT_NE(m.find("main"), std::string::npos) << m;
  EXPECT_NE(m.find("pr/1"), std::string::npos) << m;
  EXPECT_NE(m.find(kCommitA), std::string::npos) << m;
  const std::string unknown_commit(40, 'a');
  EXPECT_NE(error_of([&] { resolve("org/model@" + unknown_commit, RepoType::model, opts()); }).find("not in the cache"),
            std::string::npos);
}

TEST_F(FakeCache, IncompleteDownloads) {
  // refs/main points at a snapshot that never arrived.
  write(cache_ / "models--org--half" / "refs" / "main", kCommitB);
  const std::string m = error_of([&] { resolve("org/half", RepoType::model, opts()); });
  EXPECT_NE(m.find("refs/main points to commit " + kCommitB), std::string::npos) << m;

  // A snapshot file whose blob is missing.
  add_snapshot("models--org--broken", kCommitA, {{"config.json", "{}"}, {"model.safetensors", "x"}});
  write(cache_ / "models--org--broken" / "refs" / "main", kCommitA);
  for (const auto& e : fs::directory_iterator(cache_ / "models--org--broken" / "blobs")) {
    std::ifstream in(e.path());
    std::string t;
    std::getline(in, t);
    if (t == "x") fs::remove(e.path());
  }
  const std::string b = error_of([&] { resolve("org/broken", RepoType::model, opts()); });
  EXPECT_NE(b.find("model.safetensors is a broken link"), std::string::npos) << b;

  // A ref file that is not a commit hash.
  write(cache_ / "models--org--model" / "refs" / "bad", "not-a-hash");
  EXPECT_NE(error_of([&] { resolve("org/model@bad", RepoType::model, opts()); }).find("40-character"), std::string::npos);
}

TEST_F(FakeCache, MalformedNames) {
  for (const char* bad : {"org/na me", "org--x/y", "-org/x", "org/x@", "org/x@../../etc", "a/b/c@main"}) {
    const std::string m = error_of([&] { resolve(bad, RepoType::model, opts()); });
    EXPECT_FALSE(m.empty()) << bad;
  }
  EXPECT_NE(error_of([&] { resolve("", RepoType::model, opts()); }).find("empty"), std::string::npos);
}

}  // namespace
}  // namespace cotune::hub
