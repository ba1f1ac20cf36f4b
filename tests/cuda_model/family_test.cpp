// Each decoder family's CUDA paths against its CPU twin (bf16 storage against fp32): the training step (loss and
// every LoRA gradient, CUDA graphs and kept attention outputs as the runner picks them), the decoder's logits over
// prefill and decode steps (the fused step where the layer allows it), and at head dim 128 (the flash attention
// kernels) the forward logits. The families are tests/golden/families (tools/make_family_golden.py); their CPU
// path is checked against transformers by tests/model/family_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "base/mmap.h"
#include "common/test_paths.h"
#include "formats/peft_adapter.h"
#include "infer/generator.h"
#include "kernels/cuda/context.h"
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
    if (!std::isfinite(got[i])) return INFINITY;
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

class GpuFamily : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (kernels::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA GPU visible";
  }
  std::string dir = testing::golden_dir() + "/families/" + GetParam();
  nlohmann::json spec = nlohmann::json::parse(read_file(dir + "/lora/loss.json"));

  model::PackedBatch batch() const {
    model::PackedBatch b;
    b.input_ids = spec["input_ids"].get<std::vector<int32_t>>();
    b.position_ids = spec["position_ids"].get<std::vector<int32_t>>();
    b.targets = spec["targets"].get<std::vector<int32_t>>();
    b.cu_seqlens = spec["cu_seqlens"].get<std::vector<int32_t>>();
    return b;
  }
  model::LoraWeights adapter(const model::Qwen2Model& m, Device d) const {
    const std::string a = dir + "/lora/adapter_init";
    model::LoraWeights w(m.config(), model::LoraConfig::from_peft(formats::load_peft_adapter_config(a)), d);
    w.load_peft_weights(a);
    return w;
  }
  // Two steps over the golden batch (the second replays a CUDA graph where the runner uses them); the loss.
  double step(const model::Qwen2Model& m, model::LoraWeights& lora, bool checkpointing) const {
    model::RunnerOptions ro;
    ro.max_tokens = 64;
    ro.gradient_checkpointing = checkpointing;
    model::Qwen2Runner runner(m, &lora, ro);
    const model::PackedBatch b = batch();
    const double n = static_cast<double>(b.counted());
    double loss = 0;
    for (int rep = 0; rep < 2; ++rep) {
      lora.zero_grads();
      loss = runner.forward_backward(b, true, static_cast<float>(1.0 / n)).loss_sum / n;
    }
    return loss;
  }
};

TEST_P(GpuFamily, Bf16StepMatchesCpu) {
  model::Qwen2Model cpu_m = model::Qwen2Model::load(dir);
  model::Qwen2Model gpu_m = model::Qwen2Model::load(dir, {Device::cuda, false});
  auto cpu_l = adapter(cpu_m, Device::cpu);
  const double lc = step(cpu_m, cpu_l, true);
  EXPECT_NEAR(lc, spec["loss"].get<double>(), 1e-4 * lc);
  // Mistral's window (8) is shorter than the batch's longest sequence (23): the CUDA simple kernels apply it.
  for (bool checkpointing : {true, false}) {
    auto gpu_l = adapter(gpu_m, Device::cuda);
    const double lg = step(gpu_m, gpu_l, checkpointing);
    EXPECT_NEAR(lg, lc, 1e-2 * lc) << "checkpointing " << checkpointing;
    auto pg = gpu_l.params(), pc = cpu_l.params();
    ASSERT_EQ(pg.size(), pc.size());
    for (size_t i = 0; i < pg.size(); ++i)
      EXPECT_LE(rel_err(to_host(pg[i].grad), to_host(pc[i].grad)), 5e-2) << pg[i].peft_name;
  }
}

TEST_P(GpuFamily, Nf4StepFollowsCpuNf4) {
  model::Qwen2Model cpu_m = model::Qwen2Model::load(dir, {Device::cpu, true});
  model::Qwen2Model gpu_m = model::Qwen2Model::load(dir, {Device::cuda, true});
  auto cpu_l = adapter(cpu_m, Device::cpu);
  auto gpu_l = adapter(gpu_m, Device::cuda);
  const double lc = step(cpu_m, cpu_l, true), lg = step(gpu_m, gpu_l, true);
  EXPECT_NEAR(lg, lc, 1e-2 * lc);
}

// Prefill two prompts, then decode steps with fixed tokens (fused decode where the layer allows it): the GPU's
// logits follow the CPU's. Mistral's window (8) is passed by the last steps (prompt 5 + 6 tokens).
TEST_P(GpuFamily, DecodeLogitsFollowCpu) {
  model::Qwen2Model mc = model::Qwen2Model::load(dir), mg = model::Qwen2Model::load(dir, {Device::cuda, false});
  for (bool fused : {true, false}) {
    infer::GeneratorOptions go;
    go.fused_decode = fused;
    infer::Generator gc(mc, nullptr, go), gg(mg, nullptr, go);
    const std::vector<std::vector<int32_t>> seqs = {{1, 5, 17, 42, 99}, {1, 200, 3}};
    auto lc = gc.prefill(seqs, 32), lg = gg.prefill(seqs, 32);
    for (int s = 0; s < 6; ++s) {
      EXPECT_LT(rel_err(lg, lc), 3e-2) << "fused " << fused << ", step " << s;
      const std::vector<int32_t> toks = {static_cast<int32_t>(10 + s * 7), static_cast<int32_t>(300 - s * 11)};
      lc = gc.decode({0, 1}, toks);
      lg = gg.decode({0, 1}, toks);
    }
    EXPECT_LT(rel_err(lg, lc), 3e-2) << "fused " << fused;
  }
}

// The family at head dim 128 (the flash attention kernels; Qwen3 then has heads * head_dim = 512 != hidden 256),
// random weights: forward logits of a packed batch, CPU against GPU (Mistral with a window of 64: the simple
// kernels for the batch, flash where no sequence is longer than the window).
TEST_P(GpuFamily, HeadDim128ForwardMatchesCpu) {
  formats::ModelConfig c = formats::load_model_config(dir);
  c.hidden_size = 256;
  c.head_dim = 128;
  c.num_attention_heads = c.model_type == "qwen3" ? 4 : 2;
  c.num_key_value_heads = c.model_type == "qwen3" ? 2 : 1;
  std::vector<std::vector<int32_t>> seqs;
  for (int n : {150, 37, 1, 90}) {
    std::vector<int32_t> s;
    for (int i = 0; i < n; ++i) s.push_back((i * 31 + n) % static_cast<int>(c.vocab_size));
    seqs.push_back(s);
  }
  if (c.sliding_window > 0) c.sliding_window = 64;  // Mistral: a window shorter than 150 and 90 (simple kernels)
  model::Qwen2Model mc2 = model::Qwen2Model::random(c, {Device::cpu, false}, 7, 0.05f);
  model::Qwen2Model mg2 = model::Qwen2Model::random(c, {Device::cuda, false}, 7, 0.05f);
  model::RunnerOptions ro;
  ro.max_tokens = 512;
  ro.training = false;
  model::Qwen2Runner rc(mc2, nullptr, ro), rg(mg2, nullptr, ro);
  const auto b = model::PackedBatch::from_sequences(seqs);
  EXPECT_LT(rel_err(rg.forward_logits(b), rc.forward_logits(b)), 3e-2);
}

INSTANTIATE_TEST_SUITE_P(Goldens, GpuFamily,
                         ::testing::Values("qwen25", "llama3", "llama_tied", "llama_bias", "qwen3", "mistral"));

}  // namespace
}  // namespace cotune
