// track_demo_run OUTPUT_DIR [--resume-from N]: writes a synthetic, deterministic 60-step run through the same calls the
// trainer makes (MetricsHub with jsonl + tensorboard, Progress, the report), for the tools/ checks:
// tools/check_tensorboard.py reads OUTPUT_DIR/tb back with the tensorboard package, and
// tools/screenshot_report.sh renders OUTPUT_DIR/report/index.html with headless Chromium.
// --resume-from N continues a finished demo run as a resumed run would (steps N+1.., different values),
// so the check can see that the abandoned tail disappears from both metrics.jsonl and TensorBoard.
// --stop-at N ends after step N, as a run stopped with Ctrl-C would (a short report, no evaluation yet).
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <thread>
#include <cstdio>
#include <string>

#include "base/error.h"
#include "track/metrics.h"
#include "track/progress.h"
#include "track/report.h"

int main(int argc, char** argv) {
  using namespace cotune::track;
  std::optional<int64_t> resume_from, stop_at;
  if (argc == 4 && std::string(argv[2]) == "--resume-from") resume_from = std::stoll(argv[3]);
  if (argc == 4 && std::string(argv[2]) == "--stop-at") stop_at = std::stoll(argv[3]);
  if (argc != 2 && !resume_from && !stop_at) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR [--resume-from N | --stop-at N]\n", argv[0]);
    return 2;
  }
  try {
    const std::filesystem::path out = argv[1];
    const int steps = 60, warmup = 5, eval_every = 10;
    const double peak_lr = 2e-4;
    auto hub = MetricsHub::open({"jsonl", "tensorboard"}, out, resume_from);
    // A bar on a terminal, log lines otherwise; COTUNE_DEMO_STEP_MS slows the loop down to watch the bar.
    Progress progress({.total_steps = steps, .log_every = 10});
    const char* step_ms = std::getenv("COTUNE_DEMO_STEP_MS");
    uint32_t rng = resume_from ? 777 : 12345;  // a small LCG: the same "noise" every run
    auto noise = [&] {
      rng = rng * 1664525u + 1013904223u;
      return static_cast<double>(rng >> 8) / static_cast<double>(1u << 24) - 0.5;
    };
    double elapsed = hub.history().last("elapsed_s").value_or(0.0);
    int64_t total_tokens = 0;
    const int last = static_cast<int>(stop_at.value_or(steps));  // --stop-at: as if Ctrl-C came at step N
    for (int s = static_cast<int>(resume_from.value_or(0)) + 1; s <= last; ++s) {
      // transformers' linear schedule with warmup: the first step's rate is 0.
      const double lr = s <= warmup ? peak_lr * (s - 1) / warmup : peak_lr * (steps - s + 1) / (steps - warmup);
      const double loss = 1.35 + 1.05 * std::exp(-s / 14.0) + 0.12 * noise();
      const double tokens = std::round(1800 + 400 * noise());
      const double dt = 2.0 + 0.2 * noise();
      elapsed += dt;
      total_tokens += static_cast<int64_t>(tokens);
      const double gn = 0.35 + 0.6 * std::exp(-s / 10.0) + 0.05 * noise();
      hub.log(s, {{"epoch", s / 125.0}, {"loss", loss}, {"lr", lr}, {"grad_norm", gn}, {"tokens", tokens},
                  {"mean_token_accuracy", 0.45 + 0.2 * (1 - std::exp(-s / 15.0))}, {"tokens_per_s", tokens / dt},
                  {"elapsed_s", elapsed}});
      std::optional<double> eval;
      if (s % eval_every == 0) {
        eval = 1.45 + 1.0 * std::exp(-s / 16.0) + 0.02 * noise();
        hub.log(s, {{"eval_loss", *eval}, {"eval_mean_token_accuracy", 0.44 + 0.19 * (1 - std::exp(-s / 16.0))}});
      }
      if (step_ms) std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(step_ms)));
      if (s == 40) progress.message("saved checkpoint-40");
      progress.update({.step = s, .loss = loss, .lr = lr, .grad_norm = gn, .tokens_per_s = tokens / dt, .eval_loss = eval});
    }
    hub.log_text(last, "sample/after", "<think>The patient presents with ...</think> The most likely diagnosis is ...");
    progress.finish();
    hub.close();

    ReportInput in;
    in.title = "DeepSeek-R1-Distill-Qwen-1.5B · medical-o1 LoRA (synthetic demo)";
    in.subtitle = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B → " + out.string();
    in.total_steps = steps;
    if (stop_at) in.status = "stopped at step " + std::to_string(*stop_at) + " (Ctrl-C)";
    in.settings = {{"model", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"},
                   {"data", "FreedomIntelligence/medical-o1-reasoning-SFT (zh)"},
                   {"template", "r1-medical"},
                   {"max_seq_length", "2048"},
                   {"load_in_4bit", "true"},
                   {"lora_r / lora_alpha / dropout", "16 / 16 / 0"},
                   {"target_modules", "q_proj k_proj v_proj o_proj gate_proj up_proj down_proj"},
                   {"optim", "adamw8bit"},
                   {"learning_rate", "2e-4 (linear, 5 warmup steps)"},
                   {"weight_decay", "0.01"},
                   {"batch_size × grad_accum", "1 × 4"},
                   {"max_steps", "60"},
                   {"seed", "3407"}};
    in.facts = {{"device", "synthetic (no training ran)"}};
    const auto files = write_report(out, hub.history(), in);
    std::fputs(summary_table(hub.history(), in, files.index_html).c_str(), stdout);
    std::printf("total tokens %lld\n", static_cast<long long>(total_tokens));
    return 0;
  } catch (const cotune::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
