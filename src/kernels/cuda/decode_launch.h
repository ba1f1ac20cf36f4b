// Raw-pointer launchers of decode.cu (kernels/decode_ops.h on CUDA). No fmt here (see launch.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/kv_paging.h"

namespace cotune::kernels::cuda {

// k_cache, v_cache bf16 (rows addressed by pg); k, v bf16 [T, KV, D]; slot, pos i32 [T] (device).
void launch_kv_cache_write(void* k_cache, void* v_cache, const void* k, const void* v, const int32_t* slot,
                           const int32_t* pos, int64_t T, const KvPaging& pg, int64_t KV, int64_t D);
// out, q bf16 [T, H, D]; one block per (token, head), D % 32 == 0 and D <= 256. fp32 softmax and accumulation.
// window > 0: only the `window` newest positions (sliding window).
void launch_cached_attention(void* out, const void* q, const void* k_cache, const void* v_cache, const int32_t* slot,
                             const int32_t* pos, int64_t T, const KvPaging& pg, int64_t H, int64_t KV, int64_t D,
                             float scale, int64_t window = 0);

// out [T, N] (f32 when out_f32, else bf16) = in [T, K] @ w [N, K]^T (+ bias [N], may be null); bf16 in, w, bias.
// T <= 8, K % 8 == 0, in and w 16-byte aligned. One warp a row, fp32 accumulation.
void launch_gemv(void* out, bool out_f32, const void* in, const void* w, const void* bias, int64_t T, int64_t N,
                 int64_t K);
// The same with an NF4 weight [N, K] (arguments as launch_nf4_dequantize), dequantized in registers; bf16 out.
// K % 32 == 0, blocksize % 32 == 0, packed 16-byte aligned.
void launch_nf4_gemv(void* out, const void* in, const uint8_t* packed, const void* bias, int64_t T, int64_t N,
                     int64_t K, int64_t blocksize, const float* code, const uint8_t* qabsmax, const float* absmax_f32,
                     const float* nested_absmax, const float* nested_map, float offset, int64_t nested_bs);
// Entries of the partial buffers launch_argmax_advance needs.
int argmax_partials();
// Greedy step on the device: i = argmax of logits f32 [V] (lowest index on ties, as infer::argmax);
// ids[0] = i, tokens[count[0]] = i, ++count[0], ++pos[0].
void launch_argmax_advance(const float* logits, int64_t V, float* part_v, int32_t* part_i, int32_t* ids, int32_t* pos,
                           int32_t* tokens, int32_t* count);
// ids i32 [n] = the selection of each row of logits f32 [n, stride] over ids [0, vocab) (kernels/select_ops.h);
// params: n select_math::Params; scratch: n * vocab doubles.
void launch_select_tokens(int32_t* ids, const float* logits, int64_t n, int64_t stride, int64_t vocab,
                          const void* params, void* scratch);
void memset_async(void* p, int value, size_t bytes);

// ---- decode_fused.cu: the one-token decode step in 5 launches a layer ----------------------------------------
// One weight [N, K] of a decode GEMV: bf16 (w) or NF4 (packed and its quant state, as launch_nf4_gemv).
struct DecodeWeight {
  const void* w = nullptr;
  const uint8_t* packed = nullptr;
  const float* code = nullptr;
  const uint8_t* qabsmax = nullptr;  // nested absmax (with nested_absmax, nested_map, offset), or null
  const float* absmax_f32 = nullptr;
  const float* nested_absmax = nullptr;
  const float* nested_map = nullptr;
  float offset = 0.0f;
  int64_t blocksize = 64;
  int64_t nested_bs = 256;
};
// A fused decode GEMV over one input row x bf16 [K] (16-byte aligned, K % 16 == 0). Segments (up to 3 weights
// with the same K) stack their output rows; every segment's N must be a multiple of decode_gemv_rows_multiple().
// All weights bf16, or all NF4 (blocksize % 16 == 0).
struct DecodeGemvArgs {
  DecodeWeight w[3];
  int64_t n[3] = {0, 0, 0};
  void* out[3] = {nullptr, nullptr, nullptr};
  const void* bias[3] = {nullptr, nullptr, nullptr};
  const void* x = nullptr;
  const void* norm_w = nullptr;  // RMSNorm weight [K] for the norm_* launchers
  float eps = 0.0f;
  int64_t K = 0;
};
int decode_gemv_rows_multiple();
// out[s] bf16 [n[s]] = rmsnorm(x) @ w[s]^T + bias[s]  (q, k, v)
void launch_decode_norm_qkv(const DecodeGemvArgs& a);
// out[0] (the residual, bf16 [n[0]]) = bf16(out[0] + bf16(x @ w[0]^T))  (o, down)
void launch_decode_residual(const DecodeGemvArgs& a);
// out[0] bf16 [n[0]] = swiglu(bf16(h @ w[0]^T), bf16(h @ w[1]^T)), h = rmsnorm(x)  (gate, up)
void launch_decode_norm_swiglu(const DecodeGemvArgs& a);
// out[0] f32 [n[0]] = x @ w[0]^T (+ bias[0])  (LM head)
void launch_decode_logits(const DecodeGemvArgs& a);
struct RopeFreq {
  float v[128];  // inv_freq [D/2], D <= 256
};
// T tokens, each the newest of its own slot: q bf16 [T, H, D], k, v [T, KV, D] un-rotated; rotates q and k at
// pos[t], writes k and v to the cache at (slot[t], pos[t]) and attends over positions [0, pos[t]]. D in {64, 128,
// 192, 256}. The positions are split over decode_attention_splits() blocks a head: part f32
// [T * H * splits * (D + 2)] holds their partial results, counters i32 [T * H] must be zero (and are left zero).
int decode_attention_splits();
void launch_decode_attention(void* out, const void* q, const void* k, const void* v, void* k_cache, void* v_cache,
                             const int32_t* slot, const int32_t* pos, float* part, int32_t* counters, int64_t T,
                             const KvPaging& pg, int64_t H, int64_t KV, int64_t D, float scale,
                             const RopeFreq& inv_freq);
// Programmatic dependent launch for the fused decode kernels (each starts while its predecessor drains; its weight
// loads overlap). On by default.
void set_decode_pdl(bool on);
bool decode_pdl();

}  // namespace cotune::kernels::cuda
