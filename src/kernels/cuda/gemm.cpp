// GEMMs through cuBLASLt: matmul, linear layers and the LoRA branch (bf16 operands, fp32 accumulation).
//
// Row-major to cuBLASLt's column-major: a row-major X[r,c] is a column-major X^T[c,r] with the same leading
// dimension, so D = op(A) op(B) (row-major) is computed as D^T = op(B)^T op(A)^T (column-major), i.e. the
// operands are passed swapped and M/N exchanged.
//
// LoRA with bf16 activations and f32 A/B: the small LoRA matrices (and the [T,R] intermediates xa, g) are
// rounded to bf16 and multiplied with bf16 tensor-core GEMMs accumulating in fp32; dA, dB stay fp32 (the
// f32-API ops also return xa and g in f32, holding the bf16 values the GEMMs used). The training runner keeps
// bf16 copies of A/B (model/lora.h) and calls the bf16-operand entry points of gemm.h directly. This is what PEFT computes under bf16 autocast, at the speed of bf16 GEMMs; the
// rounding of the operands costs ~2^-9 relative per element, below the bf16 activations' own error.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <utility>

#include "kernels/cuda/context.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/internal.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/gemm.h"

namespace cotune::kernels::cuda {

namespace {

cudaDataType_t lt_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
    default: fail("GEMM (CUDA): unsupported dtype {}", dtype_name(t));
  }
}

uint32_t alignment(const void* p, int64_t ld, size_t elem) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p) | static_cast<uintptr_t>(static_cast<size_t>(ld) * elem);
  uint32_t al = 256;
  while (al > 1 && (a & (al - 1))) al >>= 1;
  return al;
}

struct AlgoKey {
  int64_t m, n, k, lda, ldb, ldd;
  uint32_t al_a, al_b, al_d;
  uint8_t ta, tb, at, bt, dt, bias, beta0, dev_scalars;
  bool operator==(const AlgoKey& o) const { return std::memcmp(this, &o, sizeof(AlgoKey)) == 0; }
};
struct AlgoKeyHash {
  size_t operator()(const AlgoKey& k) const {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(&k);
    size_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof(AlgoKey); ++i) h = (h ^ p[i]) * 1099511628211ull;
    return h;
  }
};

struct LtDesc {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  LtDesc() = default;
  LtDesc(const LtDesc&) = delete;
  LtDesc& operator=(const LtDesc&) = delete;
  ~LtDesc() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// A planned GEMM: descriptors and the algorithm cuBLASLt's heuristic chose. Creating descriptors and querying
// the heuristic cost more host time than a small GEMM takes on the GPU, so each problem shape is planned once
// per thread and reused (only the bias pointer is set per call).
struct Plan {
  LtDesc desc;
  cublasLtMatmulAlgo_t algo{};
};
thread_local std::unordered_map<AlgoKey, std::unique_ptr<Plan>, AlgoKeyHash> tl_plans;
thread_local GemmPlanStats tl_plan_stats;

}  // namespace

GemmPlanStats gemm_plan_stats() { return tl_plan_stats; }

