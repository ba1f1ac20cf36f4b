// pad_for_graph (model/step_graphs.h): a batch padded to its CUDA graph's shape keeps its sequences and counted
// targets, and batches of nearby lengths share one key. (Capture itself needs a GPU: test_cuda_model.)
#include <gtest/gtest.h>

#include "model/step_graphs.h"

namespace cotune::model {
namespace {

TEST(StepGraphs, PaddingExtendsTheLastSequenceWithIgnoredTokens) {
  const PackedBatch b = PackedBatch::from_sequences({{5, 6, 7}, {8, 9, 10, 11, 12}});  // 8 tokens
  PackedBatch padded;
  const GraphKey key = pad_for_graph(b, 3, 64, padded);  // up to 9 tokens: one of padding
  EXPECT_EQ(key.tokens, 9);
  EXPECT_EQ(key.sequences, 2);
  EXPECT_EQ(key.max_seqlen, 6);  // the last sequence, 5 + 1 tokens, is the longest (a multiple of 3)
  EXPECT_EQ(padded.cu_seqlens, (std::vector<int32_t>{0, 3, 9}));
  EXPECT_EQ(padded.tokens(), 9);
  EXPECT_EQ(padded.counted(), b.counted());
  // The padding continues the last sequence's positions and is never a target.
  EXPECT_EQ(padded.position_ids, (std::vector<int32_t>{0, 1, 2, 0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(padded.targets.back(), -100);

  // A batch already on the bucket is unchanged; the budget caps the padding.
  PackedBatch same;
  const PackedBatch four = PackedBatch::from_sequences({{1, 2, 3, 4}});
  EXPECT_EQ(pad_for_graph(four, 4, 64, same).tokens, 4);
  EXPECT_EQ(same.input_ids, four.input_ids);
  PackedBatch capped;
  EXPECT_EQ(pad_for_graph(b, 64, 10, capped).tokens, 10);

  // Nearby lengths share a key.
  PackedBatch p1, p2;
  EXPECT_EQ(pad_for_graph(PackedBatch::from_sequences({std::vector<int32_t>(61, 1)}), 64, 2048, p1),
            pad_for_graph(PackedBatch::from_sequences({std::vector<int32_t>(40, 1)}), 64, 2048, p2));
}

}  // namespace
}  // namespace cotune::model
