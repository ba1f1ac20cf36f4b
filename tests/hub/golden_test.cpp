// cotune's cache tree against the one huggingface_hub 2.4 wrote for the same repo from the same fake Hub
// (tests/golden/hub/cache_tree.txt, made by tools/hub_cache_golden.py, which also checks both tools read each
// other's cache): every path, link target and byte (SHA-256) the same, lock files by name.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include "common/test_paths.h"
#include "fake_hub.h"
#include "hub/download.h"
#include "hub/upload.h"

namespace cotune::hub {
namespace {
namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The listing tools/hub_cache_golden.py writes: path<TAB>kind<TAB>detail, sorted.
std::string listing(const fs::path& cache) {
  std::set<std::string> lines;
  for (auto it = fs::recursive_directory_iterator(cache); it != fs::recursive_directory_iterator(); ++it) {
    const std::string rel = it->path().lexically_relative(cache).generic_string();  // not relative(): it follows links
    if (it->is_symlink()) {
      lines.insert(rel + "\tlink\t" + fs::read_symlink(it->path()).string());
    } else if (it->is_directory()) {
      lines.insert(rel + "\tdir\t");
    } else if (rel.starts_with(".locks/")) {
      lines.insert(rel + "\tfile\t(lock)");
    } else {
      lines.insert(rel + "\tfile\t" + sha256_file_hex(it->path().string()) + " " + std::to_string(fs::file_size(it->path())));
    }
  }
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

TEST(HubGolden, CacheTreeEqualsHuggingfaceHubs) {
  COTUNE_REQUIRE_FIXTURES(fixtures);
  const fs::path repo_dir = fs::path(fixtures) / "hub-golden";
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(repo_dir))
    if (e.is_regular_file()) files[fs::relative(e.path(), repo_dir).generic_string()] = read_file(e.path());
  cotune::testing::FakeHub fake;
  fake.commit("model", "org/golden", "main", files);  // the fake's first commit: the same hash as fake_hub's

  std::string tmpl = (fs::temp_directory_path() / "cotune-golden-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  HubSettings s;
  s.endpoint = fake.endpoint();
  s.cache_dir = fs::path(tmpl) / "hub";
  s.progress = false;
  HubClient client(s);
  download_snapshot(client, "org/golden", RepoType::model, DownloadOptions{});
  const std::string golden = read_file(fs::path(cotune::testing::golden_dir()) / "hub" / "cache_tree.txt");
  ASSERT_FALSE(golden.empty());
  EXPECT_EQ(listing(s.cache_dir), golden);
  fs::remove_all(tmpl);
}

}  // namespace
}  // namespace cotune::hub
