// config.json -> ModelConfig for the decoder families cotune implements: qwen2 (Qwen2, Qwen2.5,
// DeepSeek-R1-Distill-Qwen), llama (Llama 2/3.x, DeepSeek-R1-Distill-Llama, SmolLM), qwen3 and mistral. They
// differ by flags (biases, q/k norm, rope scaling, sliding window); model/architecture.h turns them into the
// layer's description. Accepts files written by transformers 4.x and 5.x; anything cotune does not implement
// (Qwen2/3's use_sliding_window: true, rope scalings other than linear / llama3, other architectures, keys
// that change the math) is an error naming the file and field.
#pragma once
#include <cstdint>
#include <string>

namespace cotune::formats {

struct ModelConfig {
  std::string model_type;    // "qwen2" | "llama" | "qwen3" | "mistral"
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
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2: always; Llama/Qwen3: o_proj too)
  bool mlp_bias = false;        // Llama only
  bool qk_norm = false;         // Qwen3: per-head RMSNorm of q and k (q_norm / k_norm, [head_dim]) before RoPE
  // rope_scaling (4.x) / rope_parameters (5.x): "default", "linear" (factor) or "llama3" (factor, low/high
  // frequency factors, original_max_position_embeddings).
  std::string rope_type = "default";
  double rope_factor = 1.0;
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position_embeddings = 0;
  std::string hidden_act = "silu";
  std::string torch_dtype = "bfloat16";  // `torch_dtype` (4.x) or `dtype` (5.x)
  int64_t bos_token_id = -1;  // informational only: special ids come from the tokenizer files
  int64_t eos_token_id = -1;
  // Mistral: every layer attends to the sliding_window newest keys (0: full causal attention). Qwen2/Qwen3 carry
  // sliding_window / max_window_layers too, used only when use_sliding_window (which cotune rejects): read and
  // ignored.
  int64_t sliding_window = 0;
  bool use_sliding_window = false;
  int64_t max_window_layers = 0;

  bool o_proj_bias() const { return attention_bias && model_type != "qwen2"; }  // Qwen2's o_proj has none
  // The window the attention applies (Mistral's sliding_window), 0 for full causal attention.
  int64_t attention_window() const { return model_type == "mistral" ? sliding_window : 0; }

  // Parameters of every tensor (embeddings and LM head included; the LM head counted once if tied).
  int64_t parameter_count() const;
  // Parameters of the linear layers (q,k,v,o,gate,up,down of all layers + the LM head).
  int64_t linear_parameter_count() const;
};

ModelConfig load_model_config(const std::string& path);  // config.json file or folder holding it
ModelConfig parse_model_config(const std::string& json_text, const std::string& source_name);
std::string model_config_to_json(const ModelConfig& c);  // HF-compatible config.json text (transformers 4.x keys)

}  // namespace cotune::formats
