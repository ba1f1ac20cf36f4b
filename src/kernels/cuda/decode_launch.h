// Raw-pointer launchers of decode.cu (kernels/decode_ops.h on CUDA). No fmt here (see launch.h).
#pragma once
#include <cstddef>
#include <cstdint>

namespace cotune::kernels::cuda {

// k_cache, v_cache bf16 [S, N, KV, D]; k, v bf16 [T, KV, D]; slot, pos i32 [T] (device).
void launch_kv_cache_write(void* k_cache, void* v_cache, const void* k, const void* v, const int32_t* slot,
                           const int32_t* pos, int64_t T, int64_t N, int64_t KV, int64_t D);
// out, q bf16 [T, H, D]; one block per (token, head), D % 32 == 0 and D <= 256. fp32 softmax and accumulation.
void launch_cached_attention(void* out, const void* q, const void* k_cache, const void* v_cache, const int32_t* slot,
                             const int32_t* pos, int64_t T, int64_t N, int64_t H, int64_t KV, int64_t D, float scale);

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
// CUDA graph of what this thread launches on its stream between begin and end (an instantiated cudaGraphExec_t).
void graph_begin_capture();
void* graph_end_capture();
void graph_abort_capture();  // ends a capture that failed half-way and clears the error
void graph_launch(void* exec);
void graph_destroy(void* exec);
void memset_async(void* p, int value, size_t bytes);

}  // namespace cotune::kernels::cuda
