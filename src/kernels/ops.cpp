// The one dispatch point of kernels/ops.h: validate shapes, dtypes and devices, then call the CPU
// reference or the CUDA kernel. Every shape error names the op and the argument.
#include "kernels/ops.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "base/half.h"
#include "tensor/arena.h"
#include "kernels/cpu/cpu_ops.h"
#ifdef COTUNE_WITH_CUDA
#include "kernels/cuda/cuda_ops.h"
#define COTUNE_CUDA_CALL(call) \
  do {                         \
    cuda::call;                \
    return;                    \
  } while (0)
#else
#define COTUNE_CUDA_CALL(call) fail("a CUDA tensor reached {} in a build without CUDA", __func__)
#endif

namespace cotune::kernels {

namespace {

float* f32(const Tensor& t) { return t.defined() && t.data ? t.ptr<float>() : nullptr; }
int32_t* i32(const Tensor& t) { return t.ptr<int32_t>(); }

// All defined tensors on one device; returns true when that device is CUDA.
bool on_cuda(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t->data) continue;
    if (!first) first = t;
    else if (t->device != first->device)
      fail("{}: tensors on different devices ({} and {})", op, first->str(), t->str());
  }
  return first && first->device == Device::cuda;
}

// On CPU every float tensor must be f32.
void cpu_f32(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->data && t->dtype != DType::f32) fail("{}: CPU kernels take f32 tensors, got {}", op, t->str());
}

void expect_rank(const char* op, const char* arg, const Tensor& t, int rank) {
  if (t.ndim() != rank) fail("{}: {} must have {} dimensions, got {}", op, arg, rank, t.str());
}
void expect_dim(const char* op, const char* arg, const Tensor& t, int d, int64_t n) {
  if (t.dim(d) != n) fail("{}: {} dimension {} must be {}, got {}", op, arg, d, n, t.str());
}
void expect_same_shape(const char* op, const char* arg, const Tensor& t, const Tensor& ref) {
  if (!(t.shape == ref.shape)) fail("{}: {} must have shape {}, got {}", op, arg, ref.shape.str(), t.str());
}
void expect_index(const char* op, const char* arg, const Tensor& t) {
  if (t.dtype != DType::i32) fail("{}: {} must be i32, got {}", op, arg, t.str());
}

}  // namespace

void matmul(const Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha, float beta) {
  const char* op = "matmul";
  expect_rank(op, "a", a, 2);
  expect_rank(op, "b", b, 2);
  expect_rank(op, "out", out, 2);
  const int64_t M = trans_a ? a.dim(1) : a.dim(0), K = trans_a ? a.dim(0) : a.dim(1);
  const int64_t Kb = trans_b ? b.dim(1) : b.dim(0), N = trans_b ? b.dim(0) : b.dim(1);
  if (K != Kb) fail("matmul: inner dimensions differ ({} vs {}) for a {} and b {}", K, Kb, a.str(), b.str());
  if (out.dim(0) != M || out.dim(1) != N) fail("matmul: out must be [{}, {}], got {}", M, N, out.str());
  if (on_cuda(op, {&out, &a, &b})) COTUNE_CUDA_CALL(matmul(out, a, b, trans_a, trans_b, alpha, beta));
  cpu_f32(op, {&out, &a, &b});
  cpu::matmul(f32(out), f32(a), f32(b), M, N, K, trans_a, trans_b, alpha, beta);
}

void embedding_forward(const Tensor& out, const Tensor& ids, const Tensor& table) {
  const char* op = "embedding_forward";
  expect_rank(op, "table", table, 2);
  expect_rank(op, "ids", ids, 1);
  expect_index(op, "ids", ids);
  expect_rank(op, "out", out, 2);
  expect_dim(op, "out", out, 0, ids.dim(0));
  expect_dim(op, "out", out, 1, table.dim(1));
  if (on_cuda(op, {&out, &ids, &table})) COTUNE_CUDA_CALL(embedding_forward(out, ids, table));
  cpu_f32(op, {&out, &table});
  const int32_t* id = i32(ids);
  for (int64_t t = 0; t < ids.dim(0); ++t)
    if (id[t] < 0 || id[t] >= table.dim(0))
      fail("embedding_forward: token id {} at position {} is outside the vocabulary [0, {})", id[t], t, table.dim(0));
  cpu::embedding_forward(f32(out), id, f32(table), ids.dim(0), table.dim(1), table.dim(0));
}

