// The paged KV cache (CPU): the page table's bookkeeping, attention through a block table equal to attention over
// a contiguous cache, a Generator whose pool runs out, and the serving engine admitting requests only while the
// pool can hold them (the rest wait, then get the same greedy ids).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>

#include "common/test_paths.h"
#include "infer/generator.h"
#include "infer/kv_pages.h"
#include "kernels/decode_ops.h"
#include "model/qwen2.h"
#include "serve/engine.h"
#include "text/tokenizer.h"
#include "text/train_bpe.h"

namespace cotune {
namespace {

TEST(KvPageTable, SlotsTakePagesAsTheyGrowAndGiveThemBack) {
  infer::KvPageTable t(/*slots=*/3, /*max_pages=*/4, /*page=*/16, /*pool=*/6);
  EXPECT_EQ(t.pages_free(), 6);
  EXPECT_EQ(t.take_changed(), (std::vector<int32_t>{0, 1, 2}));  // all rows at first
  EXPECT_TRUE(t.grow(0, 20));  // 2 pages
  EXPECT_EQ(t.pages_held(0), 2);
  EXPECT_TRUE(t.grow(0, 32));  // still 2
  EXPECT_EQ(t.pages_free(), 4);
  EXPECT_TRUE(t.grow(1, 1));
  EXPECT_TRUE(t.grow(2, 48));  // 3 pages: the pool is empty
  EXPECT_EQ(t.pages_free(), 0);
  EXPECT_EQ(t.take_changed(), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_FALSE(t.grow(1, 17));  // no page left: refused, nothing changed
  EXPECT_EQ(t.pages_held(1), 1);
  EXPECT_TRUE(t.take_changed().empty());
  // Every page is held once.
  std::vector<int32_t> seen;
  for (int32_t e : t.table())
    if (e >= 0) seen.push_back(e);
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
  t.release(2);
  EXPECT_EQ(t.pages_free(), 3);
  EXPECT_EQ(t.take_changed(), (std::vector<int32_t>{2}));
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(t.table()[static_cast<size_t>(2 * 4 + i)], -1);
  EXPECT_TRUE(t.grow(1, 64));  // 3 more pages
  EXPECT_EQ(t.pages_free(), 0);
  EXPECT_THROW(t.grow(0, 65), Error);  // past max_pages * page
  t.release(0);
  t.release(1);
  t.release(1);  // twice: nothing more to give
  EXPECT_EQ(t.pages_free(), 6);
}

// Writes the same keys / values through a shuffled block table and into a contiguous cache, then attends: equal.
TEST(KvPagedAttention, EqualsContiguousAttention) {
  const int64_t S = 3, page = 4, max_pages = 5, N = page * max_pages, KV = 2, H = 4, D = 8;
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 1.0f);
  const int32_t len[S] = {1, 13, 20};
  std::vector<int32_t> slot, pos;
  for (int32_t s = 0; s < S; ++s)
    for (int32_t p = 0; p < len[s]; ++p) slot.push_back(s), pos.push_back(p);
  const auto T = static_cast<int64_t>(slot.size());
  std::vector<float> k(static_cast<size_t>(T * KV * D)), v(k.size()), q(static_cast<size_t>(T * H * D));
  for (auto* x : {&k, &v, &q})
    for (auto& e : *x) e = d(rng);
  // The pool: S * max_pages pages in a random order, each slot's pages spread over it.
  const int64_t P = S * max_pages;
  std::vector<int32_t> perm(static_cast<size_t>(P));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> table(perm.begin(), perm.end());  // [S, max_pages]
  std::vector<float> kc(static_cast<size_t>(S * N * KV * D), 0.0f), vc(kc.size(), 0.0f);
  std::vector<float> kp(static_cast<size_t>(P * page * KV * D), 0.0f), vp(kp.size(), 0.0f);
  Tensor tk(k.data(), DType::f32, {T, KV, D}), tv(v.data(), DType::f32, {T, KV, D}), tq(q.data(), DType::f32, {T, H, D});
  Tensor ts(slot.data(), DType::i32, {T}), tp(pos.data(), DType::i32, {T});
  Tensor ckc(kc.data(), DType::f32, {S, N, KV, D}), cvc(vc.data(), DType::f32, {S, N, KV, D});
  Tensor pkc(kp.data(), DType::f32, {P, page, KV, D}), pvc(vp.data(), DType::f32, {P, page, KV, D});
  kernels::KvPages pages{Tensor(table.data(), DType::i32, {S, max_pages}), page};
  kernels::kv_cache_write(ckc, cvc, tk, tv, ts, tp);
  kernels::kv_cache_write(pkc, pvc, tk, tv, ts, tp, pages);
  std::vector<float> out_c(q.size()), out_p(q.size(), -1.0f);
  kernels::cached_attention_forward(Tensor(out_c.data(), DType::f32, {T, H, D}), tq, ckc, cvc, ts, tp, 0.35f);
  kernels::cached_attention_forward(Tensor(out_p.data(), DType::f32, {T, H, D}), tq, pkc, pvc, ts, tp, 0.35f, 0, pages);
  EXPECT_EQ(out_p, out_c);
  // A sliding window reads through the table too.
  kernels::cached_attention_forward(Tensor(out_c.data(), DType::f32, {T, H, D}), tq, ckc, cvc, ts, tp, 0.35f, 5);
  kernels::cached_attention_forward(Tensor(out_p.data(), DType::f32, {T, H, D}), tq, pkc, pvc, ts, tp, 0.35f, 5, pages);
  EXPECT_EQ(out_p, out_c);
  // A position without a page is refused, naming the slot.
  table[static_cast<size_t>(1 * max_pages + 3)] = -1;
  try {
    kernels::cached_attention_forward(Tensor(out_p.data(), DType::f32, {T, H, D}), tq, pkc, pvc, ts, tp, 0.35f, 0, pages);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("slot 1 has no page"), std::string::npos) << e.what();
  }
}

model::Qwen2Model& tiny() {
  static model::Qwen2Model m = model::Qwen2Model::load(testing::golden_dir() + "/model/r1like");
  return m;
}

TEST(KvPagedGenerator, APoolThatRunsOutIsAnErrorAndReleaseRefillsIt) {
  infer::GeneratorOptions go;
  go.max_batch = 3;
  go.kv_page = 4;
  go.kv_pages = 5;
  infer::Generator gen(tiny(), nullptr, go);
  gen.reserve(32);
  EXPECT_EQ(gen.kv_pages().pages_total() - gen.pad_pages(), 5);
  EXPECT_EQ(gen.kv_pages().pages_free(), 5);
  gen.prefill_slot(0, {1, 2, 3, 4, 5, 6, 7, 8, 9});  // 3 pages
  EXPECT_EQ(gen.kv_pages().pages_free(), 2);
  try {
    gen.prefill_slot(1, {1, 2, 3, 4, 5, 6, 7, 8, 9});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("2 of the pool's 5 are free"), std::string::npos) << e.what();
  }
  gen.release_slot(0);
  EXPECT_EQ(gen.kv_pages().pages_free(), 5);
  // Paged decoding gives the logits of a generator that holds every slot at full capacity.
  infer::Generator full(tiny(), nullptr);
  full.reserve(32);
  auto a = gen.prefill_slot(1, {1, 5, 17, 42});
  auto b = full.prefill_slot(1, {1, 5, 17, 42});
  EXPECT_EQ(a, b);
  for (int32_t t : {3, 9, 27, 81, 243}) EXPECT_EQ(gen.decode({1}, {t}), full.decode({1}, {t}));
  EXPECT_EQ(gen.kv_pages().pages_held(1), 3);  // 9 positions
}

