// config.json -> ModelConfig for the Qwen2 family (Qwen2, Qwen2.5, DeepSeek-R1-Distill-Qwen) and Llama
// (same code with flags). Accepts files written by transformers 4.x and 5.x; anything cotune does not
// implement (use_sliding_window: true, unknown rope scaling, other architectures) is an error naming the
// file and field.
#pragma once
#include <cstdint>
#include <string>

namespace cotune::formats {

struct ModelConfig {
  std::string model_type;    // "qwen2" | "llama"
  std::string architecture;  // e.g. "Qwen2ForCausalLM"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless given
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2: true)
  bool mlp_bias = false;
  std::string hidden_act = "silu";
  std::string torch_dtype = "bfloat16";  // `torch_dtype` (4.x) or `dtype` (5.x)
  int64_t bos_token_id = -1;  // informational only: special ids come from the tokenizer files
  int64_t eos_token_id = -1;
  int64_t sliding_window = 0;
  bool use_sliding_window = false;

  // Parameters of every tensor (embeddings and LM head included; the LM head counted once if tied).
  int64_t parameter_count() const;
  // Parameters of the linear layers (q,k,v,o,gate,up,down of all layers + the LM head).
  int64_t linear_parameter_count() const;
};

ModelConfig load_model_config(const std::string& path);  // config.json file or folder holding it
ModelConfig parse_model_config(const std::string& json_text, const std::string& source_name);
std::string model_config_to_json(const ModelConfig& c);  // HF-compatible config.json text (transformers 4.x keys)

}  // namespace cotune::formats
