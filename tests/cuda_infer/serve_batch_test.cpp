// The serving path on the GPU (gpu label):
//   - the selection kernel picks exactly the ids of its CPU twin (greedy, temperature, top-k, top-p, seeds, draws),
//     on rows of the real vocabulary size with a padded tail;
//   - a batched decode step (decode_select: n rows, each slot at its own length, padded to a bucket, replayed as a
//     CUDA graph) follows per-slot batch-1 decoding: the same ids wherever the choice is not a near-tie, logits
//     within bf16 tolerance; base model (fast path) and an unmerged LoRA adapter;
//   - the serving engine on the GPU gives the lone generator's greedy text for requests that join a running batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "common/test_paths.h"
#include "cuda_test_util.h"
#include "infer/generator.h"
#include "kernels/decode_ops.h"
#include "kernels/select_ops.h"
#include "model/qwen2.h"
#include "serve/engine.h"
#include "text/tokenizer.h"
#include "text/train_bpe.h"

#include <unistd.h>

#include <filesystem>

namespace cotune {
namespace {

using kernels::SelectParams;
using testing::rel_err;

TEST(CudaSelect, PicksTheIdsOfTheCpuTwin) {
  COTUNE_REQUIRE_GPU();
  const int64_t V = 151936, vocab = 151665;
  std::vector<SelectParams> prm;
  auto add = [&](int greedy, float t, float p, int32_t k, uint64_t seed, uint64_t draw) {
    SelectParams s;
    s.greedy = greedy;
    s.temperature = t;
    s.top_p = p;
    s.top_k = k;
    s.seed = seed;
    s.draw = draw;
    prm.push_back(s);
  };
  for (uint64_t r = 0; r < 8; ++r) {
    add(1, 1.0f, 1.0f, 0, r, 0);
    add(0, 0.6f, 0.95f, 0, 1000 + r, r * 5);
    add(0, 1.0f, 1.0f, 0, 2000 + r, r);
    add(0, 0.8f, 0.9f, 50, 3000 + r, 3 * r + 1);
    add(0, 0.3f, 0.5f, 0, 4000 + r, 7);
    add(0, 1.3f, 1.0f, 20, 5000 + r, r);
  }
  const auto n = static_cast<int64_t>(prm.size());
  std::vector<float> logits(static_cast<size_t>(n * V));
  std::mt19937 rng(9);
  std::normal_distribution<float> d(0.0f, 2.5f);
  for (auto& x : logits) x = d(rng);
  for (int64_t r = 0; r < n; ++r) {  // what real rows have: a peaked head, ties, -inf, a strong padded tail
    float* row = logits.data() + r * V;
    row[100 + r] = 14.0f + static_cast<float>(r % 3);
    row[5000] = row[6000] = 9.0f;
    row[7] = -INFINITY;
    row[vocab + 3] = 1e6f;
  }
  std::vector<int32_t> want(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r)
    want[static_cast<size_t>(r)] = kernels::select_row_reference(logits.data() + r * V, vocab, prm[static_cast<size_t>(r)]);
  Arena a(Device::cuda);
  Tensor dl = a.alloc(DType::f32, {n, V}), dp = a.alloc(DType::i32, {n, 8}), di = a.alloc(DType::i32, {n});
  Tensor scratch = a.alloc(DType::i64, {n, vocab});
  copy_bytes(dl, Tensor(logits.data(), DType::f32, {n, V}));
  copy_bytes(dp, Tensor(prm.data(), DType::i32, {n, 8}));
  kernels::select_tokens(di, dl, dp, scratch, vocab);
  std::vector<int32_t> got(static_cast<size_t>(n));
  copy_bytes(Tensor(got.data(), DType::i32, {n}), di);
  for (int64_t r = 0; r < n; ++r) EXPECT_EQ(got[static_cast<size_t>(r)], want[static_cast<size_t>(r)]) << "row " << r;
}

// The GPU kernels read and write a paged cache through its block table exactly as a contiguous cache: the cache
// write + attention (prefill), and the fused rope + write + attention of decode rows. Bit-equal outputs.
TEST(CudaPaged, AttentionThroughTheBlockTableEqualsContiguous) {
  COTUNE_REQUIRE_GPU();
  const int64_t S = 3, page = 16, max_pages = 4, N = page * max_pages, KV = 2, H = 6, D = 128;
  const int32_t len[S] = {1, 37, 63};
  std::vector<int32_t> slot, pos;
  for (int32_t s = 0; s < S; ++s)
    for (int32_t p = 0; p < len[s]; ++p) slot.push_back(s), pos.push_back(p);
  const auto T = static_cast<int64_t>(slot.size());
  auto k = testing::randn(static_cast<size_t>(T * KV * D), 1), v = testing::randn(static_cast<size_t>(T * KV * D), 2);
  auto q = testing::randn(static_cast<size_t>(T * H * D), 3);
  const int64_t P = S * max_pages + 5;
  std::vector<int32_t> table = {7, 2, 14, 0, 9, 3, 16, 11, 1, 12, 5, 8};  // [S, max_pages], pages out of order
  Arena a(Device::cuda);
  Tensor kc = testing::upload(a, std::vector<float>(static_cast<size_t>(S * N * KV * D), 0.0f), {S, N, KV, D}, DType::bf16);
  Tensor vc = testing::upload(a, std::vector<float>(static_cast<size_t>(S * N * KV * D), 0.0f), {S, N, KV, D}, DType::bf16);
  Tensor kp = testing::upload(a, std::vector<float>(static_cast<size_t>(P * page * KV * D), 0.0f), {P, page, KV, D}, DType::bf16);
  Tensor vp = testing::upload(a, std::vector<float>(static_cast<size_t>(P * page * KV * D), 0.0f), {P, page, KV, D}, DType::bf16);
  kernels::KvPages pages{testing::upload_i32(a, table, {S, max_pages}), page};
  Tensor sd = testing::upload_i32(a, slot, {T}), pd = testing::upload_i32(a, pos, {T});
  Tensor kd = testing::upload(a, k, {T, KV, D}, DType::bf16), vd = testing::upload(a, v, {T, KV, D}, DType::bf16);
  Tensor qd = testing::upload(a, q, {T, H, D}, DType::bf16);
  kernels::kv_cache_write(kc, vc, kd, vd, sd, pd);
  kernels::kv_cache_write(kp, vp, kd, vd, sd, pd, pages);
  Tensor oc = testing::upload(a, std::vector<float>(q.size(), NAN), {T, H, D}, DType::bf16);
  Tensor op = testing::upload(a, std::vector<float>(q.size(), NAN), {T, H, D}, DType::bf16);
  kernels::cached_attention_forward(oc, qd, kc, vc, sd, pd, 0.088f);
  kernels::cached_attention_forward(op, qd, kp, vp, sd, pd, 0.088f, 0, pages);
  EXPECT_EQ(testing::download(op), testing::download(oc));
  // One decode row a slot, at its next position.
  std::vector<int32_t> ds = {0, 1, 2}, dp = {len[0], len[1], len[2]};
  Tensor dsd = testing::upload_i32(a, ds, {S}), dpd = testing::upload_i32(a, dp, {S});
  Tensor q1 = testing::upload(a, testing::randn(static_cast<size_t>(S * H * D), 4), {S, H, D}, DType::bf16);
  Tensor k1 = testing::upload(a, testing::randn(static_cast<size_t>(S * KV * D), 5), {S, KV, D}, DType::bf16);
  Tensor v1 = testing::upload(a, testing::randn(static_cast<size_t>(S * KV * D), 6), {S, KV, D}, DType::bf16);
  kernels::DecodeAttentionWork work;
  work.partial = a.alloc(DType::f32, {kernels::decode_attention_partial_floats(S, H, D)});
  work.counters = testing::upload_i32(a, std::vector<int32_t>(static_cast<size_t>(S * H), 0), {S * H});
  Tensor o1c = testing::upload(a, std::vector<float>(static_cast<size_t>(S * H * D), NAN), {S, H, D}, DType::bf16);
  Tensor o1p = testing::upload(a, std::vector<float>(static_cast<size_t>(S * H * D), NAN), {S, H, D}, DType::bf16);
  kernels::RopeSpec rope;
  kernels::decode_rope_attention(o1c, q1, k1, v1, kc, vc, dsd, dpd, rope, 0.088f, work);
  kernels::decode_rope_attention(o1p, q1, k1, v1, kp, vp, dsd, dpd, rope, 0.088f, work, pages);
  EXPECT_EQ(testing::download(o1p), testing::download(o1c));
}

// The largest absolute difference of two rows: where a row's top two are further apart than twice this, both rows
// have the same arg-max.
float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// The largest minus the second largest of a row.
float top2_gap(const float* row, int64_t V) {
  float a = -INFINITY, b = -INFINITY;
  for (int64_t i = 0; i < V; ++i) {
    if (row[i] > a) b = a, a = row[i];
    else if (row[i] > b) b = row[i];
  }
  return a - b;
}

// Five prompts decoded together (rows padded to the bucket of 8; graphs on or off) against each prompt decoded alone
// (batch 1: the fused step), teacher-forced with the lone run's ids so one near-tie cannot derail the rest.
void compare_batched(bool graphs, bool with_lora) {
  const std::string dir = testing::golden_dir() + "/model/r1like";
  model::LoadOptions o;
  o.device = Device::cuda;
  model::Qwen2Model m = model::Qwen2Model::load(dir, o);
  std::unique_ptr<model::LoraWeights> lora;
  if (with_lora) lora = infer::load_adapter(m, dir + "/lora/adapter_init");
  const int64_t V = m.config().vocab_size;
  const std::vector<std::vector<int32_t>> prompts = {{1, 5, 17, 42, 99}, {1, 200, 3}, {7}, {1, 2, 3, 4, 5, 6, 7, 8, 9}, {300, 301}};
  const int64_t steps = 20;
  std::vector<SelectParams> greedy1(1);
  // Lone runs: ids and logits of every step.
  std::vector<std::vector<int32_t>> ids(prompts.size());
  std::vector<std::vector<std::vector<float>>> lg(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    infer::GeneratorOptions go;
    go.max_batch = 1;
    infer::Generator lone(m, lora.get(), go);
    lone.reserve(64);
    int32_t next = lone.prefill_select({0}, {prompts[i]}, greedy1)[0];
    for (int64_t s = 0; s < steps; ++s) {
      ids[i].push_back(next);
      next = lone.decode_select({0}, {next}, greedy1)[0];
      lg[i].push_back(lone.last_logits(1));
    }
  }
  infer::GeneratorOptions go;
  go.max_batch = 8;
  go.decode_graphs = graphs;
  infer::Generator gen(m, lora.get(), go);
  gen.reserve(64);
  const std::vector<int32_t> slots = {6, 0, 3, 1, 7};
  std::vector<SelectParams> greedy(prompts.size());
  gen.prefill_select(slots, prompts, greedy);
  int compared = 0;
  for (int64_t s = 0; s < steps; ++s) {
    std::vector<int32_t> feed;
    for (size_t i = 0; i < prompts.size(); ++i) feed.push_back(ids[i][static_cast<size_t>(s)]);
    const std::vector<int32_t> got = gen.decode_select(slots, feed, greedy);
    const std::vector<float> rows = gen.last_logits(static_cast<int64_t>(prompts.size()));
    for (size_t i = 0; i < prompts.size(); ++i) {
      const std::vector<float> row(rows.begin() + static_cast<int64_t>(i) * V, rows.begin() + static_cast<int64_t>(i + 1) * V);
      const auto& ref = lg[i][static_cast<size_t>(s)];
      EXPECT_LT(rel_err(row, ref), 2e-2) << "prompt " << i << " step " << s;
      EXPECT_EQ(got[i], static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin()))
          << "the chosen id is the arg-max of the step's logits; prompt " << i << " step " << s;
      if (s + 1 < steps && top2_gap(ref.data(), V) > 2.0f * max_abs_diff(row, ref)) {
        EXPECT_EQ(got[i], ids[i][static_cast<size_t>(s + 1)]) << "prompt " << i << " step " << s;
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 40);  // most of the 95 choices are not near-ties
}

TEST(CudaServeBatch, BatchedDecodeFollowsBatch1WithGraphs) {
  COTUNE_REQUIRE_GPU();
  compare_batched(true, false);
}

TEST(CudaServeBatch, BatchedDecodeFollowsBatch1WithoutGraphs) {
  COTUNE_REQUIRE_GPU();
  compare_batched(false, false);
}

TEST(CudaServeBatch, BatchedDecodeFollowsBatch1WithLora) {
  COTUNE_REQUIRE_GPU();
  compare_batched(true, true);
}

// Slots at different lengths, in every bucket size: a step of n rows (1..8) and a single row agree.
TEST(CudaServeBatch, EveryBucketSize) {
  COTUNE_REQUIRE_GPU();
  const std::string dir = testing::golden_dir() + "/model/r1like";
  model::LoadOptions o;
  o.device = Device::cuda;
  model::Qwen2Model m = model::Qwen2Model::load(dir, o);
  const int64_t V = m.config().vocab_size;
  infer::GeneratorOptions go;
  go.max_batch = 8;
  infer::Generator gen(m, nullptr, go);
  gen.reserve(128);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int32_t> slots;
  for (int i = 0; i < 8; ++i) {
    std::vector<int32_t> p;
    for (int j = 0; j <= i * 5; ++j) p.push_back((i * 31 + j * 7) % 320);
    prompts.push_back(p);
    slots.push_back(i);
  }
  std::vector<SelectParams> greedy(8);
  std::vector<int32_t> next = gen.prefill_select(slots, prompts, greedy);
  for (int64_t n = 1; n <= 8; ++n) {
    for (int rep = 0; rep < 3; ++rep) {  // uncaptured, captured, replayed
      std::vector<int32_t> sl(slots.begin(), slots.begin() + n), tk(next.begin(), next.begin() + n);
      std::vector<SelectParams> g(static_cast<size_t>(n));
      const std::vector<int32_t> got = gen.decode_select(sl, tk, g);
      const std::vector<float> rows = gen.last_logits(n);
      for (int64_t r = 0; r < n; ++r) {
        const float* row = rows.data() + r * V;
        EXPECT_EQ(got[static_cast<size_t>(r)], static_cast<int32_t>(std::max_element(row, row + V) - row)) << n << " " << r;
        next[static_cast<size_t>(r)] = got[static_cast<size_t>(r)];
      }
    }
  }
}

// The serving engine on the GPU (device selection, packed prefills, graphs, paged cache): greedy and seeded
// sampled requests that join a running batch, and one with a repetition penalty (host selection), all finish with
// their token counts and the pages all come back; requests sent one at a time (so every step has the same batch)
// write the same texts on a second engine. (Concurrent runs may group prefills differently, and a GEMM of another
// row count rounds differently: their texts are not compared.)
TEST(CudaServeEngine, RequestsFinishAndFreeTheirPagesAndSingleRequestsReproduce) {
  COTUNE_REQUIRE_GPU();
  const std::string tdir =
      (std::filesystem::temp_directory_path() / ("cotune-cuda-serve-" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(tdir);
  text::BpeTrainOptions bo;
  bo.vocab_size = 256;
  const std::vector<std::string> texts = {"hello world"};
  text::write_tokenizer_files(tdir, text::train_bpe(texts, bo), text::r1_distill_tokenizer_spec());
  text::Tokenizer tok = text::Tokenizer::load(tdir);
  std::filesystem::remove_all(tdir);
  model::LoadOptions o;
  o.device = Device::cuda;
  model::Qwen2Model m = model::Qwen2Model::load(testing::golden_dir() + "/model/r1like", o);
  // Text, then "|finish_reason|completion_tokens".
  auto collect = [](serve::RequestHandle& h) {
    std::string text;
    for (;;) {
      auto e = h.next(30000);
      if (!e) {
        ADD_FAILURE() << "no event within 30 s";
        return text;
      }
      EXPECT_NE(e->kind, serve::Event::Kind::error) << e->text;
      if (e->kind == serve::Event::Kind::text) {
        text += e->text;
      } else {
        EXPECT_TRUE(e->finish_reason == "length" || e->finish_reason == "stop") << e->finish_reason;
        return text + "|" + e->finish_reason + "|" + std::to_string(e->completion_tokens);
      }
    }
  };
  auto run = [&](bool one_at_a_time) {
    serve::EngineOptions eo;
    eo.max_batch = 4;
    eo.context = 64;
    eo.prefill_chunk = 16;
    eo.kv_page = 8;
    eo.kv_pages = 20;  // 160 positions: fewer than 4 x 64, so some requests wait for pages
    eo.eos_ids = {tok.eos_id()};
    serve::Engine engine(m, tok, {{"base", nullptr}}, eo);
    EXPECT_TRUE(engine.device_select());
    std::vector<std::shared_ptr<serve::RequestHandle>> hs;
    std::vector<std::string> out;
    for (int i = 0; i < 7; ++i) {
      serve::CompletionRequest r;
      r.model = "base";
      r.prompt_ids = tok.encode("hello " + std::string(static_cast<size_t>(i + 1), 'w'));
      r.max_tokens = 30 + i;
      r.sampling.do_sample = i % 2 == 1;
      r.sampling.temperature = 0.9f;
      r.sampling.top_p = i == 3 ? 0.8f : 1.0f;
      r.sampling.top_k = i == 5 ? 20 : 0;
      r.sampling.seed = 100 + static_cast<uint64_t>(i);
      if (i == 6) r.sampling.repetition_penalty = 1.3f;  // the host selects for this one
      hs.push_back(engine.submit(r));
      if (one_at_a_time) out.push_back(collect(*hs.back()));
    }
    if (!one_at_a_time)
      for (auto& h : hs) out.push_back(collect(*h));
    engine.shutdown(true);
    EXPECT_EQ(engine.completed(), 7);
    EXPECT_GT(engine.stats().device_steps, 0);
    EXPECT_GT(engine.stats().prefills, 0);
    EXPECT_EQ(engine.stats().kv_pages_used, 0);
    return out;
  };
  const auto together = run(false);
  for (size_t i = 0; i < together.size(); ++i)
    EXPECT_FALSE(together[i].empty()) << "request " << i;
  const auto a = run(true), b = run(true);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace cotune
