// One decoder layer as data: the layer spec. Built once from the family's Architecture (and the LoRA config, for
// which projections carry adapters), it says which norms, biases and projections a layer has, what sits between
// them (q/k norm, the rope variant, the attention window, the activation) and in which order. The training forward
// and backward (model/layer_train.cpp) walk it, the weight walker (model/weights.h) loads, initialises and
// quantizes the tensors it names; a decode lowering walks the same blocks.
//
// A layer is two residual blocks of one form (pre-norm):
//   x += out( mixer( in_1(h), ..., in_n(h) ) ),   h = rmsnorm(x) * norm
//   attention block: norm input_layernorm,          in q, k, v, mixer attention (q/k norm, rope, causal GQA), out o
//   MLP block:       norm post_attention_layernorm, in gate, up,  mixer silu(gate) * up,                       out down
// Each projection may carry a bias and a LoRA adapter (y += scale * B A x).
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "kernels/rope.h"
#include "model/architecture.h"
#include "model/lora.h"
#include "tensor/tensor.h"

namespace cotune::model {

enum class Norm { input, post };  // input_layernorm, post_attention_layernorm

// What a block computes between its input projections and its output projection.
enum class Mixer {
  attention,  // (q/k norm), rope on q and k, then causal grouped-query attention (or the sliding window)
  gated_mlp,  // activation(gate) * up
};
enum class Activation { silu };  // SwiGLU (every supported family; config.json's hidden_act)

struct ProjectionSpec {
  Proj proj = Proj::q;
  std::string name;              // "self_attn.q_proj": checkpoint tensors model.layers.N.<name>.weight / .bias
  int64_t out_features = 0, in_features = 0;
  bool bias = false;
  bool lora = false;             // a LoRA target (LoraConfig::target_modules)
};

struct BlockSpec {
  const char* name = "";         // "attention" / "mlp"
  Norm norm = Norm::input;
  Proj first_in = Proj::q;       // the n_in projections first_in, first_in + 1, ... read the normed input
  int n_in = 0;
  Mixer mixer = Mixer::attention;
  Proj out = Proj::o;            // its output is added to the residual stream
  Proj in(int i) const { return static_cast<Proj>(static_cast<int>(first_in) + i); }
};

struct AttentionSpec {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  bool qk_norm = false;          // per-head RMSNorm of q and k before rope (Qwen3): weights q_norm / k_norm [D]
  kernels::RopeSpec rope;        // base + scaling variant
  int64_t sliding_window = 0;    // > 0: a query sees the `sliding_window` newest keys (Mistral)
  float scale = 0.0f;            // 1 / sqrt(head_dim)
};

struct LayerSpec {
  float rms_eps = 1e-6f;
  std::array<BlockSpec, 2> blocks;                  // attention, then MLP (the order they run in)
  AttentionSpec attention;
  Activation activation = Activation::silu;
  std::array<ProjectionSpec, kNumProj> projections;  // indexed by Proj

  const ProjectionSpec& projection(Proj p) const { return projections[static_cast<size_t>(p)]; }
  // lora: the adapters' config (nullptr: no projection takes LoRA).
  static LayerSpec from(const Architecture& arch, const LoraConfig* lora = nullptr);
};

// One decoder layer's weights; which optional tensors are defined follows the spec (undefined where absent).
struct LayerWeights {
  Tensor input_norm;                     // [C]
  Tensor q_w, q_b, k_w, k_b, v_w, v_b;   // [H*D, C] (+[H*D]), [KV*D, C] (+[KV*D]); biases undefined if absent
  Tensor q_norm, k_norm;                 // [D] (Qwen3's per-head q/k RMSNorm), undefined if absent
  Tensor o_w, o_b;                       // [C, H*D] (+[C]: Llama/Qwen3 attention_bias)
  Tensor post_norm;                      // [C]
  Tensor gate_w, up_w, down_w;           // [I, C], [I, C], [C, I]
  Tensor gate_b, up_b, down_b;           // [I], [I], [C] (Llama mlp_bias), undefined if absent
  const Tensor& proj(Proj p) const;
  const Tensor& bias(Proj p) const;      // undefined where the architecture has none
  const Tensor& norm(Norm n) const { return n == Norm::input ? input_norm : post_norm; }
};

}  // namespace cotune::model
