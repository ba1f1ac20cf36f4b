// CUDA decode path against its CPU twins: KV-cache write and cached attention on random inputs, and the
// Generator's logits (prefill + decode steps) on the golden tiny model, bf16 on the GPU vs f32 on the CPU.
#include <gtest/gtest.h>

#include <cmath>

#include "common/test_paths.h"
#include "cuda_test_util.h"
#include "infer/generator.h"
#include "kernels/decode_ops.h"
#include "kernels/cuda/decode_launch.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "model/qwen2.h"

namespace cotune {
namespace {

using testing::download;
using testing::rel_err;
using testing::upload;
using testing::upload_i32;

TEST(CudaDecode, CacheWriteAndAttentionMatchCpu) {
  COTUNE_REQUIRE_GPU();
  const int64_t S = 3, N = 50, KV = 2, H = 6, D = 128;
  // Fill the cache of every slot up to some length, then attend with a few queries per slot.
  std::vector<int32_t> slot, pos;
  const int32_t len[S] = {1, 37, 50};
  for (int32_t s = 0; s < S; ++s)
    for (int32_t p = 0; p < len[s]; ++p) {
      slot.push_back(s);
      pos.push_back(p);
    }
  const auto T = static_cast<int64_t>(slot.size());
  auto k = testing::randn(static_cast<size_t>(T * KV * D), 1), v = testing::randn(static_cast<size_t>(T * KV * D), 2);
  auto q = testing::randn(static_cast<size_t>(T * H * D), 3);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));

  std::vector<float> kc(static_cast<size_t>(S * N * KV * D), 0.0f), vc = kc, out_cpu(q.size());
  Tensor kch(kc.data(), DType::f32, {S, N, KV, D}), vch(vc.data(), DType::f32, {S, N, KV, D});
  Tensor slot_h(slot.data(), DType::i32, {T}), pos_h(pos.data(), DType::i32, {T});
  kernels::kv_cache_write(kch, vch, Tensor(k.data(), DType::f32, {T, KV, D}), Tensor(v.data(), DType::f32, {T, KV, D}),
                          slot_h, pos_h);
  kernels::cached_attention_forward(Tensor(out_cpu.data(), DType::f32, {T, H, D}), Tensor(q.data(), DType::f32, {T, H, D}),
                                    kch, vch, slot_h, pos_h, scale);

  Arena a(Device::cuda);
  Tensor kcd = upload(a, std::vector<float>(kc.size(), 0.0f), {S, N, KV, D}, DType::bf16);
  Tensor vcd = upload(a, std::vector<float>(vc.size(), 0.0f), {S, N, KV, D}, DType::bf16);
  Tensor slot_d = upload_i32(a, slot, {T}), pos_d = upload_i32(a, pos, {T});
  kernels::kv_cache_write(kcd, vcd, upload(a, k, {T, KV, D}, DType::bf16), upload(a, v, {T, KV, D}, DType::bf16), slot_d,
                          pos_d);
  Tensor out_d = upload(a, std::vector<float>(q.size(), NAN), {T, H, D}, DType::bf16);
  kernels::cached_attention_forward(out_d, upload(a, q, {T, H, D}, DType::bf16), kcd, vcd, slot_d, pos_d, scale);
  EXPECT_EQ(download(kcd), kc);  // bf16-exact inputs: the cache is bit-equal
  EXPECT_EQ(download(vcd), vc);
  auto got = download(out_d);
  EXPECT_EQ(testing::count_nonfinite(got), 0u);
  EXPECT_LT(rel_err(got, out_cpu), 1e-2);
}

