// The hand-written Qwen2 pre-tokenizer matcher equals the PCRE2 regex (JIT, UTF + UCP) on every code point
// in several contexts and on seeded random strings; plus the UTF-8 helpers (validation, lossy repair, NFC).
#include "text/pretok.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/test_paths.h"
#include "text/unicode.h"

namespace cotune::text {
namespace {

std::vector<std::string> split_with(const PreTokenizerStep& step, std::string_view text) {
  std::vector<std::string> out;
  step.split(text, [&](std::string_view p) { out.emplace_back(p); });
  return out;
}

// Parity with HF (Oniguruma) on every code point: tools/make_tokenizer_golden.py put each code point into a
// context string, pre-tokenized it with HF and stored the piece lengths (in code points) as run-length
// ranges. PCRE2 10.42 itself differs from HF on ~13k code points (U+180E is \s for PCRE2 but not for
// Oniguruma; Unicode 15 letters are unknown to PCRE2's Unicode 14 tables), which is why the hand-written
// matcher (utf8proc's Unicode 15 categories, White_Space) is the one in use.
TEST(Qwen2PreTokenizer, HandWrittenMatchesHuggingFaceOnEveryCodePoint) {
  std::ifstream in(testing::golden_dir() + "/tokenizer/pretok_signatures.txt");
  ASSERT_TRUE(in.good()) << "missing tests/golden/tokenizer/pretok_signatures.txt";
  std::string header;
  std::getline(in, header);
  const std::string context = "a#b #1'#x ##\n# \t#.\n'#  #\r\n#!#\u3000#\u0301 #";
  const auto fast = make_split(kQwen2Pattern, false, SplitBehavior::isolated, false, "test");
  size_t checked = 0, differing = 0;
  std::string line, text;
  char32_t expect_next = 0;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    uint32_t first = 0, last = 0;
    std::string sig;
    ls >> std::hex >> first >> last >> sig;
    ASSERT_EQ(first, expect_next == 0xD800 ? 0xE000u : expect_next) << "ranges must cover every code point";
    expect_next = last + 1;
    for (char32_t c = first; c <= last; ++c) {
      std::string cp;
      append_utf8(cp, c);
      text.clear();
      for (char ch : context) {
        if (ch == '#') text += cp;
        else text.push_back(ch);
      }
      std::string mine;
      for (const std::string& piece : split_with(*fast, text)) {
        size_t chars = 0;
        for (size_t i = 0; i < piece.size(); i += utf8_length(static_cast<unsigned char>(piece[i]))) ++chars;
        if (!mine.empty()) mine += ',';
        mine += std::to_string(chars);
      }
      ++checked;
      if (mine != sig && ++differing < 10)
        ADD_FAILURE() << "U+" << std::hex << static_cast<uint32_t>(c) << ": HF " << sig << ", cotune " << mine;
    }
  }
  EXPECT_EQ(expect_next, 0x110000u);
  EXPECT_EQ(checked, 0x110000u - 0x800u);
  EXPECT_EQ(differing, 0u);
}

// The backtracking logic equals the regex's (pool without U+180E, where PCRE2's \s differs from HF's).
TEST(Qwen2PreTokenizer, HandWrittenEqualsRegexOnRandomStrings) {
  const auto regex = make_split(kQwen2Pattern, false, SplitBehavior::isolated, false, "test", true);
  const auto fast = make_split(kQwen2Pattern, false, SplitBehavior::isolated, false, "test");
  const std::vector<std::string> pool = {"a", "Z", "é", "ſ", "你", "ひ", "1", "٣", "½", " ", " ", "\t", "\n", "\r",
                                         "\u00a0", "\u3000", "\u2028", "\u0085", "\u200b", "\x0b", "\x1c",
                                         "'", "s", "S", "t", "re", "VE", "m", "ll", "D", "!", ".", "-", "，", "。",
                                         "\u0301", "\u093f", "😀", "\u200d", "\ufe0f"};
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 200000; ++iter) {
    std::string text;
    const int n = 1 + static_cast<int>(rng() % 16);
    for (int k = 0; k < n; ++k) text += pool[rng() % pool.size()];
    ASSERT_EQ(split_with(*regex, text), split_with(*fast, text)) << ::testing::PrintToString(text);
  }
}

