// The BPE trainer: merge order on hand-made counts, determinism, and a written tokenizer that cotune's
// Tokenizer loads and that encodes as the trainer's own merge application does, losslessly.
#include "text/train_bpe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "base/error.h"
#include "init/temp_dir.h"
#include "export/demo_model.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace cotune::text {
namespace {

using init_test::TempDir;

int32_t byte_token(const BpeVocab& v, char c) {
  for (int32_t id = 0; id < 256; ++id)
    if (v.tokens[static_cast<size_t>(id)] == std::string(1, c)) return id;
  return -1;
}

TEST(TrainBpe, ByteTokensFollowGpt2CharacterOrder) {
  const BpeVocab v = train_bpe_from_counts({}, BpeTrainOptions{});
  ASSERT_EQ(v.size(), 256);
  EXPECT_EQ(v.tokens[0], "!");  // as in GPT-2 / Qwen2: id 0 is '!'
  EXPECT_EQ(v.token_string(byte_token(v, ' ')), "Ġ");
  EXPECT_EQ(v.token_string(byte_token(v, '\n')), "Ċ");
  EXPECT_TRUE(v.merges.empty());
}

TEST(TrainBpe, MergesTheMostFrequentPairFirst) {
  // Pair counts: (a,b) = 5 + 3 = 8, (b,c) = 3 + 1 = 4. After "ab": (ab,c) = 3, (b,c) = 1 (< min_frequency 2).
  BpeTrainOptions opts;
  opts.vocab_size = 300;
  const BpeVocab v = train_bpe_from_counts({{"ab", 5}, {"abc", 3}, {"bc", 1}}, opts);
  const int32_t a = byte_token(v, 'a'), b = byte_token(v, 'b'), c = byte_token(v, 'c');
  ASSERT_EQ(v.merges.size(), 2u);
  EXPECT_EQ(v.merges[0], std::make_pair(a, b));
  EXPECT_EQ(v.tokens[256], "ab");
  EXPECT_EQ(v.merges[1], std::make_pair(256, c));
  EXPECT_EQ(v.tokens[257], "abc");
  EXPECT_EQ(v.size(), 258);
  EXPECT_EQ(bpe_encode_word(v, "abc"), std::vector<int32_t>({257}));
  EXPECT_EQ(bpe_encode_word(v, "bcab"), std::vector<int32_t>({b, c, 256}));
}

TEST(TrainBpe, TiesGoToTheSmallestPairAndVocabSizeStops) {
  // (x,y) and (c,d) both count 4; 'c' < 'x' so (c,d) merges first. vocab_size 257 allows one merge.
  BpeTrainOptions opts;
  opts.vocab_size = 257;
  const BpeVocab v = train_bpe_from_counts({{"xy", 4}, {"cd", 4}}, opts);
  ASSERT_EQ(v.merges.size(), 1u);
  EXPECT_EQ(v.tokens[256], "cd");
}

TEST(TrainBpe, OverlappingPairsMergeLeftToRight) {
  BpeTrainOptions opts;
  opts.vocab_size = 300;
  const BpeVocab v = train_bpe_from_counts({{"aaa", 10}}, opts);
  // "aaa": (a,a) x2 -> [aa, a]; then (aa, a) -> "aaa".
  ASSERT_EQ(v.merges.size(), 2u);
  EXPECT_EQ(v.tokens[256], "aa");
  EXPECT_EQ(v.tokens[257], "aaa");
  EXPECT_EQ(bpe_encode_word(v, "aaaa"), std::vector<int32_t>({256, 256}));
  EXPECT_EQ(bpe_encode_word(v, "aaaaa"), std::vector<int32_t>({256, 257}));  // rank 0 everywhere first: aa aa a
}

TEST(TrainBpe, CountWordsUsesTheQwen2PreTokenizer) {
  const std::vector<std::string> texts = {"Hello world, hello world!\n"};
  const auto counts = count_words(texts);
  std::map<std::string, int64_t> m(counts.begin(), counts.end());
  EXPECT_EQ(counts.size(), 5u);
  EXPECT_EQ(m["Hello"], 1);
  EXPECT_EQ(m[" hello"], 1);  // a leading space joins the letters after it
  EXPECT_EQ(m[" world"], 2);
  EXPECT_EQ(m[","], 1);
  EXPECT_EQ(m["!\n"], 1);  // punctuation takes the newlines after it
}

TEST(TrainBpe, DeterministicAcrossRuns) {
  const std::vector<std::string> texts = {exporting::builtin_corpus()};
  BpeTrainOptions opts;
  opts.vocab_size = 600;
  const BpeVocab v1 = train_bpe(texts, opts), v2 = train_bpe(texts, opts);
  EXPECT_GT(v1.size(), 400);
  EXPECT_EQ(v1.tokens, v2.tokens);
  EXPECT_EQ(v1.merges, v2.merges);
  const auto spec = r1_distill_tokenizer_spec();
  EXPECT_EQ(tokenizer_json(v1, spec), tokenizer_json(v2, spec));
}

class WrittenTokenizer : public ::testing::Test {
 protected:
  void SetUp() override {
    BpeTrainOptions opts;
    opts.vocab_size = 500;
    vocab_ = train_bpe(std::vector<std::string>{exporting::builtin_corpus()}, opts);
    total_ = write_tokenizer_files(dir_.str(), vocab_, r1_distill_tokenizer_spec());
  }
  TempDir dir_;
  BpeVocab vocab_;
  int32_t total_ = 0;
};

TEST_F(WrittenTokenizer, LoadsWithSpecialTokensFromTheFiles) {
  const Tokenizer tok = Tokenizer::load(dir_.str());
  const int32_t n = vocab_.size();
  EXPECT_EQ(total_, n + 6);
  EXPECT_EQ(tok.vocab_size(), total_);
  EXPECT_EQ(tok.eos_id(), n);
  EXPECT_EQ(tok.bos_id(), n + 3);
  EXPECT_EQ(tok.pad_id(), n);
  EXPECT_TRUE(tok.add_bos_token());
  EXPECT_EQ(tok.model_max_length(), 16384);
  EXPECT_TRUE(tok.is_special(n));
  EXPECT_FALSE(tok.is_special(n + 4));
  EXPECT_EQ(tok.token_to_id("<think>"), n + 4);
  EXPECT_EQ(tok.token_to_id("</think>"), n + 5);
  EXPECT_EQ(tok.token_to_id("<｜User｜>"), n + 1);
  const auto ids = tok.encode("hello");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), n + 3);  // BOS prepended by the post-processor
}

