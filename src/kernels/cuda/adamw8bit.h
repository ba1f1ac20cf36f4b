// CUDA twin of kernels::cpu::adamw8bit_step (bitsandbytes AdamW8bit, blockwise 256, dynamic maps,
// `QuantRounding::nearest` requantization). Same operation order as the CPU reference, element by element.
#pragma once
#include <span>

#include "kernels/optim.h"
#include "tensor/arena.h"
#include "tensor/tensor.h"

namespace cotune::kernels::cuda {

// p, g f32 [n]; q1, q2 u8 [n]; absmax1, absmax2 f32 [ceil(n/256)] (all CUDA). grad_scale: optional f32 [1]
// (the clip coefficient, multiplied into g first); skip: optional i32 [1] (non-zero: nothing is written).
void adamw8bit_step(const Tensor& p, const Tensor& g, const Tensor& q1, const Tensor& absmax1, const Tensor& q2,
                    const Tensor& absmax2, const AdamWHyper& h, const Tensor& grad_scale = Tensor(),
                    const Tensor& skip = Tensor());

// Many tensors in one launch (the optimizer's path): the device pointer table is built once from `arena`.
// p16: optional bf16 copy of p, rewritten with the update. Per tensor, the numerics of adamw8bit_step.
struct Adam8bitSlot {
  Tensor p, g, q1, absmax1, q2, absmax2;
  Tensor p16;
};
class MultiAdamW8bit {
 public:
  MultiAdamW8bit() = default;
  MultiAdamW8bit(std::span<const Adam8bitSlot> slots, Arena& arena);
  void step(const AdamWHyper& h, const Tensor& grad_scale = Tensor(), const Tensor& skip = Tensor()) const;

 private:
  Tensor table_, block_start_;
  int count_ = 0;
  int64_t blocks_ = 0;
};

}  // namespace cotune::kernels::cuda
