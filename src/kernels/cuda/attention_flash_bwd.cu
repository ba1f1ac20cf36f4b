// Flash attention backward, causal GQA over packed varlen sequences, head dim 128, deterministic (no atomics):
//   dkdv kernel: the work of a (key tile of 64, sequence, kv head) is every (query head of the group, query tile
//                at or after the key tile) pair; blocks take chunks of dkdv_w pairs. Each warp owns 16 keys and
//                accumulates their dK, dV in registers, computing the transposed scores S^T = K Q^T so that P^T
//                and dS^T land directly in the A-fragment layout of dV += P^T dO and dK += dS^T Q. A key tile done
//                by one block writes bf16 dK, dV; else each chunk writes an fp32 share and a reduce kernel sums
//                the shares in chunk order. Optionally (a.ds) it also stores dS for the dq kernel.
//   dq kernel:   one block per (query tile, sequence, head), or per chunk of its key range (fp32 shares summed in
//                order by split_merge_kernel); dQ += dS K over the key tiles up to the diagonal, dS recomputed
//                (flash_dq_kernel) or read back (flash_dq_ds_kernel: one GEMM per tile instead of three).
// P is recomputed from the saved lse; dvec = rowsum(dout * out) comes from attention_dvec. Grids are (heads, S,
// work units), longest work first (flash_common.cuh, block_coord).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/flash_common.cuh"

