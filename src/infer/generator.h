// Text generation with a key/value cache: the prompts are run through the model once (prefill, in chunks,
// several prompts packed together), then every step feeds one new token per unfinished sequence (decode).
// The model is shared, never copied: a Generator made with LoRA weights applies the LoRA branch in its forward
// (unmerged), so "before" (lora = nullptr) and "after" use one loaded base. Works on whatever the model was
// loaded as: 16-bit / f32, merged, or the 4-bit (NF4) base.
//
//   auto model = model::Qwen2Model::load(dir);
//   auto tok = text::Tokenizer::load(dir);
//   infer::Generator gen(model, /*lora*/ nullptr);
//   infer::GenerationOptions o = infer::GenerationOptions::from_model_folder(dir, tok);
//   auto outs = gen.generate_text(tok, {"Hello"}, o, [](size_t i, std::string_view piece) { ... });
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "infer/kv_pages.h"
#include "infer/sampler.h"
#include "infer/text_stream.h"
#include "kernels/decode_ops.h"
#include "kernels/select_ops.h"
#include "model/lora.h"
#include "model/qwen2.h"
#include "tensor/arena.h"
#include "text/tokenizer.h"

namespace cotune::infer {

struct GenerationOptions {
  int64_t max_new_tokens = 512;
  SamplingOptions sampling;
  std::vector<int32_t> eos_ids;            // generation stops after any of these (the id is kept in `ids`, as HF)
  std::vector<std::string> stop_strings;   // generation stops when the text contains one (cut from `text`)
  bool skip_special = true;                // special tokens are left out of `text` and the stream
  // Polled once a generated token: true stops every unfinished sequence (finish_reason "cancelled"), e.g. Ctrl-C
  // in `cotune chat`, a client gone in a server.
  std::function<bool()> cancelled;

  // generation_config.json's sampling defaults and EOS ids, plus the tokenizer's EOS id.
  static GenerationOptions from_model_folder(const std::string& model_dir, const text::Tokenizer* tok);
};

struct GenerationOutput {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> ids;        // generated ids (a final EOS included)
  std::string text;                // decoded generated text (empty without a tokenizer)
  std::string finish_reason;       // "eos" | "stop" | "length" | "cancelled"
  double seconds = 0.0;            // from the start of the call to this sequence's last token
  double tokens_per_s = 0.0;       // ids.size() / seconds
};

// Called with complete UTF-8 text as it is generated: (index of the prompt, piece).
using StreamCallback = std::function<void(size_t, std::string_view)>;

struct GeneratorOptions {
  int64_t max_batch = 8;        // prompts generated together (cache slots)
  int64_t prefill_chunk = 256;  // tokens a prefill forward takes at most
  // CUDA, greedy (no repetition penalty), one sequence left: the decode steps stay on the device (arg-max on the
  // GPU, the next token fed back there, each step replayed as a CUDA graph); the host reads the new ids a few
  // steps at a time. false: every step copies the logits to the host and selects there (same ids).
  bool device_loop = true;
  // CUDA, bf16 activations, no unmerged adapter: one-token forwards run the fused decode step (kernels/decode_ops.h:
  // 5 launches a layer; bf16 weights give bit-identical results). false: the unfused ops.
  bool fused_decode = true;
  // CUDA: a batched decode step (decode_select) runs as a CUDA graph, one per batch-size bucket (1, 2, 4, ..., the
  // rows padded up to the bucket), instantiated at its second use. false: the step's kernels are launched one by one.
  bool decode_graphs = true;
  // The KV cache is paged (kernels/decode_ops.h KvPages): pages of kv_page positions, taken by a slot as it grows
  // and returned when it is released. kv_pages: the pool's size; 0: enough for every slot at the reserved capacity.
  int64_t kv_page = 16;
  int64_t kv_pages = 0;
};

// Per-row parameters of a device-side selection (kernels/select_ops.h).
using SelectParams = kernels::SelectParams;
// The selection parameters of a request's next draw: greedy or sampling with these options, `draw` = tokens sampled
// for it so far (its Philox stream position). Callers check device_selectable(opts) first.
SelectParams select_params(const SamplingOptions& opts, uint64_t draw);
// Whether the device selection implements these options (no repetition penalty).
bool device_selectable(const SamplingOptions& opts);

class Generator {
 public:
  Generator(const model::Qwen2Model& model, const model::LoraWeights* lora, const GeneratorOptions& opts = {});
  ~Generator();
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  // Generates for every prompt (ids, BOS included if wanted). More prompts than max_batch run in groups.
  // `tok` may be null (no text, no stop strings, no stream).
  std::vector<GenerationOutput> generate(const std::vector<std::vector<int32_t>>& prompts,
                                         const GenerationOptions& opts, const text::Tokenizer* tok,
                                         const StreamCallback& on_text = {});
  // Encodes each prompt with tok.encode(prompt, add_special = true) and generates.
  std::vector<GenerationOutput> generate_text(const text::Tokenizer& tok, const std::vector<std::string>& prompts,
                                              const GenerationOptions& opts, const StreamCallback& on_text = {});

