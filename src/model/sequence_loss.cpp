#include "model/sequence_loss.h"

#include <cmath>

#include "base/error.h"
#include "model/qwen2.h"

namespace cotune::model {

SequenceLoss sequence_loss(const Qwen2Model& model, const std::vector<int32_t>& ids) {
  const int64_t V = model.config().vocab_size;
  if (ids.size() < 2) fail("forward: need at least 2 tokens to predict one, got {}", ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= V) fail("forward: token id {} at position {} is outside the vocabulary [0, {})", ids[i], i, V);
  const PackedBatch batch = PackedBatch::from_sequences({ids});
  RunnerOptions ro;
  ro.max_tokens = batch.tokens();
  ro.training = false;
  ro.gradient_checkpointing = false;
  Qwen2Runner runner(model, nullptr, ro);
  const StepStats st = runner.forward_backward(batch, /*backward=*/false, 1.0f);
  SequenceLoss r;
  r.tokens = batch.tokens();
  r.predicted = st.counted;
  r.correct = st.correct;
  r.mean_loss = st.counted > 0 ? st.loss_sum / static_cast<double>(st.counted) : 0.0;
  r.perplexity = std::exp(r.mean_loss);
  return r;
}

}  // namespace cotune::model
