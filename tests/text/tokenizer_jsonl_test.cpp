// `cotune tokenize`'s JSON-lines loop (text::tokenize_jsonl) on the checked-in synthetic tokenizer.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <tuple>
#include <utility>
#include <string>
#include <vector>

#include "base/error.h"
#include "common/test_paths.h"
#include "text/tokenizer.h"

namespace cotune::text {
namespace {

Tokenizer synth() { return Tokenizer::load(testing::golden_dir() + "/tokenizer/synth_a.json"); }

std::string ids_line(const std::vector<int32_t>& ids) {
  std::string s = "{\"ids\": [";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]}\n";
}

TEST(TokenizeJsonl, EncodesEachLineInOrder) {
  const Tokenizer tok = synth();
  std::istringstream in("{\"text\": \"hello world\"}\r\n{\"text\": \"\"}\n{\"text\": \"a\\nb [L] x\", \"other\": 1}\n");
  std::ostringstream out;
  EXPECT_EQ(tokenize_jsonl(tok, in, out, JsonlOptions{}), 3u);
  EXPECT_EQ(out.str(), ids_line(tok.encode("hello world")) + ids_line(tok.encode("")) + ids_line(tok.encode("a\nb [L] x")));

  std::istringstream in2("{\"text\": \"hello world\"}\n");
  std::ostringstream out2;
  tokenize_jsonl(tok, in2, out2, JsonlOptions{.add_special = false});
  EXPECT_EQ(out2.str(), ids_line(tok.encode("hello world", false)));
}

TEST(TokenizeJsonl, DecodesIds) {
  const Tokenizer tok = synth();
  const auto ids = tok.encode("hello \"world\"\n");
  std::string line = ids_line(ids);
  std::istringstream in(line + line);
  std::ostringstream out;
  tokenize_jsonl(tok, in, out, JsonlOptions{.decode = true});
  const std::string expect = "{\"text\":\"<s> hello \\\"world\\\"\\n</s>\"}\n";
  EXPECT_EQ(out.str(), expect + expect);
  std::istringstream in2(line);
  std::ostringstream out2;
  tokenize_jsonl(tok, in2, out2, JsonlOptions{.decode = true, .skip_special = true});
  EXPECT_EQ(out2.str(), "{\"text\":\" hello \\\"world\\\"\\n\"}\n");
}

std::pair<std::string, std::string> run_bad(const std::string& input, const JsonlOptions& opt) {
  const Tokenizer tok = synth();
  std::istringstream in(input);
  std::ostringstream out;
  try {
    tokenize_jsonl(tok, in, out, opt);
  } catch (const Error& e) {
    return {out.str(), e.what()};
  }
  return {out.str(), ""};
}

TEST(TokenizeJsonl, BadLineIsNamedAndEarlierLinesAreWritten) {
  auto [out, err] = run_bad("{\"text\": \"a\"}\n{\"text\": \"b\"}\nnot json\n{\"text\": \"c\"}\n", {});
  EXPECT_NE(err.find("line 3"), std::string::npos) << err;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2);

  std::tie(out, err) = run_bad("{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", {});
  EXPECT_NE(err.find("line 2"), std::string::npos) << err;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);

  std::tie(out, err) = run_bad("{\"ids\": [1, 2]}\n{\"ids\": [1, 100000]}\n", JsonlOptions{.decode = true});
  EXPECT_NE(err.find("line 2"), std::string::npos) << err;
  EXPECT_NE(err.find("unknown token id 100000"), std::string::npos) << err;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);

  std::tie(out, err) = run_bad("{\"ids\": [1, \"x\"]}\n", JsonlOptions{.decode = true});
  EXPECT_NE(err.find("line 1"), std::string::npos) << err;
}

}  // namespace
}  // namespace cotune::text
