// Every numeric op of the decoder forward and backward, as a free function over Tensors.
// One dispatch point: each function checks shapes and dtypes, then runs the CPU reference
// (src/kernels/cpu, fp32 everywhere) or the CUDA kernel (src/kernels/cuda, bf16 storage, fp32
// accumulation) according to the tensors' device. All tensors of one call live on one device.
//
// Shape letters: T = tokens of a packed batch (several sequences concatenated), S = sequences,
// C = hidden size, H = query heads, KV = key/value heads (H % KV == 0), D = head dim, I = intermediate
// size, V = vocabulary, R = LoRA rank, IC/OC = a linear layer's input/output features.
//
// Dtypes: on CPU every float tensor is f32. On CUDA, "act" tensors (activations, their gradients,
// frozen weights) are bf16 and "f32" tensors are fp32 (LoRA weights and gradients, rstd, lse, losses).
// Index tensors (ids, positions, targets, cu_seqlens) are i32 on both.
//
// Backward functions write their outputs (=) unless the argument is marked "accumulates" (+=), which
// lets the caller fuse residual and multi-branch gradient sums without extra passes.
#pragma once
#include <cstdint>

#include "kernels/rope.h"
#include "tensor/tensor.h"

namespace cotune::kernels {

// ---- GEMM ----------------------------------------------------------------------------------------
// out[M,N] = alpha * op(a) @ op(b) + beta * out, op = transpose when the flag is set.
// a is [M,K] (or [K,M] when trans_a), b is [K,N] (or [N,K] when trans_b). fp32 accumulation.
void matmul(const Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha = 1.0f,
            float beta = 0.0f);

// ---- embedding -----------------------------------------------------------------------------------
// out[T,C] = table[ids[t], :]. ids i32 [T] in [0, V); table act [V,C]. (Frozen: no backward needed.)
void embedding_forward(const Tensor& out, const Tensor& ids, const Tensor& table);

// ---- RMSNorm (HF Qwen2RMSNorm) -------------------------------------------------------------------
// rstd[T] (f32) = 1 / sqrt(mean(inp[t]^2) + eps); out[T,C] = weight * round_act(inp * rstd).
// The normalised value is rounded to the activation dtype before the weight multiply, as HF does.
void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& inp, const Tensor& weight, float eps);
// dinp[T,C] (accumulates if `accumulate`) from dout[T,C]; weight is frozen (no weight gradient).
void rmsnorm_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp, const Tensor& weight,
                      const Tensor& rstd, bool accumulate);

// ---- rotary embedding (HF convention: rotate halves) ---------------------------------------------
// In place on x[T,NH,D] for any head count NH: x = x*cos + rotate_half(x)*sin, with
// inv_freq = rope_inv_freq(D, rope) (kernels/rope.h: 1 / theta^(2j/D), optionally scaled), angle = positions[t] *
// inv_freq[j], cos/sin in fp32 rounded to the activation dtype (HF builds its tables in the activation dtype).
// positions i32 [T]. A plain float converts to unscaled RoPE of that base.
void rope_forward(const Tensor& x, const Tensor& positions, const RopeSpec& rope);
// In place on dx[T,NH,D]: the transpose of the rotation (rotation by -angle).
void rope_backward(const Tensor& dx, const Tensor& positions, const RopeSpec& rope);

// ---- causal grouped-query attention over packed variable-length sequences -----------------------
// q[T,H,D], k[T,KV,D], v[T,KV,D] -> out[T,H,D]; lse[H,T] (f32) = log-sum-exp of each query's scaled
// scores (saved for backward). Sequence s spans tokens [cu_seqlens[s], cu_seqlens[s+1]); a query attends
// to keys of its own sequence at positions <= its own (no attention across sequence boundaries).
// cu_seqlens i32 [S+1], cu_seqlens[0] = 0, cu_seqlens[S] = T. scale = 1/sqrt(D) normally.
// window > 0: sliding-window attention (Mistral): a query sees only the `window` newest keys of its sequence, itself
// included. On CUDA a window that matters (max_seqlen > window) runs the simple kernels (exact, slower than flash);
// otherwise the window changes nothing and flash runs as usual.
void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& cu_seqlens, int max_seqlen, float scale, int64_t window = 0);
// dq[T,H,D], dk[T,KV,D], dv[T,KV,D] from dout[T,H,D] and the forward's q, k, v, out, lse.
void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& cu_seqlens, int max_seqlen, float scale, int64_t window = 0);