void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& inp, const Tensor& weight, float eps) {
  const char* op = "rmsnorm_forward";
  expect_rank(op, "inp", inp, 2);
  expect_same_shape(op, "out", out, inp);
  expect_rank(op, "weight", weight, 1);
  expect_dim(op, "weight", weight, 0, inp.dim(1));
  expect_rank(op, "rstd", rstd, 1);
  expect_dim(op, "rstd", rstd, 0, inp.dim(0));
  expect_dtype(rstd, DType::f32, "rmsnorm_forward: rstd");
  if (on_cuda(op, {&out, &rstd, &inp, &weight})) COTUNE_CUDA_CALL(rmsnorm_forward(out, rstd, inp, weight, eps));
  cpu_f32(op, {&out, &inp, &weight});
  cpu::rmsnorm_forward(f32(out), f32(rstd), f32(inp), f32(weight), inp.dim(0), inp.dim(1), eps);
}

void rmsnorm_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp, const Tensor& weight,
                      const Tensor& rstd, bool accumulate) {
  const char* op = "rmsnorm_backward";
  expect_rank(op, "inp", inp, 2);
  expect_same_shape(op, "dinp", dinp, inp);
  expect_same_shape(op, "dout", dout, inp);
  expect_dim(op, "weight", weight, 0, inp.dim(1));
  expect_dim(op, "rstd", rstd, 0, inp.dim(0));
  if (on_cuda(op, {&dinp, &dout, &inp, &weight, &rstd}))
    COTUNE_CUDA_CALL(rmsnorm_backward(dinp, dout, inp, weight, rstd, accumulate));
  cpu_f32(op, {&dinp, &dout, &inp, &weight, &rstd});
  cpu::rmsnorm_backward(f32(dinp), f32(dout), f32(inp), f32(weight), f32(rstd), inp.dim(0), inp.dim(1), accumulate);
}

static void check_rope(const char* op, const Tensor& x, const Tensor& positions) {
  expect_rank(op, "x", x, 3);
  if (x.dim(2) % 2 != 0 || x.dim(2) > 1024) fail("{}: head dim must be even and <= 1024, got {}", op, x.str());
  expect_rank(op, "positions", positions, 1);
  expect_index(op, "positions", positions);
  expect_dim(op, "positions", positions, 0, x.dim(0));
}

void rope_forward(const Tensor& x, const Tensor& positions, const RopeSpec& rope) {
  check_rope("rope_forward", x, positions);
  if (on_cuda("rope_forward", {&x, &positions})) COTUNE_CUDA_CALL(rope_forward(x, positions, rope));
  cpu_f32("rope_forward", {&x});
  cpu::rope_apply(f32(x), i32(positions), x.dim(0), x.dim(1), x.dim(2), rope, 1.0f);
}

void rope_backward(const Tensor& dx, const Tensor& positions, const RopeSpec& rope) {
  check_rope("rope_backward", dx, positions);
  if (on_cuda("rope_backward", {&dx, &positions})) COTUNE_CUDA_CALL(rope_backward(dx, positions, rope));
  cpu_f32("rope_backward", {&dx});
  cpu::rope_apply(f32(dx), i32(positions), dx.dim(0), dx.dim(1), dx.dim(2), rope, -1.0f);
}

static void check_attention(const char* op, const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                            const Tensor& v, const Tensor& cu_seqlens) {
  expect_rank(op, "q", q, 3);
  expect_rank(op, "k", k, 3);
  expect_same_shape(op, "v", v, k);
  expect_same_shape(op, "out", out, q);
  if (k.dim(0) != q.dim(0) || k.dim(2) != q.dim(2)) fail("{}: k {} does not match q {}", op, k.str(), q.str());
  if (k.dim(1) == 0 || q.dim(1) % k.dim(1) != 0)
    fail("{}: query heads ({}) must be a multiple of key/value heads ({})", op, q.dim(1), k.dim(1));
  expect_rank(op, "lse", lse, 2);
  expect_dim(op, "lse", lse, 0, q.dim(1));
  expect_dim(op, "lse", lse, 1, q.dim(0));
  expect_dtype(lse, DType::f32, fmt::format("{}: lse", op));
  expect_rank(op, "cu_seqlens", cu_seqlens, 1);
  expect_index(op, "cu_seqlens", cu_seqlens);
  if (cu_seqlens.dim(0) < 2) fail("{}: cu_seqlens needs at least 2 entries, got {}", op, cu_seqlens.str());
}

