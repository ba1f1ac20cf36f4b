// Optimizer state for the LoRA parameters: AdamW with fp32 moments (torch.optim.AdamW) or AdamW 8-bit
// (bitsandbytes AdamW8bit: blockwise-quantized moments for tensors of >= 4096 elements, fp32 below).
// Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_). The update is kernels/optim.h's
// MultiTensorAdamW (CPU functions, or the CUDA multi-tensor launches); this class owns the state, on the
// parameters' device, and knows how to checkpoint it. On the GPU, tensors under 4096 elements of an 8-bit
// run use torch's fp32 AdamW formula (bnb's 32-bit formula differs from it only in rounding).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/optim.h"
#include "model/lora.h"
#include "tensor/arena.h"

namespace cotune::train {

enum class OptimKind { adamw, adamw8bit };
OptimKind parse_optim(const std::string& s);  // "adamw" | "adamw_torch" | "adamw8bit" | "adamw_8bit" | "paged_adamw_8bit"

struct OptimConfig {
  OptimKind kind = OptimKind::adamw;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class Optimizer {
 public:
  Optimizer(const OptimConfig& cfg, std::vector<model::LoraWeights::Param> params);
  ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Total gradient norm before clipping; scales the gradients so their norm is at most max_norm
  // (max_norm <= 0: no clipping, the norm is still returned).
  float clip_grad_norm(double max_norm);
  // One update of every parameter at learning rate `lr` (the step counter advances first).
  void step(double lr);
  int64_t steps() const { return step_; }

  // State as named host tensors: "<param>.exp_avg", ".exp_avg_sq" (fp32) or ".state1"/".absmax1"/
  // ".state2"/".absmax2" (8-bit), plus "step". Saved in a safetensors file.
  void save(const std::string& file) const;
  void load(const std::string& file);  // throws naming the file and tensor when it does not match

  size_t state_bytes() const { return arena_.capacity(); }

 private:
  struct Slot {
    model::LoraWeights::Param param;
    bool eight_bit = false;
    Tensor m, v;                         // f32 moments
    Tensor q1, q2, absmax1, absmax2;     // 8-bit moments
  };
  OptimConfig cfg_;
  Arena arena_;
  std::vector<Slot> slots_;
  int64_t step_ = 0;
  // The update of every slot (kernels/optim.h): on the GPU a few multi-tensor launches, the norm, clip coefficient
  // and non-finite flag on the device, the parameters' bf16 copies rewritten by the update.
  std::unique_ptr<kernels::MultiTensorAdamW> update_;
};

}  // namespace cotune::train
