// A whole training step on the GPU (bf16 storage, fp32 accumulation) against the CPU fp32 reference on the
// golden tiny model: loss and every LoRA gradient, with a bf16 tolerance; the NF4 base on the GPU against
// the CPU's NF4-rounded weights; and a few optimizer steps on the GPU (fp32 and 8-bit AdamW) against the CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/mmap.h"
#include "base/rng.h"
#include "common/test_paths.h"
#include "formats/peft_adapter.h"
#include "golden_io.h"
#include "kernels/cuda/context.h"
#include "model/lora.h"
#include "kernels/ops.h"
#include "model/qwen2.h"
#include "train/optimizer.h"

namespace cotune {
namespace {

std::vector<float> to_host(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  copy_bytes(Tensor(v.data(), DType::f32, t.shape), t);
  return v;
}

double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

model::PackedBatch batch_from_json(const nlohmann::json& j) {
  model::PackedBatch b;
  b.input_ids = j["input_ids"].get<std::vector<int32_t>>();
  b.position_ids = j["position_ids"].get<std::vector<int32_t>>();
  b.targets = j["targets"].get<std::vector<int32_t>>();
  b.cu_seqlens = j["cu_seqlens"].get<std::vector<int32_t>>();
  return b;
}

class GpuStep : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kernels::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA GPU visible";
  }
  std::string dir = testing::golden_dir() + "/model/r1like";
  std::string lora_dir = dir + "/lora";
  nlohmann::json spec = nlohmann::json::parse(read_file(lora_dir + "/training.json"));

  // Runs the golden's first step (2 micro-batches) on `runner` and returns the loss; gradients are left in `lora`.
  double run_step(model::Qwen2Runner& runner, model::LoraWeights& lora) {
    int64_t n = 0;
    for (const auto& mb : spec["steps"][0]) n += batch_from_json(mb).counted();
    lora.zero_grads();
    double loss = 0;
    for (const auto& mb : spec["steps"][0])
      loss += runner.forward_backward(batch_from_json(mb), true, 1.0f / static_cast<float>(n)).loss_sum;
    return loss / static_cast<double>(n);
  }
  double step(const model::Qwen2Model& m, model::LoraWeights& lora, bool checkpointing) {
    model::RunnerOptions ro;
    ro.max_tokens = 64;
    ro.gradient_checkpointing = checkpointing;
    model::Qwen2Runner runner(m, &lora, ro);
    return run_step(runner, lora);
  }
  model::LoraWeights adapter(const model::Qwen2Model& m, Device d) {
    model::LoraWeights w(m.config(), model::LoraConfig::from_peft(formats::load_peft_adapter_config(lora_dir + "/adapter_init")), d);
    w.load_peft_weights(lora_dir + "/adapter_init");
    return w;
  }
};

void compare_grads(model::LoraWeights& gpu, model::LoraWeights& cpu, double tol) {
  auto pg = gpu.params(), pc = cpu.params();
  ASSERT_EQ(pg.size(), pc.size());
  for (size_t i = 0; i < pg.size(); ++i) {
    const double e = rel_err(to_host(pg[i].grad), to_host(pc[i].grad));
    EXPECT_LE(e, tol) << pg[i].peft_name;
  }
}

// Tolerance: bf16 storage of activations and weights gives ~0.4% per rounding; through two layers, attention
// and the LM head the LoRA gradients land within a few percent of fp32.
TEST_F(GpuStep, Bf16StepMatchesCpuReference) {
  model::Qwen2Model cpu_m = model::Qwen2Model::load(dir);
  model::Qwen2Model gpu_m = model::Qwen2Model::load(dir, {Device::cuda, false});
  auto cpu_l = adapter(cpu_m, Device::cpu);
  auto gpu_l = adapter(gpu_m, Device::cuda);
  const double lc = step(cpu_m, cpu_l, true);
  const double lg = step(gpu_m, gpu_l, true);
  EXPECT_NEAR(lg, lc, 1e-2 * lc);
  compare_grads(gpu_l, cpu_l, 5e-2);
  // Checkpointing on or off gives bit-identical gradients on the GPU too (same kernels, deterministic).
  auto gpu_l2 = adapter(gpu_m, Device::cuda);
  EXPECT_EQ(step(gpu_m, gpu_l2, false), lg);
  auto a = gpu_l.params(), b = gpu_l2.params();
  for (size_t i = 0; i < a.size(); ++i) {
    auto x = to_host(a[i].grad), y = to_host(b[i].grad);
    ASSERT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * 4)) << a[i].peft_name;
  }
}

