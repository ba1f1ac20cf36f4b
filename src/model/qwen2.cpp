#include "model/qwen2.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "base/error.h"
#include "base/half.h"
#include "base/log.h"
#include "base/rng.h"
#include "formats/safetensors.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "kernels/device_memory.h"
#include "kernels/graph.h"
#include "model/attention_inputs.h"

namespace cotune::model {

namespace ops = cotune::kernels;

// ---- weights ------------------------------------------------------------------------------------

const Tensor& LayerWeights::proj(Proj p) const {
  switch (p) {
    case Proj::q: return q_w;
    case Proj::k: return k_w;
    case Proj::v: return v_w;
    case Proj::o: return o_w;
    case Proj::gate: return gate_w;
    case Proj::up: return up_w;
    case Proj::down: return down_w;
  }
  return q_w;
}

const Tensor& LayerWeights::bias(Proj p) const {
  switch (p) {
    case Proj::q: return q_b;
    case Proj::k: return k_b;
    case Proj::v: return v_b;
    case Proj::o: return o_b;
    case Proj::gate: return gate_b;
    case Proj::up: return up_b;
    case Proj::down: return down_b;
  }
  return q_b;
}

namespace {

// Copies a checkpoint tensor into a new tensor of the device's storage dtype, checking its shape.
Tensor load_tensor(Arena& arena, const formats::Checkpoint& ckpt, const std::string& name, Shape expected,
                   DType storage) {
  const formats::TensorEntry& e = ckpt.get(name);
  std::vector<int64_t> want(expected.dims.begin(), expected.dims.begin() + expected.ndim);
  if (e.shape != want) {
    std::string got = "[";
    for (size_t i = 0; i < e.shape.size(); ++i) got += (i ? ", " : "") + std::to_string(e.shape[i]);
    fail("{}: tensor {} has shape {}, the config expects {}", e.file, name, got + "]", expected.str());
  }
  if (const int64_t bad = formats::first_non_finite(e); bad >= 0)
    fail("{}: tensor {} holds a NaN or infinite value at element {}: the weights are corrupt", e.file, name, bad);
  Tensor src = e.tensor();
  Tensor dst = arena.alloc(storage, expected, name);
  if (src.dtype == storage) {
    copy_bytes(dst, src);
    return dst;
  }
  if (src.dtype != DType::f32 && src.dtype != DType::bf16 && src.dtype != DType::f16)
    fail("{}: tensor {} has dtype {}; weights must be F32, BF16 or F16", e.file, name, e.dtype_name);
  // Convert on the host, then move to the device.
  std::vector<float> f(static_cast<size_t>(src.numel()));
  ops::copy(Tensor(f.data(), DType::f32, expected), src.view(expected));
  if (storage == DType::f32) {
    copy_bytes(dst, Tensor(f.data(), DType::f32, expected));
  } else {
    std::vector<uint16_t> h(f.size());
    ops::copy(Tensor(h.data(), storage, expected), Tensor(f.data(), DType::f32, expected));
    copy_bytes(dst, Tensor(h.data(), storage, expected));
  }
  return dst;
}

// Replaces a weight by its NF4 quantize -> dequantize round trip (bitsandbytes' values).
void nf4_round_in_place(const Tensor& w) {
  if (w.device != Device::cpu) fail("4-bit weights on {} are not available in this build", device_name(w.device));
  std::vector<float> host(static_cast<size_t>(w.numel()));
  Tensor h(host.data(), DType::f32, w.shape);
  ops::copy(h, w);
  kernels::Nf4Buffers q = kernels::nf4_quantize(h);
  kernels::nf4_dequantize(q.view(), h);
  ops::copy(w, h);
}

}  // namespace

Qwen2Model Qwen2Model::load(const std::string& model_dir, const LoadOptions& opts) {
  return with_context("loading model " + model_dir, [&] {
    formats::ModelConfig cfg = formats::load_model_config(model_dir);
    formats::Checkpoint ckpt = formats::Checkpoint::open(model_dir);
    return from_checkpoint(cfg, ckpt, opts);
  });
}

Qwen2Model Qwen2Model::from_checkpoint(const formats::ModelConfig& cfg, const formats::Checkpoint& ckpt,
                                       const LoadOptions& opts) {
  Qwen2Model m;
  m.config_ = cfg;
  m.arch_ = Architecture::from_config(cfg);
  m.device_ = opts.device;
  m.arena_ = std::make_unique<Arena>(opts.device);
  const DType st = m.act_dtype();
  const int64_t C = cfg.hidden_size, V = cfg.vocab_size, I = cfg.intermediate_size, D = cfg.head_dim;
  const int64_t QD = cfg.num_attention_heads * cfg.head_dim, KVD = cfg.num_key_value_heads * cfg.head_dim;
  const Architecture& arch = m.arch_;
  Arena& a = *m.arena_;
  // A 4-bit base on the GPU is quantized from a host copy of each projection, which never reaches the device.
  const bool stage = opts.load_in_4bit && opts.device != Device::cpu;
  Arena staging(Device::cpu);
  Arena& pa = stage ? staging : a;
  const DType pst = stage ? DType::bf16 : st;
  m.weights_.embed = load_tensor(a, ckpt, "model.embed_tokens.weight", {V, C}, st);
  m.weights_.final_norm = load_tensor(a, ckpt, "model.norm.weight", {C}, st);
  if (cfg.tie_word_embeddings) {
    m.weights_.lm_head = m.weights_.embed;
  } else {
    m.weights_.lm_head = load_tensor(a, ckpt, "lm_head.weight", {V, C}, st);
  }
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights w;
    w.input_norm = load_tensor(a, ckpt, p + "input_layernorm.weight", {C}, st);
    w.post_norm = load_tensor(a, ckpt, p + "post_attention_layernorm.weight", {C}, st);
    staging.reset();
    w.q_w = load_tensor(pa, ckpt, p + "self_attn.q_proj.weight", {QD, C}, pst);
    w.k_w = load_tensor(pa, ckpt, p + "self_attn.k_proj.weight", {KVD, C}, pst);
    w.v_w = load_tensor(pa, ckpt, p + "self_attn.v_proj.weight", {KVD, C}, pst);
    if (arch.qkv_bias) {
      w.q_b = load_tensor(a, ckpt, p + "self_attn.q_proj.bias", {QD}, st);
      w.k_b = load_tensor(a, ckpt, p + "self_attn.k_proj.bias", {KVD}, st);
      w.v_b = load_tensor(a, ckpt, p + "self_attn.v_proj.bias", {KVD}, st);
    }
    if (arch.qk_norm) {
      w.q_norm = load_tensor(a, ckpt, p + "self_attn.q_norm.weight", {D}, st);
      w.k_norm = load_tensor(a, ckpt, p + "self_attn.k_norm.weight", {D}, st);
    }
    w.o_w = load_tensor(pa, ckpt, p + "self_attn.o_proj.weight", {C, QD}, pst);
    if (arch.o_bias) w.o_b = load_tensor(a, ckpt, p + "self_attn.o_proj.bias", {C}, st);
    w.gate_w = load_tensor(pa, ckpt, p + "mlp.gate_proj.weight", {I, C}, pst);
    w.up_w = load_tensor(pa, ckpt, p + "mlp.up_proj.weight", {I, C}, pst);
    w.down_w = load_tensor(pa, ckpt, p + "mlp.down_proj.weight", {C, I}, pst);
    if (arch.mlp_bias) {
      w.gate_b = load_tensor(a, ckpt, p + "mlp.gate_proj.bias", {I}, st);
      w.up_b = load_tensor(a, ckpt, p + "mlp.up_proj.bias", {I}, st);
      w.down_b = load_tensor(a, ckpt, p + "mlp.down_proj.bias", {C}, st);
    }
    m.finish_layer(w, opts.load_in_4bit);
    m.weights_.layers.push_back(w);
  }
  return m;
}

