#include "infer/generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "base/error.h"
#include "kernels/decode_ops.h"
#include "kernels/graph.h"
#include "kernels/ops.h"
#include "model/attention_inputs.h"

namespace cotune::infer {

namespace ops = cotune::kernels;
using model::Proj;

namespace {
Tensor rows(const Tensor& t, int64_t T) { return t.data ? t.slice_rows(0, T) : t; }
}  // namespace

GenerationOptions GenerationOptions::from_model_folder(const std::string& model_dir, const text::Tokenizer* tok) {
  GenerationOptions o;
  GenerationConfig g = load_generation_config(model_dir);
  o.sampling = g.sampling;
  if (g.max_new_tokens) o.max_new_tokens = *g.max_new_tokens;
  o.eos_ids = g.eos_token_ids;
  if (tok && tok->eos_id() >= 0 && std::find(o.eos_ids.begin(), o.eos_ids.end(), tok->eos_id()) == o.eos_ids.end())
    o.eos_ids.push_back(tok->eos_id());
  return o;
}

constexpr int64_t kDecodeChunk = 32;   // device decode steps between two reads of the new ids (at most)
constexpr int64_t kArgmaxParts = 256;  // >= ops::argmax_partials()

// Activation buffers for up to Tmax tokens a forward, and the KV cache (one [S, N, KV, D] pair a layer).
struct Generator::Buffers {
  Arena arena;
  Tensor ids, slot, pos;        // i32 [Tmax]
  Tensor x, h, tmp;             // [Tmax, C]
  Tensor rstd;                  // f32 [Tmax]
  Tensor q, k, v, att;          // [Tmax, H*D], [Tmax, KV*D] x2, [Tmax, H*D]
  Tensor g, u, m;               // [Tmax, I]
  Tensor xa;                    // f32 [Tmax, R] (LoRA)
  Tensor sel, sel_h, sel_rstd;  // [B, C] x2, [B]: the rows whose logits are wanted
  Tensor logits;                // f32 [B, V]
  Tensor dec_tokens, dec_count;  // i32 [kDecodeChunk], [1]: ids of the device decode loop since the last read
  Tensor am_v, am_i;             // f32 / i32 [kArgmaxParts]: arg-max partials
  Tensor sel_ids, sel_params;    // i32 [Bpad], [Bpad, 8]: the rows' chosen ids and their SelectParams
  Tensor sel_scratch;            // i64 [Bpad, V] (CUDA): the sampled rows' weights (doubles)
  ops::DecodeAttentionWork att_work;  // fused decode attention: partial results and (zeroed) counters
  int64_t Tmax = 0;
  int64_t Bpad = 0;  // rows of the largest decode bucket (max_batch rounded up to a power of two)
  std::unique_ptr<Arena> cache_arena;
  std::vector<Tensor> k_cache, v_cache;  // L x [P, page, KV, D]: the page pool
  Tensor block_table;                    // i32 [S + 1, max_pages] (the padding slot last)
  KvPageTable pages;                     // its host side
  int64_t pad_pages = 0;                 // pages the padding slot holds
  int64_t cache_slots = 0, cache_positions = 0;
  model::Nf4LayerCache nf4;  // NF4 base on CUDA: one layer's projections dequantized (bf16)
  model::QkNormActs qkn;     // Qwen3's q/k norm: pre-norm q, k [Tmax, H*D], [Tmax, KV*D] and their rstd
  explicit Buffers(Device d) : arena(d) {}
};

Generator::~Generator() { drop_graphs(); }

void Generator::drop_graphs() {
  for (void*& g : graphs_) {
    kernels::graph::destroy(g);
    g = nullptr;
  }
  graph_uses_.assign(graphs_.size(), 0);
}

SelectParams select_params(const SamplingOptions& opts, uint64_t draw) {
  SelectParams p;
  p.greedy = opts.do_sample ? 0 : 1;
  p.temperature = opts.temperature;
  p.top_p = opts.top_p;
  p.top_k = static_cast<int32_t>(std::min<int64_t>(opts.top_k, std::numeric_limits<int32_t>::max()));
  p.seed = opts.seed;
  p.draw = draw;
  return p;
}

bool device_selectable(const SamplingOptions& opts) {
  return !(opts.repetition_penalty < 1.0f) && !(opts.repetition_penalty > 1.0f);
}

#ifdef COTUNE_WITH_CUDA
namespace {
bool cuda_parts_ok() { return ops::argmax_partials() <= kArgmaxParts; }
}  // namespace
#endif

Generator::Generator(const model::Qwen2Model& model, const model::LoraWeights* lora, const GeneratorOptions& opts)
    : model_(model), lora_(lora), opts_(opts), buf_(std::make_unique<Buffers>(model.device())) {
  if (opts_.max_batch <= 0) fail("generator max_batch must be positive, got {}", opts_.max_batch);
  if (opts_.prefill_chunk <= 0) fail("generator prefill_chunk must be positive, got {}", opts_.prefill_chunk);
  const auto& c = model.config();
  argmax_vocab_ = c.vocab_size;
  if (lora && lora->num_layers() != c.num_hidden_layers)
    fail("LoRA weights have {} layers, the model {}", lora->num_layers(), c.num_hidden_layers);
  int64_t Bpad = 1;
  while (Bpad < opts_.max_batch) Bpad *= 2;
  const int64_t T = std::max(opts_.prefill_chunk, Bpad), B = Bpad;
  const int64_t C = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t QD = c.num_attention_heads * c.head_dim, KVD = c.num_key_value_heads * c.head_dim;
  const DType act = model.act_dtype();
  Buffers& b = *buf_;
  Arena& a = b.arena;
  b.Tmax = T;
  b.Bpad = Bpad;
  int n_buckets = 1;
  while ((int64_t{1} << (n_buckets - 1)) < Bpad) ++n_buckets;
  graphs_.assign(static_cast<size_t>(n_buckets), nullptr);
  graph_uses_.assign(static_cast<size_t>(n_buckets), 0);
  b.ids = a.alloc(DType::i32, {T}, "ids");
  b.slot = a.alloc(DType::i32, {T}, "slots");
  b.pos = a.alloc(DType::i32, {T}, "positions");
  b.x = a.alloc(act, {T, C}, "residual");
  b.h = a.alloc(act, {T, C}, "normed");
  b.tmp = a.alloc(act, {T, C}, "projection out");
  b.rstd = a.alloc(DType::f32, {T}, "rstd");
  b.q = a.alloc(act, {T, QD}, "q");
  b.k = a.alloc(act, {T, KVD}, "k");
  b.v = a.alloc(act, {T, KVD}, "v");
  b.att = a.alloc(act, {T, QD}, "attention out");
  if (model.arch().qk_norm) {
    b.qkn.q_pre = a.alloc(act, {T, QD}, "q before q_norm");
    b.qkn.k_pre = a.alloc(act, {T, KVD}, "k before k_norm");
    b.qkn.rstd_q = a.alloc(DType::f32, {T * c.num_attention_heads}, "q_norm rstd");
    b.qkn.rstd_k = a.alloc(DType::f32, {T * c.num_key_value_heads}, "k_norm rstd");
  }
  b.g = a.alloc(act, {T, I}, "gate");
  b.u = a.alloc(act, {T, I}, "up");
  b.m = a.alloc(act, {T, I}, "swiglu");
  if (lora) b.xa = a.alloc(DType::f32, {T, lora->config().r}, "lora xa");
  b.sel = a.alloc(act, {B, C}, "selected rows");
  b.sel_h = a.alloc(act, {B, C}, "selected rows normed");
  b.sel_rstd = a.alloc(DType::f32, {B}, "selected rstd");
  b.logits = a.alloc(DType::f32, {B, V}, "logits");
  b.dec_tokens = a.alloc(DType::i32, {kDecodeChunk}, "decoded ids");
  b.dec_count = a.alloc(DType::i32, {1}, "decoded count");
  b.am_v = a.alloc(DType::f32, {kArgmaxParts}, "argmax values");
  b.am_i = a.alloc(DType::i32, {kArgmaxParts}, "argmax ids");
  b.sel_ids = a.alloc(DType::i32, {B}, "selected ids");
  b.sel_params = a.alloc(DType::i32, {B, 8}, "selection parameters");
  if (model.device() == Device::cuda) b.sel_scratch = a.alloc(DType::i64, {B, V}, "selection weights");
#ifdef COTUNE_WITH_CUDA
  if (model.device() == Device::cuda && cuda_parts_ok() == false) fail("generator: arg-max partials do not fit");
#endif
  b.nf4.allocate(model, a);
  // The fused step implements the Qwen2-era layer (q/k/v bias only, no q/k norm, no window; any rope variant).
  fused_ = opts_.fused_decode && model.device() == Device::cuda && act == DType::bf16 && !lora &&
           model.arch().plain_layer() &&
           ops::decode_step_fusable(C, I, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
                                    model.nf4() ? model.nf4_weight(0, Proj::q).blocksize : 0);
  // Decode rows (each the newest token of its slot) take the fused rope + cache write + attention kernel.
  batched_attention_ = opts_.fused_decode && model.device() == Device::cuda && act == DType::bf16 &&
                       model.arch().plain_layer() && c.head_dim % 64 == 0 && c.head_dim <= 256;
  if (fused_ || batched_attention_) {
    const int64_t heads = B * c.num_attention_heads;
    b.att_work.partial =
        a.alloc(DType::f32, {ops::decode_attention_partial_floats(B, c.num_attention_heads, c.head_dim)}, "attention partials");
    b.att_work.counters = a.alloc(DType::i32, {heads}, "attention counters");
    std::vector<int32_t> zero(static_cast<size_t>(heads), 0);
    copy_bytes(b.att_work.counters, Tensor(zero.data(), DType::i32, {heads}));
  }
}

const model::LayerWeights& Generator::layer_weights(int64_t l) { return buf_->nf4.get(model_, l); }

void Generator::reserve_cache(int64_t slots, int64_t positions) {
  Buffers& b = *buf_;
  slots += 1;  // the padding slot (pad_slot()): rows that fill a decode bucket write there
  if (slots <= b.cache_slots && positions <= b.cache_positions) return;
  drop_graphs();  // they hold the old cache's addresses
  const auto& c = model_.config();
  slots = std::max(slots, b.cache_slots);
  positions = std::max(positions, b.cache_positions);
  b.k_cache.clear();
  b.v_cache.clear();
  b.block_table = Tensor();
  b.cache_arena.reset();
  b.cache_arena = std::make_unique<Arena>(model_.device());
  // The pool: kv_pages pages (default: every slot at full capacity) plus the padding slot's, which hold the
  // positions [0, min(Bpad, positions)) that padding rows write.
  const int64_t page = opts_.kv_page;
  const int64_t max_pages = (positions + page - 1) / page;
  b.pad_pages = (std::min(b.Bpad, positions) + page - 1) / page;
  const int64_t pool = (opts_.kv_pages > 0 ? opts_.kv_pages : (slots - 1) * max_pages) + b.pad_pages;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    b.k_cache.push_back(b.cache_arena->alloc(model_.act_dtype(), {pool, page, c.num_key_value_heads, c.head_dim}, "k cache"));
    b.v_cache.push_back(b.cache_arena->alloc(model_.act_dtype(), {pool, page, c.num_key_value_heads, c.head_dim}, "v cache"));
  }
  b.block_table = b.cache_arena->alloc(DType::i32, {slots, max_pages}, "KV block table");
  b.pages = KvPageTable(slots, max_pages, page, pool);
  b.pages.grow(static_cast<int32_t>(slots - 1), std::min(b.Bpad, positions));
  b.cache_slots = slots;
  b.cache_positions = positions;
  sync_block_table();
}

