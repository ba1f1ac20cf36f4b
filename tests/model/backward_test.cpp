// LoRA gradients of the Qwen2 backward pass against transformers + peft (fp32, CPU), from the goldens
// of tools/make_golden.py: a PEFT adapter with non-zero B, two packed micro-batches with masked prompt
// positions, loss = sum of token losses / counted predictions of the whole step.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/mmap.h"
#include "common/test_paths.h"
#include "formats/peft_adapter.h"
#include "formats/safetensors.h"
#include "golden_io.h"
#include "kernels/ops.h"
#include "model/lora.h"
#include "model/qwen2.h"

namespace cotune {
namespace {

std::vector<float> to_host(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  copy_bytes(Tensor(v.data(), DType::f32, t.shape), t);
  return v;
}

double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

model::PackedBatch batch_from_json(const nlohmann::json& j) {
  model::PackedBatch b;
  b.input_ids = j["input_ids"].get<std::vector<int32_t>>();
  b.position_ids = j["position_ids"].get<std::vector<int32_t>>();
  b.targets = j["targets"].get<std::vector<int32_t>>();
  b.cu_seqlens = j["cu_seqlens"].get<std::vector<int32_t>>();
  return b;
}

struct Step1 {
  double loss = 0;
  std::vector<model::LoraWeights::Param> params;
};

class LoraGolden : public ::testing::Test {
 protected:
  std::string dir = testing::golden_dir() + "/model/r1like";
  std::string lora_dir = dir + "/lora";
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  nlohmann::json spec = nlohmann::json::parse(read_file(lora_dir + "/training.json"));