  // ---- the two steps, for tests and callers that drive decoding themselves --------------------------------
  // Resets the cache to these sequences (at most max_batch) and runs them; returns the logits [S, V] (f32, host)
  // of each sequence's last token. `capacity` = positions to reserve per sequence (>= the longest prompt).
  std::vector<float> prefill(const std::vector<std::vector<int32_t>>& seqs, int64_t capacity);
  // Appends tokens[i] to sequence slots[i]; returns their logits [n, V].
  std::vector<float> decode(const std::vector<int32_t>& slots, const std::vector<int32_t>& tokens);
  int64_t length(int32_t slot) const { return lengths_[static_cast<size_t>(slot)]; }

  // ---- continuous batching (serve): sequences start and end independently in the max_batch slots ----------
  // Reserves the cache for every slot at `positions` positions each and empties every slot. Call before starting
  // sequences: a larger reservation later drops what the cache holds.
  void reserve(int64_t positions);
  // Starts `ids` in `slot` (whatever it held is dropped; the other slots are untouched) and returns the logits [V]
  // of its last token. The prompt runs in chunks of prefill_chunk tokens.
  std::vector<float> prefill_slot(int32_t slot, const std::vector<int32_t>& ids);
  void release_slot(int32_t slot);  // the slot holds nothing (its positions are reused by the next prefill_slot)
  int64_t max_batch() const { return opts_.max_batch; }

  // ---- selection on the model's device (serve): only the chosen ids come back to the host ------------------
  // Ids >= vocab are never chosen (the model's padded rows the tokenizer lacks). Default: the whole vocabulary.
  void set_selectable(int64_t vocab);
  // Starts prompts[i] in slots[i] (packed into forwards of at most prefill_chunk tokens; other slots untouched)
  // and returns each one's first generated id, chosen by params[i] (kernels/select_ops.h; CPU: its CPU twin).
  std::vector<int32_t> prefill_select(const std::vector<int32_t>& slots, const std::vector<std::vector<int32_t>>& prompts,
                                      const std::vector<SelectParams>& params);
  // Appends tokens[i] to slots[i] (one decode step of every row together) and returns each row's next id. On CUDA
  // the step is one CUDA graph launch a batch-size bucket (see decode_graphs); CPU: decode + the CPU twin.
  std::vector<int32_t> decode_select(const std::vector<int32_t>& slots, const std::vector<int32_t>& tokens,
                                     const std::vector<SelectParams>& params);
  // CUDA: captures decode_select's graph of every bucket now (a step of padding rows each), so that the first
  // steps of each batch size do not pay for it. Call after reserve and set_selectable, on the thread that decodes
  // (a graph keeps the stream-side buffers of the thread that captured it: cuBLASLt workspace, scratch).
  void warm_decode_graphs();
  // The logits [n, V] (f32, host) the last decode_select computed for its first n rows (for tests).
  std::vector<float> last_logits(int64_t n) const;
  int64_t capacity() const;        // positions reserved per slot
  // The KV page pool and block table (after reserve): pages free / total, each slot's pages. The padding slot's
  // pages (pad_pages()) are part of the pool and never free.
  const KvPageTable& kv_pages() const;
  int64_t pad_pages() const;

  const model::Qwen2Model& model() const { return model_; }
  const model::LoraWeights* lora() const { return lora_; }

 private:
  struct Buffers;
  const model::Qwen2Model& model_;
  const model::LoraWeights* lora_;
  GeneratorOptions opts_;
  std::unique_ptr<Buffers> buf_;
  std::vector<int64_t> lengths_;  // tokens in the cache per slot
  bool fused_ = false;            // one-token forwards use the fused decode step
  int64_t argmax_vocab_ = 0;      // the device arg-max searches ids [0, argmax_vocab_) (set per generate call)

