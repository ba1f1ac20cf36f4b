// Error paths of Tokenizer::load: every unsupported component is named, malformed JSON names the file,
// missing files are reported; plus tokenizer_config.json forms (pad_token as string or object).
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace cotune::text {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A minimal byte-level BPE tokenizer.json: the 256 byte characters, "h e" and "he llo"-style merges.
json minimal_tokenizer() {
  json vocab = json::object();
  const auto& b2c = byte_to_char();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    append_utf8(s, b2c[b]);
    vocab[s] = b;
  }
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["llo"] = 258;
  vocab["hello"] = 259;
  return json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", json::array({json{{"id", 260}, {"content", "<eos>"}, {"special", true},
                                                 {"normalized", false}, {"lstrip", false}, {"rstrip", false},
                                                 {"single_word", false}}})},
              {"normalizer", json{{"type", "NFC"}}},
              {"pre_tokenizer", json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
              {"post_processor", nullptr},
              {"decoder", json{{"type", "ByteLevel"}}},
              {"model", json{{"type", "BPE"},
                             {"vocab", vocab},
                             {"merges", json::array({"h e", json::array({"l", "l"}), "ll o", "he llo"})}}}};
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("cotune_tok_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
                                         "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string write(const std::string& name, const std::string& content) const {
    const fs::path p = path_ / name;
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

std::string load_error(const std::string& path) {
  try {
    Tokenizer::load(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string error_with(const std::function<void(json&)>& edit) {
  TempDir dir;
  json j = minimal_tokenizer();
  edit(j);
  return load_error(dir.write("tokenizer.json", j.dump()));
}

TEST(TokenizerLoad, MinimalTokenizerWorks) {
  TempDir dir;
  const Tokenizer tok = Tokenizer::load(dir.write("tokenizer.json", minimal_tokenizer().dump()));
  EXPECT_EQ(tok.encode("hello"), (std::vector<int32_t>{259}));
  EXPECT_EQ(tok.encode("hello<eos>"), (std::vector<int32_t>{259, 260}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{259, 260}, true), "hello");
  EXPECT_EQ(tok.vocab_size(), 261);
  EXPECT_EQ(tok.bos_id(), -1);
  EXPECT_EQ(tok.content_hash().size(), 64u);
}

TEST(TokenizerLoad, UnsupportedComponentsAreNamed) {
  EXPECT_NE(error_with([](json& j) { j["model"]["type"] = "WordPiece"; }).find("unsupported model `WordPiece`"), std::string::npos);
  EXPECT_NE(error_with([](json& j) { j["normalizer"] = json{{"type", "Lowercase"}}; }).find("normalizer `Lowercase`"),
            std::string::npos);
  EXPECT_NE(error_with([](json& j) {
              j["normalizer"] = json{{"type", "Sequence"}, {"normalizers", json::array({json{{"type", "NFC"}}, json{{"type", "Strip"}}})}};
            }).find("normalizer `Strip` at `normalizer.normalizers[1]`"),
            std::string::npos);
  EXPECT_NE(error_with([](json& j) { j["pre_tokenizer"] = json{{"type", "Whitespace"}}; }).find("pre_tokenizer `Whitespace`"),
            std::string::npos);
  EXPECT_NE(error_with([](json& j) { j["pre_tokenizer"] = nullptr; }).find("without a ByteLevel"), std::string::npos);
  EXPECT_NE(error_with([](json& j) { j["decoder"] = json{{"type", "WordPiece"}}; }).find("decoder `WordPiece`"), std::string::npos);
  EXPECT_NE(error_with([](json& j) { j["post_processor"] = json{{"type", "RobertaProcessing"}}; }).find("post_processor `RobertaProcessing`"),
            std::string::npos);
  EXPECT_NE(error_with([](json& j) { j["model"]["byte_fallback"] = true; }).find("byte_fallback"), std::string::npos);
  EXPECT_NE(error_with([](json& j) { j["model"]["dropout"] = 0.1; }).find("dropout"), std::string::npos);
  EXPECT_NE(error_with([](json& j) { j["truncation"] = json{{"max_length", 5}}; }).find("truncation"), std::string::npos);
  EXPECT_NE(error_with([](json& j) {
              j["pre_tokenizer"] = json{{"type", "Split"}, {"pattern", json{{"Regex", "("}}}, {"behavior", "Isolated"}};
            }).find("cannot compile the regex"),
            std::string::npos);
  EXPECT_NE(error_with([](json& j) { j["model"]["merges"].push_back("h zz"); }).find("`model.merges[4]`"), std::string::npos);
  EXPECT_NE(error_with([](json& j) { j["model"]["merges"].push_back("a b c"); }).find("`model.merges[4]`"), std::string::npos);
  EXPECT_NE(error_with([](json& j) { j["model"].erase("vocab"); }).find("model.vocab"), std::string::npos);
}

TEST(TokenizerLoad, MalformedJsonNamesTheFile) {
  TempDir dir;
  const std::string path = dir.write("tokenizer.json", "{\"model\": {\"vocab\": ");
  const std::string err = load_error(path);
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_NE(err.find("malformed JSON"), std::string::npos) << err;

  const std::string folder_err = load_error(dir.path());  // a folder: its tokenizer.json
  EXPECT_NE(folder_err.find("malformed JSON"), std::string::npos) << folder_err;

  dir.write("tokenizer.json", minimal_tokenizer().dump());
  const std::string cfg = dir.write("tokenizer_config.json", "{\"bos_token\": ");
  const std::string cfg_err = load_error(dir.path());
  EXPECT_NE(cfg_err.find(cfg), std::string::npos) << cfg_err;
}

TEST(TokenizerLoad, MissingFileIsNamed) {
  const std::string err = load_error("/nonexistent/dir/tokenizer.json");
  EXPECT_NE(err.find("/nonexistent/dir/tokenizer.json"), std::string::npos) << err;
}

TEST(TokenizerLoad, ConfigTokensAsStringsOrObjects) {
  TempDir dir;
  dir.write("tokenizer.json", minimal_tokenizer().dump());
  dir.write("tokenizer_config.json",
            R"({"bos_token": "h", "eos_token": {"__type": "AddedToken", "content": "<eos>"}, "pad_token": "<eos>",
                "add_bos_token": true, "model_max_length": 1000000000000000019884624838656})");
  const Tokenizer tok = Tokenizer::load(dir.path());
  EXPECT_EQ(tok.bos_id(), 'h');
  EXPECT_EQ(tok.bos_token(), "h");
  EXPECT_EQ(tok.eos_id(), 260);
  EXPECT_EQ(tok.eos_token(), "<eos>");
  EXPECT_EQ(tok.pad_id(), 260);
  EXPECT_TRUE(tok.add_bos_token());
  EXPECT_GT(tok.model_max_length(), int64_t{1} << 40);

  dir.write("tokenizer_config.json", R"({"pad_token": "<nope>"})");
  const std::string err = load_error(dir.path());
  EXPECT_NE(err.find("pad_token"), std::string::npos) << err;
  EXPECT_NE(err.find("<nope>"), std::string::npos) << err;
}

}  // namespace
}  // namespace cotune::text

namespace cotune::text {
namespace {

// Issue 14 items 10/11: per-id tables are sized by the largest id, so a corrupt id is an error naming
// the field and the limit, not a multi-gigabyte allocation.
TEST(TokenizerLoad, HugeTokenIdsAreRefusedNamingTheField) {
  const std::string vocab_err = error_with([](json& j) { j["model"]["vocab"]["hello"] = 2147483647; });
  EXPECT_NE(vocab_err.find("`model.vocab`"), std::string::npos) << vocab_err;
  EXPECT_NE(vocab_err.find("2147483647"), std::string::npos) << vocab_err;
  EXPECT_NE(vocab_err.find("limit of 4194303"), std::string::npos) << vocab_err;
  const std::string added_err = error_with([](json& j) { j["added_tokens"][0]["id"] = 2000000000; });
  EXPECT_NE(added_err.find("`added_tokens[0].id`"), std::string::npos) << added_err;
  EXPECT_NE(added_err.find("limit of 4194303"), std::string::npos) << added_err;
  // At the limit it loads (sparse ids are legal, if odd).
  EXPECT_EQ(error_with([](json& j) { j["added_tokens"][0]["id"] = 4194303; }), "");
}

TEST(TokenizerLoad, SyntaxErrorsGiveLineAndColumn) {
  TempDir dir;
  const std::string msg = load_error(dir.write("tokenizer.json", "{\n  \"version\": \"1.0\",\n  \"model\": {]\n}"));
  EXPECT_NE(msg.find("tokenizer.json: malformed JSON: line 3, column 13"), std::string::npos) << msg;
}

}  // namespace
}  // namespace cotune::text
