// A tiny randomly initialised model folder (Qwen2 by default; Llama, Qwen3 or Mistral with --arch) that every Hugging Face tool loads: config.json,
// model.safetensors (BF16), generation_config.json and a byte-level BPE tokenizer trained on the demo data.
// It lets the whole pipeline (tokenize, train, sample, export) run on a CPU in seconds, and its loss
// starts at about ln(vocab) — the README demo until real weights are downloaded.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "text/train_bpe.h"

namespace cotune::exporting {

struct InitModelOptions {
  std::string preset = "demo";  // "tiny" | "demo"
  // The decoder family (config.json's model_type): "qwen2" (q/k/v bias), "llama" (no bias, rope theta 500000,
  // rope_scaling llama3 as Llama 3.1), "qwen3" (q/k norm, no bias, rope theta 1e6), "mistral" (no bias, a sliding
  // window of max_position_embeddings / 2).
  std::string arch = "qwen2";
  // Overrides of the preset's shape (0: keep the preset's value).
  int64_t hidden_size = 0, num_layers = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0, intermediate_size = 0;
  int64_t max_position_embeddings = 0;
  bool tied = false;  // tie_word_embeddings (no lm_head.weight tensor)
  uint64_t seed = 0;
  // Tokenizer training text (.jsonl / .json / .txt); empty: a small built-in English corpus.
  std::string vocab_from;
  int32_t vocab_size = 0;  // total ids incl. the 6 added tokens (0: the preset's)
  float init_std = 0.02f;  // HF `initializer_range`: N(0, std) for embeddings, linear weights and biases
};

// The preset's shape: "tiny" (hidden 64, 2 layers, 4/2 heads of 16, intermediate 192, vocab 384) or "demo"
// (hidden 128, 2 layers, 4/2 heads of 32, intermediate 384, vocab 1024). vocab_size is the requested total;
// the trained tokenizer may end up smaller.
formats::ModelConfig preset_config(const std::string& preset);
// The preset with the options' overrides applied, validated (heads * head_dim may differ from hidden,
// num_heads divisible by num_kv_heads, all positive). vocab_size stays the requested total.
formats::ModelConfig config_from_options(const InitModelOptions& opts);

// Random BF16 weights for `config` in HF naming, written atomically to `path`. Embeddings, linear weights
// and q/k/v biases ~ N(0, std), norms = 1. Each tensor draws from its own Philox stream (seed, index of
// the tensor in checkpoint order), so a tensor's values do not depend on the others' shapes.
void write_random_weights(const formats::ModelConfig& config, uint64_t seed, float std, const std::string& path);

struct InitModelResult {
  formats::ModelConfig config;
  int32_t bpe_vocab = 0;     // BPE tokens (256 bytes + merges)
  int32_t bpe_merges = 0;
  int32_t total_vocab = 0;   // BPE + added tokens == config.vocab_size
  int32_t bos_id = -1, eos_id = -1;
  size_t training_texts = 0;
};

// Writes DIR/config.json, DIR/model.safetensors, DIR/generation_config.json, DIR/tokenizer.json and
// DIR/tokenizer_config.json. Everything is a function of the options (deterministic from the seed).
InitModelResult init_model(const std::string& dir, const InitModelOptions& opts);

// The built-in corpus used when no --vocab-from file is given (a few paragraphs of clinical English).
const std::string& builtin_corpus();
// A fixed sentence for `cotune forward` without --text / --ids.
const std::string& builtin_sentence();

}  // namespace cotune::exporting
