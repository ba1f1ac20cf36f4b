// The decoder families (Qwen2, Qwen2.5, DeepSeek-R1-Distill-Qwen, Llama 3.x, Qwen3, Mistral; what differs is
// model/architecture.h's description, read by the layer code here and in infer/): weights,
// and an explicit forward and backward over packed variable-length batches (llm.c style: every op a
// call into kernels/ops.h, no autograd graph). The frozen base may carry LoRA adapters (model/lora.h);
// the backward pass produces gradients for the LoRA weights only.
#pragma once
#include <compare>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "model/architecture.h"
#include "kernels/quant.h"
#include "model/lora.h"
#include "tensor/arena.h"
#include "tensor/tensor.h"

namespace cotune::formats {
class Checkpoint;
}

namespace cotune::model {

// One decoder layer's weights; which optional tensors are defined follows the Architecture.
struct LayerWeights {
  Tensor input_norm;                     // [C]
  Tensor q_w, q_b, k_w, k_b, v_w, v_b;   // [H*D, C] (+[H*D]), [KV*D, C] (+[KV*D]); biases undefined if absent
  Tensor q_norm, k_norm;                 // [D] (Qwen3's per-head q/k RMSNorm), undefined if absent
  Tensor o_w, o_b;                       // [C, H*D] (+[C]: Llama/Qwen3 attention_bias)
  Tensor post_norm;                      // [C]
  Tensor gate_w, up_w, down_w;           // [I, C], [I, C], [C, I]
  Tensor gate_b, up_b, down_b;           // [I], [I], [C] (Llama mlp_bias), undefined if absent
  const Tensor& proj(Proj p) const;
  const Tensor& bias(Proj p) const;      // undefined where the architecture has none
};

struct Weights {
  Tensor embed;       // [V, C]
  Tensor final_norm;  // [C]
  Tensor lm_head;     // [V, C] (the embedding itself when tied)
  std::vector<LayerWeights> layers;
};

struct LoadOptions {
  Device device = Device::cpu;
  // QLoRA base: the seven projections of every layer are quantized to NF4 (bitsandbytes layout, blocks of 64,
  // double-quantized absmax); embeddings, norms and the LM head stay 16-bit. On the CPU the weights are held
  // dequantized in f32 (the NF4-rounded values, so the numerics are those of a 4-bit base).
  bool load_in_4bit = false;
};

class Qwen2Model {
 public:
  // Reads config.json and the safetensors weights (single or sharded) of a model folder; weights are
  // converted to the device's storage dtype (f32 on CPU, bf16 on CUDA). Errors name the tensor and file.
  static Qwen2Model load(const std::string& model_dir, const LoadOptions& opts = {});
  static Qwen2Model from_checkpoint(const formats::ModelConfig& config, const formats::Checkpoint& ckpt,
                                    const LoadOptions& opts = {});
  // Random weights of the config's shape (normal(0, init_std), norms 1, biases normal(0, init_std)), for
  // benchmarks: speed does not depend on the weights' values.
  static Qwen2Model random(const formats::ModelConfig& config, const LoadOptions& opts = {}, uint64_t seed = 0,
                           float init_std = 0.02f);

  const formats::ModelConfig& config() const { return config_; }
  const Architecture& arch() const { return arch_; }  // what the layer computes (model/architecture.h)
  // On CUDA with load_in_4bit, the seven projections of each layer are held only as NF4 (weights().layers[l]
  // then has undefined projection tensors): dequantize_layer() writes them to a bf16 scratch before use.
  const Weights& weights() const { return weights_; }
  bool nf4() const { return !nf4_.empty(); }
  const kernels::Nf4Weight& nf4_weight(int64_t layer, Proj p) const {
    return nf4_[static_cast<size_t>(layer)][static_cast<int>(p)].view;
  }
  // Writes layer l's projections (bf16) into `scratch` (whose projection tensors must have the right shapes).
  void dequantize_layer(int64_t layer, LayerWeights& scratch) const;
  Device device() const { return device_; }
  DType act_dtype() const { return device_ == Device::cpu ? DType::f32 : DType::bf16; }
  size_t weight_bytes() const { return arena_ ? arena_->capacity() : 0; }