namespace cotune::kernels::cuda {

using namespace flash;

namespace {

constexpr float kLog2e = 1.44269504088896340736f;
// K, V (or Q, dO) tiles + two buffers of the Q, dO (or K, V) tiles + two buffers of lse / dvec rows.
constexpr size_t kBwdSmem = 6 * kTile * kD * sizeof(__nv_bfloat16) + 4 * kTile * sizeof(float);

// q, dout bf16 [T,H,128]; k, v bf16 [T,KV,128]; lse, dvec f32 [H,T] -> dk, dv bf16 [T,KV,128].
// The work of key tile kt of kv head kvh is the list of (query head of the group, query tile >= kt) pairs, head
// major; it is cut into chunks of dkdv_w pairs, one block each. Grid (key tiles of the longest sequence x the
// most chunks, S, KV), 128 threads, 97 KiB dynamic shared memory: K, V, and two buffers of the Q, dO tiles (the
// next pair loads while this one is computed). A key tile done in one chunk writes bf16 dk, dv; else chunk c
// writes its fp32 share to dkv_partial [2][chunks][T,KV,128] (dK shares, then dV shares) and dkdv_reduce_kernel
// sums the shares in chunk order.
template <bool kDs>  // true: also store dS (a.ds)
__global__ void __launch_bounds__(kThreads) flash_dkdv_kernel(AttentionArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  __nv_bfloat16* sK = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* sV = sK + kTile * kD;
  __nv_bfloat16* sQbuf = sV + kTile * kD;      // [2][64*128]
  __nv_bfloat16* sObuf = sQbuf + 2 * kTile * kD;  // dout tiles [2][64*128]
  float* sLbuf = reinterpret_cast<float*>(sObuf + 2 * kTile * kD);  // [2][64]
  float* sDvbuf = sLbuf + 2 * kTile;                                // [2][64]

  const BlockCoord bc = block_coord();
  const int s = bc.s, kvh = bc.h;
  const int begin = a.cu_seqlens[s], L = a.cu_seqlens[s + 1] - begin;
  const int maxch = bc.units / ((a.max_seqlen + kTile - 1) / kTile);
  const int idx = bc.idx;  // longest work first
  const int kt = idx / maxch, chunk = idx % maxch;
  if (kt * kTile >= L) return;
  const int group = a.H / a.KV;
  const int nq = (L + kTile - 1) / kTile;
  const int per_head = nq - kt;  // query tiles kt .. nq-1
  const int nch = split_chunks(group * per_head, a.dkdv_w);
  if (chunk >= nch) return;
  const int p0 = chunk * a.dkdv_w;
  const int steps = min(a.dkdv_w, group * per_head - p0);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, c2 = (lane % 4) * 2;
  const int64_t end = begin + L;
  const auto* q = static_cast<const __nv_bfloat16*>(a.q);
  const auto* dout = static_cast<const __nv_bfloat16*>(a.dout);
  const float scale_log2 = a.scale * kLog2e;

  load_tile(sK, static_cast<const __nv_bfloat16*>(a.k), begin + static_cast<int64_t>(kt) * kTile, end, a.KV, kvh);
  load_tile(sV, static_cast<const __nv_bfloat16*>(a.v), begin + static_cast<int64_t>(kt) * kTile, end, a.KV, kvh);

  float dk[16][4], dv[16][4];
#pragma unroll
  for (int i = 0; i < 16; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) dk[i][j] = dv[i][j] = 0.0f;

  const int krow0 = kt * kTile + warp * 16 + g;  // key position (in the sequence) of row g of this warp
  // Issues the loads of step `it` (pair p0 + it) into buffer `buf` (cp.async for the tiles, plain stores for
  // lse / dvec).
  auto issue = [&](int it, int buf) {
    const int p = p0 + it;
    const int h = kvh * group + p / per_head, qt = kt + p % per_head;
    const int64_t q0 = begin + static_cast<int64_t>(qt) * kTile;
    load_tile(sQbuf + buf * kTile * kD, q, q0, end, a.H, h);
    load_tile(sObuf + buf * kTile * kD, dout, q0, end, a.H, h);
    if (threadIdx.x < kTile) {
      const int64_t t = q0 + threadIdx.x;
      const bool valid = t < end;
      sLbuf[buf * kTile + threadIdx.x] = valid ? a.lse[static_cast<int64_t>(h) * a.T + t] * kLog2e : 0.0f;
      sDvbuf[buf * kTile + threadIdx.x] = valid ? a.dvec[static_cast<int64_t>(h) * a.T + t] : 0.0f;
    }
  };
  issue(0, 0);
  cp_async_commit();  // group: K, V and step 0
  for (int it = 0; it < steps; ++it) {
    const int buf = it & 1;
    if (it + 1 < steps) {
      issue(it + 1, buf ^ 1);  // the buffer of step it-1, released by the barrier at the end of that step
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int qt = kt + (p0 + it) % per_head;
    // dS store of this step (query head of the pair, tile (qt, kt)): 16 fragments of 512 bytes, (wq, kks) at
    // (wq * 4 + kks) * 32 + lane in uint4 units, wq = the dq warp (16 queries), kks = 16 keys (this warp).
    uint4* ds_tile = kDs ? static_cast<uint4*>(a.ds) +
                                ((static_cast<int64_t>(s) * a.H + kvh * group + (p0 + it) / per_head) * a.ds_tri +
                                 qt * (qt + 1) / 2 + kt) * 16 * 32 + warp * 32 + lane
                          : nullptr;
    const __nv_bfloat16* sQ = sQbuf + buf * kTile * kD;
    const __nv_bfloat16* sO = sObuf + buf * kTile * kD;
    const float* sL = sLbuf + buf * kTile;
    const float* sDv = sDvbuf + buf * kTile;
    {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        // S^T and dP^T for this warp's 16 keys x 32 queries [half*32, half*32+32).
        float st[4][4], dpt[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) st[i][j] = dpt[i][j] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < kD / 16; ++kk) {
          uint32_t ak[4], av[4];
          load_a(ak, sK, warp * 16, kk * 16);
          load_a(av, sV, warp * 16, kk * 16);
#pragma unroll
          for (int np = 0; np < 2; ++np) {
            uint32_t b[4];
            load_b_nk(b, sQ, half * 32 + np * 16, kk * 16);
            mma16816(st[2 * np], ak, b[0], b[1]);
            mma16816(st[2 * np + 1], ak, b[2], b[3]);
            load_b_nk(b, sO, half * 32 + np * 16, kk * 16);
            mma16816(dpt[2 * np], av, b[0], b[1]);
            mma16816(dpt[2 * np + 1], av, b[2], b[3]);
          }
        }
        // P^T = exp(S^T * scale - lse[q]) on allowed (key <= query < L) entries; dS^T = P^T (dP^T - dvec[q]).
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int qc = half * 32 + nt * 8 + c2 + (j & 1);
            const int qpos = qt * kTile + qc, kpos = krow0 + (j >> 1) * 8;
            const bool ok = qpos < L && kpos <= qpos;
            const float p = ok ? exp2f(st[nt][j] * scale_log2 - sL[qc]) : 0.0f;
            st[nt][j] = p;
            dpt[nt][j] = p * (dpt[nt][j] - sDv[qc]);
          }
        // dV += P^T dO, dK += dS^T Q over these 32 queries (2 k-steps of 16).
#pragma unroll
        for (int ks = 0; ks < 2; ++ks) {
          uint32_t ap[4], ads[4];
          ap[0] = pack_bf16(st[2 * ks][0], st[2 * ks][1]);
          ap[1] = pack_bf16(st[2 * ks][2], st[2 * ks][3]);
          ap[2] = pack_bf16(st[2 * ks + 1][0], st[2 * ks + 1][1]);
          ap[3] = pack_bf16(st[2 * ks + 1][2], st[2 * ks + 1][3]);
          ads[0] = pack_bf16(dpt[2 * ks][0], dpt[2 * ks][1]);
          ads[1] = pack_bf16(dpt[2 * ks][2], dpt[2 * ks][3]);
          ads[2] = pack_bf16(dpt[2 * ks + 1][0], dpt[2 * ks + 1][1]);
          ads[3] = pack_bf16(dpt[2 * ks + 1][2], dpt[2 * ks + 1][3]);
          if (kDs)  // dS for the dq GEMM: rows = queries, so each 8x8 block transposed (blocks 1 and 2 swap)
            ds_tile[(half * 2 + ks) * 4 * 32] = make_uint4(movmatrix_trans(ads[0]), movmatrix_trans(ads[2]),
                                                           movmatrix_trans(ads[1]), movmatrix_trans(ads[3]));
#pragma unroll
          for (int np = 0; np < kD / 16; ++np) {
            uint32_t b[4];
            load_b_kn(b, sO, half * 32 + ks * 16, np * 16);
            mma16816(dv[2 * np], ap, b[0], b[1]);
            mma16816(dv[2 * np + 1], ap, b[2], b[3]);
            load_b_kn(b, sQ, half * 32 + ks * 16, np * 16);
            mma16816(dk[2 * np], ads, b[0], b[1]);
            mma16816(dk[2 * np + 1], ads, b[2], b[3]);
          }
        }
      }
    }
    __syncthreads();  // everyone is done with this buffer before step it+2's loads overwrite it
  }