Qwen2Model Qwen2Model::random(const formats::ModelConfig& cfg, const LoadOptions& opts, uint64_t seed, float init_std) {
  Qwen2Model m;
  m.config_ = cfg;
  m.arch_ = Architecture::from_config(cfg);
  m.device_ = opts.device;
  m.arena_ = std::make_unique<Arena>(opts.device);
  const DType st = m.act_dtype();
  const int64_t C = cfg.hidden_size, V = cfg.vocab_size, I = cfg.intermediate_size, D = cfg.head_dim;
  const int64_t QD = cfg.num_attention_heads * cfg.head_dim, KVD = cfg.num_key_value_heads * cfg.head_dim;
  const Architecture& arch = m.arch_;
  uint64_t stream = 0;
  // Each tensor is filled on the host in parallel (Philox by element index), converted, then copied over.
  const bool stage = opts.load_in_4bit && opts.device != Device::cpu;
  Arena staging(Device::cpu);
  auto make = [&](Shape s, bool ones, bool proj = false) {
    const bool on_host = stage && proj;
    const DType dt = on_host ? DType::bf16 : st;
    Tensor t = (on_host ? staging : *m.arena_).alloc(dt, s, "random weight");
    const int64_t n = s.numel();
    const uint64_t key = seed * 0x9E3779B97F4A7C15ull + (++stream);
    std::vector<float> f(static_cast<size_t>(n));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i += 2) {
      const Philox4 r = philox4x32(key, static_cast<uint64_t>(i) / 2);
      const float u1 = std::max(uniform01(r.v[0]), 1e-7f), u2 = uniform01(r.v[1]);
      const float rad = std::sqrt(-2.0f * std::log(u1));
      f[static_cast<size_t>(i)] = ones ? 1.0f : init_std * rad * std::cos(6.2831853f * u2);
      if (i + 1 < n) f[static_cast<size_t>(i + 1)] = ones ? 1.0f : init_std * rad * std::sin(6.2831853f * u2);
    }
    Tensor host(f.data(), DType::f32, s);
    if (dt == DType::f32) {
      copy_bytes(t, host);
    } else {
      std::vector<uint16_t> h(f.size());
      ops::copy(Tensor(h.data(), dt, s), host);
      copy_bytes(t, Tensor(h.data(), dt, s));
    }
    return t;
  };
  m.weights_.embed = make({V, C}, false);
  m.weights_.final_norm = make({C}, true);
  m.weights_.lm_head = cfg.tie_word_embeddings ? m.weights_.embed : make({V, C}, false);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    LayerWeights w;
    staging.reset();
    w.input_norm = make({C}, true);
    w.post_norm = make({C}, true);
    w.q_w = make({QD, C}, false, true);
    w.k_w = make({KVD, C}, false, true);
    w.v_w = make({KVD, C}, false, true);
    if (arch.qkv_bias) {
      w.q_b = make({QD}, false);
      w.k_b = make({KVD}, false);
      w.v_b = make({KVD}, false);
    }
    if (arch.qk_norm) {
      w.q_norm = make({D}, true);
      w.k_norm = make({D}, true);
    }
    w.o_w = make({C, QD}, false, true);
    if (arch.o_bias) w.o_b = make({C}, false);
    w.gate_w = make({I, C}, false, true);
    w.up_w = make({I, C}, false, true);
    w.down_w = make({C, I}, false, true);
    if (arch.mlp_bias) {
      w.gate_b = make({I}, false);
      w.up_b = make({I}, false);
      w.down_b = make({C}, false);
    }
    m.finish_layer(w, opts.load_in_4bit);
    m.weights_.layers.push_back(w);
  }
  return m;
}