// ---- SwiGLU --------------------------------------------------------------------------------------
// out[T,I] = silu(gate) * up, silu(x) = x * sigmoid(x).
void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up);
// dgate[T,I], dup[T,I] from dout[T,I]. dgate / dup may be gate / up themselves (in place: each element is read
// before it is written).
void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout, const Tensor& gate, const Tensor& up);

// ---- linear (frozen weight, optional bias) -------------------------------------------------------
// out[T,OC] = inp[T,IC] @ weight[OC,IC]^T + bias[OC] (bias may be an undefined Tensor).
void linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& bias);
// dinp[T,IC] (accumulates if `accumulate`) = dout[T,OC] @ weight[OC,IC]. The weight is frozen.
void linear_backward_input(const Tensor& dinp, const Tensor& dout, const Tensor& weight, bool accumulate);

// Fused linear + residual: out[T,OC] = residual[T,OC] + inp[T,IC] @ weight[OC,IC]^T (+ bias[OC]), one rounding to
// the activation dtype (on CUDA the residual enters the GEMM's fp32 epilogue). The composition of linear_forward and
// add, with one rounding fewer. out may alias residual (out += the projection).
void linear_forward_residual(const Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& residual,
                             const Tensor& bias = Tensor());

// ---- LoRA branch ---------------------------------------------------------------------------------
// out[T,OC] += scale * (inp[T,IC] @ A[R,IC]^T) @ B[OC,R]^T; saves xa[T,R] (f32) = inp @ A^T for backward.
// A, B are f32. (Dropout on the branch input is applied by the caller with dropout_forward.)
void lora_forward(const Tensor& out, const Tensor& xa, const Tensor& inp, const Tensor& A, const Tensor& B,
                  float scale);
// dB[OC,R] += scale * dout^T @ xa;  g[T,R] = scale * dout @ B;  dA[R,IC] += g^T @ inp;
// dinp[T,IC] += g @ A (skipped when dinp is undefined). dA, dB accumulate (gradient accumulation);
// g is f32 workspace [T,R].
void lora_backward(const Tensor& dinp, const Tensor& dA, const Tensor& dB, const Tensor& g, const Tensor& dout,
                   const Tensor& inp, const Tensor& xa, const Tensor& A, const Tensor& B, float scale);

// ---- LoRA on compute-dtype operands, projections side by side ----------------------------------------
// The training runner's LoRA path (no dropout): A and B are act tensors (on CUDA the bf16 copies LoraWeights keeps),
// xa and g are act matrices whose columns hold several projections' values side by side, so the projections that
// share an input (q,k,v or gate,up) use one GEMM for x @ [A_1; A_2; ...]^T and one for the stacked dA / dinp.
// A ColumnBlock names columns [col, col + cols) of such a [T, ld] matrix. The composition of the four is
// lora_forward / lora_backward, with xa and g held in the activation dtype:
//   lora_xa:     xa[T,N] = inp[T,IC] @ A[N,IC]^T                                   (N = xa.cols)
//   lora_up:     out[T,OC] += scale * xa[T,R] @ B[OC,R]^T                          (= when !accumulate; R = xa.cols)
//   lora_grad_b: dB[OC,R] (f32) += scale * dout[T,OC]^T @ xa[T,R];  g[T,R] = scale * dout @ B   (R = xa.cols)
//   lora_grad_a: dA[N,IC] (f32) += g[T,N]^T @ inp;  dinp[T,IC] += g @ A[N,IC]     (N = g.cols; dinp skipped when
//                undefined, = when !accumulate_dinp)
struct ColumnBlock {
  Tensor matrix;  // [T, ld] act
  int64_t col = 0, cols = 0;
};
void lora_xa(const ColumnBlock& xa, const Tensor& inp, const Tensor& A);
void lora_up(const Tensor& out, const ColumnBlock& xa, const Tensor& B, float scale, bool accumulate = true);
void lora_grad_b(const Tensor& dB, const ColumnBlock& g, const Tensor& dout, const ColumnBlock& xa, const Tensor& B,
                 float scale);
