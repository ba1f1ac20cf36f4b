// Tensor-level CUDA entry points of cuda_ops.h (except the GEMM-based ones in gemm.cpp): dtype checks with
// messages that name the op, then the raw launchers of the .cu files (launch.h).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/internal.h"
#include "kernels/cuda/launch.h"
#include "kernels/tuning.h"

namespace cotune::kernels::cuda {

namespace {
bool is_bf16(const Tensor& t, const char* op, const char* arg) {
  if (t.dtype == DType::bf16) return true;
  if (t.dtype == DType::f32) return false;
  fail("{} (CUDA): {} must be bf16 or f32, got {}", op, arg, t.str());
}
}  // namespace

void embedding_forward(const Tensor& out, const Tensor& ids, const Tensor& table) {
  need_dtype(out, DType::bf16, "embedding_forward", "out");
  need_dtype(table, DType::bf16, "embedding_forward", "table");
  launch_embedding(out.data, ids.ptr<int32_t>(), table.data, ids.dim(0), table.dim(1), table.dim(0));
}

void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& inp, const Tensor& weight, float eps) {
  const char* op = "rmsnorm_forward";
  need_dtype(out, DType::bf16, op, "out");
  need_dtype(inp, DType::bf16, op, "inp");
  need_dtype(weight, DType::bf16, op, "weight");
  launch_rmsnorm_forward(out.data, rstd.ptr<float>(), inp.data, weight.data, inp.dim(0), inp.dim(1), eps);
}

void rmsnorm_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp, const Tensor& weight,
                      const Tensor& rstd, bool accumulate) {
  const char* op = "rmsnorm_backward";
  for (const Tensor* t : {&dinp, &dout, &inp, &weight}) need_dtype(*t, DType::bf16, op, "dinp/dout/inp/weight");
  need_dtype(rstd, DType::f32, op, "rstd");
  launch_rmsnorm_backward(dinp.data, dout.data, inp.data, weight.data, rstd.ptr<float>(), inp.dim(0), inp.dim(1),
                          accumulate);
}

static void rope(const char* op, const Tensor& x, const Tensor& positions, const RopeSpec& spec, float sign) {
  need_dtype(x, DType::bf16, op, "x");
  float inv_freq[512];
  rope_inv_freq(inv_freq, x.dim(2), spec);  // bit-identical to the CPU reference (HF computes it in fp32)
  launch_rope(x.data, positions.ptr<int32_t>(), x.dim(0), x.dim(1), x.dim(2), inv_freq, sign);
}

void rope_forward(const Tensor& x, const Tensor& positions, const RopeSpec& spec) {
  rope("rope_forward", x, positions, spec, 1.0f);
}

void rope_backward(const Tensor& dx, const Tensor& positions, const RopeSpec& spec) {
  rope("rope_backward", dx, positions, spec, -1.0f);
}

void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up) {
  for (const Tensor* t : {&out, &gate, &up}) need_dtype(*t, DType::bf16, "swiglu_forward", "out/gate/up");
  launch_swiglu_forward(out.data, gate.data, up.data, gate.numel());
}

void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout, const Tensor& gate, const Tensor& up) {
  for (const Tensor* t : {&dgate, &dup, &dout, &gate, &up}) need_dtype(*t, DType::bf16, "swiglu_backward", "argument");
  launch_swiglu_backward(dgate.data, dup.data, dout.data, gate.data, up.data, gate.numel());
}

void dropout_forward(const Tensor& out, const Tensor& inp, float p, uint64_t seed, uint64_t offset) {
  if (out.dtype != inp.dtype) fail("dropout_forward (CUDA): dtypes differ ({} vs {})", out.str(), inp.str());
  launch_dropout(out.data, inp.data, is_bf16(inp, "dropout_forward", "inp"), inp.numel(), p, seed, offset);
}

