// Elementwise CUDA kernels: embedding, SwiGLU, dropout, add, copy / dtype conversion, matrix scaling.
// bf16 storage, fp32 arithmetic, rounding to bf16 where HF's bf16 tensors round. Memory-bound: each thread moves
// 8 elements with 16-byte accesses when the pointers allow it, else one element at a time.
#include "base/rng.h"
#include "kernels/cuda/common.cuh"

namespace cotune::kernels::cuda {

namespace {

constexpr int kThreads = 256;

// ---- embedding -----------------------------------------------------------------------------------------
// out[T,C] = table[ids[t], :]; ids i32 [T], table bf16 [V,C]. One block per token. An id outside [0, V) gives a
// row of NaN (the device cannot throw; the NaN check of the step catches it).
__global__ void embedding_kernel(bf16* __restrict__ out, const int32_t* __restrict__ ids,
                                 const bf16* __restrict__ table, int64_t C, int64_t V, bool vec) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  bf16* o = out + t * C;
  if (id < 0 || id >= V) {
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) o[i] = __float2bfloat16_rn(__int_as_float(0x7fc00000));
    return;
  }
  const bf16* row = table + static_cast<int64_t>(id) * C;
  if (vec) {
    for (int64_t i = threadIdx.x * 8; i < C; i += blockDim.x * 8)
      *reinterpret_cast<uint4*>(o + i) = *reinterpret_cast<const uint4*>(row + i);
  } else {
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) o[i] = row[i];
  }
}

// ---- SwiGLU ------------------------------------------------------------------------------------------
// out[n] = bf16(bf16(silu(gate)) * up)  (HF: act_fn(gate_proj(x)) * up_proj(x), two bf16 tensors)
__device__ __forceinline__ float silu_bf(float g) { return round_bf(g / (1.0f + expf(-g))); }

__global__ void swiglu_forward_kernel(bf16* out, const bf16* gate, const bf16* up, int64_t n, bool vec) {
  const int64_t i0 = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i0 >= n) return;
  if (vec && i0 + 8 <= n) {
    float g[8], u[8], o[8];
    load8(gate + i0, g);
    load8(up + i0, u);
#pragma unroll
    for (int j = 0; j < 8; ++j) o[j] = silu_bf(g[j]) * u[j];
    store8(out + i0, o);
  } else {
    for (int64_t i = i0; i < n && i < i0 + 8; ++i) out[i] = __float2bfloat16_rn(silu_bf(to_f(gate[i])) * to_f(up[i]));
  }
}

// dup = bf16(dout * bf16(silu(g))); dgate = bf16(bf16(dout * up) * sig * (1 + g * (1 - sig)))
__device__ __forceinline__ void swiglu_grad(float d, float g, float u, float& dg, float& du) {
  const float sig = 1.0f / (1.0f + expf(-g));
  du = d * round_bf(g * sig);
  dg = round_bf(d * u) * (sig * (1.0f + g * (1.0f - sig)));
}

__global__ void swiglu_backward_kernel(bf16* dgate, bf16* dup, const bf16* dout, const bf16* gate, const bf16* up,
                                       int64_t n, bool vec) {
  const int64_t i0 = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i0 >= n) return;
  if (vec && i0 + 8 <= n) {
    float d[8], g[8], u[8], dg[8], du[8];
    load8(dout + i0, d);
    load8(gate + i0, g);
    load8(up + i0, u);
#pragma unroll
    for (int j = 0; j < 8; ++j) swiglu_grad(d[j], g[j], u[j], dg[j], du[j]);
    store8(dgate + i0, dg);
    store8(dup + i0, du);
  } else {
    for (int64_t i = i0; i < n && i < i0 + 8; ++i) {
      float dg, du;
      swiglu_grad(to_f(dout[i]), to_f(gate[i]), to_f(up[i]), dg, du);
      dgate[i] = __float2bfloat16_rn(dg);
      dup[i] = __float2bfloat16_rn(du);
    }
  }
}

