// `init-model` output: the folder round-trips through cotune's own loaders, the random model's loss is
// about ln(V), and everything is a function of the seed.
#include "export/demo_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "base/error.h"
#include "base/half.h"
#include "formats/model_config.h"
#include "formats/qwen2_layout.h"
#include "formats/safetensors.h"
#include "init/temp_dir.h"
#include "model/qwen2.h"
#include "model/sequence_loss.h"
#include "text/tokenizer.h"

namespace cotune::exporting {
namespace {

using model::Qwen2Model;
using model::sequence_loss;
using model::SequenceLoss;

using init_test::read_text;
using init_test::TempDir;

InitModelOptions tiny(uint64_t seed, bool tied = false) {
  InitModelOptions o;
  o.preset = "tiny";
  o.seed = seed;
  o.tied = tied;
  return o;
}

TEST(InitModel, PresetsAndOverrides) {
  const auto demo = preset_config("demo");
  EXPECT_EQ(demo.hidden_size, 128);
  EXPECT_EQ(demo.num_hidden_layers, 2);
  EXPECT_EQ(demo.num_attention_heads, 4);
  EXPECT_EQ(demo.num_key_value_heads, 2);
  EXPECT_EQ(demo.head_dim, 32);
  EXPECT_EQ(demo.intermediate_size, 384);
  EXPECT_TRUE(demo.attention_bias);
  EXPECT_FALSE(demo.use_sliding_window);
  InitModelOptions o;
  o.hidden_size = 96;
  o.num_heads = 6;
  const auto c = config_from_options(o);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.intermediate_size, 288);
  o.num_kv_heads = 4;
  EXPECT_THROW(config_from_options(o), Error);  // 6 heads, 4 kv heads
  o = {};
  o.preset = "huge";
  EXPECT_THROW(config_from_options(o), Error);
}

TEST(InitModel, FolderRoundTripsAndRandomLossIsLnV) {
  for (bool tied : {false, true}) {
    TempDir dir;
    const InitModelResult r = init_model(dir.str(), tiny(7, tied));
    for (const char* f : {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                          "tokenizer_config.json"})
      EXPECT_TRUE(std::filesystem::exists(dir / f)) << f;
    const formats::ModelConfig cfg = formats::load_model_config(dir.str());
    EXPECT_EQ(cfg.model_type, "qwen2");
    EXPECT_EQ(cfg.architecture, "Qwen2ForCausalLM");
    EXPECT_EQ(cfg.vocab_size, r.total_vocab);
    EXPECT_EQ(cfg.hidden_size, 64);
    EXPECT_EQ(cfg.tie_word_embeddings, tied);
    EXPECT_TRUE(cfg.attention_bias);
    EXPECT_EQ(cfg.torch_dtype, "bfloat16");

    const auto ckpt = formats::Checkpoint::open(dir.str());
    EXPECT_TRUE(formats::check_checkpoint_against_config(ckpt, cfg).ok());
    EXPECT_EQ(ckpt.find("lm_head.weight") != nullptr, !tied);
    EXPECT_EQ(ckpt.get("model.embed_tokens.weight").dtype_name, "BF16");

    const text::Tokenizer tok = text::Tokenizer::load(dir.str());
    EXPECT_EQ(tok.vocab_size(), r.total_vocab);
    EXPECT_EQ(tok.bos_id(), r.bos_id);
    EXPECT_EQ(tok.eos_id(), r.eos_id);

    const Qwen2Model m = Qwen2Model::load(dir.str());
    const auto ids = tok.encode(builtin_sentence());
    const SequenceLoss loss = sequence_loss(m, ids);
    EXPECT_EQ(loss.tokens, static_cast<int64_t>(ids.size()));
    EXPECT_EQ(loss.predicted, loss.tokens - 1);
    const double lnv = std::log(static_cast<double>(cfg.vocab_size));
    EXPECT_NEAR(loss.mean_loss, lnv, 0.5) << "tied " << tied;
    EXPECT_NEAR(loss.perplexity, std::exp(loss.mean_loss), 1e-9);
  }
}

TEST(InitModel, DeterministicFromTheSeed) {
  TempDir a, b, c;
  init_model(a.str(), tiny(1));
  init_model(b.str(), tiny(1));
  init_model(c.str(), tiny(2));
  for (const char* f : {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                        "tokenizer_config.json"})
    EXPECT_EQ(read_text(a / f), read_text(b / f)) << f;
  EXPECT_NE(read_text(a / "model.safetensors"), read_text(c / "model.safetensors"));
  EXPECT_EQ(read_text(a / "tokenizer.json"), read_text(c / "tokenizer.json"));  // the seed is for weights only
}

TEST(InitModel, WeightsHaveTheRequestedStatistics) {
  TempDir dir;
  InitModelOptions o = tiny(3);
  init_model(dir.str(), o);
  const auto ckpt = formats::Checkpoint::open(dir.str());
  const auto& emb = ckpt.get("model.embed_tokens.weight");
  const auto& norm = ckpt.get("model.layers.0.input_layernorm.weight");
  const auto* e = reinterpret_cast<const uint16_t*>(emb.data);
  double sum = 0, sq = 0;
  const auto n = static_cast<int64_t>(emb.nbytes / 2);
  for (int64_t i = 0; i < n; ++i) {
    const float v = bf16_to_f32(e[i]);
    sum += v;
    sq += double(v) * v;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.002);
  EXPECT_NEAR(std::sqrt(sq / n), 0.02, 0.001);
  const auto* g = reinterpret_cast<const uint16_t*>(norm.data);
  for (size_t i = 0; i < norm.nbytes / 2; ++i) EXPECT_EQ(bf16_to_f32(g[i]), 1.0f);
}

TEST(InitModel, VocabFromFileAndSizeLimits) {
  TempDir dir;
  init_test::write_text(dir / "d.jsonl",
                        "{\"Question\": \"What causes fever?\", \"Complex_CoT\": \"Infection causes fever.\", "
                        "\"Response\": \"Infection.\"}\n");
  InitModelOptions o = tiny(0);
  o.vocab_from = dir / "d.jsonl";
  o.vocab_size = 300;
  const InitModelResult r = init_model(dir / "m", o);
  EXPECT_LE(r.total_vocab, 300);
  EXPECT_GT(r.bpe_merges, 0);
  EXPECT_EQ(formats::load_model_config(dir / "m").vocab_size, r.total_vocab);
  o.vocab_size = 200;  // below 256 + 6
  EXPECT_THROW(init_model(dir / "m2", o), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "m2/config.json"));
}

TEST(InitModel, SequenceLossRejectsBadIds) {
  TempDir dir;
  const InitModelResult r = init_model(dir.str(), tiny(0));
  const Qwen2Model m = Qwen2Model::load(dir.str());
  EXPECT_THROW(sequence_loss(m, {1}), Error);
  EXPECT_THROW(sequence_loss(m, {1, r.total_vocab}), Error);
  EXPECT_THROW(sequence_loss(m, {-1, 2}), Error);
}

}  // namespace
}  // namespace cotune::exporting