void Generator::sync_block_table() {
  Buffers& b = *buf_;
  // One copy of the whole table (a few KiB) when any row changed: cheaper than a copy a row.
  if (b.pages.take_changed().empty()) return;
  copy_bytes(b.block_table, Tensor(const_cast<int32_t*>(b.pages.table().data()), DType::i32,
                                   {b.pages.slots(), b.pages.max_pages()}));
}

void Generator::grow_slot(int32_t slot, int64_t positions) {
  Buffers& b = *buf_;
  if (!b.pages.grow(slot, positions))
    fail("KV cache: sequence {} needs {} pages of {} positions for {} positions; {} of the pool's {} are free", slot,
         b.pages.pages_for(positions) - b.pages.pages_held(slot), b.pages.page(), positions, b.pages.pages_free(),
         b.pages.pages_total() - b.pad_pages);
}

kernels::KvPages Generator::kv_layout() const { return kernels::KvPages{buf_->block_table, buf_->pages.page()}; }

const KvPageTable& Generator::kv_pages() const { return buf_->pages; }
int64_t Generator::pad_pages() const { return buf_->pad_pages; }

void Generator::proj(int64_t l, Proj p, const Tensor& out, const Tensor& inp, int64_t T, bool gemm_rows) {
  // Decode-size steps on CUDA: a GEMV kernel (NF4: dequantized in registers, no bf16 copy of the layer). With 16-bit
  // weights, batched decode rows (gemm_rows, T >= 2) take the GEMM: on the H200 the multi-row GEMV is slower from 2
  // rows on (1.5B: 8 rows 5.6 ms a step against 2.5 ms for 16 rows through cuBLASLt).
  const model::LayerWeights& base = model_.weights().layers[static_cast<size_t>(l)];
  const bool small = model_.nf4() ? ops::small_nf4_linear_forward(out, inp, model_.nf4_weight(l, p), base.bias(p))
                     : gemm_rows && T >= 2 ? false
                                           : ops::small_linear_forward(out, inp, base.proj(p), base.bias(p));
  if (!small) {
    const model::LayerWeights& w = layer_weights(l);
    ops::linear_forward(out, inp, w.proj(p), w.bias(p));
  }
  if (lora_ && lora_->has(l, p))
    ops::lora_forward(out, buf_->xa.slice_rows(0, T), inp, lora_->A(l, p), lora_->B(l, p), lora_->config().scale());
}