  if (nch > 1) {
    // This chunk's share, fp32, into partial[chunk] (reduced in chunk order by dkdv_reduce_kernel).
    const int64_t n = static_cast<int64_t>(a.T) * a.KV * kD;
    float* pk = a.dkv_partial + static_cast<int64_t>(chunk) * n;
    float* pv = pk + static_cast<int64_t>(maxch) * n;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int kpos = krow0 + r * 8;
      if (kpos >= L) continue;
      const int64_t off = ((begin + static_cast<int64_t>(kpos)) * a.KV + kvh) * kD;
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        *reinterpret_cast<float2*>(pk + off + i * 8 + c2) = make_float2(dk[i][r * 2] * a.scale, dk[i][r * 2 + 1] * a.scale);
        *reinterpret_cast<float2*>(pv + off + i * 8 + c2) = make_float2(dv[i][r * 2], dv[i][r * 2 + 1]);
      }
    }
    return;
  }
  auto* dkp = static_cast<__nv_bfloat16*>(a.dk);
  auto* dvp = static_cast<__nv_bfloat16*>(a.dv);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int kpos = krow0 + r * 8;
    if (kpos >= L) continue;
    const int64_t off = ((begin + static_cast<int64_t>(kpos)) * a.KV + kvh) * kD;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      *reinterpret_cast<__nv_bfloat162*>(dkp + off + i * 8 + c2) =
          __floats2bfloat162_rn(dk[i][r * 2] * a.scale, dk[i][r * 2 + 1] * a.scale);
      *reinterpret_cast<__nv_bfloat162*>(dvp + off + i * 8 + c2) =
          __floats2bfloat162_rn(dv[i][r * 2], dv[i][r * 2 + 1]);
    }
  }
}

