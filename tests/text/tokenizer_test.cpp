// Parity of cotune's tokenizer with Hugging Face `tokenizers` (goldens from tools/make_tokenizer_golden.py):
// the real DeepSeek-R1-Distill-Qwen-1.5B tokenizer (shared fixtures) and two small synthetic tokenizers
// (checked in) that cover added-token flags, other normalizers / pre-tokenizer settings and merge forms.
#include "text/tokenizer.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "common/test_paths.h"

namespace cotune::text {
namespace {

struct EncodeCase {
  std::string text, nfc, decoded, decoded_skip;
  std::vector<int32_t> ids, ids_no_special;
};

std::vector<int32_t> ids_of(simdjson::dom::element e) {
  std::vector<int32_t> out;
  simdjson::dom::array arr;
  if (e.get(arr) != simdjson::SUCCESS) ADD_FAILURE() << "expected an array of ids";
  for (auto v : arr) out.push_back(static_cast<int32_t>(v.get_int64().value()));
  return out;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

std::vector<EncodeCase> read_encode_cases(const std::string& path) {
  std::vector<EncodeCase> cases;
  simdjson::dom::parser parser;
  for (const std::string& line : read_lines(path)) {
    simdjson::dom::element row = parser.parse(line).value();
    EncodeCase c;
    c.text = std::string(row["text"].get_string().value());
    std::string_view s;
    c.nfc = row["nfc"].get(s) == simdjson::SUCCESS ? std::string(s) : c.text;
    c.decoded = row["decoded"].get(s) == simdjson::SUCCESS ? std::string(s) : c.nfc;
    c.decoded_skip = row["decoded_skip"].get(s) == simdjson::SUCCESS ? std::string(s) : c.decoded;
    c.ids = ids_of(row["ids"].value());
    c.ids_no_special = ids_of(row["ids_no_special"].value());
    cases.push_back(std::move(c));
  }
  return cases;
}

std::string golden(const std::string& name) { return testing::golden_dir() + "/tokenizer/" + name; }

void expect_encode_parity(const Tokenizer& tok, const std::vector<EncodeCase>& cases, bool roundtrip_is_nfc) {
  size_t failures = 0;
  for (size_t i = 0; i < cases.size() && failures < 10; ++i) {
    const EncodeCase& c = cases[i];
    const auto ids = tok.encode(c.text);
    const auto ids_ns = tok.encode(c.text, false);
    bool ok = true;
    ok &= ids == c.ids;
    ok &= ids_ns == c.ids_no_special;
    ok &= tok.decode(ids_ns) == c.decoded;
    ok &= tok.decode(ids, true) == c.decoded_skip;
    if (roundtrip_is_nfc) ok &= tok.decode(ids_ns) == c.nfc;  // decode(encode(x)) == NFC(x)
    EXPECT_TRUE(ok) << "case " << i << ": text " << ::testing::PrintToString(c.text.substr(0, 200));
    failures += !ok;
  }
  // Batch = one by one, in order.
  std::vector<std::string> texts;
  for (const EncodeCase& c : cases) texts.push_back(c.text);
  const auto batch = tok.encode_batch(texts, true);
  ASSERT_EQ(batch.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(batch[i], cases[i].ids) << "batch case " << i;
}

class DeepSeekTokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto fixtures = testing::fixtures_dir();
    if (!fixtures) return;
    tok_ = new Tokenizer(Tokenizer::load(*fixtures + "/deepseek-r1-distill-qwen-1.5b"));
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (tok_ == nullptr) GTEST_FAIL() << "fixtures not found: set COTUNE_FIXTURES or restore tests/fixtures";
  }
  static Tokenizer* tok_;
};
Tokenizer* DeepSeekTokenizer::tok_ = nullptr;

TEST_F(DeepSeekTokenizer, EncodeDecodeMatchHuggingFace) {
  const auto cases = read_encode_cases(golden("encode.jsonl"));
  ASSERT_GT(cases.size(), 500u);
  expect_encode_parity(*tok_, cases, /*roundtrip_is_nfc=*/true);
}

TEST_F(DeepSeekTokenizer, DecodeArbitraryIdsMatchesHuggingFace) {
  simdjson::dom::parser parser;
  const auto lines = read_lines(golden("decode.jsonl"));
  ASSERT_GT(lines.size(), 100u);
  size_t lossy = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    simdjson::dom::element row = parser.parse(lines[i]).value();
    const auto ids = ids_of(row["ids"].value());
    const std::string text(row["text"].get_string().value());
    EXPECT_EQ(tok_->decode(ids), text) << "decode case " << i;
    EXPECT_EQ(tok_->decode(ids, true), std::string(row["text_skip"].get_string().value())) << "decode case " << i;
    lossy += text.find("\xEF\xBF\xBD") != std::string::npos;
  }
  EXPECT_GT(lossy, 10u) << "the goldens should exercise U+FFFD replacement";
}

TEST_F(DeepSeekTokenizer, SpecialTokensAndConfig) {
  EXPECT_EQ(tok_->bos_id(), 151646);
  EXPECT_EQ(tok_->eos_id(), 151643);
  EXPECT_EQ(tok_->pad_id(), 151643);
  EXPECT_EQ(tok_->eos_token(), "<｜end▁of▁sentence｜>");
  EXPECT_EQ(tok_->bos_token(), "<｜begin▁of▁sentence｜>");
  EXPECT_TRUE(tok_->add_bos_token());
  EXPECT_EQ(tok_->model_max_length(), 16384);
  EXPECT_EQ(tok_->vocab_size(), 151665);
  EXPECT_TRUE(tok_->is_special(151643));
  EXPECT_TRUE(tok_->is_special(151646));
  EXPECT_FALSE(tok_->is_special(151648));  // <think> is an added token, not a special one
  EXPECT_FALSE(tok_->is_special(9707));
  EXPECT_EQ(tok_->token_to_id("<think>"), 151648);
  EXPECT_EQ(tok_->token_to_id("Hello"), 9707);
  EXPECT_EQ(tok_->token_to_id("Ġworld"), 1879);
  EXPECT_FALSE(tok_->token_to_id("no such token"));
  EXPECT_EQ(tok_->id_to_token(1879), "Ġworld");
  EXPECT_EQ(tok_->token_bytes(1879), " world");
  EXPECT_EQ(tok_->encode("你好"), (std::vector<int32_t>{151646, 108386}));
  EXPECT_EQ(tok_->encode("Hello world"), (std::vector<int32_t>{151646, 9707, 1879}));
  EXPECT_EQ(tok_->content_hash(), "2ce721cff1ceed77282275d13bd6d59e0dbfd5565238f87d4c2c89b3f1171708");
}

TEST_F(DeepSeekTokenizer, InvalidUtf8NamesTheByteOffset) {
  const std::string bad = std::string("abc\xE4\xBD") + "x";  // truncated 3-byte sequence at offset 3
  try {
    tok_->encode(bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("byte offset 3"), std::string::npos) << e.what();
  }
  const std::vector<std::string> texts = {"fine", "\xFF"};
  try {
    tok_->encode_batch(texts);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("text 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("byte offset 0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(tok_->encode("\xED\xA0\x80"), Error);  // a UTF-8-encoded surrogate
  EXPECT_THROW(tok_->encode("\xC0\xAF"), Error);      // overlong
}

TEST_F(DeepSeekTokenizer, UnknownIdIsAnError) {
  const std::vector<int32_t> ids = {9707, 151665};
  EXPECT_THROW(tok_->decode(ids), Error);
  EXPECT_THROW(tok_->id_to_token(-1), Error);
}

TEST_F(DeepSeekTokenizer, LongChineseClauseIsExact) {
  // One pre-token of 3 KB: the heap path; compare with the goldens' long cases via the same text split.
  std::string clause;
  for (int i = 0; i < 1000; ++i) clause += "哈";
  const auto ids = tok_->encode(clause, false);
  EXPECT_EQ(tok_->decode(ids), clause);
  EXPECT_LT(ids.size(), 1000u);
}

TEST(SyntheticTokenizer, AddedTokenFlagsNormalizersAndMergeForms) {
  for (const char* name : {"synth_a", "synth_b"}) {
    SCOPED_TRACE(name);
    const Tokenizer tok = Tokenizer::load(golden(std::string(name) + ".json"));
    const auto cases = read_encode_cases(golden(std::string(name) + ".encode.jsonl"));
    ASSERT_GT(cases.size(), 100u);
    expect_encode_parity(tok, cases, /*roundtrip_is_nfc=*/false);
    // No tokenizer_config.json beside them: BOS comes from the post-processor's template (A only).
    EXPECT_EQ(tok.bos_id(), std::string(name) == "synth_a" ? 0 : -1);
    EXPECT_EQ(tok.pad_id(), -1);
  }
}

}  // namespace
}  // namespace cotune::text