void lora_grad_a(const Tensor& dA, const Tensor& dinp, const ColumnBlock& g, const Tensor& inp, const Tensor& A,
                 bool accumulate_dinp = true);

// ---- dropout (inverted, Philox mask regenerated in backward) --------------------------------------
// out = inp * keep / (1 - p), keep = uniform(seed, offset + element index) >= p. out may alias inp.
void dropout_forward(const Tensor& out, const Tensor& inp, float p, uint64_t seed, uint64_t offset);
// dinp = dout * keep / (1 - p) with the same mask.
void dropout_backward(const Tensor& dinp, const Tensor& dout, float p, uint64_t seed, uint64_t offset);

// ---- random init ------------------------------------------------------------------------------------
// out ~ N(0, std), drawn where out lives (f32 or bf16): Philox4x32-10 under `key`, elements 2j and 2j+1 the
// Box-Muller pair of block j, so the CPU and the GPU draw the same numbers (GPU logf/sinf within an ulp).
void fill_normal(const Tensor& out, uint64_t key, float std);

// ---- elementwise ---------------------------------------------------------------------------------
void add(const Tensor& out, const Tensor& a, const Tensor& b);  // out = a + b (out may alias a or b)
void copy(const Tensor& dst, const Tensor& src);                // same shape; converts dtype (f32<->bf16)
// t = 0, ordered with the ops on the tensor's device (on CUDA: an async memset on the kernels' stream, capturable in
// a CUDA graph, unlike tensor/arena.h's synchronous fill_zero). E.g. the LoRA gradients before accumulation.
void zero(const Tensor& t);

// ---- cross-entropy -------------------------------------------------------------------------------
// Unfused reference: losses[T] (f32) = logsumexp(logits[t]) - logits[t, targets[t]], 0 where
// targets[t] < 0 (ignored). logits [T,V] (f32 or act).
void cross_entropy_forward(const Tensor& losses, const Tensor& logits, const Tensor& targets);
// dlogits[T,V] = grad_scale * (softmax(logits[t]) - onehot(targets[t])); rows with targets < 0 are 0.
void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& targets, float grad_scale);

// Fused LM head + cross-entropy, computed in chunks of `chunk` tokens so the [T,V] logits never exist:
// for each chunk, logits = hidden @ weight^T (fp32 accumulate), then per token
//   losses[t] (f32)  = logsumexp(logits) - logits[target]   (0 when target < 0)
//   correct[t] (i32) = argmax(logits) == target              (0 when target < 0; ties: lowest index)
//   dhidden[t] (act) = grad_scale * (softmax(logits) - onehot(target)) @ weight   (if dhidden defined)
// hidden [T,C], weight [V,C], targets i32 [T]. workspace: f32 tensor of at least chunk*V elements.
// Its unfused composition is linear_forward + cross_entropy_forward/backward + linear_backward_input.
void lm_head_cross_entropy(const Tensor& losses, const Tensor& correct, const Tensor& dhidden, const Tensor& hidden,
                           const Tensor& weight, const Tensor& targets, float grad_scale, const Tensor& workspace,
                           int64_t chunk);

// lm_head_cross_entropy with the gradient scale read where the tensors live, from scalars[0] (scalars: f32 [2] on
// the same device, scalars[1] == 0), so a captured CUDA graph of a training step replays with each call's scale.
// On CUDA the scale is applied in the dhidden GEMM's fp32 epilogue (dlogits = softmax - onehot, rounded to bf16).
void lm_head_cross_entropy_device_scale(const Tensor& losses, const Tensor& correct, const Tensor& dhidden,
                                        const Tensor& hidden, const Tensor& weight, const Tensor& targets,
                                        const Tensor& scalars, const Tensor& workspace, int64_t chunk);

}  // namespace cotune::kernels
