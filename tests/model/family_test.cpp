// Every decoder family on the CPU reference path against transformers (+ peft), from the goldens of
// tools/make_family_golden.py: Qwen2.5 (tied, rope 1e6, sliding-window keys off), Llama 3.x (rope llama3,
// untied; tied with rope linear; q/k/v/o and mlp biases), Qwen3 (q/k norm, head_dim != hidden / heads) and
// Mistral (sliding window shorter than the sequences). Per family: packed forward logits, the LoRA gradients of
// a packed micro-batch, greedy generation with and without the adapter, the merged export, and inspect.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "base/mmap.h"
#include "common/test_paths.h"
#include "export/merge.h"
#include "formats/inspect.h"
#include "formats/peft_adapter.h"
#include "formats/safetensors.h"
#include "golden_io.h"
#include "infer/generator.h"
#include "model/lora.h"
#include "model/qwen2.h"

namespace cotune {
namespace {

std::string family_dir(const std::string& name) { return testing::golden_dir() + "/families/" + name; }

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(read_file(path)); }

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

infer::GenerationOptions greedy(int64_t n) {
  infer::GenerationOptions o;
  o.max_new_tokens = n;
  o.sampling.do_sample = false;
  o.eos_ids = {};  // the goldens generate exactly n tokens
  return o;
}

std::vector<std::vector<int32_t>> generated_ids(const std::vector<infer::GenerationOutput>& outs) {
  std::vector<std::vector<int32_t>> ids;
  for (const auto& o : outs) ids.push_back(o.ids);
  return ids;
}

class Family : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir = family_dir(GetParam());
};

TEST_P(Family, PackedLogitsMatchTransformers) {
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  auto golden = formats::SafetensorsFile::open(dir + "/forward.safetensors");
  model::PackedBatch batch = testing::read_batch(golden);
  std::vector<float> want = testing::read_f32(golden, "logits");
  model::RunnerOptions ro;
  ro.max_tokens = 64;
  ro.training = false;
  model::Qwen2Runner runner(m, nullptr, ro);
  std::vector<float> got = runner.forward_logits(batch);
  ASSERT_EQ(got.size(), want.size());
  float max_err = 0.0f;
  for (size_t i = 0; i < got.size(); ++i) max_err = std::max(max_err, std::fabs(got[i] - want[i]));
  EXPECT_LE(max_err, 1e-4f) << GetParam() << ": max |logit - transformers| over " << got.size() << " logits";
}

TEST_P(Family, LoraGradientsMatchPeft) {
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  const std::string lora_dir = dir + "/lora";
  auto pc = formats::load_peft_adapter_config(lora_dir + "/adapter_init");
  auto spec = read_json(lora_dir + "/loss.json");
  model::PackedBatch batch;
  batch.input_ids = spec["input_ids"].get<std::vector<int32_t>>();
  batch.position_ids = spec["position_ids"].get<std::vector<int32_t>>();
  batch.targets = spec["targets"].get<std::vector<int32_t>>();
  batch.cu_seqlens = spec["cu_seqlens"].get<std::vector<int32_t>>();
  for (bool checkpointing : {true, false}) {
    model::LoraWeights lora(m.config(), model::LoraConfig::from_peft(pc), Device::cpu);
    lora.load_peft_weights(lora_dir + "/adapter_init");
    lora.zero_grads();
    model::RunnerOptions ro;
    ro.max_tokens = 64;
    ro.gradient_checkpointing = checkpointing;
    model::Qwen2Runner runner(m, &lora, ro);
    const auto n = static_cast<double>(batch.counted());
    model::StepStats st = runner.forward_backward(batch, true, static_cast<float>(1.0 / n));
    const double want_loss = spec["loss"].get<double>();
    EXPECT_NEAR(st.loss_sum / n, want_loss, 1e-5 * want_loss) << GetParam();
    auto grads = formats::SafetensorsFile::open(lora_dir + "/grads.safetensors");
    int checked = 0;
    for (const auto& p : lora.params()) {
      std::vector<float> want = testing::read_f32(grads, p.peft_name);
      std::vector<float> got = to_host(p.grad);
      ASSERT_EQ(got.size(), want.size()) << p.peft_name;
      EXPECT_LE(rel_err(got, want), 1e-4) << GetParam() << " " << p.peft_name;
      ++checked;
    }
    EXPECT_EQ(checked, 2 * 7 * m.config().num_hidden_layers);  // A and B of 7 projections a layer
  }
}

