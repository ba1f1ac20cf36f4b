#include "train/optimizer.h"

#include <cstring>

#include "base/error.h"
#include "formats/safetensors.h"

namespace cotune::train {

Optimizer::~Optimizer() = default;

OptimKind parse_optim(const std::string& s) {
  if (s == "adamw" || s == "adamw_torch" || s == "adamw_torch_fused") return OptimKind::adamw;
  if (s == "adamw8bit" || s == "adamw_8bit" || s == "paged_adamw_8bit" || s == "adamw_bnb_8bit")
    return OptimKind::adamw8bit;
  fail("optim '{}' is not supported: use adamw or adamw8bit", s);
}

Optimizer::Optimizer(const OptimConfig& cfg, std::vector<model::LoraWeights::Param> params)
    : cfg_(cfg), arena_(params.empty() ? Device::cpu : params.front().value.device) {
  std::vector<kernels::OptimTensor> tensors;
  for (auto& p : params) {
    if (p.value.device != arena_.device())
      fail("optimizer: parameter {} is on {}, the others on {}", p.peft_name, device_name(p.value.device),
           device_name(arena_.device()));
    Slot s;
    s.param = p;
    const int64_t n = p.value.numel();
    s.eight_bit = cfg_.kind == OptimKind::adamw8bit && n >= kernels::kMin8bitSize;
    if (s.eight_bit) {
      const int64_t nb = kernels::num_blocks(n, 256);
      s.q1 = arena_.zeros(DType::u8, {n}, "adam state1");
      s.q2 = arena_.zeros(DType::u8, {n}, "adam state2");
      s.absmax1 = arena_.zeros(DType::f32, {nb}, "adam absmax1");
      s.absmax2 = arena_.zeros(DType::f32, {nb}, "adam absmax2");
    } else {
      s.m = arena_.zeros(DType::f32, {n}, "adam exp_avg");
      s.v = arena_.zeros(DType::f32, {n}, "adam exp_avg_sq");
    }
    slots_.push_back(s);
    tensors.push_back({p.value, p.grad, p.value16, s.eight_bit, s.m, s.v, s.q1, s.absmax1, s.q2, s.absmax2});
  }
  update_ = std::make_unique<kernels::MultiTensorAdamW>(std::move(tensors), arena_, cfg_.kind == OptimKind::adamw8bit);
}

float Optimizer::clip_grad_norm(double max_norm) { return update_->clip_grad_norm(max_norm); }

void Optimizer::step(double lr) {
  ++step_;
  kernels::AdamWHyper h;
  h.lr = lr;
  h.beta1 = cfg_.beta1;
  h.beta2 = cfg_.beta2;
  h.eps = cfg_.eps;
  h.weight_decay = cfg_.weight_decay;
  h.step = step_;
  update_->step(h);
}

void Optimizer::save(const std::string& file) const {
  formats::SafetensorsWriter w;
  auto add = [&](const std::string& name, const Tensor& t) {
    std::vector<uint8_t> bytes(t.nbytes());
    copy_bytes(Tensor(bytes.data(), t.dtype, t.shape), t);
    std::vector<int64_t> shape(t.shape.dims.begin(), t.shape.dims.begin() + t.ndim());
    w.add_owned(name, formats::dtype_to_safetensors(t.dtype), shape, std::move(bytes));
  };
  for (const auto& s : slots_) {
    const std::string& n = s.param.peft_name;
    if (s.eight_bit) {
      add(n + ".state1", s.q1);
      add(n + ".absmax1", s.absmax1);
      add(n + ".state2", s.q2);
      add(n + ".absmax2", s.absmax2);
    } else {
      add(n + ".exp_avg", s.m);
      add(n + ".exp_avg_sq", s.v);
    }
  }
  w.set_metadata("step", std::to_string(step_));
  w.set_metadata("optim", cfg_.kind == OptimKind::adamw ? "adamw" : "adamw8bit");
  w.write(file);
}

void Optimizer::load(const std::string& file) {
  formats::SafetensorsFile f = formats::SafetensorsFile::open(file);
  auto it = f.metadata().find("optim");
  const std::string want = cfg_.kind == OptimKind::adamw ? "adamw" : "adamw8bit";
  if (it == f.metadata().end() || it->second != want)
    fail("{}: optimizer state is for '{}', this run uses '{}'", file, it == f.metadata().end() ? "?" : it->second, want);
  auto restore = [&](const std::string& name, const Tensor& dst) {
    const formats::TensorEntry* e = f.find(name);
    if (!e) fail("{}: optimizer state tensor {} is missing", file, name);
    if (e->nbytes != dst.nbytes()) fail("{}: optimizer state tensor {} has the wrong size", file, name);
    copy_bytes(dst, Tensor(const_cast<uint8_t*>(e->data), dst.dtype, dst.shape));
  };
  for (auto& s : slots_) {
    const std::string& n = s.param.peft_name;
    if (s.eight_bit) {
      restore(n + ".state1", s.q1);
      restore(n + ".absmax1", s.absmax1);
      restore(n + ".state2", s.q2);
      restore(n + ".absmax2", s.absmax2);
    } else {
      restore(n + ".exp_avg", s.m);
      restore(n + ".exp_avg_sq", s.v);
    }
  }
  auto st = f.metadata().find("step");
  if (st == f.metadata().end()) fail("{}: metadata 'step' missing", file);
  step_ = std::stoll(st->second);
}

}  // namespace cotune::train