void Qwen2Model::finish_layer(LayerWeights& w, bool load_in_4bit) {
  if (!load_in_4bit) return;
  Tensor* projs[kNumProj] = {&w.q_w, &w.k_w, &w.v_w, &w.o_w, &w.gate_w, &w.up_w, &w.down_w};
  if (device_ == Device::cpu) {
    // The CPU reference holds the NF4-rounded values in f32: the numerics of a 4-bit base.
    for (Tensor* t : projs) nf4_round_in_place(*t);
    return;
  }
  // GPU: the projections arrive as host bf16 tensors (staged by the loader); quantize them on the host
  // (bitsandbytes layout) and keep only the NF4 tensors on the device.
  std::array<Nf4Slot, kNumProj> slots;
  for (int p = 0; p < kNumProj; ++p) {
    Tensor& t = *projs[p];
    std::vector<uint16_t> h(static_cast<size_t>(t.numel()));
    copy_bytes(Tensor(h.data(), t.dtype, t.shape), t);
    kernels::Nf4Buffers q = kernels::nf4_quantize(Tensor(h.data(), t.dtype, t.shape));
    kernels::Nf4Weight hv = q.view();
    kernels::Nf4Weight dv = hv;
    auto up = [&](const Tensor& src, const char* what) {
      Tensor d = arena_->alloc(src.dtype, src.shape, what);
      copy_bytes(d, src);
      return d;
    };
    dv.packed = up(hv.packed, "nf4 codes");
    dv.absmax = up(hv.absmax, "nf4 absmax");
    dv.quant_map = up(hv.quant_map, "nf4 map");
    if (hv.nested) {
      dv.nested_absmax = up(hv.nested_absmax, "nf4 nested absmax");
      dv.nested_quant_map = up(hv.nested_quant_map, "nf4 nested map");
    }
    slots[static_cast<size_t>(p)].view = dv;
    t = Tensor();  // the projection now exists only as NF4
  }
  nf4_.push_back(slots);
}

void Nf4LayerCache::allocate(const Qwen2Model& model, Arena& arena) {
  if (!model.nf4()) return;
  const auto& c = model.config();
  const int64_t C = c.hidden_size, I = c.intermediate_size;
  const int64_t QD = c.num_attention_heads * c.head_dim, KVD = c.num_key_value_heads * c.head_dim;
  const DType act = model.act_dtype();
  scratch_.q_w = arena.alloc(act, {QD, C}, "nf4 scratch q");
  scratch_.k_w = arena.alloc(act, {KVD, C}, "nf4 scratch k");
  scratch_.v_w = arena.alloc(act, {KVD, C}, "nf4 scratch v");
  scratch_.o_w = arena.alloc(act, {C, QD}, "nf4 scratch o");
  scratch_.gate_w = arena.alloc(act, {I, C}, "nf4 scratch gate");
  scratch_.up_w = arena.alloc(act, {I, C}, "nf4 scratch up");
  scratch_.down_w = arena.alloc(act, {C, I}, "nf4 scratch down");
  loaded_ = -1;
}

