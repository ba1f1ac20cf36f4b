#include "model/weights.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/half.h"
#include "base/rng.h"
#include "formats/safetensors.h"
#include "kernels/ops.h"
#include "kernels/quant.h"

namespace cotune::model {

namespace ops = cotune::kernels;

// ---- weights ------------------------------------------------------------------------------------

std::vector<LayerTensor> layer_tensors(const LayerSpec& spec) {
  using Kind = LayerTensor::Kind;
  std::vector<LayerTensor> out;
  const int64_t C = spec.projection(Proj::o).out_features, D = spec.attention.head_dim;
  out.push_back({"input_layernorm.weight", {C}, Kind::norm, &LayerWeights::input_norm});
  out.push_back({"post_attention_layernorm.weight", {C}, Kind::norm, &LayerWeights::post_norm});
  Tensor LayerWeights::*const weight[kNumProj] = {&LayerWeights::q_w,    &LayerWeights::k_w,  &LayerWeights::v_w,
                                                  &LayerWeights::o_w,    &LayerWeights::gate_w, &LayerWeights::up_w,
                                                  &LayerWeights::down_w};
  Tensor LayerWeights::*const bias[kNumProj] = {&LayerWeights::q_b,    &LayerWeights::k_b,  &LayerWeights::v_b,
                                                &LayerWeights::o_b,    &LayerWeights::gate_b, &LayerWeights::up_b,
                                                &LayerWeights::down_b};
  auto weights = [&](std::initializer_list<Proj> ps) {
    for (Proj p : ps) {
      const ProjectionSpec& s = spec.projection(p);
      out.push_back({s.name + ".weight", {s.out_features, s.in_features}, Kind::projection,
                     weight[static_cast<int>(p)], p});
    }
  };
  auto biases = [&](std::initializer_list<Proj> ps) {
    for (Proj p : ps) {
      const ProjectionSpec& s = spec.projection(p);
      if (s.bias) out.push_back({s.name + ".bias", {s.out_features}, Kind::bias, bias[static_cast<int>(p)], p});
    }
  };
  weights({Proj::q, Proj::k, Proj::v});
  biases({Proj::q, Proj::k, Proj::v});
  if (spec.attention.qk_norm) {
    out.push_back({"self_attn.q_norm.weight", {D}, Kind::norm, &LayerWeights::q_norm});
    out.push_back({"self_attn.k_norm.weight", {D}, Kind::norm, &LayerWeights::k_norm});
  }
  weights({Proj::o});
  biases({Proj::o});
  weights({Proj::gate, Proj::up, Proj::down});
  biases({Proj::gate, Proj::up, Proj::down});
  return out;
}

namespace {

// Copies a checkpoint tensor into a new tensor of the device's storage dtype, checking its shape.
Tensor load_tensor(Arena& arena, const formats::Checkpoint& ckpt, const std::string& name, Shape expected,
                   DType storage) {
  const formats::TensorEntry& e = ckpt.get(name);
  std::vector<int64_t> want(expected.dims.begin(), expected.dims.begin() + expected.ndim);
  if (e.shape != want) {
    std::string got = "[";
    for (size_t i = 0; i < e.shape.size(); ++i) got += (i ? ", " : "") + std::to_string(e.shape[i]);
    fail("{}: tensor {} has shape {}, the config expects {}", e.file, name, got + "]", expected.str());
  }
  if (const int64_t bad = formats::first_non_finite(e); bad >= 0)
    fail("{}: tensor {} holds a NaN or infinite value at element {}: the weights are corrupt", e.file, name, bad);
  Tensor src = e.tensor();
  Tensor dst = arena.alloc(storage, expected, name);
  if (src.dtype == storage) {
    copy_bytes(dst, src);
    return dst;
  }
  if (src.dtype != DType::f32 && src.dtype != DType::bf16 && src.dtype != DType::f16)
    fail("{}: tensor {} has dtype {}; weights must be F32, BF16 or F16", e.file, name, e.dtype_name);
  // Convert on the host, then move to the device.
  std::vector<float> f(static_cast<size_t>(src.numel()));
  ops::copy(Tensor(f.data(), DType::f32, expected), src.view(expected));
  if (storage == DType::f32) {
    copy_bytes(dst, Tensor(f.data(), DType::f32, expected));
  } else {
    std::vector<uint16_t> h(f.size());
    ops::copy(Tensor(h.data(), storage, expected), Tensor(f.data(), DType::f32, expected));
    copy_bytes(dst, Tensor(h.data(), storage, expected));
  }
  return dst;
}

// Replaces a weight by its NF4 quantize -> dequantize round trip (bitsandbytes' values).
void nf4_round_in_place(const Tensor& w) {
  if (w.device != Device::cpu) fail("4-bit weights on {} are not available in this build", device_name(w.device));
  std::vector<float> host(static_cast<size_t>(w.numel()));
  Tensor h(host.data(), DType::f32, w.shape);
  ops::copy(h, w);
  kernels::Nf4Buffers q = kernels::nf4_quantize(h);
  kernels::nf4_dequantize(q.view(), h);
  ops::copy(w, h);
}

}  // namespace

Qwen2Model Qwen2Model::load(const std::string& model_dir, const LoadOptions& opts) {
  return with_context("loading model " + model_dir, [&] {
    formats::ModelConfig cfg = formats::load_model_config(model_dir);
    formats::Checkpoint ckpt = formats::Checkpoint::open(model_dir);
    return from_checkpoint(cfg, ckpt, opts);
  });
}

Qwen2Model Qwen2Model::empty(const formats::ModelConfig& cfg, Device device) {
  Qwen2Model m;
  m.config_ = cfg;
  m.arch_ = Architecture::from_config(cfg);
  m.spec_ = LayerSpec::from(m.arch_);
  m.device_ = device;
  m.arena_ = std::make_unique<Arena>(device);
  return m;
}

Qwen2Model Qwen2Model::from_checkpoint(const formats::ModelConfig& cfg, const formats::Checkpoint& ckpt,
                                       const LoadOptions& opts) {
  Qwen2Model m = empty(cfg, opts.device);
  const DType st = m.act_dtype();
  const int64_t C = cfg.hidden_size, V = cfg.vocab_size;
  Arena& a = *m.arena_;
  // A 4-bit base on the GPU: each projection is read into a bf16 work buffer on the device (reused layer after
  // layer) and quantized there; only its NF4 form stays.
  const bool stage = opts.load_in_4bit && opts.device != Device::cpu;
  Arena work(opts.device), scratch(opts.device);
  Arena& pa = stage ? work : a;
  m.weights_.embed = load_tensor(a, ckpt, "model.embed_tokens.weight", {V, C}, st);
  m.weights_.final_norm = load_tensor(a, ckpt, "model.norm.weight", {C}, st);
  if (cfg.tie_word_embeddings) {
    m.weights_.lm_head = m.weights_.embed;
  } else {
    m.weights_.lm_head = load_tensor(a, ckpt, "lm_head.weight", {V, C}, st);
  }
  const std::vector<LayerTensor> tensors = layer_tensors(m.spec_);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    LayerWeights w;
    work.reset();
    scratch.reset();
    for (const LayerTensor& t : tensors) {
      const bool proj = t.kind == LayerTensor::Kind::projection;
      w.*t.slot = load_tensor(proj ? pa : a, ckpt, prefix + t.name, t.shape, st);
    }
    m.finish_layer(w, opts.load_in_4bit, scratch);
    m.weights_.layers.push_back(w);
  }
  return m;
}

