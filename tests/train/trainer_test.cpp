// The trainer end to end on CPU: 3 AdamW steps with gradient accumulation, clipping and a linear
// schedule against transformers + peft (tools/make_golden.py), exact resume, NaN handling, checkpoints.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/mmap.h"
#include "base/rng.h"
#include "common/test_paths.h"
#include "formats/peft_adapter.h"
#include "formats/safetensors.h"
#include "golden_io.h"
#include "model/lora.h"
#include "model/qwen2.h"
#include "train/trainer.h"

namespace cotune {
namespace {

namespace fs = std::filesystem;

std::vector<float> to_host(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  copy_bytes(Tensor(v.data(), DType::f32, t.shape), t);
  return v;
}

std::string temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("cotune-train-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// The golden's micro-batches as a dataset: every sequence in order, prompt = its first 4 tokens
// (the golden masks the first 3 predictions), batched 2 sequences at a time, packed, unshuffled.
struct GoldenRun {
  std::string dir = testing::golden_dir() + "/model/r1like";
  std::string lora_dir = dir + "/lora";
  nlohmann::json spec = nlohmann::json::parse(read_file(lora_dir + "/training.json"));
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  data::TokenizedDataset ds;
  GoldenRun() {
    for (const auto& step : spec["steps"])
      for (const auto& mb : step) {
        auto ids = mb["input_ids"].get<std::vector<int32_t>>();
        auto cu = mb["cu_seqlens"].get<std::vector<int32_t>>();
        for (size_t s = 0; s + 1 < cu.size(); ++s)
          ds.append(std::span<const int32_t>(ids.data() + cu[s], static_cast<size_t>(cu[s + 1] - cu[s])), 4);
      }
  }
  train::TrainInputs inputs(model::LoraWeights& lora, track::MetricsHub* hub) {
    train::TrainInputs in;
    in.model = &m;
    in.lora = &lora;
    in.dataset = &ds;
    for (size_t i = 0; i < ds.size(); ++i) in.train_indices.push_back(static_cast<int64_t>(i));
    in.batch.packing = true;
    in.batch.max_tokens = 64;
    in.batch.max_sequences = 2;
    in.batch.mask = data::LossMask::response;
    in.batch.shuffle = false;
    in.runner.max_tokens = 64;
    in.metrics = hub;
    return in;
  }
  train::TrainOptions options(const std::string& out) {
    train::TrainOptions o;
    o.optim = "adamw";
    o.lr = spec["optim"]["lr"].get<double>();
    o.weight_decay = spec["optim"]["weight_decay"].get<double>();
    o.max_grad_norm = spec["optim"]["max_grad_norm"].get<double>();
    o.lr_scheduler = "linear";
    o.warmup_steps = spec["optim"]["warmup_steps"].get<int64_t>();
    o.max_steps = 3;
    o.grad_accum = 2;
    o.logging_steps = 1;
    o.output_dir = out;
    return o;
  }
};

TEST(Trainer, ThreeAdamWStepsMatchTransformersAndPeft) {
  GoldenRun g;
  auto pc = formats::load_peft_adapter_config(g.lora_dir + "/adapter_init");
  model::LoraWeights lora(g.m.config(), model::LoraConfig::from_peft(pc), Device::cpu);
  lora.load_peft_weights(g.lora_dir + "/adapter_init");
  std::vector<std::vector<float>> init;
  for (const auto& p : lora.params()) init.push_back(to_host(p.value));

  const std::string out = temp_dir("golden");
  track::MetricsHub hub = track::MetricsHub::open({"jsonl"}, out);
  train::TrainResult res = train::train(g.inputs(lora, &hub), g.options(out));
  EXPECT_EQ(res.steps_done, 3);

  const auto& loss = hub.history().series("loss");
  const auto& lr = hub.history().series("lr");
  const auto& gn = hub.history().series("grad_norm");
  ASSERT_EQ(loss.size(), 3u);
  for (size_t s = 0; s < 3; ++s) {
    const double want = g.spec["expected"]["loss"][s].get<double>();
    EXPECT_NEAR(loss[s].value, want, 1e-5 * want) << "step " << s + 1;
    EXPECT_DOUBLE_EQ(lr[s].value, g.spec["expected"]["lr"][s].get<double>()) << "step " << s + 1;
    const double want_gn = g.spec["expected"]["grad_norm"][s].get<double>();
    EXPECT_NEAR(gn[s].value, want_gn, 1e-4 * want_gn) << "step " << s + 1;
  }
  // Final adapter within 1e-3 of the total update (relative, per tensor).
  auto want = formats::SafetensorsFile::open(g.lora_dir + "/adapter_after3.safetensors");
  auto params = lora.params();
  for (size_t i = 0; i < params.size(); ++i) {
    auto got = to_host(params[i].value);
    auto ref = testing::read_f32(want, params[i].peft_name);
    double err = 0, upd = 0;
    for (size_t j = 0; j < got.size(); ++j) {
      err += (static_cast<double>(got[j]) - ref[j]) * (static_cast<double>(got[j]) - ref[j]);
      upd += (static_cast<double>(ref[j]) - init[i][j]) * (static_cast<double>(ref[j]) - init[i][j]);
    }
    ASSERT_GT(upd, 0) << params[i].peft_name << ": the reference did not move";
    EXPECT_LE(std::sqrt(err / upd), 1e-3) << params[i].peft_name;
  }
  // The run left a PEFT checkpoint, metrics and an adapter config naming the modules.
  EXPECT_TRUE(fs::exists(out + "/checkpoint-3/adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/checkpoint-3/optimizer.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/metrics.jsonl"));
  auto cfg = formats::load_peft_adapter_config(out + "/checkpoint-3");
  EXPECT_EQ(cfg.r, 4);
  EXPECT_EQ(cfg.target_modules.size(), 7u);
  fs::remove_all(out);
}

// A small shuffled run with dropout and 8-bit AdamW, for the resume test.
struct SmallRun {
  model::Qwen2Model m = model::Qwen2Model::load(testing::golden_dir() + "/model/tied");
  data::TokenizedDataset ds;
  SmallRun() {
    Rng rng(5);
    for (int s = 0; s < 10; ++s) {
      std::vector<int32_t> ids(4 + rng.below(12));
      for (auto& t : ids) t = static_cast<int32_t>(3 + rng.below(300));
      ds.append(ids, static_cast<int32_t>(1 + rng.below(3)));
    }
  }
  model::LoraConfig lora_config() {
    model::LoraConfig lc;
    lc.r = 64;  // LoRA matrices of the MLP (64 x 256, 256 x 64) reach the 4096 elements of 8-bit state
    lc.alpha = 32;
    lc.dropout = 0.1f;
    return lc;
  }
  train::TrainResult run(model::LoraWeights& lora, const std::string& out, int64_t max_steps, bool resume,
                         std::function<bool()> stop = {}, double lr = 1e-3) {
    train::TrainInputs in;
    in.model = &m;
    in.lora = &lora;
    in.dataset = &ds;
    for (size_t i = 0; i < ds.size(); ++i) in.train_indices.push_back(static_cast<int64_t>(i));
    in.batch.max_tokens = 32;
    in.batch.max_sequences = 2;
    in.batch.mask = data::LossMask::response;
    in.batch.seed = 11;
    in.runner.max_tokens = 32;
    train::TrainOptions o;
    o.optim = "adamw8bit";
    o.lr = lr;
    o.max_steps = max_steps;
    o.grad_accum = 2;
    o.warmup_steps = 2;
    o.output_dir = out;
    o.save_steps = 3;
    o.resume = resume;
    o.seed = 99;
    train::TrainHooks hooks;
    hooks.should_stop = std::move(stop);
    return train::train(in, o, hooks);
  }
};

TEST(Trainer, ResumeIsBitIdentical) {
  SmallRun r;
  const std::string a = temp_dir("straight"), b = temp_dir("resumed");
  model::LoraWeights straight(r.m.config(), r.lora_config(), Device::cpu);
  straight.init_peft_default(1);
  r.run(straight, a, 6, false);

  model::LoraWeights first(r.m.config(), r.lora_config(), Device::cpu);
  first.init_peft_default(1);
  int steps = 0;
  train::TrainResult part = r.run(first, b, 6, false, [&] { return ++steps == 3; });  // "Ctrl-C" after step 3
  EXPECT_TRUE(part.stopped_early);
  EXPECT_EQ(part.steps_done, 3);
  EXPECT_TRUE(fs::exists(b + "/checkpoint-3/trainer_state.json"));

  model::LoraWeights resumed(r.m.config(), r.lora_config(), Device::cpu);
  resumed.init_peft_default(12345);  // overwritten by the checkpoint
  train::TrainResult rest = r.run(resumed, b, 6, true);
  EXPECT_EQ(rest.steps_done, 6);
  // elapsed_s continues from the checkpoint, so a report's throughput after a resume is tokens / total time.
  const auto elapsed = [&](const std::string& ck) {
    return nlohmann::json::parse(read_file(b + "/" + ck + "/trainer_state.json")).at("elapsed_s").get<double>();
  };
  EXPECT_GT(elapsed("checkpoint-3"), 0.0);
  EXPECT_GT(elapsed("checkpoint-6"), elapsed("checkpoint-3"));
  auto pa = straight.params(), pb = resumed.params();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    auto x = to_host(pa[i].value), y = to_host(pb[i].value);
    ASSERT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * 4)) << pa[i].peft_name;
  }
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(Trainer, ResumeWithoutCheckpointFails) {
  SmallRun r;
  const std::string out = temp_dir("nockpt");
  model::LoraWeights lora(r.m.config(), r.lora_config(), Device::cpu);
  try {
    r.run(lora, out, 2, true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no checkpoint"), std::string::npos) << e.what();
  }
  fs::remove_all(out);
}

TEST(Trainer, NonFiniteLossStopsNamingTheStep) {
  SmallRun r;
  const std::string out = temp_dir("nan");
  model::LoraWeights lora(r.m.config(), r.lora_config(), Device::cpu);
  lora.init_peft_default(1);
  // Poison one LoRA weight: the forward pass then produces NaN.
  auto p = lora.params()[0];
  p.value.ptr<float>()[0] = NAN;
  try {
    r.run(lora, out, 2, false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 1"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out + "/checkpoint-1"));
  fs::remove_all(out);
}

// Issue 14 item 11: finite loss and gradients do not make a checkpoint good; the update must be finite too.
// A NaN learning rate turns every weight NaN in step 1's update: no checkpoint is written and the error
// names no checkpoint as "the last good" (and leaves no temp folder).
TEST(Trainer, NonFiniteUpdateIsNeverSavedAsACheckpoint) {
  SmallRun r;
  const std::string out = temp_dir("nan-update");
  model::LoraWeights lora(r.m.config(), r.lora_config(), Device::cpu);
  lora.init_peft_default(1);
  try {
    r.run(lora, out, 1, false, {}, std::nan(""));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("step 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("nan at element"), std::string::npos) << msg;
    EXPECT_NE(msg.find("The last good checkpoint is none"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(out + "/checkpoint-1"));
  for (const auto& e : fs::directory_iterator(out)) ADD_FAILURE() << "left behind: " << e.path();
  fs::remove_all(out);
}

TEST(Trainer, PlannedSteps) {
  train::TrainOptions o;
  o.max_steps = 60;
  EXPECT_EQ(train::planned_steps(o, 10), 60);
  o.max_steps = 0;
  o.num_epochs = 2;
  o.grad_accum = 4;
  EXPECT_EQ(train::planned_steps(o, 10), 5);  // ceil(20 / 4)
  o.num_epochs = 0;
  EXPECT_THROW(train::planned_steps(o, 10), Error);
}

}  // namespace
}  // namespace cotune