// Prefill two prompts, then decode steps with fixed tokens: GPU bf16 logits follow the CPU's.
void compare_generator(bool nf4) {
  const std::string dir = testing::golden_dir() + "/model/r1like";
  model::LoadOptions cpu_o, gpu_o;
  cpu_o.load_in_4bit = gpu_o.load_in_4bit = nf4;
  gpu_o.device = Device::cuda;
  model::Qwen2Model mc = model::Qwen2Model::load(dir, cpu_o), mg = model::Qwen2Model::load(dir, gpu_o);
  infer::Generator gc(mc, nullptr), gg(mg, nullptr);
  std::vector<std::vector<int32_t>> seqs = {{1, 5, 17, 42, 99}, {1, 200, 3}};
  auto lc = gc.prefill(seqs, 32), lg = gg.prefill(seqs, 32);
  for (int step = 0; step < 6; ++step) {
    const double err = rel_err(lg, lc);
    EXPECT_LT(err, 3e-2) << "step " << step;
    std::vector<int32_t> toks = {static_cast<int32_t>(10 + step * 7), static_cast<int32_t>(300 - step * 11)};
    lc = gc.decode({0, 1}, toks);
    lg = gg.decode({0, 1}, toks);
  }
  EXPECT_LT(rel_err(lg, lc), 3e-2);
}

TEST(CudaDecode, GeneratorLogitsFollowCpu) {
  COTUNE_REQUIRE_GPU();
  compare_generator(false);
}

TEST(CudaDecode, GeneratorNf4LogitsFollowCpu) {
  COTUNE_REQUIRE_GPU();
  compare_generator(true);
}

// The decode-size GEMV (T <= 8 rows) against the cuBLASLt linear layer, bf16 and f32 outputs, with and without bias.
TEST(CudaDecode, SmallLinearMatchesLinear) {
  COTUNE_REQUIRE_GPU();
  Arena a(Device::cuda);
  for (int64_t T : {1, 3, 8}) {
    for (int64_t K : {256, 1032, 8960}) {
      const int64_t N = 200;
      Tensor x = upload(a, testing::randn(static_cast<size_t>(T * K), 11), {T, K}, DType::bf16);
      Tensor w = upload(a, testing::randn(static_cast<size_t>(N * K), 12, 0.05f), {N, K}, DType::bf16);
      Tensor bias = upload(a, testing::randn(static_cast<size_t>(N), 13), {N}, DType::bf16);
      for (bool with_bias : {false, true}) {
        Tensor bt = with_bias ? bias : Tensor();
        Tensor ref = upload(a, std::vector<float>(static_cast<size_t>(T * N), 0.0f), {T, N}, DType::bf16);
        kernels::linear_forward(ref, x, w, bt);
        Tensor got = upload(a, std::vector<float>(static_cast<size_t>(T * N), NAN), {T, N}, DType::bf16);
        ASSERT_TRUE(kernels::small_linear_forward(got, x, w, bt));
        EXPECT_LT(rel_err(download(got), download(ref)), 1e-2) << "T " << T << " K " << K;
        Tensor got32 = upload(a, std::vector<float>(static_cast<size_t>(T * N), NAN), {T, N}, DType::f32);
        ASSERT_TRUE(kernels::small_linear_forward(got32, x, w, bt));
        EXPECT_LT(rel_err(download(got32), download(ref)), 1e-2) << "T " << T << " K " << K;
      }
    }
  }
  // Not applicable: more than 8 rows.
  Tensor x9 = upload(a, testing::randn(9 * 256, 1), {9, 256}, DType::bf16);
  Tensor w9 = upload(a, testing::randn(16 * 256, 2), {16, 256}, DType::bf16);
  Tensor o9 = upload(a, std::vector<float>(9 * 16, 0.0f), {9, 16}, DType::bf16);
  EXPECT_FALSE(kernels::small_linear_forward(o9, x9, w9, Tensor()));
}

