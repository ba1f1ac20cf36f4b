// Raw-pointer launchers of the CUDA kernels (defined in the .cu files, called by the Tensor-level entry points
// in the .cpp files of kernels/cuda). This header and the .cu files include nothing that pulls in fmt:
// nvcc's front end rejects fmt 9 under C++20, so argument checking and error messages live in the .cpp files.
// Every launcher enqueues on the context stream and checks the launch (context.h: check_launch).
#pragma once
#include <cstdint>

namespace cotune::kernels::cuda {

// ---- elementwise.cu ----------------------------------------------------------------------------------------
void launch_convert_f32_to_bf16(void* dst, const float* src, int64_t n);
void launch_convert_bf16_to_f32(float* dst, const void* src, int64_t n);
// Up to 3 f32 -> bf16 conversions in one launch (the small LoRA matrices): dst[j] bf16 [n[j]] = src[j].
// Entries with n[j] == 0 are skipped.
struct ConvertBatch {
  void* dst[3] = {nullptr, nullptr, nullptr};
  const float* src[3] = {nullptr, nullptr, nullptr};
  int64_t n[3] = {0, 0, 0};
};
void launch_convert_batch_f32_to_bf16(const ConvertBatch& batch);
// d[rows, cols] (row stride ld) *= beta (0: zeros). is_bf16 selects bf16, else f32.
void launch_scale_matrix(void* d, bool is_bf16, int64_t rows, int64_t cols, int64_t ld, float beta);
void launch_embedding(void* out, const int32_t* ids, const void* table, int64_t T, int64_t C, int64_t V);
void launch_swiglu_forward(void* out, const void* gate, const void* up, int64_t n);
void launch_swiglu_backward(void* dgate, void* dup, const void* dout, const void* gate, const void* up, int64_t n);
void launch_dropout(void* out, const void* inp, bool is_bf16, int64_t n, float p, uint64_t seed, uint64_t offset);
void launch_fill_normal(void* out, bool is_bf16, int64_t n, uint64_t key, float std);
void launch_add(void* out, const void* a, const void* b, bool is_bf16, int64_t n);

// ---- norm_rope.cu --------------------------------------------------------------------------------------------
void launch_rmsnorm_forward(void* out, float* rstd, const void* inp, const void* weight, int64_t T, int64_t C, float eps);
void launch_rmsnorm_backward(void* dinp, const void* dout, const void* inp, const void* weight, const float* rstd,
                             int64_t T, int64_t C, bool accumulate);
// x bf16 [T,NH,D] in place; inv_freq [D/2] (host array, D <= 1024); sign +1 forward, -1 backward.
void launch_rope(void* x, const int32_t* positions, int64_t T, int64_t NH, int64_t D, const float* inv_freq, float sign);

// ---- cross_entropy.cu ----------------------------------------------------------------------------------------
// One block per row: losses f32 [T] (or null), correct i32 [T] (or null), dlogits [T,V] with row stride ld_out
// (or null; f32 or bf16), from logits [T,V] with row stride ld_in (f32 or bf16).
void launch_ce_rows(float* losses, int32_t* correct, void* dlogits, bool dlogits_bf16, int64_t ld_out,
                    const void* logits, bool logits_bf16, int64_t ld_in, const int32_t* targets, int64_t T, int64_t V,
                    float grad_scale);

// ---- attention ---------------------------------------------------------------------------------------------
// Pointers are bf16 except lse / dvec (f32 [H,T]) and cu_seqlens (i32 [S+1]).
struct AttentionArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* out = nullptr;   // forward output (input of the backward)
  void* out_w = nullptr;       // forward output (written by the forward)
  float* lse = nullptr;
  const int32_t* cu_seqlens = nullptr;
  const void* dout = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  float* dvec = nullptr;       // backward workspace: rowsum(dout * out), f32 [H,T]
  float* dkv_partial = nullptr;  // flash backward workspace: f32 [2][dkdv_chunks][T,KV,D] (see flash_dkdv_kernel)
  int S = 0, T = 0, H = 0, KV = 0, D = 0, max_seqlen = 0;
  float scale = 1.0f;
  // > 0: sliding window (Mistral): query i sees keys (i - window, i] of its sequence. Only the simple kernels
  // implement it; the dispatcher sends a window that matters (max_seqlen > window) to them.
  int window = 0;
  // Flash work splits (set by the dispatcher, see flash_split_plan). fwd_ck / dq_ck: key tiles (of 64) per block of
  // the forward / dq kernels, 0 = the whole causal range in one block; a query tile split into several chunks
  // writes fp32 partials to fwd_partial / dq_partial (slots of flash_split_slots each (sequence, head)) that a
  // merge kernel combines in chunk order. dkdv_w: (query head, query tile) pairs per dk/dv block (> 0).
  int fwd_ck = 0, dq_ck = 0, dkdv_w = 0;
  int fwd_slots = 0, dq_slots = 0;  // partial slots per (sequence, head): flash_split_slots of the tile shape
  float* fwd_partial = nullptr;  // f32 [S*H*slots][rows][D] then f32 [S*H*slots][rows] (log2-domain lse)
  float* dq_partial = nullptr;   // f32 [S*H*slots][64][D]
  // Flash backward with dS kept: the dk/dv kernel stores dS (bf16, in the A-fragment order of the dq GEMM) of every
  // causal (query tile, key tile) pair, ds_tri = nq * (nq + 1) / 2 tiles of 8 KiB per (sequence, head) for nq =
  // ceil(max_seqlen / 64), and the dq kernel only computes dQ = dS K. Null: the dq kernel recomputes dS.
  void* ds = nullptr;
  int64_t ds_tri = 0;
};
constexpr int kSimpleAttentionMaxD = 256;  // simple kernels: D % 32 == 0, D <= 256
constexpr int kFlashHeadDim = 128;         // flash kernels: D == 128
void simple_attention_forward(const AttentionArgs& a);
void simple_attention_backward(const AttentionArgs& a);  // needs dvec filled
void attention_dvec(const AttentionArgs& a);              // dvec[h,t] = sum_d dout[t,h,d] * out[t,h,d]
// wide: 128-row query tiles, 32 rows per warp (less shared-memory traffic); else 64-row tiles, 16 rows per warp.
void flash_attention_forward(const AttentionArgs& a, bool wide);  // needs fwd_partial when fwd_ck splits
void flash_attention_backward(const AttentionArgs& a);   // needs dvec, dkv_partial (when split), dq_partial
// Partial slots per (sequence, head) when query tiles of `rows_per_tile / 64` key tiles each (1: 64-row tiles,
// 2: 128-row tiles) are split into chunks of ck key tiles, over `qtiles` query tiles: sum of the chunk counts.
int64_t flash_split_slots(int qtiles, int key_tiles_per_qtile, int ck);
// Chunks of the dk/dv kernel for the longest key tile (query tiles ceil(max_seqlen / 64), group H / KV).
int flash_dkdv_chunks(int max_seqlen, int group, int w);