TEST_F(WrittenTokenizer, EncodesAsTheTrainerAndDecodesLosslessly) {
  const Tokenizer tok = Tokenizer::load(dir_.str() + "/tokenizer.json");
  const std::vector<std::string> texts = {
      exporting::builtin_corpus(),
      exporting::builtin_sentence(),
      "Unseen words: pneumonoultramicroscopic, 42.5 mg/kg, tabs\tand  spaces\r\n\n  end",
      "中文：患者出现胸痛，最可能的诊断是什么？ émigré café naïve 🩺",
      "Ｆｕｌｌｗｉｄｔｈ and e\u0301 (decomposed, NFC makes it é)",
  };
  for (const auto& t : texts) {
    const auto ids = tok.encode(t, /*add_special=*/false);
    EXPECT_EQ(ids, bpe_encode_text(vocab_, t)) << t;
    std::string nfc;
    normalize_append(t, NormalForm::nfc, nfc);
    EXPECT_EQ(tok.decode(ids), nfc) << t;
  }
  // Added tokens in text are matched whole.
  const auto ids = tok.encode("<｜User｜>Hi<｜Assistant｜><think>\nok</think>", false);
  const int32_t n = vocab_.size();
  EXPECT_EQ(ids.front(), n + 1);
  EXPECT_NE(std::find(ids.begin(), ids.end(), n + 4), ids.end());
  EXPECT_EQ(ids.back(), n + 5);
}

TEST(LoadTrainingTexts, MedicalJsonlFieldsAndErrors) {
  TempDir dir;
  init_test::write_text(dir / "d.jsonl",
                        "{\"Question\": \"Q1?\", \"Complex_CoT\": \"think\", \"Response\": \"R1\", \"id\": 3}\n"
                        "\n"
                        "{\"text\": \"plain\", \"n\": 1}\n");
  const auto texts = load_training_texts(dir / "d.jsonl");
  EXPECT_EQ(texts, (std::vector<std::string>{"Q1?", "think", "R1", "plain"}));

  init_test::write_text(dir / "bad.jsonl", "{\"Question\": \"ok\"}\n{not json\n");
  try {
    load_training_texts(dir / "bad.jsonl");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
  init_test::write_text(dir / "a.json", "[{\"Question\": \"q\", \"Response\": \"r\"}]");
  EXPECT_EQ(load_training_texts(dir / "a.json"), (std::vector<std::string>{"q", "r"}));
  init_test::write_text(dir / "t.txt", "just text\n");
  EXPECT_EQ(load_training_texts(dir / "t.txt"), (std::vector<std::string>{"just text\n"}));
  EXPECT_THROW(load_training_texts(dir / "missing.jsonl"), Error);
}

}  // namespace
}  // namespace cotune::text
