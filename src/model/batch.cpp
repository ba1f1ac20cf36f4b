#include "model/batch.h"

#include <algorithm>

namespace cotune::model {

int PackedBatch::max_seqlen() const {
  int mx = 0;
  for (size_t s = 0; s + 1 < cu_seqlens.size(); ++s) mx = std::max(mx, cu_seqlens[s + 1] - cu_seqlens[s]);
  return mx;
}

int64_t PackedBatch::counted() const {
  return std::count_if(targets.begin(), targets.end(), [](int32_t t) { return t >= 0; });
}

PackedBatch PackedBatch::from_sequences(const std::vector<std::vector<int32_t>>& seqs) {
  PackedBatch b;
  b.cu_seqlens.push_back(0);
  for (const auto& s : seqs) {
    for (size_t i = 0; i < s.size(); ++i) {
      b.input_ids.push_back(s[i]);
      b.position_ids.push_back(static_cast<int32_t>(i));
      b.targets.push_back(i + 1 < s.size() ? s[i + 1] : -100);
    }
    b.cu_seqlens.push_back(static_cast<int32_t>(b.input_ids.size()));
  }
  return b;
}

}  // namespace cotune::model
