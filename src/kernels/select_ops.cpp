// Dispatch of kernels/select_ops.h: shapes checked, then the CPU twin (cpu/select.cpp) or cuda/decode_select.cu.
#include "kernels/select_ops.h"

#include "base/error.h"
#ifdef COTUNE_WITH_CUDA
#include "kernels/cuda/decode_launch.h"
#endif

namespace cotune::kernels {

namespace cpu {
void select_tokens(int32_t* ids, const float* logits, int64_t n, int64_t stride, int64_t vocab,
                   const SelectParams* params);
}  // namespace cpu

void select_tokens(const Tensor& ids, const Tensor& logits, const Tensor& params, const Tensor& scratch,
                   int64_t vocab) {
  const char* op = "select_tokens";
  if (logits.ndim() != 2 || logits.dtype != DType::f32) fail("{}: logits must be f32 [n, V], got {}", op, logits.str());
  const int64_t n = logits.dim(0), V = logits.dim(1);
  if (vocab <= 0 || vocab > V) fail("{}: vocab {} must be in [1, {}]", op, vocab, V);
  if (ids.dtype != DType::i32 || ids.numel() != n) fail("{}: ids must be i32 [{}], got {}", op, n, ids.str());
  if (params.dtype != DType::i32 || params.numel() != n * 8)
    fail("{}: params must be i32 [{}, 8] (SelectParams a row), got {}", op, n, params.str());
  const Device d = logits.device;
  if (ids.device != d || params.device != d)
    fail("{}: ids {} and params {} must be on the logits' device", op, ids.str(), params.str());
  if (d == Device::cpu) {
    cpu::select_tokens(ids.ptr<int32_t>(), logits.ptr<float>(), n, V, vocab,
                       reinterpret_cast<const SelectParams*>(params.data));
    return;
  }
  if (scratch.device != d || scratch.dtype != DType::i64 || scratch.numel() < n * vocab)
    fail("{}: scratch must be i64 with at least {} x {} entries on the device, got {}", op, n, vocab, scratch.str());
#ifdef COTUNE_WITH_CUDA
  cuda::launch_select_tokens(ids.ptr<int32_t>(), logits.ptr<float>(), n, V, vocab, params.data, scratch.data);
#else
  fail("{}: a CUDA tensor in a build without CUDA", op);
#endif
}

}  // namespace cotune::kernels
