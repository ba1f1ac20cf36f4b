// Buffer planning of the runner: every activation, gradient and workspace tensor for the token budget, allocated
// once from one arena (no allocation inside the step loop), and what it costs (MemoryPlan).
#include <fmt/format.h>

#include <algorithm>

#include "base/error.h"
#include "base/log.h"
#include "kernels/device_memory.h"
#include "model/runner_buffers.h"

namespace cotune::model {

std::string MemoryPlan::str() const {
  auto gib = [](size_t b) { return static_cast<double>(b) / 1073741824.0; };
  std::string s = fmt::format("weights {:.2f} GiB, LoRA + grads {:.3f} GiB, activations {:.2f} GiB, workspace {:.2f} GiB, total {:.2f} GiB",
                              gib(weights), gib(lora), gib(activations), gib(workspace), gib(total()));
  if (host > 0) s += fmt::format(" (+ {:.2f} GiB of offloaded checkpoints in host memory)", gib(host));
  return s;
}

void Qwen2Runner::allocate() {
  const Qwen2Model& model = model_;
  LoraWeights* lora = lora_;
  const auto& c = model.config();
  const int64_t T = opts_.max_tokens, C = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t QD = c.num_attention_heads * c.head_dim, KVD = c.num_key_value_heads * c.head_dim;
  const int64_t H = c.num_attention_heads, L = c.num_hidden_layers;
  const int64_t R = lora ? lora->config().r : 0;
  if (T <= 0) fail("runner token budget must be positive, got {}", T);
  if (opts_.ce_chunk <= 0) opts_.ce_chunk = std::clamp<int64_t>((int64_t{256} << 20) / (4 * V), 16, 4096);
  const DType act = model.act_dtype();
  Buffers& b = *buf_;
  Arena& a = b.arena;
  plan_.weights = model.weight_bytes();
  plan_.lora = lora ? lora->bytes() : 0;

  b.ids = a.alloc(DType::i32, {T}, "input ids");
  b.pos = a.alloc(DType::i32, {T}, "positions");
  b.targets = a.alloc(DType::i32, {T}, "targets");
  b.cu = a.alloc(DType::i32, {T + 1}, "cu_seqlens");
  if (model.device() != Device::cpu) b.scalars = a.alloc(DType::f32, {2}, "gradient scale");
  size_t mark = a.used();
  const bool keep_all = opts_.training && !opts_.gradient_checkpointing;
  // Offloaded checkpoints: a ring of 3 device buffers (layer l's input in ring[l % 3]); every input that the ring
  // overwrites (layers 0 .. L-3) is copied to host memory during the forward and back before its recomputation.
  const bool offload = opts_.training && opts_.gradient_checkpointing && opts_.offload_checkpoints && L >= 4;
  for (int64_t l = 0; l <= L; ++l) {
    // Inference needs only two residual buffers (ping-pong); training keeps every layer's input.
    if (!opts_.training && l >= 2) {
      b.residual.push_back(b.residual[static_cast<size_t>(l % 2)]);
      continue;
    }
    if (offload && l >= 3) {
      b.residual.push_back(b.residual[static_cast<size_t>(l % 3)]);
      continue;
    }
    b.residual.push_back(a.alloc(act, {T, C}, "residual"));
  }
  if (offload) {
    const size_t row = static_cast<size_t>(T * C) * dtype_size(act);
    b.residual_host_buf = kernels::PinnedBuffer(static_cast<size_t>(L - 2) * row);
    for (int64_t l = 0; l <= L - 3; ++l)
      b.residual_host.push_back(b.residual_host_buf.view(act, {T, C}, static_cast<size_t>(l) * row, "offloaded layer input"));
    b.offload = std::make_unique<kernels::CopyQueue>(model.device(), 2 * static_cast<int>(L));
    plan_.host = b.residual_host_buf.bytes();
  }
  const size_t n_acts = keep_all ? static_cast<size_t>(L) : 1;
  b.lora16 = lora && model.device() == Device::cuda && lora->config().dropout <= 0.0f;
  if (b.lora16) {
    for (int p = 0; p < kNumProj; ++p)
      if (lora->config().targets(static_cast<Proj>(p))) {
        b.xa_col[static_cast<size_t>(p)] = b.xa_ld;
        b.xa_ld += R;
      }
  }
  const int64_t KVH = c.num_key_value_heads;
  auto alloc_qk_norm = [&](QkNormActs& n, const char* kept) {
    n.q_pre = a.alloc(act, {T, QD}, fmt::format("q before q_norm{}", kept));
    n.k_pre = a.alloc(act, {T, KVD}, fmt::format("k before k_norm{}", kept));
    n.rstd_q = a.alloc(DType::f32, {T * H}, fmt::format("q_norm rstd{}", kept));
    n.rstd_k = a.alloc(DType::f32, {T * KVH}, fmt::format("k_norm rstd{}", kept));
  };
  for (size_t i = 0; i < n_acts; ++i) {
    LayerActs x;
    x.h1 = a.alloc(act, {T, C}, "h1");
    x.rstd1 = a.alloc(DType::f32, {T}, "rstd1");
    x.q = a.alloc(act, {T, QD}, "q");
    x.k = a.alloc(act, {T, KVD}, "k");
    x.v = a.alloc(act, {T, KVD}, "v");
    if (c.qk_norm) alloc_qk_norm(x.qkn, "");
    x.att = a.alloc(act, {T, QD}, "attention out");
    x.lse = a.alloc(DType::f32, {H, T}, "lse");
    x.x2 = a.alloc(act, {T, C}, "x2");
    x.h2 = a.alloc(act, {T, C}, "h2");
    x.rstd2 = a.alloc(DType::f32, {T}, "rstd2");
    x.g = a.alloc(act, {T, I}, "gate");
    x.u = a.alloc(act, {T, I}, "up");
    x.m = a.alloc(act, {T, I}, "swiglu");
    if (b.lora16) {
      x.xa16 = a.alloc(DType::bf16, {T, b.xa_ld}, "lora xa (bf16)");
    } else if (lora) {
      for (int p = 0; p < kNumProj; ++p)
        if (lora->config().targets(static_cast<Proj>(p))) x.xa[p] = a.alloc(DType::f32, {T, R}, "lora xa");
    }
    b.acts.push_back(x);
  }
  // Checkpointing that keeps each layer's attention outputs (see RunnerOptions::keep_attention): layers 1..L-1 get
  // their own q, k, v, attention output, lse and LoRA xa; everything else (the MLP's wide tensors above all) stays
  // one shared set, recomputed in the backward.
  b.keep_attention = opts_.training && opts_.gradient_checkpointing && b.lora16 && L > 1;
  if (b.keep_attention) {
    const int mode = opts_.keep_attention;
    if (mode == 0) b.keep_attention = false;
    if (mode < 0) {
      // Automatic: only when it costs at most an eighth of the free memory (short sequences; a very long one
      // needs the memory more than the speed).
      int64_t per_layer = T * (2 * QD + 2 * KVD) * 2 + H * T * 4 + T * b.xa_ld * 2;
      if (c.qk_norm) per_layer += T * (QD + KVD) * 2 + T * (H + KVH) * 4;
      const size_t extra = static_cast<size_t>(per_layer) * static_cast<size_t>(L - 1);
      b.keep_attention = extra <= kernels::device_memory(model.device()).free_bytes / 8;
    }
  }
  if (b.keep_attention) {
    for (int64_t l = 1; l < L; ++l) {
      LayerActs x = b.acts[0];
      x.q = a.alloc(act, {T, QD}, "q (kept)");
      x.k = a.alloc(act, {T, KVD}, "k (kept)");
      x.v = a.alloc(act, {T, KVD}, "v (kept)");
      if (c.qk_norm) alloc_qk_norm(x.qkn, " (kept)");
      x.att = a.alloc(act, {T, QD}, "attention out (kept)");
      x.lse = a.alloc(DType::f32, {H, T}, "lse (kept)");
      x.xa16 = a.alloc(DType::bf16, {T, b.xa_ld}, "lora xa (kept)");
      b.acts.push_back(x);
    }
  }
  b.hf = a.alloc(act, {T, C}, "final norm out");
  b.rstdf = a.alloc(DType::f32, {T}, "final rstd");
  b.losses = a.alloc(DType::f32, {T}, "losses");
  b.correct = a.alloc(DType::i32, {T}, "correct");
  b.tmp_c = a.alloc(act, {T, C}, "projection scratch");
  const size_t acts_bytes = a.used() - mark;
  plan_.activations = acts_bytes;
  mark = a.used();
  b.ce_ws = a.alloc(DType::f32, {std::min(opts_.ce_chunk, T) * V}, "LM-head chunk logits");
  const int64_t widest = std::max({C, I, QD});
  if (opts_.training) {
    b.dres = a.alloc(act, {T, C}, "residual grad");
    b.dh = a.alloc(act, {T, C}, "normed grad");
    b.dtmp_c = a.alloc(act, {T, C}, "grad scratch");
    b.dq = a.alloc(act, {T, QD}, "dq");
    b.dk = a.alloc(act, {T, KVD}, "dk");
    b.dv = a.alloc(act, {T, KVD}, "dv");
    if (c.qk_norm) {
      b.dq_pre = a.alloc(act, {T, QD}, "dq before q_norm");
      b.dk_pre = a.alloc(act, {T, KVD}, "dk before k_norm");
    }
    b.datt = a.alloc(act, {T, QD}, "d attention out");
    b.dm = a.alloc(act, {T, I}, "d swiglu");
    if (b.lora16) b.g16 = a.alloc(DType::bf16, {T, 3 * R}, "lora g (bf16)");
    else if (lora) b.lora_g = a.alloc(DType::f32, {T, R}, "lora g");
  }
  if (lora && lora->config().dropout > 0.0f) {
    b.drop_in = a.alloc(act, {T, widest}, "dropout input");
    if (opts_.training) b.drop_grad = a.alloc(act, {T, widest}, "dropout grad");
  }
  b.nf4.allocate(model, a);
  plan_.weights = model.weight_bytes();
  plan_.lora = lora ? lora->bytes() : 0;
  plan_.activations = acts_bytes;
  plan_.workspace = a.used() - mark;
  log::debug("runner memory plan: {}", plan_.str());
}

}  // namespace cotune::model