  double run_step1(model::LoraWeights& lora, bool checkpointing) {
    model::RunnerOptions ro;
    ro.max_tokens = 64;
    ro.gradient_checkpointing = checkpointing;
    ro.ce_chunk = 5;
    model::Qwen2Runner runner(m, &lora, ro);
    const auto& micro = spec["steps"][0];
    int64_t n_items = 0;
    for (const auto& mb : micro) n_items += batch_from_json(mb).counted();
    double loss_sum = 0;
    lora.zero_grads();
    for (const auto& mb : micro) {
      model::StepStats st = runner.forward_backward(batch_from_json(mb), true, 1.0f / static_cast<float>(n_items));
      loss_sum += st.loss_sum;
    }
    return loss_sum / static_cast<double>(n_items);
  }
};

TEST_F(LoraGolden, FirstStepLossAndGradientsMatchPeft) {
  auto pc = formats::load_peft_adapter_config(lora_dir + "/adapter_init");
  model::LoraWeights lora(m.config(), model::LoraConfig::from_peft(pc), Device::cpu);
  lora.load_peft_weights(lora_dir + "/adapter_init");
  const double loss = run_step1(lora, true);
  const double want_loss = spec["expected"]["loss"][0].get<double>();
  EXPECT_NEAR(loss, want_loss, 1e-5 * want_loss);

  auto grads = formats::SafetensorsFile::open(lora_dir + "/grads_step1.safetensors");
  int checked = 0;
  for (const auto& p : lora.params()) {
    std::vector<float> want = testing::read_f32(grads, p.peft_name);
    std::vector<float> got = to_host(p.grad);
    ASSERT_EQ(got.size(), want.size()) << p.peft_name;
    EXPECT_LE(rel_err(got, want), 1e-4) << p.peft_name;
    ++checked;
  }
  EXPECT_EQ(checked, 2 * 7 * 2);  // A and B, 7 projections, 2 layers
}

TEST_F(LoraGolden, CheckpointingGivesIdenticalGradients) {
  auto pc = formats::load_peft_adapter_config(lora_dir + "/adapter_init");
  model::LoraWeights a(m.config(), model::LoraConfig::from_peft(pc), Device::cpu);
  model::LoraWeights b(m.config(), model::LoraConfig::from_peft(pc), Device::cpu);
  a.load_peft_weights(lora_dir + "/adapter_init");
  b.load_peft_weights(lora_dir + "/adapter_init");
  EXPECT_EQ(run_step1(a, true), run_step1(b, false));
  auto pa = a.params(), pb = b.params();
  for (size_t i = 0; i < pa.size(); ++i) {
    auto ga = to_host(pa[i].grad), gb = to_host(pb[i].grad);
    ASSERT_EQ(0, std::memcmp(ga.data(), gb.data(), ga.size() * 4)) << pa[i].peft_name;
  }
}

// Offloaded checkpoints (RunnerOptions::offload_checkpoints: each layer's saved input in host memory while its
// device slot of a ring of 3 is reused) give the same loss and LoRA gradients bit for bit: 7 layers (the ring turns
// over twice and a bit), micro-batches of different lengths, a forward-only call in between.
TEST(Lora, OffloadedCheckpointsGiveIdenticalGradients) {
  formats::ModelConfig cfg = model::Qwen2Model::load(testing::golden_dir() + "/model/r1like").config();
  cfg.num_hidden_layers = 7;
  const model::Qwen2Model m = model::Qwen2Model::random(cfg, {}, 5, 0.05f);
  model::LoraConfig lc;
  lc.r = 4;
  lc.alpha = 8.0f;
  auto batch = [&](std::vector<int> lens, uint32_t seed) {
    model::PackedBatch b;
    b.cu_seqlens = {0};
    for (int len : lens) {
      for (int i = 0; i < len; ++i) {
        seed = seed * 1664525u + 1013904223u;
        b.input_ids.push_back(static_cast<int32_t>(seed % static_cast<uint32_t>(cfg.vocab_size)));
        b.position_ids.push_back(i);
      }
      for (int i = 0; i < len; ++i) b.targets.push_back(i + 1 < len ? b.input_ids[b.input_ids.size() - len + i + 1] : -100);
      b.cu_seqlens.push_back(b.cu_seqlens.back() + len);
    }
    return b;
  };
  auto run = [&](bool offload, model::LoraWeights& lora, size_t& host_bytes) {
    lora.init_peft_default(11);
    for (auto& p : lora.params())
      if (p.peft_name.find("lora_B") != std::string::npos) kernels::fill_normal(p.value, 17 + p.value.numel(), 0.05f);
    lora.refresh_compute_copies();
    model::RunnerOptions ro;
    ro.max_tokens = 48;
    ro.ce_chunk = 7;
    ro.offload_checkpoints = offload;
    model::Qwen2Runner runner(m, &lora, ro);
    host_bytes = runner.plan().host;
    lora.zero_grads();
    double loss = runner.forward_backward(batch({40}, 1), true, 0.02f).loss_sum;
    loss += runner.forward_backward(batch({13, 20}, 2), false, 0.02f).loss_sum;  // forward only
    loss += runner.forward_backward(batch({9, 30, 5}, 3), true, 0.02f).loss_sum;
    return loss;
  };
  model::LoraWeights a(cfg, lc, Device::cpu), b(cfg, lc, Device::cpu);
  size_t host_a = 0, host_b = 0;
  const double la = run(true, a, host_a), lb = run(false, b, host_b);
  EXPECT_EQ(host_a, static_cast<size_t>(5 * 48 * cfg.hidden_size * 4));  // inputs of layers 0 .. L-3, f32 on the CPU
  EXPECT_EQ(host_b, 0u);
  EXPECT_EQ(la, lb);
  auto pa = a.params(), pb = b.params();
  for (size_t i = 0; i < pa.size(); ++i) {
    auto ga = to_host(pa[i].grad), gb = to_host(pb[i].grad);
    ASSERT_EQ(0, std::memcmp(ga.data(), gb.data(), ga.size() * 4)) << pa[i].peft_name;
  }
}

TEST(Lora, PeftDefaultInitIsUniformAndBZero) {
  const std::string dir = testing::golden_dir() + "/model/tied";
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  model::LoraConfig lc;
  lc.r = 8;
  model::LoraWeights lora(m.config(), lc, Device::cpu);
  lora.init_peft_default(3407);
  for (const auto& p : lora.params()) {
    auto v = to_host(p.value);
    if (p.peft_name.find("lora_B") != std::string::npos) {
      for (float x : v) ASSERT_EQ(x, 0.0f);
    } else {
      const float bound = 1.0f / std::sqrt(static_cast<float>(p.value.dim(1)));
      float mx = 0;
      for (float x : v) mx = std::max(mx, std::fabs(x));
      EXPECT_LE(mx, bound);
      EXPECT_GT(mx, 0.9f * bound);
    }
  }
}

// With LoRA dropout the masks are a pure function of the seed, so the loss is a deterministic function of
// the LoRA weights and a central difference checks the backward through the dropout path.
TEST(Lora, DropoutGradientsMatchFiniteDifferences) {
  const std::string dir = testing::golden_dir() + "/model/tied";
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  model::LoraConfig lc;
  lc.r = 4;
  lc.alpha = 8;
  lc.dropout = 0.3f;
  model::LoraWeights lora(m.config(), lc, Device::cpu);
  lora.init_peft_default(7);
  for (auto& p : lora.params())  // non-zero B so that A gets gradients too
    if (p.peft_name.find("lora_B") != std::string::npos)
      for (int64_t i = 0; i < p.value.numel(); ++i) p.value.ptr<float>()[i] = 0.05f * std::sin(static_cast<float>(i));
  model::RunnerOptions ro;
  ro.max_tokens = 32;
  model::Qwen2Runner runner(m, &lora, ro);
  const model::PackedBatch b = model::PackedBatch::from_sequences({{5, 9, 200, 31, 7, 64, 3, 18}, {44, 12, 250, 6}});
  const float scale = 1.0f / static_cast<float>(b.counted());
  const uint64_t seed = 1234;
  lora.zero_grads();
  runner.forward_backward(b, true, scale, seed);
  auto loss = [&] { return runner.forward_backward(b, false, scale, seed).loss_sum * scale; };
  int checked = 0;
  for (const auto& p : lora.params()) {
    if (p.peft_name.find("layers.0.mlp.down_proj") == std::string::npos &&
        p.peft_name.find("layers.0.self_attn.q_proj") == std::string::npos)
      continue;
    // the coordinate with the largest gradient
    const float* g = p.grad.ptr<float>();
    int64_t best = 0;
    for (int64_t i = 1; i < p.grad.numel(); ++i)
      if (std::fabs(g[i]) > std::fabs(g[best])) best = i;
    float* w = p.value.ptr<float>();
    const float w0 = w[best], h = 1e-2f;
    w[best] = w0 + h;
    const double up = loss();
    w[best] = w0 - h;
    const double down = loss();
    w[best] = w0;
    const double fd = (up - down) / (2.0 * h);
    EXPECT_NEAR(g[best], fd, 2e-2 * std::fabs(fd) + 1e-6) << p.peft_name << " element " << best;
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

TEST(Lora, RejectsUnknownTarget) {
  model::LoraConfig lc;
  lc.target_modules = {"q_proj", "wq"};
  EXPECT_THROW(lc.validate(), Error);
}

}  // namespace
}  // namespace cotune
