// Ops of the inference (decode) path that the training forward does not need: a key/value cache and
// attention of new tokens against it. Same conventions as ops.h (one dispatch point, shapes checked,
// CPU reference in fp32; CUDA kernels in cuda/decode.cu: bf16 storage, fp32 accumulation).
//
// Cache layout: k_cache, v_cache [S, N, KV, D] (act dtype): S sequence slots of N positions each; or paged
// (KvPages): a pool of P pages [P, page, KV, D] and a block table naming each slot's pages. A token is addressed
// by (slot, position); slot and position tensors are i32 [T].
#pragma once
#include "kernels/quant.h"
#include "kernels/rope.h"
#include "tensor/tensor.h"

namespace cotune::kernels {

// A paged KV cache: the cache tensors are a pool [P, page, KV, D]; table i32 [S, max_pages] (on the cache's device)
// lists each slot's pages in order: (slot, pos) is row table[slot][pos / page] * page + pos % page of the pool.
// Slots hold max_pages * page positions at most. An empty table: the contiguous cache [S, N, KV, D].
struct KvPages {
  Tensor table;
  int64_t page = 0;
  bool paged() const { return table.data != nullptr; }
};

// k_cache[slot[t], pos[t]] = k[t], v_cache[slot[t], pos[t]] = v[t] for every t. k, v [T, KV, D].
void kv_cache_write(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k, const Tensor& v,
                    const Tensor& slot, const Tensor& pos, const KvPages& pages = {});

// out[T,H,D]: query t attends causally to the cached keys/values of its slot at positions [0, pos[t]]
// (so a token's own k/v must be written first). Grouped-query: query head h reads KV head h / (H / KV).
// window > 0 (sliding window): only positions (pos[t] - window, pos[t]] (the cache keeps every position). Softmax
// in fp32. This is attention_forward (ops.h) for tokens whose earlier keys sit in the cache:
// prefill (many tokens of a sequence), chunked prefill and one-token decode steps are all this one op.
void cached_attention_forward(const Tensor& out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                              const Tensor& slot, const Tensor& pos, float scale, int64_t window = 0,
                              const KvPages& pages = {});

// The greedy step of the device decode loop (batch 1, infer/generator.cpp): i = the arg-max of logits f32 [>= vocab]
// over ids [0, vocab) (the larger value, the lower id on ties; NaN never wins; nothing but NaN gives INT32_MAX), then
// ids[0] = i, tokens[count[0]] = i, ++count[0], ++pos[0] (i32, on the logits' device; tokens long enough). partial_v
// f32 / partial_i i32 [>= argmax_partials()] are scratch. Nothing is read back: a CUDA graph can replay the step.
void argmax_advance(const Tensor& logits, int64_t vocab, const Tensor& partial_v, const Tensor& partial_i,
                    const Tensor& ids, const Tensor& pos, const Tensor& tokens, const Tensor& count);
int64_t argmax_partials();

// Decode-size linear layers on CUDA (at most 8 rows): out [T, N] = inp [T, K] @ weight [N, K]^T (+ bias [N]) by a
// GEMV kernel (one warp a row) instead of a cuBLASLt GEMM. bf16 inp / weight / bias, out bf16 or f32. Returns
// false, doing nothing, where it does not apply (CPU tensors, more rows, other dtypes or alignments): the caller
// then uses linear_forward.
bool small_linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& bias);
// The same with the NF4 weight dequantized in registers (reads 0.5 byte a weight; no bf16 copy). out bf16.
bool small_nf4_linear_forward(const Tensor& out, const Tensor& inp, const Nf4Weight& weight, const Tensor& bias);

// ---- the fused one-token decode step (CUDA, bf16 activations; kernels in cuda/decode_fused.cu) ------------------
// A layer of a batch-1 decode step in 5 launches: rmsnorm+q/k/v, rope+cache write+attention, o+residual,
// rmsnorm+gate/up+swiglu, down+residual. Roundings are those of the unfused ops (bf16 weights: bit-identical).
// A projection of the step: a bf16 weight [N, K] or an NF4 one (nf4 set), and an optional bf16 bias [N].
struct DecodeProj {
  Tensor weight;
  const Nf4Weight* nf4 = nullptr;
  Tensor bias;
  int64_t rows() const;
  int64_t cols() const;
};
// Whether the fused step takes a model of these sizes (hidden C, intermediate I, H / KV heads of D; nf4_blocksize
// 0 for bf16 weights). Callers fall back to the unfused ops where it does not.
bool decode_step_fusable(int64_t C, int64_t I, int64_t H, int64_t KV, int64_t D, int64_t nf4_blocksize);
// q [1, Nq], k, v [1, Nkv] = rmsnorm(x [1, C]) @ W^T + b.
void decode_norm_qkv(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& x, const Tensor& norm_w,
                     float eps, const DecodeProj& wq, const DecodeProj& wk, const DecodeProj& wv);
// q [T, H, D], k, v [T, KV, D] un-rotated, each token the newest of its own slot: out [T, H, D] = attention of
// rope(q) over the cache after writing rope(k), v at (slot, pos) (rope_forward + kv_cache_write +
// cached_attention_forward; the sums run in another order). `work` is decode_attention_work() of this op's size:
// f32 partial results of the blocks a head, and i32 counters that must start (and are left) zero.
struct DecodeAttentionWork {
  Tensor partial;   // f32
  Tensor counters;  // i32, zeroed
};
int64_t decode_attention_partial_floats(int64_t T, int64_t H, int64_t D);
void decode_rope_attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& k_cache,
                           const Tensor& v_cache, const Tensor& slot, const Tensor& pos, const RopeSpec& rope, float scale,
                           const DecodeAttentionWork& work, const KvPages& pages = {});
// x [1, N] = bf16(x + bf16(inp [1, K] @ W^T))  (linear_forward then add; W has no bias).
void decode_linear_residual(const Tensor& x, const Tensor& inp, const DecodeProj& w);
// m [1, I] = swiglu(h @ Wg^T, h @ Wu^T), h = rmsnorm(x [1, C]).
void decode_norm_swiglu(const Tensor& m, const Tensor& x, const Tensor& norm_w, float eps, const DecodeProj& gate,
                        const DecodeProj& up);
// logits f32 [1, V] = h [1, C] @ W^T (+ b).
void decode_logits(const Tensor& logits, const Tensor& h, const DecodeProj& w);

}  // namespace cotune::kernels
