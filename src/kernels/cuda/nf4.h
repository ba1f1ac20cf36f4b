// NF4 on the GPU: the CUDA twin of the bulk of nf4_quantize, and of kernels/quant.h's nf4_dequantize (bitsandbytes layout), which
// dispatches here for CUDA tensors.
#pragma once
#include <span>

#include "kernels/quant.h"
#include "tensor/tensor.h"

namespace cotune::kernels::cuda {

// NF4 dequantization of a device-resident Nf4Weight (bitsandbytes layout, see kernels/quant.h) into `out`
// (bf16 or f32 CUDA tensor of q.numel() elements, e.g. the reused per-layer bf16 scratch):
//   out[i] = round(quant_map[code_i] * absmax_f32[i / blocksize]),
//   absmax_f32[b] = nested_quant_map[absmax[b]] * nested_absmax[b / nested_blocksize] + offset (when nested),
// each product and sum rounded to fp32 separately (no FMA), as bitsandbytes computes; bit-identical to the CPU
// reference kernels::nf4_dequantize.
void nf4_dequantize(const Nf4Weight& q, const Tensor& out);
// nf4_dequantize of several weights into bf16 outputs, in one launch per 8 (bit-identical to one call each).
void nf4_dequantize_batch(std::span<const Nf4Weight> qs, std::span<const Tensor> outs);
// The bulk of NF4 quantization on the GPU: w (CUDA bf16/f32, n elements) -> packed u8 [ceil(n/2)] codes and absmax
// f32 [ceil(n/64)] (blocks of 64), bit-identical to cpu::nf4_quantize. The double quantization of absmax (n/64
// values) is the caller's (kernels::nf4_quantize_to).
void nf4_quantize_codes(const Tensor& w, const Tensor& packed, const Tensor& absmax);

}  // namespace cotune::kernels::cuda