Qwen2Model Qwen2Model::random(const formats::ModelConfig& cfg, const LoadOptions& opts, uint64_t seed, float init_std) {
  Qwen2Model m = empty(cfg, opts.device);
  const DType st = m.act_dtype();
  const int64_t C = cfg.hidden_size, V = cfg.vocab_size;
  uint64_t stream = 0;
  // Each tensor is drawn where it lives (kernels::fill_normal: Philox by element index, the same numbers on the CPU
  // and the GPU), so a 32B model's weights never cross the bus. A 4-bit base draws its projections into a device
  // work buffer (reused layer after layer) and quantizes them there.
  const bool stage = opts.load_in_4bit && opts.device != Device::cpu;
  Arena work(opts.device), scratch(opts.device);
  auto make = [&](Shape s, bool ones, bool proj = false) {
    Tensor t = (stage && proj ? work : *m.arena_).alloc(st, s, "random weight");
    const uint64_t key = seed * 0x9E3779B97F4A7C15ull + (++stream);
    if (ones && st == DType::f32) {
      std::vector<float> f(static_cast<size_t>(s.numel()), 1.0f);
      copy_bytes(t, Tensor(f.data(), DType::f32, s));
    } else if (ones) {
      std::vector<uint16_t> h(static_cast<size_t>(s.numel()), f32_to_bf16(1.0f));
      copy_bytes(t, Tensor(h.data(), DType::bf16, s));
    } else {
      ops::fill_normal(t, key, init_std);
    }
    return t;
  };
  m.weights_.embed = make({V, C}, false);
  m.weights_.final_norm = make({C}, true);
  m.weights_.lm_head = cfg.tie_word_embeddings ? m.weights_.embed : make({V, C}, false);
  const std::vector<LayerTensor> tensors = layer_tensors(m.spec_);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    LayerWeights w;
    work.reset();
    scratch.reset();
    for (const LayerTensor& t : tensors)
      w.*t.slot = make(t.shape, t.kind == LayerTensor::Kind::norm, t.kind == LayerTensor::Kind::projection);
    m.finish_layer(w, opts.load_in_4bit, scratch);
    m.weights_.layers.push_back(w);
  }
  return m;
}

