// The layer spec (model/layer.h) and the weight walker (model/weights.h) against the checkpoints transformers wrote
// for every family golden (tests/golden/families): the walker names exactly the tensors of each layer, with their
// shapes, and the spec says which biases, norms and LoRA targets a family's layer has.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "common/test_paths.h"
#include "formats/model_config.h"
#include "formats/safetensors.h"
#include "model/layer.h"
#include "model/weights.h"

namespace cotune {
namespace {

using model::LayerSpec;
using model::LayerTensor;
using model::Proj;

std::string family_dir(const std::string& name) { return testing::golden_dir() + "/families/" + name; }

class LayerSpecFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(LayerSpecFamily, WalkerNamesEveryCheckpointTensorOfALayer) {
  const std::string dir = family_dir(GetParam());
  const formats::ModelConfig cfg = formats::load_model_config(dir);
  const formats::Checkpoint ckpt = formats::Checkpoint::open(dir);
  const LayerSpec spec = LayerSpec::from(model::Architecture::from_config(cfg));
  const std::vector<LayerTensor> tensors = model::layer_tensors(spec);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    std::set<std::string> in_checkpoint;
    for (const std::string& name : ckpt.names())
      if (name.rfind(prefix, 0) == 0) in_checkpoint.insert(name.substr(prefix.size()));
    std::set<std::string> walked;
    for (const LayerTensor& t : tensors) {
      EXPECT_TRUE(walked.insert(t.name).second) << "listed twice: " << t.name;
      ASSERT_TRUE(ckpt.find(prefix + t.name) != nullptr) << GetParam() << ": the walker names " << prefix + t.name;
      const formats::TensorEntry& e = ckpt.get(prefix + t.name);
      EXPECT_EQ(e.shape, std::vector<int64_t>(t.shape.dims.begin(), t.shape.dims.begin() + t.shape.ndim)) << t.name;
    }
    EXPECT_EQ(walked, in_checkpoint) << GetParam() << " layer " << l;
  }
}

TEST_P(LayerSpecFamily, SpecFollowsTheConfig) {
  const formats::ModelConfig cfg = formats::load_model_config(family_dir(GetParam()));
  const model::Architecture arch = model::Architecture::from_config(cfg);
  model::LoraConfig lora;
  lora.target_modules = {"q_proj", "v_proj", "down_proj"};
  const LayerSpec spec = LayerSpec::from(arch, &lora);
  EXPECT_EQ(spec.projection(Proj::q).bias, arch.qkv_bias);
  EXPECT_EQ(spec.projection(Proj::o).bias, arch.o_bias);
  EXPECT_EQ(spec.projection(Proj::up).bias, arch.mlp_bias);
  EXPECT_EQ(spec.attention.qk_norm, arch.qk_norm);
  EXPECT_EQ(spec.attention.sliding_window, arch.sliding_window);
  EXPECT_EQ(spec.projection(Proj::k).out_features, cfg.num_key_value_heads * cfg.head_dim);
  EXPECT_EQ(spec.projection(Proj::o).in_features, cfg.num_attention_heads * cfg.head_dim);
  EXPECT_EQ(spec.projection(Proj::down).in_features, cfg.intermediate_size);
  EXPECT_EQ(spec.projection(Proj::q).name, "self_attn.q_proj");
  EXPECT_EQ(spec.projection(Proj::gate).name, "mlp.gate_proj");
  std::vector<bool> lora_on;
  for (const auto& p : spec.projections) lora_on.push_back(p.lora);
  EXPECT_EQ(lora_on, (std::vector<bool>{true, false, true, false, false, false, true}));
  // Two blocks of one form: attention (q, k, v -> o), then MLP (gate, up -> down).
  ASSERT_EQ(spec.blocks.size(), 2u);
  EXPECT_EQ(spec.blocks[0].mixer, model::Mixer::attention);
  EXPECT_EQ(spec.blocks[0].norm, model::Norm::input);
  EXPECT_EQ(spec.blocks[0].n_in, 3);
  EXPECT_EQ(spec.blocks[0].in(2), Proj::v);
  EXPECT_EQ(spec.blocks[0].out, Proj::o);
  EXPECT_EQ(spec.blocks[1].mixer, model::Mixer::gated_mlp);
  EXPECT_EQ(spec.blocks[1].norm, model::Norm::post);
  EXPECT_EQ(spec.blocks[1].in(1), Proj::up);
  EXPECT_EQ(spec.blocks[1].out, Proj::down);
}

INSTANTIATE_TEST_SUITE_P(Families, LayerSpecFamily,
                         ::testing::Values("qwen25", "llama3", "llama_tied", "llama_bias", "qwen3", "mistral"));

}  // namespace
}  // namespace cotune
