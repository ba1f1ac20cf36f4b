#include "model/lora.h"

#include <algorithm>
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
  if (r <= 0 || r > formats::kMaxLoraRank) fail("lora r must be in [1, {}], got {}", formats::kMaxLoraRank, r);
  if (!std::isfinite(alpha) || alpha <= 0) fail("lora_alpha must be a positive number, got {}", alpha);
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
  for (auto* v : {&A_, &B_, &dA_, &dB_, &A16_, &B16_}) v->resize(L);
  const int64_t r = cfg_.r;
  auto all = [&](std::initializer_list<Proj> ps) {
    for (Proj p : ps)
      if (!cfg_.targets(p)) return false;
    return true;
  };
  stacked_qkv_ = all({Proj::q, Proj::k, Proj::v});
  stacked_gate_up_ = all({Proj::gate, Proj::up});
  // Element offsets of every A and B in the flat buffers: groups of stacked A's back to back, every other
  // tensor starting at a multiple of 64 elements (256-byte f32 / 128-byte bf16 alignment for the GEMMs).
  std::vector<std::array<int64_t, kNumProj>> off_a(L), off_b(L);
  int64_t off = 0;
  auto place = [&](int64_t n) {
    const int64_t o = off;
    off += (n + 63) / 64 * 64;
    return o;
  };
  const std::vector<std::vector<Proj>> groups = {{Proj::q, Proj::k, Proj::v}, {Proj::o}, {Proj::gate, Proj::up},
                                                 {Proj::down}};
  for (size_t l = 0; l < L; ++l)
    for (const auto& grp : groups) {
      const bool stacked = grp.size() > 1 && (grp[0] == Proj::q ? stacked_qkv_ : stacked_gate_up_);
      if (stacked) {
        const int64_t in = proj_shape(mc, grp[0]).second;
        const int64_t o = place(static_cast<int64_t>(grp.size()) * r * in);
        for (size_t i = 0; i < grp.size(); ++i) off_a[l][static_cast<int>(grp[i])] = o + static_cast<int64_t>(i) * r * in;
      } else {
        for (Proj p : grp)
          if (cfg_.targets(p)) off_a[l][static_cast<int>(p)] = place(r * proj_shape(mc, p).second);
      }
      for (Proj p : grp)
        if (cfg_.targets(p)) off_b[l][static_cast<int>(p)] = place(proj_shape(mc, p).first * r);
    }
  const int64_t total = std::max<int64_t>(off, 1);
  values_ = arena_.zeros(DType::f32, {total}, "lora A/B");
  grads_ = arena_.zeros(DType::f32, {total}, "lora A/B grads");
  if (device == Device::cuda) values16_ = arena_.zeros(DType::bf16, {total}, "lora A/B bf16 copies");
  auto at = [&](const Tensor& flat, int64_t o, Shape s) {
    return Tensor(static_cast<char*>(flat.data) + o * static_cast<int64_t>(dtype_size(flat.dtype)), flat.dtype, s,
                  device);
  };
  for (size_t l = 0; l < L; ++l)
    for (int p = 0; p < kNumProj; ++p) {
      if (!cfg_.targets(static_cast<Proj>(p))) continue;
      auto [out, in] = proj_shape(mc, static_cast<Proj>(p));
      const int64_t oa = off_a[l][p], ob = off_b[l][p];
      A_[l][p] = at(values_, oa, {r, in});
      B_[l][p] = at(values_, ob, {out, r});
      dA_[l][p] = at(grads_, oa, {r, in});
      dB_[l][p] = at(grads_, ob, {out, r});
      if (values16_.data) {
        A16_[l][p] = at(values16_, oa, {r, in});
        B16_[l][p] = at(values16_, ob, {out, r});
      }
    }
}

void LoraWeights::refresh_compute_copies() {
  if (values16_.data) kernels::copy(values16_, values_);
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
  refresh_compute_copies();
}

void LoraWeights::zero_grads() {
  kernels::zero(grads_);  // on CUDA one memset on the kernels' stream (no host sync)
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
    const auto bad = std::find_if(host.begin(), host.end(), [](float x) { return !std::isfinite(x); });
    if (bad != host.end())
      fail("{}: adapter tensor {} holds {} at element {}: the adapter is corrupt (saved from a diverged run?)", file,
           p.peft_name, *bad, bad - host.begin());
    copy_bytes(p.value, h);
    used.insert(p.peft_name);
  }
  for (const auto& e : f.tensors())
    if (!used.count(e.name))
      fail("{}: adapter tensor {} does not match any LoRA module of this model/config (unexpected key)", file, e.name);
  refresh_compute_copies();
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
    const auto bad = std::find_if(host.back().begin(), host.back().end(), [](float x) { return !std::isfinite(x); });
    if (bad != host.back().end())
      fail("not writing the adapter to {}: LoRA tensor {} holds {} at element {} (the weights diverged)", dir,
           p.peft_name, *bad, bad - host.back().begin());
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
      out.push_back({base + ".lora_A.weight", A_[l][p], dA_[l][p], A16_[l][p]});
      out.push_back({base + ".lora_B.weight", B_[l][p], dB_[l][p], B16_[l][p]});
    }
  return out;
}

int64_t LoraWeights::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : params()) n += p.value.numel();
  return n;
}

}  // namespace cotune::model
