// Dispatch of kernels/decode_ops.h: checks shapes and dtypes, then the CPU reference (cpu/decode.cpp) or the
// CUDA kernels (cuda/decode.cu).
#include "kernels/decode_ops.h"

#include <cstdint>
#include <initializer_list>

#include "base/error.h"
#include "kernels/kv_paging.h"
#ifdef COTUNE_WITH_CUDA
#include "kernels/cuda/decode_launch.h"
#endif

namespace cotune::kernels {

namespace cpu {
void kv_cache_write(float* k_cache, float* v_cache, const float* k, const float* v, const int32_t* slot,
                    const int32_t* pos, int64_t T, const KvPaging& pg, int64_t KV, int64_t D);
void cached_attention_forward(float* out, const float* q, const float* k_cache, const float* v_cache,
                              const int32_t* slot, const int32_t* pos, int64_t T, const KvPaging& pg, int64_t H,
                              int64_t KV, int64_t D, float scale, int64_t window);
void argmax_advance(const float* logits, int64_t vocab, int32_t* ids, int32_t* pos, int32_t* tokens, int32_t* count);
}  // namespace cpu

namespace {

// The cache's addressing, checked: slots and positions a slot, and the raw form the kernels take.
struct CacheGeometry {
  int64_t slots = 0, positions = 0;
  KvPaging pg;
};

CacheGeometry check_cache(const char* op, const Tensor& k_cache, const Tensor& v_cache, const KvPages& pages) {
  if (k_cache.ndim() != 4) fail("{}: k_cache must be [S, N, KV, D], got {}", op, k_cache.str());
  if (!(v_cache.shape == k_cache.shape)) fail("{}: v_cache {} must match k_cache {}", op, v_cache.str(), k_cache.str());
  CacheGeometry g;
  if (!pages.paged()) {
    g.slots = k_cache.dim(0);
    g.positions = k_cache.dim(1);
    g.pg.page = k_cache.dim(1);
    return g;
  }
  const Tensor& t = pages.table;
  if (t.ndim() != 2 || t.dtype != DType::i32 || t.device != k_cache.device)
    fail("{}: the block table must be i32 [S, max_pages] on the cache's device, got {}", op, t.str());
  if (pages.page != k_cache.dim(1))
    fail("{}: a paged cache must be [P, {}, KV, D] (page size {}), got {}", op, pages.page, pages.page, k_cache.str());
  g.slots = t.dim(0);
  g.positions = t.dim(1) * pages.page;
  g.pg = KvPaging{t.ptr<int32_t>(), t.dim(1), pages.page};
  if (t.device == Device::cpu) {  // host tables are checked here; device ones by the callers that fill them
    const int32_t* e = t.ptr<int32_t>();
    for (int64_t i = 0; i < t.numel(); ++i)
      if (e[i] < -1 || e[i] >= k_cache.dim(0))
        fail("{}: block table entry {} names page {}, the pool has {}", op, i, e[i], k_cache.dim(0));
  }
  return g;
}

void check_index(const char* op, const Tensor& slot, const Tensor& pos, int64_t T, const CacheGeometry& g,
                 const KvPages& pages) {
  if (slot.dtype != DType::i32 || pos.dtype != DType::i32)
    fail("{}: slot and pos must be i32, got {} and {}", op, slot.str(), pos.str());
  if (slot.numel() != T || pos.numel() != T)
    fail("{}: slot {} and pos {} must have {} entries", op, slot.str(), pos.str(), T);
  if (slot.device != Device::cpu) return;  // device-side indices are checked by the kernels' callers
  const int32_t* s = slot.ptr<int32_t>();
  const int32_t* p = pos.ptr<int32_t>();
  for (int64_t t = 0; t < T; ++t) {
    if (s[t] < 0 || s[t] >= g.slots) fail("{}: token {} has slot {}, the cache has {}", op, t, s[t], g.slots);
    if (p[t] < 0 || p[t] >= g.positions)
      fail("{}: token {} has position {}, the cache holds {} positions", op, t, p[t], g.positions);
    if (pages.paged() && pages.table.device == Device::cpu) {
      // every position the token reads or writes ([0, pos]) must have a page
      const int32_t* row = pages.table.ptr<int32_t>() + static_cast<int64_t>(s[t]) * g.pg.max_pages;
      for (int64_t i = 0; i <= p[t] / pages.page; ++i)
        if (row[i] < 0) fail("{}: slot {} has no page for positions from {} (token {})", op, s[t], i * pages.page, t);
    }
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
                    const Tensor& slot, const Tensor& pos, const KvPages& pages) {
  const char* op = "kv_cache_write";
  const CacheGeometry g = check_cache(op, k_cache, v_cache, pages);
  const int64_t KV = k_cache.dim(2), D = k_cache.dim(3);
  if (k.ndim() != 3 || k.dim(1) != KV || k.dim(2) != D) fail("{}: k must be [T, {}, {}], got {}", op, KV, D, k.str());
  if (!(v.shape == k.shape)) fail("{}: v {} must match k {}", op, v.str(), k.str());
  const int64_t T = k.dim(0);
  check_index(op, slot, pos, T, g, pages);
  if (on_cuda(op, {&k_cache, &v_cache, &k, &v}, slot, pos)) {
#ifdef COTUNE_WITH_CUDA
    cuda::launch_kv_cache_write(k_cache.data, v_cache.data, k.data, v.data, slot.ptr<int32_t>(), pos.ptr<int32_t>(), T,
                                g.pg, KV, D);
#endif
    return;
  }
  cpu::kv_cache_write(k_cache.ptr<float>(), v_cache.ptr<float>(), k.ptr<float>(), v.ptr<float>(),
                      slot.ptr<int32_t>(), pos.ptr<int32_t>(), T, g.pg, KV, D);
}

void cached_attention_forward(const Tensor& out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                              const Tensor& slot, const Tensor& pos, float scale, int64_t window,
                              const KvPages& pages) {
  const char* op = "cached_attention_forward";
  const CacheGeometry g = check_cache(op, k_cache, v_cache, pages);
  const int64_t KV = k_cache.dim(2), D = k_cache.dim(3);
  if (q.ndim() != 3 || q.dim(2) != D) fail("{}: q must be [T, H, {}], got {}", op, D, q.str());
  const int64_t T = q.dim(0), H = q.dim(1);
  if (H % KV != 0) fail("{}: {} query heads are not a multiple of {} KV heads", op, H, KV);
  if (!(out.shape == q.shape)) fail("{}: out {} must match q {}", op, out.str(), q.str());
  check_index(op, slot, pos, T, g, pages);
  if (on_cuda(op, {&out, &q, &k_cache, &v_cache}, slot, pos)) {
    if (D % 32 != 0 || D > 256) fail("{}: the CUDA kernel needs a head dim that is a multiple of 32 up to 256, got {}", op, D);
#ifdef COTUNE_WITH_CUDA
    cuda::launch_cached_attention(out.data, q.data, k_cache.data, v_cache.data, slot.ptr<int32_t>(), pos.ptr<int32_t>(),
                                  T, g.pg, H, KV, D, scale, window);
#endif
    return;
  }
  cpu::cached_attention_forward(out.ptr<float>(), q.ptr<float>(), k_cache.ptr<float>(), v_cache.ptr<float>(),
                                slot.ptr<int32_t>(), pos.ptr<int32_t>(), T, g.pg, H, KV, D, scale, window);
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

int64_t DecodeProj::rows() const { return nf4 ? nf4->shape[0] : weight.dim(0); }
int64_t DecodeProj::cols() const { return nf4 ? nf4->shape[1] : weight.dim(1); }

bool decode_step_fusable(int64_t C, int64_t I, int64_t H, int64_t KV, int64_t D, int64_t nf4_blocksize) {
#ifdef COTUNE_WITH_CUDA
  const int64_t r = cuda::decode_gemv_rows_multiple();
  if (C % 16 != 0 || I % 16 != 0 || C % r != 0 || I % r != 0) return false;
  if (KV <= 0 || H % KV != 0 || (H * D) % 16 != 0 || (H * D) % r != 0 || (KV * D) % r != 0) return false;
  if (D % 64 != 0 || D > 256) return false;
  if (nf4_blocksize != 0 && (nf4_blocksize % 16 != 0 || (nf4_blocksize & (nf4_blocksize - 1)) != 0)) return false;
  return true;
#else
  (void)C, (void)I, (void)H, (void)KV, (void)D, (void)nf4_blocksize;
  return false;
#endif
}

#ifdef COTUNE_WITH_CUDA
namespace {

// The launch description of one projection, checked: [rows, K] on CUDA, bf16 or NF4 as the others.
cuda::DecodeWeight decode_weight(const char* op, const char* name, const DecodeProj& p, int64_t K) {
  cuda::DecodeWeight w;
  if (p.nf4) {
    const Nf4Weight& q = *p.nf4;
    if (q.shape.ndim != 2 || q.shape[1] != K) fail("{}: NF4 {} weight must be [N, {}]", op, name, K);
    if (q.packed.device != Device::cuda) fail("{}: NF4 {} weight must be on CUDA", op, name);
    auto pow2 = [](int64_t v) { return v > 0 && (v & (v - 1)) == 0; };
    if (q.blocksize % 16 != 0 || !pow2(q.blocksize))
      fail("{}: NF4 {} blocksize {} is not a power of two >= 16", op, name, q.blocksize);
    if (q.nested && !pow2(q.nested_blocksize))
      fail("{}: NF4 {} nested blocksize {} is not a power of two", op, name, q.nested_blocksize);
    if (!aligned16(q.packed.data)) fail("{}: NF4 {} weight is not 16-byte aligned", op, name);
    w.packed = q.packed.ptr<uint8_t>();
    w.code = q.quant_map.ptr<float>();
    w.blocksize = q.blocksize;
    if (q.nested) {
      w.qabsmax = q.absmax.ptr<uint8_t>();
      w.nested_absmax = q.nested_absmax.ptr<float>();
      w.nested_map = q.nested_quant_map.ptr<float>();
      w.offset = q.offset;
      w.nested_bs = q.nested_blocksize;
    } else {
      w.absmax_f32 = q.absmax.ptr<float>();
    }
  } else {
    const Tensor& t = p.weight;
    if (t.ndim() != 2 || t.dim(1) != K || t.device != Device::cuda || t.dtype != DType::bf16)
      fail("{}: {} weight must be a CUDA bf16 [N, {}], got {}", op, name, K, t.str());
    if (!aligned16(t.data)) fail("{}: {} weight is not 16-byte aligned", op, name);
    w.w = t.data;
  }
  if (p.bias.data && (p.bias.device != Device::cuda || p.bias.dtype != DType::bf16 || p.bias.numel() != p.rows()))
    fail("{}: {} bias must be CUDA bf16 [{}], got {}", op, name, p.rows(), p.bias.str());
  return w;
}

// A CUDA bf16 vector [1, n] (16-byte aligned).
void check_row(const char* op, const char* name, const Tensor& t, int64_t n) {
  if (t.device != Device::cuda || t.dtype != DType::bf16 || t.numel() != n || (t.ndim() == 2 && t.dim(0) != 1))
    fail("{}: {} must be a CUDA bf16 [1, {}], got {}", op, name, n, t.str());
  if (!aligned16(t.data)) fail("{}: {} is not 16-byte aligned", op, name);
}

void check_rows_multiple(const char* op, const char* name, int64_t n) {
  if (n % cuda::decode_gemv_rows_multiple() != 0)
    fail("{}: {} has {} rows, not a multiple of {}", op, name, n, cuda::decode_gemv_rows_multiple());
}

void check_same_kind(const char* op, std::initializer_list<const DecodeProj*> ps) {
  for (const DecodeProj* p : ps)
    if ((p->nf4 != nullptr) != ((*ps.begin())->nf4 != nullptr)) fail("{}: weights must be all bf16 or all NF4", op);
}

}  // namespace
#endif

void decode_norm_qkv(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& x, const Tensor& norm_w,
                     float eps, const DecodeProj& wq, const DecodeProj& wk, const DecodeProj& wv) {
#ifdef COTUNE_WITH_CUDA
  const char* op = "decode_norm_qkv";
  const int64_t C = x.numel();
  if (C % 16 != 0) fail("{}: hidden size {} is not a multiple of 16", op, C);
  check_row(op, "x", x, C);
  check_row(op, "norm weight", norm_w, C);
  check_same_kind(op, {&wq, &wk, &wv});
  cuda::DecodeGemvArgs a;
  const DecodeProj* ps[3] = {&wq, &wk, &wv};
  const Tensor* outs[3] = {&q, &k, &v};
  const char* names[3] = {"q", "k", "v"};
  for (int s = 0; s < 3; ++s) {
    a.w[s] = decode_weight(op, names[s], *ps[s], C);
    a.n[s] = ps[s]->rows();
    check_rows_multiple(op, names[s], a.n[s]);
    check_row(op, names[s], *outs[s], a.n[s]);
    a.out[s] = outs[s]->data;
    a.bias[s] = ps[s]->bias.data;
  }
  a.x = x.data;
  a.norm_w = norm_w.data;
  a.eps = eps;
  a.K = C;
  cuda::launch_decode_norm_qkv(a);
#else
  (void)q, (void)k, (void)v, (void)x, (void)norm_w, (void)eps, (void)wq, (void)wk, (void)wv;
  fail("decode_norm_qkv needs a CUDA build");
#endif
}

int64_t decode_attention_partial_floats(int64_t T, int64_t H, int64_t D) {
#ifdef COTUNE_WITH_CUDA
  return T * H * cuda::decode_attention_splits() * (D + 2);
#else
  (void)T, (void)H, (void)D;
  return 0;
#endif
}

void decode_rope_attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& k_cache,
                           const Tensor& v_cache, const Tensor& slot, const Tensor& pos, const RopeSpec& rope, float scale,
                           const DecodeAttentionWork& work, const KvPages& pages) {
  const char* op = "decode_rope_attention";
  const CacheGeometry g = check_cache(op, k_cache, v_cache, pages);
  const int64_t KV = k_cache.dim(2), D = k_cache.dim(3);
  if (q.ndim() != 3 || q.dim(2) != D) fail("{}: q must be [T, H, {}], got {}", op, D, q.str());
  const int64_t T = q.dim(0), H = q.dim(1);
  if (H % KV != 0) fail("{}: {} query heads are not a multiple of {} KV heads", op, H, KV);
  if (k.ndim() != 3 || k.dim(0) != T || k.dim(1) != KV || k.dim(2) != D)
    fail("{}: k must be [{}, {}, {}], got {}", op, T, KV, D, k.str());
  if (!(v.shape == k.shape)) fail("{}: v {} must match k {}", op, v.str(), k.str());
  if (!(out.shape == q.shape)) fail("{}: out {} must match q {}", op, out.str(), q.str());
  check_index(op, slot, pos, T, g, pages);
  if (!on_cuda(op, {&out, &q, &k, &v, &k_cache, &v_cache}, slot, pos)) fail("{}: a CUDA op (tensors on the CPU)", op);
  if (D % 64 != 0 || D > 256) fail("{}: the kernel needs a head dim that is a multiple of 64 up to 256, got {}", op, D);
  const Tensor& wp = work.partial;
  const Tensor& wc = work.counters;
  if (wp.device != Device::cuda || wp.dtype != DType::f32 || wp.numel() < decode_attention_partial_floats(T, H, D))
    fail("{}: the partial-result buffer must be CUDA f32 of >= {} floats, got {}", op,
         decode_attention_partial_floats(T, H, D), wp.str());
  if (wc.device != Device::cuda || wc.dtype != DType::i32 || wc.numel() < T * H)
    fail("{}: the counters must be CUDA i32 of >= {} entries, got {}", op, T * H, wc.str());
#ifdef COTUNE_WITH_CUDA
  cuda::RopeFreq f{};
  rope_inv_freq(f.v, D, rope);  // as rope_forward
  cuda::launch_decode_attention(out.data, q.data, k.data, v.data, k_cache.data, v_cache.data, slot.ptr<int32_t>(),
                                pos.ptr<int32_t>(), wp.ptr<float>(), wc.ptr<int32_t>(), T, g.pg, H, KV, D, scale, f);
#else
  (void)rope, (void)scale, (void)g;
#endif
}

void decode_linear_residual(const Tensor& x, const Tensor& inp, const DecodeProj& w) {
#ifdef COTUNE_WITH_CUDA
  const char* op = "decode_linear_residual";
  const int64_t K = inp.numel(), N = x.numel();
  if (K % 16 != 0) fail("{}: input size {} is not a multiple of 16", op, K);
  check_row(op, "input", inp, K);
  check_row(op, "residual", x, N);
  cuda::DecodeGemvArgs a;
  a.w[0] = decode_weight(op, "projection", w, K);
  if (w.rows() != N) fail("{}: the projection has {} rows, the residual {}", op, w.rows(), N);
  if (w.bias.data) fail("{}: a projection with a bias is not supported", op);
  a.n[0] = N;
  a.out[0] = x.data;
  a.x = inp.data;
  a.K = K;
  cuda::launch_decode_residual(a);
#else
  (void)x, (void)inp, (void)w;
  fail("decode_linear_residual needs a CUDA build");
#endif
}

void decode_norm_swiglu(const Tensor& m, const Tensor& x, const Tensor& norm_w, float eps, const DecodeProj& gate,
                        const DecodeProj& up) {
#ifdef COTUNE_WITH_CUDA
  const char* op = "decode_norm_swiglu";
  const int64_t C = x.numel(), I = gate.rows();
  if (C % 16 != 0) fail("{}: hidden size {} is not a multiple of 16", op, C);
  check_row(op, "x", x, C);
  check_row(op, "norm weight", norm_w, C);
  check_row(op, "out", m, I);
  check_same_kind(op, {&gate, &up});
  if (up.rows() != I) fail("{}: gate has {} rows, up {}", op, I, up.rows());
  if (gate.bias.data || up.bias.data) fail("{}: gate/up biases are not supported", op);
  cuda::DecodeGemvArgs a;
  a.w[0] = decode_weight(op, "gate", gate, C);
  a.w[1] = decode_weight(op, "up", up, C);
  a.n[0] = I;
  a.out[0] = m.data;
  a.x = x.data;
  a.norm_w = norm_w.data;
  a.eps = eps;
  a.K = C;
  cuda::launch_decode_norm_swiglu(a);
#else
  (void)m, (void)x, (void)norm_w, (void)eps, (void)gate, (void)up;
  fail("decode_norm_swiglu needs a CUDA build");
#endif
}

void decode_logits(const Tensor& logits, const Tensor& h, const DecodeProj& w) {
#ifdef COTUNE_WITH_CUDA
  const char* op = "decode_logits";
  const int64_t K = h.numel(), N = w.rows();
  if (K % 16 != 0) fail("{}: input size {} is not a multiple of 16", op, K);
  check_row(op, "input", h, K);
  if (logits.device != Device::cuda || logits.dtype != DType::f32 || logits.numel() != N)
    fail("{}: logits must be CUDA f32 [1, {}], got {}", op, N, logits.str());
  cuda::DecodeGemvArgs a;
  a.w[0] = decode_weight(op, "lm_head", w, K);
  a.n[0] = N;
  a.out[0] = logits.data;
  a.bias[0] = w.bias.data;
  a.x = h.data;
  a.K = K;
  cuda::launch_decode_logits(a);
#else
  (void)logits, (void)h, (void)w;
  fail("decode_logits needs a CUDA build");
#endif
}

int64_t argmax_partials() {
#ifdef COTUNE_WITH_CUDA
  return cuda::argmax_partials();
#else
  return 1;
#endif
}

void argmax_advance(const Tensor& logits, int64_t vocab, const Tensor& partial_v, const Tensor& partial_i,
                    const Tensor& ids, const Tensor& pos, const Tensor& tokens, const Tensor& count) {
  const char* op = "argmax_advance";
  if (logits.dtype != DType::f32 || vocab < 1 || vocab > logits.numel())
    fail("{}: logits {} must be f32 of at least vocab {} values", op, logits.str(), vocab);
  for (const Tensor* t : {&ids, &pos, &tokens, &count})
    if (t->dtype != DType::i32 || t->device != logits.device || t->numel() < 1)
      fail("{}: {} must be a non-empty i32 tensor on the logits' device", op, t->str());
  if (logits.device == Device::cuda) {
    if (partial_v.dtype != DType::f32 || partial_i.dtype != DType::i32 || partial_v.device != Device::cuda ||
        partial_i.device != Device::cuda || partial_v.numel() < argmax_partials() || partial_i.numel() < argmax_partials())
      fail("{}: the partials {} / {} must be f32 / i32 CUDA tensors of {} entries", op, partial_v.str(), partial_i.str(),
           argmax_partials());
#ifdef COTUNE_WITH_CUDA
    cuda::launch_argmax_advance(logits.ptr<float>(), vocab, partial_v.ptr<float>(), partial_i.ptr<int32_t>(),
                                ids.ptr<int32_t>(), pos.ptr<int32_t>(), tokens.ptr<int32_t>(), count.ptr<int32_t>());
    return;
#else
    fail("{}: CUDA tensors in a build without CUDA", op);
#endif
  }
  if (count.ptr<int32_t>()[0] < 0 || count.ptr<int32_t>()[0] >= tokens.numel())
    fail("{}: count {} is outside tokens {}", op, count.ptr<int32_t>()[0], tokens.str());
  cpu::argmax_advance(logits.ptr<float>(), vocab, ids.ptr<int32_t>(), pos.ptr<int32_t>(), tokens.ptr<int32_t>(),
                      count.ptr<int32_t>());
}

}  // namespace cotune::kernels
