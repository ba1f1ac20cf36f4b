// Choosing the next token from logits, as Hugging Face `generate` does: the repetition penalty first (also when
// greedy), then, when sampling, temperature, top-k and top-p (in that order), softmax, and a draw. Greedy takes
// the arg-max (ties: the lowest id). Draws come from base/rng.h Philox streams, so a seed reproduces a text.
//
// Defaults come from the model folder's generation_config.json (DeepSeek-R1-Distill: do_sample, temperature 0.6,
// top_p 0.95); fields it does not set take transformers' defaults (greedy, temperature 1, top_k 50, top_p 1).
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/rng.h"
#include "text/tokenizer.h"

namespace cotune::infer {

struct SamplingOptions {
  bool do_sample = false;           // false: greedy (arg-max)
  float temperature = 1.0f;         // > 0; only when sampling
  int64_t top_k = 50;               // 0: off; only when sampling
  float top_p = 1.0f;               // in (0, 1]; 1: off; only when sampling
  float repetition_penalty = 1.0f;  // 1: off; also applied when greedy (as HF)
  uint64_t seed = 0;                // each sequence draws from its own Philox stream (seed, 0)

  void validate() const;  // throws naming the bad field
};

// The fields of generation_config.json that cotune uses.
struct GenerationConfig {
  SamplingOptions sampling;
  std::vector<int32_t> eos_token_ids;     // `eos_token_id` (int or list); empty when absent
  std::optional<int64_t> max_new_tokens;  // `max_new_tokens` when given
};
// Reads DIR/generation_config.json (or the file itself); a folder without one gives transformers' defaults.
// Malformed JSON or a field of the wrong type throws naming the file and field.
GenerationConfig load_generation_config(const std::string& path);

// ---- logits processors (in place, over one row of V logits) -----------------------------------------------
// HF RepetitionPenaltyLogitsProcessor: for every id present in `context` (prompt and generated ids),
// logit = logit < 0 ? logit * penalty : logit / penalty.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> context, float penalty);
void apply_temperature(std::span<float> logits, float temperature);  // logits /= temperature
// HF TopKLogitsWarper: logits below the k-th largest become -inf (ties with the k-th stay). k <= 0 or >= V: off.
void apply_top_k(std::span<float> logits, int64_t k);
// HF TopPLogitsWarper: sort ascending, cumulative softmax; tokens whose cumulative probability is <= 1 - p are
// removed (-inf); the most likely token always stays. p >= 1: off.
void apply_top_p(std::span<float> logits, float p);

// The ids in [0, vocab) the tokenizer has no token for (a model's vocabulary is often padded past the tokenizer's:
// 151,936 rows for 151,665 ids in DeepSeek-R1-Distill-Qwen). Generation never picks them.
std::vector<int32_t> ids_missing_from(const text::Tokenizer& tok, int64_t vocab);

int32_t argmax(std::span<const float> logits);  // the lowest id among the maxima
// softmax(logits), then the inverse CDF at one uniform draw (in id order). -inf logits are never drawn.
int32_t sample_softmax(std::span<const float> logits, Rng& rng);

// The whole chain: processes `logits` in place (they are scratch afterwards) and returns the next token.
int32_t select_token(std::span<float> logits, std::span<const int32_t> context, const SamplingOptions& opts, Rng& rng);

}  // namespace cotune::infer
