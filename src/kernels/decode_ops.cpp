// Dispatch of kernels/decode_ops.h: checks shapes and dtypes, then the CPU reference (cpu/decode.cpp) or the
// CUDA kernels (cuda/decode.cu).
#include "kernels/decode_ops.h"

#include <cstdint>
#include <initializer_list>

#include "base/error.h"
#ifdef COTUNE_WITH_CUDA
#include "kernels/cuda/decode_launch.h"
#endif

namespace cotune::kernels {

namespace cpu {
void kv_cache_write(float* k_cache, float* v_cache, const float* k, const float* v, const int32_t* slot,
                    const int32_t* pos, int64_t T, int64_t N, int64_t KV, int64_t D);
void cached_attention_forward(float* out, const float* q, const float* k_cache, const float* v_cache,
                              const int32_t* slot, const int32_t* pos, int64_t T, int64_t N, int64_t H, int64_t KV,
                              int64_t D, float scale);
}  // namespace cpu

namespace {

void check_cache(const char* op, const Tensor& k_cache, const Tensor& v_cache) {
  if (k_cache.ndim() != 4) fail("{}: k_cache must be [S, N, KV, D], got {}", op, k_cache.str());
  if (!(v_cache.shape == k_cache.shape)) fail("{}: v_cache {} must match k_cache {}", op, v_cache.str(), k_cache.str());
}

void check_index(const char* op, const Tensor& slot, const Tensor& pos, int64_t T, const Tensor& k_cache) {
  if (slot.dtype != DType::i32 || pos.dtype != DType::i32)
    fail("{}: slot and pos must be i32, got {} and {}", op, slot.str(), pos.str());
  if (slot.numel() != T || pos.numel() != T)
    fail("{}: slot {} and pos {} must have {} entries", op, slot.str(), pos.str(), T);
  if (slot.device != Device::cpu) return;  // device-side indices are checked by the kernels' callers
  const int32_t* s = slot.ptr<int32_t>();
  const int32_t* p = pos.ptr<int32_t>();
  for (int64_t t = 0; t < T; ++t) {
    if (s[t] < 0 || s[t] >= k_cache.dim(0)) fail("{}: token {} has slot {}, the cache has {}", op, t, s[t], k_cache.dim(0));
    if (p[t] < 0 || p[t] >= k_cache.dim(1))
      fail("{}: token {} has position {}, the cache holds {} positions", op, t, p[t], k_cache.dim(1));
  }
}

// True when the float tensors are on CUDA (then bf16, with i32 indices there too); else they must be CPU f32.
bool on_cuda(const char* op, std::initializer_list<const Tensor*> ts, const Tensor& slot, const Tensor& pos) {
  const Device d = (*ts.begin())->device;
  for (const Tensor* t : ts) {
    if (t->device != d) fail("{}: tensors on different devices ({} and {})", op, (*ts.begin())->str(), t->str());
    const DType want = d == Device::cpu ? DType::f32 : DType::bf16;
    if (t->dtype != want) fail("{}: {} kernels take {} tensors, got {}", op, device_name(d), dtype_name(want), t->str());
  }
  if (slot.device != d || pos.device != d) fail("{}: slot {} and pos {} must be on {}", op, slot.str(), pos.str(), device_name(d));
#ifndef COTUNE_WITH_CUDA
  if (d == Device::cuda) fail("{}: a CUDA tensor in a build without CUDA", op);
#endif
  return d == Device::cuda;
}

}  // namespace

void kv_cache_write(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k, const Tensor& v,
                    const Tensor& slot, const Tensor& pos) {
  const char* op = "kv_cache_write";
  check_cache(op, k_cache, v_cache);
  const int64_t KV = k_cache.dim(2), D = k_cache.dim(3);
  if (k.ndim() != 3 || k.dim(1) != KV || k.dim(2) != D) fail("{}: k must be [T, {}, {}], got {}", op, KV, D, k.str());
  if (!(v.shape == k.shape)) fail("{}: v {} must match k {}", op, v.str(), k.str());
  const int64_t T = k.dim(0);
  check_index(op, slot, pos, T, k_cache);
  if (on_cuda(op, {&k_cache, &v_cache, &k, &v}, slot, pos)) {
#ifdef COTUNE_WITH_CUDA
    cuda::launch_kv_cache_write(k_cache.data, v_cache.data, k.data, v.data, slot.ptr<int32_t>(), pos.ptr<int32_t>(), T,
                                k_cache.dim(1), KV, D);
#endif
    return;
  }
  cpu::kv_cache_write(k_cache.ptr<float>(), v_cache.ptr<float>(), k.ptr<float>(), v.ptr<float>(),
                      slot.ptr<int32_t>(), pos.ptr<int32_t>(), T, k_cache.dim(1), KV, D);
}

void cached_attention_forward(const Tensor& out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                              const Tensor& slot, const Tensor& pos, float scale) {
  const char* op = "cached_attention_forward";
  check_cache(op, k_cache, v_cache);
  const int64_t KV = k_cache.dim(2), D = k_cache.dim(3);
  if (q.ndim() != 3 || q.dim(2) != D) fail("{}: q must be [T, H, {}], got {}", op, D, q.str());
  const int64_t T = q.dim(0), H = q.dim(1);
  if (H % KV != 0) fail("{}: {} query heads are not a multiple of {} KV heads", op, H, KV);
  if (!(out.shape == q.shape)) fail("{}: out {} must match q {}", op, out.str(), q.str());
  check_index(op, slot, pos, T, k_cache);
  if (on_cuda(op, {&out, &q, &k_cache, &v_cache}, slot, pos)) {
    if (D % 32 != 0 || D > 256) fail("{}: the CUDA kernel needs a head dim that is a multiple of 32 up to 256, got {}", op, D);
#ifdef COTUNE_WITH_CUDA
    cuda::launch_cached_attention(out.data, q.data, k_cache.data, v_cache.data, slot.ptr<int32_t>(), pos.ptr<int32_t>(),
                                  T, k_cache.dim(1), H, KV, D, scale);
#endif
    return;
  }
  cpu::cached_attention_forward(out.ptr<float>(), q.ptr<float>(), k_cache.ptr<float>(), v_cache.ptr<float>(),
                                slot.ptr<int32_t>(), pos.ptr<int32_t>(), T, k_cache.dim(1), H, KV, D, scale);
}

#ifdef COTUNE_WITH_CUDA
namespace {
constexpr int64_t kSmallRows = 8;
bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
bool small_shapes_ok(const Tensor& out, const Tensor& inp, const Tensor& bias, int64_t N, int64_t K) {
  if (inp.device != Device::cuda || out.device != Device::cuda) return false;
  if (inp.ndim() != 2 || out.ndim() != 2 || inp.dim(1) != K || out.dim(1) != N || out.dim(0) != inp.dim(0)) return false;
  if (inp.dim(0) < 1 || inp.dim(0) > kSmallRows) return false;
  if (inp.dtype != DType::bf16 || !aligned16(inp.data) || K % 8 != 0) return false;
  if (bias.data && (bias.device != Device::cuda || bias.dtype != DType::bf16 || bias.numel() != N)) return false;
  return true;
}
}  // namespace
#endif

bool small_linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& bias) {
#ifdef COTUNE_WITH_CUDA
  if (weight.ndim() != 2 || weight.device != Device::cuda || weight.dtype != DType::bf16 || !aligned16(weight.data))
    return false;
  const int64_t N = weight.dim(0), K = weight.dim(1);
  if (!small_shapes_ok(out, inp, bias, N, K)) return false;
  if (out.dtype != DType::bf16 && out.dtype != DType::f32) return false;
  cuda::launch_gemv(out.data, out.dtype == DType::f32, inp.data, weight.data, bias.data, inp.dim(0), N, K);
  return true;
#else
  (void)out, (void)inp, (void)weight, (void)bias;
  return false;
#endif
}

bool small_nf4_linear_forward(const Tensor& out, const Tensor& inp, const Nf4Weight& q, const Tensor& bias) {
#ifdef COTUNE_WITH_CUDA
  if (q.shape.ndim != 2 || q.packed.device != Device::cuda || !aligned16(q.packed.data)) return false;
  const int64_t N = q.shape[0], K = q.shape[1];
  if (!small_shapes_ok(out, inp, bias, N, K) || out.dtype != DType::bf16) return false;
  if (K % 32 != 0 || q.blocksize % 32 != 0) return false;
  cuda::launch_nf4_gemv(out.data, inp.data, q.packed.ptr<uint8_t>(), bias.data, inp.dim(0), N, K, q.blocksize,
                        q.quant_map.ptr<float>(), q.nested ? q.absmax.ptr<uint8_t>() : nullptr,
                        q.nested ? nullptr : q.absmax.ptr<float>(), q.nested ? q.nested_absmax.ptr<float>() : nullptr,
                        q.nested ? q.nested_quant_map.ptr<float>() : nullptr, q.offset, q.nested_blocksize);
  return true;
#else
  (void)out, (void)inp, (void)q, (void)bias;
  return false;
#endif
}

}  // namespace cotune::kernels
