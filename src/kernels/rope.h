// The rotary embedding's frequencies: a base (rope_theta) and an optional scaling of the frequencies, as
// transformers' ROPE_INIT_FUNCTIONS compute them ("default", "linear", "llama3"). Every rope op (training,
// prefill, the fused decode step; CPU and CUDA) reads its inv_freq table from rope_inv_freq(), so a variant is
// defined once here.
#pragma once
#include <cstdint>

namespace cotune::kernels {

enum class RopeScaling : uint8_t {
  none,    // inv_freq[j] = 1 / theta^(2j/D)
  linear,  // inv_freq / factor (positions interpolated by `factor`)
  llama3,  // Llama 3.1: low frequencies / factor, high ones kept, a smooth blend between (see rope_inv_freq)
};

struct RopeSpec {
  float theta = 10000.0f;
  RopeScaling scaling = RopeScaling::none;
  float factor = 1.0f;                   // linear, llama3
  float low_freq_factor = 1.0f;          // llama3
  float high_freq_factor = 4.0f;         // llama3
  float original_max_position = 8192.0f;  // llama3: original_max_position_embeddings
  RopeSpec() = default;
  // A plain base is unscaled RoPE (the Qwen2 family): rope_forward(x, pos, 1e6f).
  RopeSpec(float base) : theta(base) {}  // NOLINT(google-explicit-constructor): implicit on purpose
};

// inv_freq[D/2] in fp32 as transformers computes it (the same float ops in the same order).
void rope_inv_freq(float* inv_freq, int64_t D, const RopeSpec& rope);

}  // namespace cotune::kernels