void Generator::residual_proj(int64_t l, Proj p, const Tensor& x, const Tensor& tmp, const Tensor& inp, int64_t T,
                              bool decode_rows) {
#ifdef COTUNE_WITH_CUDA
  // Decode rows past the GEMV sizes: the residual enters the GEMM's epilogue (one launch, one rounding fewer).
  if (decode_rows && (T > 8 || (T >= 2 && !model_.nf4())) && model_.device() == Device::cuda &&
      model_.act_dtype() == DType::bf16) {
    const model::LayerWeights& w = layer_weights(l);
    ops::linear_forward_residual(x, inp, w.proj(p), x, w.bias(p));
    if (lora_ && lora_->has(l, p))
      ops::lora_forward(x, buf_->xa.slice_rows(0, T), inp, lora_->A(l, p), lora_->B(l, p), lora_->config().scale());
    return;
  }
#endif
  proj(l, p, tmp, inp, T, decode_rows);
  ops::add(x, x, tmp);
}

std::vector<float> Generator::forward(const std::vector<int32_t>& ids, const std::vector<int32_t>& slots,
                                      const std::vector<int32_t>& positions, const std::vector<int64_t>& want) {
  const int64_t n = forward_device(ids, slots, positions, want);
  if (n == 0) return {};
  const int64_t V = model_.config().vocab_size;
  std::vector<float> out(static_cast<size_t>(n * V));
  copy_bytes(Tensor(out.data(), DType::f32, {n, V}), buf_->logits.slice_rows(0, n));
  return out;
}

int64_t Generator::forward_device(const std::vector<int32_t>& ids, const std::vector<int32_t>& slots,
                                  const std::vector<int32_t>& positions, const std::vector<int64_t>& want) {
  Buffers& b = *buf_;
  const auto& c = model_.config();
  const auto T = static_cast<int64_t>(ids.size());
  const auto n = static_cast<int64_t>(want.size());
  if (T == 0 || T > b.Tmax) fail("generator forward of {} tokens (buffers hold {})", T, b.Tmax);
  if (n > opts_.max_batch) fail("generator: {} logit rows requested, at most {}", n, opts_.max_batch);
  const int64_t V = c.vocab_size;
  auto host = [](const std::vector<int32_t>& v) {
    return Tensor(const_cast<int32_t*>(v.data()), DType::i32, {static_cast<int64_t>(v.size())});
  };
  Tensor idt = b.ids.slice_rows(0, T), st = b.slot.slice_rows(0, T), pt = b.pos.slice_rows(0, T);
  copy_bytes(idt, host(ids));
  copy_bytes(st, host(slots));
  copy_bytes(pt, host(positions));
  for (int32_t id : ids)
    if (id < 0 || id >= V) fail("token id {} is outside the model's vocabulary of {}", id, V);

  sync_block_table();
  run_layers(T);
  if (n == 0) return 0;
  Tensor x = b.x.slice_rows(0, T);
  for (int64_t j = 0; j < n; ++j) copy_bytes(b.sel.slice_rows(j, j + 1), x.slice_rows(want[static_cast<size_t>(j)], want[static_cast<size_t>(j)] + 1));
  compute_logits(b.sel.slice_rows(0, n), n);
  return n;
}

std::vector<int32_t> Generator::select_rows(int64_t n, const std::vector<SelectParams>& params) {
  Buffers& b = *buf_;
  copy_bytes(b.sel_params.slice_rows(0, n), Tensor(const_cast<SelectParams*>(params.data()), DType::i32, {n, 8}));
  ops::select_tokens(b.sel_ids.slice_rows(0, n), b.logits.slice_rows(0, n), b.sel_params.slice_rows(0, n),
                     b.sel_scratch, argmax_vocab_);
  std::vector<int32_t> out(static_cast<size_t>(n));
  copy_bytes(Tensor(out.data(), DType::i32, {n}), b.sel_ids.slice_rows(0, n));
  return out;
}

ops::DecodeProj Generator::decode_proj(int64_t l, Proj p) const {
  const model::LayerWeights& base = model_.weights().layers[static_cast<size_t>(l)];
  ops::DecodeProj d;
  if (model_.nf4()) d.nf4 = &model_.nf4_weight(l, p);
  else d.weight = base.proj(p);
  d.bias = base.bias(p);
  return d;
}

// The decode lowerings of the layer spec (model/layer.h): the same blocks as training's layer_forward
// (model/layer_train.cpp), x += out(mixer(in_1(h), ..., in_n(h))), h = rmsnorm(x) * norm, with the KV cache as the
// attention's memory. run_layers_fused lowers each block to the fused decode kernels (batch 1, the Qwen2-era layer),
// run_layers to the general ops (any family, any number of rows).
void Generator::run_layers_fused() {
  Buffers& b = *buf_;
  const model::LayerSpec& spec = model_.layer_spec();
  const model::AttentionSpec& at = spec.attention;
  const int64_t H = at.heads, KV = at.kv_heads, D = at.head_dim;
  Tensor idt = b.ids.slice_rows(0, 1), st = b.slot.slice_rows(0, 1), pt = b.pos.slice_rows(0, 1);
  Tensor x = b.x.slice_rows(0, 1), q = b.q.slice_rows(0, 1), k = b.k.slice_rows(0, 1), v = b.v.slice_rows(0, 1);
  Tensor att = b.att.slice_rows(0, 1), m = b.m.slice_rows(0, 1);
  const auto& w = model_.weights();
  ops::embedding_forward(x, idt, w.embed);
  for (int64_t l = 0; l < model_.config().num_hidden_layers; ++l) {
    const model::LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    const auto li = static_cast<size_t>(l);
    for (const model::BlockSpec& block : spec.blocks) {
      // The norm and the block's input projections in one kernel, then the mixer, then x += out(mixed).
      const Tensor& norm = lw.norm(block.norm);
      if (block.mixer == model::Mixer::attention) {
        ops::decode_norm_qkv(q, k, v, x, norm, spec.rms_eps, decode_proj(l, block.in(0)), decode_proj(l, block.in(1)),
                             decode_proj(l, block.in(2)));
        ops::decode_rope_attention(att.view({1, H, D}), q.view({1, H, D}), k.view({1, KV, D}), v.view({1, KV, D}),
                                   b.k_cache[li], b.v_cache[li], st, pt, at.rope, at.scale, b.att_work, kv_layout());
        ops::decode_linear_residual(x, att, decode_proj(l, block.out));
      } else {
        ops::decode_norm_swiglu(m, x, norm, spec.rms_eps, decode_proj(l, block.in(0)), decode_proj(l, block.in(1)));
        ops::decode_linear_residual(x, m, decode_proj(l, block.out));
      }
    }
  }
}