TEST(Qwen2PreTokenizer, KnownSplits) {
  const auto fast = make_split(kQwen2Pattern, false, SplitBehavior::isolated, false, "test");
  EXPECT_EQ(split_with(*fast, "Hello world's 123  \n\n x"),
            (std::vector<std::string>{"Hello", " world", "'s", " ", "1", "2", "3", "  \n\n", " x"}));
  EXPECT_EQ(split_with(*fast, "你好，世界"), (std::vector<std::string>{"你好", "，世界"}));
  EXPECT_EQ(split_with(*fast, "a  b   "), (std::vector<std::string>{"a", " ", " b", "   "}));
}

TEST(SplitBehaviors, MatchHuggingFaceDefinitions) {
  auto split = [](SplitBehavior b, bool invert) {
    const auto step = make_split("-", true, b, invert, "test");
    return split_with(*step, "a-b--c-");
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(split(SplitBehavior::isolated, false), (V{"a", "-", "b", "-", "-", "c", "-"}));
  EXPECT_EQ(split(SplitBehavior::removed, false), (V{"a", "b", "c"}));
  EXPECT_EQ(split(SplitBehavior::merged_with_previous, false), (V{"a-", "b-", "-", "c-"}));
  EXPECT_EQ(split(SplitBehavior::merged_with_next, false), (V{"a", "-b", "-", "-c", "-"}));
  EXPECT_EQ(split(SplitBehavior::contiguous, false), (V{"a", "-", "b", "--", "c", "-"}));
  EXPECT_EQ(split(SplitBehavior::removed, true), (V{"-", "-", "-", "-"}));
}

TEST(Utf8, ValidationNamesTheFirstBadOffset) {
  EXPECT_FALSE(find_invalid_utf8("plain ascii and 你好 and 😀"));
  EXPECT_EQ(find_invalid_utf8("abc\x80"), 3u);
  EXPECT_EQ(find_invalid_utf8("0123456789\xE4\xBD"), 10u);
  EXPECT_EQ(find_invalid_utf8("\xED\xA0\x80"), 0u);      // surrogate
  EXPECT_EQ(find_invalid_utf8("x\xF4\x90\x80\x80"), 1u);  // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("xx\xC1\xBF"), 2u);         // overlong
}

TEST(Utf8, LossyRepairReplacesMaximalSubparts) {
  // Rust's String::from_utf8_lossy / Python errors="replace": one U+FFFD per maximal invalid subpart.
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8_lossy("a\xE4\xBD" "b"), "a" + r + "b");
  EXPECT_EQ(utf8_lossy("\xE4\xBD\xE4\xBD\xA0"), r + "你");
  EXPECT_EQ(utf8_lossy("\x80\x80"), r + r);
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98"), r);
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), r + r + r);  // surrogate: lead byte alone, then two stray bytes
  EXPECT_EQ(utf8_lossy("\xF5\x80"), r + r);
}

TEST(Nfc, QuickCheckAgreesWithUtf8proc) {
  std::string out;
  for (char32_t c = 0x80; c < 0x110000; c += (c < 0x20000 ? 1 : 97)) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    std::string s = "a";
    append_utf8(s, c);
    if (!nfc_quick_check(s)) continue;
    out.clear();
    normalize_append(s, NormalForm::nfd, out);  // force the slow path through a round trip
    std::string back;
    normalize_append(out, NormalForm::nfc, back);
    ASSERT_EQ(back, s) << "U+" << std::hex << static_cast<uint32_t>(c) << " passed the quick check but is not NFC";
  }
  std::string n;
  normalize_append("Cafe\u0301", NormalForm::nfc, n);
  EXPECT_EQ(n, "Caf\u00e9");
}

}  // namespace
}  // namespace cotune::text