// ---- dropout -----------------------------------------------------------------------------------------
// out[i] = inp[i] * keep / (1-p): element i draws word (offset + i) % 4 of Philox block (seed, (offset + i) / 4),
// the CPU reference's stream (the same for any split of a tensor into pieces). One thread per Philox block.
template <typename T>
__global__ void dropout_kernel(T* out, const T* inp, int64_t n, float p, float keep_scale, uint64_t seed,
                               uint64_t offset) {
  const uint64_t block = offset / 4 + static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (block * 4 >= offset + static_cast<uint64_t>(n)) return;
  const Philox4 r = philox4x32(seed, block, 0);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const uint64_t g = block * 4 + j;
    if (g >= offset && g < offset + static_cast<uint64_t>(n)) {
      const int64_t i = static_cast<int64_t>(g - offset);
      const bool keep = uniform01(r.v[j]) >= p;
      out[i] = from_f<T>(keep ? to_f(inp[i]) * keep_scale : 0.0f);
    }
  }
}

// ---- add / convert / scale -----------------------------------------------------------------------------
__global__ void add_bf16_kernel(bf16* out, const bf16* a, const bf16* b, int64_t n, bool vec) {
  const int64_t i0 = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i0 >= n) return;
  if (vec && i0 + 8 <= n) {
    float x[8], y[8];
    load8(a + i0, x);
    load8(b + i0, y);
#pragma unroll
    for (int j = 0; j < 8; ++j) x[j] += y[j];
    store8(out + i0, x);
  } else {
    for (int64_t i = i0; i < n && i < i0 + 8; ++i) out[i] = __float2bfloat16_rn(to_f(a[i]) + to_f(b[i]));
  }
}

__global__ void add_f32_kernel(float* out, const float* a, const float* b, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

template <typename D, typename S>
__global__ void convert_kernel(D* dst, const S* src, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = from_f<D>(to_f(src[i]));
}

// Grid-stride over the concatenation of up to 3 arrays.
__global__ void convert_batch_kernel(ConvertBatch b) {
  const int64_t total = b.n[0] + b.n[1] + b.n[2];
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int j = 0;
    int64_t k = i;
    if (k >= b.n[0]) {
      k -= b.n[0];
      j = 1;
      if (k >= b.n[1]) {
        k -= b.n[1];
        j = 2;
      }
    }
    static_cast<bf16*>(b.dst[j])[k] = __float2bfloat16_rn(b.src[j][k]);
  }
}

template <typename T>
__global__ void scale_matrix_kernel(T* d, int64_t rows, int64_t cols, int64_t ld, float beta) {
  const int64_t n = rows * cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    T* p = d + (i / cols) * ld + i % cols;
    *p = from_f<T>(beta == 0.0f ? 0.0f : beta * to_f(*p));
  }
}

unsigned grid_stride_blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  const int64_t cap = static_cast<int64_t>(sm_count()) * 16;
  return static_cast<unsigned>(b < 1 ? 1 : (b > cap ? cap : b));
}

}  // namespace

void launch_convert_f32_to_bf16(void* dst, const float* src, int64_t n) {
  if (n == 0) return;
  convert_kernel<bf16, float><<<grid_stride_blocks(n), kThreads, 0, stream()>>>(static_cast<bf16*>(dst), src, n);
  check_launch("convert f32 -> bf16");
}

void launch_convert_batch_f32_to_bf16(const ConvertBatch& batch) {
  const int64_t total = batch.n[0] + batch.n[1] + batch.n[2];
  if (total == 0) return;
  convert_batch_kernel<<<grid_stride_blocks(total), kThreads, 0, stream()>>>(batch);
  check_launch("convert f32 -> bf16 (batch)");
}

void launch_convert_bf16_to_f32(float* dst, const void* src, int64_t n) {
  if (n == 0) return;
  convert_kernel<float, bf16><<<grid_stride_blocks(n), kThreads, 0, stream()>>>(dst, static_cast<const bf16*>(src), n);
  check_launch("convert bf16 -> f32");
}