void Generator::mixer_forward(int64_t l, const model::BlockSpec& block, const std::array<Tensor, 3>& in,
                              const Tensor& mixed, int64_t T, bool decode_rows) {
  if (block.mixer == model::Mixer::gated_mlp) {
    ops::swiglu_forward(mixed, in[0], in[1]);  // Activation::silu
    return;
  }
  Buffers& b = *buf_;
  const model::AttentionSpec& at = model_.layer_spec().attention;
  const int64_t H = at.heads, KV = at.kv_heads, D = at.head_dim;
  const auto li = static_cast<size_t>(l);
  Tensor st = b.slot.slice_rows(0, T), pt = b.pos.slice_rows(0, T);
  const Tensor &q = in[0], &k = in[1], &v = in[2];
  Tensor q3 = q.view({T, H, D}), k3 = k.view({T, KV, D}), v3 = v.view({T, KV, D});
  if (decode_rows && batched_attention_) {  // rope, cache write and attention in one kernel
    ops::decode_rope_attention(mixed.view({T, H, D}), q3, k3, v3, b.k_cache[li], b.v_cache[li], st, pt, at.rope,
                               at.scale, b.att_work, kv_layout());
    return;
  }
  // q, k = attention_inputs(q(h), k(h)): the family's q/k norm and rope (model/attention_inputs.h)
  const model::QkNormActs qkn = {rows(b.qkn.q_pre, T), rows(b.qkn.k_pre, T), rows(b.qkn.rstd_q, T * H),
                                 rows(b.qkn.rstd_k, T * KV)};
  model::attention_inputs_forward(model_.arch(), layer_weights(l), q, k, pt, qkn);
  ops::kv_cache_write(b.k_cache[li], b.v_cache[li], k3, v3, st, pt, kv_layout());
  ops::cached_attention_forward(mixed.view({T, H, D}), q3, b.k_cache[li], b.v_cache[li], st, pt, at.scale,
                                at.sliding_window, kv_layout());
}

void Generator::run_layers(int64_t T, bool decode_rows) {
  if (fused_ && T == 1) {
    run_layers_fused();
    return;
  }
  Buffers& b = *buf_;
  const model::LayerSpec& spec = model_.layer_spec();
  Tensor idt = b.ids.slice_rows(0, T);
  Tensor x = b.x.slice_rows(0, T), h = b.h.slice_rows(0, T), tmp = b.tmp.slice_rows(0, T);
  Tensor rstd = b.rstd.slice_rows(0, T);
  // Each block's mixer inputs, what its input projections write (with q/k norm: the pre-norm q and k, which
  // attention_inputs_forward then normalises into q and k), and its output.
  const bool qk_norm = spec.attention.qk_norm;
  const std::array<Tensor, 3> att_in = {b.q.slice_rows(0, T), b.k.slice_rows(0, T), b.v.slice_rows(0, T)};
  const std::array<Tensor, 3> att_proj = {qk_norm ? rows(b.qkn.q_pre, T) : att_in[0],
                                          qk_norm ? rows(b.qkn.k_pre, T) : att_in[1], att_in[2]};
  const std::array<Tensor, 3> mlp_in = {b.g.slice_rows(0, T), b.u.slice_rows(0, T), Tensor()};
  const auto& w = model_.weights();
  ops::embedding_forward(x, idt, w.embed);
  for (int64_t l = 0; l < model_.config().num_hidden_layers; ++l) {
    const model::LayerWeights& lw = w.layers[static_cast<size_t>(l)];  // norms (NF4: the base keeps them too)
    for (const model::BlockSpec& block : spec.blocks) {
      const bool attention = block.mixer == model::Mixer::attention;
      const std::array<Tensor, 3>& proj_out = attention ? att_proj : mlp_in;
      const Tensor mixed = attention ? b.att.slice_rows(0, T) : b.m.slice_rows(0, T);
      ops::rmsnorm_forward(h, rstd, x, lw.norm(block.norm), spec.rms_eps);
      for (int i = 0; i < block.n_in; ++i) proj(l, block.in(i), proj_out[static_cast<size_t>(i)], h, T, decode_rows);
      mixer_forward(l, block, attention ? att_in : mlp_in, mixed, T, decode_rows);
      residual_proj(l, block.out, x, tmp, mixed, T, decode_rows);
    }
  }
}

void Generator::compute_logits(const Tensor& sel, int64_t n, bool gemm_rows) {
  Buffers& b = *buf_;
  const auto& w = model_.weights();
  const float eps = model_.arch().rms_eps;
  Tensor sel_h = b.sel_h.slice_rows(0, n), logits = b.logits.slice_rows(0, n);
  ops::rmsnorm_forward(sel_h, b.sel_rstd.slice_rows(0, n), sel, w.final_norm, eps);
  if (model_.device() == Device::cpu) {
    ops::linear_forward(logits, sel_h, w.lm_head, Tensor());
  } else if (fused_ && n == 1) {
    ops::DecodeProj head;
    head.weight = w.lm_head;
    ops::decode_logits(logits, sel_h, head);
  } else if ((gemm_rows && n >= 2) || !ops::small_linear_forward(logits, sel_h, w.lm_head, Tensor())) {
    ops::matmul(logits, sel_h, w.lm_head, false, true, 1.0f, 0.0f);
  }
}

void Generator::device_step() {
#ifdef COTUNE_WITH_CUDA
  Buffers& b = *buf_;
  run_layers(1);
  compute_logits(b.x.slice_rows(0, 1), 1);
  ops::argmax_advance(b.logits.slice_rows(0, 1), argmax_vocab_, b.am_v, b.am_i, b.ids.slice_rows(0, 1),
                      b.pos.slice_rows(0, 1), b.dec_tokens, b.dec_count);
#else
  fail("generator: the device decode loop needs a CUDA build");
#endif
}

