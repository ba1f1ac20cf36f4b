// Flash attention forward (FlashAttention-2 schedule), causal GQA over packed varlen sequences, head dim 128.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/flash_common.cuh"

namespace cotune::kernels::cuda {

using namespace flash;

namespace {

// q bf16 [T,H,128], k/v bf16 [T,KV,128], cu_seqlens i32 [S+1] -> out bf16 [T,H,128], lse f32 [H,T].
// Grid (H, S, query tiles of the longest sequence x chunks), 128 threads; the block for (tile, s, h) handles
// queries [64*tile, 64*tile+64) of sequence s (blocks past the sequence's end exit at once; tiles run longest
// first). kSplit: the tile's causal key range is cut into chunks of a.fwd_ck key tiles, one block each; a tile of
// several chunks writes fp32 partials (store_partial) that split_merge_kernel combines.
// Each warp owns 16 query rows: S = Q K^T (16x64, fp32 registers), online softmax in fp32 (exp2 with the
// scale folded in), O += P V with P rounded to bf16 in registers. Shared: Q, K, V tiles, 48 KiB; V(j) loads
// while S(j) is computed, K(j+1) while P V(j) is.
// Stores one row of a split chunk's result: o / l (fp32) at row `row` of slot `slot` of fwd_partial and the
// chunk's log2-domain lse m + log2(l) (-inf and zeros for a row whose keys in this chunk are all masked).
__device__ __forceinline__ void store_partial(const AttentionArgs& a, int64_t slot, int rows, int row, int c2, int lane,
                                              const float (&o)[16][4], int r, float m, float l, bool valid) {
  if (!valid) return;
  const int64_t total = static_cast<int64_t>(a.S) * a.H * a.fwd_slots;
  float* prow = a.fwd_partial + (slot * rows + row) * kD;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int i = 0; i < 16; ++i)
    *reinterpret_cast<float2*>(prow + i * 8 + c2) = make_float2(o[i][r * 2] * inv, o[i][r * 2 + 1] * inv);
  if (lane % 4 == 0) a.fwd_partial[total * rows * kD + slot * rows + row] = l > 0.0f ? m + log2f(l) : -INFINITY;
}

template <bool kSplit>  // false: every tile in one block (the grid of the plain schedule, no partials)
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(AttentionArgs a) {
  __shared__ __align__(128) __nv_bfloat16 sQ[kTile * kD];
  __shared__ __align__(128) __nv_bfloat16 sK[kTile * kD];
  __shared__ __align__(128) __nv_bfloat16 sV[kTile * kD];

  const BlockCoord bc = block_coord();
  const int s = bc.s, h = bc.h;
  const int begin = a.cu_seqlens[s], L = a.cu_seqlens[s + 1] - begin;
  const int maxch = kSplit ? bc.units / ((a.max_seqlen + kTile - 1) / kTile) : 1;
  const int idx = bc.idx;  // longest rows first
  const int qt = idx / maxch, chunk = idx % maxch;
  if (qt * kTile >= L) return;
  const int nch = kSplit ? split_chunks(qt + 1, a.fwd_ck) : 1;
  if (chunk >= nch) return;
  const int kt_begin = nch > 1 ? chunk * a.fwd_ck : 0;
  const int kt_end = nch > 1 ? min(kt_begin + a.fwd_ck, qt + 1) - 1 : qt;  // inclusive
  const int kvh = h / (a.H / a.KV);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const auto* q = static_cast<const __nv_bfloat16*>(a.q);
  const auto* k = static_cast<const __nv_bfloat16*>(a.k);
  const auto* v = static_cast<const __nv_bfloat16*>(a.v);
  const int64_t end = begin + L;

  load_tile(sQ, q, begin + static_cast<int64_t>(qt) * kTile, end, a.H, h);
  load_tile(sK, k, begin + static_cast<int64_t>(kt_begin) * kTile, end, a.KV, kvh);
  cp_async_commit();

  const float scale_log2 = a.scale * 1.44269504088896340736f;
  float o[16][4];
#pragma unroll
  for (int i = 0; i < 16; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows g and g+8 (scaled log2 domain)
  const int g = lane / 4, c2 = (lane % 4) * 2;
  const int qrow0 = qt * kTile + warp * 16 + g;  // position in the sequence of row g

  for (int kt = kt_begin; kt <= kt_end; ++kt) {
    cp_async_wait<0>();
    __syncthreads();  // K(kt) (and Q) visible; everyone done with the previous V
    load_tile(sV, v, begin + static_cast<int64_t>(kt) * kTile, end, a.KV, kvh);
    cp_async_commit();

    float sc[8][4];
#pragma unroll
    for (int i = 0; i < 8; ++i) sc[i][0] = sc[i][1] = sc[i][2] = sc[i][3] = 0.0f;
    gemm_16x64_k128(sc, sQ, warp * 16, sK);
    __syncthreads();  // all warps done reading K(kt)
    if (kt < kt_end) {
      load_tile(sK, k, begin + static_cast<int64_t>(kt + 1) * kTile, end, a.KV, kvh);
      cp_async_commit();
    }

    // Online softmax over this tile's 64 keys (causal mask on the diagonal tile only: key > query is masked,
    // and for valid queries that also covers keys past the sequence end).
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int qpos = qrow0 + r * 8;
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float x = sc[nt][r * 2 + e] * scale_log2;
          if (kt == qt && kt * kTile + nt * 8 + c2 + e > qpos) x = -INFINITY;
          sc[nt][r * 2 + e] = x;
          mx = fmaxf(mx, x);
        }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mn = fmaxf(m[r], mx);
      const float base = mn == -INFINITY ? 0.0f : mn;
      const float corr = exp2f(m[r] - base);
      float sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float p = exp2f(sc[nt][r * 2 + e] - base);
          sc[nt][r * 2 + e] = p;
          sum += p;
        }
      l[r] = l[r] * corr + sum;  // per-thread partial; reduced across the quad at the end
      m[r] = mn;
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        o[i][r * 2] *= corr;
        o[i][r * 2 + 1] *= corr;
      }
    }

    if (kt < kt_end) cp_async_wait<1>();
    else cp_async_wait<0>();
    __syncthreads();  // V(kt) visible
    gemm_p_16x128_k64(o, sc, sV);
  }

  // Epilogue: finish the row sums across the quad, normalise, store out and lse.
  if (nch > 1) {
    const int64_t slot = static_cast<int64_t>(s * a.H + h) * a.fwd_slots + split_slot_base(qt, 1, a.fwd_ck) + chunk;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float lr = l[r];
      lr += __shfl_xor_sync(0xffffffffu, lr, 1);
      lr += __shfl_xor_sync(0xffffffffu, lr, 2);
      store_partial(a, slot, kTile, warp * 16 + g + r * 8, c2, lane, o, r, m[r], lr, qrow0 + r * 8 < L);
    }
    return;
  }
  auto* out = static_cast<__nv_bfloat16*>(a.out_w);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float lr = l[r];
    lr += __shfl_xor_sync(0xffffffffu, lr, 1);
    lr += __shfl_xor_sync(0xffffffffu, lr, 2);
    const int qpos = qrow0 + r * 8;
    if (qpos >= L) continue;
    const float inv = 1.0f / lr;
    __nv_bfloat16* orow = out + ((begin + static_cast<int64_t>(qpos)) * a.H + h) * kD;