// cu_seqlens must start at 0, be non-decreasing and end at T (checked on the host copy for CPU tensors).
static void check_cu_seqlens_host(const char* op, const Tensor& cu_seqlens, int64_t T, int max_seqlen) {
  const int32_t* c = cu_seqlens.ptr<int32_t>();
  const int64_t S = cu_seqlens.dim(0) - 1;
  if (c[0] != 0 || c[S] != T) fail("{}: cu_seqlens must run from 0 to {} tokens, got {}..{}", op, T, c[0], c[S]);
  for (int64_t s = 0; s < S; ++s) {
    if (c[s + 1] < c[s]) fail("{}: cu_seqlens decreases at entry {}", op, s + 1);
    if (c[s + 1] - c[s] > max_seqlen) fail("{}: sequence {} has {} tokens > max_seqlen {}", op, s, c[s + 1] - c[s], max_seqlen);
  }
}

void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& cu_seqlens, int max_seqlen, float scale, int64_t window) {
  const char* op = "attention_forward";
  check_attention(op, out, lse, q, k, v, cu_seqlens);
  if (on_cuda(op, {&out, &lse, &q, &k, &v, &cu_seqlens}) )
    COTUNE_CUDA_CALL(attention_forward(out, lse, q, k, v, cu_seqlens, max_seqlen, scale, window));
  cpu_f32(op, {&out, &q, &k, &v});
  check_cu_seqlens_host(op, cu_seqlens, q.dim(0), max_seqlen);
  cpu::attention_forward(f32(out), f32(lse), f32(q), f32(k), f32(v), i32(cu_seqlens), cu_seqlens.dim(0) - 1, q.dim(0),
                         q.dim(1), k.dim(1), q.dim(2), scale, window);
}

void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& cu_seqlens, int max_seqlen, float scale, int64_t window) {
  const char* op = "attention_backward";
  check_attention(op, out, lse, q, k, v, cu_seqlens);
  expect_same_shape(op, "dq", dq, q);
  expect_same_shape(op, "dk", dk, k);
  expect_same_shape(op, "dv", dv, v);
  expect_same_shape(op, "dout", dout, q);
  if (on_cuda(op, {&dq, &dk, &dv, &dout, &q, &k, &v, &out, &lse, &cu_seqlens}) )
    COTUNE_CUDA_CALL(attention_backward(dq, dk, dv, dout, q, k, v, out, lse, cu_seqlens, max_seqlen, scale, window));
  cpu_f32(op, {&dq, &dk, &dv, &dout, &q, &k, &v, &out});
  check_cu_seqlens_host(op, cu_seqlens, q.dim(0), max_seqlen);
  cpu::attention_backward(f32(dq), f32(dk), f32(dv), f32(dout), f32(q), f32(k), f32(v), f32(out), f32(lse),
                          i32(cu_seqlens), cu_seqlens.dim(0) - 1, q.dim(0), q.dim(1), k.dim(1), q.dim(2), scale, window);
}

void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up) {
  const char* op = "swiglu_forward";
  expect_same_shape(op, "up", up, gate);
  expect_same_shape(op, "out", out, gate);
  if (on_cuda(op, {&out, &gate, &up})) COTUNE_CUDA_CALL(swiglu_forward(out, gate, up));
  cpu_f32(op, {&out, &gate, &up});
  cpu::swiglu_forward(f32(out), f32(gate), f32(up), gate.numel());
}

void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout, const Tensor& gate, const Tensor& up) {
  const char* op = "swiglu_backward";
  expect_same_shape(op, "dgate", dgate, gate);
  expect_same_shape(op, "dup", dup, gate);
  expect_same_shape(op, "dout", dout, gate);
  expect_same_shape(op, "up", up, gate);
  if (on_cuda(op, {&dgate, &dup, &dout, &gate, &up})) COTUNE_CUDA_CALL(swiglu_backward(dgate, dup, dout, gate, up));
  cpu_f32(op, {&dgate, &dup, &dout, &gate, &up});
  cpu::swiglu_backward(f32(dgate), f32(dup), f32(dout), f32(gate), f32(up), gate.numel());
}

void linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& bias) {
  const char* op = "linear_forward";
  expect_rank(op, "inp", inp, 2);
  expect_rank(op, "weight", weight, 2);
  expect_dim(op, "weight", weight, 1, inp.dim(1));
  expect_rank(op, "out", out, 2);
  expect_dim(op, "out", out, 0, inp.dim(0));
  expect_dim(op, "out", out, 1, weight.dim(0));
  if (bias.data) {
    expect_rank(op, "bias", bias, 1);
    expect_dim(op, "bias", bias, 0, weight.dim(0));
  }
  if (on_cuda(op, {&out, &inp, &weight, &bias})) COTUNE_CUDA_CALL(linear_forward(out, inp, weight, bias));
  cpu_f32(op, {&out, &inp, &weight, &bias});
  cpu::linear_forward(f32(out), f32(inp), f32(weight), f32(bias), inp.dim(0), inp.dim(1), weight.dim(0));
}

void linear_backward_input(const Tensor& dinp, const Tensor& dout, const Tensor& weight, bool accumulate) {
  const char* op = "linear_backward_input";
  expect_rank(op, "dout", dout, 2);
  expect_rank(op, "weight", weight, 2);
  expect_dim(op, "dout", dout, 1, weight.dim(0));
  expect_rank(op, "dinp", dinp, 2);
  expect_dim(op, "dinp", dinp, 0, dout.dim(0));
  expect_dim(op, "dinp", dinp, 1, weight.dim(1));
  if (on_cuda(op, {&dinp, &dout, &weight})) COTUNE_CUDA_CALL(linear_backward_input(dinp, dout, weight, accumulate));
  cpu_f32(op, {&dinp, &dout, &weight});
  cpu::linear_backward_input(f32(dinp), f32(dout), f32(weight), dout.dim(0), weight.dim(1), weight.dim(0), accumulate);
}

static void check_lora(const char* op, const char* out_name, const Tensor& out, const Tensor& xa, const Tensor& inp,
                       const Tensor& A, const Tensor& B) {
  expect_rank(op, "inp", inp, 2);
  expect_rank(op, "A", A, 2);
  expect_rank(op, "B", B, 2);
  expect_dim(op, "A", A, 1, inp.dim(1));
  expect_dim(op, "B", B, 1, A.dim(0));
  expect_rank(op, out_name, out, 2);
  expect_dim(op, out_name, out, 0, inp.dim(0));
  expect_dim(op, out_name, out, 1, B.dim(0));
  expect_rank(op, "xa", xa, 2);
  expect_dim(op, "xa", xa, 0, inp.dim(0));
  expect_dim(op, "xa", xa, 1, A.dim(0));
  expect_dtype(A, DType::f32, fmt::format("{}: A", op));
  expect_dtype(B, DType::f32, fmt::format("{}: B", op));
  expect_dtype(xa, DType::f32, fmt::format("{}: xa", op));
}

void lora_forward(const Tensor& out, const Tensor& xa, const Tensor& inp, const Tensor& A, const Tensor& B,
                  float scale) {
  const char* op = "lora_forward";
  check_lora(op, "out", out, xa, inp, A, B);
  if (on_cuda(op, {&out, &xa, &inp, &A, &B})) COTUNE_CUDA_CALL(lora_forward(out, xa, inp, A, B, scale));
  cpu_f32(op, {&out, &inp});
  cpu::lora_forward(f32(out), f32(xa), f32(inp), f32(A), f32(B), inp.dim(0), inp.dim(1), B.dim(0), A.dim(0), scale);
}