void gemm(void* d, DType d_type, const void* a, DType a_type, const void* b, DType b_type, int64_t M, int64_t N,
          int64_t K, bool trans_a, bool trans_b, int64_t lda, int64_t ldb, int64_t ldd, float alpha, float beta,
          const void* bias, const void* c, const float* scalars) {
  if (M == 0 || N == 0) return;
  if (scalars && K == 0) fail("matmul (CUDA): device alpha/beta need K > 0");
  if (c && c != d && (K == 0 || alignment(c, ldd, dtype_size(d_type)) < alignment(d, ldd, dtype_size(d_type))))
    fail("matmul (CUDA): a separate C needs K > 0 and D's alignment");
  if (K == 0) {
    launch_scale_matrix(d, d_type == DType::bf16, M, N, ldd, beta);
    return;
  }
  const bool bf = a_type == DType::bf16 && b_type == DType::bf16 && (d_type == DType::bf16 || d_type == DType::f32);
  const bool f32 = a_type == DType::f32 && b_type == DType::f32 && d_type == DType::f32;
  if (!bf && !f32)
    fail("matmul (CUDA): unsupported dtypes a {} b {} out {} (bf16 x bf16 -> bf16|f32, or f32 x f32 -> f32)",
         dtype_name(a_type), dtype_name(b_type), dtype_name(d_type));
  if (bias && d_type != DType::bf16) fail("linear (CUDA): a bias needs a bf16 output");

  // Column-major view: D^T[N,M] = opA(B_stored) @ opB(A_stored).
  const int64_t m = N, n = M, k = K;
  const size_t ea = dtype_size(a_type), eb = dtype_size(b_type), ed = dtype_size(d_type);
  AlgoKey key{};
  std::memset(&key, 0, sizeof(key));
  key.m = m;
  key.n = n;
  key.k = k;
  key.lda = lda;
  key.ldb = ldb;
  key.ldd = ldd;
  key.al_a = alignment(b, ldb, eb);
  key.al_b = alignment(a, lda, ea);
  key.al_d = alignment(d, ldd, ed);
  key.ta = trans_a;
  key.tb = trans_b;
  key.at = static_cast<uint8_t>(a_type);
  key.bt = static_cast<uint8_t>(b_type);
  key.dt = static_cast<uint8_t>(d_type);
  key.bias = bias != nullptr;
  key.beta0 = scalars ? 0 : beta == 0.0f;
  key.dev_scalars = scalars != nullptr;

  auto it = tl_plans.find(key);
  if (it == tl_plans.end()) {
    const auto t0 = std::chrono::steady_clock::now();
    auto plan = std::make_unique<Plan>();
    LtDesc& desc = plan->desc;
    check(cublasLtMatmulDescCreate(&desc.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    cublasOperation_t opa = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // the first column-major operand is B
    cublasOperation_t opb = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    check(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)), "set TRANSA");
    check(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)), "set TRANSB");
    if (scalars) {
      cublasLtPointerMode_t pm = CUBLASLT_POINTER_MODE_DEVICE;
      check(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_POINTER_MODE, &pm, sizeof(pm)),
            "set POINTER_MODE");
    }
    if (bias) {
      cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
      cudaDataType_t bt = CUDA_R_16BF;
      check(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)), "set EPILOGUE");
      check(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
            "set BIAS_POINTER");
      check(cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)),
            "set BIAS_DATA_TYPE");
    }
    // Stored shapes (column-major rows x cols): B_stored is [K,N] row-major (or [N,K] when trans_b).
    check(cublasLtMatrixLayoutCreate(&desc.a, lt_type(b_type), static_cast<uint64_t>(trans_b ? k : m),
                                     static_cast<uint64_t>(trans_b ? m : k), ldb),
          "cublasLtMatrixLayoutCreate(B)");
    check(cublasLtMatrixLayoutCreate(&desc.b, lt_type(a_type), static_cast<uint64_t>(trans_a ? n : k),
                                     static_cast<uint64_t>(trans_a ? k : n), lda),
          "cublasLtMatrixLayoutCreate(A)");
    check(cublasLtMatrixLayoutCreate(&desc.d, lt_type(d_type), static_cast<uint64_t>(m), static_cast<uint64_t>(n),
                                     ldd),
          "cublasLtMatrixLayoutCreate(D)");
    check(cublasLtMatmulPreferenceCreate(&desc.pref), "cublasLtMatmulPreferenceCreate");
    size_t ws = cublaslt_workspace_bytes();
    check(cublasLtMatmulPreferenceSetAttribute(desc.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
          "set MAX_WORKSPACE_BYTES");
    const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.al_a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.al_b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.al_d},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.al_d}};
    for (const auto& [attr, value] : aligns)
      check(cublasLtMatmulPreferenceSetAttribute(desc.pref, attr, &value, sizeof(uint32_t)), "set MIN_ALIGNMENT");
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    check(cublasLtMatmulAlgoGetHeuristic(cublaslt(), desc.op, desc.a, desc.b, desc.d, desc.d, desc.pref, 1, &result,
                                         &found),
          "cublasLtMatmulAlgoGetHeuristic");
    if (found == 0)
      fail("matmul (CUDA): cuBLASLt has no algorithm for [{}x{}] @ [{}x{}] ({} x {} -> {}, alignments {}/{}/{})", M, K,
           K, N, dtype_name(a_type), dtype_name(b_type), dtype_name(d_type), key.al_b, key.al_a, key.al_d);
    plan->algo = result.algo;
    it = tl_plans.emplace(key, std::move(plan)).first;
    ++tl_plan_stats.plans;
    tl_plan_stats.host_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } else if (bias) {
    check(cublasLtMatmulDescSetAttribute(it->second->desc.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
          "set BIAS_POINTER");
  }
  const LtDesc& desc = it->second->desc;
  const void* alpha_p = scalars ? static_cast<const void*>(scalars) : &alpha;
  const void* beta_p = scalars ? static_cast<const void*>(scalars + 1) : &beta;
  check(cublasLtMatmul(cublaslt(), desc.op, alpha_p, b, desc.a, a, desc.b, beta_p, c ? c : d, desc.d, d, desc.d,
                       &it->second->algo, cublaslt_workspace(), cublaslt_workspace_bytes(), stream()),
        "cublasLtMatmul");
}