#pragma unroll
    for (int i = 0; i < 16; ++i)
      *reinterpret_cast<__nv_bfloat162*>(orow + i * 8 + c2) =
          __floats2bfloat162_rn(o[i][r * 2] * inv, o[i][r * 2 + 1] * inv);
    if (lane % 4 == 0) a.lse[static_cast<int64_t>(h) * a.T + begin + qpos] = (m[r] + log2f(lr)) * 0.69314718055994530942f;
  }
}


// The same schedule with MT = 2 m-tiles (32 query rows) per warp and 128-row query tiles: every K / V fragment
// read from shared memory feeds two MMAs, which halves the shared-memory traffic per FLOP (the m64 kernel above is
// bound by it). Q (32 KiB, two swizzled 64-row halves), K, V: 64 KiB of dynamic shared memory.
constexpr int kMT = 2;
constexpr int kBM = kTile * kMT;  // 128 query rows per block
constexpr size_t kFwdWideSmem = 4 * kTile * kD * sizeof(__nv_bfloat16);

template <bool kSplit>
__global__ void __launch_bounds__(kThreads) flash_forward_wide_kernel(AttentionArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  __nv_bfloat16* sQ = reinterpret_cast<__nv_bfloat16*>(smem);  // [2][64*128]
  __nv_bfloat16* sK = sQ + 2 * kTile * kD;
  __nv_bfloat16* sV = sK + kTile * kD;

  const BlockCoord bc = block_coord();
  const int s = bc.s, h = bc.h;
  const int begin = a.cu_seqlens[s], L = a.cu_seqlens[s + 1] - begin;
  const int maxch = kSplit ? bc.units / ((a.max_seqlen + kBM - 1) / kBM) : 1;
  const int idx = bc.idx;  // longest rows first
  const int qt = idx / maxch, chunk = idx % maxch;
  if (qt * kBM >= L) return;
  const int n_kt = causal_key_tiles(qt, kBM, L);
  const int nch = kSplit ? split_chunks(n_kt, a.fwd_ck) : 1;
  if (chunk >= nch) return;
  const int kt_begin = nch > 1 ? chunk * a.fwd_ck : 0;
  const int kt_last = nch > 1 ? min(kt_begin + a.fwd_ck, n_kt) - 1 : n_kt - 1;  // inclusive
  const int kvh = h / (a.H / a.KV);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const auto* q = static_cast<const __nv_bfloat16*>(a.q);
  const auto* k = static_cast<const __nv_bfloat16*>(a.k);
  const auto* v = static_cast<const __nv_bfloat16*>(a.v);
  const int64_t end = begin + L;

  load_tile(sQ, q, begin + static_cast<int64_t>(qt) * kBM, end, a.H, h);
  load_tile(sQ + kTile * kD, q, begin + static_cast<int64_t>(qt) * kBM + kTile, end, a.H, h);
  load_tile(sK, k, begin + static_cast<int64_t>(kt_begin) * kTile, end, a.KV, kvh);
  cp_async_commit();

  // This warp's 32 rows live in one 64-row half of sQ.
  const __nv_bfloat16* sQw = sQ + ((warp * 32) / kTile) * kTile * kD;
  const int qrow_local = (warp * 32) % kTile;
  const float scale_log2 = a.scale * 1.44269504088896340736f;
  float o[kMT][16][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int i = 0; i < 16; ++i) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.0f;
  float m[kMT][2], l[kMT][2];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;
  const int g = lane / 4, c2 = (lane % 4) * 2;
  const int qrow0 = qt * kBM + warp * 32 + g;  // sequence position of row g of m-tile 0

  for (int kt = kt_begin; kt <= kt_last; ++kt) {
    cp_async_wait<0>();
    __syncthreads();
    load_tile(sV, v, begin + static_cast<int64_t>(kt) * kTile, end, a.KV, kvh);
    cp_async_commit();

    float sc[kMT][8][4];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int i = 0; i < 8; ++i) sc[mt][i][0] = sc[mt][i][1] = sc[mt][i][2] = sc[mt][i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      uint32_t qa[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) load_a(qa[mt], sQw, qrow_local + mt * 16, kk * 16);
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t b[4];
        load_b_nk(b, sK, np * 16, kk * 16);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma16816(sc[mt][2 * np], qa[mt], b[0], b[1]);
          mma16816(sc[mt][2 * np + 1], qa[mt], b[2], b[3]);
        }
      }
    }
    __syncthreads();  // all warps done reading K(kt)
    if (kt < kt_last) {
      load_tile(sK, k, begin + static_cast<int64_t>(kt + 1) * kTile, end, a.KV, kvh);
      cp_async_commit();
    }

    const bool diag = (kt + 1) * kTile > qt * kBM;  // the key tile overlaps this block's query rows
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int qpos = qrow0 + mt * 16 + r * 8;
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            float x = sc[mt][nt][r * 2 + e] * scale_log2;
            if (diag && kt * kTile + nt * 8 + c2 + e > qpos) x = -INFINITY;
            sc[mt][nt][r * 2 + e] = x;
            mx = fmaxf(mx, x);
          }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mn = fmaxf(m[mt][r], mx);
        const float base = mn == -INFINITY ? 0.0f : mn;
        const float corr = exp2f(m[mt][r] - base);
        float sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float p = exp2f(sc[mt][nt][r * 2 + e] - base);
            sc[mt][nt][r * 2 + e] = p;
            sum += p;
          }
        l[mt][r] = l[mt][r] * corr + sum;
        m[mt][r] = mn;