const LayerWeights& Nf4LayerCache::get(const Qwen2Model& model, int64_t layer) {
  const LayerWeights& base = model.weights().layers[static_cast<size_t>(layer)];
  if (!model.nf4()) return base;
  if (loaded_ != layer) {
    scratch_.input_norm = base.input_norm;
    scratch_.post_norm = base.post_norm;
    scratch_.q_b = base.q_b;
    scratch_.k_b = base.k_b;
    scratch_.v_b = base.v_b;
    scratch_.q_norm = base.q_norm;
    scratch_.k_norm = base.k_norm;
    scratch_.o_b = base.o_b;
    scratch_.gate_b = base.gate_b;
    scratch_.up_b = base.up_b;
    scratch_.down_b = base.down_b;
    model.dequantize_layer(layer, scratch_);
    loaded_ = layer;
  }
  return scratch_;
}

void Qwen2Model::dequantize_layer(int64_t layer, LayerWeights& scratch) const {
  Tensor* projs[kNumProj] = {&scratch.q_w, &scratch.k_w, &scratch.v_w, &scratch.o_w,
                             &scratch.gate_w, &scratch.up_w, &scratch.down_w};
  std::array<kernels::Nf4Weight, kNumProj> qs;
  std::array<Tensor, kNumProj> outs;
  for (int p = 0; p < kNumProj; ++p) {
    qs[static_cast<size_t>(p)] = nf4_weight(layer, static_cast<Proj>(p));
    outs[static_cast<size_t>(p)] = *projs[p];
  }
  kernels::nf4_dequantize_batch(qs, outs);  // on CUDA one launch for the seven projections
}

// ---- batches ------------------------------------------------------------------------------------

int PackedBatch::max_seqlen() const {
  int mx = 0;
  for (size_t s = 0; s + 1 < cu_seqlens.size(); ++s) mx = std::max(mx, cu_seqlens[s + 1] - cu_seqlens[s]);
  return mx;
}

int64_t PackedBatch::counted() const {
  return std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t >= 0; });
}

PackedBatch PackedBatch::from_sequences(const std::vector<std::vector<int32_t>>& seqs) {
  PackedBatch b;
  b.cu_seqlens.push_back(0);
  for (const auto& s : seqs) {
    for (size_t i = 0; i < s.size(); ++i) {
      b.input_ids.push_back(s[i]);
      b.position_ids.push_back(static_cast<int32_t>(i));
      b.targets.push_back(i + 1 < s.size() ? s[i + 1] : -100);
    }
    b.cu_seqlens.push_back(static_cast<int32_t>(b.input_ids.size()));
  }
  return b;
}

std::string MemoryPlan::str() const {
  auto gib = [](size_t b) { return static_cast<double>(b) / 1073741824.0; };
  return fmt::format("weights {:.2f} GiB, LoRA + grads {:.3f} GiB, activations {:.2f} GiB, workspace {:.2f} GiB, total {:.2f} GiB",
                     gib(weights), gib(lora), gib(activations), gib(workspace), gib(total()));
}

// ---- runner buffers -----------------------------------------------------------------------------

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

struct Qwen2Runner::Buffers {
  Arena arena;
  Tensor ids, pos, targets, cu;  // i32 on device: [T], [T], [T], [S+1]
  std::vector<Tensor> residual;  // L+1 x [T,C]: the input of each layer, then the last layer's output
  std::vector<LayerActs> acts;   // one set (checkpointing) or L sets
  Tensor hf, rstdf;              // final norm output [T,C], [T]
  Tensor losses, correct;        // [T] f32, [T] i32
  Tensor ce_ws;                  // [chunk, V] f32
  Tensor tmp_c;                  // [T,C] scratch (o/down projection outputs)
  // backward
  Tensor dres, dh, dtmp_c;       // [T,C]
  Tensor dq, dk, dv, datt;       // [T,H*D], [T,KV*D] x2, [T,H*D]
  Tensor dq_pre, dk_pre;         // [T,H*D], [T,KV*D]: gradients of the q/k projections' outputs (q/k norm only)
  Tensor dm, dg, du;             // [T,I]
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
  std::map<GraphKey, void*> graphs;       // instantiated CUDA graphs (cudaGraphExec_t) of whole steps
  std::map<GraphKey, int> capture_failures;
  int64_t graph_launches = 0;
  uint64_t graphs_scratch = 0;  // kernels::cuda::scratch_generation() the graphs were captured with
  void drop_graphs() {
    for (auto& [key, exec] : graphs) kernels::graph::destroy(exec);
    graphs.clear();
  }
  // Graphs hold the kernels' scratch pointer: once the scratch has moved they are stale (recaptured on use).
  void drop_stale_graphs() {
    if (!graphs.empty() && graphs_scratch != kernels::graph::scratch_generation()) drop_graphs();
    if (graphs.empty()) graphs_scratch = kernels::graph::scratch_generation();
  }
  explicit Buffers(Device d) : arena(d) {}
  ~Buffers() { drop_graphs(); }
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;
};

Qwen2Runner::~Qwen2Runner() = default;