// Greedy generation with the device loop (arg-max on the GPU, CUDA-graph replay) gives the ids of the host loop
// (logits copied to the host each step), bf16 and NF4, with and without LoRA, one prompt and two.
void compare_device_loop(bool nf4, bool with_lora) {
  const std::string dir = testing::golden_dir() + "/model/r1like";
  model::LoadOptions o;
  o.device = Device::cuda;
  o.load_in_4bit = nf4;
  model::Qwen2Model m = model::Qwen2Model::load(dir, o);
  std::unique_ptr<model::LoraWeights> lora;
  if (with_lora) lora = infer::load_adapter(m, dir + "/lora/adapter_init");
  infer::GeneratorOptions host_o, dev_o;
  host_o.device_loop = false;
  infer::Generator gh(m, lora.get(), host_o), gd(m, lora.get(), dev_o);
  infer::GenerationOptions go;
  go.max_new_tokens = 70;  // several reads of the device ids (4, 8, 16, 32, ...)
  for (const auto& prompts : std::vector<std::vector<std::vector<int32_t>>>{{{1, 5, 17, 42, 99}}, {{1, 200, 3}, {7}}}) {
    auto want = gh.generate(prompts, go, nullptr);
    for (int rep = 0; rep < 2; ++rep) {  // a second call captures again
      auto got = gd.generate(prompts, go, nullptr);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].ids, want[i].ids) << "nf4 " << nf4 << " lora " << with_lora << " prompt " << i;
        EXPECT_EQ(got[i].finish_reason, want[i].finish_reason);
      }
    }
  }
  // An EOS inside a read: generation stops there, as on the host.
  auto ref = gh.generate({{1, 5, 17, 42, 99}}, go, nullptr);
  ASSERT_GE(ref[0].ids.size(), 12u);
  go.eos_ids = {ref[0].ids[10]};
  auto want = gh.generate({{1, 5, 17, 42, 99}}, go, nullptr), got = gd.generate({{1, 5, 17, 42, 99}}, go, nullptr);
  EXPECT_EQ(got[0].ids, want[0].ids);
  EXPECT_EQ(got[0].finish_reason, "eos");
}

TEST(CudaDecode, DeviceLoopMatchesHostLoop) {
  COTUNE_REQUIRE_GPU();
  compare_device_loop(false, false);
  compare_device_loop(false, true);
  compare_device_loop(true, false);
}

TEST(CudaDecode, GreedyGenerationRuns) {
  COTUNE_REQUIRE_GPU();
  const std::string dir = testing::golden_dir() + "/model/r1like";
  model::LoadOptions o;
  o.device = Device::cuda;
  model::Qwen2Model m = model::Qwen2Model::load(dir, o);
  auto lora = infer::load_adapter(m, dir + "/lora/adapter_init");
  infer::Generator g(m, lora.get());
  infer::GenerationOptions go;
  go.max_new_tokens = 20;
  auto out = g.generate({{1, 5, 17, 42, 99}, {1, 200, 3}}, go, nullptr);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].ids.size(), 20u);
}

// ---- the fused one-token decode step against the unfused ops -----------------------------------------------------
struct Nf4Device {
  kernels::Nf4Buffers host;
  kernels::Nf4Weight dev;
};

std::unique_ptr<Nf4Device> nf4_upload(Arena& a, std::vector<float>& w, int64_t N, int64_t K) {
  auto q = std::make_unique<Nf4Device>();
  q->host = kernels::nf4_quantize(Tensor(w.data(), DType::f32, {N, K}));
  kernels::Nf4Weight hv = q->host.view();
  q->dev = hv;
  auto up = [&](const Tensor& src) {
    Tensor d = a.alloc(src.dtype, src.shape, "nf4 part");
    copy_bytes(d, src);
    return d;
  };
  q->dev.packed = up(hv.packed);
  q->dev.absmax = up(hv.absmax);
  q->dev.quant_map = up(hv.quant_map);
  q->dev.nested_absmax = up(hv.nested_absmax);
  q->dev.nested_quant_map = up(hv.nested_quant_map);
  return q;
}

std::vector<int32_t> download_i32(const Tensor& t) {
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  copy_bytes(Tensor(v.data(), DType::i32, {t.numel()}), t);
  return v;
}

// Unfused linear of one row: the GEMV kernels the generator used before fusing (bf16 or NF4).
void linear1(const Tensor& out, const Tensor& x, const kernels::DecodeProj& p) {
  const bool ok = p.nf4 ? kernels::small_nf4_linear_forward(out, x, *p.nf4, p.bias)
                        : kernels::small_linear_forward(out, x, p.weight, p.bias);
  ASSERT_TRUE(ok);
}

