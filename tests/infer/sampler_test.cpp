// Logits processors as transformers applies them, and the sampler's draws.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "base/error.h"
#include "infer/sampler.h"

namespace cotune {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(Sampler, RepetitionPenaltyAsHF) {
  std::vector<float> l = {2.0f, -2.0f, 1.0f, 0.5f};
  infer::apply_repetition_penalty(l, std::vector<int32_t>{0, 1, 1, 0}, 2.0f);  // repeated ids penalised once
  EXPECT_FLOAT_EQ(l[0], 1.0f);
  EXPECT_FLOAT_EQ(l[1], -4.0f);
  EXPECT_FLOAT_EQ(l[2], 1.0f);
  EXPECT_FLOAT_EQ(l[3], 0.5f);
}

TEST(Sampler, TopKKeepsTies) {
  std::vector<float> l = {1.0f, 3.0f, 2.0f, 2.0f, 0.0f};
  infer::apply_top_k(l, 2);
  EXPECT_EQ(l, (std::vector<float>{-kInf, 3.0f, 2.0f, 2.0f, -kInf}));  // the k-th value's ties stay (HF: < kth)
  std::vector<float> same = {1.0f, 2.0f};
  infer::apply_top_k(same, 0);
  infer::apply_top_k(same, 5);
  EXPECT_EQ(same, (std::vector<float>{1.0f, 2.0f}));
}

TEST(Sampler, TopPKeepsSmallestNucleus) {
  // probs 0.5, 0.3, 0.15, 0.05
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  auto a = l;
  infer::apply_top_p(a, 0.7f);  // 0.5 + 0.3 covers 0.7: keep two
  EXPECT_TRUE(std::isfinite(a[0]) && std::isfinite(a[1]));
  EXPECT_EQ(a[2], -kInf);
  EXPECT_EQ(a[3], -kInf);
  auto b = l;
  infer::apply_top_p(b, 0.85f);  // needs the third
  EXPECT_TRUE(std::isfinite(b[2]));
  EXPECT_EQ(b[3], -kInf);
  auto c = l;
  infer::apply_top_p(c, 0.01f);  // the top token always stays
  EXPECT_TRUE(std::isfinite(c[0]));
  EXPECT_EQ(c[1], -kInf);
  auto d = l;
  infer::apply_top_p(d, 1.0f);
  EXPECT_EQ(d, l);
}

TEST(Sampler, GreedyIsArgmaxLowestIdOnTies) {
  std::vector<float> l = {0.0f, 5.0f, 5.0f, 1.0f};
  EXPECT_EQ(infer::argmax(l), 1);
  Rng rng(1);
  infer::SamplingOptions o;  // greedy
  EXPECT_EQ(infer::select_token(l, {}, o, rng), 1);
  o.repetition_penalty = 2.0f;
  l = {0.0f, 5.0f, 4.0f, 1.0f};
  EXPECT_EQ(infer::select_token(l, std::vector<int32_t>{1}, o, rng), 2);  // 5/2 < 4
}

TEST(Sampler, DrawsFollowTheDistributionAndRespectMasks) {
  std::vector<float> l = {std::log(0.7f), std::log(0.2f), std::log(0.1f), -kInf};
  Rng rng(42);
  std::vector<int> counts(4, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[static_cast<size_t>(infer::sample_softmax(l, rng))];
  EXPECT_NEAR(counts[0] / double(n), 0.7, 0.02);
  EXPECT_NEAR(counts[1] / double(n), 0.2, 0.02);
  EXPECT_NEAR(counts[2] / double(n), 0.1, 0.02);
  EXPECT_EQ(counts[3], 0);
}

TEST(Sampler, SameSeedSameTokens) {
  infer::SamplingOptions o;
  o.do_sample = true;
  o.temperature = 0.6f;
  o.top_p = 0.95f;
  std::vector<float> base(64);
  for (size_t i = 0; i < base.size(); ++i) base[i] = std::sin(static_cast<float>(i));
  auto run = [&](uint64_t seed) {
    Rng rng(seed);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) {
      auto l = base;
      out.push_back(infer::select_token(l, out, o, rng));
    }
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(Sampler, ValidateNamesTheField) {
  infer::SamplingOptions o;
  o.do_sample = true;
  o.temperature = 0.0f;
  try {
    o.validate();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("temperature"), std::string::npos);
  }
  o.temperature = 1.0f;
  o.top_p = 1.5f;
  EXPECT_THROW(o.validate(), Error);
}

TEST(Sampler, GenerationConfigFile) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("cotune_gencfg_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  // A folder without generation_config.json: transformers' defaults.
  infer::GenerationConfig none = infer::load_generation_config(dir.string());
  EXPECT_FALSE(none.sampling.do_sample);
  EXPECT_EQ(none.sampling.top_k, 50);
  {
    std::ofstream f(dir / "generation_config.json");
    f << R"({"_from_model_config": true, "bos_token_id": 151646, "eos_token_id": 151643, "do_sample": true,
             "temperature": 0.6, "top_p": 0.95, "transformers_version": "4.46.3"})";
  }
  infer::GenerationConfig g = infer::load_generation_config(dir.string());
  EXPECT_TRUE(g.sampling.do_sample);
  EXPECT_FLOAT_EQ(g.sampling.temperature, 0.6f);
  EXPECT_FLOAT_EQ(g.sampling.top_p, 0.95f);
  EXPECT_EQ(g.sampling.top_k, 50);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int32_t>{151643}));
  {
    std::ofstream f(dir / "generation_config.json");
    f << R"({"eos_token_id": [1, 2], "top_k": 20, "repetition_penalty": 1.1, "max_new_tokens": 64})";
  }
  g = infer::load_generation_config((dir / "generation_config.json").string());
  EXPECT_EQ(g.eos_token_ids, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(g.sampling.top_k, 20);
  EXPECT_EQ(g.max_new_tokens, 64);
  {
    std::ofstream f(dir / "generation_config.json");
    f << R"({"temperature": "hot"})";
  }
  try {
    infer::load_generation_config(dir.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("temperature"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("generation_config.json"), std::string::npos);
  }
  // Issue 14 item 11: counts and ids too large for their integers are errors naming the field, not
  // undefined casts or silent narrowing; syntax errors give line and column.
  for (const auto& [text, needle] : std::vector<std::pair<std::string, std::string>>{
           {R"({"max_new_tokens": 1e300})", "max_new_tokens"},
           {R"({"top_k": -1})", "top_k"},
           {R"({"eos_token_id": 4294967298})", "eos_token_id holds 4294967298"},
           {R"({"eos_token_id": [1, -2]})", "eos_token_id holds -2"},
           {"{\n \"top_k\": 5,\n}", "line 3, column 1"}}) {
    std::ofstream(dir / "generation_config.json") << text;
    try {
      infer::load_generation_config(dir.string());
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace cotune