void Qwen2Model::finish_layer(LayerWeights& w, bool load_in_4bit, Arena& scratch) {
  if (!load_in_4bit) return;
  std::vector<LayerTensor> projs = layer_tensors(spec_);
  std::erase_if(projs, [](const LayerTensor& t) { return t.kind != LayerTensor::Kind::projection; });
  if (device_ == Device::cpu) {
    // The CPU reference holds the NF4-rounded values in f32: the numerics of a 4-bit base.
    for (const LayerTensor& t : projs) nf4_round_in_place(w.*t.slot);
    return;
  }
  // GPU: the projections arrive as bf16 device tensors in a work buffer; they are quantized on the GPU
  // (bitsandbytes layout, kernels::nf4_quantize_to) and only the NF4 tensors are kept.
  std::array<Nf4Slot, kNumProj> slots;
  for (const LayerTensor& pt : projs) {
    Tensor& t = w.*pt.slot;
    slots[static_cast<size_t>(pt.proj)].view = kernels::nf4_quantize_to(t, *arena_, scratch);
    t = Tensor();  // the projection now exists only as NF4
  }
  nf4_.push_back(slots);
}

void Nf4LayerCache::allocate(const Qwen2Model& model, Arena& arena) {
  if (!model.nf4()) return;
  tensors_ = layer_tensors(model.layer_spec());
  for (const LayerTensor& t : tensors_)
    if (t.kind == LayerTensor::Kind::projection)
      scratch_.*t.slot = arena.alloc(model.act_dtype(), t.shape, "nf4 scratch " + t.name);
  loaded_ = -1;
}

const LayerWeights& Nf4LayerCache::get(const Qwen2Model& model, int64_t layer) {
  const LayerWeights& base = model.weights().layers[static_cast<size_t>(layer)];
  if (!model.nf4()) return base;
  if (loaded_ != layer) {
    // Norms and biases are the model's own; the projections are dequantized into the scratch.
    for (const LayerTensor& t : tensors_)
      if (t.kind != LayerTensor::Kind::projection) scratch_.*t.slot = base.*t.slot;
    model.dequantize_layer(layer, scratch_);
    loaded_ = layer;
  }
  return scratch_;
}

void Qwen2Model::dequantize_layer(int64_t layer, LayerWeights& scratch) const {
  // Called once a layer a step (outside captured graphs): fixed arrays, no walker allocation.
  std::array<kernels::Nf4Weight, kNumProj> qs;
  std::array<Tensor, kNumProj> outs;
  for (int p = 0; p < kNumProj; ++p) {
    qs[static_cast<size_t>(p)] = nf4_weight(layer, static_cast<Proj>(p));
    outs[static_cast<size_t>(p)] = scratch.proj(static_cast<Proj>(p));
  }
  kernels::nf4_dequantize_batch(qs, outs);  // on CUDA one launch for the seven projections
}

}  // namespace cotune::model
