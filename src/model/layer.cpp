#include "model/layer.h"

namespace cotune::model {

LayerSpec LayerSpec::from(const Architecture& arch, const LoraConfig* lora) {
  LayerSpec s;
  s.rms_eps = arch.rms_eps;
  const int64_t C = arch.hidden, I = arch.intermediate;
  const int64_t QD = arch.heads * arch.head_dim, KVD = arch.kv_heads * arch.head_dim;
  auto projection = [&](Proj p, int64_t out, int64_t in, bool bias) {
    ProjectionSpec& ps = s.projections[static_cast<size_t>(p)];
    ps.proj = p;
    ps.name = std::string(proj_parent(p)) + "." + proj_name(p);
    ps.out_features = out;
    ps.in_features = in;
    ps.bias = bias;
    ps.lora = lora && lora->targets(p);
  };
  projection(Proj::q, QD, C, arch.qkv_bias);
  projection(Proj::k, KVD, C, arch.qkv_bias);
  projection(Proj::v, KVD, C, arch.qkv_bias);
  projection(Proj::o, C, QD, arch.o_bias);
  projection(Proj::gate, I, C, arch.mlp_bias);
  projection(Proj::up, I, C, arch.mlp_bias);
  projection(Proj::down, C, I, arch.mlp_bias);
  s.blocks[0] = BlockSpec{"attention", Norm::input, Proj::q, 3, Mixer::attention, Proj::o};
  s.blocks[1] = BlockSpec{"mlp", Norm::post, Proj::gate, 2, Mixer::gated_mlp, Proj::down};
  s.attention.heads = arch.heads;
  s.attention.kv_heads = arch.kv_heads;
  s.attention.head_dim = arch.head_dim;
  s.attention.qk_norm = arch.qk_norm;
  s.attention.rope = arch.rope;
  s.attention.sliding_window = arch.sliding_window;
  s.attention.scale = arch.attention_scale();
  s.activation = Activation::silu;  // Architecture::from_config rejects any other hidden_act
  return s;
}

const Tensor& LayerWeights::proj(Proj p) const {
  switch (p) {
    case Proj::q: return q_w;
    case Proj::k: return k_w;
    case Proj::v: return v_w;
    case Proj::o: return o_w;
    case Proj::gate: return gate_w;
    case Proj::up: return up_w;
    case Proj::down: return down_w;
  }
  return q_w;
}

const Tensor& LayerWeights::bias(Proj p) const {
  switch (p) {
    case Proj::q: return q_b;
    case Proj::k: return k_b;
    case Proj::v: return v_b;
    case Proj::o: return o_b;
    case Proj::gate: return gate_b;
    case Proj::up: return up_b;
    case Proj::down: return down_b;
  }
  return q_b;
}

}  // namespace cotune::model
