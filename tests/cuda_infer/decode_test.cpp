// CUDA decode path against its CPU twins: KV-cache write and cached attention on random inputs, and the
// Generator's logits (prefill + decode steps) on the golden tiny model, bf16 on the GPU vs f32 on the CPU.
#include <gtest/gtest.h>

#include <cmath>

#include "common/test_paths.h"
#include "cuda_test_util.h"
#include "infer/generator.h"
#include "kernels/decode_ops.h"
#include "kernels/ops.h"
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

}  // namespace
}  // namespace cotune
