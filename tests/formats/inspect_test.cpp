#include "formats/inspect.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/mmap.h"
#include "common/test_paths.h"
#include "formats/temp_dir.h"

namespace cotune::formats {
namespace {

TEST(Inspect, RealConfigWithoutWeights) {
  COTUNE_REQUIRE_FIXTURES(fixtures);
  InspectReport r = inspect_model(fixtures + "/deepseek-r1-distill-qwen-1.5b");
  EXPECT_FALSE(r.has_weights);
  EXPECT_EQ(r.parameters, 1'777'088'000);
  EXPECT_EQ(r.parameters_without_embeddings, 1'777'088'000 - 2 * int64_t{151936} * 1536);
  std::string text = inspect_text(r);
  EXPECT_NE(text.find("Qwen2ForCausalLM"), std::string::npos) << text;
  EXPECT_NE(text.find("1,777,088,000"), std::string::npos) << text;
  EXPECT_NE(text.find("no weights found"), std::string::npos) << text;
  auto j = nlohmann::json::parse(inspect_json(r));
  EXPECT_EQ(j["num_key_value_heads"], 2);
  EXPECT_EQ(j["head_dim"], 128);
  EXPECT_EQ(j["has_weights"], false);
  EXPECT_EQ(j["weights_bytes_bf16"], int64_t{2} * 1'777'088'000);
  // The config file itself works too.
  EXPECT_EQ(inspect_model(fixtures + "/deepseek-r1-distill-qwen-1.5b/config.json").parameters, r.parameters);
}

TEST(Inspect, TinyModelWithWeights) {
  test::TempDir dir;
  const std::string config = R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 16,
    "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 1, "tie_word_embeddings": true})";
  test::write_bytes(dir / "config.json", config);
  ModelConfig c = parse_model_config(config, "config.json");
  SafetensorsWriter w;
  for (const auto& t : expected_tensors(c)) {
    if (t.name == "model.norm.weight") continue;
    int64_t n = 1;
    for (auto d : t.shape) n *= d;
    w.add_owned(t.name, "BF16", t.shape, std::vector<uint8_t>(static_cast<size_t>(2 * n)));
  }
  w.write(dir / "model.safetensors");
  InspectReport r = inspect_model(dir.path().string());
  ASSERT_TRUE(r.has_weights);
  EXPECT_EQ(r.tensors.size(), expected_tensors(c).size() - 1);
  EXPECT_EQ(r.check.missing, std::vector<std::string>{"model.norm.weight"});
  std::string text = inspect_text(r);
  EXPECT_NE(text.find("missing tensor model.norm.weight"), std::string::npos) << text;
  EXPECT_NE(text.find("model.layers.0.self_attn.q_proj.bias"), std::string::npos) << text;
  auto j = nlohmann::json::parse(inspect_json(r));
  EXPECT_EQ(j["check"]["ok"], false);
  EXPECT_EQ(j["tensors"][0]["name"], "model.embed_tokens.weight");
  EXPECT_EQ(j["tensors"][0]["shape"], (std::vector<int64_t>{16, 8}));
  // A corrupt weights file is an error, not "no weights".
  test::write_bytes(dir / "model.safetensors", "garbage!garbage");
  EXPECT_THROW(inspect_model(dir.path().string()), Error);
}

}  // namespace
}  // namespace cotune::formats