// A training step replayed as a CUDA graph (the batch padded to its bucket) against the same step run kernel by
// kernel: the padding is never counted, the replay is deterministic, and preparing graphs leaves gradients alone.
TEST_F(GpuStep, CudaGraphStepsMatchStepsWithoutGraphs) {
  for (bool nf4 : {false, true}) {
    SCOPED_TRACE(nf4 ? "NF4 base" : "bf16 base");
    model::Qwen2Model m = model::Qwen2Model::load(dir, {Device::cuda, nf4});
    auto run = [&](model::LoraWeights& lora, model::Qwen2Runner& runner) { return run_step(runner, lora); };
    model::RunnerOptions ro;
    ro.max_tokens = 64;
    ro.graph_bucket = 16;
    auto lg = adapter(m, Device::cuda);
    model::Qwen2Runner with(m, &lg, ro);
    lg.zero_grads();
    EXPECT_GT(with.prepare_graphs(), 0);
    for (const auto& p : lg.params()) {
      auto g = to_host(p.grad);
      EXPECT_EQ(std::count(g.begin(), g.end(), 0.0f), static_cast<long>(g.size())) << p.peft_name;
    }
    const double l1 = run(lg, with);
    EXPECT_EQ(with.graph_launches(), static_cast<int64_t>(spec["steps"][0].size()));
    std::vector<std::vector<float>> first;
    for (const auto& p : lg.params()) first.push_back(to_host(p.grad));
    EXPECT_EQ(run(lg, with), l1);  // replays are deterministic
    auto pg = lg.params();
    for (size_t i = 0; i < pg.size(); ++i) EXPECT_EQ(to_host(pg[i].grad), first[i]) << pg[i].peft_name;

    ro.cuda_graphs = false;
    auto le = adapter(m, Device::cuda);
    model::Qwen2Runner without(m, &le, ro);
    const double l0 = run(le, without);
    EXPECT_EQ(without.graph_launches(), 0);
    EXPECT_NEAR(l1, l0, 1e-3 * l0);
    compare_grads(lg, le, 1e-2);
  }
}

// Checkpointing that keeps each layer's attention outputs recomputes less, and gives bit-identical results.
TEST_F(GpuStep, KeptAttentionOutputsGiveIdenticalGradients) {
  model::Qwen2Model m = model::Qwen2Model::load(dir, {Device::cuda, true});
  auto run = [&](int keep, model::LoraWeights& lora) {
    model::RunnerOptions ro;
    ro.max_tokens = 64;
    ro.keep_attention = keep;
    model::Qwen2Runner runner(m, &lora, ro);
    const double loss = run_step(runner, lora);
    return std::make_pair(loss, runner.plan().activations);
  };
  auto kept = adapter(m, Device::cuda), recomputed = adapter(m, Device::cuda);
  const auto [lk, bytes_kept] = run(1, kept);
  const auto [lr, bytes_recomputed] = run(0, recomputed);
  EXPECT_GT(bytes_kept, bytes_recomputed);
  EXPECT_EQ(lk, lr);
  auto a = kept.params(), b = recomputed.params();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(to_host(a[i].grad), to_host(b[i].grad)) << a[i].peft_name;
}

// Offloaded checkpoints on the GPU (copies on a second stream, ordered by events, inside the captured step graphs):
// bit-identical to checkpoints kept on the device, with graphs and without, NF4 base, 6 layers.
TEST_F(GpuStep, OffloadedCheckpointsGiveIdenticalGradients) {
  formats::ModelConfig cfg = model::Qwen2Model::load(dir).config();
  cfg.num_hidden_layers = 6;
  const model::Qwen2Model m = model::Qwen2Model::random(cfg, {Device::cuda, true}, 5, 0.05f);
  model::LoraConfig lc;
  lc.r = 8;
  auto run = [&](bool offload, bool graphs, model::LoraWeights& lora) {
    lora.init_peft_default(11);
    for (auto& p : lora.params())
      if (p.peft_name.find("lora_B") != std::string::npos) kernels::fill_normal(p.value, 17 + p.value.numel(), 0.05f);
    lora.refresh_compute_copies();
    model::RunnerOptions ro;
    ro.max_tokens = 64;
    ro.graph_bucket = 16;
    ro.cuda_graphs = graphs;
    ro.offload_checkpoints = offload;
    model::Qwen2Runner runner(m, &lora, ro);
    EXPECT_EQ(runner.plan().host > 0, offload);
    double loss = run_step(runner, lora);
    loss += run_step(runner, lora);  // a second step: graphs replayed, host buffers reused
    return loss;
  };
  for (bool graphs : {true, false}) {
    SCOPED_TRACE(graphs ? "CUDA graphs" : "kernel by kernel");
    model::LoraWeights a(cfg, lc, Device::cuda), b(cfg, lc, Device::cuda);
    const double la = run(true, graphs, a), lb = run(false, graphs, b);
    EXPECT_EQ(la, lb);
    auto pa = a.params(), pb = b.params();
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_EQ(to_host(pa[i].grad), to_host(pb[i].grad)) << pa[i].peft_name;
  }
}

