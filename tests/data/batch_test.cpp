// Loss masks, packing / plain batches, deterministic order, resumable iterator, selections, validation split.
#include "data/batch.h"

#include <gtest/gtest.h>

#include <numeric>
#include <set>

#include "data_test_util.h"

namespace cotune::data {
namespace {

using testing::error_of;

// Sequence i has length lens[i], tokens 1000*i + position, prompt of prompts[i] tokens.
TokenizedDataset synthetic(const std::vector<int>& lens, const std::vector<int>& prompts) {
  TokenizedDataset ds;
  for (size_t i = 0; i < lens.size(); ++i) {
    std::vector<int32_t> ids(lens[i]);
    for (int t = 0; t < lens[i]; ++t) ids[t] = static_cast<int32_t>(1000 * i + t);
    ds.append(ids, prompts[i]);
    ds.rows.push_back(static_cast<int64_t>(i));
  }
  return ds;
}

TEST(LossMask, AllAndResponseByPosition) {
  // PAD == EOS == 7 appears inside the prompt and at the end: masks must not look at ids.
  std::vector<int32_t> ids = {1, 7, 2, 3, 7, 4, 7};
  std::vector<int32_t> t(ids.size());
  sequence_targets(ids, 3, LossMask::all, t.data());
  EXPECT_EQ(t, (std::vector<int32_t>{7, 2, 3, 7, 4, 7, kIgnoreIndex}));
  sequence_targets(ids, 3, LossMask::response, t.data());
  // Tokens 3.. (3, 7, 4, 7) are trained: predicted from positions 2..5. The final EOS target is kept.
  EXPECT_EQ(t, (std::vector<int32_t>{kIgnoreIndex, kIgnoreIndex, 3, 7, 4, 7, kIgnoreIndex}));
  sequence_targets(ids, 0, LossMask::response, t.data());  // no prompt: same as all
  EXPECT_EQ(t, (std::vector<int32_t>{7, 2, 3, 7, 4, 7, kIgnoreIndex}));
  sequence_targets(ids, 7, LossMask::response, t.data());  // truncated inside the prompt: nothing trained
  EXPECT_EQ(std::count(t.begin(), t.end(), kIgnoreIndex), 7);
  EXPECT_NE(error_of([] { parse_loss_mask("prompt"); }).find("expected 'all', 'response' or 'assistant'"), std::string::npos);
}

TEST(Batch, PackedLayout) {
  auto ds = synthetic({4, 3, 5}, {2, 1, 3});
  BatchOptions opt;
  opt.packing = true;
  opt.max_tokens = 12;
  Batch b = make_batch(ds, {0, 1, 2}, opt);
  EXPECT_EQ(b.rows, 1);
  EXPECT_EQ(b.row_length, 12);
  EXPECT_EQ(b.cu_seqlens, (std::vector<int32_t>{0, 4, 7, 12}));
  EXPECT_EQ(b.position_ids, (std::vector<int32_t>{0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4}));
  EXPECT_EQ(b.input_ids, (std::vector<int32_t>{0, 1, 2, 3, 1000, 1001, 1002, 2000, 2001, 2002, 2003, 2004}));
  const int32_t X = kIgnoreIndex;
  // No target crosses a boundary: the last token of each sequence has none.
  EXPECT_EQ(b.targets, (std::vector<int32_t>{X, 2, 3, X, 1001, 1002, X, X, X, 2003, 2004, X}));
  EXPECT_EQ(b.num_tokens, 12);
  EXPECT_EQ(b.num_targets, 6);
  opt.mask = LossMask::all;
  b = make_batch(ds, {0, 1, 2}, opt);
  EXPECT_EQ(b.num_targets, 3 + 2 + 4);
  opt.max_tokens = 11;
  EXPECT_NE(error_of([&] { make_batch(ds, {0, 1, 2}, opt); }).find("over the budget of 11"), std::string::npos);
}

TEST(Batch, PlainRowsArePadded) {
  auto ds = synthetic({4, 2}, {1, 1});
  BatchOptions opt;
  opt.packing = false;
  opt.pad_id = 99;
  opt.mask = LossMask::all;
  Batch b = make_batch(ds, {1, 0}, opt);
  EXPECT_EQ(b.rows, 2);
  EXPECT_EQ(b.row_length, 4);
  EXPECT_EQ(b.cu_seqlens, (std::vector<int32_t>{0, 4, 8}));
  EXPECT_EQ(b.input_ids, (std::vector<int32_t>{1000, 1001, 99, 99, 0, 1, 2, 3}));
  EXPECT_EQ(b.position_ids, (std::vector<int32_t>{0, 1, 2, 3, 0, 1, 2, 3}));
  const int32_t X = kIgnoreIndex;
  EXPECT_EQ(b.targets, (std::vector<int32_t>{1001, X, X, X, 1, 2, 3, X}));
  EXPECT_EQ(b.num_tokens, 6);
  EXPECT_EQ(b.num_targets, 4);
  EXPECT_EQ(b.sequence_ids, (std::vector<int64_t>{1, 0}));
}

TEST(Batch, PadToMultiple) {
  auto ds = synthetic({3, 2}, {1, 1});
  BatchOptions opt;
  opt.packing = true;
  opt.pad_id = 99;
  opt.mask = LossMask::all;
  opt.pad_to_multiple = 4;
  opt.max_tokens = 8;
  Batch b = make_batch(ds, {0, 1}, opt);
  const int32_t X = kIgnoreIndex;
  EXPECT_EQ(b.input_ids, (std::vector<int32_t>{0, 1, 2, 1000, 1001, 99, 99, 99}));
  EXPECT_EQ(b.cu_seqlens, (std::vector<int32_t>{0, 3, 8}));  // padding joins the last span
  EXPECT_EQ(b.position_ids, (std::vector<int32_t>{0, 1, 2, 0, 1, 2, 3, 4}));
  EXPECT_EQ(b.targets, (std::vector<int32_t>{1, 2, X, 1001, X, X, X, X}));
  EXPECT_EQ(b.num_tokens, 5);
  EXPECT_EQ(b.num_targets, 3);
  opt.packing = false;
  b = make_batch(ds, {0, 1}, opt);
  EXPECT_EQ(b.row_length, 4);
  EXPECT_EQ(b.input_ids, (std::vector<int32_t>{0, 1, 2, 99, 1000, 1001, 99, 99}));
  opt.max_tokens = 6;
  EXPECT_NE(error_of([&] { BatchIterator(ds, {0, 1}, opt); }).find("multiple of pad_to_multiple 4"), std::string::npos);
  opt.max_tokens = 4;  // one padded row of 4 a batch
  BatchIterator it(ds, {0, 1}, opt);
  EXPECT_EQ(it.batches_in_epoch(), 2);
}

std::vector<std::vector<int64_t>> take(BatchIterator& it, int n) {
  std::vector<std::vector<int64_t>> out;
  for (int i = 0; i < n; ++i) out.push_back(it.next().sequence_ids);
  return out;
}

TEST(BatchIterator, NoShuffleKeepsOrderAndWraps) {
  auto ds = synthetic({3, 3, 3, 3, 3}, {1, 1, 1, 1, 1});
  BatchOptions opt;
  opt.shuffle = false;
  opt.max_tokens = 6;
  opt.packing = true;
  BatchIterator it(ds, {0, 1, 2, 3, 4}, opt);
  EXPECT_EQ(it.batches_in_epoch(), 3);
  auto got = take(it, 5);
  EXPECT_EQ(got, (std::vector<std::vector<int64_t>>{{0, 1}, {2, 3}, {4}, {0, 1}, {2, 3}}));
  EXPECT_EQ(it.epoch(), 1);
}

TEST(BatchIterator, BudgetAndSequenceLimit) {
  auto ds = synthetic({5, 2, 2, 6, 1, 4}, {1, 1, 1, 1, 1, 1});
  BatchOptions opt;
  opt.shuffle = false;
  opt.max_tokens = 8;
  opt.packing = true;
  BatchIterator packed(ds, {0, 1, 2, 3, 4, 5}, opt);
  EXPECT_EQ(take(packed, 4), (std::vector<std::vector<int64_t>>{{0, 1}, {2, 3}, {4, 5}, {0, 1}}));
  opt.packing = false;  // rows * longest <= 8
  BatchIterator plain(ds, {0, 1, 2, 3, 4, 5}, opt);
  EXPECT_EQ(take(plain, 4), (std::vector<std::vector<int64_t>>{{0}, {1, 2}, {3}, {4, 5}}));
  opt.max_sequences = 1;  // the guide: per-device batch 1
  BatchIterator one(ds, {0, 1, 2, 3, 4, 5}, opt);
  EXPECT_EQ(one.batches_in_epoch(), 6);
  opt.max_tokens = 5;
  EXPECT_NE(error_of([&] { BatchIterator(ds, {0, 1, 2, 3}, opt); }).find("sequence 3 has 6 tokens"), std::string::npos);
}

TEST(BatchIterator, ShuffleIsSeededPerEpochAndCoversAll) {
  std::vector<int> lens(50, 4), prompts(50, 1);
  auto ds = synthetic(lens, prompts);
  std::vector<int64_t> idx(50);
  std::iota(idx.begin(), idx.end(), 0);
  BatchOptions opt;
  opt.max_tokens = 4;  // one sequence a batch
  opt.seed = 3407;
  BatchIterator a(ds, idx, opt), b(ds, idx, opt);
  auto ea = take(a, 100), eb = take(b, 100);
  EXPECT_EQ(ea, eb);
  std::vector<int64_t> e0, e1;
  for (int i = 0; i < 50; ++i) e0.push_back(ea[i][0]), e1.push_back(ea[50 + i][0]);
  EXPECT_NE(e0, idx);  // shuffled
  EXPECT_NE(e0, e1);   // a new order each epoch
  EXPECT_EQ(std::set<int64_t>(e0.begin(), e0.end()).size(), 50u);
  EXPECT_EQ(std::set<int64_t>(e1.begin(), e1.end()).size(), 50u);
  opt.seed = 3408;
  BatchIterator c(ds, idx, opt);
  EXPECT_NE(take(c, 50), std::vector<std::vector<int64_t>>(ea.begin(), ea.begin() + 50));
}

TEST(BatchIterator, StateRoundTripResumesExactly) {
  std::vector<int> lens, prompts;
  for (int i = 0; i < 23; ++i) lens.push_back(2 + (i * 7) % 9), prompts.push_back(1);
  auto ds = synthetic(lens, prompts);
  std::vector<int64_t> idx(23);
  std::iota(idx.begin(), idx.end(), 0);
  BatchOptions opt;
  opt.packing = true;
  opt.max_tokens = 16;
  BatchIterator a(ds, idx, opt);
  take(a, 17);  // into the second epoch or beyond
  std::string saved = a.state().to_json();
  auto rest_a = take(a, 30);
  BatchIterator b(ds, idx, opt);
  b.restore(IteratorState::from_json(saved));
  EXPECT_EQ(b.state().to_json(), saved);
  auto rest_b = take(b, 30);
  EXPECT_EQ(rest_a, rest_b);
  // A resume against different data or seed is refused.
  BatchIterator small(ds, {0, 1, 2}, opt);
  EXPECT_NE(error_of([&] { small.restore(IteratorState::from_json(saved)); }).find("has 23 training sequences"),
            std::string::npos);
  opt.seed = 1;
  BatchIterator other(ds, idx, opt);
  EXPECT_NE(error_of([&] { other.restore(IteratorState::from_json(saved)); }).find("seed"), std::string::npos);
  EXPECT_NE(error_of([] { IteratorState::from_json(R"({"seed": 1})"); }).find("'epoch'"), std::string::npos);
}

TEST(Selection, ParsesHfSplitStrings) {
  auto s = parse_selection("train[0:500]");
  EXPECT_EQ(s.begin, 0);
  EXPECT_EQ(*s.end, 500);
  EXPECT_EQ(s.resolve(20171), (std::pair<int64_t, int64_t>{0, 500}));
  EXPECT_EQ(s.resolve(100), (std::pair<int64_t, int64_t>{0, 100}));
  EXPECT_TRUE(parse_selection("train").is_all());
  EXPECT_EQ(parse_selection("train[:10%]").resolve(200), (std::pair<int64_t, int64_t>{0, 20}));
  EXPECT_EQ(parse_selection("train[10%:]").resolve(200), (std::pair<int64_t, int64_t>{20, 200}));
  EXPECT_EQ(parse_selection("train[5:]").resolve(3), (std::pair<int64_t, int64_t>{3, 3}));
  EXPECT_EQ(parse_selection("test[0:5]").split, "test");  // a dataset config's split; the resolver maps it to files
  EXPECT_NE(error_of([] { parse_selection("te st[0:5]"); }).find("bad split name"), std::string::npos);
  EXPECT_NE(error_of([] { parse_selection("train[a:5]"); }).find("bad bound 'a'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_selection("train[5:2]"); }).find("end before begin"), std::string::npos);
  EXPECT_NE(error_of([] { parse_selection("train[0:5"); }).find("missing ']'"), std::string::npos);
}

TEST(Split, FractionAndCountAreDisjointSortedAndSeeded) {
  auto s = split_validation(100, 0.1, 0, 3407);
  EXPECT_EQ(s.validation.size(), 10u);
  EXPECT_EQ(s.train.size(), 90u);
  EXPECT_TRUE(std::is_sorted(s.train.begin(), s.train.end()));
  std::set<int64_t> all(s.train.begin(), s.train.end());
  all.insert(s.validation.begin(), s.validation.end());
  EXPECT_EQ(all.size(), 100u);
  EXPECT_EQ(split_validation(100, 0.1, 0, 3407).validation, s.validation);
  EXPECT_NE(split_validation(100, 0.1, 0, 1).validation, s.validation);
  EXPECT_EQ(split_validation(100, 0, 7, 3407).validation.size(), 7u);
  EXPECT_TRUE(split_validation(100, 0, 0, 3407).validation.empty());
  EXPECT_NE(error_of([] { split_validation(5, 0, 5, 1); }).find("leaves no training rows"), std::string::npos);
  EXPECT_NE(error_of([] { split_validation(5, 0.5, 1, 1); }).find("not both"), std::string::npos);
}

}  // namespace
}  // namespace cotune::data