void* Generator::capture_step() {
#ifdef COTUNE_WITH_CUDA
  void* exec = nullptr;
  try {
    kernels::graph::begin_capture();
    device_step();
    exec = kernels::graph::end_capture();
  } catch (const std::exception&) {  // something in the step cannot be captured: run it uncaptured
    kernels::graph::abort_capture();
    exec = nullptr;
  }
  buf_->nf4.invalidate();  // the capture ran nothing: the NF4 scratch holds what it held before
  return exec;
#else
  return nullptr;
#endif
}

void Generator::greedy_device(int32_t slot, int32_t token, int64_t steps, const std::function<bool(int32_t)>& accept) {
#ifdef COTUNE_WITH_CUDA
  Buffers& b = *buf_;
  const int64_t V = model_.config().vocab_size;
  if (token < 0 || token >= V) fail("token id {} is outside the model's vocabulary of {}", token, V);
  int64_t& len = lengths_[static_cast<size_t>(slot)];
  if (len + steps > b.cache_positions)
    fail("decode: sequence {} would pass the cache capacity of {} positions", slot, b.cache_positions);
  int32_t init[3] = {token, slot, static_cast<int32_t>(len)};
  copy_bytes(b.ids.slice_rows(0, 1), Tensor(&init[0], DType::i32, {1}));
  copy_bytes(b.slot.slice_rows(0, 1), Tensor(&init[1], DType::i32, {1}));
  copy_bytes(b.pos.slice_rows(0, 1), Tensor(&init[2], DType::i32, {1}));
  void* graph = nullptr;
  bool tried = false;
  try {
    int64_t done = 0, chunk = 4;  // short first reads (streaming), then up to kDecodeChunk steps a read
    std::vector<int32_t> got;
    bool more = true;
    while (more && done < steps) {
      const int64_t k = std::min(chunk, steps - done);
      ops::zero(b.dec_count);
      for (int64_t j = 0; j < k; ++j) {
        if (graph) {
          kernels::graph::launch(graph);
        } else {
          device_step();  // the first step runs uncaptured: buffers and GEMM plans settle
          if (!tried) {
            tried = true;
            graph = capture_step();
          }
        }
      }
      got.resize(static_cast<size_t>(k));
      copy_bytes(Tensor(got.data(), DType::i32, {k}), b.dec_tokens.slice_rows(0, k));
      len += k;
      done += k;
      for (int32_t id : got)
        if (!accept(id)) {
          more = false;
          break;
        }
      chunk = std::min(chunk * 2, kDecodeChunk);
    }
  } catch (...) {
    kernels::graph::destroy(graph);
    throw;
  }
  kernels::graph::destroy(graph);
#else
  (void)slot, (void)token, (void)steps, (void)accept;
  fail("generator: the device decode loop needs a CUDA build");
#endif
}

std::vector<float> Generator::prefill(const std::vector<std::vector<int32_t>>& seqs, int64_t capacity) {
  const auto S = static_cast<int64_t>(seqs.size());
  if (S == 0) fail("prefill needs at least one sequence");
  if (S > opts_.max_batch) fail("prefill of {} sequences; the generator holds at most {}", S, opts_.max_batch);
  int64_t longest = 0;
  for (const auto& s : seqs) {
    if (s.empty()) fail("cannot generate from an empty prompt (no tokens)");
    longest = std::max<int64_t>(longest, static_cast<int64_t>(s.size()));
  }
  reserve_cache(opts_.max_batch, std::max(capacity, longest));
  lengths_.assign(static_cast<size_t>(opts_.max_batch), 0);
  for (int32_t s = 0; s < opts_.max_batch; ++s) buf_->pages.release(s);
  for (int64_t s = 0; s < S; ++s) grow_slot(static_cast<int32_t>(s), std::max(capacity, longest));
  const int64_t V = model_.config().vocab_size;
  std::vector<float> out(static_cast<size_t>(S * V));
  // Pack the prompts one after another into chunks of at most prefill_chunk tokens.
  std::vector<int32_t> ids, slots, positions;
  std::vector<int64_t> want, want_seq;
  auto flush = [&] {
    if (ids.empty()) return;
    std::vector<float> lg = forward(ids, slots, positions, want);
    for (size_t j = 0; j < want_seq.size(); ++j)
      std::copy_n(lg.begin() + static_cast<int64_t>(j) * V, V, out.begin() + want_seq[j] * V);
    ids.clear(); slots.clear(); positions.clear(); want.clear(); want_seq.clear();
  };
  for (int64_t s = 0; s < S; ++s) {
    const auto& seq = seqs[static_cast<size_t>(s)];
    for (size_t i = 0; i < seq.size(); ++i) {
      if (static_cast<int64_t>(ids.size()) == opts_.prefill_chunk) flush();
      ids.push_back(seq[i]);
      slots.push_back(static_cast<int32_t>(s));
      positions.push_back(static_cast<int32_t>(i));
      if (i + 1 == seq.size()) {
        want.push_back(static_cast<int64_t>(ids.size()) - 1);
        want_seq.push_back(s);
      }
    }
    lengths_[static_cast<size_t>(s)] = static_cast<int64_t>(seq.size());
  }
  flush();
  return out;
}

void Generator::reserve(int64_t positions) {
  if (positions <= 0) fail("generator: reserve needs a positive number of positions, got {}", positions);
  reserve_cache(opts_.max_batch, positions);
  lengths_.assign(static_cast<size_t>(opts_.max_batch), 0);
  for (int32_t s = 0; s < opts_.max_batch; ++s) buf_->pages.release(s);
}

int64_t Generator::capacity() const { return buf_->cache_positions; }

std::vector<float> Generator::prefill_slot(int32_t slot, const std::vector<int32_t>& ids) {
  if (slot < 0 || slot >= opts_.max_batch || static_cast<size_t>(slot) >= lengths_.size())
    fail("prefill_slot: slot {} is not one of the {} reserved slots (call reserve first)", slot, lengths_.size());
  if (ids.empty()) fail("cannot generate from an empty prompt (no tokens)");
  const auto n = static_cast<int64_t>(ids.size());
  if (n > buf_->cache_positions)
    fail("prefill_slot: a prompt of {} tokens does not fit the {} positions reserved per sequence", n,
         buf_->cache_positions);
  lengths_[static_cast<size_t>(slot)] = 0;
  buf_->pages.release(slot);
  grow_slot(slot, n);
  std::vector<float> logits;
  for (int64_t begin = 0; begin < n; begin += opts_.prefill_chunk) {
    const int64_t end = std::min(n, begin + opts_.prefill_chunk);
    std::vector<int32_t> chunk(ids.begin() + begin, ids.begin() + end), slots(static_cast<size_t>(end - begin), slot),
        positions;
    for (int64_t p = begin; p < end; ++p) positions.push_back(static_cast<int32_t>(p));
    std::vector<int64_t> want;
    if (end == n) want.push_back(end - begin - 1);
    logits = forward(chunk, slots, positions, want);
  }
  lengths_[static_cast<size_t>(slot)] = n;
  return logits;
}

