#include "model/lora.h"

#include <cmath>

#include <set>

#include "base/error.h"
#include "base/mmap.h"
#include "formats/safetensors.h"
#include "kernels/ops.h"
#include "base/rng.h"
#include "tensor/arena.h"

namespace cotune::model {

namespace {
constexpr const char* kProjNames[kNumProj] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj"};
}

const char* proj_name(Proj p) { return kProjNames[static_cast<int>(p)]; }

std::optional<Proj> proj_from_name(const std::string& name) {
  for (int i = 0; i < kNumProj; ++i) {
    std::string full = kProjNames[i];
    if (name == full || name + "_proj" == full) return static_cast<Proj>(i);
  }
  return std::nullopt;
}

const char* proj_parent(Proj p) { return static_cast<int>(p) <= static_cast<int>(Proj::o) ? "self_attn" : "mlp"; }

std::pair<int64_t, int64_t> proj_shape(const formats::ModelConfig& c, Proj p) {
  const int64_t C = c.hidden_size, I = c.intermediate_size;
  const int64_t qd = c.num_attention_heads * c.head_dim, kvd = c.num_key_value_heads * c.head_dim;
  switch (p) {
    case Proj::q: return {qd, C};
    case Proj::k: return {kvd, C};
    case Proj::v: return {kvd, C};
    case Proj::o: return {C, qd};
    case Proj::gate: return {I, C};
    case Proj::up: return {I, C};
    case Proj::down: return {C, I};
  }
  return {0, 0};
}

LoraConfig LoraConfig::from_peft(const formats::PeftAdapterConfig& p) {
  LoraConfig c;
  c.r = p.r;
  c.alpha = static_cast<float>(p.lora_alpha);
  c.dropout = static_cast<float>(p.lora_dropout);
  c.use_rslora = p.use_rslora;
  c.target_modules = p.target_modules;
  return c;
}

formats::PeftAdapterConfig LoraConfig::to_peft(const std::optional<std::string>& base_model) const {
  formats::PeftAdapterConfig p;
  p.r = r;
  p.lora_alpha = alpha;
  p.lora_dropout = dropout;
  p.use_rslora = use_rslora;
  for (int i = 0; i < kNumProj; ++i)
    if (targets(static_cast<Proj>(i))) p.target_modules.push_back(kProjNames[i]);
  p.base_model_name_or_path = base_model;
  return p;
}

float LoraConfig::scale() const {
  return use_rslora ? alpha / std::sqrt(static_cast<float>(r)) : alpha / static_cast<float>(r);
}

bool LoraConfig::targets(Proj p) const {
  for (const auto& t : target_modules)
    if (proj_from_name(t) == p) return true;
  return false;
}

void LoraConfig::validate() const {
  if (r <= 0) fail("lora r must be positive, got {}", r);
  if (!(dropout >= 0.0f && dropout < 1.0f)) fail("lora_dropout must be in [0, 1), got {}", dropout);
  if (target_modules.empty()) fail("lora target_modules is empty: name at least one of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj");
  for (const auto& t : target_modules)
    if (!proj_from_name(t))
      fail("lora target module '{}' is not one of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj", t);
}

LoraWeights::LoraWeights(const formats::ModelConfig& mc, const LoraConfig& lc, Device device)
    : cfg_(lc), arena_(device) {
  cfg_.validate();
  const auto L = static_cast<size_t>(mc.num_hidden_layers);
  A_.resize(L);
  B_.resize(L);
  dA_.resize(L);
  dB_.resize(L);
  for (size_t l = 0; l < L; ++l)
    for (int p = 0; p < kNumProj; ++p) {
      if (!cfg_.targets(static_cast<Proj>(p))) continue;
      auto [out, in] = proj_shape(mc, static_cast<Proj>(p));
      A_[l][p] = arena_.zeros(DType::f32, {cfg_.r, in}, "lora_A");
      B_[l][p] = arena_.zeros(DType::f32, {out, cfg_.r}, "lora_B");
      dA_[l][p] = arena_.zeros(DType::f32, {cfg_.r, in}, "lora_A grad");
      dB_[l][p] = arena_.zeros(DType::f32, {out, cfg_.r}, "lora_B grad");
    }
}

void LoraWeights::init_peft_default(uint64_t seed) {
  Rng rng(seed);
  for (size_t l = 0; l < A_.size(); ++l)
    for (int p = 0; p < kNumProj; ++p) {
      const Tensor& a = A_[l][p];
      if (!a.data) continue;
      // kaiming_uniform_(a=sqrt(5)) on [r, in]: gain = sqrt(2/(1+5)), bound = gain*sqrt(3/fan_in) = 1/sqrt(fan_in).
      const float bound = 1.0f / std::sqrt(static_cast<float>(a.dim(1)));
      std::vector<float> host(static_cast<size_t>(a.numel()));
      for (auto& x : host) x = (2.0f * rng.uniform() - 1.0f) * bound;
      copy_bytes(a, Tensor(host.data(), DType::f32, a.shape));
      fill_zero(B_[l][p]);
    }
}

void LoraWeights::zero_grads() {
  for (size_t l = 0; l < A_.size(); ++l)
    for (int p = 0; p < kNumProj; ++p)
      if (dA_[l][p].data) {
        fill_zero(dA_[l][p]);
        fill_zero(dB_[l][p]);
      }
}

void LoraWeights::load_peft_weights(const std::string& adapter_dir) {
  std::string file = adapter_dir + "/adapter_model.safetensors";
  formats::SafetensorsFile f = formats::SafetensorsFile::open(file);
  std::set<std::string> used;
  for (const Param& p : params()) {
    const formats::TensorEntry* e = f.find(p.peft_name);
    if (!e) fail("{}: adapter tensor {} is missing", file, p.peft_name);
    std::vector<int64_t> want(p.value.shape.dims.begin(), p.value.shape.dims.begin() + p.value.ndim());
    if (e->shape != want)
      fail("{}: adapter tensor {} has the wrong shape (expected {})", file, p.peft_name, p.value.shape.str());
    Tensor src = e->tensor();
    std::vector<float> host(static_cast<size_t>(p.value.numel()));
    Tensor h(host.data(), DType::f32, p.value.shape);
    kernels::copy(h, src.view(p.value.shape));
    copy_bytes(p.value, h);
    used.insert(p.peft_name);
  }
  for (const auto& e : f.tensors())
    if (!used.count(e.name))
      fail("{}: adapter tensor {} does not match any LoRA module of this model/config (unexpected key)", file, e.name);
}

void LoraWeights::save_peft(const std::string& dir, const std::optional<std::string>& base_model) const {
  // Host copies of every A/B (they may live on the GPU), alive until the writer has run.
  std::vector<std::vector<float>> host;
  formats::SafetensorsWriter w;
  auto ps = params();
  host.reserve(ps.size());
  for (const auto& p : ps) {
    host.emplace_back(static_cast<size_t>(p.value.numel()));
    copy_bytes(Tensor(host.back().data(), DType::f32, p.value.shape), p.value);
    w.add(p.peft_name, Tensor(host.back().data(), DType::f32, p.value.shape));
  }
  w.set_metadata("format", "pt");
  w.write(dir + "/adapter_model.safetensors");
  write_file_atomic(dir + "/adapter_config.json", formats::peft_adapter_config_to_json(cfg_.to_peft(base_model)));
}

std::vector<LoraWeights::Param> LoraWeights::params() const {
  std::vector<Param> out;
  for (size_t l = 0; l < A_.size(); ++l)
    for (int p = 0; p < kNumProj; ++p) {
      if (!A_[l][p].data) continue;
      std::string base = "base_model.model.model.layers." + std::to_string(l) + "." +
                         proj_parent(static_cast<Proj>(p)) + "." + kProjNames[p];
      out.push_back({base + ".lora_A.weight", A_[l][p], dA_[l][p]});
      out.push_back({base + ".lora_B.weight", B_[l][p], dB_[l][p]});
    }
  return out;
}

int64_t LoraWeights::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : params()) n += p.value.numel();
  return n;
}

}  // namespace cotune::model
