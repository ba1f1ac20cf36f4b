// bench_train: LoRA SFT training throughput of cotune at the DeepSeek-R1-Distill-Qwen-1.5B shape with
// random weights (speed does not depend on the weights' values).
//
//   bench_train --config config.json [--device cuda] [--4bit] [--optim adamw8bit] [--setting guide|packed|both]
//               [--steps N] [--warmup N] [--no-checkpointing] [--json]
//   bench_train --config config.json --setting single --length L [--split N] [--4bit] [--optim adamw8bit] [--json]
//
// Settings (issue 7 item 7 / issue 8):
//   guide   batch 1, gradient accumulation 4, sequence lengths drawn uniformly from [400, 2048] by a fixed
//           seed (bench/train/lengths.py prints the same list for the HF baseline); only real tokens count.
//   packed  4 x 2048 tokens packed into one micro-batch, accumulation 1.
//   single  one sequence of --length L tokens (random ids, every position trained: labels = the ids), batch 1,
//           accumulation 1, the runner's buffers sized for L; 0 warm-up and 1 timed step unless --warmup /
//           --steps say otherwise. It answers issue 8 (c): does one optimizer step at L train (finite loss, no
//           out-of-memory)? --split N cuts the L tokens into packed sequences of at most N tokens: a memory
//           probe that allocates exactly what one sequence of L does (buffers sized by tokens, attention
//           workspaces by tokens) while its attention costs O(L N) instead of O(L^2) (bench/train/longest.py
//           searches with it, then confirms the answer with a real single sequence).
//           Exit status: 0 trained, 3 out of GPU memory, 4 non-finite loss, 1 any other error; with --json a
//           JSON line {"ok": false, "error": ...} is printed in every case (the message also goes to stderr).
// Reports tokens/s, step time, peak GPU memory (total - free, CUDA context included: read the same way
// as the baseline script), and MFU: model FLOPs = 4 x linear parameters (LM head included) x tokens +
// attention matmuls forward and backward-to-inputs (causal: half the square), recomputation not counted,
// against the bf16 dense peak measured here (best of several 8192^3 cuBLASLt GEMMs) and the datasheet.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "base/rng.h"
#include "formats/model_config.h"
#include "kernels/ops.h"
#include "model/lora.h"
#include "model/qwen2.h"
#include "tensor/arena.h"
#include "train/optimizer.h"
#ifdef COTUNE_WITH_CUDA
#include "kernels/cuda/context.h"
#endif

using namespace cotune;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void sync(Device d) {
#ifdef COTUNE_WITH_CUDA
  if (d == Device::cuda) kernels::cuda::synchronize();
#else
  (void)d;
#endif
}

double total_gib(Device d) {
#ifdef COTUNE_WITH_CUDA
  if (d == Device::cuda) return static_cast<double>(kernels::cuda::device_info().total_bytes) / 1073741824.0;
#endif
  (void)d;
  return 0.0;
}

double used_gib(Device d) {
#ifdef COTUNE_WITH_CUDA
  if (d == Device::cuda) {
    auto info = kernels::cuda::device_info();
    return static_cast<double>(info.total_bytes - info.free_bytes) / 1073741824.0;
  }
#endif
  (void)d;
  return 0.0;
}

void profiler(Device d, bool start) {
#ifdef COTUNE_WITH_CUDA
  if (d == Device::cuda) {
    if (start) kernels::cuda::profiler_start();
    else kernels::cuda::profiler_stop();
  }
#else
  (void)d;
  (void)start;
#endif
}

// GEMM plans made since start() (CUDA: kernels::cuda::gemm_plan_stats; zero elsewhere).
class PlanCounter {
 public:
  void start() { base_ = now(); }
  int64_t count() const { return now().first - base_.first; }
  double seconds() const { return now().second - base_.second; }

 private:
  std::pair<int64_t, double> base_{0, 0.0};
  static std::pair<int64_t, double> now() {
#ifdef COTUNE_WITH_CUDA
    const auto st = kernels::cuda::gemm_plan_stats();
    return {st.plans, st.host_s};
#else
    return {0, 0.0};
#endif
  }
};

