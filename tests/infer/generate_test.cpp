// The Generator against transformers (greedy ids from tools/make_generate_golden.py), the KV cache against
// recomputing the whole sequence, and seeded sampling.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "common/test_paths.h"
#include "infer/generator.h"
#include "model/qwen2.h"
#include "text/train_bpe.h"

namespace cotune {
namespace {

nlohmann::json golden() {
  std::ifstream in(testing::golden_dir() + "/infer/generate.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

std::string model_dir() { return testing::golden_dir() + "/model/r1like"; }

std::vector<std::vector<int32_t>> ids_of(const nlohmann::json& j) { return j.get<std::vector<std::vector<int32_t>>>(); }

infer::GenerationOptions greedy(int64_t n) {
  infer::GenerationOptions o;
  o.max_new_tokens = n;
  o.sampling.do_sample = false;
  o.eos_ids = {2};
  return o;
}

void expect_matches(const std::vector<infer::GenerationOutput>& outs, const std::vector<std::vector<int32_t>>& want) {
  ASSERT_EQ(outs.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(outs[i].ids, want[i]) << "prompt " << i;
}

TEST(Generate, GreedyMatchesTransformersBatched) {
  auto g = golden();
  model::Qwen2Model m = model::Qwen2Model::load(model_dir());
  infer::Generator gen(m, nullptr);
  expect_matches(gen.generate(ids_of(g["prompts"]), greedy(20), nullptr), ids_of(g["base"]));
}

TEST(Generate, GreedyMatchesTransformersOneAtATimeAndSmallChunks) {
  auto g = golden();
  model::Qwen2Model m = model::Qwen2Model::load(model_dir());
  infer::GeneratorOptions go;
  go.max_batch = 1;
  go.prefill_chunk = 3;  // prompts span several prefill chunks
  infer::Generator gen(m, nullptr, go);
  expect_matches(gen.generate(ids_of(g["prompts"]), greedy(20), nullptr), ids_of(g["base"]));
}

TEST(Generate, RepetitionPenaltyMatchesTransformers) {
  auto g = golden();
  model::Qwen2Model m = model::Qwen2Model::load(model_dir());
  infer::Generator gen(m, nullptr);
  auto o = greedy(20);
  o.sampling.repetition_penalty = 1.3f;
  expect_matches(gen.generate(ids_of(g["prompts"]), o, nullptr), ids_of(g["base_penalty_1_3"]));
}

TEST(Generate, LoraAdapterMatchesTransformersPeft) {
  auto g = golden();
  model::Qwen2Model m = model::Qwen2Model::load(model_dir());
  auto lora = infer::load_adapter(m, model_dir() + "/lora/adapter_init");
  infer::Generator after(m, lora.get());
  expect_matches(after.generate(ids_of(g["prompts"]), greedy(20), nullptr), ids_of(g["lora"]));
  // The same loaded base without the adapter is still the base model.
  infer::Generator before(m, nullptr);
  expect_matches(before.generate(ids_of(g["prompts"]), greedy(20), nullptr), ids_of(g["base"]));
}

// A merged model (W + scale * B @ A written into the base weights) generates what base + unmerged adapter does.
TEST(Generate, MergedWeightsMatchUnmergedAdapter) {
  auto g = golden();
  model::Qwen2Model m = model::Qwen2Model::load(model_dir());
  auto lora = infer::load_adapter(m, model_dir() + "/lora/adapter_init");
  const float scale = lora->config().scale();
  for (int64_t l = 0; l < m.config().num_hidden_layers; ++l) {
    for (int p = 0; p < model::kNumProj; ++p) {
      const auto proj = static_cast<model::Proj>(p);
      if (!lora->has(l, proj)) continue;
      const Tensor& w = m.weights().layers[static_cast<size_t>(l)].proj(proj);  // f32 [out, in] on the CPU
      const Tensor& A = lora->A(l, proj);
      const Tensor& B = lora->B(l, proj);
      const int64_t out = w.dim(0), in = w.dim(1), r = A.dim(0);
      float* wp = w.ptr<float>();
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) {
          float acc = 0.0f;
          for (int64_t k = 0; k < r; ++k) acc += B.ptr<float>()[o * r + k] * A.ptr<float>()[k * in + i];
          wp[o * in + i] += scale * acc;
        }
    }
  }
  infer::Generator merged(m, nullptr);
  expect_matches(merged.generate(ids_of(g["prompts"]), greedy(20), nullptr), ids_of(g["lora"]));
}

// Logits of every decode step equal the logits of a full forward over the whole sequence.
TEST(Generate, KvCacheDecodeEqualsFullRecompute) {
  model::Qwen2Model m = model::Qwen2Model::load(model_dir());
  auto lora = infer::load_adapter(m, model_dir() + "/lora/adapter_init");
  for (model::LoraWeights* l : {static_cast<model::LoraWeights*>(nullptr), lora.get()}) {
    infer::Generator gen(m, l);
    model::RunnerOptions ro;
    ro.max_tokens = 64;
    ro.training = false;
    model::Qwen2Runner runner(m, l, ro);
    std::vector<std::vector<int32_t>> seqs = {{1, 5, 17, 42, 99}, {1, 200, 3}};
    const int64_t V = m.config().vocab_size;
    std::vector<float> logits = gen.prefill(seqs, 32);
    for (int step = 0; step < 8; ++step) {
      for (size_t s = 0; s < seqs.size(); ++s) {
        std::vector<float> full = runner.forward_logits(model::PackedBatch::from_sequences({seqs[s]}));
        const float* last = full.data() + (static_cast<int64_t>(seqs[s].size()) - 1) * V;
        float max_err = 0.0f;
        for (int64_t v = 0; v < V; ++v)
          max_err = std::max(max_err, std::fabs(last[v] - logits[static_cast<size_t>(static_cast<int64_t>(s) * V + v)]));
        EXPECT_LE(max_err, 2e-4f) << "sequence " << s << " step " << step << (l ? " (LoRA)" : "");
      }
      std::vector<int32_t> next;
      for (size_t s = 0; s < seqs.size(); ++s) {
        int32_t tok = static_cast<int32_t>((step * 37 + static_cast<int>(s) * 101 + 11) % V);
        seqs[s].push_back(tok);
        next.push_back(tok);
      }
      logits = gen.decode({0, 1}, next);
    }
    EXPECT_EQ(gen.length(0), 13);
    EXPECT_EQ(gen.length(1), 11);
  }
}

TEST(Generate, SeededSamplingIsReproducibleAndIndependentOfBatching) {
  model::Qwen2Model m = model::Qwen2Model::load(model_dir());
  infer::GenerationOptions o;
  o.max_new_tokens = 16;
  o.sampling.do_sample = true;
  o.sampling.temperature = 1.5f;
  o.sampling.top_k = 0;
  o.sampling.top_p = 0.95f;
  o.sampling.seed = 1234;
  std::vector<std::vector<int32_t>> prompts = {{1, 5, 17}, {1, 200, 3, 9}};
  infer::Generator gen(m, nullptr);
  auto a = gen.generate(prompts, o, nullptr);
  auto b = gen.generate(prompts, o, nullptr);
  infer::GeneratorOptions one;
  one.max_batch = 1;
  infer::Generator gen1(m, nullptr, one);
  auto c = gen1.generate(prompts, o, nullptr);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(a[i].ids, b[i].ids);
    EXPECT_EQ(a[i].ids, c[i].ids);
    EXPECT_EQ(a[i].ids.size(), 16u);
  }
  o.sampling.seed = 99;
  auto d = gen.generate(prompts, o, nullptr);
  EXPECT_NE(a[0].ids, d[0].ids);  // another seed, another text (16 draws at temperature 1.5)
}

TEST(Generate, StopsAtEosAndLength) {
  model::Qwen2Model m = model::Qwen2Model::load(model_dir());
  infer::Generator gen(m, nullptr);
  auto g = golden();
  auto prompts = ids_of(g["prompts"]);
  auto want = ids_of(g["base"]);
  // Make the first greedy token of prompt 0 that differs from the one before it an EOS id: generation stops at
  // its first occurrence and keeps it.
  size_t k = 1;
  while (k < want[0].size() && std::find(want[0].begin(), want[0].begin() + static_cast<ptrdiff_t>(k), want[0][k]) !=
                                   want[0].begin() + static_cast<ptrdiff_t>(k))
    ++k;
  ASSERT_LT(k, want[0].size()) << "the golden continuation repeats one token throughout";
  auto o = greedy(20);
  o.eos_ids = {want[0][k]};
  auto out = gen.generate({prompts[0]}, o, nullptr);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ids, std::vector<int32_t>(want[0].begin(), want[0].begin() + static_cast<ptrdiff_t>(k) + 1));
  EXPECT_EQ(out[0].finish_reason, "eos");
  out = gen.generate({prompts[0]}, greedy(5), nullptr);
  EXPECT_EQ(out[0].ids.size(), 5u);
  EXPECT_EQ(out[0].finish_reason, "length");
  out = gen.generate({prompts[0]}, greedy(0), nullptr);
  EXPECT_TRUE(out[0].ids.empty());
}

TEST(Generate, FourBitBaseGenerates) {
  model::LoadOptions lo;
  lo.load_in_4bit = true;
  model::Qwen2Model m = model::Qwen2Model::load(model_dir(), lo);
  infer::Generator gen(m, nullptr);
  auto out = gen.generate({{1, 5, 17, 42, 99}}, greedy(10), nullptr);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_GE(out[0].ids.size(), 1u);
  for (int32_t id : out[0].ids) EXPECT_LT(id, m.config().vocab_size);
}

TEST(Generate, RejectsBadInput) {
  model::Qwen2Model m = model::Qwen2Model::load(model_dir());
  infer::Generator gen(m, nullptr);
  EXPECT_THROW(gen.generate({{}}, greedy(3), nullptr), Error);
  EXPECT_THROW(gen.generate({{1, 100000}}, greedy(3), nullptr), Error);
  auto o = greedy(3);
  o.sampling.do_sample = true;
  o.sampling.temperature = 0.0f;
  EXPECT_THROW(gen.generate({{1, 2}}, o, nullptr), Error);
}

}  // namespace
}  // namespace cotune

