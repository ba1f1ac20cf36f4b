// End-of-run report: OUTPUT/report/index.html (self-contained: styles and plots inline) with
// loss.svg (training loss, smoothed, and evaluation loss), lr.svg (learning rate) and, when logged,
// grad_norm.svg beside it; the run's settings, token counts, throughput and time taken. Plus a short
// text table for the terminal.
//
//   cotune::track::ReportInput in;
//   in.title = "DeepSeek-R1-Distill-Qwen-1.5B · medical-o1 LoRA";
//   in.settings = {{"model", "deepseek-ai/..."}, {"lora_r", "16"}, {"lr", "2e-4"}};   // shown in order
//   in.facts = {{"device", "NVIDIA H100"}, {"peak GPU memory", "5.2 GiB"}};            // optional
//   in.total_steps = 60;
//   auto files = cotune::track::write_report(output_dir, hub.history(), in);
//   std::fputs(cotune::track::summary_table(hub.history(), in, files.index_html).c_str(), stderr);
//
// The numbers come from the history (the same records as metrics.jsonl): steps from the last `step`,
// tokens = sum of `tokens`, time = the last `elapsed_s` (unless given), throughput = tokens / time.
// A report can be rebuilt after the fact: write_report(out, read_metrics_jsonl(out / "metrics.jsonl"), in).
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "track/metrics.h"

namespace cotune::track {

struct ReportInput {
  std::string title = "cotune training run";
  std::string subtitle;                                         // e.g. "model → OUTPUT"
  std::string status = "completed";                             // or "stopped at step 42 (Ctrl-C)"
  std::vector<std::pair<std::string, std::string>> settings;    // the run's settings, in display order
  std::vector<std::pair<std::string, std::string>> facts;       // extra summary rows (device, memory, ...)
  std::optional<int64_t> total_steps;                           // planned steps, shown as "42 / 60"
  std::optional<double> elapsed_s;                              // overrides the history's elapsed_s
  std::string generated_at;                                     // timestamp text; empty: now (UTC)
};

// Headline numbers derived from a history.
struct RunTotals {
  int64_t steps = 0;             // last step logged
  int64_t tokens = 0;            // sum of `tokens`
  double elapsed_s = 0;
  double tokens_per_s = 0;       // tokens / elapsed_s (0 when unknown)
  std::optional<double> first_loss, final_loss;
  std::optional<double> best_eval_loss;
  int64_t best_eval_step = 0;
  std::optional<double> final_eval_loss;
};
RunTotals compute_totals(const History& history, const ReportInput& input);

struct ReportFiles {
  std::filesystem::path dir, index_html, loss_svg, lr_svg;
  std::optional<std::filesystem::path> grad_norm_svg;
};
// Writes OUTPUT/report/ (each file to a temporary name, then renamed; index.html last).
ReportFiles write_report(const std::filesystem::path& output_dir, const History& history, const ReportInput& input);

// The HTML page and the plots, as strings (write_report's content; public for tests).
std::string report_html(const History& history, const ReportInput& input);
std::string loss_chart_svg(const History& history);
std::string lr_chart_svg(const History& history);
std::string grad_norm_chart_svg(const History& history);

// A short aligned table for the terminal, e.g.
//   ── run summary ──────────────────────────
//   status        completed
//   steps         60 / 60
//   train loss    2.3012 → 1.4420
//   ...
std::string summary_table(const History& history, const ReportInput& input,
                          const std::filesystem::path& report_path = {});

// "1h 02m 03s", "4m 05s", "7.2s".
std::string format_elapsed(double seconds);
// "1,234,567".
std::string format_thousands(int64_t n);

}  // namespace cotune::track
