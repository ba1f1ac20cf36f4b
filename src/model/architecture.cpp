#include "model/architecture.h"

#include <fmt/format.h>

#include <cmath>

#include "base/error.h"

namespace cotune::model {

Architecture Architecture::from_config(const formats::ModelConfig& c) {
  Architecture a;
  a.family = c.model_type;
  a.hidden = c.hidden_size;
  a.intermediate = c.intermediate_size;
  a.layers = c.num_hidden_layers;
  a.vocab = c.vocab_size;
  a.heads = c.num_attention_heads;
  a.kv_heads = c.num_key_value_heads;
  a.head_dim = c.head_dim;
  a.qkv_bias = c.attention_bias;
  a.o_bias = c.o_proj_bias();
  a.mlp_bias = c.mlp_bias;
  a.qk_norm = c.qk_norm;
  a.tied_embeddings = c.tie_word_embeddings;
  a.rms_eps = static_cast<float>(c.rms_norm_eps);
  a.rope.theta = static_cast<float>(c.rope_theta);
  if (c.rope_type == "linear") {
    a.rope.scaling = kernels::RopeScaling::linear;
  } else if (c.rope_type == "llama3") {
    a.rope.scaling = kernels::RopeScaling::llama3;
  } else if (c.rope_type != "default") {
    fail("config: rope_type \"{}\" is not implemented", c.rope_type);  // parse_model_config rejects it first
  }
  a.rope.factor = static_cast<float>(c.rope_factor);
  a.rope.low_freq_factor = static_cast<float>(c.rope_low_freq_factor);
  a.rope.high_freq_factor = static_cast<float>(c.rope_high_freq_factor);
  a.rope.original_max_position = static_cast<float>(c.rope_original_max_position_embeddings);
  a.sliding_window = c.attention_window();
  if (c.hidden_act != "silu") fail("config: hidden_act \"{}\" is not implemented (only silu)", c.hidden_act);
  return a;
}

float Architecture::attention_scale() const { return 1.0f / std::sqrt(static_cast<float>(head_dim)); }

std::string Architecture::summary() const {
  std::string bias = qkv_bias ? (o_bias ? "q/k/v/o bias" : "q/k/v bias") : "no attention bias";
  if (mlp_bias) bias += ", mlp bias";
  std::string rope_s = fmt::format("rope theta {}", rope.theta);
  if (rope.scaling == kernels::RopeScaling::linear) rope_s += fmt::format(" linear x{}", rope.factor);
  if (rope.scaling == kernels::RopeScaling::llama3) rope_s += fmt::format(" llama3 x{}", rope.factor);
  return fmt::format("{}: {} layers, hidden {}, {} heads / {} kv heads of {}, {}{}, {}{}{}", family, layers, hidden,
                     heads, kv_heads, head_dim, bias, qk_norm ? ", q/k norm" : "", rope_s,
                     tied_embeddings ? ", tied embeddings" : "",
                     sliding_window > 0 ? fmt::format(", sliding window {}", sliding_window) : std::string());
}

}  // namespace cotune::model