// For every row t of a key tile that flash_dkdv_kernel split into nch > 1 chunks: dk, dv bf16 [T,KV,128] = sum
// over j < nch of partial_k[j], partial_v[j] (f32 [maxch][T,KV,128] each), summed in the order j = 0, 1, ...
// (deterministic). Four elements per thread; the sequence of row t is found by binary search in cu_seqlens.
__global__ void dkdv_reduce_kernel(__nv_bfloat16* dk, __nv_bfloat16* dv, const float* partial, int64_t n, int maxch,
                                   const int32_t* cu_seqlens, int S, int KV, int group, int w) {
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (i >= n) return;
  const int t = static_cast<int>(i / (static_cast<int64_t>(KV) * kD));
  int lo = 0, hi = S;  // largest s with cu_seqlens[s] <= t
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (cu_seqlens[mid] <= t) lo = mid;
    else hi = mid;
  }
  const int L = cu_seqlens[lo + 1] - cu_seqlens[lo];
  const int kt = (t - cu_seqlens[lo]) / kTile, nq = (L + kTile - 1) / kTile;
  const int nch = split_chunks(group * (nq - kt), w);
  if (nch <= 1) return;  // written directly by flash_dkdv_kernel
  const float* pv = partial + static_cast<int64_t>(maxch) * n;
  float4 sk = *reinterpret_cast<const float4*>(partial + i), sv = *reinterpret_cast<const float4*>(pv + i);
  for (int j = 1; j < nch; ++j) {
    const float4 k4 = *reinterpret_cast<const float4*>(partial + j * n + i);
    const float4 v4 = *reinterpret_cast<const float4*>(pv + j * n + i);
    sk.x += k4.x;
    sk.y += k4.y;
    sk.z += k4.z;
    sk.w += k4.w;
    sv.x += v4.x;
    sv.y += v4.y;
    sv.z += v4.z;
    sv.w += v4.w;
  }
  *reinterpret_cast<__nv_bfloat162*>(dk + i) = __floats2bfloat162_rn(sk.x, sk.y);
  *reinterpret_cast<__nv_bfloat162*>(dk + i + 2) = __floats2bfloat162_rn(sk.z, sk.w);
  *reinterpret_cast<__nv_bfloat162*>(dv + i) = __floats2bfloat162_rn(sv.x, sv.y);
  *reinterpret_cast<__nv_bfloat162*>(dv + i + 2) = __floats2bfloat162_rn(sv.z, sv.w);
}

// The dq epilogue of both dq kernels: this warp's 16 rows of dQ (times the softmax scale) to dq (bf16), or, when
// the query tile's key range is split into nch > 1 chunks, the chunk's fp32 share (summed in chunk order by
// split_merge_kernel<false>). row0: the tile row that row g of `dq` stands for.
__device__ __forceinline__ void store_dq(const AttentionArgs& a, const float (&dq)[16][4], int s, int h, int qt,
                                         int chunk, int nch, int begin, int L, int qrow0, int row0, int c2) {
  if (nch > 1) {
    const int64_t slot = static_cast<int64_t>(s * a.H + h) * a.dq_slots + split_slot_base(qt, 1, a.dq_ck) + chunk;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      if (qrow0 + r * 8 >= L) continue;
      float* prow = a.dq_partial + (slot * kTile + row0 + r * 8) * kD;
#pragma unroll
      for (int i = 0; i < 16; ++i)
        *reinterpret_cast<float2*>(prow + i * 8 + c2) = make_float2(dq[i][r * 2] * a.scale, dq[i][r * 2 + 1] * a.scale);
    }
    return;
  }
  auto* dqp = static_cast<__nv_bfloat16*>(a.dq);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int qpos = qrow0 + r * 8;
    if (qpos >= L) continue;
    __nv_bfloat16* row = dqp + ((begin + static_cast<int64_t>(qpos)) * a.H + h) * kD;
