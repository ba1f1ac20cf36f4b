// `cotune train --recipe recipes/demo.toml --report-to wandb` against the loopback fake W&B server
// (WANDB_BASE_URL=http://127.0.0.1:PORT): one run with the recipe as config, every step's metrics, system
// metrics, the before/after samples table and the summary; and a wrong key stopping the command before
// any model work.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/test_paths.h"
#include "track/temp_dir.h"
#include "track/wandb_fake_server.h"

namespace {

using nlohmann::json;
using cotune::track::testing::FakeWandbServer;
using cotune::track::testing::TempDir;
namespace fs = std::filesystem;

const std::string kKey = "feedfacefeedfacefeedfacefeedfacefeedface";

std::string quote(const std::string& s) { return "'" + s + "'"; }

// Runs a shell command in the repository root; returns its exit status, stderr in `log`.
int run(const std::string& cmd, const fs::path& log) {
  const std::string full = "cd " + quote(cotune::testing::source_dir()) + " && " + cmd + " >/dev/null 2>" + quote(log.string());
  const int rc = std::system(full.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class WandbCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = new TempDir;
    const int rc = run(std::string(COTUNE_BINARY) + " init-model --output " + quote((model_dir_->path() / "m").string()) +
                           " --preset demo --vocab-from recipes/data/demo_medical.jsonl",
                       model_dir_->path() / "init.log");
    ASSERT_EQ(rc, 0) << read(model_dir_->path() / "init.log");
  }
  static void TearDownTestSuite() { delete model_dir_; }
  std::string train_cmd(const FakeWandbServer& server, const std::string& key, const fs::path& out,
                        const std::string& extra = "--eval-steps 2 --sample-questions 2 --sample-max-new-tokens 4") const {
    return "env WANDB_API_KEY=" + key + " WANDB_BASE_URL=" + server.url() + " HOME=" + quote(out.string()) +
           " WANDB_PROJECT=cli-test " + COTUNE_BINARY + " train --recipe recipes/demo.toml --model " +
           quote((model_dir_->path() / "m").string()) + " --output " + quote((out / "run").string()) +
           " --max-steps 4 --logging-steps 2 --max-seq-length 64 --batch-size 2 --grad-accum 1"
           " --data-cache false --report-to jsonl,wandb --wandb-tags cli,demo --run-name cli-run " + extra;
  }
  static TempDir* model_dir_;
};
TempDir* WandbCli::model_dir_ = nullptr;

TEST_F(WandbCli, TrainCreatesOneRunWithConfigStepsSystemMetricsSamplesAndSummary) {
  TempDir tmp;
  FakeWandbServer server(kKey);
  ASSERT_EQ(run(train_cmd(server, kKey, tmp.path()), tmp.path() / "log"), 0) << read(tmp.path() / "log");
  const std::string log = read(tmp.path() / "log");
  EXPECT_NE(log.find("wandb: 🚀 View run at " + server.url() + "/fake-entity/cli-test/runs/"), std::string::npos) << log;

  EXPECT_EQ(server.problems(), std::vector<std::string>{});
  const auto names = server.run_names();
  ASSERT_EQ(names.size(), 1u);
  const auto r = *server.run(names[0]);
  EXPECT_EQ(r.project, "cli-test");
  EXPECT_EQ(r.display_name, "cli-run");
  EXPECT_EQ(r.tags, (std::vector<std::string>{"cli", "demo"}));
  // The whole recipe (every key, with flags applied), the model and data identity, cotune's version.
  EXPECT_EQ(r.config["lr"], 5e-3);
  EXPECT_EQ(r.config["max_steps"], 4);
  EXPECT_EQ(r.config["lora_alpha"], 32.0);
  EXPECT_EQ(r.config["template"], "medical-o1-en");
  EXPECT_EQ(r.config["report_to"], json({"jsonl", "wandb"}));
  EXPECT_TRUE(r.config.contains("adam_beta2"));
  EXPECT_EQ(r.config["model_identity"]["path"], (model_dir_->path() / "m").string());
  EXPECT_EQ(r.config["model_config"]["model_type"], "qwen2");
  EXPECT_EQ(r.config["data_identity"]["path"], "recipes/data/demo_medical.jsonl");
  EXPECT_EQ(r.config["cotune_version"], "0.1.0");

  std::vector<json> h;
  for (const auto& l : r.lines.at("wandb-history.jsonl")) h.push_back(json::parse(l));
  int train_rows = 0, eval_rows = 0, tables = 0;
  for (size_t i = 0; i < h.size(); ++i) {
    EXPECT_EQ(h[i]["_step"], i);
    if (h[i].contains("train/loss")) {
      ++train_rows;
      EXPECT_EQ(h[i]["train/global_step"], train_rows);
      for (const char* k : {"train/learning_rate", "train/grad_norm", "train/epoch", "train/tokens_per_second"})
        EXPECT_TRUE(h[i].contains(k)) << k;
    }
    eval_rows += h[i].contains("eval/loss");
    if (h[i].contains("samples")) {
      ++tables;
      EXPECT_EQ(h[i]["samples"]["_type"], "table-file");
      const json t = json::parse(r.uploads.at(h[i]["samples"]["path"].get<std::string>()));
      EXPECT_EQ(t["columns"], json({"question", "before", "after"}));
      EXPECT_EQ(t["data"].size(), 2u);
    }
  }
  EXPECT_EQ(train_rows, 4);
  EXPECT_EQ(eval_rows, 2);
  EXPECT_EQ(tables, 1);
  EXPECT_GE(r.lines.at("wandb-events.jsonl").size(), 1u);
  EXPECT_TRUE(json::parse(r.lines.at("wandb-events.jsonl")[0]).contains("system.cpu"));
  const json summary = json::parse(r.lines.at("wandb-summary.json").at(0));
  for (const char* k : {"train/loss", "eval/loss", "train/train_runtime", "train/train_loss", "samples"})
    EXPECT_TRUE(summary.contains(k)) << k;
  EXPECT_EQ(summary["train/global_step"], 4);
  bool console_has_step = false;
  for (const auto& l : r.lines.at("output.log")) console_has_step |= l.find("step 2/4 | loss") != std::string::npos;
  EXPECT_TRUE(console_has_step);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.exitcode, 0);
  for (const auto& b : server.bodies()) EXPECT_EQ(b.find(kKey), std::string::npos);
  EXPECT_EQ(log.find(kKey), std::string::npos);
}