// ---- ops.h entry points ------------------------------------------------------------------------------

void matmul(const Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha, float beta) {
  const int64_t M = out.dim(0), N = out.dim(1), K = trans_a ? a.dim(0) : a.dim(1);
  gemm(out.data, out.dtype, a.data, a.dtype, b.data, b.dtype, M, N, K, trans_a, trans_b, a.dim(1), b.dim(1), N, alpha,
       beta);
}

void linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& bias) {
  const char* op = "linear_forward";
  need_dtype(inp, DType::bf16, op, "inp");
  need_dtype(weight, DType::bf16, op, "weight");
  need_dtype(out, DType::bf16, op, "out");
  if (bias.data) need_dtype(bias, DType::bf16, op, "bias");
  const int64_t T = inp.dim(0), IC = inp.dim(1), OC = weight.dim(0);
  gemm(out.data, DType::bf16, inp.data, DType::bf16, weight.data, DType::bf16, T, OC, IC, false, true, IC, IC, OC, 1.0f,
       0.0f, bias.data);
}

void linear_backward_input(const Tensor& dinp, const Tensor& dout, const Tensor& weight, bool accumulate) {
  const char* op = "linear_backward_input";
  need_dtype(dinp, DType::bf16, op, "dinp");
  need_dtype(dout, DType::bf16, op, "dout");
  need_dtype(weight, DType::bf16, op, "weight");
  const int64_t T = dout.dim(0), OC = weight.dim(0), IC = weight.dim(1);
  gemm(dinp.data, DType::bf16, dout.data, DType::bf16, weight.data, DType::bf16, T, IC, OC, false, false, OC, IC, IC,
       1.0f, accumulate ? 1.0f : 0.0f);
}

void linear_forward_residual(const Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& residual,
                             const Tensor& bias) {
  const char* op = "linear_forward_residual";
  need_dtype(inp, DType::bf16, op, "inp");
  need_dtype(weight, DType::bf16, op, "weight");
  need_dtype(out, DType::bf16, op, "out");
  need_dtype(residual, DType::bf16, op, "residual");
  if (bias.data) need_dtype(bias, DType::bf16, op, "bias");
  const int64_t T = inp.dim(0), IC = inp.dim(1), OC = weight.dim(0);
  if (weight.dim(1) != IC || out.dim(0) != T || out.dim(1) != OC || residual.numel() != out.numel())
    fail("{}: shapes disagree: out {}, inp {}, weight {}, residual {}", op, out.str(), inp.str(), weight.str(),
         residual.str());
  gemm(out.data, DType::bf16, inp.data, DType::bf16, weight.data, DType::bf16, T, OC, IC, false, true, IC, IC, OC, 1.0f,
       1.0f, bias.data, residual.data);
}