namespace cotune {
namespace {

// A model whose vocabulary is padded past its tokenizer's (DeepSeek-R1-Distill-Qwen: 151,936 rows, 151,665 ids)
// never picks an id the tokenizer lacks: here the padded rows are made to win the arg-max outright, and the
// generator must still choose among the tokenizer's ids and decode them.
TEST(Generate, NeverPicksIdsTheTokenizerLacks) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("cotune-gen-pad-" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(dir);
  text::BpeTrainOptions bo;
  bo.vocab_size = 256;  // the 256 byte tokens only; the added tokens of the spec come on top
  std::vector<std::string> texts = {"hello world"};
  text::write_tokenizer_files(dir, text::train_bpe(texts, bo), text::r1_distill_tokenizer_spec());
  text::Tokenizer tok = text::Tokenizer::load(dir);
  model::Qwen2Model m = model::Qwen2Model::load(model_dir());
  const int64_t V = m.config().vocab_size, C = m.config().hidden_size, n = tok.vocab_size();
  ASSERT_LT(n, V);
  // Rows n..V-1 of the LM head := 4 x the row that wins the first step, so without the mask they win instead.
  const std::vector<int32_t> prompt = {1, 5, 17, 42, 99};
  infer::Generator probe(m, nullptr);
  const int32_t first = probe.generate({prompt}, greedy(1), nullptr)[0].ids.at(0);
  ASSERT_LT(first, n) << "the golden model's first greedy id should be a tokenizer id";
  float* head = m.weights().lm_head.ptr<float>();
  for (int64_t r = n; r < V; ++r)
    for (int64_t c = 0; c < C; ++c) head[r * C + c] = 4.0f * head[static_cast<int64_t>(first) * C + c];
  infer::Generator gen(m, nullptr);
  auto unmasked = gen.generate({prompt}, greedy(1), nullptr);  // no tokenizer: nothing to mask by
  ASSERT_GE(unmasked[0].ids.at(0), n) << "the padded rows should win without the tokenizer's mask";
  auto out = gen.generate({prompt}, greedy(12), &tok);
  for (int32_t id : out[0].ids) EXPECT_TRUE(tok.has_id(id)) << "picked id " << id << " the tokenizer lacks";
  infer::GenerationOptions sampled = greedy(12);
  sampled.sampling.do_sample = true;
  sampled.sampling.seed = 7;
  auto drawn = gen.generate({prompt}, sampled, &tok);
  for (int32_t id : drawn[0].ids) EXPECT_TRUE(tok.has_id(id)) << "sampled id " << id;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cotune