#pragma unroll
    for (int i = 0; i < 16; ++i)
      *reinterpret_cast<__nv_bfloat162*>(row + i * 8 + c2) =
          __floats2bfloat162_rn(dq[i][r * 2] * a.scale, dq[i][r * 2 + 1] * a.scale);
  }
}

// q, dout bf16 [T,H,128]; k, v bf16 [T,KV,128]; lse, dvec f32 [H,T] -> dq bf16 [T,H,128].
// Grid (query tiles of the longest sequence, S, H), 128 threads, 96 KiB dynamic shared memory: Q, dO, and two
// buffers of the K, V tiles (the next key tile loads while this one is computed).
template <bool kSplit>  // false: every query tile in one block (no partials)
__global__ void __launch_bounds__(kThreads) flash_dq_kernel(AttentionArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  __nv_bfloat16* sQ = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* sO = sQ + kTile * kD;
  __nv_bfloat16* sKbuf = sO + kTile * kD;        // [2][64*128]
  __nv_bfloat16* sVbuf = sKbuf + 2 * kTile * kD;  // [2][64*128]

  const BlockCoord bc = block_coord();
  const int s = bc.s, h = bc.h;
  const int begin = a.cu_seqlens[s], L = a.cu_seqlens[s + 1] - begin;
  const int maxch = kSplit ? bc.units / ((a.max_seqlen + kTile - 1) / kTile) : 1;
  const int idx = bc.idx;  // longest rows first
  const int qt = idx / maxch, chunk = idx % maxch;
  if (qt * kTile >= L) return;
  const int nch = kSplit ? split_chunks(qt + 1, a.dq_ck) : 1;
  if (chunk >= nch) return;
  const int kt_begin = nch > 1 ? chunk * a.dq_ck : 0;
  const int kt_end = nch > 1 ? min(kt_begin + a.dq_ck, qt + 1) - 1 : qt;  // inclusive
  const int kvh = h / (a.H / a.KV);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, c2 = (lane % 4) * 2;
  const int64_t end = begin + L;
  const auto* k = static_cast<const __nv_bfloat16*>(a.k);
  const auto* v = static_cast<const __nv_bfloat16*>(a.v);
  const float scale_log2 = a.scale * kLog2e;

  const int64_t q0 = begin + static_cast<int64_t>(qt) * kTile;
  load_tile(sQ, static_cast<const __nv_bfloat16*>(a.q), q0, end, a.H, h);
  load_tile(sO, static_cast<const __nv_bfloat16*>(a.dout), q0, end, a.H, h);

  const int qrow0 = qt * kTile + warp * 16 + g;
  float lse2[2], dvr[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int qpos = qrow0 + r * 8;
    const bool valid = qpos < L;
    lse2[r] = valid ? a.lse[static_cast<int64_t>(h) * a.T + begin + qpos] * kLog2e : 0.0f;
    dvr[r] = valid ? a.dvec[static_cast<int64_t>(h) * a.T + begin + qpos] : 0.0f;
  }

  float dq[16][4];
#pragma unroll
  for (int i = 0; i < 16; ++i) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.0f;

  auto issue = [&](int kt, int buf) {
    load_tile(sKbuf + buf * kTile * kD, k, begin + static_cast<int64_t>(kt) * kTile, end, a.KV, kvh);
    load_tile(sVbuf + buf * kTile * kD, v, begin + static_cast<int64_t>(kt) * kTile, end, a.KV, kvh);
  };
  issue(kt_begin, 0);
  cp_async_commit();  // group: Q, dO and the first key tile
  for (int kt = kt_begin; kt <= kt_end; ++kt) {
    const int buf = (kt - kt_begin) & 1;
    if (kt < kt_end) {
      issue(kt + 1, buf ^ 1);  // the buffer of tile kt-1, released by the barrier at the end of that step
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const __nv_bfloat16* sK = sKbuf + buf * kTile * kD;
    const __nv_bfloat16* sV = sVbuf + buf * kTile * kD;

    float sc[8][4], dp[8][4];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) sc[i][j] = dp[i][j] = 0.0f;
    gemm_16x64_k128(sc, sQ, warp * 16, sK);
    gemm_16x64_k128(dp, sO, warp * 16, sV);
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int r = j >> 1;
        const int qpos = qrow0 + r * 8, kpos = kt * kTile + nt * 8 + c2 + (j & 1);
        const bool ok = qpos < L && kpos <= qpos;
        const float p = ok ? exp2f(sc[nt][j] * scale_log2 - lse2[r]) : 0.0f;
        sc[nt][j] = p * (dp[nt][j] - dvr[r]);  // dS
      }
    gemm_p_16x128_k64(dq, sc, sK);
    __syncthreads();  // everyone is done with this buffer before tile kt+2's loads overwrite it
  }

  store_dq(a, dq, s, h, qt, chunk, nch, begin, L, qrow0, warp * 16 + g, c2);
}

