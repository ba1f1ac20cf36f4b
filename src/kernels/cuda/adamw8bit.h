// CUDA twin of kernels::cpu::adamw8bit_step (bitsandbytes AdamW8bit, blockwise 256, dynamic maps,
// `QuantRounding::nearest` requantization). Same operation order as the CPU reference, element by element.
#pragma once
#include "kernels/optim.h"
#include "tensor/tensor.h"

namespace cotune::kernels::cuda {

// p, g f32 [n]; q1, q2 u8 [n]; absmax1, absmax2 f32 [ceil(n/256)] (all CUDA). grad_scale: optional f32 [1]
// (the clip coefficient, multiplied into g first); skip: optional i32 [1] (non-zero: nothing is written).
void adamw8bit_step(const Tensor& p, const Tensor& g, const Tensor& q1, const Tensor& absmax1, const Tensor& q2,
                    const Tensor& absmax2, const AdamWHyper& h, const Tensor& grad_scale = Tensor(),
                    const Tensor& skip = Tensor());

}  // namespace cotune::kernels::cuda
