// The runner's steps: upload a batch, walk the layers forward (model/layer_train.cpp), the LM head + loss, the
// backward with checkpointing recomputation, and on CUDA the whole step as a captured graph (model/step_graphs.h).
#include <algorithm>

#include "base/error.h"
#include "kernels/ops.h"
#include "model/runner_buffers.h"

namespace cotune::model {

namespace ops = cotune::kernels;

Qwen2Runner::~Qwen2Runner() = default;

Qwen2Runner::Qwen2Runner(const Qwen2Model& model, LoraWeights* lora, const RunnerOptions& opts)
    : model_(model),
      lora_(lora),
      opts_(opts),
      spec_(LayerSpec::from(model.arch(), lora ? &lora->config() : nullptr)),
      buf_(std::make_unique<Buffers>(model.device(), opts.max_graphs)) {
  try {
    allocate();
  } catch (const Error& e) {
    // Out of memory (or another allocation failure) while planning: say what the plan was and what to lower.
    fail("cannot allocate the buffers of a {}-token micro-batch on {}: {}\n  plan so far: {}\n  to fit, lower "
         "max_seq_length / batch_size / max_tokens_per_batch, keep gradient_checkpointing on, or set "
         "load_in_4bit = true",
         opts_.max_tokens, device_name(model.device()), e.what(), plan_.str());
  }
}

void Qwen2Runner::upload(const PackedBatch& batch, float grad_scale) {
  Buffers& b = *buf_;
  const int64_t T = batch.tokens();
  if (T == 0) fail("empty batch");
  if (T > opts_.max_tokens) fail("batch of {} tokens exceeds the runner's token budget of {}", T, opts_.max_tokens);
  if (static_cast<int64_t>(batch.position_ids.size()) != T || static_cast<int64_t>(batch.targets.size()) != T)
    fail("batch arrays disagree: {} ids, {} positions, {} targets", T, batch.position_ids.size(), batch.targets.size());
  if (batch.cu_seqlens.size() < 2 || batch.cu_seqlens.front() != 0 || batch.cu_seqlens.back() != T)
    fail("batch cu_seqlens must run from 0 to {} tokens", T);
  b.T = T;
  b.S = static_cast<int>(batch.cu_seqlens.size()) - 1;
  b.max_seqlen = batch.max_seqlen();
  auto host = [](const std::vector<int32_t>& v) {
    return Tensor(const_cast<int32_t*>(v.data()), DType::i32, {static_cast<int64_t>(v.size())});
  };
  copy_bytes(b.ids.slice_rows(0, T), host(batch.input_ids));
  copy_bytes(b.pos.slice_rows(0, T), host(batch.position_ids));
  copy_bytes(b.targets.slice_rows(0, T), host(batch.targets));
  copy_bytes(b.cu.slice_rows(0, b.S + 1), host(batch.cu_seqlens));
  b.grad_scale = grad_scale;
  if (b.scalars.data) {
    float sc[2] = {grad_scale, 0.0f};
    copy_bytes(b.scalars, Tensor(sc, DType::f32, {2}));
  }
}

void Qwen2Runner::run_layers_forward(bool keep_all, uint64_t seed) {
  Buffers& b = *buf_;
  const auto& w = model_.weights();
  const int64_t L = model_.config().num_hidden_layers, T = b.T;
  ops::embedding_forward(rows(b.residual[0], T), rows(b.ids, T), w.embed);
  for (int64_t l = 0; l < L; ++l) {
    // Offloaded checkpoints: layer l writes its output into the ring slot of layer l-2's input, which must have
    // reached the host first; layer l's own input (l <= L-3: its slot is reused) goes to the host after the layer.
    if (b.offload && l >= 2) b.offload->wait(static_cast<int>(l - 2));
    layer_forward(l, rows(b.residual[static_cast<size_t>(l)], T), rows(b.residual[static_cast<size_t>(l + 1)], T),
                  keep_all || b.keep_attention ? static_cast<size_t>(l) : 0, seed);
    if (b.offload && l <= L - 3)
      b.offload->copy(static_cast<int>(l), rows(b.residual_host[static_cast<size_t>(l)], T),
                      rows(b.residual[static_cast<size_t>(l)], T));
  }
  ops::rmsnorm_forward(rows(b.hf, T), rows(b.rstdf, T), rows(b.residual[static_cast<size_t>(L)], T), w.final_norm,
                       model_.arch().rms_eps);
}

void Qwen2Runner::enqueue_step(bool backward, uint64_t dropout_seed) {
  Buffers& b = *buf_;
  const auto& w = model_.weights();
  const int64_t L = model_.config().num_hidden_layers, T = b.T;
  const bool keep_all = opts_.training && !opts_.gradient_checkpointing;
  run_layers_forward(keep_all, dropout_seed);

  Tensor dhf = backward ? rows(b.dh, T) : Tensor();
  if (b.scalars.data && b.lora16) {
    // The gradient scale is read on the device (it changes between replays of a captured step).
    ops::lm_head_cross_entropy_device_scale(rows(b.losses, T), rows(b.correct, T), dhf, rows(b.hf, T), w.lm_head,
                                            rows(b.targets, T), b.scalars, b.ce_ws, opts_.ce_chunk);
  } else {
    ops::lm_head_cross_entropy(rows(b.losses, T), rows(b.correct, T), dhf, rows(b.hf, T), w.lm_head,
                               rows(b.targets, T), b.grad_scale, b.ce_ws, opts_.ce_chunk);
  }
  if (!backward) return;

  // d(final norm input) -> b.dres, then layers in reverse; layer 0's input gradient is not needed
  // (the embedding is frozen).
  ops::rmsnorm_backward(rows(b.dres, T), dhf, rows(b.residual[static_cast<size_t>(L)], T), w.final_norm,
                        rows(b.rstdf, T), false);
  for (int64_t l = L - 1; l >= 0; --l) {
    if (b.offload) {
      // Layer l's input is back (prefetched while layer l+1 ran); layer l-1's comes back into the slot of layer
      // l+2's input (done with) while this layer runs. Inputs L-2 .. L never left the device.
      if (l <= L - 3) b.offload->wait(static_cast<int>(L + l));
      if (l >= 1 && l - 1 <= L - 3)
        b.offload->copy(static_cast<int>(L + l - 1), rows(b.residual[static_cast<size_t>(l - 1)], T),
                        rows(b.residual_host[static_cast<size_t>(l - 1)], T));
    }
    const Tensor x_in = rows(b.residual[static_cast<size_t>(l)], T);
    size_t ai = keep_all || b.keep_attention ? static_cast<size_t>(l) : 0;
    // Recompute (checkpointing); the last layer's activations are still those of the forward pass.
    if (!keep_all && l != L - 1) layer_forward(l, x_in, rows(b.tmp_c, T), ai, dropout_seed, true);
    layer_backward(l, x_in, ai, dropout_seed, l > 0);
  }
}

StepStats Qwen2Runner::read_stats(const PackedBatch& batch) {
  // Only the batch's own tokens (a graph's padding follows them and is never counted).
  Buffers& b = *buf_;
  const int64_t T = batch.tokens();
  StepStats st;
  std::vector<float> losses(static_cast<size_t>(T));
  std::vector<int32_t> correct(static_cast<size_t>(T));
  copy_bytes(Tensor(losses.data(), DType::f32, {T}), rows(b.losses, T));
  copy_bytes(Tensor(correct.data(), DType::i32, {T}), rows(b.correct, T));
  for (int64_t t = 0; t < T; ++t) {
    if (batch.targets[static_cast<size_t>(t)] < 0) continue;
    st.loss_sum += losses[static_cast<size_t>(t)];
    st.correct += correct[static_cast<size_t>(t)];
    ++st.counted;
  }
  return st;
}

bool Qwen2Runner::use_graphs() const {
  return opts_.cuda_graphs && opts_.training && model_.device() == Device::cuda && buf_->lora16;
}

bool Qwen2Runner::capture(const GraphKey& key) {
  Buffers& b = *buf_;
  // The graph must dequantize (NF4) whatever it uses: start from an empty layer cache, and leave it empty, since
  // the host cannot know which layer the scratch holds when a graph replays.
  b.nf4.invalidate();
  const bool captured = b.graphs.capture(key, [&] { enqueue_step(true, 0); });
  b.nf4.invalidate();
  return captured;
}

StepStats Qwen2Runner::forward_backward(const PackedBatch& batch, bool backward, float grad_scale,
                                        uint64_t dropout_seed) {
  if (backward && !opts_.training) fail("this runner was built for inference: no backward buffers");
  if (backward && !lora_) fail("backward needs LoRA weights: the base model is frozen");
  Buffers& b = *buf_;
  if (backward && use_graphs()) {
    PackedBatch padded;
    const GraphKey key = pad_for_graph(batch, opts_.graph_bucket, opts_.max_tokens, padded);
    upload(padded, grad_scale);
    b.max_seqlen = key.max_seqlen;
    void* exec = b.graphs.find(key);
    if (!exec && b.graphs.may_capture(key) && capture(key)) exec = b.graphs.find(key);
    if (exec) {
      b.graphs.launch(exec);
    } else {
      enqueue_step(true, dropout_seed);  // without a graph (the padding changes nothing that is counted)
    }
    // The per-token losses are read back after everything is enqueued (the copy waits for the GPU).
    return read_stats(batch);
  }
  upload(batch, grad_scale);
  enqueue_step(backward, dropout_seed);
  return read_stats(batch);
}

int Qwen2Runner::prepare_graphs() {
  if (!use_graphs()) return 0;
  Buffers& b = *buf_;
  auto sequence = [](int64_t n) {
    PackedBatch pb;
    for (int64_t i = 0; i < n; ++i) {
      pb.input_ids.push_back(0);
      pb.position_ids.push_back(static_cast<int32_t>(i));
      pb.targets.push_back(-100);
    }
    pb.cu_seqlens = {0, static_cast<int32_t>(n)};
    return pb;
  };
  // One zero-scaled step at the full token budget: every workspace reaches its largest size outside a capture.
  upload(sequence(opts_.max_tokens), 0.0f);
  enqueue_step(true, 0);
  const int64_t bucket = std::max<int64_t>(opts_.graph_bucket, 1);
  for (int64_t t = bucket; t < opts_.max_tokens + bucket; t += bucket) {
    if (b.graphs.size() >= opts_.max_graphs) break;
    PackedBatch padded;
    const GraphKey key = pad_for_graph(sequence(std::min(t, opts_.max_tokens)), opts_.graph_bucket, opts_.max_tokens,
                                       padded);
    if (b.graphs.contains(key)) continue;
    upload(padded, 0.0f);
    b.max_seqlen = key.max_seqlen;
    capture(key);
  }
  return b.graphs.size();
}

int Qwen2Runner::graphs() const { return buf_->graphs.size(); }
int64_t Qwen2Runner::graph_launches() const { return buf_->graphs.launches(); }

std::vector<float> Qwen2Runner::forward_logits(const PackedBatch& batch) {
  upload(batch, 1.0f);
  Buffers& b = *buf_;
  const auto& c = model_.config();
  const int64_t T = b.T, V = c.vocab_size;
  run_layers_forward(opts_.training && !opts_.gradient_checkpointing, 0);
  std::vector<float> out(static_cast<size_t>(T * V));
  Arena tmp(model_.device());
  Tensor logits = tmp.alloc(DType::f32, {T, V}, "logits");
  if (model_.device() == Device::cpu) {
    ops::linear_forward(logits, rows(b.hf, T), model_.weights().lm_head, Tensor());
  } else {
    ops::matmul(logits, rows(b.hf, T), model_.weights().lm_head, false, true, 1.0f, 0.0f);
  }
  copy_bytes(Tensor(out.data(), DType::f32, {T, V}), logits);
  return out;
}

}  // namespace cotune::model