// ds (see AttentionArgs::ds), k bf16 [T,KV,128] -> dq bf16 [T,H,128]: dQ = dS K with dS read from the dk/dv
// kernel's store (A fragments straight into registers, the next tile's prefetched). Grid, chunks and outputs as
// flash_dq_kernel; 32 KiB of static shared memory (two buffers of the K tile).
__global__ void __launch_bounds__(kThreads) flash_dq_ds_kernel(AttentionArgs a) {
  __shared__ __align__(128) __nv_bfloat16 sKbuf[2 * kTile * kD];

  const BlockCoord bc = block_coord();
  const int s = bc.s, h = bc.h;
  const int begin = a.cu_seqlens[s], L = a.cu_seqlens[s + 1] - begin;
  const int maxch = bc.units / ((a.max_seqlen + kTile - 1) / kTile);
  const int idx = bc.idx;  // longest rows first
  const int qt = idx / maxch, chunk = idx % maxch;
  if (qt * kTile >= L) return;
  const int nch = split_chunks(qt + 1, a.dq_ck);
  if (chunk >= nch) return;
  const int kt_begin = nch > 1 ? chunk * a.dq_ck : 0;
  const int kt_end = nch > 1 ? min(kt_begin + a.dq_ck, qt + 1) - 1 : qt;  // inclusive
  const int kvh = h / (a.H / a.KV);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, c2 = (lane % 4) * 2;
  const int64_t end = begin + L;
  const auto* k = static_cast<const __nv_bfloat16*>(a.k);
  const int qrow0 = qt * kTile + warp * 16 + g;
  // Fragment (kt, kks) of this warp at dsp[(kt * 16 + kks) * 32].
  const uint4* dsp = static_cast<const uint4*>(a.ds) +
                     ((static_cast<int64_t>(s) * a.H + h) * a.ds_tri + qt * (qt + 1) / 2) * 16 * 32 + warp * 4 * 32 +
                     lane;

  float dq[16][4];
#pragma unroll
  for (int i = 0; i < 16; ++i) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.0f;

  load_tile(sKbuf, k, begin + static_cast<int64_t>(kt_begin) * kTile, end, a.KV, kvh);
  cp_async_commit();
  uint4 f[4];
#pragma unroll
  for (int kks = 0; kks < 4; ++kks) f[kks] = dsp[(kt_begin * 16 + kks) * 32];
  for (int kt = kt_begin; kt <= kt_end; ++kt) {
    const int buf = (kt - kt_begin) & 1;
    uint4 fn[4];
    if (kt < kt_end) {
      load_tile(sKbuf + (buf ^ 1) * kTile * kD, k, begin + static_cast<int64_t>(kt + 1) * kTile, end, a.KV, kvh);
      cp_async_commit();
#pragma unroll
      for (int kks = 0; kks < 4; ++kks) fn[kks] = dsp[((kt + 1) * 16 + kks) * 32];
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const __nv_bfloat16* sK = sKbuf + buf * kTile * kD;
#pragma unroll
    for (int kks = 0; kks < 4; ++kks) {
      const uint32_t af[4] = {f[kks].x, f[kks].y, f[kks].z, f[kks].w};
#pragma unroll
      for (int np = 0; np < kD / 16; ++np) {
        uint32_t b[4];
        load_b_kn(b, sK, kks * 16, np * 16);
        mma16816(dq[2 * np], af, b[0], b[1]);
        mma16816(dq[2 * np + 1], af, b[2], b[3]);
      }
    }
    if (kt < kt_end) {
#pragma unroll
      for (int kks = 0; kks < 4; ++kks) f[kks] = fn[kks];
    }
    __syncthreads();  // everyone is done with this buffer before tile kt+2's loads overwrite it
  }

  store_dq(a, dq, s, h, qt, chunk, nch, begin, L, qrow0, warp * 16 + g, c2);
}

}  // namespace

