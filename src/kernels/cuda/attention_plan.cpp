// Attention on CUDA: the planner (which kernel — flash, its 64-row variant, or the simple twin — and how the work
// splits over the GPU's SMs, from the shapes, the window and kernels::Tuning) and the Tensor-level entry points of
// cuda_ops.h / attention.h that run the plan. The kernels live in attention.cu (simple) and attention_flash_*.cu.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/internal.h"
#include "kernels/cuda/launch.h"
#include "kernels/tuning.h"

namespace cotune::kernels::cuda {

// ---- attention ------------------------------------------------------------------------------------------------

namespace {

AttentionArgs make_args(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& lse,
                        const Tensor& cu_seqlens, int max_seqlen, float scale) {
  AttentionArgs a;
  a.q = q.data;
  a.k = k.data;
  a.v = v.data;
  a.lse = lse.ptr<float>();
  a.cu_seqlens = cu_seqlens.ptr<int32_t>();
  a.S = static_cast<int>(cu_seqlens.dim(0) - 1);
  a.T = static_cast<int>(q.dim(0));
  a.H = static_cast<int>(q.dim(1));
  a.KV = static_cast<int>(k.dim(1));
  a.D = static_cast<int>(q.dim(2));
  a.max_seqlen = max_seqlen;
  a.scale = scale;
  if (max_seqlen < 0) fail("attention (CUDA): max_seqlen must be >= 0, got {}", max_seqlen);
  return a;
}

bool flash_ok(int64_t D) { return D == kFlashHeadDim; }

// The host knows T, S and the longest length, not each sequence's. A batch padded for a CUDA graph is one long
// sequence plus a short one of ignored tokens (S = 2), so shape estimates bound the tiles by the tokens as well:
// query tiles of `rows` rows over all sequences (each sequence adds at most one partial tile), and causal (query
// tile, key tile) pairs, at most nq (nq + 1) / 2 per sequence and (nq + 1) / 2 per query tile.
int64_t query_tiles(const AttentionArgs& a, int rows) {
  const int64_t nq = (a.max_seqlen + rows - 1) / rows;
  return std::min<int64_t>(a.S * nq, (a.T + rows - 1) / rows + a.S);
}
int64_t causal_tile_pairs(const AttentionArgs& a, int rows) {
  const int64_t nq = (a.max_seqlen + rows - 1) / rows;
  return std::min<int64_t>(a.S * nq * (nq + 1) / 2, (query_tiles(a, rows) * (nq + 1) + 1) / 2);
}

// The window the kernels apply: none when no sequence is longer than it (then it changes nothing, and the flash
// kernels stay in use).
int window_that_matters(int64_t window, int max_seqlen) {
  return window > 0 && window < max_seqlen ? static_cast<int>(window) : 0;
}

// automatic: flash for head dim 128 (else simple). Of the two flash forwards, the 128-row one is ~5% faster when
// it has enough blocks to fill the GPU (4 x 2048 tokens, H100: 0.266 vs 0.280 ms) and slower when it does not
// (1 x 1024: 0.050 vs 0.046 ms), so it is taken when it launches at least two blocks per SM (H200, 1 x 2048: 0.086
// vs 0.076 ms; 4 x 2048: 0.212 vs 0.241). Blocks are counted with query_tiles, so that a batch padded for a graph
// (one sequence + a short padding one) is judged as the one sequence.
AttentionImpl choose(AttentionImpl impl, const AttentionArgs& a) {
  const int64_t D = a.D;
  // A sliding window that matters: only the simple kernels implement it (exact; slower than flash at long lengths).
  if (a.window > 0) {
    if (impl == AttentionImpl::flash || impl == AttentionImpl::flash_m64)
      fail("attention (CUDA): the flash kernels implement no sliding window (window {})", a.window);
    impl = AttentionImpl::simple;
  }
  if (impl == AttentionImpl::automatic) {
    if (kernels::tuning().attention == Tuning::Attention::simple || !flash_ok(D)) {
      impl = AttentionImpl::simple;
    } else {
      const int64_t wide_blocks = query_tiles(a, 128) * a.H;
      impl = wide_blocks >= 2 * static_cast<int64_t>(sm_count()) ? AttentionImpl::flash : AttentionImpl::flash_m64;
    }
  }
  if ((impl == AttentionImpl::flash || impl == AttentionImpl::flash_m64) && !flash_ok(D))
    fail("attention (CUDA): the flash kernels need head dim {}, got {}", kFlashHeadDim, D);
  if (impl == AttentionImpl::simple && (D % 32 != 0 || D > kSimpleAttentionMaxD))
    fail("attention (CUDA): head dim must be a multiple of 32 and at most {} (or exactly {}), got {}",
         kSimpleAttentionMaxD, kFlashHeadDim, D);
  return impl;
}

// Work splits of the flash kernels (see AttentionArgs). With few sequences the grid is small and uneven (one
// sequence: ceil(L / 64) x 12 blocks, the longest doing all L / 64 key tiles, key tile 0 of dk/dv visiting every
// query tile), so long causal ranges are cut into chunks whose fp32 partials are merged in a fixed order. The
// kernels run two blocks per SM (239-255 registers a thread). Chunk sizes (H200 sweeps over one sequence of 512 to
// 2048 tokens; splitting never pays once the plain grid has ~two waves):
//   forward: chunks of work / (2 * SMs) key tiles, at least 8, only when the plain grid is under two blocks per SM;
//   dq:      chunks of work / (6 * SMs) key tiles, at least 4 (1 x 2048: 8);
//   dk/dv:   (head, query tile) pairs / (6 * SMs) pairs per block, at least 4 and at most the longest range of one
//            head (the packed batch: one head's range per block, as before).
// Tuning::attention_split_* (key attention_split = "fwd_ck,dq_ck,dkdv_w") override them (negative: automatic; 0 for
// fwd_ck / dq_ck: no split), for benchmarks and tests.
// The most scratch the backward spends on keeping dS, S * H * nq (nq + 1) / 2 tiles of 8 KiB: one sequence of 2048
// tokens and 12 heads: 52 MiB, 104 MiB as a CUDA-graph batch (plus its padding sequence); 4 x 2048 would need
// 207 MiB and recomputes dS instead (H200: backward 0.955 ms, 0.767 with dS kept). The limit is
// Tuning::attention_ds_limit_mib (default 128 MiB).

struct SplitPlan {
  int fwd_ck = 0, dq_ck = 0, dkdv_w = 0;
  bool dq_forced = false;  // dq_ck set by Tuning::attention_split_dq
};

// Key tiles per chunk for query tiles of 64 * mt rows: the causal work in key-tile steps over per_sm * SMs blocks,
// at least min_ck; 0 (no split) when that covers the longest tile anyway.
int auto_ck(const AttentionArgs& a, int mt, int per_sm, int min_ck) {
  const int rows = 64 * mt;
  const int64_t qtiles = (a.max_seqlen + rows - 1) / rows, sms = sm_count();
  const int64_t work = a.H * mt * causal_tile_pairs(a, rows);
  const int64_t ck = std::max<int64_t>(min_ck, (work + sms * per_sm - 1) / (sms * per_sm));
  return ck >= qtiles * mt ? 0 : static_cast<int>(ck);
}

SplitPlan split_plan(const AttentionArgs& a, bool wide) {
  SplitPlan p;
  const int64_t nq = (a.max_seqlen + 63) / 64, group = a.H / a.KV, sms = sm_count();
  const int mt = wide ? 2 : 1;
  const int64_t fwd_blocks = a.H * query_tiles(a, 64 * mt);
  p.fwd_ck = fwd_blocks >= 2 * sms ? 0 : auto_ck(a, mt, 2, 8);
  p.dq_ck = auto_ck(a, 1, 6, 4);
  const int64_t pairs = a.KV * group * causal_tile_pairs(a, 64);
  p.dkdv_w = static_cast<int>(std::min<int64_t>(std::max<int64_t>((pairs + 6 * sms - 1) / (6 * sms), 4),
                                                 std::max<int64_t>(nq, 1)));  // at most nq, even when nq < 4
  const Tuning& t = kernels::tuning();
  if (t.attention_split_fwd >= 0) p.fwd_ck = t.attention_split_fwd;
  if (t.attention_split_dq >= 0) p.dq_ck = t.attention_split_dq, p.dq_forced = true;
  if (t.attention_split_dkdv > 0) p.dkdv_w = t.attention_split_dkdv;
  return p;
}

}  // namespace

void attention_forward_impl(AttentionImpl impl, const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                            const Tensor& v, const Tensor& cu_seqlens, int max_seqlen, float scale, int64_t window) {
  const char* op = "attention_forward";
  for (const Tensor* t : {&out, &q, &k, &v}) need_dtype(*t, DType::bf16, op, "q/k/v/out");
  if (q.dim(0) == 0) return;
  AttentionArgs a = make_args(q, k, v, lse, cu_seqlens, max_seqlen, scale);
  a.window = window_that_matters(window, max_seqlen);
  a.out_w = out.data;
  const AttentionImpl chosen = choose(impl, a);
  if (chosen == AttentionImpl::simple) {
    simple_attention_forward(a);
    return;
  }
  const bool wide = chosen == AttentionImpl::flash;
  const int mt = wide ? 2 : 1;
  a.fwd_ck = split_plan(a, wide).fwd_ck;
  if (a.fwd_ck > 0) {
    // fp32 partials: [S*H*slots][rows][D] outputs, then [S*H*slots][rows] lse.
    const int qtiles = (a.max_seqlen + 64 * mt - 1) / (64 * mt);
    a.fwd_slots = static_cast<int>(flash_split_slots(qtiles, mt, a.fwd_ck));
    const size_t rows = static_cast<size_t>(a.S) * static_cast<size_t>(a.H) * static_cast<size_t>(a.fwd_slots) * 64 * mt;
    a.fwd_partial = static_cast<float*>(scratch(rows * (static_cast<size_t>(a.D) + 1) * sizeof(float)));
  }
  flash_attention_forward(a, wide);
}

void attention_backward_impl(AttentionImpl impl, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                             const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                             const Tensor& lse, const Tensor& cu_seqlens, int max_seqlen, float scale,
                             int64_t window) {
  const char* op = "attention_backward";
  for (const Tensor* t : {&dq, &dk, &dv, &dout, &q, &k, &v, &out}) need_dtype(*t, DType::bf16, op, "argument");
  if (q.dim(0) == 0) return;
  AttentionArgs a = make_args(q, k, v, lse, cu_seqlens, max_seqlen, scale);
  a.window = window_that_matters(window, max_seqlen);
  a.out = out.data;
  a.dout = dout.data;
  a.dq = dq.data;
  a.dk = dk.data;
  a.dv = dv.data;
  const AttentionImpl chosen = choose(impl, a);
  // One scratch request for all workspaces: dvec f32 [H,T]; (flash) the fp32 dK/dV shares [2][chunks][T,KV,D]
  // of key tiles split over several blocks, reduced in chunk order (no atomics); the fp32 dQ shares of split
  // query tiles [S*H*slots][64][D]; dS kept for the dq kernel (bf16, 8 KiB per causal tile pair and head) when
  // that fits the dS limit: the dq kernel then does one GEMM per tile instead of three, and is cheap enough not to
  // need splitting (H200, 1 x 2048: backward 0.252 ms unsplit, 0.264 with chunks of 8).
  const auto round256 = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t dvec_bytes = round256(static_cast<size_t>(a.H) * static_cast<size_t>(a.T) * sizeof(float));
  const bool flash = chosen != AttentionImpl::simple;
  size_t part_bytes = 0, dq_bytes = 0, ds_bytes = 0;
  if (flash) {
    const int64_t nq = (a.max_seqlen + 63) / 64;
    a.ds_tri = nq * (nq + 1) / 2;
    const size_t bytes = static_cast<size_t>(a.S) * static_cast<size_t>(a.H) * static_cast<size_t>(a.ds_tri) * 8192;
    const Tuning& t = kernels::tuning();  // attention_keep_ds false: recompute dS in the dq kernel
    const size_t limit = static_cast<size_t>(t.attention_ds_limit_mib) << 20;
    if (bytes <= limit && t.attention_keep_ds) ds_bytes = round256(bytes);
    const SplitPlan plan = split_plan(a, false);
    a.dq_ck = ds_bytes && !plan.dq_forced ? 0 : plan.dq_ck;
    a.dkdv_w = plan.dkdv_w;
    const int chunks = flash_dkdv_chunks(a.max_seqlen, a.H / a.KV, a.dkdv_w);
    if (chunks > 1)
      part_bytes = round256(2 * static_cast<size_t>(chunks) * static_cast<size_t>(a.T) * static_cast<size_t>(a.KV) *
                            static_cast<size_t>(a.D) * sizeof(float));
    if (a.dq_ck > 0) {
      a.dq_slots = static_cast<int>(flash_split_slots(static_cast<int>(nq), 1, a.dq_ck));
      dq_bytes = round256(static_cast<size_t>(a.S) * static_cast<size_t>(a.H) * static_cast<size_t>(a.dq_slots) * 64 *
                          static_cast<size_t>(a.D) * sizeof(float));
    }
  }
  char* ws = static_cast<char*>(scratch(dvec_bytes + part_bytes + dq_bytes + ds_bytes));
  a.dvec = reinterpret_cast<float*>(ws);
  a.dkv_partial = part_bytes ? reinterpret_cast<float*>(ws + dvec_bytes) : nullptr;
  a.dq_partial = dq_bytes ? reinterpret_cast<float*>(ws + dvec_bytes + part_bytes) : nullptr;
  a.ds = ds_bytes ? static_cast<void*>(ws + dvec_bytes + part_bytes + dq_bytes) : nullptr;
  attention_dvec(a);
  if (flash) flash_attention_backward(a);
  else simple_attention_backward(a);
}

void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& cu_seqlens, int max_seqlen, float scale, int64_t window) {
  attention_forward_impl(AttentionImpl::automatic, out, lse, q, k, v, cu_seqlens, max_seqlen, scale, window);
}

void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& cu_seqlens, int max_seqlen, float scale, int64_t window) {
  attention_backward_impl(AttentionImpl::automatic, dq, dk, dv, dout, q, k, v, out, lse, cu_seqlens, max_seqlen, scale,
                          window);
}

}  // namespace cotune::kernels::cuda
