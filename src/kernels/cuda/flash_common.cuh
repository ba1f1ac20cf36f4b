// Building blocks of the flash attention kernels (head dim 128): cp.async tile loads into XOR-swizzled shared
// memory, ldmatrix fragment loads, and the bf16 mma.sync m16n8k16 with fp32 accumulation.
//
// Tiles are [64 rows][128 bf16] (16 KiB): a row is 16 chunks of 16 bytes, chunk c of row r is stored at chunk
// c ^ (r & 7), so the 8 row addresses of an ldmatrix phase hit 8 different bank groups.
//
// mma.m16n8k16 fragments (lane = threadIdx % 32, g = lane / 4, c = (lane % 4) * 2):
//   A 16x16: a0 (g, c..c+1), a1 (g+8, c..), a2 (g, c+8..), a3 (g+8, c+8..)
//   B 16x8:  b0 (k = c..c+1, n = g), b1 (k = c+8.., n = g)
//   C 16x8:  c0,c1 (g, c..c+1), c2,c3 (g+8, c..c+1)
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace cotune::kernels::cuda::flash {

constexpr int kD = 128;      // head dim
constexpr int kTile = 64;    // rows of a q / k tile
constexpr int kThreads = 128;  // 4 warps, 16 rows each

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Element offset of (row, col) in a swizzled [rows][128] bf16 tile.
__device__ __forceinline__ int swz(int row, int col) {
  return row * kD + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7);
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const int bytes = valid ? 16 : 0;  // 0: zero-fill, nothing read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Loads rows [row0, row0 + 64) of a [T, heads, 128] bf16 tensor at head `head` into a swizzled tile; rows at or
// past row_end are zero-filled. All 128 threads take part (8 chunks each).
__device__ __forceinline__ void load_tile(__nv_bfloat16* tile, const __nv_bfloat16* base, int64_t row0, int64_t row_end,
                                          int heads, int head) {
#pragma unroll
  for (int it = 0; it < kTile * 16 / kThreads; ++it) {
    const int idx = it * kThreads + threadIdx.x;
    const int r = idx / 16, ch = idx % 16;
    const int64_t grow = row0 + r;
    const bool valid = grow < row_end;
    const __nv_bfloat16* src = base + ((valid ? grow : row0) * heads + head) * kD + ch * 8;
    cp_async16(tile + swz(r, ch * 8), src, valid);
  }
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

// Transposes an 8x8 b16 matrix held one 32-bit pair per lane (row lane / 4, cols (lane % 4) * 2 ..): the result
// holds row lane / 4 of the transpose in the same layout.
__device__ __forceinline__ uint32_t movmatrix_trans(uint32_t x) {
  uint32_t y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// A fragment (16 rows x 16 cols) of rows row0.., cols col0.. of a swizzled tile.
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const __nv_bfloat16* tile, int row0, int col0) {
  const int lane = threadIdx.x % 32;
  const int r = row0 + (lane % 8) + ((lane / 8) % 2) * 8;
  const int c = col0 + (lane / 16) * 8;
  ldmatrix_x4(a, tile + swz(r, c));
}

// B fragments for two n-tiles when B[k][n] = tile[n][k] (the tile holds B^T row-major, e.g. K in Q K^T):
// n = n0..n0+16 (rows of the tile), k = k0..k0+16 (cols). b[0],b[1] for n-tile n0; b[2],b[3] for n0+8.
__device__ __forceinline__ void load_b_nk(uint32_t (&b)[4], const __nv_bfloat16* tile, int n0, int k0) {
  const int lane = threadIdx.x % 32;
  const int mi = lane / 8;
  const int r = n0 + (lane % 8) + (mi / 2) * 8;
  const int c = k0 + (mi % 2) * 8;
  ldmatrix_x4(b, tile + swz(r, c));
}

// B fragments for two n-tiles when B[k][n] = tile[k][n] (the tile holds B row-major, e.g. V in P V):
// k = k0..k0+16 (rows), n = n0..n0+16 (cols). b[0],b[1] for n-tile n0; b[2],b[3] for n0+8.
__device__ __forceinline__ void load_b_kn(uint32_t (&b)[4], const __nv_bfloat16* tile, int k0, int n0) {
  const int lane = threadIdx.x % 32;
  const int mi = lane / 8;
  const int r = k0 + (lane % 8) + (mi % 2) * 8;
  const int c = n0 + (mi / 2) * 8;
  ldmatrix_x4_trans(b, tile + swz(r, c));
}

// acc[16 x 64] (8 n-tiles) += A[16 x 128] @ B where B[k][n] = tile[n][k] over 64 n (tile rows) and k = 128.
// A from tile_a rows a_row0.. (16 rows).
__device__ __forceinline__ void gemm_16x64_k128(float (&acc)[8][4], const __nv_bfloat16* tile_a, int a_row0,
                                                const __nv_bfloat16* tile_b) {
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk) {
    uint32_t a[4];
    load_a(a, tile_a, a_row0, kk * 16);
#pragma unroll
    for (int np = 0; np < 4; ++np) {
      uint32_t b[4];
      load_b_nk(b, tile_b, np * 16, kk * 16);
      mma16816(acc[2 * np], a, b[0], b[1]);
      mma16816(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

// acc[16 x 128] (16 n-tiles) += P[16 x 64] @ tile[64 x 128], P given as C-layout fragments of 8 n-tiles (fp32,
// rounded to bf16 here); tile rows are the k dimension.
__device__ __forceinline__ void gemm_p_16x128_k64(float (&acc)[16][4], const float (&p)[8][4],
                                                  const __nv_bfloat16* tile) {
#pragma unroll
  for (int ks = 0; ks < kTile / 16; ++ks) {
    uint32_t a[4];
    a[0] = pack_bf16(p[2 * ks][0], p[2 * ks][1]);
    a[1] = pack_bf16(p[2 * ks][2], p[2 * ks][3]);
    a[2] = pack_bf16(p[2 * ks + 1][0], p[2 * ks + 1][1]);
    a[3] = pack_bf16(p[2 * ks + 1][2], p[2 * ks + 1][3]);
#pragma unroll
    for (int np = 0; np < kD / 16; ++np) {
      uint32_t b[4];
      load_b_kn(b, tile, ks * 16, np * 16);
      mma16816(acc[2 * np], a, b[0], b[1]);
      mma16816(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

// ---- block order ------------------------------------------------------------------------------------------------
// The flash kernels' grid is (heads, S, work units): blocks are dispatched x fastest, so the longest unit of every
// (sequence, head) goes first, then the next longest of all of them, ... (a grid (units, S, heads) would start the
// last heads' longest tiles only once earlier heads' short ones are done: one sequence of 2048 tokens has 384
// forward blocks for 264 resident slots). h: query or kv head; idx: work index counted from the longest (0).
struct BlockCoord {
  int s, h, idx, units;
};
__device__ __forceinline__ BlockCoord block_coord() {
  return {static_cast<int>(blockIdx.y), static_cast<int>(blockIdx.x), static_cast<int>(gridDim.z - 1 - blockIdx.z),
          static_cast<int>(gridDim.z)};
}
inline dim3 work_grid(unsigned units, int S, int heads) {
  return dim3(static_cast<unsigned>(heads), static_cast<unsigned>(S), units);
}

// ---- split work (flash-decoding style) ------------------------------------------------------------------------
// A query tile whose causal range spans n key tiles is cut into chunks of ck key tiles (ck <= 0: one chunk). The
// chunks of one tile run in different blocks; each writes fp32 partials to its slot, and a merge kernel combines
// the slots of the tile in chunk order (deterministic). Slots are numbered per (sequence, head): tile qt's chunks
// start at split_slot_base(qt), counting every tile before it at its nominal range of (t + 1) * mt key tiles.
__host__ __device__ inline int split_chunks(int n, int ck) { return ck > 0 ? (n + ck - 1) / ck : 1; }
__host__ __device__ inline int split_slot_base(int qt, int mt, int ck) {
  int b = 0;
  for (int t = 0; t < qt; ++t) b += split_chunks((t + 1) * mt, ck);
  return b;
}
// Key tiles (of 64) in the causal range of query tile qt of `rows` = 64 * mt rows, for a sequence of length L.
__host__ __device__ inline int causal_key_tiles(int qt, int rows, int L) {
  const int last_row = (qt + 1) * rows < L ? (qt + 1) * rows : L;
  return (last_row - 1) / kTile + 1;
}

// Merges the split chunks of every query tile that was split. part f32 [slots][rows][128] (per (s, h):
// slots_per_sh slots), part_lse f32 [slots][rows] (log2 domain, used when kSoftmax). kSoftmax: out = sum over
// chunks of exp2(lse_c - lse) * part_c with lse = log2 sum exp2(lse_c), lse_out[h, t] = lse * ln 2 (the forward);
// else out = sum of part_c (dq). Sums run in chunk order. out bf16 [T,H,128]. Grid (query tiles * rows / 8, S, H),
// 256 threads: one warp per row, 4 columns per thread; the loads of 8 chunks are issued together.
template <bool kSoftmax>
__global__ void __launch_bounds__(256)
    split_merge_kernel(const float* part, const float* part_lse, __nv_bfloat16* out, float* lse_out,
                       const int32_t* cu_seqlens, int T, int H, int rows, int mt, int ck, int slots_per_sh) {
  const int groups = rows / 8;
  const int qt = blockIdx.x / groups, row = (blockIdx.x % groups) * 8 + threadIdx.x / 32;
  const int s = blockIdx.y, h = blockIdx.z;
  const int begin = cu_seqlens[s], L = cu_seqlens[s + 1] - begin;
  const int qpos = qt * rows + row;
  if (qpos >= L) return;
  const int nch = split_chunks(causal_key_tiles(qt, rows, L), ck);
  if (nch <= 1) return;
  const int64_t slot0 = static_cast<int64_t>(s * H + h) * slots_per_sh + split_slot_base(qt, mt, ck);
  const float* lrow = kSoftmax ? part_lse + slot0 * rows + row : nullptr;  // chunk c at lrow[c * rows]
  const float* prow = part + (slot0 * rows + row) * kD + (threadIdx.x % 32) * 4;  // chunk c at prow[c * rows * kD]
  float lse = 0.0f;
  if (kSoftmax) {  // one pass: running max and rescaled sum
    float mx = -INFINITY, tot = 0.0f;
    for (int c0 = 0; c0 < nch; c0 += 8) {
      float lv[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) lv[j] = c0 + j < nch ? lrow[static_cast<int64_t>(c0 + j) * rows] : -INFINITY;
      float m8 = lv[0];
#pragma unroll
      for (int j = 1; j < 8; ++j) m8 = fmaxf(m8, lv[j]);
      const float mn = fmaxf(mx, m8);  // finite: chunk 0 holds key 0 <= qpos
      tot *= exp2f(mx - mn);
#pragma unroll
      for (int j = 0; j < 8; ++j) tot += exp2f(lv[j] - mn);
      mx = mn;
    }
    lse = mx + log2f(tot);
  }
  float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  for (int c0 = 0; c0 < nch; c0 += 8) {
    float4 x[8];
    float w[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const bool ok = c0 + j < nch;
      x[j] = ok ? *reinterpret_cast<const float4*>(prow + static_cast<int64_t>(c0 + j) * rows * kD)
                : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      w[j] = !ok ? 0.0f : (kSoftmax ? exp2f(lrow[static_cast<int64_t>(c0 + j) * rows] - lse) : 1.0f);
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      acc.x += w[j] * x[j].x;
      acc.y += w[j] * x[j].y;
      acc.z += w[j] * x[j].z;
      acc.w += w[j] * x[j].w;
    }
  }
  __nv_bfloat16* o = out + ((begin + static_cast<int64_t>(qpos)) * H + h) * kD + (threadIdx.x % 32) * 4;
  *reinterpret_cast<__nv_bfloat162*>(o) = __floats2bfloat162_rn(acc.x, acc.y);
  *reinterpret_cast<__nv_bfloat162*>(o + 2) = __floats2bfloat162_rn(acc.z, acc.w);
  if (kSoftmax && threadIdx.x % 32 == 0) lse_out[static_cast<int64_t>(h) * T + begin + qpos] = lse * 0.69314718055994530942f;
}

}  // namespace cotune::kernels::cuda::flash