void lora_backward(const Tensor& dinp, const Tensor& dA, const Tensor& dB, const Tensor& g, const Tensor& dout,
                   const Tensor& inp, const Tensor& xa, const Tensor& A, const Tensor& B, float scale) {
  const char* op = "lora_backward";
  check_lora(op, "dout", dout, xa, inp, A, B);
  expect_same_shape(op, "dA", dA, A);
  expect_same_shape(op, "dB", dB, B);
  expect_same_shape(op, "g", g, xa);
  if (dinp.data) expect_same_shape(op, "dinp", dinp, inp);
  if (on_cuda(op, {&dinp, &dA, &dB, &g, &dout, &inp, &xa, &A, &B}))
    COTUNE_CUDA_CALL(lora_backward(dinp, dA, dB, g, dout, inp, xa, A, B, scale));
  cpu_f32(op, {&dinp, &dout, &inp, &dA, &dB, &g});
  cpu::lora_backward(f32(dinp), f32(dA), f32(dB), f32(g), f32(dout), f32(inp), f32(xa), f32(A), f32(B), inp.dim(0),
                     inp.dim(1), B.dim(0), A.dim(0), scale);
}

void linear_forward_residual(const Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& residual,
                             const Tensor& bias) {
  const char* op = "linear_forward_residual";
  expect_rank(op, "inp", inp, 2);
  expect_rank(op, "weight", weight, 2);
  expect_dim(op, "weight", weight, 1, inp.dim(1));
  expect_rank(op, "out", out, 2);
  expect_dim(op, "out", out, 0, inp.dim(0));
  expect_dim(op, "out", out, 1, weight.dim(0));
  if (residual.numel() != out.numel()) fail("{}: residual {} must hold out's {} elements", op, residual.str(), out.str());
  if (bias.data) {
    expect_rank(op, "bias", bias, 1);
    expect_dim(op, "bias", bias, 0, weight.dim(0));
  }
  if (on_cuda(op, {&out, &inp, &weight, &residual, &bias}))
    COTUNE_CUDA_CALL(linear_forward_residual(out, inp, weight, residual, bias));
  cpu_f32(op, {&out, &inp, &weight, &residual, &bias});
  cpu::linear_forward_residual(f32(out), f32(inp), f32(weight), f32(residual), f32(bias), inp.dim(0), inp.dim(1),
                               weight.dim(0));
}

namespace {
// A column block of a [T, ld] matrix with T rows: its columns fit, its rows match.
void check_columns(const char* op, const char* arg, const ColumnBlock& c, int64_t rows) {
  expect_rank(op, arg, c.matrix, 2);
  if (c.col < 0 || c.cols <= 0 || c.col + c.cols > c.matrix.dim(1))
    fail("{}: {} columns [{}, {}) lie outside its matrix {}", op, arg, c.col, c.col + c.cols, c.matrix.str());
  expect_dim(op, arg, c.matrix, 0, rows);
}
float* column0(const ColumnBlock& c) { return f32(c.matrix) + c.col; }
}  // namespace

void lora_xa(const ColumnBlock& xa, const Tensor& inp, const Tensor& A) {
  const char* op = "lora_xa";
  expect_rank(op, "inp", inp, 2);
  check_columns(op, "xa", xa, inp.dim(0));
  expect_rank(op, "A", A, 2);
  expect_dim(op, "A", A, 0, xa.cols);
  expect_dim(op, "A", A, 1, inp.dim(1));
  if (on_cuda(op, {&xa.matrix, &inp, &A})) COTUNE_CUDA_CALL(lora_xa(xa, inp, A));
  cpu_f32(op, {&xa.matrix, &inp, &A});
  cpu::gemm_strided(column0(xa), xa.matrix.dim(1), f32(inp), inp.dim(1), f32(A), A.dim(1), inp.dim(0), xa.cols,
                    inp.dim(1), false, true, 1.0f, 0.0f);
}

void lora_up(const Tensor& out, const ColumnBlock& xa, const Tensor& B, float scale, bool accumulate) {
  const char* op = "lora_up";
  expect_rank(op, "out", out, 2);
  check_columns(op, "xa", xa, out.dim(0));
  expect_rank(op, "B", B, 2);
  expect_dim(op, "B", B, 0, out.dim(1));
  expect_dim(op, "B", B, 1, xa.cols);
  if (on_cuda(op, {&out, &xa.matrix, &B})) COTUNE_CUDA_CALL(lora_up(out, xa, B, scale, accumulate));
  cpu_f32(op, {&out, &xa.matrix, &B});
  cpu::gemm_strided(f32(out), out.dim(1), column0(xa), xa.matrix.dim(1), f32(B), B.dim(1), out.dim(0), out.dim(1),
                    xa.cols, false, true, scale, accumulate ? 1.0f : 0.0f);
}