int flash_dkdv_chunks(int max_seqlen, int group, int w) {
  return split_chunks(group * ((max_seqlen + kTile - 1) / kTile), w);
}

void flash_attention_backward(const AttentionArgs& a) {
  const unsigned tiles = static_cast<unsigned>((a.max_seqlen + kTile - 1) / kTile);
  if (tiles == 0 || a.S == 0) return;
  static thread_local bool attributes_set = false;  // per thread: the attribute is per device, setting it is cheap
  if (!attributes_set) {
    for (const void* f : {reinterpret_cast<const void*>(flash_dkdv_kernel<false>),
                          reinterpret_cast<const void*>(flash_dkdv_kernel<true>)})
      check(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kBwdSmem)),
            "cudaFuncSetAttribute(flash_dkdv_kernel)");
    for (const void* f : {reinterpret_cast<const void*>(flash_dq_kernel<false>),
                          reinterpret_cast<const void*>(flash_dq_kernel<true>)})
      check(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kBwdSmem)),
            "cudaFuncSetAttribute(flash_dq_kernel)");
    attributes_set = true;
  }
  const int group = a.H / a.KV;
  const unsigned dkdv_ch = static_cast<unsigned>(flash_dkdv_chunks(a.max_seqlen, group, a.dkdv_w));
  const dim3 dkdv_grid = work_grid(tiles * dkdv_ch, a.S, a.KV);
  if (a.ds) flash_dkdv_kernel<true><<<dkdv_grid, kThreads, kBwdSmem, stream()>>>(a);
  else flash_dkdv_kernel<false><<<dkdv_grid, kThreads, kBwdSmem, stream()>>>(a);
  check_launch("attention_backward (flash dk/dv)");
  if (dkdv_ch > 1) {
    // Every row of [T,KV,128] belongs to one sequence (cu_seqlens spans [0, T]), so every element of the shares
    // j < nch of its key tile was written by exactly one block.
    const int64_t n = static_cast<int64_t>(a.T) * a.KV * kD;
    dkdv_reduce_kernel<<<static_cast<unsigned>((n / 4 + 255) / 256), 256, 0, stream()>>>(
        static_cast<__nv_bfloat16*>(a.dk), static_cast<__nv_bfloat16*>(a.dv), a.dkv_partial, n,
        static_cast<int>(dkdv_ch), a.cu_seqlens, a.S, a.KV, group, a.dkdv_w);
    check_launch("attention_backward (flash dk/dv reduce)");
  }
  const unsigned dq_ch = static_cast<unsigned>(split_chunks(static_cast<int>(tiles), a.dq_ck));
  const dim3 dq_grid = work_grid(tiles * dq_ch, a.S, a.H);
  if (a.ds) flash_dq_ds_kernel<<<dq_grid, kThreads, 0, stream()>>>(a);
  else if (dq_ch > 1) flash_dq_kernel<true><<<dq_grid, kThreads, kBwdSmem, stream()>>>(a);
  else flash_dq_kernel<false><<<dq_grid, kThreads, kBwdSmem, stream()>>>(a);
  check_launch("attention_backward (flash dq)");
  if (dq_ch > 1) {
    split_merge_kernel<false><<<dim3(tiles * (kTile / 8), static_cast<unsigned>(a.S), static_cast<unsigned>(a.H)), 256, 0, stream()>>>(
        a.dq_partial, nullptr, static_cast<__nv_bfloat16*>(a.dq), nullptr, a.cu_seqlens, a.T, a.H, kTile, 1, a.dq_ck,
        a.dq_slots);
    check_launch("attention_backward (flash dq merge)");
  }
}

}  // namespace cotune::kernels::cuda