void Generator::release_slot(int32_t slot) {
  if (slot >= 0 && static_cast<size_t>(slot) < lengths_.size()) {
    lengths_[static_cast<size_t>(slot)] = 0;
    buf_->pages.release(slot);
  }
}

std::vector<float> Generator::decode(const std::vector<int32_t>& slots, const std::vector<int32_t>& tokens) {
  if (slots.size() != tokens.size()) fail("decode: {} slots for {} tokens", slots.size(), tokens.size());
  if (static_cast<int64_t>(slots.size()) > opts_.max_batch)
    fail("decode of {} tokens; the generator holds at most {} sequences", slots.size(), opts_.max_batch);
  std::vector<int32_t> positions;
  std::vector<int64_t> want;
  for (size_t i = 0; i < slots.size(); ++i) {
    const int32_t s = slots[i];
    if (s < 0 || static_cast<size_t>(s) >= lengths_.size()) fail("decode: slot {} was not prefilled", s);
    if (lengths_[static_cast<size_t>(s)] >= buf_->cache_positions)
      fail("decode: sequence {} reached the cache capacity of {} positions", s, buf_->cache_positions);
    positions.push_back(static_cast<int32_t>(lengths_[static_cast<size_t>(s)]));
    want.push_back(static_cast<int64_t>(i));
  }
  for (int32_t s : slots) grow_slot(s, lengths_[static_cast<size_t>(s)] + 1);
  std::vector<float> lg = forward(tokens, slots, positions, want);
  for (int32_t s : slots) ++lengths_[static_cast<size_t>(s)];
  return lg;
}

void Generator::set_selectable(int64_t vocab) {
  const int64_t V = model_.config().vocab_size;
  if (vocab <= 0 || vocab > V) fail("generator: the selectable vocabulary must be in [1, {}], got {}", V, vocab);
  if (vocab != argmax_vocab_) drop_graphs();  // the selection launches in them search [0, vocab)
  argmax_vocab_ = vocab;
}

int64_t Generator::bucket_rows(int64_t n) const {
  int64_t rows = 1;
  while (rows < n) rows *= 2;
  return std::min(rows, buf_->Bpad);
}

void Generator::select_step(int64_t T) {
  Buffers& b = *buf_;
  run_layers(T, /*decode_rows=*/true);
  compute_logits(b.x.slice_rows(0, T), T, /*gemm_rows=*/true);
  ops::select_tokens(b.sel_ids.slice_rows(0, T), b.logits.slice_rows(0, T), b.sel_params.slice_rows(0, T),
                     b.sel_scratch, argmax_vocab_);
}

std::vector<int32_t> Generator::prefill_select(const std::vector<int32_t>& slots,
                                               const std::vector<std::vector<int32_t>>& prompts,
                                               const std::vector<SelectParams>& params) {
  if (slots.size() != prompts.size() || params.size() != prompts.size())
    fail("prefill_select: {} slots, {} prompts and {} parameter rows (one each)", slots.size(), prompts.size(),
         params.size());
  const int64_t V = model_.config().vocab_size;
  for (size_t i = 0; i < slots.size(); ++i) {
    const int32_t slot = slots[i];
    if (slot < 0 || slot >= opts_.max_batch || static_cast<size_t>(slot) >= lengths_.size())
      fail("prefill_select: slot {} is not one of the {} reserved slots (call reserve first)", slot, lengths_.size());
    for (size_t j = 0; j < i; ++j)
      if (slots[j] == slot) fail("prefill_select: slot {} is given twice", slot);
    if (prompts[i].empty()) fail("cannot generate from an empty prompt (no tokens)");
    if (static_cast<int64_t>(prompts[i].size()) > buf_->cache_positions)
      fail("prefill_select: a prompt of {} tokens does not fit the {} positions reserved per sequence",
           prompts[i].size(), buf_->cache_positions);
    for (int32_t id : prompts[i])
      if (id < 0 || id >= V) fail("token id {} is outside the model's vocabulary of {}", id, V);
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    lengths_[static_cast<size_t>(slots[i])] = 0;
    buf_->pages.release(slots[i]);
  }
  for (size_t i = 0; i < slots.size(); ++i) grow_slot(slots[i], static_cast<int64_t>(prompts[i].size()));
  std::vector<int32_t> out(prompts.size(), 0);
  // The prompts one after another in forwards of at most prefill_chunk tokens (as prefill), the last token of each
  // selected in the forward that holds it.
  std::vector<int32_t> ids, sl, positions;
  std::vector<int64_t> want;
  std::vector<size_t> want_seq;
  auto flush = [&] {
    if (ids.empty()) return;
    const int64_t n = forward_device(ids, sl, positions, want);
    if (n > 0) {
      std::vector<SelectParams> p;
      for (size_t j : want_seq) p.push_back(params[j]);
      std::vector<int32_t> got = select_rows(n, p);
      for (size_t j = 0; j < want_seq.size(); ++j) out[want_seq[j]] = got[j];
    }
    ids.clear(); sl.clear(); positions.clear(); want.clear(); want_seq.clear();
  };
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& seq = prompts[i];
    for (size_t t = 0; t < seq.size(); ++t) {
      if (static_cast<int64_t>(ids.size()) == opts_.prefill_chunk) flush();
      ids.push_back(seq[t]);
      sl.push_back(slots[i]);
      positions.push_back(static_cast<int32_t>(t));
      if (t + 1 == seq.size()) {
        want.push_back(static_cast<int64_t>(ids.size()) - 1);
        want_seq.push_back(i);
      }
    }
  }
  flush();
  for (size_t i = 0; i < prompts.size(); ++i) lengths_[static_cast<size_t>(slots[i])] = static_cast<int64_t>(prompts[i].size());
  return out;
}

std::vector<float> Generator::last_logits(int64_t n) const {
  if (n < 0 || n > buf_->Bpad) fail("last_logits: {} rows (at most {})", n, buf_->Bpad);
  const int64_t V = model_.config().vocab_size;
  std::vector<float> out(static_cast<size_t>(n * V));
  copy_bytes(Tensor(out.data(), DType::f32, {n, V}), buf_->logits.slice_rows(0, n));
  return out;
}

