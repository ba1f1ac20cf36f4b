// Raw-pointer launchers of decode.cu (kernels/decode_ops.h on CUDA). No fmt here (see launch.h).
#pragma once
#include <cstdint>

namespace cotune::kernels::cuda {

// k_cache, v_cache bf16 [S, N, KV, D]; k, v bf16 [T, KV, D]; slot, pos i32 [T] (device).
void launch_kv_cache_write(void* k_cache, void* v_cache, const void* k, const void* v, const int32_t* slot,
                           const int32_t* pos, int64_t T, int64_t N, int64_t KV, int64_t D);
// out, q bf16 [T, H, D]; one block per (token, head), D % 32 == 0 and D <= 256. fp32 softmax and accumulation.
void launch_cached_attention(void* out, const void* q, const void* k_cache, const void* v_cache, const int32_t* slot,
                             const int32_t* pos, int64_t T, int64_t N, int64_t H, int64_t KV, int64_t D, float scale);

}  // namespace cotune::kernels::cuda
