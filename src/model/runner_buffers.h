// The runner's buffers (internal to src/model: buffer_plan.cpp plans and allocates them, layer_train.cpp and
// runner.cpp use them). Every tensor is sized for the runner's token budget and sliced to a batch's T at each step.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/attention_inputs.h"
#include "model/runner.h"
#include "model/step_graphs.h"
#include "model/weights.h"
#include "kernels/offload.h"
#include "tensor/arena.h"
#include "tensor/tensor.h"

namespace cotune::model {

// Activations of one decoder layer for T tokens (views sliced to the batch's T at each step).
struct LayerActs {
  Tensor h1, rstd1;    // [T,C], [T]
  Tensor q, k, v;      // [T,H*D], [T,KV*D] x2 (q and k after RoPE)
  QkNormActs qkn;      // q_pre, k_pre, rstd_q, rstd_k (Qwen3's q/k norm; undefined otherwise)
  Tensor att, lse;     // [T,H*D], [H,T]
  Tensor x2;           // [T,C] residual after attention
  Tensor h2, rstd2;    // [T,C], [T]
  Tensor g, u, m;      // [T,I] x3
  std::array<Tensor, kNumProj> xa;  // [T,R] f32 per LoRA target (CPU, or CUDA with LoRA dropout)
  Tensor xa16;         // CUDA without dropout: bf16 [T, targets*R], the xa of every target side by side
};

// One block of the layer spec seen through a LayerActs, sliced to T tokens: its normed input, the outputs of its
// input projections (what the projections write; with q/k norm those are the pre-norm values), what the mixer
// reads from them (q and k after rope), and the mixer's output (the output projection's input).
struct BlockActs {
  Tensor h, rstd;
  std::array<Tensor, 3> proj_out;  // written by the input projections
  std::array<Tensor, 3> mixer_in;  // read by the mixer
  Tensor mixed;
};

struct Qwen2Runner::Buffers {
  Arena arena;
  Tensor ids, pos, targets, cu;  // i32 on device: [T], [T], [T], [S+1]
  std::vector<Tensor> residual;  // L+1 x [T,C]: the input of each layer, then the last layer's output
  // Offloaded checkpoints (RunnerOptions::offload_checkpoints): residual[l] is ring slot l % 3; residual_host[l]
  // (l <= L-3) holds layer l's input while its slot is reused; copy slots l (to the host) and L + l (back).
  kernels::PinnedBuffer residual_host_buf;
  std::vector<Tensor> residual_host;
  std::unique_ptr<kernels::CopyQueue> offload;
  std::vector<LayerActs> acts;   // one set (checkpointing) or L sets
  Tensor hf, rstdf;              // final norm output [T,C], [T]
  Tensor losses, correct;        // [T] f32, [T] i32
  Tensor ce_ws;                  // [chunk, V] f32
  Tensor tmp_c;                  // [T,C] scratch (o/down projection outputs)
  // backward
  Tensor dres, dh, dtmp_c;       // [T,C]
  Tensor dq, dk, dv, datt;       // [T,H*D], [T,KV*D] x2, [T,H*D]
  Tensor dq_pre, dk_pre;         // [T,H*D], [T,KV*D]: gradients of the q/k projections' outputs (q/k norm only)
  Tensor dm;                     // [T,I] (the gate / up gradients are written over the gate / up activations)
  Tensor lora_g;                 // [T,R] f32
  // CUDA without LoRA dropout ("bf16 LoRA"): the LoRA GEMMs take the bf16 copies of A/B (model/lora.h) and keep
  // xa / g in bf16; the projections of q,k,v (and gate,up) share one xa GEMM and one dA / dinp GEMM.
  bool lora16 = false;
  int64_t xa_ld = 0;                       // row stride of LayerActs::xa16
  std::array<int64_t, kNumProj> xa_col{};  // column of each target's xa in xa16
  Tensor g16;                              // bf16 [T, 3R]: the g of up to three projections side by side
  Tensor drop_in, drop_grad;     // [T,max(C,I,H*D)] dropout scratch
  Nf4LayerCache nf4;             // NF4 base: one layer's projections in bf16
  int64_t T = 0;                 // tokens of the current batch
  int S = 0, max_seqlen = 0;
  bool keep_attention = false;   // checkpointing keeps every layer's attention outputs (acts has L entries)
  float grad_scale = 1.0f;       // the step's gradient scale (host), and on CUDA in `scalars`:
  Tensor scalars;                // f32 [2] {grad_scale, 0}, read on the device by the LM-head GEMM
  StepGraphs graphs;             // captured CUDA graphs of whole steps
  Buffers(Device d, int max_graphs) : arena(d), graphs(max_graphs) {}
};

// Rows [0, T) of a buffer (an undefined tensor stays undefined).
inline Tensor rows(const Tensor& t, int64_t T) { return t.data ? t.slice_rows(0, T) : t; }
// The q/k norm buffers of T tokens (rstd_q / rstd_k hold one entry a token and head).
inline QkNormActs qk_norm_rows(const QkNormActs& n, int64_t T, int64_t H, int64_t KV) {
  return {rows(n.q_pre, T), rows(n.k_pre, T), rows(n.rstd_q, T * H), rows(n.rstd_k, T * KV)};
}
// lse is [H, Tmax]: re-view the leading H*T elements as [H, T].
inline Tensor lse_view(const Tensor& lse, int64_t T) {
  return Tensor(lse.data, lse.dtype, {lse.dim(0), T}, lse.device);
}

}  // namespace cotune::model
