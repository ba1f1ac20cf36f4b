// What a decoder family's layer computes, derived once from config.json: the one description the layer spec
// (model/layer.h, which the training runner and the weight walker read), the decoder (infer/generator.cpp) and the
// CUDA lowering read, instead of each asking "is this Qwen2?". The families: qwen2 (Qwen2, Qwen2.5, DeepSeek-R1-Distill-Qwen),
// llama (Llama 2/3.x, DeepSeek-R1-Distill-Llama, SmolLM), qwen3, mistral.
//
// The layer (pre-norm, residual):
//   h  = rmsnorm(x) * input_norm
//   q, k, v = h W_q^T (+ b_q), h W_k^T (+ b_k), h W_v^T (+ b_v)        qkv_bias
//   q, k = rmsnorm_per_head(q) * q_norm, rmsnorm_per_head(k) * k_norm     qk_norm (Qwen3)
//   q, k = rope(q), rope(k)                                                rope (theta + scaling)
//   x += attention(q, k, v) W_o^T (+ b_o)                                  o_bias; causal, or the sliding window
//   x += down(silu(gate(h2)) * up(h2)) (+ biases), h2 = rmsnorm(x) * post_norm   mlp_bias
#pragma once
#include <cstdint>
#include <string>

#include "formats/model_config.h"
#include "kernels/rope.h"

namespace cotune::model {

struct Architecture {
  std::string family;  // config.json's model_type
  int64_t hidden = 0, intermediate = 0, layers = 0, vocab = 0;
  int64_t heads = 0, kv_heads = 0, head_dim = 0;  // head_dim may differ from hidden / heads (Qwen3)
  bool qkv_bias = false;         // q/k/v projections (Qwen2)
  bool o_bias = false;           // o projection (Llama/Qwen3 attention_bias)
  bool mlp_bias = false;         // gate/up/down (Llama mlp_bias)
  bool qk_norm = false;          // per-head RMSNorm of q and k before RoPE (Qwen3)
  bool tied_embeddings = false;  // the LM head is the embedding matrix
  float rms_eps = 1e-6f;
  kernels::RopeSpec rope;        // base + scaling (llama3 / linear)
  int64_t sliding_window = 0;    // > 0: each query sees the `sliding_window` newest keys (Mistral)

  static Architecture from_config(const formats::ModelConfig& c);
  float attention_scale() const;  // 1 / sqrt(head_dim)
  // Whether the layer is exactly the Qwen2-era one the fused CUDA decode step implements (bias only on q/k/v, no
  // q/k norm, no window); the rope variant is passed through.
  bool plain_layer() const { return !o_bias && !mlp_bias && !qk_norm && sliding_window == 0; }
  std::string summary() const;  // one line for logs: "llama: 16 layers, ... rope llama3 x8, no bias"
};

}  // namespace cotune::model