// Every fused op against the sequence of unfused ops it replaces, at a small GQA shape with biases on q/k/v and a
// cache holding earlier positions. bf16 weights: bit-identical; NF4: the same function up to fp32 summation order.
void compare_fused_ops(bool nf4, bool pdl) {
  kernels::cuda::set_decode_pdl(pdl);
  Arena a(Device::cuda);
  const int64_t C = 512, I = 1408, H = 8, KV = 2, D = 64, QD = H * D, KVD = KV * D, S = 2, N = 40;
  const float eps = 1e-6f, theta = 10000.0f, scale = 0.125f;
  uint32_t seed = 100;
  auto rnd = [&](int64_t n, float sd) { return testing::randn(static_cast<size_t>(n), seed++, sd); };
  std::vector<std::vector<float>> host_w;
  std::vector<std::unique_ptr<Nf4Device>> q4;
  auto proj = [&](int64_t rows, int64_t cols, bool bias) {
    kernels::DecodeProj p;
    host_w.push_back(rnd(rows * cols, 0.05f));
    testing::add_outlier_channels(host_w.back(), cols, 8.0f);
    if (nf4) {
      q4.push_back(nf4_upload(a, host_w.back(), rows, cols));
      p.nf4 = &q4.back()->dev;
    } else {
      p.weight = upload(a, host_w.back(), {rows, cols}, DType::bf16);
    }
    if (bias) p.bias = upload(a, rnd(rows, 0.5f), {rows}, DType::bf16);
    return p;
  };
  const auto wq = proj(QD, C, true), wk = proj(KVD, C, true), wv = proj(KVD, C, true), wo = proj(C, QD, false);
  const auto wg = proj(I, C, false), wu = proj(I, C, false), wd = proj(C, I, false);
  kernels::DecodeProj head;
  head.weight = upload(a, rnd(1000 * C, 0.05f), {1000, C}, DType::bf16);
  Tensor norm1 = upload(a, rnd(C, 1.0f), {C}, DType::bf16), norm2 = upload(a, rnd(C, 1.0f), {C}, DType::bf16);
  auto x_host = rnd(C, 1.0f);
  testing::add_outlier_channels(x_host, C, 20.0f);
  auto tol = [&](const Tensor& got, const Tensor& want, const char* what) {  // fp32 sums in another order
    auto g = download(got);
    EXPECT_EQ(testing::count_nonfinite(g), 0u) << what;
    EXPECT_LT(rel_err(g, download(want)), nf4 ? 1e-2 : 5e-3) << what;
  };
  auto fresh = [&](int64_t n) { return upload(a, std::vector<float>(static_cast<size_t>(n), NAN), {1, n}, DType::bf16); };

  // rmsnorm + q/k/v
  Tensor x = upload(a, x_host, {1, C}, DType::bf16);
  Tensor h = fresh(C), rstd = upload(a, {0.0f}, {1}, DType::f32);
  Tensor q_ref = fresh(QD), k_ref = fresh(KVD), v_ref = fresh(KVD), q = fresh(QD), k = fresh(KVD), v = fresh(KVD);
  kernels::rmsnorm_forward(h, rstd, x, norm1, eps);
  linear1(q_ref, h, wq);
  linear1(k_ref, h, wk);
  linear1(v_ref, h, wv);
  kernels::decode_norm_qkv(q, k, v, x, norm1, eps, wq, wk, wv);
  tol(q, q_ref, "q");
  tol(k, k_ref, "k");
  tol(v, v_ref, "v");

  // rope + cache write + attention: slot 1 holds 23 earlier positions; the new token is position 23.
  for (int32_t pos : {0, 23}) {
    auto kc_host = rnd(S * N * KVD, 1.0f), vc_host = rnd(S * N * KVD, 1.0f);
    Tensor kc_ref = upload(a, kc_host, {S, N, KV, D}, DType::bf16), vc_ref = upload(a, vc_host, {S, N, KV, D}, DType::bf16);
    Tensor kc = upload(a, kc_host, {S, N, KV, D}, DType::bf16), vc = upload(a, vc_host, {S, N, KV, D}, DType::bf16);
    Tensor slot = upload_i32(a, {1}, {1}), posd = upload_i32(a, {pos}, {1});
    Tensor qr = fresh(QD), kr = fresh(KVD), att_ref = fresh(QD), att = fresh(QD);
    kernels::DecodeAttentionWork work;
    work.partial = upload(a, std::vector<float>(static_cast<size_t>(kernels::decode_attention_partial_floats(1, H, D)), NAN),
                          {kernels::decode_attention_partial_floats(1, H, D)}, DType::f32);
    work.counters = upload_i32(a, std::vector<int32_t>(static_cast<size_t>(H), 0), {H});
    copy_bytes(qr, q_ref);
    copy_bytes(kr, k_ref);
    kernels::rope_forward(qr.view({1, H, D}), posd, theta);
    kernels::rope_forward(kr.view({1, KV, D}), posd, theta);
    kernels::kv_cache_write(kc_ref, vc_ref, kr.view({1, KV, D}), v_ref.view({1, KV, D}), slot, posd);
    kernels::cached_attention_forward(att_ref.view({1, H, D}), qr.view({1, H, D}), kc_ref, vc_ref, slot, posd, scale);
    kernels::decode_rope_attention(att.view({1, H, D}), q_ref.view({1, H, D}), k_ref.view({1, KV, D}),
                                   v_ref.view({1, KV, D}), kc, vc, slot, posd, theta, scale, work);
    tol(att, att_ref, pos == 0 ? "attention at position 0" : "attention at position 23");
    EXPECT_EQ(download_i32(work.counters), std::vector<int32_t>(static_cast<size_t>(H), 0)) << "counters reset";
    EXPECT_EQ(download(kc), download(kc_ref)) << "k cache at position " << pos;
    EXPECT_EQ(download(vc), download(vc_ref)) << "v cache at position " << pos;
  }

  // o + residual, rmsnorm + gate/up + swiglu, down + residual
  Tensor att = upload(a, rnd(QD, 1.0f), {1, QD}, DType::bf16);
  Tensor x_ref = upload(a, x_host, {1, C}, DType::bf16), tmp = fresh(C);
  linear1(tmp, att, wo);
  kernels::add(x_ref, x_ref, tmp);
  kernels::decode_linear_residual(x, att, wo);
  tol(x, x_ref, "x after o");
  copy_bytes(x, x_ref);
  Tensor g = fresh(I), u = fresh(I), m_ref = fresh(I), m = fresh(I);
  kernels::rmsnorm_forward(h, rstd, x_ref, norm2, eps);
  linear1(g, h, wg);
  linear1(u, h, wu);
  kernels::swiglu_forward(m_ref, g, u);
  kernels::decode_norm_swiglu(m, x, norm2, eps, wg, wu);
  tol(m, m_ref, "swiglu");
  linear1(tmp, m_ref, wd);
  kernels::add(x_ref, x_ref, tmp);
  kernels::decode_linear_residual(x, m_ref, wd);
  tol(x, x_ref, "x after down");

  // LM head, f32 logits
  Tensor lg_ref = upload(a, std::vector<float>(1000, NAN), {1, 1000}, DType::f32), lg = lg_ref;
  lg = upload(a, std::vector<float>(1000, NAN), {1, 1000}, DType::f32);
  ASSERT_TRUE(kernels::small_linear_forward(lg_ref, h, head.weight, Tensor()));
  kernels::decode_logits(lg, h, head);
  EXPECT_LT(rel_err(download(lg), download(lg_ref)), 1e-5);
  kernels::cuda::set_decode_pdl(true);
}

