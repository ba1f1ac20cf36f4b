// LoRA adapters on the seven Qwen2 projections. Weights and gradients are f32 on every device.
// PEFT semantics: y = W x + b + scale * B(A(dropout(x))), scale = alpha / r (or alpha / sqrt(r) with rsLoRA).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "formats/peft_adapter.h"
#include "tensor/arena.h"
#include "tensor/tensor.h"

namespace cotune::model {

// The projections LoRA can target, in a fixed order used for indexing.
enum class Proj : int { q = 0, k, v, o, gate, up, down };
constexpr int kNumProj = 7;
const char* proj_name(Proj p);                    // "q_proj", ...
std::optional<Proj> proj_from_name(const std::string& name);  // accepts "q_proj" or "q"
const char* proj_parent(Proj p);                  // "self_attn" or "mlp"
// (out_features, in_features) of a projection for this config.
std::pair<int64_t, int64_t> proj_shape(const formats::ModelConfig& c, Proj p);

struct LoraConfig {
  int r = 16;
  float alpha = 16.0f;
  float dropout = 0.0f;
  bool use_rslora = false;
  std::vector<std::string> target_modules{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

  static LoraConfig from_peft(const formats::PeftAdapterConfig& p);
  formats::PeftAdapterConfig to_peft(const std::optional<std::string>& base_model) const;

  float scale() const;             // alpha / r, or alpha / sqrt(r)
  bool targets(Proj p) const;      // is p in target_modules
  void validate() const;           // throws Error naming the bad field
};

// A[r, in] and B[out, r] for each targeted projection of each layer (undefined tensors elsewhere),
// plus their gradients. Storage: three flat buffers with the same element offsets — the f32 values, the f32
// gradients (zeroed by one memset) and, on CUDA, bf16 copies of the values (the GEMM operands of the runner,
// so no LoRA call converts A/B). Within a layer, the A matrices of q, k, v (and of gate, up) sit back to back
// when all of them are targeted ("stacked"): the projections that share an input then need one GEMM for
// x @ [A_q; A_k; A_v]^T and one for dA (their gradients are stacked the same way).
class LoraWeights {
 public:
  LoraWeights(const formats::ModelConfig& mc, const LoraConfig& lc, Device device);

  const LoraConfig& config() const { return cfg_; }
  int64_t num_layers() const { return static_cast<int64_t>(A_.size()); }
  const Tensor& A(int64_t layer, Proj p) const { return A_[static_cast<size_t>(layer)][static_cast<int>(p)]; }
  const Tensor& B(int64_t layer, Proj p) const { return B_[static_cast<size_t>(layer)][static_cast<int>(p)]; }
  const Tensor& dA(int64_t layer, Proj p) const { return dA_[static_cast<size_t>(layer)][static_cast<int>(p)]; }
  const Tensor& dB(int64_t layer, Proj p) const { return dB_[static_cast<size_t>(layer)][static_cast<int>(p)]; }
  bool has(int64_t layer, Proj p) const { return A(layer, p).data != nullptr; }
  // bf16 copies of A and B (CUDA only; undefined on the CPU). They follow the f32 values: refreshed by
  // init_peft_default / load_peft_weights, written by the optimizer's update (Param::value16); whoever writes
  // the f32 values another way calls refresh_compute_copies() afterwards.
  const Tensor& A16(int64_t layer, Proj p) const { return A16_[static_cast<size_t>(layer)][static_cast<int>(p)]; }
  const Tensor& B16(int64_t layer, Proj p) const { return B16_[static_cast<size_t>(layer)][static_cast<int>(p)]; }
  void refresh_compute_copies();
  // A(l, q), A(l, k), A(l, v) are rows [0,r), [r,2r), [2r,3r) of one [3r, in] block (same for gate, up).
  bool stacked_qkv() const { return stacked_qkv_; }
  bool stacked_gate_up() const { return stacked_gate_up_; }

  // PEFT default init: A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0. Philox from seed.
  void init_peft_default(uint64_t seed);
  void zero_grads();
  // Copies A/B from a PEFT adapter folder's adapter_model.safetensors (f32/bf16/f16). Every targeted
  // module must be present with the right shape; a key that matches nothing is an error (names the key).
  void load_peft_weights(const std::string& adapter_dir);
  // Writes DIR/adapter_model.safetensors (f32) and DIR/adapter_config.json in PEFT's format (DIR must exist).
  void save_peft(const std::string& dir, const std::optional<std::string>& base_model_name_or_path) const;

  // Every (parameter, gradient) pair in a stable order: layer, projection, A then B.
  struct Param {
    std::string peft_name;  // "base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight"
    Tensor value, grad;
    Tensor value16;         // the bf16 copy of value (CUDA; undefined on the CPU): an update writes it too
  };
  std::vector<Param> params() const;
  int64_t parameter_count() const;
  size_t bytes() const { return arena_.capacity(); }

 private:
  LoraConfig cfg_;
  Arena arena_;
  Tensor values_, grads_, values16_;  // flat f32 / f32 / bf16 buffers (same offsets)
  bool stacked_qkv_ = false, stacked_gate_up_ = false;
  std::vector<std::array<Tensor, kNumProj>> A_, B_, dA_, dB_, A16_, B16_;
};

}  // namespace cotune::model