 private:
  formats::ModelConfig config_;
  Architecture arch_;
  Device device_ = Device::cpu;
  std::unique_ptr<Arena> arena_;
  Weights weights_;
  struct Nf4Slot {
    kernels::Nf4Weight view;  // device tensors in arena_
    float offset = 0;
  };
  std::vector<std::array<Nf4Slot, kNumProj>> nf4_;
  void finish_layer(LayerWeights& w, bool load_in_4bit);  // NF4 conversion of a freshly loaded layer
};

// One layer's projections of an NF4 base, dequantized into a bf16 scratch when asked for and reused while the
// same layer is asked for again (forward then backward of the last layer share one dequantization). For a
// 16-bit base it allocates nothing and returns the model's own weights.
class Nf4LayerCache {
 public:
  void allocate(const Qwen2Model& model, Arena& arena);  // the scratch, from `arena` (no-op unless model.nf4())
  const LayerWeights& get(const Qwen2Model& model, int64_t layer);
  void invalidate() { loaded_ = -1; }  // the scratch no longer holds what it held (e.g. a captured graph ran nothing)

 private:
  LayerWeights scratch_;
  int64_t loaded_ = -1;
};

// A packed batch on the host: several sequences concatenated. targets[t] is the id to predict at t
// (the next token of the same sequence) or -100 where not counted. positions restart per sequence.
struct PackedBatch {
  std::vector<int32_t> input_ids;   // [T]
  std::vector<int32_t> position_ids;  // [T]
  std::vector<int32_t> targets;     // [T]
  std::vector<int32_t> cu_seqlens;  // [S+1]
  int64_t tokens() const { return static_cast<int64_t>(input_ids.size()); }
  int max_seqlen() const;
  int64_t counted() const;  // targets >= 0
  // Builds a batch from whole sequences; every position predicts the next token of its sequence, the last
  // position of each sequence predicts nothing.
  static PackedBatch from_sequences(const std::vector<std::vector<int32_t>>& seqs);
};

struct RunnerOptions {
  int64_t max_tokens = 2048;          // token budget of one micro-batch (all buffers sized for it)
  bool gradient_checkpointing = true;  // keep each layer's input, recompute the layer in backward
  // With checkpointing on the CUDA bf16-LoRA path: also keep each layer's attention outputs (q, k, v after RoPE,
  // the attention output and its log-sum-exp, the LoRA xa: ~7.4 KB a token a layer at the 1.5B shape, against
  // ~60 KB for the MLP's tensors), so the backward recomputes only from the o projection on (the MLP) and not
  // the q/k/v projections, RoPE and attention. -1: when that costs at most an eighth of the free GPU memory
  // (short sequences; not the longest ones); 0: off; 1: on.
  int keep_attention = -1;
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
  size_t total() const { return weights + lora + activations + workspace; }
  std::string str() const;
};

// Owns every activation / gradient buffer for a token budget and runs forward and backward passes.
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

 private:
  struct Buffers;
  struct GraphKey {
    int64_t tokens;
    int sequences, max_seqlen;
    auto operator<=>(const GraphKey&) const = default;
  };
  const Qwen2Model& model_;
  LoraWeights* lora_;
  RunnerOptions opts_;
  MemoryPlan plan_;
  std::unique_ptr<Buffers> buf_;
  void allocate();
  void upload(const PackedBatch& batch, float grad_scale);
  bool use_graphs() const;
  // Pads a batch for its graph (see RunnerOptions::cuda_graphs) and returns the graph's key.
  GraphKey pad_for_graph(const PackedBatch& batch, PackedBatch& padded) const;
  // Enqueues forward, LM head + loss and (with backward) the backward of the uploaded batch.
  void enqueue_step(bool backward, uint64_t dropout_seed);
  // Captures the uploaded batch's step as the graph of `key` (nothing runs); false when capture failed.
  bool capture(const GraphKey& key);
  StepStats read_stats(const PackedBatch& batch);
  const LayerWeights& layer_weights(int64_t l);  // Nf4LayerCache::get
  void run_layers_forward(bool keep_all, uint64_t dropout_seed);
  // recompute: a checkpointing recomputation, which skips what the backward does not read (the down
  // projection's output and the layer output; its LoRA xa is still computed).
  void layer_forward(int64_t l, const Tensor& x_in, const Tensor& x_out, size_t acts_index, uint64_t dropout_seed,
                     bool recompute = false);
  void layer_backward(int64_t l, const Tensor& x_in, size_t acts_index, uint64_t dropout_seed, bool need_dinput);
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