void lora_grad_b(const Tensor& dB, const ColumnBlock& g, const Tensor& dout, const ColumnBlock& xa, const Tensor& B,
                 float scale) {
  const char* op = "lora_grad_b";
  expect_rank(op, "dout", dout, 2);
  check_columns(op, "xa", xa, dout.dim(0));
  check_columns(op, "g", g, dout.dim(0));
  if (g.cols != xa.cols) fail("{}: g has {} columns, xa {}", op, g.cols, xa.cols);
  expect_rank(op, "B", B, 2);
  expect_dim(op, "B", B, 0, dout.dim(1));
  expect_dim(op, "B", B, 1, xa.cols);
  expect_same_shape(op, "dB", dB, B);
  expect_dtype(dB, DType::f32, fmt::format("{}: dB", op));
  if (on_cuda(op, {&dB, &g.matrix, &dout, &xa.matrix, &B})) COTUNE_CUDA_CALL(lora_grad_b(dB, g, dout, xa, B, scale));
  cpu_f32(op, {&g.matrix, &dout, &xa.matrix, &B});
  const int64_t T = dout.dim(0), OC = dout.dim(1), R = xa.cols;
  // dB[OC,R] += scale * dout^T @ xa;  g[T,R] = scale * dout @ B
  cpu::gemm_strided(f32(dB), R, f32(dout), OC, column0(xa), xa.matrix.dim(1), OC, R, T, true, false, scale, 1.0f);
  cpu::gemm_strided(column0(g), g.matrix.dim(1), f32(dout), OC, f32(B), R, T, R, OC, false, false, scale, 0.0f);
}

void lora_grad_a(const Tensor& dA, const Tensor& dinp, const ColumnBlock& g, const Tensor& inp, const Tensor& A,
                 bool accumulate_dinp) {
  const char* op = "lora_grad_a";
  expect_rank(op, "inp", inp, 2);
  check_columns(op, "g", g, inp.dim(0));
  expect_rank(op, "A", A, 2);
  expect_dim(op, "A", A, 0, g.cols);
  expect_dim(op, "A", A, 1, inp.dim(1));
  expect_same_shape(op, "dA", dA, A);
  expect_dtype(dA, DType::f32, fmt::format("{}: dA", op));
  if (dinp.data) expect_same_shape(op, "dinp", dinp, inp);
  if (on_cuda(op, {&dA, &dinp, &g.matrix, &inp, &A})) COTUNE_CUDA_CALL(lora_grad_a(dA, dinp, g, inp, A, accumulate_dinp));
  cpu_f32(op, {&dinp, &g.matrix, &inp, &A});
  const int64_t T = inp.dim(0), IC = inp.dim(1), N = g.cols;
  // dA[N,IC] += g^T @ inp;  dinp[T,IC] (+)= g @ A
  cpu::gemm_strided(f32(dA), IC, column0(g), g.matrix.dim(1), f32(inp), IC, N, IC, T, true, false, 1.0f, 1.0f);
  if (dinp.data)
    cpu::gemm_strided(f32(dinp), IC, column0(g), g.matrix.dim(1), f32(A), IC, T, IC, N, false, false, 1.0f,
                      accumulate_dinp ? 1.0f : 0.0f);
}

void dropout_forward(const Tensor& out, const Tensor& inp, float p, uint64_t seed, uint64_t offset) {
  const char* op = "dropout_forward";
  expect_same_shape(op, "out", out, inp);
  if (!(p >= 0.0f && p < 1.0f)) fail("dropout: probability must be in [0, 1), got {}", p);
  if (on_cuda(op, {&out, &inp})) COTUNE_CUDA_CALL(dropout_forward(out, inp, p, seed, offset));
  cpu_f32(op, {&out, &inp});
  cpu::dropout(f32(out), f32(inp), inp.numel(), p, seed, offset);
}

void dropout_backward(const Tensor& dinp, const Tensor& dout, float p, uint64_t seed, uint64_t offset) {
  const char* op = "dropout_backward";
  expect_same_shape(op, "dinp", dinp, dout);
  if (on_cuda(op, {&dinp, &dout})) COTUNE_CUDA_CALL(dropout_backward(dinp, dout, p, seed, offset));
  cpu_f32(op, {&dinp, &dout});
  cpu::dropout(f32(dinp), f32(dout), dout.numel(), p, seed, offset);  // the same mask and scale
}

