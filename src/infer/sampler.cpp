#include "infer/sampler.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>

#include "base/error.h"
#include "base/mmap.h"
#include "base/json_error.h"

namespace cotune::infer {

void SamplingOptions::validate() const {
  if (do_sample && !(temperature > 0.0f))
    fail("temperature must be > 0 when sampling, got {} (use greedy decoding instead)", temperature);
  if (top_k < 0) fail("top_k must be >= 0, got {}", top_k);
  if (!(top_p > 0.0f && top_p <= 1.0f)) fail("top_p must be in (0, 1], got {}", top_p);
  if (!(repetition_penalty > 0.0f)) fail("repetition_penalty must be > 0, got {}", repetition_penalty);
}

GenerationConfig load_generation_config(const std::string& path) {
  namespace fs = std::filesystem;
  GenerationConfig g;
  fs::path file = path;
  if (fs::is_directory(file)) file /= "generation_config.json";
  if (!fs::exists(file)) return g;
  const std::string text = read_file(file.string());  // refuses a FIFO instead of blocking on it
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    fail("{}: not valid JSON: {}", file.string(), json_syntax_error(text));
  }
  if (!j.is_object()) fail("{}: expected a JSON object", file.string());
  auto number = [&](const char* key) -> std::optional<double> {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (!it->is_number()) fail("{}: field {} must be a number", file.string(), key);
    return it->get<double>();
  };
  // A count: a whole number in [0, 2^31) (a larger double would not fit the integer it becomes).
  auto count = [&](const char* key) -> std::optional<int64_t> {
    auto v = number(key);
    if (!v) return std::nullopt;
    if (!(*v >= 0 && *v < 2147483648.0) || *v != std::floor(*v))
      fail("{}: field {} must be a whole number in [0, 2147483647], found {}", file.string(), key, *v);
    return static_cast<int64_t>(*v);
  };
  if (auto it = j.find("do_sample"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) fail("{}: field do_sample must be true or false", file.string());
    g.sampling.do_sample = it->get<bool>();
  }
  if (auto v = number("temperature")) g.sampling.temperature = static_cast<float>(*v);
  if (auto v = number("top_p")) g.sampling.top_p = static_cast<float>(*v);
  if (auto v = count("top_k")) g.sampling.top_k = *v;
  if (auto v = number("repetition_penalty")) g.sampling.repetition_penalty = static_cast<float>(*v);
  if (auto v = count("max_new_tokens")) g.max_new_tokens = *v;
  auto token_id = [&](const nlohmann::json& e) {
    if (!e.is_number_integer()) fail("{}: field eos_token_id must hold integers", file.string());
    const int64_t id = e.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(e.get<uint64_t>(), 1ull << 40))
                                              : e.get<int64_t>();
    if (id < 0 || id > std::numeric_limits<int32_t>::max())
      fail("{}: field eos_token_id holds {}, not a token id", file.string(), e.dump());
    return static_cast<int32_t>(id);
  };
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    if (it->is_number_integer()) {
      g.eos_token_ids.push_back(token_id(*it));
    } else if (it->is_array()) {
      for (const auto& e : *it) g.eos_token_ids.push_back(token_id(e));
    } else {
      fail("{}: field eos_token_id must be an integer or a list of integers", file.string());
    }
  }
  return g;
}

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> context, float penalty) {
  if (penalty == 1.0f) return;
  // HF gathers the scores of the context ids, penalises them once each and scatters them back, so an id that
  // occurs several times is penalised once.
  std::vector<uint8_t> seen(logits.size(), 0);
  for (int32_t id : context) {
    if (id < 0 || static_cast<size_t>(id) >= logits.size() || seen[static_cast<size_t>(id)]) continue;
    seen[static_cast<size_t>(id)] = 1;
    float& x = logits[static_cast<size_t>(id)];
    x = x < 0.0f ? x * penalty : x / penalty;
  }
}

void apply_temperature(std::span<float> logits, float temperature) {
  if (temperature == 1.0f) return;
  for (float& x : logits) x /= temperature;
}

void apply_top_k(std::span<float> logits, int64_t k) {
  const auto V = static_cast<int64_t>(logits.size());
  if (k <= 0 || k >= V) return;
  std::vector<float> sorted(logits.begin(), logits.end());
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<float>());
  const float kth = sorted[static_cast<size_t>(k - 1)];
  for (float& x : logits)
    if (x < kth) x = -std::numeric_limits<float>::infinity();
}

void apply_top_p(std::span<float> logits, float p) {
  if (p >= 1.0f) return;
  // Only finite logits take part: a -inf one has probability 0, sorts first and is removed already. After top-k
  // this sorts k entries instead of the vocabulary.
  std::vector<int32_t> order;
  for (size_t i = 0; i < logits.size(); ++i)
    if (logits[i] != -std::numeric_limits<float>::infinity()) order.push_back(static_cast<int32_t>(i));
  if (order.size() <= 1) return;
  const size_t n = order.size();
  // Ascending, as HF sorts (stable, so equal logits keep id order).
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[static_cast<size_t>(a)] < logits[static_cast<size_t>(b)]; });
  const float mx = logits[static_cast<size_t>(order.back())];
  double total = 0.0;
  std::vector<double> e(n);
  for (size_t i = 0; i < n; ++i) {
    e[i] = std::exp(static_cast<double>(logits[static_cast<size_t>(order[i])]) - mx);
    total += e[i];
  }
  const double threshold = 1.0 - static_cast<double>(p);
  double cum = 0.0;
  for (size_t i = 0; i + 1 < n; ++i) {  // the last (most likely) token always stays
    cum += e[i] / total;
    if (cum > threshold) break;
    logits[static_cast<size_t>(order[i])] = -std::numeric_limits<float>::infinity();
  }
}

std::vector<int32_t> ids_missing_from(const text::Tokenizer& tok, int64_t vocab) {
  std::vector<int32_t> out;
  for (int64_t id = 0; id < vocab; ++id)
    if (!tok.has_id(static_cast<int32_t>(id))) out.push_back(static_cast<int32_t>(id));
  return out;
}

int32_t argmax(std::span<const float> logits) {
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int32_t>(best);
}

int32_t sample_softmax(std::span<const float> logits, Rng& rng) {
  const float mx = logits[static_cast<size_t>(argmax(logits))];
  double total = 0.0;
  for (float x : logits) total += std::exp(static_cast<double>(x) - mx);
  const double u = static_cast<double>(rng.uniform()) * total;
  double cum = 0.0;
  int32_t last = argmax(logits);
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] == -std::numeric_limits<float>::infinity()) continue;
    cum += std::exp(static_cast<double>(logits[i]) - mx);
    last = static_cast<int32_t>(i);
    if (u < cum) return last;
  }
  return last;  // rounding at the top end
}

int32_t select_token(std::span<float> logits, std::span<const int32_t> context, const SamplingOptions& opts, Rng& rng) {
  apply_repetition_penalty(logits, context, opts.repetition_penalty);
  if (!opts.do_sample) return argmax(logits);
  apply_temperature(logits, opts.temperature);
  apply_top_k(logits, opts.top_k);
  apply_top_p(logits, opts.top_p);
  return sample_softmax(logits, rng);
}

}  // namespace cotune::infer
