// Causal GQA attention over packed varlen sequences: the simple kernels (scalar fp32, one warp per row), the
// correctness twin of the flash kernels and the only ones with a sliding window, and the dvec pre-pass of both
// backward passes.
#include "kernels/cuda/common.cuh"

namespace cotune::kernels::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kMaxDPerLane = kSimpleAttentionMaxD / 32;

// Sequence of token t: the s with cu[s] <= t < cu[s+1] (binary search; empty sequences are skipped).
__device__ __forceinline__ int find_seq(const int32_t* cu, int S, int t) {
  int lo = 0, hi = S - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (cu[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// The first key query i sees: its sequence's first (causal), or with a sliding window the `window` newest keys.
__device__ __forceinline__ int first_key(const AttentionArgs& a, int begin, int i) {
  return a.window > 0 ? max(begin, i - a.window + 1) : begin;
}

// ---- forward: one warp per (token i, head h) ---------------------------------------------------------
// q bf16 [T,H,D], k/v bf16 [T,KV,D] -> out bf16 [T,H,D], lse f32 [H,T]. Lane l holds dims l, l+32, ...
__global__ void simple_forward_kernel(AttentionArgs a) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= static_cast<int64_t>(a.T) * a.H) return;
  const int i = static_cast<int>(row / a.H), h = static_cast<int>(row % a.H);
  const int kvh = h / (a.H / a.KV);
  const int s = find_seq(a.cu_seqlens, a.S, i);
  const int begin = a.cu_seqlens[s];
  const int nd = a.D / 32;
  const bf16* q = static_cast<const bf16*>(a.q) + (static_cast<int64_t>(i) * a.H + h) * a.D;
  float qr[kMaxDPerLane], acc[kMaxDPerLane];
#pragma unroll
  for (int c = 0; c < kMaxDPerLane; ++c) {
    qr[c] = c < nd ? to_f(q[lane + 32 * c]) : 0.0f;
    acc[c] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int j = first_key(a, begin, i); j <= i; ++j) {
    const bf16* kj = static_cast<const bf16*>(a.k) + (static_cast<int64_t>(j) * a.KV + kvh) * a.D;
    const bf16* vj = static_cast<const bf16*>(a.v) + (static_cast<int64_t>(j) * a.KV + kvh) * a.D;
    float dot = 0.0f;
#pragma unroll
    for (int c = 0; c < kMaxDPerLane; ++c)
      if (c < nd) dot += qr[c] * to_f(kj[lane + 32 * c]);
    const float sc = warp_sum(dot) * a.scale;
    const float mn = fmaxf(m, sc);
    const float corr = expf(m - mn), p = expf(sc - mn);
    l = l * corr + p;
#pragma unroll
    for (int c = 0; c < kMaxDPerLane; ++c)
      if (c < nd) acc[c] = acc[c] * corr + p * to_f(vj[lane + 32 * c]);
    m = mn;
  }
  bf16* o = static_cast<bf16*>(a.out_w) + (static_cast<int64_t>(i) * a.H + h) * a.D;
  const float inv = 1.0f / l;
#pragma unroll
  for (int c = 0; c < kMaxDPerLane; ++c)
    if (c < nd) o[lane + 32 * c] = __float2bfloat16_rn(acc[c] * inv);
  if (lane == 0) a.lse[static_cast<int64_t>(h) * a.T + i] = m + logf(l);
}

// dvec f32 [H,T] = rowsum(dout * out) over D; one warp per (t, h).
__global__ void dvec_kernel(AttentionArgs a) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= static_cast<int64_t>(a.T) * a.H) return;
  const int t = static_cast<int>(row / a.H), h = static_cast<int>(row % a.H);
  const bf16* d = static_cast<const bf16*>(a.dout) + row * a.D;
  const bf16* o = static_cast<const bf16*>(a.out) + row * a.D;
  float acc = 0.0f;
  for (int c = lane; c < a.D; c += 32) acc += to_f(d[c]) * to_f(o[c]);
  acc = warp_sum(acc);
  if (lane == 0) a.dvec[static_cast<int64_t>(h) * a.T + t] = acc;
}

// dq bf16 [T,H,D]: one warp per (query i, head h), over keys j <= i of its sequence (within the window).
__global__ void simple_dq_kernel(AttentionArgs a) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= static_cast<int64_t>(a.T) * a.H) return;
  const int i = static_cast<int>(row / a.H), h = static_cast<int>(row % a.H);
  const int kvh = h / (a.H / a.KV);
  const int begin = a.cu_seqlens[find_seq(a.cu_seqlens, a.S, i)];
  const int nd = a.D / 32;
  const bf16* q = static_cast<const bf16*>(a.q) + row * a.D;
  const bf16* dout = static_cast<const bf16*>(a.dout) + row * a.D;
  float qr[kMaxDPerLane], dor[kMaxDPerLane], acc[kMaxDPerLane];