void fill_normal(const Tensor& out, uint64_t key, float std) {
  const char* op = "fill_normal";
  if (on_cuda(op, {&out})) COTUNE_CUDA_CALL(fill_normal(out, key, std));
  if (out.dtype == DType::f32) return cpu::fill_normal(f32(out), out.numel(), key, std);
  std::vector<float> tmp(static_cast<size_t>(out.numel()));
  cpu::fill_normal(tmp.data(), out.numel(), key, std);
  copy(out, Tensor(tmp.data(), DType::f32, out.shape));
}

void add(const Tensor& out, const Tensor& a, const Tensor& b) {
  const char* op = "add";
  expect_same_shape(op, "b", b, a);
  expect_same_shape(op, "out", out, a);
  if (on_cuda(op, {&out, &a, &b})) COTUNE_CUDA_CALL(add(out, a, b));
  cpu_f32(op, {&out, &a, &b});
  cpu::add(f32(out), f32(a), f32(b), a.numel());
}

void zero(const Tensor& t) {
  if (!t.data) return;
  if (t.device == Device::cuda) COTUNE_CUDA_CALL(zero(t));
  std::memset(t.data, 0, t.nbytes());
}

void copy(const Tensor& dst, const Tensor& src) {
  if (!(dst.shape == src.shape)) fail("copy: shapes differ ({} vs {})", dst.str(), src.str());
  if (dst.device == Device::cuda || src.device == Device::cuda) {
    if (dst.device == src.device) COTUNE_CUDA_CALL(copy(dst, src));
    if (dst.dtype != src.dtype) fail("copy between devices needs equal dtypes ({} -> {})", src.str(), dst.str());
    copy_bytes(dst, src);
    return;
  }
  const int64_t n = src.numel();
  if (dst.dtype == src.dtype) {
    copy_bytes(dst, src);
  } else if (dst.dtype == DType::f32 && (src.dtype == DType::bf16 || src.dtype == DType::f16)) {
    const uint16_t* s = src.ptr<uint16_t>();
    float* d = dst.ptr<float>();
    const bool bf = src.dtype == DType::bf16;
    for (int64_t i = 0; i < n; ++i) d[i] = bf ? bf16_to_f32(s[i]) : f16_to_f32(s[i]);
  } else if (src.dtype == DType::f32 && (dst.dtype == DType::bf16 || dst.dtype == DType::f16)) {
    const float* s = src.ptr<float>();
    uint16_t* d = dst.ptr<uint16_t>();
    const bool bf = dst.dtype == DType::bf16;
    for (int64_t i = 0; i < n; ++i) d[i] = bf ? f32_to_bf16(s[i]) : f32_to_f16(s[i]);
  } else {
    fail("copy: no conversion from {} to {}", src.str(), dst.str());
  }
}

void cross_entropy_forward(const Tensor& losses, const Tensor& logits, const Tensor& targets) {
  const char* op = "cross_entropy_forward";
  expect_rank(op, "logits", logits, 2);
  expect_index(op, "targets", targets);
  expect_dim(op, "targets", targets, 0, logits.dim(0));
  expect_dim(op, "losses", losses, 0, logits.dim(0));
  if (on_cuda(op, {&losses, &logits, &targets})) COTUNE_CUDA_CALL(cross_entropy_forward(losses, logits, targets));
  cpu_f32(op, {&losses, &logits});
  const int32_t* tg = i32(targets);
  for (int64_t t = 0; t < targets.dim(0); ++t)
    if (tg[t] >= logits.dim(1)) fail("{}: target {} at position {} is outside the vocabulary", op, tg[t], t);
  cpu::cross_entropy_forward(f32(losses), f32(logits), tg, logits.dim(0), logits.dim(1));
}

void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& targets, float grad_scale) {
  const char* op = "cross_entropy_backward";
  expect_rank(op, "logits", logits, 2);
  expect_same_shape(op, "dlogits", dlogits, logits);
  expect_index(op, "targets", targets);
  expect_dim(op, "targets", targets, 0, logits.dim(0));
  if (on_cuda(op, {&dlogits, &logits, &targets}))
    COTUNE_CUDA_CALL(cross_entropy_backward(dlogits, logits, targets, grad_scale));
  cpu_f32(op, {&dlogits, &logits});
  cpu::cross_entropy_backward(f32(dlogits), f32(logits), i32(targets), logits.dim(0), logits.dim(1), grad_scale);
}

