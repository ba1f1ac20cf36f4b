// Performance tuning of a run: the kernel variants (kernels::Tuning) and the runner's CUDA-graph / checkpointing
// choices (model::RunnerOptions), as recipe keys and flags. The defaults are the production behaviour; these exist
// for benchmarks, comparisons and debugging. A command applies them once at its start and logs them with --verbose.
#pragma once
#include <CLI/CLI.hpp>

#include <string>

#include "kernels/tuning.h"
#include "model/qwen2.h"

namespace cotune::cli {

class RecipeBinder;

struct TuningConfig {
  // model::RunnerOptions (training)
  bool cuda_graphs = true;
  std::string keep_attention = "auto";  // auto | on | off
  bool offload_checkpoints = false;
  // kernels::Tuning
  std::string attention_kernel = "auto", attention_split = "auto", ce_kernel = "current", nf4_kernel = "current";
  bool attention_keep_ds = true, decode_nf4_wide = false;
  int64_t attention_ds_limit_mib = 128;

  // Every key as a recipe key and flag (`cotune train`).
  void bind(RecipeBinder& b);
  // The kernel keys as flags only (generate, eval, serve), in a "Kernel tuning" group of --help.
  void add_kernel_flags(CLI::App& app);
  // Both throw naming the key when a value is not one of its choices.
  kernels::Tuning kernel_tuning() const;
  void apply(model::RunnerOptions& ro) const;
  // Sets the process's kernel tuning and logs the settings at debug level (shown with --verbose).
  void apply_kernels(const char* command) const;
  std::string describe_runner() const;  // "CUDA graphs on, keep attention auto"
};

}  // namespace cotune::cli