// ---- LoRA on bf16 operands (gemm.h) -----------------------------------------------------------------------
// All roundings to bf16 happen in the GEMM epilogues (fp32 accumulator -> bf16, round to nearest even), i.e.
// exactly where the f32-API ops below round their f32 intermediates.

void lora_xa(void* xa, int64_t ld_xa, const Tensor& inp, const void* A, int64_t N) {
  need_dtype(inp, DType::bf16, "lora_xa", "inp");
  const int64_t T = inp.dim(0), IC = inp.dim(1);
  gemm(xa, DType::bf16, inp.data, DType::bf16, A, DType::bf16, T, N, IC, false, true, IC, IC, ld_xa, 1.0f, 0.0f);
}

void lora_up(const Tensor& out, const void* xa, int64_t ld_xa, const void* B, int64_t R, float scale,
             bool accumulate) {
  need_dtype(out, DType::bf16, "lora_up", "out");
  const int64_t T = out.dim(0), OC = out.dim(1);
  gemm(out.data, DType::bf16, xa, DType::bf16, B, DType::bf16, T, OC, R, false, true, ld_xa, R, OC, scale,
       accumulate ? 1.0f : 0.0f);
}

void lora_grad_b(float* dB, void* g, int64_t ld_g, const Tensor& dout, const void* xa, int64_t ld_xa, const void* B,
                 int64_t R, float scale) {
  need_dtype(dout, DType::bf16, "lora_grad_b", "dout");
  const int64_t T = dout.dim(0), OC = dout.dim(1);
  // dB[OC,R] += scale * dout^T @ xa
  gemm(dB, DType::f32, dout.data, DType::bf16, xa, DType::bf16, OC, R, T, true, false, OC, ld_xa, R, scale, 1.0f);
  // g[T,R] = scale * dout @ B
  gemm(g, DType::bf16, dout.data, DType::bf16, B, DType::bf16, T, R, OC, false, false, OC, R, ld_g, scale, 0.0f);
}

void lora_grad_a(float* dA, const Tensor& dinp, const void* g, int64_t ld_g, int64_t N, const Tensor& inp,
                 const void* A, bool accumulate_dinp) {
  need_dtype(inp, DType::bf16, "lora_grad_a", "inp");
  const int64_t T = inp.dim(0), IC = inp.dim(1);
  // dA[N,IC] += g^T @ inp
  gemm(dA, DType::f32, g, DType::bf16, inp.data, DType::bf16, N, IC, T, true, false, ld_g, IC, IC, 1.0f, 1.0f);
  if (dinp.data) {
    need_dtype(dinp, DType::bf16, "lora_grad_a", "dinp");
    // dinp[T,IC] += g @ A
    gemm(dinp.data, DType::bf16, g, DType::bf16, A, DType::bf16, T, IC, N, false, false, ld_g, IC, IC, 1.0f,
         accumulate_dinp ? 1.0f : 0.0f);
  }
}

// ---- the ColumnBlock forms of ops.h: the same GEMMs on a block of columns of a wider xa / g matrix ------------

namespace {
void* first_column(const ColumnBlock& c, const char* op, const char* arg) {
  need_dtype(c.matrix, DType::bf16, op, arg);
  return static_cast<uint16_t*>(c.matrix.data) + c.col;
}
}  // namespace