#pragma unroll
  for (int c = 0; c < kMaxDPerLane; ++c) {
    qr[c] = c < nd ? to_f(q[lane + 32 * c]) : 0.0f;
    dor[c] = c < nd ? to_f(dout[lane + 32 * c]) : 0.0f;
    acc[c] = 0.0f;
  }
  const float lse = a.lse[static_cast<int64_t>(h) * a.T + i], di = a.dvec[static_cast<int64_t>(h) * a.T + i];
  for (int j = first_key(a, begin, i); j <= i; ++j) {
    const bf16* kj = static_cast<const bf16*>(a.k) + (static_cast<int64_t>(j) * a.KV + kvh) * a.D;
    const bf16* vj = static_cast<const bf16*>(a.v) + (static_cast<int64_t>(j) * a.KV + kvh) * a.D;
    float dot = 0.0f, dp = 0.0f;
#pragma unroll
    for (int c = 0; c < kMaxDPerLane; ++c)
      if (c < nd) {
        dot += qr[c] * to_f(kj[lane + 32 * c]);
        dp += dor[c] * to_f(vj[lane + 32 * c]);
      }
    dot = warp_sum(dot);
    dp = warp_sum(dp);
    const float p = expf(dot * a.scale - lse);
    const float ds = p * (dp - di) * a.scale;
#pragma unroll
    for (int c = 0; c < kMaxDPerLane; ++c)
      if (c < nd) acc[c] += ds * to_f(kj[lane + 32 * c]);
  }
  bf16* dq = static_cast<bf16*>(a.dq) + row * a.D;
#pragma unroll
  for (int c = 0; c < kMaxDPerLane; ++c)
    if (c < nd) dq[lane + 32 * c] = __float2bfloat16_rn(acc[c]);
}

// dk, dv bf16 [T,KV,D]: one warp per (key j, kv head), over the group's heads and the queries i >= j (within the
// window).
__global__ void simple_dkdv_kernel(AttentionArgs a) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= static_cast<int64_t>(a.T) * a.KV) return;
  const int j = static_cast<int>(row / a.KV), kvh = static_cast<int>(row % a.KV);
  const int group = a.H / a.KV;
  const int seq_end = a.cu_seqlens[find_seq(a.cu_seqlens, a.S, j) + 1];
  const int end = a.window > 0 ? min(seq_end, j + a.window) : seq_end;  // queries that see key j
  const int nd = a.D / 32;
  const bf16* kj = static_cast<const bf16*>(a.k) + row * a.D;
  const bf16* vj = static_cast<const bf16*>(a.v) + row * a.D;
  float kr[kMaxDPerLane], vr[kMaxDPerLane], dk[kMaxDPerLane], dv[kMaxDPerLane];
#pragma unroll
  for (int c = 0; c < kMaxDPerLane; ++c) {
    kr[c] = c < nd ? to_f(kj[lane + 32 * c]) : 0.0f;
    vr[c] = c < nd ? to_f(vj[lane + 32 * c]) : 0.0f;
    dk[c] = dv[c] = 0.0f;
  }
  for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
    for (int i = j; i < end; ++i) {
      const bf16* qi = static_cast<const bf16*>(a.q) + (static_cast<int64_t>(i) * a.H + h) * a.D;
      const bf16* doi = static_cast<const bf16*>(a.dout) + (static_cast<int64_t>(i) * a.H + h) * a.D;
      float dot = 0.0f, dp = 0.0f;
#pragma unroll
      for (int c = 0; c < kMaxDPerLane; ++c)
        if (c < nd) {
          dot += to_f(qi[lane + 32 * c]) * kr[c];
          dp += to_f(doi[lane + 32 * c]) * vr[c];
        }
      dot = warp_sum(dot);
      dp = warp_sum(dp);
      const float p = expf(dot * a.scale - a.lse[static_cast<int64_t>(h) * a.T + i]);
      const float ds = p * (dp - a.dvec[static_cast<int64_t>(h) * a.T + i]) * a.scale;
#pragma unroll
      for (int c = 0; c < kMaxDPerLane; ++c)
        if (c < nd) {
          dv[c] += p * to_f(doi[lane + 32 * c]);
          dk[c] += ds * to_f(qi[lane + 32 * c]);
        }
    }
  }
  bf16* dko = static_cast<bf16*>(a.dk) + row * a.D;
  bf16* dvo = static_cast<bf16*>(a.dv) + row * a.D;
#pragma unroll
  for (int c = 0; c < kMaxDPerLane; ++c)
    if (c < nd) {
      dko[lane + 32 * c] = __float2bfloat16_rn(dk[c]);
      dvo[lane + 32 * c] = __float2bfloat16_rn(dv[c]);
    }
}

}  // namespace

void simple_attention_forward(const AttentionArgs& a) {
  const int64_t rows = static_cast<int64_t>(a.T) * a.H;
  simple_forward_kernel<<<blocks_for(rows, kWarps), 32 * kWarps, 0, stream()>>>(a);
  check_launch("attention_forward (simple)");
}

void attention_dvec(const AttentionArgs& a) {
  const int64_t rows = static_cast<int64_t>(a.T) * a.H;
  dvec_kernel<<<blocks_for(rows, kWarps), 32 * kWarps, 0, stream()>>>(a);
  check_launch("attention_backward (dvec)");
}

void simple_attention_backward(const AttentionArgs& a) {
  simple_dq_kernel<<<blocks_for(static_cast<int64_t>(a.T) * a.H, kWarps), 32 * kWarps, 0, stream()>>>(a);
  check_launch("attention_backward (simple dq)");
  simple_dkdv_kernel<<<blocks_for(static_cast<int64_t>(a.T) * a.KV, kWarps), 32 * kWarps, 0, stream()>>>(a);
  check_launch("attention_backward (simple dk/dv)");
}

}  // namespace cotune::kernels::cuda