#pragma unroll
        for (int i = 0; i < 16; ++i) {
          o[mt][i][r * 2] *= corr;
          o[mt][i][r * 2 + 1] *= corr;
        }
      }

    if (kt < kt_last) cp_async_wait<1>();
    else cp_async_wait<0>();
    __syncthreads();  // V(kt) visible
#pragma unroll
    for (int ks = 0; ks < kTile / 16; ++ks) {
      uint32_t pa[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        pa[mt][0] = pack_bf16(sc[mt][2 * ks][0], sc[mt][2 * ks][1]);
        pa[mt][1] = pack_bf16(sc[mt][2 * ks][2], sc[mt][2 * ks][3]);
        pa[mt][2] = pack_bf16(sc[mt][2 * ks + 1][0], sc[mt][2 * ks + 1][1]);
        pa[mt][3] = pack_bf16(sc[mt][2 * ks + 1][2], sc[mt][2 * ks + 1][3]);
      }
#pragma unroll
      for (int np = 0; np < kD / 16; ++np) {
        uint32_t b[4];
        load_b_kn(b, sV, ks * 16, np * 16);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma16816(o[mt][2 * np], pa[mt], b[0], b[1]);
          mma16816(o[mt][2 * np + 1], pa[mt], b[2], b[3]);
        }
      }
    }
  }

  if (nch > 1) {
    const int64_t slot = static_cast<int64_t>(s * a.H + h) * a.fwd_slots + split_slot_base(qt, kMT, a.fwd_ck) + chunk;
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float lr = l[mt][r];
        lr += __shfl_xor_sync(0xffffffffu, lr, 1);
        lr += __shfl_xor_sync(0xffffffffu, lr, 2);
        store_partial(a, slot, kBM, warp * 32 + mt * 16 + g + r * 8, c2, lane, o[mt], r, m[mt][r], lr,
                      qrow0 + mt * 16 + r * 8 < L);
      }
    return;
  }
  auto* out = static_cast<__nv_bfloat16*>(a.out_w);
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float lr = l[mt][r];
      lr += __shfl_xor_sync(0xffffffffu, lr, 1);
      lr += __shfl_xor_sync(0xffffffffu, lr, 2);
      const int qpos = qrow0 + mt * 16 + r * 8;
      if (qpos >= L) continue;
      const float inv = 1.0f / lr;
      __nv_bfloat16* orow = out + ((begin + static_cast<int64_t>(qpos)) * a.H + h) * kD;