void lora_xa(const ColumnBlock& xa, const Tensor& inp, const Tensor& A) {
  need_dtype(A, DType::bf16, "lora_xa", "A");
  lora_xa(first_column(xa, "lora_xa", "xa"), xa.matrix.dim(1), inp, A.data, xa.cols);
}

void lora_up(const Tensor& out, const ColumnBlock& xa, const Tensor& B, float scale, bool accumulate) {
  need_dtype(B, DType::bf16, "lora_up", "B");
  lora_up(out, first_column(xa, "lora_up", "xa"), xa.matrix.dim(1), B.data, xa.cols, scale, accumulate);
}

void lora_grad_b(const Tensor& dB, const ColumnBlock& g, const Tensor& dout, const ColumnBlock& xa, const Tensor& B,
                 float scale) {
  need_dtype(B, DType::bf16, "lora_grad_b", "B");
  lora_grad_b(dB.ptr<float>(), first_column(g, "lora_grad_b", "g"), g.matrix.dim(1), dout,
              first_column(xa, "lora_grad_b", "xa"), xa.matrix.dim(1), B.data, xa.cols, scale);
}

void lora_grad_a(const Tensor& dA, const Tensor& dinp, const ColumnBlock& g, const Tensor& inp, const Tensor& A,
                 bool accumulate_dinp) {
  need_dtype(A, DType::bf16, "lora_grad_a", "A");
  lora_grad_a(dA.ptr<float>(), dinp, first_column(g, "lora_grad_a", "g"), g.matrix.dim(1), g.cols, inp, A.data,
              accumulate_dinp);
}

// ---- LoRA with f32 A/B (ops.h): bf16 copies in scratch, then the bf16-operand GEMMs above ----------------

namespace {
size_t align256(size_t n) { return (n + 255) / 256 * 256; }
}  // namespace

void lora_forward(const Tensor& out, const Tensor& xa, const Tensor& inp, const Tensor& A, const Tensor& B,
                  float scale) {
  const char* op = "lora_forward";
  need_dtype(inp, DType::bf16, op, "inp");
  need_dtype(out, DType::bf16, op, "out");
  const int64_t T = inp.dim(0), IC = inp.dim(1), R = A.dim(0), OC = B.dim(0);
  // scratch: A bf16 [R,IC] | B bf16 [OC,R] | xa bf16 [T,R]
  const size_t sa = align256(static_cast<size_t>(R * IC) * 2), sb = align256(static_cast<size_t>(OC * R) * 2);
  const size_t sx = align256(static_cast<size_t>(T * R) * 2);
  char* s = static_cast<char*>(scratch(sa + sb + sx));
  void *a16 = s, *b16 = s + sa, *xa16 = s + sa + sb;
  ConvertBatch cb;
  cb.dst[0] = a16;
  cb.src[0] = A.ptr<float>();
  cb.n[0] = R * IC;
  cb.dst[1] = b16;
  cb.src[1] = B.ptr<float>();
  cb.n[1] = OC * R;
  launch_convert_batch_f32_to_bf16(cb);
  lora_xa(xa16, R, inp, a16, R);
  launch_convert_bf16_to_f32(xa.ptr<float>(), xa16, T * R);  // the saved xa: the values the GEMMs use
  lora_up(out, xa16, R, b16, R, scale);
}

