#include "data/batch.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/rng.h"

namespace cotune::data {
namespace {
int64_t round_up(int64_t n, int64_t m) { return m <= 1 ? n : (n + m - 1) / m * m; }
}  // namespace

LossMask parse_loss_mask(std::string_view s) {
  if (s == "all") return LossMask::all;
  if (s == "response") return LossMask::response;
  if (s == "assistant") return LossMask::assistant;
  fail("loss mask: unknown value '{}' (expected 'all', 'response' or 'assistant')", s);
}

std::string_view to_string(LossMask m) {
  return m == LossMask::all ? "all" : m == LossMask::response ? "response" : "assistant";
}

void sequence_targets(std::span<const int32_t> ids, int32_t prompt_length, LossMask mask, int32_t* out,
                      std::span<const uint8_t> trained) {
  const int64_t n = static_cast<int64_t>(ids.size());
  if (mask == LossMask::assistant && !trained.empty()) {
    for (int64_t t = 0; t < n; ++t) out[t] = (t + 1 < n && trained[t + 1]) ? ids[t + 1] : kIgnoreIndex;
    return;
  }
  // Position t predicts token t+1; token j is trained when j >= first_trained.
  const int64_t first_trained = mask == LossMask::all ? 1 : std::max<int64_t>(1, prompt_length);
  for (int64_t t = 0; t < n; ++t) out[t] = (t + 1 < n && t + 1 >= first_trained) ? ids[t + 1] : kIgnoreIndex;
}

Batch make_batch(const TokenizedDataset& ds, const std::vector<int64_t>& sequence_ids, const BatchOptions& opt) {
  Batch b;
  int64_t longest = 0, total = 0;
  for (int64_t id : sequence_ids) {
    COTUNE_CHECK(id >= 0 && static_cast<size_t>(id) < ds.size(), "make_batch: sequence {} out of range [0, {})", id,
                 ds.size());
    longest = std::max(longest, ds.length(id));
    total += ds.length(id);
  }
  const int64_t S = static_cast<int64_t>(sequence_ids.size());
  const int64_t row = round_up(longest, opt.pad_to_multiple);
  const int64_t T = opt.packing ? round_up(total, opt.pad_to_multiple) : S * row;
  COTUNE_CHECK(T <= opt.max_tokens, "make_batch: {} sequences need {} tokens, over the budget of {}", S, T,
               opt.max_tokens);
  b.rows = opt.packing ? 1 : static_cast<int32_t>(S);
  b.row_length = static_cast<int32_t>(opt.packing ? T : row);
  b.input_ids.assign(T, opt.pad_id);
  b.position_ids.assign(T, 0);
  b.targets.assign(T, kIgnoreIndex);
  b.cu_seqlens.reserve(S + 1);
  b.cu_seqlens.push_back(0);
  b.sequence_ids = sequence_ids;
  int64_t at = 0;
  for (size_t s = 0; s < sequence_ids.size(); ++s) {
    const int64_t id = sequence_ids[s];
    auto ids = ds.sequence(id);
    const int64_t n = static_cast<int64_t>(ids.size());
    const bool last = s + 1 == sequence_ids.size();
    const int64_t span = opt.packing ? (last ? T - at : n) : row;
    std::copy(ids.begin(), ids.end(), b.input_ids.begin() + at);
    // Padding continues the positions (its outputs are never used; keeping them increasing keeps RoPE tables in range).
    for (int64_t t = 0; t < span; ++t) b.position_ids[at + t] = static_cast<int32_t>(t);
    std::span<const uint8_t> trained;
    if (!ds.assistant_mask.empty())
      trained = {ds.assistant_mask.data() + ds.offsets[id], static_cast<size_t>(n)};
    sequence_targets(ids, ds.prompt_lengths[id], opt.mask, b.targets.data() + at, trained);
    at += span;
    b.cu_seqlens.push_back(static_cast<int32_t>(at));
    b.num_tokens += n;
  }
  for (int32_t t : b.targets) b.num_targets += t != kIgnoreIndex;
  return b;
}

// ---- iterator -----------------------------------------------------------------------------------------------

namespace {
uint64_t epoch_counter(int64_t epoch) { return static_cast<uint64_t>(epoch) << 40; }
}  // namespace

BatchIterator::BatchIterator(const TokenizedDataset& ds, std::vector<int64_t> indices, BatchOptions opt)
    : ds_(ds), indices_(std::move(indices)), opt_(opt) {
  if (indices_.empty()) fail("batch iterator: no sequences to iterate over");
  if (opt_.max_sequences < 0) fail("batch iterator: max_sequences must be >= 0, got {}", opt_.max_sequences);
  if (opt_.pad_to_multiple < 1 || opt_.max_tokens % opt_.pad_to_multiple != 0)
    fail("batch iterator: max_tokens {} must be a multiple of pad_to_multiple {}", opt_.max_tokens,
         opt_.pad_to_multiple);
  for (int64_t id : indices_) {
    COTUNE_CHECK(id >= 0 && static_cast<size_t>(id) < ds.size(), "batch iterator: sequence {} out of range [0, {})",
                 id, ds.size());
    if (ds.length(id) > opt_.max_tokens)
      fail("batch iterator: sequence {} has {} tokens, more than the batch token budget {} (raise max_tokens to at "
           "least max_seq_length)",
           id, ds.length(id), opt_.max_tokens);
  }
  plan_epoch(0);
}

void BatchIterator::plan_epoch(int64_t epoch) {
  std::vector<int64_t> order = indices_;
  if (opt_.shuffle) {
    // Fisher-Yates over a Philox stream that starts at a counter derived from the epoch: (seed, epoch) fixes it.
    Rng rng(opt_.seed, epoch_counter(epoch));
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  }
  plan_.clear();
  std::vector<int64_t> cur;
  int64_t cur_total = 0, cur_longest = 0;
  for (int64_t id : order) {
    const int64_t n = ds_.length(id);
    const int64_t count = static_cast<int64_t>(cur.size()) + 1;
    const int64_t need = opt_.packing ? round_up(cur_total + n, opt_.pad_to_multiple)
                                      : count * round_up(std::max(cur_longest, n), opt_.pad_to_multiple);
    const bool full = opt_.max_sequences > 0 && count > opt_.max_sequences;
    if (!cur.empty() && (need > opt_.max_tokens || full)) {
      plan_.push_back(std::move(cur));
      cur.clear();
      cur_total = cur_longest = 0;
    }
    cur.push_back(id);
    cur_total += n;
    cur_longest = std::max(cur_longest, n);
  }
  if (!cur.empty()) plan_.push_back(std::move(cur));
  epoch_ = epoch;
  batch_in_epoch_ = 0;
}

Batch BatchIterator::next() {
  if (batch_in_epoch_ >= static_cast<int64_t>(plan_.size())) plan_epoch(epoch_ + 1);
  Batch b = make_batch(ds_, plan_[batch_in_epoch_], opt_);
  ++batch_in_epoch_;
  ++served_;
  return b;
}

IteratorState BatchIterator::state() const {
  IteratorState s;
  s.seed = opt_.seed;
  s.epoch = epoch_;
  s.batch_in_epoch = batch_in_epoch_;
  s.batches_served = served_;
  s.rng_counter = epoch_counter(epoch_);
  s.num_sequences = static_cast<int64_t>(indices_.size());
  return s;
}

void BatchIterator::restore(const IteratorState& s) {
  if (s.seed != opt_.seed) fail("resume: data iterator seed {} differs from this run's seed {}", s.seed, opt_.seed);
  if (s.num_sequences != static_cast<int64_t>(indices_.size()))
    fail("resume: the checkpoint's data has {} training sequences, this run has {} (different data or options?)",
         s.num_sequences, indices_.size());
  if (s.epoch < 0 || s.batch_in_epoch < 0) fail("resume: negative data iterator position");
  if (s.rng_counter != epoch_counter(s.epoch)) fail("resume: data iterator rng_counter does not match its epoch");
  plan_epoch(s.epoch);
  if (s.batch_in_epoch > static_cast<int64_t>(plan_.size()))
    fail("resume: batch {} of epoch {} does not exist (the epoch has {} batches; different batch options?)",
         s.batch_in_epoch, s.epoch, plan_.size());
  batch_in_epoch_ = s.batch_in_epoch;
  served_ = s.batches_served;
}

std::string IteratorState::to_json() const {
  nlohmann::ordered_json j;
  j["seed"] = seed;
  j["epoch"] = epoch;
  j["batch_in_epoch"] = batch_in_epoch;
  j["batches_served"] = batches_served;
  j["rng_counter"] = rng_counter;
  j["num_sequences"] = num_sequences;
  return j.dump();
}

IteratorState IteratorState::from_json(std::string_view text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("data iterator state: not valid JSON: {}", e.what());
  }
  IteratorState s;
  auto get = [&](const char* key, auto& dst) {
    if (!j.contains(key) || !j[key].is_number_integer()) fail("data iterator state: missing integer field '{}'", key);
    dst = j[key].get<std::remove_reference_t<decltype(dst)>>();
  };
  get("seed", s.seed);
  get("epoch", s.epoch);
  get("batch_in_epoch", s.batch_in_epoch);
  get("batches_served", s.batches_served);
  get("rng_counter", s.rng_counter);
  get("num_sequences", s.num_sequences);
  return s;
}

}  // namespace cotune::data