Qwen2Runner::Qwen2Runner(const Qwen2Model& model, LoraWeights* lora, const RunnerOptions& opts)
    : model_(model), lora_(lora), opts_(opts), buf_(std::make_unique<Buffers>(model.device())) {
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
  for (int64_t l = 0; l <= L; ++l) {
    // Inference needs only two residual buffers (ping-pong); training keeps every layer's input.
    if (!opts_.training && l >= 2) {
      b.residual.push_back(b.residual[static_cast<size_t>(l % 2)]);
      continue;
    }
    b.residual.push_back(a.alloc(act, {T, C}, "residual"));
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
    b.dg = a.alloc(act, {T, I}, "d gate");
    b.du = a.alloc(act, {T, I}, "d up");
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

namespace {
Tensor rows(const Tensor& t, int64_t T) { return t.data ? t.slice_rows(0, T) : t; }
// The q/k norm buffers of T tokens (rstd_q / rstd_k hold one entry a token and head).
QkNormActs qk_norm_rows(const QkNormActs& n, int64_t T, int64_t H, int64_t KV) {
  return {rows(n.q_pre, T), rows(n.k_pre, T), rows(n.rstd_q, T * H), rows(n.rstd_k, T * KV)};
}
// lse is [H, Tmax]: re-view the leading H*T elements as [H, T].
Tensor lse_view(const Tensor& lse, int64_t T) { return Tensor(lse.data, lse.dtype, {lse.dim(0), T}, lse.device); }
uint64_t mix_seed(uint64_t seed, int64_t layer, int p) {
  uint64_t x = seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(layer * kNumProj + p + 1));
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  return x ^ (x >> 29);
}
}  // namespace

const LayerWeights& Qwen2Runner::layer_weights(int64_t l) { return buf_->nf4.get(model_, l); }

void Qwen2Runner::proj_forward(int64_t l, Proj p, const Tensor& out, const Tensor& inp, const Tensor& xa,
                               uint64_t seed) {
  const LayerWeights& w = layer_weights(l);
  ops::linear_forward(out, inp, w.proj(p), w.bias(p));
  if (!lora_ || !lora_->has(l, p)) return;
  const float drop = lora_->config().dropout;
  Tensor x = inp;
  if (drop > 0.0f) {
    x = Tensor(buf_->drop_in.data, inp.dtype, inp.shape, inp.device);
    ops::dropout_forward(x, inp, drop, mix_seed(seed, l, static_cast<int>(p)), 0);
  }
  ops::lora_forward(out, xa, x, lora_->A(l, p), lora_->B(l, p), lora_->config().scale());
}

void Qwen2Runner::proj_backward(int64_t l, Proj p, const Tensor& dinp, bool accumulate, const Tensor& dout,
                                const Tensor& inp, const Tensor& xa, uint64_t seed) {
  const LayerWeights& w = layer_weights(l);
  ops::linear_backward_input(dinp, dout, w.proj(p), accumulate);
  if (!lora_ || !lora_->has(l, p)) return;
  const float drop = lora_->config().dropout;
  const float scale = lora_->config().scale();
  Tensor g = rows(buf_->lora_g, dout.dim(0));
  if (drop <= 0.0f) {
    ops::lora_backward(dinp, lora_->dA(l, p), lora_->dB(l, p), g, dout, inp, xa, lora_->A(l, p), lora_->B(l, p), scale);
    return;
  }
  const uint64_t s = mix_seed(seed, l, static_cast<int>(p));
  Tensor x(buf_->drop_in.data, inp.dtype, inp.shape, inp.device);
  ops::dropout_forward(x, inp, drop, s, 0);  // regenerate the forward's dropped input
  // gx = g @ A (accumulated by lora_backward into a zeroed scratch, in the activation dtype), then through the
  // dropout mask, then into dinp.
  Tensor gx(buf_->drop_grad.data, inp.dtype, inp.shape, inp.device);
  fill_zero(gx);
  ops::lora_backward(gx, lora_->dA(l, p), lora_->dB(l, p), g, dout, x, xa, lora_->A(l, p), lora_->B(l, p), scale);
  ops::dropout_backward(gx, gx, drop, s, 0);
  ops::add(dinp, dinp, gx);
}

namespace {
// The n LoRA matrices stacked from `first` on (LoraWeights keeps q,k,v and gate,up back to back): [n*R, IC].
Tensor stacked_rows(const Tensor& first, int n) {
  return Tensor(first.data, first.dtype, {n * first.dim(0), first.dim(1)}, first.device);
}
}  // namespace

void Qwen2Runner::projs_forward(int64_t l, Proj first, int n, const Tensor* outs, const Tensor& inp, size_t ai,
                                uint64_t seed, bool xa_only, const Tensor* residual) {
  Buffers& b = *buf_;
  LayerActs& a = b.acts[ai];
  const int64_t T = inp.dim(0);
  auto proj = [&](int i) { return static_cast<Proj>(static_cast<int>(first) + i); };
  if (!b.lora16) {
    if (residual) fail("projs_forward: a fused residual needs the bf16 LoRA path");
    for (int i = 0; i < n; ++i) proj_forward(l, proj(i), outs[i], inp, rows(a.xa[static_cast<int>(proj(i))], T), seed);
    return;
  }
  const LayerWeights& w = layer_weights(l);
  if (residual && (n != 1 || w.bias(first).data)) fail("projs_forward: a fused residual needs one projection, no bias");
  // With a residual: out = residual + x W^T (one GEMM), then out += LoRA. Without: out = LoRA first (a write
  // only), then the base GEMM accumulates onto it (beta = 1, bias in its epilogue): the wide outputs of gate/up
  // are not read and written a second time.
  if (!xa_only && residual) ops::linear_forward_residual(outs[0], inp, w.proj(first), *residual);
  const int64_t R = lora_->config().r;
  const float scale = lora_->config().scale();
  const Tensor xa_all = rows(a.xa16, T);
  auto xa = [&](Proj p, int64_t cols) { return ops::ColumnBlock{xa_all, b.xa_col[static_cast<size_t>(p)], cols}; };
  const bool stacked = n > 1 && (first == Proj::q ? lora_->stacked_qkv() : lora_->stacked_gate_up());
  if (stacked) ops::lora_xa(xa(first, n * R), inp, stacked_rows(lora_->A16(l, first), n));
  for (int i = 0; i < n; ++i) {
    const Proj p = proj(i);
    const bool has = lora_->has(l, p);
    if (has && !stacked) ops::lora_xa(xa(p, R), inp, lora_->A16(l, p));
    if (xa_only) continue;
    if (residual) {
      if (has) ops::lora_up(outs[i], xa(p, R), lora_->B16(l, p), scale);
    } else if (has) {
      ops::lora_up(outs[i], xa(p, R), lora_->B16(l, p), scale, false);
      ops::linear_forward_residual(outs[i], inp, w.proj(p), outs[i], w.bias(p));
    } else {
      ops::linear_forward(outs[i], inp, w.proj(p), w.bias(p));
    }
  }
}

void Qwen2Runner::projs_backward(int64_t l, Proj first, int n, const Tensor& dinp, bool accumulate,
                                 const Tensor* douts, const Tensor& inp, size_t ai, uint64_t seed) {
  Buffers& b = *buf_;
  LayerActs& a = b.acts[ai];
  const int64_t T = inp.dim(0);
  auto proj = [&](int i) { return static_cast<Proj>(static_cast<int>(first) + i); };
  if (!b.lora16) {
    for (int i = 0; i < n; ++i)
      proj_backward(l, proj(i), dinp, accumulate || i > 0, douts[i], inp, rows(a.xa[static_cast<int>(proj(i))], T),
                    seed);
    return;
  }
  const LayerWeights& w = layer_weights(l);
  // The LoRA part first: its dinp GEMM writes dinp (beta 0 unless accumulating), then the base GEMMs accumulate
  // onto it, so the (for down: wide) dinp is not read and rewritten by a separate small-K GEMM.
  bool written = accumulate;
  const int64_t R = lora_->config().r;
  const float scale = lora_->config().scale();
  const Tensor xa_all = rows(a.xa16, T);
  const bool stacked = n > 1 && (first == Proj::q ? lora_->stacked_qkv() : lora_->stacked_gate_up());
  // g: the stacked projections' g side by side ([T, n*R]), or one projection's at a time ([T, R]).
  const int64_t ld_g = stacked ? n * R : R;
  const Tensor g_all(b.g16.data, b.g16.dtype, {T, ld_g}, b.g16.device);
  for (int i = 0; i < n; ++i) {
    const Proj p = proj(i);
    if (!lora_->has(l, p)) continue;
    const ops::ColumnBlock g{g_all, stacked ? i * R : 0, R};
    const ops::ColumnBlock xa{xa_all, b.xa_col[static_cast<size_t>(p)], R};
    ops::lora_grad_b(lora_->dB(l, p), g, douts[i], xa, lora_->B16(l, p), scale);
    if (!stacked) {
      ops::lora_grad_a(lora_->dA(l, p), dinp, g, inp, lora_->A16(l, p), written);
      written = true;
    }
  }
  if (stacked) {
    ops::lora_grad_a(stacked_rows(lora_->dA(l, first), n), dinp, ops::ColumnBlock{g_all, 0, n * R}, inp,
                     stacked_rows(lora_->A16(l, first), n), written);
    written = true;
  }
  for (int i = 0; i < n; ++i) {
    ops::linear_backward_input(dinp, douts[i], w.proj(proj(i)), written);
    written = true;
  }
}

void Qwen2Runner::layer_forward(int64_t l, const Tensor& x_in, const Tensor& x_out, size_t ai, uint64_t seed,
                                bool recompute) {
  const Architecture& arch = model_.arch();
  const LayerWeights& w = layer_weights(l);
  Buffers& b = *buf_;
  const int64_t T = b.T, H = arch.heads, KV = arch.kv_heads, D = arch.head_dim;
  LayerActs& a = b.acts[ai];
  const float eps = arch.rms_eps;
  Tensor h1 = rows(a.h1, T), q = rows(a.q, T), k = rows(a.k, T), v = rows(a.v, T), att = rows(a.att, T);
  Tensor x2 = rows(a.x2, T), h2 = rows(a.h2, T), g = rows(a.g, T), u = rows(a.u, T), m = rows(a.m, T);
  Tensor tmp = rows(b.tmp_c, T), pos = rows(b.pos, T), cu = rows(b.cu, b.S + 1);

  ops::rmsnorm_forward(h1, rows(a.rstd1, T), x_in, w.input_norm, eps);
  // A recomputation with the attention outputs kept (q, k, v, out, lse and the q/k/v LoRA xa) starts at o.
  if (!(recompute && b.keep_attention)) {
    const QkNormActs qkn = qk_norm_rows(a.qkn, T, H, KV);
    // With q/k norm the projections write the pre-norm values; attention_inputs_forward then writes q and k.
    const Tensor qkv[3] = {arch.qk_norm ? qkn.q_pre : q, arch.qk_norm ? qkn.k_pre : k, v};
    projs_forward(l, Proj::q, 3, qkv, h1, ai, seed);
    attention_inputs_forward(arch, w, q, k, pos, qkn);
    ops::attention_forward(att.view({T, H, D}), lse_view(a.lse, T), q.view({T, H, D}), k.view({T, KV, D}),
                           v.view({T, KV, D}), cu, b.max_seqlen, arch.attention_scale(), arch.sliding_window);
  }
  // The bf16 LoRA path adds the residual in the GEMM; a projection with a bias (Llama/Qwen3 attention_bias, Llama
  // mlp_bias) takes the unfused route.
  if (b.lora16 && !w.o_b.data) {
    projs_forward(l, Proj::o, 1, &x2, att, ai, seed, false, &x_in);  // x2 = x_in + o(att), added in the GEMM
  } else {
    projs_forward(l, Proj::o, 1, &tmp, att, ai, seed);
    ops::add(x2, x_in, tmp);
  }
  ops::rmsnorm_forward(h2, rows(a.rstd2, T), x2, w.post_norm, eps);
  const Tensor gu[2] = {g, u};
  projs_forward(l, Proj::gate, 2, gu, h2, ai, seed);
  ops::swiglu_forward(m, g, u);
  if (b.lora16 && !w.down_b.data) {
    // x_out = x2 + down(m), added in the GEMM. The backward of down reads only m and its LoRA xa: a
    // recomputation stops there.
    projs_forward(l, Proj::down, 1, &x_out, m, ai, seed, recompute, &x2);
  } else {
    projs_forward(l, Proj::down, 1, &tmp, m, ai, seed);
    ops::add(x_out, x2, tmp);
  }
}

// On entry b.dres holds the gradient of the layer's output; on exit, of its input (when need_dinput).
void Qwen2Runner::layer_backward(int64_t l, const Tensor& x_in, size_t ai, uint64_t seed, bool need_dinput) {
  const Architecture& arch = model_.arch();
  const LayerWeights& w = layer_weights(l);
  Buffers& b = *buf_;
  const int64_t T = b.T, H = arch.heads, KV = arch.kv_heads, D = arch.head_dim;
  LayerActs& a = b.acts[ai];
  Tensor h1 = rows(a.h1, T), q = rows(a.q, T), k = rows(a.k, T), v = rows(a.v, T), att = rows(a.att, T);
  Tensor x2 = rows(a.x2, T), h2 = rows(a.h2, T), g = rows(a.g, T), u = rows(a.u, T), m = rows(a.m, T);
  Tensor dres = rows(b.dres, T), dh = rows(b.dh, T), dm = rows(b.dm, T), dg = rows(b.dg, T), du = rows(b.du, T);
  Tensor dq = rows(b.dq, T), dk = rows(b.dk, T), dv = rows(b.dv, T), datt = rows(b.datt, T);
  Tensor pos = rows(b.pos, T), cu = rows(b.cu, b.S + 1);

  // MLP: x_out = x2 + down(swiglu(gate(h2), up(h2))), h2 = rmsnorm(x2)
  projs_backward(l, Proj::down, 1, dm, false, &dres, m, ai, seed);
  ops::swiglu_backward(dg, du, dm, g, u);
  const Tensor dgu[2] = {dg, du};
  projs_backward(l, Proj::gate, 2, dh, false, dgu, h2, ai, seed);
  ops::rmsnorm_backward(dres, dh, x2, w.post_norm, rows(a.rstd2, T), true);  // dres = d x2
  // Attention: x2 = x_in + o(attn(q', k', v(h1))), q', k' = attention_inputs(q(h1), k(h1)), h1 = rmsnorm(x_in)
  projs_backward(l, Proj::o, 1, datt, false, &dres, att, ai, seed);
  ops::attention_backward(dq.view({T, H, D}), dk.view({T, KV, D}), dv.view({T, KV, D}), datt.view({T, H, D}),
                          q.view({T, H, D}), k.view({T, KV, D}), v.view({T, KV, D}), att.view({T, H, D}),
                          lse_view(a.lse, T), cu, b.max_seqlen, arch.attention_scale(), arch.sliding_window);
  const QkGrads dqk = attention_inputs_backward(arch, w, dq, dk, pos, qk_norm_rows(a.qkn, T, H, KV),
                                                rows(b.dq_pre, T), rows(b.dk_pre, T));
  const Tensor dqkv[3] = {dqk.dq, dqk.dk, dv};
  projs_backward(l, Proj::q, 3, dh, false, dqkv, h1, ai, seed);
  if (need_dinput) ops::rmsnorm_backward(dres, dh, x_in, w.input_norm, rows(a.rstd1, T), true);  // dres = d x_in
}

void Qwen2Runner::run_layers_forward(bool keep_all, uint64_t seed) {
  Buffers& b = *buf_;
  const auto& w = model_.weights();
  const int64_t L = model_.config().num_hidden_layers, T = b.T;
  ops::embedding_forward(rows(b.residual[0], T), rows(b.ids, T), w.embed);
  for (int64_t l = 0; l < L; ++l)
    layer_forward(l, rows(b.residual[static_cast<size_t>(l)], T), rows(b.residual[static_cast<size_t>(l + 1)], T),
                  keep_all || b.keep_attention ? static_cast<size_t>(l) : 0, seed);
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

Qwen2Runner::GraphKey Qwen2Runner::pad_for_graph(const PackedBatch& batch, PackedBatch& padded) const {
  const int64_t bucket = std::max<int64_t>(opts_.graph_bucket, 1);
  const int64_t T = batch.tokens();
  const int64_t Tp = std::min((T + bucket - 1) / bucket * bucket, opts_.max_tokens);
  padded = batch;
  // The padding extends the last sequence: causal attention never lets a token see later ones, and the padding's
  // targets are ignored, so no real token's loss or gradient changes (the padding's gradients are exactly zero)
  // and the batch keeps its number of sequences.
  int32_t pos = batch.position_ids.empty() ? 0 : batch.position_ids.back() + 1;
  for (int64_t i = T; i < Tp; ++i) {
    padded.input_ids.push_back(0);
    padded.position_ids.push_back(pos++);
    padded.targets.push_back(-100);
  }
  padded.cu_seqlens.back() = static_cast<int32_t>(Tp);
  const int64_t longest = std::max<int64_t>(padded.max_seqlen(), 1);
  GraphKey key;
  key.tokens = Tp;
  key.sequences = static_cast<int>(padded.cu_seqlens.size()) - 1;
  key.max_seqlen = static_cast<int>(std::min((longest + bucket - 1) / bucket * bucket, Tp));
  return key;
}

bool Qwen2Runner::capture(const GraphKey& key) {
  Buffers& b = *buf_;
  // The graph must dequantize (NF4) whatever it uses: start from an empty layer cache, and leave it empty, since
  // the host cannot know which layer the scratch holds when a graph replays.
  b.nf4.invalidate();
  b.drop_stale_graphs();
  kernels::graph::begin_capture();
  void* exec = nullptr;
  try {
    enqueue_step(true, 0);
    exec = kernels::graph::end_capture();
  } catch (const std::exception& e) {
    // E.g. a workspace that had to grow (cudaMalloc and synchronisation are not allowed while capturing).
    kernels::graph::abort_capture();
    b.nf4.invalidate();
    ++b.capture_failures[key];
    log::debug("runner: capturing the step of {} tokens as a CUDA graph failed ({}); running it without", key.tokens,
               e.what());
    return false;
  }
  b.nf4.invalidate();
  b.graphs.emplace(key, exec);
  return true;
}

StepStats Qwen2Runner::forward_backward(const PackedBatch& batch, bool backward, float grad_scale,
                                        uint64_t dropout_seed) {
  if (backward && !opts_.training) fail("this runner was built for inference: no backward buffers");
  if (backward && !lora_) fail("backward needs LoRA weights: the base model is frozen");
  Buffers& b = *buf_;
  if (backward && use_graphs()) {
    PackedBatch padded;
    const GraphKey key = pad_for_graph(batch, padded);
    upload(padded, grad_scale);
    b.max_seqlen = key.max_seqlen;
    b.drop_stale_graphs();
    auto it = b.graphs.find(key);
    if (it == b.graphs.end() && static_cast<int>(b.graphs.size()) < opts_.max_graphs) {
      auto f = b.capture_failures.find(key);
      if ((f == b.capture_failures.end() || f->second < 2) && capture(key)) it = b.graphs.find(key);
    }
    if (it != b.graphs.end()) {
      kernels::graph::launch(it->second);
      ++b.graph_launches;
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
    if (static_cast<int>(b.graphs.size()) >= opts_.max_graphs) break;
    PackedBatch padded;
    const GraphKey key = pad_for_graph(sequence(std::min(t, opts_.max_tokens)), padded);
    if (b.graphs.count(key)) continue;
    upload(padded, 0.0f);
    b.max_seqlen = key.max_seqlen;
    capture(key);
  }
  return static_cast<int>(b.graphs.size());
}

int Qwen2Runner::graphs() const { return static_cast<int>(buf_->graphs.size()); }
int64_t Qwen2Runner::graph_launches() const { return buf_->graph_launches; }

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