// ---- optim.cu, nf4.cu ---------------------------------------------------------------------------------------------
struct AdamWScalars {
  float decay, w, b2, one_minus_b2, neg_step_size, bc2_sqrt, eps;
  bool small_w, decays;
};
void launch_adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s,
                  const float* grad_scale, const int32_t* skip);
constexpr int kNormGroup = 64;        // tensors per partial-sum launch
constexpr int kNormBlocks = 264;      // fixed grid of the partial-sum kernel
// partials f64 [kNormBlocks] = per-block sums of squares over up to kNormGroup tensors.
void launch_sumsq_partials(const float* const* ptrs, const int64_t* sizes, int count, double* partials);
// norm = sqrt(sum of partials[count]) (f32), coef (or null) = clip coefficient, nonfinite (or null) = !isfinite.
void launch_norm_finish(const double* partials, int64_t count, float* norm, float* coef, int32_t* nonfinite,
                        float max_norm, bool clip);
void launch_scale_by(float* x, int64_t n, const float* s);
// Multi-tensor versions (one launch for many tensors). Tables are device arrays [count]; chunk_start device i64
// [count + 1]: the first kMultiChunk-element chunk of each tensor (ceil(n / kMultiChunk) chunks each).
constexpr int64_t kMultiChunk = 4096;
struct AdamWTensor {
  float* p;
  const float* g;
  float* m;
  float* v;
  uint16_t* p16;  // optional bf16 copy of p, written with the updated p
  int64_t n;
};
void launch_adamw_multi(const AdamWTensor* table, const int64_t* chunk_start, int count, int64_t total_chunks,
                        const AdamWScalars& s, const float* grad_scale, const int32_t* skip);
struct NormTensor {
  const float* x;
  int64_t n;
};
// partials f64 [kNormBlocks]: block j sums the squares of chunks j, j + kNormBlocks, ... in that order.
void launch_sumsq_multi(const NormTensor* table, const int64_t* chunk_start, int count, int64_t total_chunks,
                        double* partials);
// out[0] = sum of x[n] (f32, or i32 when is_i32), fp64 accumulation, one block, fixed order.
void launch_reduce_sum(float* out, const void* x, bool is_i32, int64_t n);
// NF4: out [n] (bf16 if out_bf16 else f32); qabsmax u8 codes (nested) or absmax_f32 (not nested).
void launch_nf4_dequantize(void* out, bool out_bf16, const uint8_t* packed, int64_t n, int64_t blocksize,
                           const float* code, const uint8_t* qabsmax, const float* absmax_f32,
                           const float* nested_absmax, const float* nested_map, float offset, int64_t nested_bs);

// NF4 quantization of x [n] (bf16 if x_bf16 else f32; blocks of 64): packed u8 [ceil(n/2)] and absmax f32 [ceil(n/64)],
// bit-identical to cpu::nf4_quantize (code: the 16 NF4 values, host memory).
void launch_nf4_quantize(const void* x, bool x_bf16, int64_t n, const float* code, uint8_t* packed, float* absmax);

// Up to kNf4BatchMax NF4 weights dequantized to bf16 in one launch (e.g. the seven projections of a layer);
// per weight the arguments and the bit-exact result of launch_nf4_dequantize.
constexpr int kNf4BatchMax = 8;
struct Nf4Job {
  void* out;  // bf16 [n]
  const uint8_t* packed;
  int64_t n, blocksize;
  const float* code;
  const uint8_t* qabsmax;
  const float* absmax_f32;
  const float* nested_absmax;
  const float* nested_map;
  float offset;
  int64_t nested_bs;
};
void launch_nf4_dequantize_batch(const Nf4Job* jobs, int count);

}  // namespace cotune::kernels::cuda
