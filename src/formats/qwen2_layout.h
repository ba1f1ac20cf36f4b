// The tensor layout of a Qwen2 / Llama / Qwen3 / Mistral checkpoint in Hugging Face naming: which tensors a
// ModelConfig implies and their shapes. The model loader and `cotune inspect` both check files against it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "formats/safetensors.h"

namespace cotune::formats {

// What a tensor is for; decides how it is stored (bitsandbytes quantizes only `linear`, keeping the
// embeddings, the LM head, norms and biases in 16 bits).
enum class TensorRole : uint8_t { embedding, linear, bias, norm, lm_head };

struct ExpectedTensor {
  std::string name;            // e.g. "model.layers.3.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // PyTorch order: Linear weights are [out_features, in_features]
  TensorRole role = TensorRole::linear;
  int layer = -1;  // decoder layer index, -1 for embeddings / final norm / LM head
};

// In checkpoint order: embeddings; per layer input_layernorm, q/k/v (+ biases), o, post_attention_layernorm,
// gate/up/down (+ biases if mlp_bias); final norm; lm_head.weight unless tie_word_embeddings.
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c);

// Bytes the weights take in bf16, and as bitsandbytes NF4 stores them (decoder linear weights at 4 bits
// + one 8-bit absmax per 64 weights + one fp32 absmax per 256 blocks (double quantization); everything
// else in bf16).
struct WeightMemory {
  int64_t bf16_bytes = 0;
  int64_t nf4_bytes = 0;
};
WeightMemory weight_memory(const ModelConfig& c);
int64_t nf4_bytes(int64_t numel);  // one NF4 tensor, double-quantized absmax included

// A checkpoint compared with what the config expects. Unexpected tensors (e.g. a duplicated lm_head of a
// tied model, old rotary inv_freq buffers) are reported but not fatal.
struct CheckpointCheck {
  std::vector<std::string> missing;
  std::vector<std::string> unexpected;
  std::vector<std::string> wrong_shape;  // "name: expected [a, b], found [c, d]"
  bool ok() const { return missing.empty() && wrong_shape.empty(); }
  std::string message() const;  // every problem, one per line; empty when ok() and nothing unexpected
};
CheckpointCheck check_checkpoint_against_config(const Checkpoint& ckpt, const ModelConfig& c);
// Throws Error "<checkpoint>: does not match config: <problems>" unless check(...).ok().
void require_checkpoint_matches_config(const Checkpoint& ckpt, const ModelConfig& c);

}  // namespace cotune::formats
