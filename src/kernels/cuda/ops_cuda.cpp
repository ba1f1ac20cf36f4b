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
