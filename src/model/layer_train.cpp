// The training lowering of the layer spec (model/layer.h): the forward and backward of one decoder layer, walked
// block by block (attention, then MLP; backward in reverse), each block
//   x += out( mixer( in_1(h), ..., in_n(h) ) ),   h = rmsnorm(x) * norm
// with its projections' LoRA branches (PEFT semantics, f32 A/B with dropout, or the bf16 side-by-side path on CUDA).
// Every op is a call into kernels/ops.h.
#include "base/error.h"
#include "kernels/ops.h"
#include "model/attention_inputs.h"
#include "model/runner_buffers.h"

namespace cotune::model {

namespace ops = cotune::kernels;

namespace {
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

namespace {
// A block's tensors in a LayerActs, sliced to T tokens.
BlockActs block_acts(const BlockSpec& block, const LayerActs& a, bool qk_norm, int64_t T) {
  BlockActs t;
  if (block.mixer == Mixer::attention) {
    t.h = rows(a.h1, T);
    t.rstd = rows(a.rstd1, T);
    t.mixer_in = {rows(a.q, T), rows(a.k, T), rows(a.v, T)};
    // With q/k norm the projections write the pre-norm values; attention_inputs_forward then writes q and k.
    t.proj_out = {qk_norm ? rows(a.qkn.q_pre, T) : t.mixer_in[0], qk_norm ? rows(a.qkn.k_pre, T) : t.mixer_in[1],
                  t.mixer_in[2]};
    t.mixed = rows(a.att, T);
  } else {
    t.h = rows(a.h2, T);
    t.rstd = rows(a.rstd2, T);
    t.mixer_in = {rows(a.g, T), rows(a.u, T), Tensor()};
    t.proj_out = t.mixer_in;
    t.mixed = rows(a.m, T);
  }
  return t;
}
}  // namespace

void Qwen2Runner::mixer_forward(const BlockSpec& block, const LayerWeights& w, const BlockActs& t, size_t ai) {
  Buffers& b = *buf_;
  const int64_t T = b.T;
  if (block.mixer == Mixer::gated_mlp) {
    ops::swiglu_forward(t.mixed, t.mixer_in[0], t.mixer_in[1]);  // Activation::silu
    return;
  }
  const AttentionSpec& at = spec_.attention;
  const int64_t H = at.heads, KV = at.kv_heads, D = at.head_dim;
  LayerActs& a = b.acts[ai];
  const Tensor &q = t.mixer_in[0], &k = t.mixer_in[1], &v = t.mixer_in[2];
  attention_inputs_forward(model_.arch(), w, q, k, rows(b.pos, T), qk_norm_rows(a.qkn, T, H, KV));
  ops::attention_forward(t.mixed.view({T, H, D}), lse_view(a.lse, T), q.view({T, H, D}), k.view({T, KV, D}),
                         v.view({T, KV, D}), rows(b.cu, b.S + 1), b.max_seqlen, at.scale, at.sliding_window);
}

std::array<Tensor, 3> Qwen2Runner::mixer_backward(const BlockSpec& block, const LayerWeights& w, const BlockActs& t,
                                                  size_t ai) {
  Buffers& b = *buf_;
  const int64_t T = b.T;
  if (block.mixer == Mixer::gated_mlp) {
    // In place: the gate and up activations become their gradients (read by nothing after this), which saves two
    // [T, I] buffers.
    const Tensor dg = t.mixer_in[0], du = t.mixer_in[1];
    ops::swiglu_backward(dg, du, rows(b.dm, T), t.mixer_in[0], t.mixer_in[1]);
    return {dg, du, Tensor()};
  }
  const AttentionSpec& at = spec_.attention;
  const int64_t H = at.heads, KV = at.kv_heads, D = at.head_dim;
  LayerActs& a = b.acts[ai];
  const Tensor dq = rows(b.dq, T), dk = rows(b.dk, T), dv = rows(b.dv, T);
  const Tensor &q = t.mixer_in[0], &k = t.mixer_in[1], &v = t.mixer_in[2];
  const Tensor pos = rows(b.pos, T);
  ops::attention_backward(dq.view({T, H, D}), dk.view({T, KV, D}), dv.view({T, KV, D}), rows(b.datt, T).view({T, H, D}),
                          q.view({T, H, D}), k.view({T, KV, D}), v.view({T, KV, D}), t.mixed.view({T, H, D}),
                          lse_view(a.lse, T), rows(b.cu, b.S + 1), b.max_seqlen, at.scale, at.sliding_window);
  const QkGrads dqk = attention_inputs_backward(model_.arch(), w, dq, dk, pos, qk_norm_rows(a.qkn, T, H, KV),
                                                rows(b.dq_pre, T), rows(b.dk_pre, T));
  return {dqk.dq, dqk.dk, dv};
}

void Qwen2Runner::layer_forward(int64_t l, const Tensor& x_in, const Tensor& x_out, size_t ai, uint64_t seed,
                                bool recompute) {
  const LayerWeights& w = layer_weights(l);
  Buffers& b = *buf_;
  const int64_t T = b.T;
  LayerActs& a = b.acts[ai];
  const Tensor tmp = rows(b.tmp_c, T);
  Tensor x = x_in;  // the block's input: the layer input, then the residual after attention (x2)
  for (size_t i = 0; i < spec_.blocks.size(); ++i) {
    const BlockSpec& block = spec_.blocks[i];
    const bool last = i + 1 == spec_.blocks.size();
    const Tensor y = last ? x_out : rows(a.x2, T);
    const BlockActs t = block_acts(block, a, spec_.attention.qk_norm, T);
    ops::rmsnorm_forward(t.h, t.rstd, x, w.norm(block.norm), spec_.rms_eps);
    // A recomputation with the attention outputs kept (q, k, v, out, lse and the q/k/v LoRA xa) starts at o.
    if (!(recompute && b.keep_attention && block.mixer == Mixer::attention)) {
      projs_forward(l, block.first_in, block.n_in, t.proj_out.data(), t.h, ai, seed);
      mixer_forward(block, w, t, ai);
    }
    // The bf16 LoRA path adds the residual in the GEMM; a projection with a bias (Llama/Qwen3 attention_bias, Llama
    // mlp_bias) takes the unfused route. The backward of the last output projection reads only its input and LoRA
    // xa: a recomputation stops there.
    if (b.lora16 && !spec_.projection(block.out).bias) {
      projs_forward(l, block.out, 1, &y, t.mixed, ai, seed, recompute && last, &x);  // y = x + out(mixed)
    } else {
      projs_forward(l, block.out, 1, &tmp, t.mixed, ai, seed);
      ops::add(y, x, tmp);
    }
    x = y;
  }
}

// On entry b.dres holds the gradient of the layer's output; on exit, of its input (when need_dinput).
void Qwen2Runner::layer_backward(int64_t l, const Tensor& x_in, size_t ai, uint64_t seed, bool need_dinput) {
  const LayerWeights& w = layer_weights(l);
  Buffers& b = *buf_;
  const int64_t T = b.T;
  LayerActs& a = b.acts[ai];
  const Tensor dres = rows(b.dres, T), dh = rows(b.dh, T);
  for (size_t i = spec_.blocks.size(); i-- > 0;) {
    const BlockSpec& block = spec_.blocks[i];
    const BlockActs t = block_acts(block, a, spec_.attention.qk_norm, T);
    const Tensor x = i == 0 ? x_in : rows(a.x2, T);  // the block's input
    const Tensor dmixed = rows(block.mixer == Mixer::attention ? b.datt : b.dm, T);
    projs_backward(l, block.out, 1, dmixed, false, &dres, t.mixed, ai, seed);
    const std::array<Tensor, 3> dproj = mixer_backward(block, w, t, ai);
    projs_backward(l, block.first_in, block.n_in, dh, false, dproj.data(), t.h, ai, seed);
    // dres = d(block input): the residual's gradient plus the norm's.
    if (i > 0 || need_dinput) ops::rmsnorm_backward(dres, dh, x, w.norm(block.norm), t.rstd, true);
  }
}

}  // namespace cotune::model