TEST_F(WandbCli, ResumeContinuesTheSameRunWithoutDuplicateSteps) {
  TempDir tmp;
  FakeWandbServer server(kKey);
  const std::string cmd = train_cmd(server, kKey, tmp.path(), "--save-steps 2 --sample-questions 0 --eval-steps 0");
  ASSERT_EQ(run(cmd, tmp.path() / "log1"), 0) << read(tmp.path() / "log1");
  // A run that died after step 4 but before its last checkpoint: resume from checkpoint-2.
  fs::remove_all(tmp.path() / "run" / "checkpoint-4");
  fs::remove_all(tmp.path() / "run" / "adapter");
  ASSERT_EQ(run(cmd + " --resume", tmp.path() / "log2"), 0) << read(tmp.path() / "log2");
  EXPECT_NE(read(tmp.path() / "log2").find("Resuming run"), std::string::npos) << read(tmp.path() / "log2");
  EXPECT_EQ(server.problems(), std::vector<std::string>{});
  const auto names = server.run_names();
  ASSERT_EQ(names.size(), 1u);  // the same W&B run
  const auto r = *server.run(names[0]);
  std::vector<int64_t> steps;
  const auto& lines = r.lines.at("wandb-history.jsonl");
  for (size_t i = 0; i < lines.size(); ++i) {
    const json row = json::parse(lines[i]);
    EXPECT_EQ(row["_step"], i);
    if (row.contains("train/loss")) steps.push_back(row["train/global_step"]);
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4}));  // steps 3 and 4 were replayed, not logged twice
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.upserts, 2);
}

TEST_F(WandbCli, WrongKeyStopsBeforeAnyModelWork) {
  TempDir tmp;
  FakeWandbServer server(kKey);
  const std::string wrong = "0000000000000000000000000000000000000000";
  EXPECT_NE(run(train_cmd(server, wrong, tmp.path()), tmp.path() / "log"), 0);
  const std::string log = read(tmp.path() / "log");
  EXPECT_NE(log.find("was rejected"), std::string::npos) << log;
  EXPECT_EQ(log.find("memory plan"), std::string::npos) << "the model was loaded: " << log;
  EXPECT_EQ(log.find(wrong), std::string::npos);
  EXPECT_EQ(server.requests("UpsertBucket"), 0);
}

}  // namespace
