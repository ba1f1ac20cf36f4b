// The training / evaluation runner of a decoder model: owns every activation and gradient buffer for a token budget
// (planned up front, model/buffer_plan.cpp), and runs forward and backward passes over packed batches (llm.c style:
// every op a call into kernels/ops.h, no autograd graph) by walking the layer spec (model/layer_train.cpp); on CUDA
// each training step runs as a captured graph (model/step_graphs.h). The backward pass produces gradients for the
// LoRA weights only (model/lora.h).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/batch.h"
#include "model/layer.h"
#include "model/lora.h"
#include "model/step_graphs.h"
#include "model/weights.h"
#include "tensor/tensor.h"

namespace cotune::model {

struct RunnerOptions {
  int64_t max_tokens = 2048;          // token budget of one micro-batch (all buffers sized for it)
  bool gradient_checkpointing = true;  // keep each layer's input, recompute the layer in backward
  // With checkpointing on the CUDA bf16-LoRA path: also keep each layer's attention outputs (q, k, v after RoPE,
  // the attention output and its log-sum-exp, the LoRA xa: ~7.4 KB a token a layer at the 1.5B shape, against
  // ~60 KB for the MLP's tensors), so the backward recomputes only from the o projection on (the MLP) and not
  // the q/k/v projections, RoPE and attention. -1: when that costs at most an eighth of the free GPU memory
  // (short sequences; not the longest ones); 0: off; 1: on.
  int keep_attention = -1;
  // With checkpointing (training): keep each layer's saved input in pinned host memory instead of device memory,
  // copied out during the forward and back during the backward on a second stream, overlapped with compute
  // (what Unsloth's "unsloth" checkpointing does): the device holds 3 layer inputs instead of L + 1. Same numbers.
  bool offload_checkpoints = false;
  int64_t ce_chunk = 0;               // tokens per LM-head chunk (0: chosen from the vocabulary size)
  bool training = true;               // allocate backward buffers
  // CUDA, training with the bf16 LoRA path (no LoRA dropout): each forward + backward runs as a CUDA graph, one
  // per (padded tokens, sequences, padded longest sequence), captured at its first use. A batch's last sequence
  // is padded up to a multiple of graph_bucket tokens with ignored tokens (causal attention: no real token sees
  // them; they are never counted) so that varying lengths share a few graphs; the host then launches one graph
  // instead of thousands of kernels. false: every step runs kernel by kernel.
  bool cuda_graphs = true;
  int64_t graph_bucket = 64;
  int max_graphs = 64;                // more distinct shapes than this run without graphs
};

// Sums over the counted positions of one micro-batch.
struct StepStats {
  double loss_sum = 0.0;
  int64_t counted = 0;
  int64_t correct = 0;
};

// What the buffers of a runner cost, planned up front (no allocation inside the step loop).
struct MemoryPlan {
  size_t weights = 0, lora = 0, activations = 0, workspace = 0;
  size_t host = 0;  // pinned host memory of offloaded checkpoints (not counted in total())
  size_t total() const { return weights + lora + activations + workspace; }
  std::string str() const;
};

struct BlockActs;  // model/runner_buffers.h

class Qwen2Runner {
 public:
  Qwen2Runner(const Qwen2Model& model, LoraWeights* lora, const RunnerOptions& opts);
  ~Qwen2Runner();
  Qwen2Runner(const Qwen2Runner&) = delete;
  Qwen2Runner& operator=(const Qwen2Runner&) = delete;

  // Forward over a packed batch; with `backward`, also accumulates LoRA gradients (dA, dB +=) of
  // grad_scale * sum of counted token losses. `dropout_seed` picks the LoRA dropout masks of this call.
  StepStats forward_backward(const PackedBatch& batch, bool backward, float grad_scale, uint64_t dropout_seed = 0);
  // Full logits [T, V] (f32, host) of a batch, for tests and small-scale evaluation.
  std::vector<float> forward_logits(const PackedBatch& batch);

  // Captures, up front, the CUDA graphs of one-sequence batches of every bucket length up to max_tokens (what the
  // first step of each length would otherwise capture; worth it where batches are single sequences); runs one
  // zero-scaled step first so that every workspace has its final size. LoRA gradients are unchanged. Returns the
  // number of graphs held; 0 when the runner does not use graphs.
  int prepare_graphs();
  // Graphs held, and forward + backward calls that ran as one.
  int graphs() const;
  int64_t graph_launches() const;

  MemoryPlan plan() const { return plan_; }
  const RunnerOptions& options() const { return opts_; }
  const LayerSpec& layer_spec() const { return spec_; }  // the model's layer with this runner's LoRA targets

 private:
  struct Buffers;  // model/runner_buffers.h
  const Qwen2Model& model_;
  LoraWeights* lora_;
  RunnerOptions opts_;
  LayerSpec spec_;
  MemoryPlan plan_;
  std::unique_ptr<Buffers> buf_;
  void allocate();  // buffer_plan.cpp
  // runner.cpp
  void upload(const PackedBatch& batch, float grad_scale);
  bool use_graphs() const;
  // Enqueues forward, LM head + loss and (with backward) the backward of the uploaded batch.
  void enqueue_step(bool backward, uint64_t dropout_seed);
  // Captures the uploaded batch's step as the graph of `key` (nothing runs); false when capture failed.
  bool capture(const GraphKey& key);
  StepStats read_stats(const PackedBatch& batch);
  void run_layers_forward(bool keep_all, uint64_t dropout_seed);
  // layer_train.cpp: the training lowering of the layer spec.
  const LayerWeights& layer_weights(int64_t l);  // Nf4LayerCache::get
  // recompute: a checkpointing recomputation, which skips what the backward does not read (the last block's
  // output projection runs for its LoRA xa only, and with kept attention outputs the attention block starts at o).
  void layer_forward(int64_t l, const Tensor& x_in, const Tensor& x_out, size_t acts_index, uint64_t dropout_seed,
                     bool recompute = false);
  void layer_backward(int64_t l, const Tensor& x_in, size_t acts_index, uint64_t dropout_seed, bool need_dinput);
  void mixer_forward(const BlockSpec& block, const LayerWeights& w, const BlockActs& t, size_t acts_index);
  // Returns the gradients of the block's input projections' outputs.
  std::array<Tensor, 3> mixer_backward(const BlockSpec& block, const LayerWeights& w, const BlockActs& t,
                                       size_t acts_index);
  // The n projections first, first+1, ... that share the input `inp` (q,k,v or gate,up, or one alone).
  // residual (bf16 LoRA path, n == 1, no bias): outs[0] = residual + the projection, added in the GEMM.
  void projs_forward(int64_t l, Proj first, int n, const Tensor* outs, const Tensor& inp, size_t acts_index,
                     uint64_t seed, bool xa_only = false, const Tensor* residual = nullptr);
  void projs_backward(int64_t l, Proj first, int n, const Tensor& dinp, bool accumulate, const Tensor* douts,
                      const Tensor& inp, size_t acts_index, uint64_t seed);
  void proj_forward(int64_t l, Proj p, const Tensor& out, const Tensor& inp, const Tensor& xa, uint64_t seed);
  void proj_backward(int64_t l, Proj p, const Tensor& dinp, bool accumulate, const Tensor& dout, const Tensor& inp,
                     const Tensor& xa, uint64_t seed);
};

}  // namespace cotune::model