TEST(KvPagedEngine, RequestsWaitForPagesAndAllFinish) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("cotune-kvpages-" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(dir);
  text::BpeTrainOptions bo;
  bo.vocab_size = 256;
  const std::vector<std::string> texts = {"hello world"};
  text::write_tokenizer_files(dir, text::train_bpe(texts, bo), text::r1_distill_tokenizer_spec());
  text::Tokenizer tok = text::Tokenizer::load(dir);
  std::filesystem::remove_all(dir);
  serve::EngineOptions o;
  o.max_batch = 4;
  o.context = 48;
  o.prefill_chunk = 16;
  o.kv_page = 4;
  o.kv_pages = 12;  // two requests of up to 24 positions at a time
  serve::Engine engine(tiny(), tok, {{"base", nullptr}}, o);
  EXPECT_EQ(engine.stats().kv_pages_total, 12);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::shared_ptr<serve::RequestHandle>> handles;
  for (int i = 0; i < 5; ++i) {
    serve::CompletionRequest r;
    r.model = "base";
    r.prompt_ids = {1, static_cast<int32_t>(10 + i), static_cast<int32_t>(20 + 3 * i), 7};
    r.max_tokens = 20;  // 24 positions: 6 pages
    prompts.push_back(r.prompt_ids);
    handles.push_back(engine.submit(r));
  }
  for (int i = 0; i < 5; ++i) {
    int64_t completion = 0;
    for (;;) {
      auto e = handles[static_cast<size_t>(i)]->next(20000);
      ASSERT_TRUE(e.has_value()) << "request " << i;
      ASSERT_NE(e->kind, serve::Event::Kind::error) << e->text;
      if (e->kind == serve::Event::Kind::done) {
        completion = e->completion_tokens;
        break;
      }
    }
    EXPECT_GT(completion, 0);
  }
  engine.shutdown(true);
  EXPECT_EQ(engine.completed(), 5);
  EXPECT_GT(engine.stats().page_waits, 0);  // requests 3..5 waited for pages although slots were free
  EXPECT_EQ(engine.stats().kv_pages_used, 0);
  // More than the whole pool: refused at submit.
  serve::Engine small(tiny(), tok, {{"base", nullptr}}, o);
  serve::CompletionRequest big;
  big.model = "base";
  big.prompt_ids = {1, 2, 3};
  big.max_tokens = 45;  // 48 positions: 12 pages is the pool; 49 would not be
  EXPECT_NO_THROW(small.submit(big));
  o.kv_pages = 11;
  serve::Engine smaller(tiny(), tok, {{"base", nullptr}}, o);
  EXPECT_THROW(smaller.submit(big), Error);
}

}  // namespace
}  // namespace cotune