TEST(CudaDecode, FusedStepOpsMatchUnfused) {
  COTUNE_REQUIRE_GPU();
  compare_fused_ops(false, true);
  compare_fused_ops(false, false);
  compare_fused_ops(true, true);
}

// The generator with the fused step against the unfused one: logits of prefill + decode steps (bf16: identical),
// and greedy ids through the device loop (CUDA graph with programmatic dependent launches), bf16 and NF4.
TEST(CudaDecode, FusedGeneratorMatchesUnfused) {
  COTUNE_REQUIRE_GPU();
  const std::string dir = testing::golden_dir() + "/model/r1like";
  for (bool nf4 : {false, true}) {
    model::LoadOptions o;
    o.device = Device::cuda;
    o.load_in_4bit = nf4;
    model::Qwen2Model m = model::Qwen2Model::load(dir, o);
    infer::GeneratorOptions plain_o, fused_o;
    plain_o.fused_decode = false;
    infer::Generator gp(m, nullptr, plain_o), gf(m, nullptr, fused_o);
    auto lp = gp.prefill({{1, 5, 17, 42, 99}}, 40), lf = gf.prefill({{1, 5, 17, 42, 99}}, 40);
    EXPECT_LT(rel_err(lf, lp), 1e-5);  // prefill of 5 tokens is not fused (the LM head is)
    for (int step = 0; step < 5; ++step) {
      lp = gp.decode({0}, {static_cast<int32_t>(10 + 31 * step)});
      lf = gf.decode({0}, {static_cast<int32_t>(10 + 31 * step)});
      EXPECT_LT(rel_err(lf, lp), nf4 ? 1e-2 : 5e-3) << "step " << step;
    }
    infer::GenerationOptions go;
    go.max_new_tokens = 40;
    for (bool pdl : {true, false}) {
      kernels::cuda::set_decode_pdl(pdl);
      auto want = gp.generate({{1, 5, 17, 42, 99}}, go, nullptr), got = gf.generate({{1, 5, 17, 42, 99}}, go, nullptr);
      EXPECT_EQ(got[0].ids, want[0].ids) << "nf4 " << nf4 << " pdl " << pdl;
    }
    kernels::cuda::set_decode_pdl(true);
  }
}