std::vector<int32_t> Generator::decode_select(const std::vector<int32_t>& slots, const std::vector<int32_t>& tokens,
                                              const std::vector<SelectParams>& params) {
  Buffers& b = *buf_;
  if (slots.size() != tokens.size() || params.size() != tokens.size())
    fail("decode_select: {} slots, {} tokens and {} parameter rows (one each)", slots.size(), tokens.size(),
         params.size());
  const auto n = static_cast<int64_t>(slots.size());
  if (n == 0) return {};
  if (n > opts_.max_batch) fail("decode of {} tokens; the generator holds at most {} sequences", n, opts_.max_batch);
  const int64_t V = model_.config().vocab_size;
  for (size_t i = 0; i < slots.size(); ++i) {
    const int32_t s = slots[i];
    if (s < 0 || static_cast<size_t>(s) >= lengths_.size() || lengths_[static_cast<size_t>(s)] == 0)
      fail("decode: slot {} was not prefilled", s);
    for (size_t j = 0; j < i; ++j)
      if (slots[j] == s) fail("decode_select: slot {} is given twice", s);
    if (lengths_[static_cast<size_t>(s)] >= b.cache_positions)
      fail("decode: sequence {} reached the cache capacity of {} positions", s, b.cache_positions);
    if (tokens[i] < 0 || tokens[i] >= V) fail("token id {} is outside the model's vocabulary of {}", tokens[i], V);
  }
  for (int32_t s : slots) grow_slot(s, lengths_[static_cast<size_t>(s)] + 1);
  sync_block_table();
  // The rows padded to the bucket: padding rows are greedy, in the padding slot (each at its own position).
  const int64_t T = model_.device() == Device::cuda ? bucket_rows(n) : n;
  std::vector<int32_t> ids(static_cast<size_t>(T), 0), sl(static_cast<size_t>(T), static_cast<int32_t>(pad_slot())),
      pos(static_cast<size_t>(T), 0);
  std::vector<SelectParams> prm(static_cast<size_t>(T));
  for (int64_t j = 0; j < T; ++j) {
    const auto u = static_cast<size_t>(j);
    if (j < n) {
      ids[u] = tokens[u];
      sl[u] = slots[u];
      pos[u] = static_cast<int32_t>(lengths_[static_cast<size_t>(slots[u])]);
      prm[u] = params[u];
    } else {
      pos[u] = static_cast<int32_t>(j % b.cache_positions);
    }
  }
  auto host = [](std::vector<int32_t>& v) { return Tensor(v.data(), DType::i32, {static_cast<int64_t>(v.size())}); };
  copy_bytes(b.ids.slice_rows(0, T), host(ids));
  copy_bytes(b.slot.slice_rows(0, T), host(sl));
  copy_bytes(b.pos.slice_rows(0, T), host(pos));
  copy_bytes(b.sel_params.slice_rows(0, T), Tensor(prm.data(), DType::i32, {T, 8}));
  run_bucket(T);
  std::vector<int32_t> out(static_cast<size_t>(n));
  copy_bytes(Tensor(out.data(), DType::i32, {n}), b.sel_ids.slice_rows(0, n));
  for (int32_t s : slots) ++lengths_[static_cast<size_t>(s)];
  return out;
}

void Generator::warm_decode_graphs() {
  Buffers& b = *buf_;
  if (!opts_.decode_graphs || model_.device() != Device::cuda || b.cache_positions == 0) return;
  for (int64_t T = 1; T <= b.Bpad; T *= 2) {
    // Every row a padding row: the step writes only the padding slot's pages.
    std::vector<int32_t> ids(static_cast<size_t>(T), 0), sl(static_cast<size_t>(T), static_cast<int32_t>(pad_slot())),
        pos(static_cast<size_t>(T));
    for (int64_t j = 0; j < T; ++j) pos[static_cast<size_t>(j)] = static_cast<int32_t>(j % b.cache_positions);
    std::vector<SelectParams> prm(static_cast<size_t>(T));
    copy_bytes(b.ids.slice_rows(0, T), Tensor(ids.data(), DType::i32, {T}));
    copy_bytes(b.slot.slice_rows(0, T), Tensor(sl.data(), DType::i32, {T}));
    copy_bytes(b.pos.slice_rows(0, T), Tensor(pos.data(), DType::i32, {T}));
    copy_bytes(b.sel_params.slice_rows(0, T), Tensor(prm.data(), DType::i32, {T, 8}));
    sync_block_table();
    run_bucket(T);  // uncaptured: buffers and GEMM plans settle
    run_bucket(T);  // captured, then replayed
  }
  std::vector<int32_t> done(1);
  copy_bytes(Tensor(done.data(), DType::i32, {1}), b.sel_ids.slice_rows(0, 1));  // waits for the last replay
}

void Generator::run_bucket(int64_t T) {
#ifdef COTUNE_WITH_CUDA
  int bucket = 0;
  while ((int64_t{1} << bucket) < T) ++bucket;
  const auto bi = static_cast<size_t>(bucket);
  const bool graphs = opts_.decode_graphs && model_.device() == Device::cuda && T == (int64_t{1} << bucket) &&
                      bi < graphs_.size();
  // A graph keeps the kernel scratch buffer it was captured with: when scratch() moved (a larger forward), recapture.
  if (graphs && graphs_scratch_ != kernels::graph::scratch_generation()) {
    drop_graphs();
    graphs_scratch_ = kernels::graph::scratch_generation();
  }
  if (graphs && !graphs_[bi] && graph_uses_[bi] >= 1) {  // second use of the bucket: buffers and GEMM plans settled
    try {
      kernels::graph::begin_capture();
      select_step(T);
      graphs_[bi] = kernels::graph::end_capture();
    } catch (const std::exception&) {  // something in the step cannot be captured: keep running it uncaptured
      kernels::graph::abort_capture();
      graphs_[bi] = nullptr;
      graph_uses_[bi] = -1000000;
    }
    buf_->nf4.invalidate();  // the capture ran nothing: the NF4 scratch holds what it held before
  }
  if (graphs && graphs_[bi]) {
    kernels::graph::launch(graphs_[bi]);
  } else {
    select_step(T);
    if (graphs) ++graph_uses_[bi];
  }
#else
  select_step(T);
#endif
}

