#include "cli/tuning_config.h"

#include <fmt/format.h>

#include "base/error.h"
#include "base/log.h"
#include "cli/recipe.h"

namespace cotune::cli {

namespace {

constexpr const char* kAttentionKernel = "Attention kernels (CUDA): auto (flash when the head dim allows) or simple";
constexpr const char* kAttentionSplit =
    "Flash attention work splits \"fwd,dq,dkdv\" (key tiles per forward / dq chunk, 0: no split; (head, query tile) "
    "pairs per dk/dv block; negative: automatic) or auto";
constexpr const char* kKeepDs = "Flash attention backward keeps dS for the dq kernel when it fits the limit";
constexpr const char* kDsLimit = "Most scratch (MiB) the attention backward spends on keeping dS";
constexpr const char* kCeKernel = "Cross-entropy row kernel: current (cluster kernel on sm_90+) or v1 (benchmarks)";
constexpr const char* kNf4Kernel = "NF4 batch dequantization kernel: current or v1 (benchmarks)";
constexpr const char* kDecodeWide = "Fused decode: NF4 rows of <= 1536 weights take the one-stage (wide) GEMV too";

}  // namespace

void TuningConfig::bind(RecipeBinder& b) {
  b.bind("cuda_graphs", cuda_graphs, "CUDA, bf16 LoRA path: run each training step as a captured CUDA graph");
  b.bind("keep_attention", keep_attention,
         "With gradient checkpointing on CUDA: also keep each layer's attention outputs (auto: when that costs at "
         "most an eighth of the free GPU memory; on; off)");
  b.bind("offload_checkpoints", offload_checkpoints,
         "With gradient checkpointing: keep each layer's saved input in pinned host memory, copied out and back on "
         "a second stream during the step (the least GPU memory, as Unsloth's \"unsloth\" checkpointing)");
  b.bind("attention_kernel", attention_kernel, kAttentionKernel);
  b.bind("attention_split", attention_split, kAttentionSplit);
  b.bind("attention_keep_ds", attention_keep_ds, kKeepDs);
  b.bind("attention_ds_limit_mib", attention_ds_limit_mib, kDsLimit);
  b.bind("ce_kernel", ce_kernel, kCeKernel);
  b.bind("nf4_kernel", nf4_kernel, kNf4Kernel);
  b.bind("decode_nf4_wide", decode_nf4_wide, kDecodeWide);
}

void TuningConfig::add_kernel_flags(CLI::App& app) {
  const std::string g = "Kernel tuning";
  app.add_option("--attention-kernel", attention_kernel, kAttentionKernel)->group(g)->capture_default_str();
  app.add_option("--attention-split", attention_split, kAttentionSplit)->group(g)->capture_default_str();
  app.add_option("--attention-keep-ds", attention_keep_ds, kKeepDs)->group(g)->capture_default_str();
  app.add_option("--attention-ds-limit-mib", attention_ds_limit_mib, kDsLimit)->group(g)->capture_default_str();
  app.add_option("--ce-kernel", ce_kernel, kCeKernel)->group(g)->capture_default_str();
  app.add_option("--nf4-kernel", nf4_kernel, kNf4Kernel)->group(g)->capture_default_str();
  app.add_flag("--decode-nf4-wide", decode_nf4_wide, kDecodeWide)->group(g);
}

kernels::Tuning TuningConfig::kernel_tuning() const {
  kernels::Tuning t;
  t.attention = kernels::parse_attention_kernel(attention_kernel, "attention_kernel");
  kernels::parse_attention_split(attention_split, "attention_split", t);
  t.attention_keep_ds = attention_keep_ds;
  if (attention_ds_limit_mib < 0) fail("attention_ds_limit_mib must be >= 0, got {}", attention_ds_limit_mib);
  t.attention_ds_limit_mib = attention_ds_limit_mib;
  t.ce_kernel = kernels::parse_kernel_generation(ce_kernel, "ce_kernel");
  t.nf4_kernel = kernels::parse_kernel_generation(nf4_kernel, "nf4_kernel");
  t.decode_nf4_wide = decode_nf4_wide;
  return t;
}

void TuningConfig::apply(model::RunnerOptions& ro) const {
  ro.cuda_graphs = cuda_graphs;
  ro.offload_checkpoints = offload_checkpoints;
  if (keep_attention == "auto") {
    ro.keep_attention = -1;
  } else if (keep_attention == "on") {
    ro.keep_attention = 1;
  } else if (keep_attention == "off") {
    ro.keep_attention = 0;
  } else {
    fail("keep_attention must be auto, on or off, got '{}'", keep_attention);
  }
}

void TuningConfig::apply_kernels(const char* command) const {
  const kernels::Tuning t = kernel_tuning();
  kernels::set_tuning(t);
  log::debug("{}: kernel tuning: {}{}", command, t.describe(), t == kernels::Tuning{} ? " (defaults)" : "");
}

std::string TuningConfig::describe_runner() const {
  return fmt::format("CUDA graphs {}, keep attention {}, offload checkpoints {}", cuda_graphs ? "on" : "off",
                     keep_attention, offload_checkpoints ? "on" : "off");
}

}  // namespace cotune::cli
