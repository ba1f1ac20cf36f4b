// The mean next-token loss of a model on one token sequence (every position but the last predicts the next
// token), through an inference runner: what `cotune forward` prints and the tests read; a random model gives about
// ln(vocab).
#pragma once
#include <cstdint>
#include <vector>

namespace cotune::model {

class Qwen2Model;

struct SequenceLoss {
  double mean_loss = 0.0;
  double perplexity = 0.0;
  int64_t tokens = 0;     // sequence length
  int64_t predicted = 0;  // positions that predict a token (tokens - 1)
  int64_t correct = 0;    // argmax == next token
};
// Throws Error when the sequence is shorter than 2 tokens or holds an id outside [0, vocab_size).
SequenceLoss sequence_loss(const Qwen2Model& model, const std::vector<int32_t>& ids);

}  // namespace cotune::model
