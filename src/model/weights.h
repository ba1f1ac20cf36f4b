// The frozen base of a decoder model: its weights (bf16 or f32, or NF4 for a QLoRA base), loaded from a checkpoint
// or made at random, through one layer walker (layer_tensors: every tensor of a layer, its name, shape and kind),
// so loading, random init and NF4 quantization list a layer's tensors once, from the layer spec (model/layer.h).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "kernels/quant.h"
#include "model/architecture.h"
#include "model/layer.h"
#include "model/lora.h"
#include "tensor/arena.h"
#include "tensor/tensor.h"

namespace cotune::formats {
class Checkpoint;
}

namespace cotune::model {

struct Weights {
  Tensor embed;       // [V, C]
  Tensor final_norm;  // [C]
  Tensor lm_head;     // [V, C] (the embedding itself when tied)
  std::vector<LayerWeights> layers;
};

// One tensor of a decoder layer, as the walker lists it.
struct LayerTensor {
  enum class Kind {
    norm,        // a norm weight (input/post norm, q/k norm): initialised to ones
    projection,  // a projection's weight [out, in]: what a 4-bit base holds as NF4
    bias,        // a projection's bias [out]
  };
  std::string name;             // after "model.layers.N.": "self_attn.q_proj.weight"
  Shape shape;
  Kind kind = Kind::norm;
  Tensor LayerWeights::*slot = nullptr;  // where the tensor lives in LayerWeights
  Proj proj = Proj::q;                   // the projection (kinds projection and bias)
};
// Every tensor of a layer of this spec, in one fixed order: input norm, post norm, q/k/v weights, q/k/v biases,
// q/k norms, o weight and bias, gate/up/down weights, gate/up/down biases (the optional ones where the spec has them).
// Random init draws one Philox stream per tensor in this order, so the order is part of what `random` produces.
std::vector<LayerTensor> layer_tensors(const LayerSpec& spec);

struct LoadOptions {
  Device device = Device::cpu;
  // QLoRA base: the seven projections of every layer are quantized to NF4 (bitsandbytes layout, blocks of 64,
  // double-quantized absmax); embeddings, norms and the LM head stay 16-bit. On the CPU the weights are held
  // dequantized in f32 (the NF4-rounded values, so the numerics are those of a 4-bit base).
  bool load_in_4bit = false;
};

class Qwen2Model {
 public:
  // Reads config.json and the safetensors weights (single or sharded) of a model folder; weights are
  // converted to the device's storage dtype (f32 on CPU, bf16 on CUDA). Errors name the tensor and file.
  static Qwen2Model load(const std::string& model_dir, const LoadOptions& opts = {});
  static Qwen2Model from_checkpoint(const formats::ModelConfig& config, const formats::Checkpoint& ckpt,
                                    const LoadOptions& opts = {});
  // Random weights of the config's shape (normal(0, init_std), norms 1, biases normal(0, init_std)), for
  // benchmarks: speed does not depend on the weights' values.
  static Qwen2Model random(const formats::ModelConfig& config, const LoadOptions& opts = {}, uint64_t seed = 0,
                           float init_std = 0.02f);

  const formats::ModelConfig& config() const { return config_; }
  const Architecture& arch() const { return arch_; }  // what the layer computes (model/architecture.h)
  const LayerSpec& layer_spec() const { return spec_; }  // the layer as data, without LoRA (model/layer.h)
  // On CUDA with load_in_4bit, the seven projections of each layer are held only as NF4 (weights().layers[l]
  // then has undefined projection tensors): dequantize_layer() writes them to a bf16 scratch before use.
  const Weights& weights() const { return weights_; }
  bool nf4() const { return !nf4_.empty(); }
  const kernels::Nf4Weight& nf4_weight(int64_t layer, Proj p) const {
    return nf4_[static_cast<size_t>(layer)][static_cast<int>(p)].view;
  }
  // Writes layer l's projections (bf16) into `scratch` (whose projection tensors must have the right shapes).
  void dequantize_layer(int64_t layer, LayerWeights& scratch) const;
  Device device() const { return device_; }
  DType act_dtype() const { return device_ == Device::cpu ? DType::f32 : DType::bf16; }
  size_t weight_bytes() const { return arena_ ? arena_->capacity() : 0; }

 private:
  formats::ModelConfig config_;
  Architecture arch_;
  LayerSpec spec_;
  Device device_ = Device::cpu;
  std::unique_ptr<Arena> arena_;
  Weights weights_;
  struct Nf4Slot {
    kernels::Nf4Weight view;  // device tensors in arena_
  };
  std::vector<std::array<Nf4Slot, kNumProj>> nf4_;
  static Qwen2Model empty(const formats::ModelConfig& config, Device device);
  void finish_layer(LayerWeights& w, bool load_in_4bit, Arena& scratch);  // NF4 conversion of a fresh layer
};

// One layer's projections of an NF4 base, dequantized into a bf16 scratch when asked for and reused while the
// same layer is asked for again (forward then backward of the last layer share one dequantization). For a
// 16-bit base it allocates nothing and returns the model's own weights.
class Nf4LayerCache {
 public:
  void allocate(const Qwen2Model& model, Arena& arena);  // the scratch, from `arena` (no-op unless model.nf4())
  const LayerWeights& get(const Qwen2Model& model, int64_t layer);
  void invalidate() { loaded_ = -1; }  // the scratch no longer holds what it held (e.g. a captured graph ran nothing)

 private:
  LayerWeights scratch_;
  std::vector<LayerTensor> tensors_;  // layer_tensors of the model's spec
  int64_t loaded_ = -1;
};

}  // namespace cotune::model
