// Kernel tuning: the choices among equivalent kernel variants and work splits that benchmarks, tests and
// debugging sessions want to override. The defaults are the production behaviour; a run changes them once, at its
// start, from flags / recipe keys (src/cli/tuning_config.h), before any kernel runs. The kernels read the
// process's Tuning at each call (a copy of a few integers).
//
// Every field has the flag/recipe key named beside it (`cotune train --help`, "Kernel tuning").
#pragma once
#include <cstdint>
#include <string>

namespace cotune::kernels {

struct Tuning {
  // Attention (CUDA) kernels: automatic picks flash (wide or 64-row tiles, by grid size) when the head dim allows,
  // else the simple kernels; simple forces the simple kernels (debugging). Key attention_kernel = auto | simple.
  enum class Attention { automatic, simple };
  Attention attention = Attention::automatic;
  // Flash work splits (kernels/cuda/ops_cuda.cpp split_plan): key tiles per forward chunk, per dq chunk (0: no
  // split), (head, query tile) pairs per dk/dv block; negative: automatic (dkdv 0: automatic too).
  // Key attention_split = "fwd,dq,dkdv" (e.g. "-1,8,-1").
  int attention_split_fwd = -1, attention_split_dq = -1, attention_split_dkdv = -1;
  // The flash backward keeps dS for the dq kernel when it needs at most attention_ds_limit_mib MiB of scratch,
  // else (or when attention_keep_ds is false) the dq kernel recomputes it. Keys attention_keep_ds,
  // attention_ds_limit_mib.
  bool attention_keep_ds = true;
  int64_t attention_ds_limit_mib = 128;
  // Generation of the cross-entropy row kernel and of the NF4 batch dequantization: current (the cluster CE
  // kernel on sm_90+, the current NF4 kernel) or v1 (the previous ones, for benchmark comparisons).
  // Keys ce_kernel, nf4_kernel = current | v1.
  enum class Generation { current, v1 };
  Generation ce_kernel = Generation::current;
  Generation nf4_kernel = Generation::current;
  // The fused decode GEMV takes its one-stage (WIDE) variant for NF4 rows of <= 1536 weights too (bf16 always
  // does). Key decode_nf4_wide.
  bool decode_nf4_wide = false;

  bool operator==(const Tuning&) const = default;
  // "attention auto, split auto, keep dS <= 128 MiB, ce current, nf4 current, decode NF4 split" (for --verbose).
  std::string describe() const;
};

// Parses the textual forms used by flags and recipe keys; errors name `what` (the flag or key) and the choices.
Tuning::Attention parse_attention_kernel(const std::string& s, const std::string& what);
Tuning::Generation parse_kernel_generation(const std::string& s, const std::string& what);
// "fwd,dq,dkdv" (each an integer; "" or "auto": all automatic) into t.attention_split_*.
void parse_attention_split(const std::string& s, const std::string& what, Tuning& t);

// The process's tuning (defaults until set_tuning). set_tuning is called once at a run's start, before any kernel
// runs on any thread; tests and benchmarks that compare variants use ScopedTuning.
const Tuning& tuning();
void set_tuning(const Tuning& t);

// Sets a tuning for one scope and restores the previous one (tests, benchmarks).
class ScopedTuning {
 public:
  explicit ScopedTuning(const Tuning& t) : saved_(tuning()) { set_tuning(t); }
  ~ScopedTuning() { set_tuning(saved_); }
  ScopedTuning(const ScopedTuning&) = delete;
  ScopedTuning& operator=(const ScopedTuning&) = delete;

 private:
  Tuning saved_;
};

}  // namespace cotune::kernels
