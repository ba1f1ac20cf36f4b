// Batches for the trainer: loss masks, packing, deterministic shuffling, and an iterator whose position can be
// saved in a checkpoint and restored exactly.
//
// A Batch is a flat token stream of T tokens holding S whole sequences (never split, never crossing a boundary):
//   packed (packing = true):  rows = 1, row_length = T; sequences back to back (padding only at the end, with
//                             pad_to_multiple > 1); T <= max_tokens.
//   plain  (packing = false): rows = S, one sequence a row, each row right-padded to row_length (the longest
//                             sequence in the batch); T = rows * row_length <= max_tokens.
// cu_seqlens[s] .. cu_seqlens[s+1] is sequence s's span in the stream (in plain mode the row, padding included:
// padding sits after the real tokens, so causal attention never lets a real token see it). position_ids restart
// at 0 for every sequence. targets[t] = the next token of the same sequence when that prediction is trained,
// else kIgnoreIndex; the last token of each sequence and all padding have no target. Masks are set by position,
// never by token id (PAD == EOS for DeepSeek-R1-Distill, and the EOS target is always trained).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/dataset.h"

namespace cotune::data {

constexpr int32_t kIgnoreIndex = -100;

// all:      every token after the first of its sequence is a target.
// response: only tokens after the prompt are targets (reasoning, answer, EOS).
// assistant: only the assistant turns of a conversation (TokenizedDataset::assistant_mask); = response for datasets
//            without that mask (prompt templates, where the response is the one assistant turn).
enum class LossMask { all, response, assistant };
LossMask parse_loss_mask(std::string_view s);  // "all" | "response" | "assistant"
std::string_view to_string(LossMask m);

struct Batch {
  std::vector<int32_t> input_ids;     // [T]
  std::vector<int32_t> position_ids;  // [T], 0-based within each sequence
  std::vector<int32_t> targets;       // [T], kIgnoreIndex = not counted
  std::vector<int32_t> cu_seqlens;    // [S+1], cu_seqlens[0] = 0, cu_seqlens[S] = T
  std::vector<int64_t> sequence_ids;  // [S] indices into the TokenizedDataset
  int32_t rows = 0, row_length = 0;   // see the layout above
  int64_t num_tokens = 0;             // real (non-padding) tokens
  int64_t num_targets = 0;            // targets != kIgnoreIndex (the loss's denominator)

  int64_t size() const { return static_cast<int64_t>(input_ids.size()); }    // T
  int64_t num_sequences() const { return static_cast<int64_t>(sequence_ids.size()); }  // S
};

struct BatchOptions {
  int64_t max_tokens = 2048;   // token budget of a batch (T, padding included); >= the longest sequence
  int64_t max_sequences = 0;   // at most this many sequences a batch (0 = only the token budget limits)
  bool packing = false;
  LossMask mask = LossMask::response;
  bool shuffle = true;         // false: dataset order every epoch (file order when indices are sorted)
  uint64_t seed = 3407;
  int32_t pad_id = 0;          // input id of padding; its targets are kIgnoreIndex anyway
  // Round T (packed) or row_length (plain) up to a multiple of this, so a trainer sees few distinct shapes (one
  // CUDA graph per length bucket). Packed padding joins the last sequence's span. max_tokens must be a multiple.
  int64_t pad_to_multiple = 1;
};

// Builds one batch from the given sequences, in order. Throws if they do not fit opt.max_tokens.
Batch make_batch(const TokenizedDataset& ds, const std::vector<int64_t>& sequence_ids, const BatchOptions& opt);

// Targets of one sequence under a mask: out[t] = ids[t+1] or kIgnoreIndex; out.size() = ids.size().
// `trained` (LossMask::assistant with a mask): trained[j] = 1 where token j is a target.
void sequence_targets(std::span<const int32_t> ids, int32_t prompt_length, LossMask mask, int32_t* out,
                      std::span<const uint8_t> trained = {});

// The iterator's position: the epoch's order is a function of (seed, epoch), so these numbers restore it exactly.
struct IteratorState {
  uint64_t seed = 0;
  int64_t epoch = 0;           // 0-based
  int64_t batch_in_epoch = 0;  // next batch to return within the epoch
  int64_t batches_served = 0;  // over all epochs
  uint64_t rng_counter = 0;    // Philox counter the epoch's shuffle starts at (derived from epoch; checked)
  int64_t num_sequences = 0;   // size of the index list (a resume against other data is refused)
  std::string to_json() const;
  static IteratorState from_json(std::string_view json);  // throws naming the bad field
};

// Walks batches forever: epoch after epoch, each epoch a (seeded) permutation of `indices` grouped greedily into
// batches (the next sequence joins the batch when it fits the budget, else starts the next one).
class BatchIterator {
 public:
  BatchIterator(const TokenizedDataset& ds, std::vector<int64_t> indices, BatchOptions opt);
  Batch next();
  int64_t epoch() const { return epoch_; }
  int64_t batches_in_epoch() const { return static_cast<int64_t>(plan_.size()); }  // of the current epoch
  int64_t batch_in_epoch() const { return batch_in_epoch_; }
  IteratorState state() const;
  void restore(const IteratorState& s);  // throws when seed / dataset size differ
  const BatchOptions& options() const { return opt_; }

 private:
  void plan_epoch(int64_t epoch);

  const TokenizedDataset& ds_;
  std::vector<int64_t> indices_;
  BatchOptions opt_;
  int64_t epoch_ = 0, batch_in_epoch_ = 0, served_ = 0;
  std::vector<std::vector<int64_t>> plan_;  // the current epoch's batches (sequence ids)
};

}  // namespace cotune::data