void lora_backward(const Tensor& dinp, const Tensor& dA, const Tensor& dB, const Tensor& g, const Tensor& dout,
                   const Tensor& inp, const Tensor& xa, const Tensor& A, const Tensor& B, float scale) {
  const char* op = "lora_backward";
  need_dtype(inp, DType::bf16, op, "inp");
  need_dtype(dout, DType::bf16, op, "dout");
  need_dtype(dA, DType::f32, op, "dA");
  need_dtype(dB, DType::f32, op, "dB");
  need_dtype(g, DType::f32, op, "g");
  if (dinp.data) need_dtype(dinp, DType::bf16, op, "dinp");
  const int64_t T = inp.dim(0), IC = inp.dim(1), R = A.dim(0), OC = B.dim(0);
  // scratch: A bf16 [R,IC] | B bf16 [OC,R] | xa bf16 [T,R] | g bf16 [T,R]
  const size_t sa = align256(static_cast<size_t>(R * IC) * 2), sb = align256(static_cast<size_t>(OC * R) * 2);
  const size_t sx = align256(static_cast<size_t>(T * R) * 2);
  char* s = static_cast<char*>(scratch(sa + sb + 2 * sx));
  void *a16 = s, *b16 = s + sa, *xa16 = s + sa + sb, *g16 = s + sa + sb + sx;
  ConvertBatch cb;
  cb.dst[0] = b16;
  cb.src[0] = B.ptr<float>();
  cb.n[0] = OC * R;
  cb.dst[1] = xa16;
  cb.src[1] = xa.ptr<float>();
  cb.n[1] = T * R;
  if (dinp.data) {
    cb.dst[2] = a16;
    cb.src[2] = A.ptr<float>();
    cb.n[2] = R * IC;
  }
  launch_convert_batch_f32_to_bf16(cb);
  lora_grad_b(dB.ptr<float>(), g16, R, dout, xa16, R, b16, R, scale);
  launch_convert_bf16_to_f32(g.ptr<float>(), g16, T * R);
  lora_grad_a(dA.ptr<float>(), dinp, g16, R, R, inp, a16);
}

void lm_head_ce_chunks(const Tensor& losses, const Tensor& correct, const Tensor& dhidden, const Tensor& hidden,
                       const Tensor& weight, const Tensor& targets, float ce_scale, const float* scalars,
                       const Tensor& workspace, int64_t chunk) {
  const char* op = "lm_head_cross_entropy";
  need_dtype(hidden, DType::bf16, op, "hidden");
  need_dtype(weight, DType::bf16, op, "weight");
  need_dtype(workspace, DType::f32, op, "workspace");
  if (dhidden.data) need_dtype(dhidden, DType::bf16, op, "dhidden");
  const int64_t T = hidden.dim(0), C = hidden.dim(1), V = weight.dim(0);
  if (chunk <= 0 || workspace.numel() < std::min(chunk, T) * V)
    fail("{}: the workspace {} holds fewer than {} rows of {} logits", op, workspace.str(), std::min(chunk, T), V);
  float* ws = workspace.ptr<float>();
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t n = std::min(chunk, T - t0);
    const uint16_t* h = static_cast<const uint16_t*>(hidden.data) + t0 * C;
    gemm(ws, DType::f32, h, DType::bf16, weight.data, DType::bf16, n, V, C, false, true, C, C, V, 1.0f, 0.0f);
    void* grad = dhidden.data ? static_cast<void*>(ws) : nullptr;  // bf16 rows written over the f32 logits in place
    launch_ce_rows(losses.ptr<float>() + t0, correct.data ? correct.ptr<int32_t>() + t0 : nullptr, grad, true, 2 * V,
                   ws, false, V, targets.ptr<int32_t>() + t0, n, V, ce_scale);
    if (grad)
      gemm(static_cast<uint16_t*>(dhidden.data) + t0 * C, DType::bf16, grad, DType::bf16, weight.data, DType::bf16, n,
           C, V, false, false, 2 * V, C, C, 1.0f, 0.0f, nullptr, nullptr, scalars);
  }
}

void lm_head_cross_entropy_device_scale(const Tensor& losses, const Tensor& correct, const Tensor& dhidden,
                                        const Tensor& hidden, const Tensor& weight, const Tensor& targets,
                                        const Tensor& scalars, const Tensor& workspace, int64_t chunk) {
  lm_head_ce_chunks(losses, correct, dhidden, hidden, weight, targets, 1.0f, scalars.ptr<float>(), workspace, chunk);
}

}  // namespace cotune::kernels::cuda
