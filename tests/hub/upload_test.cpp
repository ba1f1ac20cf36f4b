// Uploads against the loopback fake Hub: repo creation, preupload, LFS batch (basic and multipart), the NDJSON
// commit, only changed files on a second push, branches, private repos, missing / wrong tokens; the model card.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "fake_hub.h"
#include "hub/client.h"
#include "hub/model_card.h"
#include "hub/upload.h"

namespace cotune::hub {
namespace {
namespace fs = std::filesystem;
using cotune::testing::FakeHub;

class HubUpload : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "cotune-up-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    weights_ = std::string(300000, '\0');
    for (size_t i = 0; i < weights_.size(); ++i) weights_[i] = static_cast<char>((i * 7919) >> 3);
    std::ofstream(dir_ / "adapter_model.safetensors", std::ios::binary) << weights_;
    std::ofstream(dir_ / "adapter_config.json") << "{\"r\": 16}";
    hub_.set_token("hf_write_token_789");
  }
  void TearDown() override { fs::remove_all(dir_); }

  HubClient client(std::optional<std::string> token = std::string("hf_write_token_789")) {
    HubSettings s;
    s.endpoint = hub_.endpoint();
    s.token = token;
    s.token_source = "--token";
    s.progress = false;
    s.retry.sleep = [](double) {};
    return HubClient(s);
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
  fs::path dir_;
  std::string weights_;
};

TEST_F(HubUpload, CreatesRepoUploadsLfsAndCommitsThenOnlyChanges) {
  HubClient c = client();
  PushOptions o;
  o.commit_message = "first";
  o.contents["README.md"] = "---\nlibrary_name: peft\n---\n";
  const PushResult r = push_folder(c, dir_.string(), "me/adapter", o);
  EXPECT_TRUE(r.created_repo);
  EXPECT_EQ(r.files_committed, 3);
  EXPECT_EQ(r.lfs_uploaded, 1);
  EXPECT_EQ(r.commit.size(), 40u);
  auto files = hub_.files("model", "me/adapter", "main");
  ASSERT_TRUE(files);
  EXPECT_EQ(files->at("adapter_model.safetensors").content, weights_);
  EXPECT_TRUE(files->at("adapter_model.safetensors").lfs);
  EXPECT_EQ(files->at("adapter_config.json").content, "{\"r\": 16}");
  EXPECT_EQ(files->at("README.md").content, "---\nlibrary_name: peft\n---\n");

  // The exchange, in order; the storage host never sees the token.
  std::vector<std::string> calls;
  for (const auto& q : hub_.requests()) {
    calls.push_back(q.host + " " + q.method + " " + q.path);
    if (q.host == "storage") EXPECT_FALSE(q.any_auth);
    else EXPECT_TRUE(q.authorized) << q.path;
    if (q.path.find("/commit/") != std::string::npos) {
      EXPECT_EQ(q.content_type, "application/x-ndjson");
      EXPECT_NE(q.body.find("{\"key\":\"header\",\"value\":{\"description\":\"\",\"summary\":\"first\"}}"), std::string::npos) << q.body;
      EXPECT_NE(q.body.find("\"key\":\"lfsFile\""), std::string::npos) << q.body;
    }
  }
  const std::vector<std::string> expected{
      "hub POST /api/repos/create", "hub POST /api/models/me/adapter/preupload/main",
      "hub POST /me/adapter.git/info/lfs/objects/batch",
      "storage PUT /upload/" + cotune::testing::sha256_hex(weights_),
      "hub POST /me/adapter.git/info/lfs/objects/verify", "hub POST /api/models/me/adapter/commit/main"};
  EXPECT_EQ(calls, expected);

  // Same folder again: nothing changed, no commit.
  hub_.clear_requests();
  const PushResult same = push_folder(c, dir_.string(), "me/adapter", o);
  EXPECT_TRUE(same.commit.empty());
  EXPECT_EQ(same.unchanged, 3);
  for (const auto& q : hub_.requests()) EXPECT_EQ(q.path.find("/commit/"), std::string::npos);

  // One file changed: only it is committed, no LFS traffic.
  std::ofstream(dir_ / "adapter_config.json") << "{\"r\": 8}";
  hub_.clear_requests();
  const PushResult one = push_folder(c, dir_.string(), "me/adapter", o);
  EXPECT_EQ(one.files_committed, 1);
  EXPECT_EQ(one.lfs_uploaded, 0);
  EXPECT_EQ(hub_.files("model", "me/adapter", "main")->at("adapter_config.json").content, "{\"r\": 8}");
  for (const auto& q : hub_.requests()) EXPECT_NE(q.host, "storage");
}

TEST_F(HubUpload, MultipartForLargeFiles) {
  hub_.set_multipart_threshold(100000, 65536);
  HubClient c = client();
  push_folder(c, dir_.string(), "me/big", PushOptions{});
  EXPECT_EQ(hub_.files("model", "me/big", "main")->at("adapter_model.safetensors").content, weights_);
  int parts = 0;
  for (const auto& q : hub_.requests()) parts += q.path.starts_with("/part/");
  EXPECT_EQ(parts, 5);  // ceil(300000 / 65536)
}

TEST_F(HubUpload, PrivateRepoOnABranchOfADataset) {
  HubClient c = client();
  PushOptions o;
  o.type = RepoType::dataset;
  o.private_repo = true;
  o.revision = "dev";
  push_folder(c, dir_.string(), "me/data", o);
  EXPECT_TRUE(hub_.repo_is_private("dataset", "me/data"));
  EXPECT_TRUE(hub_.files("dataset", "me/data", "dev")->count("adapter_config.json"));
  EXPECT_FALSE(hub_.files("dataset", "me/data", "main")->count("adapter_config.json"));
}

TEST_F(HubUpload, MissingOrWrongTokenSaysWhatToDo) {
  HubClient none = client(std::nullopt);
  std::string m = error_of([&] { push_folder(none, dir_.string(), "me/x", PushOptions{}); });
  EXPECT_NE(m.find("needs a write token"), std::string::npos) << m;
  HubClient wrong = client(std::string("hf_read_only_000"));
  m = error_of([&] { push_folder(wrong, dir_.string(), "me/x", PushOptions{}); });
  EXPECT_NE(m.find("creating model me/x"), std::string::npos) << m;
  EXPECT_EQ(m.find("hf_read_only_000"), std::string::npos) << m;
  // A server failure during the commit is reported, after retries.
  hub_.fail_next("/commit/", 500, 10);
  HubClient c = client();
  m = error_of([&] { push_folder(c, dir_.string(), "me/y", PushOptions{}); });
  EXPECT_NE(m.find("answered 500"), std::string::npos) << m;
}

TEST(ModelCard, MetadataAndBody) {
  ModelCardInfo i;
  i.repo_id = "me/med-lora";
  i.base_model = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B";
  i.datasets = {"FreedomIntelligence/medical-o1-reasoning-SFT", "/local/file.json"};
  i.recipe_toml = "lora_r = 16\n";
  i.figures = {"figures/loss.svg"};
  i.facts = {{"steps", "60"}};
  i.samples = {{"Q?", "before\nanswer", "after"}};
  const std::string md = model_card(i);
  EXPECT_TRUE(md.starts_with("---\nbase_model: deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B\nlibrary_name: peft\n")) << md;
  EXPECT_NE(md.find("datasets:\n  - FreedomIntelligence/medical-o1-reasoning-SFT\n"), std::string::npos) << md;
  EXPECT_EQ(md.find("/local/file.json"), std::string::npos);
  EXPECT_NE(md.find("pipeline_tag: text-generation\n---\n"), std::string::npos) << md;
  EXPECT_NE(md.find("  - base_model:adapter:deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"), std::string::npos) << md;
  EXPECT_NE(md.find("![figures/loss.svg](figures/loss.svg)"), std::string::npos);
  EXPECT_NE(md.find("```toml\nlora_r = 16\n```"), std::string::npos);
  EXPECT_NE(md.find("> before\n> answer"), std::string::npos);
  i.is_adapter = false;
  EXPECT_NE(model_card(i).find("library_name: transformers"), std::string::npos);
}

}  // namespace
}  // namespace cotune::hub
