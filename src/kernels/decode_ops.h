// Ops of the inference (decode) path that the training forward does not need: a key/value cache and
// attention of new tokens against it. Same conventions as ops.h (one dispatch point, shapes checked,
// CPU reference in fp32; CUDA kernels in cuda/decode.cu: bf16 storage, fp32 accumulation).
//
// Cache layout: k_cache, v_cache [S, N, KV, D] (act dtype): S sequence slots of N positions each. A token
// is addressed by (slot, position); slot and position tensors are i32 [T].
#pragma once
#include "kernels/quant.h"
#include "tensor/tensor.h"

namespace cotune::kernels {

// k_cache[slot[t], pos[t]] = k[t], v_cache[slot[t], pos[t]] = v[t] for every t. k, v [T, KV, D].
void kv_cache_write(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k, const Tensor& v,
                    const Tensor& slot, const Tensor& pos);

// out[T,H,D]: query t attends causally to the cached keys/values of its slot at positions [0, pos[t]]
// (so a token's own k/v must be written first). Grouped-query: query head h reads KV head h / (H / KV).
// Softmax in fp32. This is attention_forward (ops.h) for tokens whose earlier keys sit in the cache:
// prefill (many tokens of a sequence), chunked prefill and one-token decode steps are all this one op.
void cached_attention_forward(const Tensor& out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                              const Tensor& slot, const Tensor& pos, float scale);

// Decode-size linear layers on CUDA (at most 8 rows): out [T, N] = inp [T, K] @ weight [N, K]^T (+ bias [N]) by a
// GEMV kernel (one warp a row) instead of a cuBLASLt GEMM. bf16 inp / weight / bias, out bf16 or f32. Returns
// false, doing nothing, where it does not apply (CPU tensors, more rows, other dtypes or alignments): the caller
// then uses linear_forward.
bool small_linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& bias);
// The same with the NF4 weight dequantized in registers (reads 0.5 byte a weight; no bf16 copy). out bf16.
bool small_nf4_linear_forward(const Tensor& out, const Tensor& inp, const Nf4Weight& weight, const Tensor& bias);

}  // namespace cotune::kernels