TEST_P(Family, GreedyGenerationMatchesTransformers) {
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  auto g = read_json(dir + "/generate.json");
  const auto prompts = g["prompts"].get<std::vector<std::vector<int32_t>>>();
  const int64_t n = g["max_new_tokens"].get<int64_t>();
  infer::GeneratorOptions go;
  go.prefill_chunk = 5;  // prompts span several prefill chunks
  infer::Generator base(m, nullptr, go);
  EXPECT_EQ(generated_ids(base.generate(prompts, greedy(n), nullptr)), g["base"].get<std::vector<std::vector<int32_t>>>())
      << GetParam();
  auto lora = infer::load_adapter(m, dir + "/lora/adapter_init");
  infer::Generator with(m, lora.get(), go);
  EXPECT_EQ(generated_ids(with.generate(prompts, greedy(n), nullptr)), g["lora"].get<std::vector<std::vector<int32_t>>>())
      << GetParam();
}

TEST_P(Family, MergedExportGeneratesWhatTheAdapterDoes) {
  const std::string out =
      (std::filesystem::temp_directory_path() / ("cotune_family_merge_" + GetParam() + "_" + std::to_string(::getpid())))
          .string();
  exporting::MergeOptions mo;
  mo.dtype = DType::f32;  // no rounding of the merged weights: the comparison is with W x + s B A x in fp32
  exporting::MergeResult r = exporting::merge_lora(dir, dir + "/lora/adapter_init", out, mo);
  EXPECT_EQ(r.merged_weights, 7 * read_json(dir + "/config.json")["num_hidden_layers"].get<int64_t>());
  // The merged folder is a model of the same family that checks against its config.
  formats::InspectReport ir = formats::inspect_model(out);
  EXPECT_TRUE(ir.check.ok() && ir.check.unexpected.empty()) << ir.check.message();
  model::Qwen2Model merged = model::Qwen2Model::load(out);
  auto g = read_json(dir + "/generate.json");
  infer::Generator gen(merged, nullptr);
  EXPECT_EQ(generated_ids(gen.generate(g["prompts"].get<std::vector<std::vector<int32_t>>>(),
                                       greedy(g["max_new_tokens"].get<int64_t>()), nullptr)),
            g["lora"].get<std::vector<std::vector<int32_t>>>())
      << GetParam();
  std::filesystem::remove_all(out);
}

TEST_P(Family, InspectFindsEveryTensorOfTheFamily) {
  formats::InspectReport r = formats::inspect_model(dir);
  EXPECT_TRUE(r.has_weights);
  EXPECT_TRUE(r.check.ok() && r.check.unexpected.empty()) << r.check.message();
  int64_t numel = 0;
  for (const auto& t : r.tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    numel += n;
  }
  EXPECT_EQ(numel, r.parameters);  // the config's parameter count is what the file holds
}

INSTANTIATE_TEST_SUITE_P(Goldens, Family,
                         ::testing::Values("qwen25", "llama3", "llama_tied", "llama_bias", "qwen3", "mistral"));

TEST(FamilyArchitecture, DescribesEachFamily) {
  auto arch = [](const std::string& name) {
    return model::Architecture::from_config(formats::load_model_config(family_dir(name)));
  };
  const model::Architecture q25 = arch("qwen25"), l3 = arch("llama3"), lb = arch("llama_bias"), q3 = arch("qwen3"),
                            mi = arch("mistral"), lt = arch("llama_tied");
  EXPECT_TRUE(q25.qkv_bias && !q25.o_bias && q25.tied_embeddings && q25.sliding_window == 0);
  EXPECT_EQ(q25.rope.theta, 1e6f);
  EXPECT_TRUE(!l3.qkv_bias && !l3.o_bias && !l3.mlp_bias && !l3.tied_embeddings);
  EXPECT_EQ(l3.rope.scaling, kernels::RopeScaling::llama3);
  EXPECT_EQ(l3.rope.factor, 8.0f);
  EXPECT_EQ(l3.rope.original_max_position, 64.0f);
  EXPECT_EQ(lt.rope.scaling, kernels::RopeScaling::linear);
  EXPECT_TRUE(lb.qkv_bias && lb.o_bias && lb.mlp_bias);
  EXPECT_TRUE(q3.qk_norm && !q3.qkv_bias && q3.head_dim == 64 && q3.heads * q3.head_dim != q3.hidden);
  EXPECT_EQ(mi.sliding_window, 8);
  EXPECT_TRUE(q25.plain_layer() && l3.plain_layer() && !q3.plain_layer() && !mi.plain_layer() && !lb.plain_layer());
}

}  // namespace
}  // namespace cotune