  const model::LayerWeights& layer_weights(int64_t l);  // NF4 base: dequantized into a scratch
  void reserve_cache(int64_t slots, int64_t positions);
  int64_t pad_slot() const { return opts_.max_batch; }  // the cache slot padding rows of a bucket write to
  void grow_slot(int32_t slot, int64_t positions);     // pages for [0, positions) or an error naming the pool
  void sync_block_table();                              // the table rows that changed, to the device
  kernels::KvPages kv_layout() const;
  int64_t bucket_rows(int64_t n) const;                   // the bucket a step of n rows runs in
  // The layers, logits and selection over the first T rows already in the device buffers (ids / slot / pos and
  // sel_params); each row the newest token of its slot. Leaves the ids in sel_ids.
  void select_step(int64_t T);
  void run_bucket(int64_t T);  // select_step(T) as the bucket's CUDA graph where there is one (captured at 2nd use)
  void drop_graphs();
  std::vector<void*> graphs_;    // decode_select's instantiated graphs, by bucket index (null: not yet captured)
  std::vector<int> graph_uses_;  // uncaptured runs of each bucket so far
  uint64_t graphs_scratch_ = 0;  // kernels::cuda::scratch_generation() of the graphs
  bool batched_attention_ = false;  // decode rows use decode_rope_attention (CUDA, bf16, Qwen2-style layer)
  // One forward over T tokens (slot, position, id each); logits [n, V] of the tokens listed in `rows`.
  std::vector<float> forward(const std::vector<int32_t>& ids, const std::vector<int32_t>& slots,
                             const std::vector<int32_t>& positions, const std::vector<int64_t>& rows);
  // forward() leaving the logits [n, V] in the device buffer (returns n).
  int64_t forward_device(const std::vector<int32_t>& ids, const std::vector<int32_t>& slots,
                         const std::vector<int32_t>& positions, const std::vector<int64_t>& rows);
  // The selection of logits rows [0, n) by params, copied back to the host.
  std::vector<int32_t> select_rows(int64_t n, const std::vector<SelectParams>& params);
  // gemm_rows: decode rows of a batched step; 2 and more take the GEMM rather than the multi-row GEMV.
  void proj(int64_t layer, model::Proj p, const Tensor& out, const Tensor& inp, int64_t T, bool gemm_rows = false);
  // x += proj(inp) (tmp: scratch of x's shape).
  void residual_proj(int64_t layer, model::Proj p, const Tensor& x, const Tensor& tmp, const Tensor& inp, int64_t T,
                     bool decode_rows);
  // The layers over the T tokens already in the device buffers ids / slot / pos (residual stream left in x).
  // decode_rows: each of the T tokens is the newest of its own slot (a decode step), so attention may take the
  // fused rope + cache write + attention kernel.
  void run_layers(int64_t T, bool decode_rows = false);
  void run_layers_fused();  // run_layers(1) by the fused decode step
  // A block's mixer over T rows: attention (q/k norm, rope, cache write, cached attention; in = q, k, v) or the
  // gated MLP (in = gate, up), into `mixed`.
  void mixer_forward(int64_t layer, const model::BlockSpec& block, const std::array<Tensor, 3>& in,
                     const Tensor& mixed, int64_t T, bool decode_rows);
  kernels::DecodeProj decode_proj(int64_t layer, model::Proj p) const;
  // logits [n, V] (device) of the rows `sel` [n, C] of the residual stream.
  void compute_logits(const Tensor& sel, int64_t n, bool gemm_rows = false);
  // One greedy decode step on the device (batch 1): layers, logits, arg-max fed back (see device_loop).
  void device_step();
  void* capture_step();  // device_step as an instantiated CUDA graph; null when the capture failed
  // Greedy decode of `slot` from `token`, at most `steps` steps; accept(id) is false once the sequence finished.
  void greedy_device(int32_t slot, int32_t token, int64_t steps, const std::function<bool(int32_t)>& accept);
  std::vector<GenerationOutput> generate_group(const std::vector<std::vector<int32_t>>& prompts,
                                               const GenerationOptions& opts, const text::Tokenizer* tok,
                                               const StreamCallback& on_text, size_t index_base);
};

}  // namespace cotune::infer

namespace cotune::infer {
// A PEFT adapter folder (adapter_config.json + adapter_model.safetensors) as LoRA weights on the model's device,
// for Generator's `lora` argument. Errors name the folder and the mismatching tensor.
std::unique_ptr<model::LoraWeights> load_adapter(const model::Qwen2Model& model, const std::string& adapter_dir);
}  // namespace cotune::infer
