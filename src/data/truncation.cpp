#include "data/truncation.h"

#include <fmt/format.h>

#include <algorithm>

namespace cotune::data {

int64_t trained_targets(int64_t length, int64_t prompt_length, LossMask mask) {
  // Position t predicts token t+1; it is trained when t+1 < length and (mask all) t >= 0, (response) t+1 >=
  // prompt_length. See sequence_targets.
  const int64_t first = mask == LossMask::all ? 1 : std::max<int64_t>(1, prompt_length);
  return std::max<int64_t>(0, length - first);
}

TruncationReport truncation_report(const TokenizedDataset& ds, const std::vector<int64_t>& indices, LossMask mask) {
  TruncationReport r;
  r.max_seq_length = ds.max_seq_length;
  std::vector<int64_t> full;
  const int64_t n = indices.empty() ? static_cast<int64_t>(ds.size()) : static_cast<int64_t>(indices.size());
  full.reserve(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    const auto i = static_cast<size_t>(indices.empty() ? k : indices[static_cast<size_t>(k)]);
    const int64_t len = ds.length(i), full_len = ds.full_lengths[i], prompt = ds.prompt_lengths[i];
    const int64_t targets = trained_targets(len, prompt, mask);
    ++r.sequences;
    r.trained_targets += targets;
    full.push_back(full_len);
    if (full_len > len) {
      ++r.truncated;
      r.keep_all_length = std::max(r.keep_all_length, full_len);
    }
    if (targets == 0) ++r.no_trained_tokens;
  }
  if (!full.empty()) {
    std::sort(full.begin(), full.end());
    r.p95_length = full[static_cast<size_t>((static_cast<double>(full.size()) - 1) * 0.95)];
  }
  return r;
}

std::string TruncationReport::describe(const std::string& key) const {
  std::string s = fmt::format("{} of {} sequences were cut to {} {}", truncated, sequences, key, max_seq_length);
  if (no_trained_tokens > 0)
    s += fmt::format(", {} of them left with no trained token", no_trained_tokens);
  if (keep_all_length > 0)
    s += fmt::format("; {} {} keeps every sequence whole (95% of them are <= {} tokens)", key, keep_all_length,
                     p95_length);
  return s;
}

}  // namespace cotune::data