void dropout_backward(const Tensor& dinp, const Tensor& dout, float p, uint64_t seed, uint64_t offset) {
  if (dinp.dtype != dout.dtype) fail("dropout_backward (CUDA): dtypes differ ({} vs {})", dinp.str(), dout.str());
  launch_dropout(dinp.data, dout.data, is_bf16(dout, "dropout_backward", "dout"), dout.numel(), p, seed, offset);
}

void fill_normal(const Tensor& out, uint64_t key, float std) {
  launch_fill_normal(out.data, is_bf16(out, "fill_normal", "out"), out.numel(), key, std);
}

void add(const Tensor& out, const Tensor& a, const Tensor& b) {
  if (out.dtype != a.dtype || b.dtype != a.dtype)
    fail("add (CUDA): dtypes differ ({}, {}, {})", out.str(), a.str(), b.str());
  launch_add(out.data, a.data, b.data, is_bf16(a, "add", "a"), a.numel());
}

void copy(const Tensor& dst, const Tensor& src) {
  const int64_t n = src.numel();
  if (n == 0) return;
  if (dst.dtype == src.dtype) {
    check(cudaMemcpyAsync(dst.data, src.data, src.nbytes(), cudaMemcpyDeviceToDevice, stream()), "copy (CUDA)");
  } else if (dst.dtype == DType::bf16 && src.dtype == DType::f32) {
    launch_convert_f32_to_bf16(dst.data, src.ptr<float>(), n);
  } else if (dst.dtype == DType::f32 && src.dtype == DType::bf16) {
    launch_convert_bf16_to_f32(dst.ptr<float>(), src.data, n);
  } else {
    fail("copy (CUDA): no conversion from {} to {}", src.str(), dst.str());
  }
}

void zero(const Tensor& t) {
  if (t.device != Device::cuda) fail("zero (CUDA): {} is not a CUDA tensor", t.str());
  if (t.nbytes() == 0) return;
  check(cudaMemsetAsync(t.data, 0, t.nbytes(), stream()), "zero (cudaMemsetAsync)");
}

// ---- cross-entropy ---------------------------------------------------------------------------------------------

void cross_entropy_forward(const Tensor& losses, const Tensor& logits, const Tensor& targets) {
  need_dtype(losses, DType::f32, "cross_entropy_forward", "losses");
  const int64_t T = logits.dim(0), V = logits.dim(1);
  launch_ce_rows(losses.ptr<float>(), nullptr, nullptr, false, 0, logits.data,
                 is_bf16(logits, "cross_entropy_forward", "logits"), V, targets.ptr<int32_t>(), T, V, 0.0f);
}

void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& targets, float grad_scale) {
  const int64_t T = logits.dim(0), V = logits.dim(1);
  launch_ce_rows(nullptr, nullptr, dlogits.data, is_bf16(dlogits, "cross_entropy_backward", "dlogits"), V, logits.data,
                 is_bf16(logits, "cross_entropy_backward", "logits"), V, targets.ptr<int32_t>(), T, V, grad_scale);
}

// Per chunk of n <= chunk tokens:
//   workspace f32 [n, V] = hidden[t0:t0+n] @ weight^T          (cuBLASLt, bf16 x bf16 -> f32)
//   row kernel: losses, correct, and the bf16 gradient grad_scale * (softmax - onehot) written over the start of
//   each f32 row (row stride 2V in bf16 elements; the kernel reads each tile before it overwrites it)
//   dhidden[t0:t0+n] = grad_bf16 [n, V] @ weight [V, C]         (cuBLASLt, bf16 x bf16 -> bf16)
// The bf16 gradient is what HF back-propagates through its bf16 logits; the logits themselves stay fp32.
void lm_head_cross_entropy(const Tensor& losses, const Tensor& correct, const Tensor& dhidden, const Tensor& hidden,
                           const Tensor& weight, const Tensor& targets, float grad_scale, const Tensor& workspace,
                           int64_t chunk) {
  lm_head_ce_chunks(losses, correct, dhidden, hidden, weight, targets, grad_scale, nullptr, workspace, chunk);
}

}  // namespace cotune::kernels::cuda
