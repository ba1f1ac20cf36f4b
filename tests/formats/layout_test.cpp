#include "formats/qwen2_layout.h"

#include <gtest/gtest.h>

#include "common/test_paths.h"
#include "formats/temp_dir.h"

namespace cotune::formats {
namespace {

ModelConfig tiny(bool tied = false) {
  ModelConfig c;
  c.model_type = "qwen2";
  c.architecture = "Qwen2ForCausalLM";
  c.vocab_size = 32;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 4;
  c.attention_bias = true;
  c.tie_word_embeddings = tied;
  return c;
}

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

TEST(Qwen2Layout, NamesShapesAndCountAgreeWithParameterCount) {
  ModelConfig c = tiny();
  auto ts = expected_tensors(c);
  ASSERT_EQ(ts.size(), 1 + 2 * 12 + 1 + 1u);  // embed, 2 x 12 per layer, norm, lm_head
  EXPECT_EQ(ts.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(ts.back().name, "lm_head.weight");
  int64_t total = 0;
  bool saw_k_bias = false, saw_down = false;
  for (const auto& t : ts) {
    total += numel(t.shape);
    if (t.name == "model.layers.1.self_attn.k_proj.bias") {
      saw_k_bias = true;
      EXPECT_EQ(t.shape, (std::vector<int64_t>{4}));
      EXPECT_EQ(t.role, TensorRole::bias);
      EXPECT_EQ(t.layer, 1);
    }
    if (t.name == "model.layers.0.mlp.down_proj.weight") {
      saw_down = true;
      EXPECT_EQ(t.shape, (std::vector<int64_t>{8, 12}));  // [out, in]
    }
  }
  EXPECT_TRUE(saw_k_bias);
  EXPECT_TRUE(saw_down);
  EXPECT_EQ(total, c.parameter_count());
  EXPECT_EQ(expected_tensors(tiny(true)).size(), ts.size() - 1);
  EXPECT_EQ(tiny(true).parameter_count(), c.parameter_count() - 32 * 8);
}

TEST(Qwen2Layout, RealConfigMemory) {
  COTUNE_REQUIRE_FIXTURES(fixtures);
  ModelConfig c = load_model_config(fixtures + "/deepseek-r1-distill-qwen-1.5b");
  auto ts = expected_tensors(c);
  EXPECT_EQ(ts.size(), 1 + 28 * 12 + 1 + 1u);
  int64_t total = 0;
  for (const auto& t : ts) total += numel(t.shape);
  EXPECT_EQ(total, 1'777'088'000);
  WeightMemory m = weight_memory(c);
  EXPECT_EQ(m.bf16_bytes, int64_t{2} * 1'777'088'000);
  // Decoder linears: 28 x 46,792,704 weights at ~0.5 + 1/64 byte; the rest (466.7 M + norms/biases) at 2 bytes.
  const int64_t linear = int64_t{28} * (2 * 1536 * 1536 + 2 * 256 * 1536 + 3 * 1536 * 8960);
  const int64_t rest = int64_t{1'777'088'000} - linear;
  EXPECT_GT(m.nf4_bytes, linear / 2 + linear / 64 + 2 * rest);
  EXPECT_LT(m.nf4_bytes, linear / 2 + linear / 64 + 2 * rest + linear / 64 / 256 * 4 + 28 * 7 * 12);
  EXPECT_EQ(nf4_bytes(64 * 256), 64 * 128 + 256 + 4 + 4);
}

// A checkpoint written from the expected layout, with one tensor dropped and one reshaped.
TEST(Qwen2Layout, CheckCheckpointAgainstConfig) {
  ModelConfig c = tiny();
  auto ts = expected_tensors(c);
  SafetensorsWriter w;
  for (const auto& t : ts) {
    if (t.name == "model.layers.1.mlp.up_proj.weight") continue;
    std::vector<int64_t> shape = t.shape;
    if (t.name == "model.layers.0.self_attn.q_proj.weight") shape = {8, 4};
    w.add_owned(t.name, "BF16", shape, std::vector<uint8_t>(static_cast<size_t>(2 * numel(shape))));
  }
  w.add_owned("model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {2}, std::vector<uint8_t>(8));
  test::TempDir dir;
  w.write(dir / "model.safetensors");
  Checkpoint ck = Checkpoint::open(dir.path().string());
  CheckpointCheck r = check_checkpoint_against_config(ck, c);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.missing, std::vector<std::string>{"model.layers.1.mlp.up_proj.weight"});
  ASSERT_EQ(r.wrong_shape.size(), 1u);
  EXPECT_NE(r.wrong_shape[0].find("model.layers.0.self_attn.q_proj.weight: expected [8, 8], found [8, 4]"),
            std::string::npos)
      << r.wrong_shape[0];
  EXPECT_EQ(r.unexpected, std::vector<std::string>{"model.layers.0.self_attn.rotary_emb.inv_freq"});
  try {
    require_checkpoint_matches_config(ck, c);
    ADD_FAILURE() << "mismatch accepted";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(dir.path().string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing tensor model.layers.1.mlp.up_proj.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("q_proj.weight: expected [8, 8]"), std::string::npos) << msg;
  }
  // The complete checkpoint passes (the extra buffer is tolerated).
  SafetensorsWriter full;
  for (const auto& t : ts) full.add_owned(t.name, "BF16", t.shape, std::vector<uint8_t>(static_cast<size_t>(2 * numel(t.shape))));
  full.write(dir / "model.safetensors");
  Checkpoint ok = Checkpoint::open(dir.path().string());
  EXPECT_TRUE(check_checkpoint_against_config(ok, c).ok());
  EXPECT_NO_THROW(require_checkpoint_matches_config(ok, c));
}

// A checkpoint of some other model misses everything: the error stays readable.
TEST(Qwen2Layout, MismatchMessageIsCapped) {
  ModelConfig c = tiny();
  c.num_hidden_layers = 10;
  SafetensorsWriter w;
  w.add_owned("transformer.wte.weight", "BF16", {2}, std::vector<uint8_t>(4));
  test::TempDir dir;
  w.write(dir / "model.safetensors");
  try {
    require_checkpoint_matches_config(Checkpoint::open(dir.path().string()), c);
    ADD_FAILURE() << "mismatch accepted";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("missing tensor model.embed_tokens.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("... and 113 more"), std::string::npos) << msg;  // 1 + 10*12 + 2 expected, 10 shown
    EXPECT_LT(msg.size(), 1500u) << msg;
  }
}

}  // namespace
}  // namespace cotune::formats