// The guide setting's lengths: uniform integers in [400, 2048] from Philox(seed 1234), 4 per step.
std::vector<int> guide_lengths(int n) {
  Rng rng(1234);
  std::vector<int> v;
  for (int i = 0; i < n; ++i) v.push_back(400 + static_cast<int>(rng.below(2048 - 400 + 1)));
  return v;
}

model::PackedBatch random_batch(const std::vector<int>& lens, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<std::vector<int32_t>> seqs;
  for (int n : lens) {
    std::vector<int32_t> s(static_cast<size_t>(n));
    for (auto& t : s) t = static_cast<int32_t>(rng.below(static_cast<uint64_t>(std::min<int64_t>(vocab, 151000))));
    seqs.push_back(std::move(s));
  }
  return model::PackedBatch::from_sequences(seqs);
}

double attention_flops(const formats::ModelConfig& c, int64_t len) {
  // forward QK^T + PV: 4 L^2 D H; backward to inputs (dP, dV, dQ, dK): 8 L^2 D H; causal: half.
  const double L = static_cast<double>(len);
  return 0.5 * 12.0 * L * L * static_cast<double>(c.head_dim * c.num_attention_heads * c.num_hidden_layers);
}

double measured_peak_tflops(Device d) {
  if (d != Device::cuda) return 0.0;
  Arena a(d);
  const int64_t n = 8192;
  Tensor x = a.alloc(DType::bf16, {n, n}), y = a.alloc(DType::bf16, {n, n}), z = a.alloc(DType::bf16, {n, n});
  std::vector<uint16_t> h(static_cast<size_t>(n * n));
  Rng rng(1);
  for (auto& v : h) v = static_cast<uint16_t>(0x3c00 + (rng.next_u32() & 0x3ff) - 0x200);  // random bf16 near 1/128..
  copy_bytes(x, Tensor(h.data(), DType::bf16, {n, n}));
  copy_bytes(y, Tensor(h.data(), DType::bf16, {n, n}));
  double best = 0;
  for (int rep = 0; rep < 6; ++rep) {
    sync(d);
    double t0 = now_s();
    for (int i = 0; i < 5; ++i) kernels::matmul(z, x, y, false, false);
    sync(d);
    const double dt = (now_s() - t0) / 5;
    if (rep > 0) best = std::max(best, 2.0 * n * n * n / dt / 1e12);
  }
  return best;
}

struct Result {
  std::string setting;
  double tokens_per_s = 0, step_s = 0, peak_gib = 0, mfu_measured = 0, mfu_datasheet = 0, loss = 0;
  int64_t tokens_per_step = 0;
};

std::string json_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"') o += "\\\"";
    else if (c == '\\') o += "\\\\";
    else if (c == '\n') o += "\\n";
    else if (c == '\t') o += "\\t";
    else if (c < 0x20) o += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    else o += ch;
  }
  return o;
}

// Exit statuses of the single setting (bench/train/longest.py reads them).
constexpr int kExitError = 1, kExitOom = 3, kExitNonFinite = 4;