TEST_F(GpuStep, Nf4BaseMatchesCpuNf4Reference) {
  model::Qwen2Model cpu_m = model::Qwen2Model::load(dir, {Device::cpu, true});
  model::Qwen2Model gpu_m = model::Qwen2Model::load(dir, {Device::cuda, true});
  ASSERT_TRUE(gpu_m.nf4());
  auto cpu_l = adapter(cpu_m, Device::cpu);
  auto gpu_l = adapter(gpu_m, Device::cuda);
  const double lc = step(cpu_m, cpu_l, true);
  const double lg = step(gpu_m, gpu_l, true);
  EXPECT_NEAR(lg, lc, 1e-2 * lc);
  compare_grads(gpu_l, cpu_l, 5e-2);
  // And the 4-bit loss differs from the 16-bit one (the weights really are NF4-rounded) but not by much.
  model::Qwen2Model full = model::Qwen2Model::load(dir);
  auto full_l = adapter(full, Device::cpu);
  const double l16 = step(full, full_l, true);
  EXPECT_NE(l16, lc);
  EXPECT_NEAR(l16, lc, 0.05 * l16);
}

TEST_F(GpuStep, OptimizerStepsMatchCpu) {
  for (auto kind : {train::OptimKind::adamw, train::OptimKind::adamw8bit}) {
    model::Qwen2Model cpu_m = model::Qwen2Model::load(dir);
    model::Qwen2Model gpu_m = model::Qwen2Model::load(dir, {Device::cuda, false});
    model::LoraConfig lc;
    lc.r = 32;  // MLP A/B of 32 x 256 / 256 x 32 reach the 8-bit size of 4096 elements
    model::LoraWeights cw(cpu_m.config(), lc, Device::cpu), gw(gpu_m.config(), lc, Device::cuda);
    cw.init_peft_default(5);
    gw.init_peft_default(5);
    train::OptimConfig oc;
    oc.kind = kind;
    oc.weight_decay = 0.01;
    train::Optimizer co(oc, cw.params()), go(oc, gw.params());
    for (int s = 0; s < 3; ++s) {
      // Identical gradients on both devices: random, with one large tensor to make clipping bite.
      auto pc = cw.params(), pg = gw.params();
      Rng rng(static_cast<uint64_t>(s) + 10);
      for (size_t i = 0; i < pc.size(); ++i) {
        std::vector<float> g(static_cast<size_t>(pc[i].grad.numel()));
        for (auto& x : g) x = rng.normal() * (i == 0 ? 1.0f : 0.01f);
        copy_bytes(pc[i].grad, Tensor(g.data(), DType::f32, pc[i].grad.shape));
        copy_bytes(pg[i].grad, Tensor(g.data(), DType::f32, pg[i].grad.shape));
      }
      const float nc = co.clip_grad_norm(1.0), ng = go.clip_grad_norm(1.0);
      EXPECT_NEAR(ng, nc, 1e-5 * nc);
      co.step(1e-3);
      go.step(1e-3);
    }
    auto pc = cw.params(), pg = gw.params();
    for (size_t i = 0; i < pc.size(); ++i) {
      // fp32 AdamW: within float rounding; 8-bit: the same codes, up to rare ties in requantization.
      EXPECT_LE(rel_err(to_host(pg[i].value), to_host(pc[i].value)), kind == train::OptimKind::adamw ? 1e-6 : 1e-3)
          << pc[i].peft_name;
    }
  }
}

}  // namespace
}  // namespace cotune
