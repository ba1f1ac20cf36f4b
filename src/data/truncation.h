// What max_seq_length cut away, under a loss mask: how many sequences lost trained tokens, how many were left
// with none, how many trained targets remain, and which max_seq_length would have kept them (TRL warns about
// truncated sequences; cotune also counts and refuses a run that would train on nothing).
//
//   TruncationReport t = truncation_report(ds, split.train, LossMask::response);
//   if (t.truncated) log::warn("{}", t.describe("max_seq_length"));
//   if (t.trained_targets == 0) fail("...: {}", t.describe("max_seq_length"));
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/dataset.h"

namespace cotune::data {

struct TruncationReport {
  int64_t sequences = 0;          // looked at
  int64_t truncated = 0;          // cut to max_seq_length (every cut removes trained tokens: the end is trained)
  int64_t no_trained_tokens = 0;  // left with zero trained targets (cut, or too short to predict anything)
  int64_t trained_targets = 0;    // over all sequences, after truncation
  int64_t max_seq_length = 0;
  int64_t keep_all_length = 0;    // the longest full length among the cut ones: max_seq_length that keeps all
  int64_t p95_length = 0;         // 95th percentile of the full lengths (of all sequences)
  // "12 of 40 sequences were cut to max_seq_length 64, 3 of them losing every trained token; max_seq_length 412
  // keeps all whole (95% of the sequences are <= 380 tokens)". `key` names the setting in the text.
  std::string describe(const std::string& key) const;
};

// Over the sequences `indices` of `ds` (all when empty).
TruncationReport truncation_report(const TokenizedDataset& ds, const std::vector<int64_t>& indices, LossMask mask);

// Trained targets of one sequence of `length` tokens whose first `prompt_length` are the prompt.
int64_t trained_targets(int64_t length, int64_t prompt_length, LossMask mask);

}  // namespace cotune::data