// A failed allocation: cudaErrorMemoryAllocation's message "(out of memory)" closes the errors of
// tensor/arena.cpp and kernels/cuda/context.cpp (the arena's "GPU out of memory: ..." prefix alone is not
// enough: it is also used for other cudaMalloc failures, e.g. no usable driver); cuBLAS says "the resource
// allocation failed".
bool is_oom(const std::string& msg) {
  return msg.find("(out of memory)") != std::string::npos ||
         msg.find("resource allocation failed") != std::string::npos;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cotune LoRA training throughput benchmark"};
  std::string config_path, device_s = "cuda", setting = "both", optim = "adamw8bit";
  bool four_bit = false, no_ckpt = false, json = false, profile = false, no_graphs = false;
  std::string lengths_out;
  int steps = 8, warmup = 2, lora_r = 16;
  int64_t length = 0, split = 0;
  double datasheet_tflops = 989.0;
  app.add_option("--config", config_path, "model config.json (the 1.5B shape)")->required();
  app.add_option("--device", device_s, "cuda or cpu");
  app.add_option("--setting", setting, "guide, packed, both (guide and packed) or single");
  app.add_option("--length", length, "single: tokens of the one sequence");
  app.add_option("--split", split, "single: cut the tokens into packed sequences of at most N (memory probe)");
  app.add_option("--optim", optim, "adamw or adamw8bit");
  app.add_option("--steps", steps, "timed optimizer steps (single: 1)");
  app.add_option("--warmup", warmup, "untimed optimizer steps first (single: 0)");
  app.add_option("--lora-r", lora_r, "LoRA rank");
  app.add_option("--datasheet-tflops", datasheet_tflops, "bf16 dense peak of the datasheet (H100 SXM: 989)");
  app.add_flag("--4bit", four_bit, "NF4 base");
  app.add_flag("--no-checkpointing", no_ckpt, "keep every layer's activations");
  app.add_flag("--no-graphs", no_graphs, "run each step's kernels one by one (no CUDA graphs)");
  std::string keep_attention = "auto";
  int64_t ce_chunk = 0;
  app.add_option("--keep-attention", keep_attention,
                 "checkpointing keeps each layer's attention outputs: auto (when it costs at most 1/8 of the free "
                 "memory), on, off (the least memory; recipe key keep_attention)")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_option("--ce-chunk", ce_chunk, "tokens per LM-head chunk (0: 256 MiB of f32 logits)");
  bool offload = false;
  app.add_flag("--offload-checkpoints", offload,
               "keep the checkpointed layer inputs in pinned host memory (recipe key offload_checkpoints)");
  app.add_flag("--json", json, "one JSON line per setting");
  app.add_flag("--profile", profile,
               "mark the first timed step for `ncu --profile-from-start off` and report the GEMM plans made in the "
               "timed steps (shapes seen for the first time: descriptors + cuBLASLt heuristic, host time)");
  app.add_option("--lengths-out", lengths_out, "write the guide setting's sequence lengths (JSON) for the baseline");
  CLI11_PARSE(app, argc, argv);
  const bool single = setting == "single";
  if (setting != "guide" && setting != "packed" && setting != "both" && !single) {
    fmt::print(stderr, "bench_train: --setting must be guide, packed, both or single, got {}\n", setting);
    return 2;
  }
  if (single) {
    if (length < 2) {
      fmt::print(stderr, "bench_train: --setting single needs --length L (at least 2 tokens)\n");
      return 2;
    }
    if (length > std::numeric_limits<int32_t>::max()) {
      fmt::print(stderr, "bench_train: --length {} exceeds the int32 token indices of a batch\n", length);
      return 2;
    }
    if (app.count("--steps") == 0) steps = 1;
    if (app.count("--warmup") == 0) warmup = 0;
  }
  if (steps < 1 || warmup < 0) {
    fmt::print(stderr, "bench_train: --steps must be >= 1 and --warmup >= 0\n");
    return 2;
  }
  const char* system = four_bit ? "cotune-nf4" : "cotune-bf16";
  Device dev = Device::cpu;
  std::string phase = "starting";  // what the single setting was doing, for its error message
  double single_peak_gib = 0;      // single: total - free, the maximum over the run
  try {
    dev = device_s == "cpu" ? Device::cpu : Device::cuda;
    if (!lengths_out.empty()) {
      std::FILE* f = std::fopen(lengths_out.c_str(), "w");
      if (!f) fail("cannot write {}", lengths_out);
      fmt::print(f, "[{}]\n", fmt::join(guide_lengths(4 * (warmup + steps)), ", "));
      std::fclose(f);
    }
    phase = "reading the model config";
    formats::ModelConfig cfg = formats::load_model_config(config_path);
    phase = "measuring the GEMM peak";
    const double peak = measured_peak_tflops(dev);
    std::string gpu_name = "cpu";
#ifdef COTUNE_WITH_CUDA
    if (dev == Device::cuda) gpu_name = kernels::cuda::device_info().name;
#endif
    const double base_gib = used_gib(dev);
    model::LoadOptions lo;
    lo.device = dev;
    lo.load_in_4bit = four_bit;
    phase = "building the model (random weights)";
    double t0 = now_s();
    model::Qwen2Model m = model::Qwen2Model::random(cfg, lo, 0);
    const double load_s = now_s() - t0;
    model::LoraConfig lc;
    lc.r = lora_r;
    lc.alpha = static_cast<float>(lora_r);
    model::LoraWeights lora(cfg, lc, dev);
    lora.init_peft_default(3407);
    train::OptimConfig oc;
    oc.kind = train::parse_optim(optim);
    oc.weight_decay = 0.01;
    train::Optimizer opt(oc, lora.params());
    const double linear_params = static_cast<double>(cfg.linear_parameter_count());

    if (single) {
      // One sequence of `length` tokens (or, with --split, packed pieces of at most `split` tokens).
      std::vector<int> lens;
      const int64_t piece = split > 0 ? split : length;
      for (int64_t t = 0; t < length; t += piece) lens.push_back(static_cast<int>(std::min(piece, length - t)));
      model::RunnerOptions ro;
      ro.max_tokens = length;
      ro.gradient_checkpointing = !no_ckpt;
      ro.keep_attention = keep_attention == "auto" ? -1 : keep_attention == "on" ? 1 : 0;
      ro.ce_chunk = ce_chunk;
      ro.offload_checkpoints = offload;
      phase = fmt::format("allocating the runner's buffers for {} tokens", length);
      model::Qwen2Runner runner(m, &lora, ro);
      const model::MemoryPlan plan = runner.plan();
      single_peak_gib = std::max(single_peak_gib, used_gib(dev));
      double timed = 0, flops = 0, loss = 0;
      int64_t tokens = 0;
      for (int step = 0; step < warmup + steps; ++step) {
        phase = fmt::format("making step {}'s batch", step);
        const model::PackedBatch b = random_batch(lens, cfg.vocab_size, static_cast<uint64_t>(step * 16));
        const int64_t counted = b.counted();
        sync(dev);
        phase = fmt::format("step {}: forward + backward of {} tokens (activations, attention and LoRA workspaces)",
                            step, length);
        const double ts = now_s();
        lora.zero_grads();
        const double ls = runner.forward_backward(b, true, 1.0f / static_cast<float>(counted)).loss_sum;
        phase = fmt::format("step {}: optimizer update", step);
        opt.clip_grad_norm(1.0);
        opt.step(2e-4);
        sync(dev);
        const double dt = now_s() - ts;
        single_peak_gib = std::max(single_peak_gib, used_gib(dev));
        loss = ls / static_cast<double>(counted);
        if (!std::isfinite(loss)) {
          phase = fmt::format("step {}", step);
          fail("non-finite loss {} at step {}", loss, step);
        }
        if (step < warmup) continue;
        timed += dt;
        tokens += b.tokens();
        flops += 4.0 * linear_params * static_cast<double>(b.tokens());
        for (size_t q = 0; q + 1 < b.cu_seqlens.size(); ++q) flops += attention_flops(cfg, b.cu_seqlens[q + 1] - b.cu_seqlens[q]);
      }
      const double achieved = flops / timed / 1e12;
      if (json) {
        fmt::print("{{\"system\": \"{}\", \"setting\": \"single\", \"ok\": true, \"length\": {}, \"split\": {}, "
                   "\"optim\": \"{}\", \"grad_ckpt\": {}, \"loss\": {:.4f}, \"step_s\": {:.4f}, \"tokens_per_s\": {:.1f}, "
                   "\"peak_gib\": {:.2f}, \"plan_gib\": {:.2f}, \"mfu\": {:.4f}, \"mfu_datasheet\": {:.4f}, "
                   "\"achieved_tflops\": {:.1f}, \"measured_peak_tflops\": {:.1f}, \"gpu\": \"{}\", "
                   "\"gpu_total_gib\": {:.2f}, \"context_gib\": {:.2f}, \"load_s\": {:.1f}}}\n",
                   system, length, split > 0 ? split : length, optim, no_ckpt ? "false" : "true", loss, timed / steps,
                   static_cast<double>(tokens) / timed, single_peak_gib, static_cast<double>(plan.total()) / 1073741824.0,
                   peak > 0 ? achieved / peak : 0.0, achieved / datasheet_tflops, achieved, peak, json_escape(gpu_name),
                   total_gib(dev), base_gib, load_s);
      } else {
        fmt::print("single {} tokens{}: trained, loss {:.4f}, step {:.3f} s, {:.0f} tok/s, peak {:.2f} GiB (runner plan: {})\n",
                   length, split > 0 ? fmt::format(" (split {})", split) : "", loss, timed / steps,
                   static_cast<double>(tokens) / timed, single_peak_gib, plan.str());
      }
      std::fflush(stdout);
      return 0;
    }

    std::vector<Result> results;
    for (const std::string s : {"guide", "packed"}) {
      if (setting != "both" && setting != s) continue;
      const bool guide = s == "guide";
      const int accum = guide ? 4 : 1;
      const int64_t budget = guide ? 2048 : 4 * 2048;
      const int n_steps = warmup + steps;
      std::vector<int> lens = guide ? guide_lengths(n_steps * accum) : std::vector<int>(static_cast<size_t>(n_steps * 4), 2048);
      model::RunnerOptions ro;
      ro.max_tokens = budget;
      ro.gradient_checkpointing = !no_ckpt;
      ro.cuda_graphs = !no_graphs;
      ro.keep_attention = keep_attention == "auto" ? -1 : keep_attention == "on" ? 1 : 0;
      ro.ce_chunk = ce_chunk;
      ro.offload_checkpoints = offload;
      model::Qwen2Runner runner(m, &lora, ro);
      // The guide's CUDA graphs of every length bucket, captured before timing (a training run captures each once,
      // at its first use; see RunnerOptions::cuda_graphs).
      const double tg = now_s();
      const int n_graphs = guide ? runner.prepare_graphs() : 0;  // packed: its one shape is captured while warming up
      const double prepare_s = now_s() - tg;
      if (profile) fmt::print(stderr, "{}: {} CUDA graphs prepared in {:.2f} s\n", s, n_graphs, prepare_s);
      double timed = 0, flops = 0, loss = 0;
      int64_t tokens = 0;
      double peak_gib = 0;
      PlanCounter plans;
      for (int step = 0; step < n_steps; ++step) {
        std::vector<model::PackedBatch> micro;
        int64_t counted = 0;
        for (int a = 0; a < accum; ++a) {
          std::vector<int> l = guide ? std::vector<int>{lens[static_cast<size_t>(step * accum + a)]}
                                     : std::vector<int>(lens.begin() + step * 4, lens.begin() + step * 4 + 4);
          micro.push_back(random_batch(l, cfg.vocab_size, static_cast<uint64_t>(step * 16 + a)));
          counted += micro.back().counted();
        }
        sync(dev);
        const bool marked = profile && step == warmup;
        if (step == warmup) plans.start();
        if (marked) profiler(dev, true);
        const double ts = now_s();
        lora.zero_grads();
        double ls = 0;
        for (auto& b : micro) ls += runner.forward_backward(b, true, 1.0f / static_cast<float>(counted)).loss_sum;
        opt.clip_grad_norm(1.0);
        opt.step(2e-4);
        sync(dev);
        const double dt = now_s() - ts;
        if (marked) profiler(dev, false);
        peak_gib = std::max(peak_gib, used_gib(dev));
        if (step < warmup) continue;
        timed += dt;
        loss = ls / static_cast<double>(counted);
        for (auto& b : micro) {
          tokens += b.tokens();
          flops += 4.0 * linear_params * static_cast<double>(b.tokens());
          for (size_t q = 0; q + 1 < b.cu_seqlens.size(); ++q) flops += attention_flops(cfg, b.cu_seqlens[q + 1] - b.cu_seqlens[q]);
        }
      }
      if (profile)
        fmt::print(stderr, "{}: {} GEMM plans made in the timed steps, {:.3f} s of host time ({:.1f}% of the timed {:.3f} s); "
                   "{} graphs held, {} steps ran as graphs\n",
                   s, plans.count(), plans.seconds(), 100 * plans.seconds() / timed, timed, runner.graphs(),
                   runner.graph_launches());
      Result r;
      r.setting = s;
      r.tokens_per_s = static_cast<double>(tokens) / timed;
      r.step_s = timed / steps;
      r.peak_gib = peak_gib;
      r.tokens_per_step = tokens / steps;
      r.loss = loss;
      const double achieved = flops / timed / 1e12;
      r.mfu_measured = peak > 0 ? achieved / peak : 0;
      r.mfu_datasheet = achieved / datasheet_tflops;
      results.push_back(r);
      if (json) {
        fmt::print("{{\"system\": \"{}\", \"setting\": \"{}\", \"optim\": \"{}\", \"grad_ckpt\": {}, \"tokens_per_step\": {}, "
                   "\"step_s\": {:.4f}, \"tokens_per_s\": {:.1f}, \"peak_gib\": {:.2f}, \"mfu\": {:.4f}, "
                   "\"mfu_datasheet\": {:.4f}, \"achieved_tflops\": {:.1f}, \"measured_peak_tflops\": {:.1f}, "
                   "\"loss\": {:.4f}, \"gpu\": \"{}\", \"context_gib\": {:.2f}, \"load_s\": {:.1f}, "
                   "\"cuda_graphs\": {}, \"graphs_prepare_s\": {:.2f}, \"graph_steps\": {}, \"plan_gib\": {:.2f}, "
                   "\"plan\": \"{}\", \"model\": \"{}\", \"keep_attention\": \"{}\", \"ce_chunk\": {}, \"offload\": {}}}\n",
                   system, s, optim, no_ckpt ? "false" : "true", r.tokens_per_step, r.step_s,
                   r.tokens_per_s, r.peak_gib, r.mfu_measured, r.mfu_datasheet, achieved, peak, r.loss, gpu_name,
                   base_gib, load_s, runner.graphs(), prepare_s, runner.graph_launches(),
                   static_cast<double>(runner.plan().total()) / 1073741824.0, runner.plan().str(),
                   fmt::format("{} {}x{} {}L", cfg.model_type, cfg.hidden_size, cfg.intermediate_size,
                               cfg.num_hidden_layers),
                   keep_attention, ce_chunk, offload);
      } else {
        fmt::print("{:7s} {:>9.0f} tok/s  step {:.3f} s  peak {:.2f} GiB  MFU {:.1f}% (measured peak {:.0f} TFLOP/s), "
                   "{:.1f}% of datasheet  loss {:.3f}\n",
                   s, r.tokens_per_s, r.step_s, r.peak_gib, 100 * r.mfu_measured, peak, 100 * r.mfu_datasheet, r.loss);
      }
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    if (!single) {
      fmt::print(stderr, "bench_train: {}\n", msg);
      return kExitError;
    }
    // The single setting: say what failed, at which length and in which phase, on stdout (JSON) and stderr.
    const bool oom = is_oom(msg);
    const bool nonfinite = msg.rfind("non-finite loss", 0) == 0;
    double used_now = 0;
    try {
      used_now = used_gib(dev);
    } catch (const std::exception&) {
    }
    const char* kind = oom ? "out of GPU memory" : nonfinite ? "non-finite loss" : "error";
    if (json)
      fmt::print("{{\"system\": \"{}\", \"setting\": \"single\", \"ok\": false, \"length\": {}, \"split\": {}, "
                 "\"oom\": {}, \"failure\": \"{}\", \"phase\": \"{}\", \"error\": \"{}\", \"peak_gib\": {:.2f}, "
                 "\"used_gib_at_failure\": {:.2f}}}\n",
                 system, length, split > 0 ? split : length, oom ? "true" : "false", kind, json_escape(phase),
                 json_escape(msg), single_peak_gib, used_now);
    std::fflush(stdout);
    fmt::print(stderr, "bench_train: single sequence of {} tokens does not train: {} while {}: {}\n", length, kind,
               phase, msg);
    return oom ? kExitOom : nonfinite ? kExitNonFinite : kExitError;
  }
  return 0;
}