namespace {
// The checks of lm_head_cross_entropy (both forms); returns whether the tensors are on CUDA.
bool check_lm_head(const char* op, const Tensor& losses, const Tensor& correct, const Tensor& dhidden,
                   const Tensor& hidden, const Tensor& weight, const Tensor& targets, const Tensor& workspace,
                   int64_t chunk) {
  expect_rank(op, "hidden", hidden, 2);
  expect_rank(op, "weight", weight, 2);
  expect_dim(op, "weight", weight, 1, hidden.dim(1));
  expect_index(op, "targets", targets);
  expect_dim(op, "targets", targets, 0, hidden.dim(0));
  expect_dim(op, "losses", losses, 0, hidden.dim(0));
  expect_dtype(losses, DType::f32, fmt::format("{}: losses", op));
  if (correct.data) {
    expect_index(op, "correct", correct);
    expect_dim(op, "correct", correct, 0, hidden.dim(0));
  }
  if (dhidden.data) expect_same_shape(op, "dhidden", dhidden, hidden);
  if (chunk <= 0) fail("{}: chunk must be positive, got {}", op, chunk);
  if (workspace.numel() < std::min<int64_t>(chunk, hidden.dim(0)) * weight.dim(0))
    fail("{}: workspace {} smaller than chunk {} x vocabulary {}", op, workspace.str(), chunk, weight.dim(0));
  expect_dtype(workspace, DType::f32, fmt::format("{}: workspace", op));
  if (on_cuda(op, {&losses, &correct, &dhidden, &hidden, &weight, &targets, &workspace})) return true;
  cpu_f32(op, {&dhidden, &hidden, &weight});
  const int32_t* tg = i32(targets);
  for (int64_t t = 0; t < targets.dim(0); ++t)
    if (tg[t] >= weight.dim(0)) fail("{}: target {} at position {} is outside the vocabulary", op, tg[t], t);
  return false;
}
}  // namespace

void lm_head_cross_entropy(const Tensor& losses, const Tensor& correct, const Tensor& dhidden, const Tensor& hidden,
                           const Tensor& weight, const Tensor& targets, float grad_scale, const Tensor& workspace,
                           int64_t chunk) {
  if (check_lm_head("lm_head_cross_entropy", losses, correct, dhidden, hidden, weight, targets, workspace, chunk))
    COTUNE_CUDA_CALL(
        lm_head_cross_entropy(losses, correct, dhidden, hidden, weight, targets, grad_scale, workspace, chunk));
  cpu::lm_head_cross_entropy(f32(losses), correct.data ? i32(correct) : nullptr, f32(dhidden), f32(hidden),
                             f32(weight), i32(targets), hidden.dim(0), hidden.dim(1), weight.dim(0), grad_scale,
                             f32(workspace), chunk);
}

void lm_head_cross_entropy_device_scale(const Tensor& losses, const Tensor& correct, const Tensor& dhidden,
                                        const Tensor& hidden, const Tensor& weight, const Tensor& targets,
                                        const Tensor& scalars, const Tensor& workspace, int64_t chunk) {
  const char* op = "lm_head_cross_entropy_device_scale";
  expect_dtype(scalars, DType::f32, fmt::format("{}: scalars", op));
  if (scalars.numel() < 2) fail("{}: scalars must hold {{scale, 0}}, got {}", op, scalars.str());
  if (scalars.device != hidden.device) fail("{}: scalars {} are not on hidden's device", op, scalars.str());
  if (check_lm_head(op, losses, correct, dhidden, hidden, weight, targets, workspace, chunk))
    COTUNE_CUDA_CALL(lm_head_cross_entropy_device_scale(losses, correct, dhidden, hidden, weight, targets, scalars,
                                                        workspace, chunk));
  cpu::lm_head_cross_entropy(f32(losses), correct.data ? i32(correct) : nullptr, f32(dhidden), f32(hidden),
                             f32(weight), i32(targets), hidden.dim(0), hidden.dim(1), weight.dim(0),
                             scalars.ptr<float>()[0], f32(workspace), chunk);
}

}  // namespace cotune::kernels
