// The CUDA graphs of whole training steps (forward + backward of one micro-batch), one per (padded tokens,
// sequences, padded longest sequence), captured at their first use through kernels/graph.h. A batch is padded to
// its graph's shape (pad_for_graph) so that varying lengths share a few graphs; the host then launches one graph
// instead of thousands of kernels.
#pragma once
#include <compare>
#include <cstdint>
#include <functional>
#include <map>

#include "model/batch.h"

namespace cotune::model {

struct GraphKey {
  int64_t tokens = 0;
  int sequences = 0, max_seqlen = 0;
  auto operator<=>(const GraphKey&) const = default;
};

// Pads a batch for its graph: its last sequence grows to a multiple of `bucket` tokens (at most max_tokens) with
// ignored tokens, and the longest sequence is rounded up the same way. Returns the graph's key.
GraphKey pad_for_graph(const PackedBatch& batch, int64_t bucket, int64_t max_tokens, PackedBatch& padded);

class StepGraphs {
 public:
  explicit StepGraphs(int max_graphs) : max_graphs_(max_graphs) {}
  ~StepGraphs() { drop_all(); }
  StepGraphs(const StepGraphs&) = delete;
  StepGraphs& operator=(const StepGraphs&) = delete;

  // The graph of `key` (nullptr when none). Graphs hold the kernels' scratch pointer: once the scratch has moved
  // they are stale and dropped here (recaptured on use).
  void* find(const GraphKey& key);
  bool contains(const GraphKey& key) const { return graphs_.count(key) > 0; }
  // Whether a capture of `key` is worth trying: fewer graphs than the cap, and fewer than two failed captures.
  bool may_capture(const GraphKey& key) const;
  // Captures what `enqueue` enqueues (nothing runs) as the graph of `key`; false (counted) when capture failed,
  // e.g. a workspace that had to grow (cudaMalloc and synchronisation are not allowed while capturing).
  bool capture(const GraphKey& key, const std::function<void()>& enqueue);
  void launch(void* exec);

  int size() const { return static_cast<int>(graphs_.size()); }
  int64_t launches() const { return launches_; }
  int max_graphs() const { return max_graphs_; }

 private:
  int max_graphs_;
  std::map<GraphKey, void*> graphs_;  // instantiated graphs (cudaGraphExec_t)
  std::map<GraphKey, int> failures_;
  int64_t launches_ = 0;
  uint64_t scratch_generation_ = 0;  // kernels::graph::scratch_generation() the graphs were captured with
  void drop_all();
  void drop_stale();
};

}  // namespace cotune::model
