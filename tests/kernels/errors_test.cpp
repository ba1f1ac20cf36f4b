// Shape, dtype and value errors of kernels/ops.h: each throws cotune::Error (never crashes or writes) and the
// message names the op and the argument at fault.
#include <gtest/gtest.h>

#include <cmath>

#include "kernel_test_util.h"
#include "kernels/ops.h"

namespace cotune::ktest {
namespace ops = cotune::kernels;

namespace {
// A bf16 tensor over the storage of an f32 buffer (only the dtype matters: the ops must reject it first).
Tensor as_bf16(const F32& x) { return Tensor(const_cast<float*>(x.v.data()), DType::bf16, x.t.shape); }
}  // namespace

TEST(KernelErrors, Matmul) {
  F32 a({3, 4}), b({5, 2}), out({3, 2}), bad_out({2, 3});
  EXPECT_TRUE(throws_naming([&] { ops::matmul(out.t, a.t, b.t, false, false); }, {"matmul", "inner dimensions"}));
  F32 b2({4, 2});
  EXPECT_TRUE(throws_naming([&] { ops::matmul(bad_out.t, a.t, b2.t, false, false); }, {"matmul", "out"}));
  F32 flat({12});
  EXPECT_TRUE(throws_naming([&] { ops::matmul(out.t, flat.t, b2.t, false, false); }, {"matmul", "a must have 2"}));
  EXPECT_TRUE(throws_naming([&] { ops::matmul(out.t, as_bf16(a), b2.t, false, false); }, {"matmul", "bf16"}));
}

TEST(KernelErrors, Embedding) {
  F32 table({9, 4}), out({3, 4}), narrow({3, 5});
  I32 ids({1, 2, 3}), bad_ids({1, 9, 0}), neg_ids({1, -1, 0});
  EXPECT_TRUE(throws_naming([&] { ops::embedding_forward(narrow.t, ids.t, table.t); }, {"embedding_forward", "out"}));
  EXPECT_TRUE(throws_naming([&] { ops::embedding_forward(out.t, bad_ids.t, table.t); },
                            {"embedding_forward", "token id 9", "position 1"}));
  EXPECT_TRUE(throws_naming([&] { ops::embedding_forward(out.t, neg_ids.t, table.t); },
                            {"embedding_forward", "token id -1"}));
  F32 fids({3});
  EXPECT_TRUE(throws_naming([&] { ops::embedding_forward(out.t, fids.t, table.t); }, {"embedding_forward", "ids", "i32"}));
}

TEST(KernelErrors, Rmsnorm) {
  F32 x({4, 8}), out({4, 8}), rstd({4}), w({8}), w_bad({7}), rstd_bad({3}), out_bad({4, 7});
  EXPECT_TRUE(throws_naming([&] { ops::rmsnorm_forward(out.t, rstd.t, x.t, w_bad.t, 1e-6f); }, {"rmsnorm_forward", "weight"}));
  EXPECT_TRUE(throws_naming([&] { ops::rmsnorm_forward(out.t, rstd_bad.t, x.t, w.t, 1e-6f); }, {"rmsnorm_forward", "rstd"}));
  EXPECT_TRUE(throws_naming([&] { ops::rmsnorm_forward(out_bad.t, rstd.t, x.t, w.t, 1e-6f); }, {"rmsnorm_forward", "out"}));
  EXPECT_TRUE(throws_naming([&] { ops::rmsnorm_forward(out.t, as_bf16(rstd), x.t, w.t, 1e-6f); },
                            {"rmsnorm_forward", "rstd", "f32"}));
  EXPECT_TRUE(throws_naming([&] { ops::rmsnorm_forward(out.t, rstd.t, as_bf16(x), w.t, 1e-6f); },
                            {"rmsnorm_forward", "bf16"}));
  F32 dx({4, 8}), dout_bad({4, 9});
  EXPECT_TRUE(throws_naming([&] { ops::rmsnorm_backward(dx.t, dout_bad.t, x.t, w.t, rstd.t, false); },
                            {"rmsnorm_backward", "dout"}));
  EXPECT_TRUE(throws_naming([&] { ops::rmsnorm_backward(out_bad.t, dx.t, x.t, w.t, rstd.t, false); },
                            {"rmsnorm_backward", "dinp"}));
  EXPECT_TRUE(throws_naming([&] { ops::rmsnorm_backward(dx.t, dx.t, x.t, w_bad.t, rstd.t, false); },
                            {"rmsnorm_backward", "weight"}));
  EXPECT_TRUE(throws_naming([&] { ops::rmsnorm_backward(dx.t, dx.t, x.t, w.t, rstd_bad.t, false); },
                            {"rmsnorm_backward", "rstd"}));
}

TEST(KernelErrors, Rope) {
  F32 odd({2, 1, 7}), x({2, 1, 8}), flat({2, 8});
  I32 pos({0, 1}), pos3({0, 1, 2});
  EXPECT_TRUE(throws_naming([&] { ops::rope_forward(odd.t, pos.t, 1e4f); }, {"rope_forward", "head dim"}));
  EXPECT_TRUE(throws_naming([&] { ops::rope_backward(x.t, pos3.t, 1e4f); }, {"rope_backward", "positions"}));
  EXPECT_TRUE(throws_naming([&] { ops::rope_forward(flat.t, pos.t, 1e4f); }, {"rope_forward", "x"}));
  F32 fpos({2});
  EXPECT_TRUE(throws_naming([&] { ops::rope_forward(x.t, fpos.t, 1e4f); }, {"rope_forward", "positions", "i32"}));
}

TEST(KernelErrors, Attention) {
  const int64_t T = 5, H = 4, KV = 2, D = 8;
  F32 q({T, H, D}), k({T, KV, D}), v({T, KV, D}), out({T, H, D}), lse({H, T});
  I32 cu({0, 2, 5}), cu_short({0, 2, 4}), cu_dec({0, 3, 2, 5}), cu_one({0});
  auto fwd = [&](const Tensor& o, const Tensor& l, const Tensor& qq, const Tensor& kk, const Tensor& vv, const I32& c,
                 int max_len) { ops::attention_forward(o, l, qq, kk, vv, c.t, max_len, 0.3f); };
  F32 k3({T, 3, D}), v3({T, 3, D}), v_bad({T, KV, D + 2}), lse_bad({H, T + 1}), out_bad({T, H, D + 1});
  EXPECT_TRUE(throws_naming([&] { fwd(out.t, lse.t, q.t, k3.t, v3.t, cu, 3); }, {"attention_forward", "key/value heads"}));
  EXPECT_TRUE(throws_naming([&] { fwd(out.t, lse.t, q.t, k.t, v_bad.t, cu, 3); }, {"attention_forward", "v"}));
  EXPECT_TRUE(throws_naming([&] { fwd(out.t, lse_bad.t, q.t, k.t, v.t, cu, 3); }, {"attention_forward", "lse"}));
  EXPECT_TRUE(throws_naming([&] { fwd(out_bad.t, lse.t, q.t, k.t, v.t, cu, 3); }, {"attention_forward", "out"}));
  EXPECT_TRUE(throws_naming([&] { fwd(out.t, lse.t, q.t, k.t, v.t, cu_short, 3); }, {"attention_forward", "cu_seqlens"}));
  EXPECT_TRUE(throws_naming([&] { fwd(out.t, lse.t, q.t, k.t, v.t, cu_dec, 5); }, {"attention_forward", "cu_seqlens"}));
  EXPECT_TRUE(throws_naming([&] { fwd(out.t, lse.t, q.t, k.t, v.t, cu_one, 5); }, {"attention_forward", "cu_seqlens"}));
  EXPECT_TRUE(throws_naming([&] { fwd(out.t, lse.t, q.t, k.t, v.t, cu, 2); }, {"attention_forward", "max_seqlen"}));
  F32 dq({T, H, D}), dk({T, KV, D}), dv({T, KV, D}), dk_bad({T, KV + 1, D});
  EXPECT_TRUE(throws_naming(
      [&] { ops::attention_backward(dq.t, dk_bad.t, dv.t, out.t, q.t, k.t, v.t, out.t, lse.t, cu.t, 3, 0.3f); },
      {"attention_backward", "dk"}));
  EXPECT_TRUE(throws_naming(
      [&] { ops::attention_backward(dq.t, dk.t, dv.t, out_bad.t, q.t, k.t, v.t, out.t, lse.t, cu.t, 3, 0.3f); },
      {"attention_backward", "dout"}));
}

TEST(KernelErrors, Swiglu) {
  F32 g({3, 4}), u({3, 4}), o({3, 4}), bad({3, 5});
  EXPECT_TRUE(throws_naming([&] { ops::swiglu_forward(o.t, g.t, bad.t); }, {"swiglu_forward", "up"}));
  EXPECT_TRUE(throws_naming([&] { ops::swiglu_forward(bad.t, g.t, u.t); }, {"swiglu_forward", "out"}));
  EXPECT_TRUE(throws_naming([&] { ops::swiglu_backward(g.t, bad.t, o.t, g.t, u.t); }, {"swiglu_backward", "dup"}));
  EXPECT_TRUE(throws_naming([&] { ops::swiglu_backward(g.t, u.t, bad.t, g.t, u.t); }, {"swiglu_backward", "dout"}));
}

TEST(KernelErrors, Linear) {
  F32 x({3, 4}), W({5, 4}), W_bad({5, 6}), out({3, 5}), out_bad({3, 4}), b_bad({4});
  EXPECT_TRUE(throws_naming([&] { ops::linear_forward(out.t, x.t, W_bad.t, Tensor()); }, {"linear_forward", "weight"}));
  EXPECT_TRUE(throws_naming([&] { ops::linear_forward(out_bad.t, x.t, W.t, Tensor()); }, {"linear_forward", "out"}));
  EXPECT_TRUE(throws_naming([&] { ops::linear_forward(out.t, x.t, W.t, b_bad.t); }, {"linear_forward", "bias"}));
  EXPECT_TRUE(throws_naming([&] { ops::linear_backward_input(out_bad.t, out.t, W_bad.t, false); },
                            {"linear_backward_input", "dinp"}));
  EXPECT_TRUE(throws_naming([&] { ops::linear_backward_input(x.t, x.t, W.t, false); }, {"linear_backward_input", "dout"}));
}

TEST(KernelErrors, Lora) {
  const int64_t T = 3, IC = 6, OC = 5, R = 2;
  F32 x({T, IC}), A({R, IC}), B({OC, R}), out({T, OC}), xa({T, R});
  F32 A_bad({R, IC + 1}), B_bad({OC, R + 1}), xa_bad({T, R + 1}), out_bad({T, OC + 1});
  EXPECT_TRUE(throws_naming([&] { ops::lora_forward(out.t, xa.t, x.t, A_bad.t, B.t, 1.0f); }, {"lora_forward", "A"}));
  EXPECT_TRUE(throws_naming([&] { ops::lora_forward(out.t, xa.t, x.t, A.t, B_bad.t, 1.0f); }, {"lora_forward", "B"}));
  EXPECT_TRUE(throws_naming([&] { ops::lora_forward(out.t, xa_bad.t, x.t, A.t, B.t, 1.0f); }, {"lora_forward", "xa"}));
  EXPECT_TRUE(throws_naming([&] { ops::lora_forward(out_bad.t, xa.t, x.t, A.t, B.t, 1.0f); }, {"lora_forward", "out"}));
  F32 dA({R, IC}), dB({OC, R}), g({T, R}), dx({T, IC}), dA_bad({R + 1, IC}), g_bad({T + 1, R}), dx_bad({T, IC - 1});
  auto bwd = [&](const Tensor& dinp, const Tensor& da, const Tensor& db, const Tensor& gg, const Tensor& dout) {
    ops::lora_backward(dinp, da, db, gg, dout, x.t, xa.t, A.t, B.t, 1.0f);
  };
  EXPECT_TRUE(throws_naming([&] { bwd(dx.t, dA_bad.t, dB.t, g.t, out.t); }, {"lora_backward", "dA"}));
  EXPECT_TRUE(throws_naming([&] { bwd(dx.t, dA.t, A.t, g.t, out.t); }, {"lora_backward", "dB"}));
  EXPECT_TRUE(throws_naming([&] { bwd(dx.t, dA.t, dB.t, g_bad.t, out.t); }, {"lora_backward", "g"}));
  EXPECT_TRUE(throws_naming([&] { bwd(dx_bad.t, dA.t, dB.t, g.t, out.t); }, {"lora_backward", "dinp"}));
  EXPECT_TRUE(throws_naming([&] { bwd(dx.t, dA.t, dB.t, g.t, out_bad.t); }, {"lora_backward", "dout"}));
}

// LoRA weights must be f32 on every device; the message should say which op rejected them.
TEST(KernelErrors, LoraDtypeNamesOpAndArgument) {
  F32 x({3, 6}), A({2, 6}), B({5, 2}), out({3, 5}), xa({3, 2});
  EXPECT_TRUE(throws_naming([&] { ops::lora_forward(out.t, xa.t, x.t, as_bf16(A), B.t, 1.0f); }, {"A", "f32"}));
  EXPECT_TRUE(throws_naming([&] { ops::lora_forward(out.t, xa.t, x.t, as_bf16(A), B.t, 1.0f); }, {"lora_forward"}));
}

TEST(KernelErrors, Dropout) {
  F32 x({8}), out({9});
  EXPECT_TRUE(throws_naming([&] { ops::dropout_forward(out.t, x.t, 0.1f, 1, 0); }, {"dropout_forward", "out"}));
  EXPECT_TRUE(throws_naming([&] { ops::dropout_forward(x.t, x.t, 1.0f, 1, 0); }, {"dropout", "probability"}));
  EXPECT_TRUE(throws_naming([&] { ops::dropout_forward(x.t, x.t, -0.1f, 1, 0); }, {"dropout", "probability"}));
  EXPECT_TRUE(throws_naming([&] { ops::dropout_backward(out.t, x.t, 0.1f, 1, 0); }, {"dropout_backward", "dinp"}));
}

TEST(KernelErrors, CrossEntropy) {
  const int64_t T = 3, V = 5;
  F32 logits({T, V}), losses({T}), losses_bad({T + 1}), d({T, V}), d_bad({T, V + 1});
  I32 tg({0, 1, 4}), tg_short({0, 1}), tg_big({0, 5, 1});
  EXPECT_TRUE(throws_naming([&] { ops::cross_entropy_forward(losses.t, logits.t, tg_short.t); },
                            {"cross_entropy_forward", "targets"}));
  EXPECT_TRUE(throws_naming([&] { ops::cross_entropy_forward(losses_bad.t, logits.t, tg.t); },
                            {"cross_entropy_forward", "losses"}));
  EXPECT_TRUE(throws_naming([&] { ops::cross_entropy_forward(losses.t, logits.t, tg_big.t); },
                            {"cross_entropy_forward", "target 5", "position 1"}));
  EXPECT_TRUE(throws_naming([&] { ops::cross_entropy_backward(d_bad.t, logits.t, tg.t, 1.0f); },
                            {"cross_entropy_backward", "dlogits"}));
  EXPECT_TRUE(throws_naming([&] { ops::cross_entropy_backward(d.t, logits.t, tg_short.t, 1.0f); },
                            {"cross_entropy_backward", "targets"}));
}

TEST(KernelErrors, LmHeadCrossEntropy) {
  const int64_t T = 4, C = 3, V = 6;
  F32 h({T, C}), W({V, C}), W_bad({V, C + 1}), losses({T}), dh({T, C}), dh_bad({T, C + 1}), ws({2 * V}), ws_small({2 * V - 1});
  I32 tg({0, 1, -100, 5}), tg_big({0, 6, 1, 2}), correct({0, 0, 0, 0});
  F32 fcorrect({T});
  auto call = [&](const Tensor& l, const Tensor& c, const Tensor& d, const Tensor& w, const I32& t, const Tensor& wsp,
                  int64_t chunk) { ops::lm_head_cross_entropy(l, c, d, h.t, w, t.t, 1.0f, wsp, chunk); };
  EXPECT_TRUE(throws_naming([&] { call(losses.t, correct.t, dh.t, W.t, tg, ws_small.t, 2); },
                            {"lm_head_cross_entropy", "workspace"}));
  EXPECT_TRUE(throws_naming([&] { call(losses.t, correct.t, dh.t, W.t, tg, ws.t, 0); }, {"lm_head_cross_entropy", "chunk"}));
  EXPECT_TRUE(throws_naming([&] { call(losses.t, correct.t, dh_bad.t, W.t, tg, ws.t, 2); },
                            {"lm_head_cross_entropy", "dhidden"}));
  EXPECT_TRUE(throws_naming([&] { call(losses.t, correct.t, dh.t, W_bad.t, tg, ws.t, 2); },
                            {"lm_head_cross_entropy", "weight"}));
  EXPECT_TRUE(throws_naming([&] { call(losses.t, fcorrect.t, dh.t, W.t, tg, ws.t, 2); },
                            {"lm_head_cross_entropy", "correct", "i32"}));
  EXPECT_TRUE(throws_naming([&] { call(losses.t, correct.t, dh.t, W.t, tg_big, ws.t, 2); },
                            {"lm_head_cross_entropy", "target 6"}));
  EXPECT_TRUE(throws_naming([&] { call(as_bf16(losses), correct.t, dh.t, W.t, tg, ws.t, 2); },
                            {"lm_head_cross_entropy", "losses", "f32"}));
}

TEST(KernelErrors, Devices) {
  F32 a({2, 2}), b({2, 2}), out({2, 2});
  Tensor a_cuda(a.v.data(), DType::f32, Shape{2, 2}, Device::cuda);  // never dereferenced: rejected first
  EXPECT_TRUE(throws_naming([&] { ops::matmul(out.t, a_cuda, b.t, false, false); }, {"matmul", "different devices"}));
#ifndef COTUNE_WITH_CUDA
  Tensor b_cuda(b.v.data(), DType::f32, Shape{2, 2}, Device::cuda), o_cuda(out.v.data(), DType::f32, Shape{2, 2}, Device::cuda);
  EXPECT_TRUE(throws_naming([&] { ops::matmul(o_cuda, a_cuda, b_cuda, false, false); }, {"CUDA", "matmul"}));
#endif
}

}  // namespace cotune::ktest
