// A packed batch on the host: several sequences concatenated, what a runner step consumes.
#pragma once
#include <cstdint>
#include <vector>

namespace cotune::model {

// targets[t] is the id to predict at t (the next token of the same sequence) or -100 where not counted.
// positions restart per sequence.
struct PackedBatch {
  std::vector<int32_t> input_ids;   // [T]
  std::vector<int32_t> position_ids;  // [T]
  std::vector<int32_t> targets;     // [T]
  std::vector<int32_t> cu_seqlens;  // [S+1]
  int64_t tokens() const { return static_cast<int64_t>(input_ids.size()); }
  int max_seqlen() const;
  int64_t counted() const;  // targets >= 0
  // Builds a batch from whole sequences; every position predicts the next token of its sequence, the last
  // position of each sequence predicts nothing.
  static PackedBatch from_sequences(const std::vector<std::vector<int32_t>>& seqs);
};

}  // namespace cotune::model