void launch_scale_matrix(void* d, bool is_bf16, int64_t rows, int64_t cols, int64_t ld, float beta) {
  if (rows * cols == 0 || beta == 1.0f) return;
  if (is_bf16)
    scale_matrix_kernel<bf16><<<grid_stride_blocks(rows * cols), kThreads, 0, stream()>>>(static_cast<bf16*>(d), rows,
                                                                                         cols, ld, beta);
  else
    scale_matrix_kernel<float><<<grid_stride_blocks(rows * cols), kThreads, 0, stream()>>>(static_cast<float*>(d), rows,
                                                                                          cols, ld, beta);
  check_launch("scale_matrix");
}

void launch_embedding(void* out, const int32_t* ids, const void* table, int64_t T, int64_t C, int64_t V) {
  if (T == 0) return;
  const bool vec = C % 8 == 0 && aligned16(out) && aligned16(table);
  embedding_kernel<<<static_cast<unsigned>(T), 128, 0, stream()>>>(static_cast<bf16*>(out), ids,
                                                                   static_cast<const bf16*>(table), C, V, vec);
  check_launch("embedding_forward");
}

void launch_swiglu_forward(void* out, const void* gate, const void* up, int64_t n) {
  if (n == 0) return;
  const bool vec = aligned16(out) && aligned16(gate) && aligned16(up);
  swiglu_forward_kernel<<<blocks_for((n + 7) / 8, kThreads), kThreads, 0, stream()>>>(
      static_cast<bf16*>(out), static_cast<const bf16*>(gate), static_cast<const bf16*>(up), n, vec);
  check_launch("swiglu_forward");
}

void launch_swiglu_backward(void* dgate, void* dup, const void* dout, const void* gate, const void* up, int64_t n) {
  if (n == 0) return;
  const bool vec = aligned16(dgate) && aligned16(dup) && aligned16(dout) && aligned16(gate) && aligned16(up);
  swiglu_backward_kernel<<<blocks_for((n + 7) / 8, kThreads), kThreads, 0, stream()>>>(
      static_cast<bf16*>(dgate), static_cast<bf16*>(dup), static_cast<const bf16*>(dout),
      static_cast<const bf16*>(gate), static_cast<const bf16*>(up), n, vec);
  check_launch("swiglu_backward");
}

void launch_dropout(void* out, const void* inp, bool is_bf16, int64_t n, float p, uint64_t seed, uint64_t offset) {
  if (n == 0) return;
  const float keep_scale = 1.0f / (1.0f - p);
  const int64_t philox_blocks = static_cast<int64_t>((offset + static_cast<uint64_t>(n) + 3) / 4 - offset / 4);
  const unsigned blocks = blocks_for(philox_blocks, kThreads);
  if (is_bf16)
    dropout_kernel<bf16><<<blocks, kThreads, 0, stream()>>>(static_cast<bf16*>(out), static_cast<const bf16*>(inp), n,
                                                           p, keep_scale, seed, offset);
  else
    dropout_kernel<float><<<blocks, kThreads, 0, stream()>>>(static_cast<float*>(out), static_cast<const float*>(inp),
                                                            n, p, keep_scale, seed, offset);
  check_launch("dropout");
}

void launch_add(void* out, const void* a, const void* b, bool is_bf16, int64_t n) {
  if (n == 0) return;
  if (is_bf16) {
    const bool vec = aligned16(out) && aligned16(a) && aligned16(b);
    add_bf16_kernel<<<blocks_for((n + 7) / 8, kThreads), kThreads, 0, stream()>>>(
        static_cast<bf16*>(out), static_cast<const bf16*>(a), static_cast<const bf16*>(b), n, vec);
  } else {
    add_f32_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
        static_cast<float*>(out), static_cast<const float*>(a), static_cast<const float*>(b), n);
  }
  check_launch("add");
}

}  // namespace cotune::kernels::cuda
