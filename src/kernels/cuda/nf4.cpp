// Tensor-level entry points of nf4.h: argument checks, then the launchers of nf4.cu.
#include "kernels/cuda/nf4.h"

#include <algorithm>
#include <vector>

#include "kernels/cuda/internal.h"
#include "kernels/cuda/launch.h"

namespace cotune::kernels::cuda {

void nf4_dequantize(const Nf4Weight& q, const Tensor& out) {
  const char* op = "nf4_dequantize (CUDA)";
  q.validate(op);
  const int64_t n = q.numel();
  if (out.numel() != n) fail("{}: output {} does not hold the {} elements of {}", op, out.str(), n, q.shape.str());
  if (out.device != Device::cuda || q.packed.device != Device::cuda)
    fail("{}: weight and output must be CUDA tensors ({} -> {})", op, q.packed.str(), out.str());
  if (out.dtype != DType::bf16 && out.dtype != DType::f32) fail("{}: output {} must be bf16 or f32", op, out.str());
  launch_nf4_dequantize(out.data, out.dtype == DType::bf16, q.packed.ptr<uint8_t>(), n, q.blocksize,
                        q.quant_map.ptr<float>(), q.nested ? q.absmax.ptr<uint8_t>() : nullptr,
                        q.nested ? nullptr : q.absmax.ptr<float>(), q.nested ? q.nested_absmax.ptr<float>() : nullptr,
                        q.nested ? q.nested_quant_map.ptr<float>() : nullptr, q.offset, q.nested_blocksize);
}

void nf4_dequantize_batch(std::span<const Nf4Weight> qs, std::span<const Tensor> outs) {
  const char* op = "nf4_dequantize_batch (CUDA)";
  if (qs.size() != outs.size()) fail("{}: {} weights but {} outputs", op, qs.size(), outs.size());
  std::vector<Nf4Job> jobs;
  for (size_t i = 0; i < qs.size(); ++i) {
    const Nf4Weight& q = qs[i];
    const Tensor& out = outs[i];
    q.validate(op);
    const int64_t n = q.numel();
    if (out.numel() != n) fail("{}: output {} does not hold the {} elements of {}", op, out.str(), n, q.shape.str());
    if (out.device != Device::cuda || q.packed.device != Device::cuda || out.dtype != DType::bf16)
      fail("{}: weight and output must be CUDA tensors, the output bf16 ({} -> {})", op, q.packed.str(), out.str());
    jobs.push_back({out.data, q.packed.ptr<uint8_t>(), n, q.blocksize, q.quant_map.ptr<float>(),
                    q.nested ? q.absmax.ptr<uint8_t>() : nullptr, q.nested ? nullptr : q.absmax.ptr<float>(),
                    q.nested ? q.nested_absmax.ptr<float>() : nullptr,
                    q.nested ? q.nested_quant_map.ptr<float>() : nullptr, q.offset, q.nested_blocksize});
  }
  for (size_t i = 0; i < jobs.size(); i += kNf4BatchMax)
    launch_nf4_dequantize_batch(jobs.data() + i, static_cast<int>(std::min<size_t>(kNf4BatchMax, jobs.size() - i)));
}

void nf4_quantize_codes(const Tensor& w, const Tensor& packed, const Tensor& absmax) {
  const char* op = "nf4_quantize (CUDA)";
  const int64_t n = w.numel();
  if (w.device != Device::cuda || packed.device != Device::cuda || absmax.device != Device::cuda)
    fail("{}: weight {}, codes {} and absmax {} must be CUDA tensors", op, w.str(), packed.str(), absmax.str());
  if (w.dtype != DType::bf16 && w.dtype != DType::f32) fail("{}: weight {} must be bf16 or f32", op, w.str());
  if (packed.dtype != DType::u8 || packed.numel() != (n + 1) / 2)
    fail("{}: codes {} must be u8 of {} elements", op, packed.str(), (n + 1) / 2);
  if (absmax.dtype != DType::f32 || absmax.numel() != num_blocks(n, kNf4Blocksize))
    fail("{}: absmax {} must be f32 of {} elements", op, absmax.str(), num_blocks(n, kNf4Blocksize));
  launch_nf4_quantize(w.data, w.dtype == DType::bf16, n, kNf4Code, packed.ptr<uint8_t>(), absmax.ptr<float>());
}

}  // namespace cotune::kernels::cuda