// The device decode loop's greedy step on the GPU equals its CPU twin: ids, tokens, count and pos, over a vocabulary
// shorter than the logits row and with ties and NaN in it.
TEST(CudaDecode, ArgmaxAdvanceMatchesCpu) {
  COTUNE_REQUIRE_GPU();
  const int64_t V = 151936, vocab = 151665;
  auto logits = testing::randn(static_cast<size_t>(V), 41);
  logits[1000] = logits[77777] = 50.0f;  // a tie: the lower id wins
  logits[151700] = 99.0f;                // past the vocabulary: never picked
  logits[5] = std::nanf("");
  Arena arena(Device::cuda, size_t{64} << 20);
  const Tensor dl = upload(arena, logits, Shape{1, V}, DType::f32);
  const int64_t P = kernels::argmax_partials();
  Tensor pv = arena.alloc(DType::f32, Shape{P}), pi = arena.alloc(DType::i32, Shape{P});
  Tensor ids = upload_i32(arena, {0}, Shape{1}), pos = upload_i32(arena, {41}, Shape{1}),
         tokens = upload_i32(arena, {-1, -1, -1, -1}, Shape{4}), count = upload_i32(arena, {2}, Shape{1});
  auto i32s = [](const Tensor& t) {
    std::vector<int32_t> v(static_cast<size_t>(t.numel()));
    copy_bytes(Tensor(v.data(), DType::i32, t.shape), t);
    return v;
  };
  kernels::argmax_advance(dl, vocab, pv, pi, ids, pos, tokens, count);
  std::vector<int32_t> hids = {0}, hpos = {41}, htokens = {-1, -1, -1, -1}, hcount = {2};
  kernels::argmax_advance(Tensor(logits.data(), DType::f32, {1, V}), vocab, Tensor(), Tensor(),
                          Tensor(hids.data(), DType::i32, {1}), Tensor(hpos.data(), DType::i32, {1}),
                          Tensor(htokens.data(), DType::i32, {4}), Tensor(hcount.data(), DType::i32, {1}));
  EXPECT_EQ(hids[0], 1000);
  EXPECT_EQ(i32s(ids), hids);
  EXPECT_EQ(i32s(pos), hpos);
  EXPECT_EQ(i32s(tokens), htokens);
  EXPECT_EQ(i32s(count), hcount);
}

}  // namespace
}  // namespace cotune
