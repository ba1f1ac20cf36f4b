#include "formats/qwen2_layout.h"

#include <set>

#include "base/error.h"

namespace cotune::formats {
namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  std::vector<ExpectedTensor> v;
  v.push_back({"model.embed_tokens.weight", {V, H}, TensorRole::embedding, -1});
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    v.push_back({p + "input_layernorm.weight", {H}, TensorRole::norm, l});
    const std::pair<const char*, int64_t> attn[] = {{"q_proj", q}, {"k_proj", kv}, {"v_proj", kv}};
    for (auto [name, out] : attn) {
      v.push_back({p + "self_attn." + name + ".weight", {out, H}, TensorRole::linear, l});
      if (c.attention_bias) v.push_back({p + "self_attn." + name + ".bias", {out}, TensorRole::bias, l});
    }
    v.push_back({p + "self_attn.o_proj.weight", {H, q}, TensorRole::linear, l});
    // Llama's and Qwen3's attention_bias also puts a bias on o_proj; Qwen2's o_proj never has one.
    if (c.o_proj_bias()) v.push_back({p + "self_attn.o_proj.bias", {H}, TensorRole::bias, l});
    if (c.qk_norm) {  // Qwen3: per-head RMSNorm weights of q and k
      v.push_back({p + "self_attn.q_norm.weight", {c.head_dim}, TensorRole::norm, l});
      v.push_back({p + "self_attn.k_norm.weight", {c.head_dim}, TensorRole::norm, l});
    }
    v.push_back({p + "post_attention_layernorm.weight", {H}, TensorRole::norm, l});
    v.push_back({p + "mlp.gate_proj.weight", {I, H}, TensorRole::linear, l});
    if (c.mlp_bias) v.push_back({p + "mlp.gate_proj.bias", {I}, TensorRole::bias, l});
    v.push_back({p + "mlp.up_proj.weight", {I, H}, TensorRole::linear, l});
    if (c.mlp_bias) v.push_back({p + "mlp.up_proj.bias", {I}, TensorRole::bias, l});
    v.push_back({p + "mlp.down_proj.weight", {H, I}, TensorRole::linear, l});
    if (c.mlp_bias) v.push_back({p + "mlp.down_proj.bias", {H}, TensorRole::bias, l});
  }
  v.push_back({"model.norm.weight", {H}, TensorRole::norm, -1});
  if (!c.tie_word_embeddings) v.push_back({"lm_head.weight", {V, H}, TensorRole::lm_head, -1});
  return v;
}

int64_t nf4_bytes(int64_t n) {
  const int64_t blocks = (n + 63) / 64;
  const int64_t blocks2 = (blocks + 255) / 256;
  // 4-bit codes, one uint8 absmax per 64-block, one fp32 absmax (+ the shared fp32 offset, counted per tensor)
  // per 256 blocks.
  return (n + 1) / 2 + blocks + 4 * blocks2 + 4;
}

WeightMemory weight_memory(const ModelConfig& c) {
  WeightMemory m;
  for (const auto& t : expected_tensors(c)) {
    const int64_t n = numel(t.shape);
    m.bf16_bytes += 2 * n;
    m.nf4_bytes += t.role == TensorRole::linear ? nf4_bytes(n) : 2 * n;
  }
  return m;
}

std::string CheckpointCheck::message() const {
  std::string s;
  for (const auto& m : missing) s += "missing tensor " + m + "\n";
  for (const auto& w : wrong_shape) s += "wrong shape: " + w + "\n";
  for (const auto& u : unexpected) s += "unexpected tensor " + u + "\n";
  if (!s.empty()) s.pop_back();
  return s;
}

CheckpointCheck check_checkpoint_against_config(const Checkpoint& ckpt, const ModelConfig& c) {
  CheckpointCheck r;
  std::set<std::string> expected_names;
  for (const auto& t : expected_tensors(c)) {
    expected_names.insert(t.name);
    const TensorEntry* e = ckpt.find(t.name);
    if (!e) {
      r.missing.push_back(t.name);
    } else if (e->shape != t.shape) {
      r.wrong_shape.push_back(t.name + ": expected " + shape_str(t.shape) + ", found " + shape_str(e->shape) +
                              " in " + e->file);
    }
  }
  for (const auto& n : ckpt.names())
    if (!expected_names.count(n)) r.unexpected.push_back(n);
  return r;
}

void require_checkpoint_matches_config(const Checkpoint& ckpt, const ModelConfig& c) {
  CheckpointCheck r = check_checkpoint_against_config(ckpt, c);
  if (r.ok()) return;
  r.unexpected.clear();  // not fatal; keep the message on what is wrong
  const size_t problems = r.missing.size() + r.wrong_shape.size();
  // A wholly different checkpoint misses hundreds of tensors: show the first few of each kind.
  constexpr size_t kShow = 10;
  const size_t hidden = (r.missing.size() > kShow ? r.missing.size() - kShow : 0) +
                        (r.wrong_shape.size() > kShow ? r.wrong_shape.size() - kShow : 0);
  if (r.missing.size() > kShow) r.missing.resize(kShow);
  if (r.wrong_shape.size() > kShow) r.wrong_shape.resize(kShow);
  std::string msg = r.message();
  if (hidden) msg += fmt::format("\n... and {} more", hidden);
  fail("{}: does not match its config ({} {}):\n{}", ckpt.path(), problems, problems == 1 ? "problem" : "problems",
       msg);
}

}  // namespace cotune::formats
