#include "model/step_graphs.h"

#include <algorithm>
#include <exception>

#include "base/log.h"
#include "kernels/graph.h"

namespace cotune::model {

GraphKey pad_for_graph(const PackedBatch& batch, int64_t bucket_tokens, int64_t max_tokens, PackedBatch& padded) {
  const int64_t bucket = std::max<int64_t>(bucket_tokens, 1);
  const int64_t T = batch.tokens();
  const int64_t Tp = std::min((T + bucket - 1) / bucket * bucket, max_tokens);
  padded = batch;
  // The padding extends the last sequence: causal attention never lets a token see later ones, and the padding's
  // targets are ignored, so no real token's loss or gradient changes (the padding's gradients are exactly zero)
  // and the batch keeps its number of sequences.
  int32_t pos = batch.position_ids.empty() ? 0 : batch.position_ids.back() + 1;
  for (int64_t i = T; i < Tp; ++i) {
    padded.input_ids.push_back(0);
    padded.position_ids.push_back(pos++);
    padded.targets.push_back(-100);
  }
  padded.cu_seqlens.back() = static_cast<int32_t>(Tp);
  const int64_t longest = std::max<int64_t>(padded.max_seqlen(), 1);
  GraphKey key;
  key.tokens = Tp;
  key.sequences = static_cast<int>(padded.cu_seqlens.size()) - 1;
  key.max_seqlen = static_cast<int>(std::min((longest + bucket - 1) / bucket * bucket, Tp));
  return key;
}

void StepGraphs::drop_all() {
  for (auto& [key, exec] : graphs_) kernels::graph::destroy(exec);
  graphs_.clear();
}

void StepGraphs::drop_stale() {
  if (!graphs_.empty() && scratch_generation_ != kernels::graph::scratch_generation()) drop_all();
  if (graphs_.empty()) scratch_generation_ = kernels::graph::scratch_generation();
}

void* StepGraphs::find(const GraphKey& key) {
  drop_stale();
  auto it = graphs_.find(key);
  return it == graphs_.end() ? nullptr : it->second;
}

bool StepGraphs::may_capture(const GraphKey& key) const {
  if (size() >= max_graphs_) return false;
  auto f = failures_.find(key);
  return f == failures_.end() || f->second < 2;
}

bool StepGraphs::capture(const GraphKey& key, const std::function<void()>& enqueue) {
  drop_stale();
  kernels::graph::begin_capture();
  void* exec = nullptr;
  try {
    enqueue();
    exec = kernels::graph::end_capture();
  } catch (const std::exception& e) {
    kernels::graph::abort_capture();
    ++failures_[key];
    log::debug("runner: capturing the step of {} tokens as a CUDA graph failed ({}); running it without", key.tokens,
               e.what());
    return false;
  }
  graphs_.emplace(key, exec);
  return true;
}

void StepGraphs::launch(void* exec) {
  kernels::graph::launch(exec);
  ++launches_;
}

}  // namespace cotune::model
