// Attention implementations behind cuda_ops.h's attention_forward / attention_backward.
//   simple: one warp per (query, head) row, fp32 scalar math, online softmax; O(T) memory. The correctness
//           twin of the flash kernels on the GPU (any D that is a multiple of 32, up to 256).
//   flash:  FlashAttention-2 style tiles of 64 queries x 64 keys, bf16 tensor cores (mma.sync m16n8k16, fp32
//           accumulation), online softmax, lse saved; backward without atomics: one block per (kv head, key tile)
//           accumulates dK/dV over every query of its query-head group, a second kernel per (head, query tile)
//           accumulates dQ, so results are bit-identical run to run. Head dim 128 only.
//           Small grids (a single sequence: ceil(L / 64) x 12 blocks, the longest doing every key tile) are
//           rebalanced by splitting long causal ranges over several blocks (fp32 partials merged in a fixed
//           order), and when it fits 128 MiB the backward keeps dS (bf16) so that the dq kernel does one GEMM per
//           tile instead of recomputing S and dP (ops_cuda.cpp: split_plan; the limit is Tuning::attention_ds_limit_mib).
// attention_forward/backward in cuda_ops.h pick flash when D == 128, else simple; kernels::Tuning (kernels/tuning.h,
// flags / recipe keys attention_kernel = simple, attention_split = "fwd_ck,dq_ck,dkdv_w", attention_keep_ds,
// attention_ds_limit_mib) forces the simple kernels (debugging), the work splits or dS recomputation (benchmarks,
// tests). A sliding window (window > 0) shorter than the longest sequence runs the
// simple kernels, the only ones that implement it.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace cotune::kernels::cuda {

// flash: the forward with 128-row query tiles (32 rows per warp); flash_m64: the forward with 64-row tiles
// (16 rows per warp). Both use the same backward.
enum class AttentionImpl { automatic, simple, flash, flash_m64 };

void attention_forward_impl(AttentionImpl impl, const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                            const Tensor& v, const Tensor& cu_seqlens, int max_seqlen, float scale,
                            int64_t window = 0);
void attention_backward_impl(AttentionImpl impl, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                             const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                             const Tensor& lse, const Tensor& cu_seqlens, int max_seqlen, float scale,
                             int64_t window = 0);

}  // namespace cotune::kernels::cuda