#pragma unroll
      for (int i = 0; i < 16; ++i)
        *reinterpret_cast<__nv_bfloat162*>(orow + i * 8 + c2) =
            __floats2bfloat162_rn(o[mt][i][r * 2] * inv, o[mt][i][r * 2 + 1] * inv);
      if (lane % 4 == 0)
        a.lse[static_cast<int64_t>(h) * a.T + begin + qpos] = (m[mt][r] + log2f(lr)) * 0.69314718055994530942f;
    }
}

}  // namespace

int64_t flash_split_slots(int qtiles, int key_tiles_per_qtile, int ck) {
  return split_slot_base(qtiles, key_tiles_per_qtile, ck);
}

void flash_attention_forward(const AttentionArgs& a, bool wide) {
  if (a.S == 0 || a.max_seqlen == 0) return;
  const int mt = wide ? kMT : 1, rows = kTile * mt;
  const unsigned qt_count = static_cast<unsigned>((a.max_seqlen + rows - 1) / rows);
  const unsigned maxch = static_cast<unsigned>(split_chunks(causal_key_tiles(static_cast<int>(qt_count) - 1, rows, a.max_seqlen), a.fwd_ck));
  const dim3 grid = work_grid(qt_count * maxch, a.S, a.H);
  if (wide) {
    static thread_local bool attribute_set = false;
    if (!attribute_set) {
      for (const void* f : {reinterpret_cast<const void*>(flash_forward_wide_kernel<false>),
                            reinterpret_cast<const void*>(flash_forward_wide_kernel<true>)})
        check(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kFwdWideSmem)),
              "cudaFuncSetAttribute(flash_forward_wide_kernel)");
      attribute_set = true;
    }
    if (maxch > 1) flash_forward_wide_kernel<true><<<grid, kThreads, kFwdWideSmem, stream()>>>(a);
    else flash_forward_wide_kernel<false><<<grid, kThreads, kFwdWideSmem, stream()>>>(a);
    check_launch("attention_forward (flash, 128-row tiles)");
  } else {
    if (maxch > 1) flash_forward_kernel<true><<<grid, kThreads, 0, stream()>>>(a);
    else flash_forward_kernel<false><<<grid, kThreads, 0, stream()>>>(a);
    check_launch("attention_forward (flash)");
  }
  if (maxch > 1) {
    const int64_t total = static_cast<int64_t>(a.S) * a.H * a.fwd_slots;
    split_merge_kernel<true><<<dim3(qt_count * (rows / 8), static_cast<unsigned>(a.S), static_cast<unsigned>(a.H)), 256, 0, stream()>>>(
        a.fwd_partial, a.fwd_partial + total * rows * kD, static_cast<__nv_bfloat16*>(a.out_w), a.lse, a.cu_seqlens, a.T,
        a.H, rows, mt, a.fwd_ck, a.fwd_slots);
    check_launch("attention_forward (flash split merge)");
  }
}

}  // namespace cotune::kernels::cuda