std::vector<GenerationOutput> Generator::generate(const std::vector<std::vector<int32_t>>& prompts,
                                                  const GenerationOptions& opts, const text::Tokenizer* tok,
                                                  const StreamCallback& on_text) {
  opts.sampling.validate();
  if (opts.max_new_tokens < 0) fail("max_new_tokens must be >= 0, got {}", opts.max_new_tokens);
  if (!opts.stop_strings.empty() && !tok) fail("stop strings need a tokenizer");
  std::vector<GenerationOutput> all;
  for (size_t begin = 0; begin < prompts.size(); begin += static_cast<size_t>(opts_.max_batch)) {
    const size_t end = std::min(prompts.size(), begin + static_cast<size_t>(opts_.max_batch));
    std::vector<std::vector<int32_t>> group(prompts.begin() + static_cast<int64_t>(begin),
                                            prompts.begin() + static_cast<int64_t>(end));
    for (auto& o : generate_group(group, opts, tok, on_text, begin)) all.push_back(std::move(o));
  }
  return all;
}

std::vector<GenerationOutput> Generator::generate_text(const text::Tokenizer& tok,
                                                       const std::vector<std::string>& prompts,
                                                       const GenerationOptions& opts, const StreamCallback& on_text) {
  std::vector<std::vector<int32_t>> ids;
  ids.reserve(prompts.size());
  for (const auto& p : prompts) ids.push_back(tok.encode(p, /*add_special=*/true));
  return generate(ids, opts, &tok, on_text);
}

std::vector<GenerationOutput> Generator::generate_group(const std::vector<std::vector<int32_t>>& prompts,
                                                        const GenerationOptions& opts, const text::Tokenizer* tok,
                                                        const StreamCallback& on_text, size_t index_base) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const size_t S = prompts.size();
  const int64_t V = model_.config().vocab_size;
  std::vector<GenerationOutput> out(S);
  std::vector<TextStream> streams;
  std::vector<Rng> rngs;
  std::vector<std::vector<int32_t>> context(S);
  for (size_t i = 0; i < S; ++i) {
    out[i].prompt_ids = prompts[i];
    context[i] = prompts[i];
    streams.emplace_back(opts.stop_strings);
    rngs.emplace_back(opts.sampling.seed, 0);
  }
  // Ids the tokenizer lacks are never picked (the model's vocabulary is padded past the tokenizer's: 151,936 rows
  // for 151,665 ids in DeepSeek-R1-Distill-Qwen; an untrained row can still win the arg-max). Their logits become
  // -inf before selection; the device arg-max searches [0, argmax_vocab_) when the missing ids are that tail.
  std::vector<int32_t> masked;
  int64_t selectable = V;
  if (tok) {
    masked = ids_missing_from(*tok, V);
    while (selectable > 0 && !tok->has_id(static_cast<int32_t>(selectable - 1))) --selectable;
    if (selectable == 0) fail("generate: the tokenizer has none of the model's {} token ids", V);
  }
  const bool masked_is_tail = static_cast<int64_t>(masked.size()) == V - selectable;
  argmax_vocab_ = selectable;
  auto elapsed = [&] { return std::chrono::duration<double>(clock::now() - t0).count(); };
  auto finish = [&](size_t i, const char* reason) {
    out[i].finish_reason = reason;
    std::string rest = streams[i].finish();
    if (!rest.empty() && on_text) on_text(index_base + i, rest);
    out[i].text = streams[i].text();
    out[i].seconds = elapsed();
    out[i].tokens_per_s = out[i].seconds > 0 ? static_cast<double>(out[i].ids.size()) / out[i].seconds : 0.0;
  };
  if (opts.max_new_tokens == 0) {
    for (size_t i = 0; i < S; ++i) finish(i, "length");
    return out;
  }
  int64_t longest = 0;
  for (const auto& p : prompts) longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
  std::vector<float> logits = prefill(prompts, longest + opts.max_new_tokens);
  std::vector<size_t> active(S);  // active[j]: the sequence whose logits are row j
  for (size_t i = 0; i < S; ++i) active[i] = i;
  // Records id for sequence i; false once the sequence finished.
  auto accept = [&](size_t i, int32_t id) {
    out[i].ids.push_back(id);
    context[i].push_back(id);
    const bool is_eos = std::find(opts.eos_ids.begin(), opts.eos_ids.end(), id) != opts.eos_ids.end();
    if (tok && tok->has_id(id) && !is_eos && !(opts.skip_special && tok->is_special(id))) {
      std::string piece = streams[i].push(tok->token_bytes(id));
      if (!piece.empty() && on_text) on_text(index_base + i, piece);
    }
    if (is_eos) finish(i, "eos");
    else if (streams[i].stopped()) finish(i, "stop");
    else if (opts.cancelled && opts.cancelled()) finish(i, "cancelled");
    else if (static_cast<int64_t>(out[i].ids.size()) >= opts.max_new_tokens) finish(i, "length");
    else return true;
    return false;
  };
  const bool device_greedy = opts_.device_loop && model_.device() == Device::cuda && !opts.sampling.do_sample &&
                             !(opts.sampling.repetition_penalty < 1.0f) && !(opts.sampling.repetition_penalty > 1.0f) &&
                             masked_is_tail;
  while (!active.empty()) {
    std::vector<int32_t> slots, tokens;
    std::vector<size_t> next;
    for (size_t j = 0; j < active.size(); ++j) {
      const size_t i = active[j];
      std::span<float> row(logits.data() + static_cast<int64_t>(j) * V, static_cast<size_t>(V));
      for (int32_t id : masked) row[static_cast<size_t>(id)] = -std::numeric_limits<float>::infinity();
      const int32_t id = select_token(row, context[i], opts.sampling, rngs[i]);
      if (accept(i, id)) {
        next.push_back(i);
        slots.push_back(static_cast<int32_t>(i));
        tokens.push_back(id);
      }
    }
    active = std::move(next);
    if (active.size() == 1 && device_greedy) {
      const size_t i = active[0];
      greedy_device(slots[0], tokens[0], opts.max_new_tokens - static_cast<int64_t>(out[i].ids.size()),
                    [&](int32_t id) { return accept(i, id); });
      break;
    }
    if (!active.empty()) logits = decode(slots, tokens);
  }
  return out;
}

}  // namespace cotune::infer

namespace cotune::infer {
std::unique_ptr<model::LoraWeights> load_adapter(const model::Qwen2Model& model, const std::string& adapter_dir) {
  return with_context("loading adapter " + adapter_dir, [&] {
    auto cfg = model::LoraConfig::from_peft(formats::load_peft_adapter_config(adapter_dir));
    auto lora = std::make_unique<model::LoraWeights>(model.config(), cfg, model.device());
    lora->load_peft_weights(adapter_dir);
    return lora;
  });
}
}  // namespace cotune::infer
