// UTF-8-safe streaming and stop strings.
#include <gtest/gtest.h>

#include "infer/text_stream.h"

namespace cotune {
namespace {

TEST(TextStream, OnlyCompleteCharacters) {
  infer::TextStream s;
  const std::string euro = "\xE2\x82\xAC";  // 3 bytes
  EXPECT_EQ(s.push("a"), "a");
  EXPECT_EQ(s.push(euro.substr(0, 1)), "");
  EXPECT_EQ(s.push(euro.substr(1, 1)), "");
  EXPECT_EQ(s.push(euro.substr(2, 1) + "b\xF0\x9F"), euro + "b");
  EXPECT_EQ(s.push("\x98\x80"), "\xF0\x9F\x98\x80");
  EXPECT_EQ(s.finish(), "");
  EXPECT_EQ(s.text(), "a" + euro + "b\xF0\x9F\x98\x80");
}

TEST(TextStream, IncompleteTailBecomesReplacementAtFinish) {
  infer::TextStream s;
  EXPECT_EQ(s.push("x\xE4\xBD"), "x");
  EXPECT_EQ(s.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(s.text(), "x\xEF\xBF\xBD");
}

TEST(TextStream, StrayContinuationBytesDoNotBlock) {
  infer::TextStream s;
  EXPECT_EQ(s.push("\x80\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // repaired as the tokenizer decodes
}

TEST(TextStream, StopStringCutsAndHoldsBack) {
  infer::TextStream s({"</answer>", "STOP"});
  EXPECT_EQ(s.push("The answer "), "The answer ");
  EXPECT_EQ(s.push("is 4</an"), "is 4");  // "</an" could begin a stop string
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(s.push("swer> and more"), "");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.text(), "The answer is 4");
  EXPECT_EQ(s.push("ignored"), "");
  EXPECT_EQ(s.finish(), "");
}

TEST(TextStream, HeldBackPrefixReleasedWhenItDiverges) {
  infer::TextStream s({"STOP"});
  EXPECT_EQ(s.push("ST"), "");
  EXPECT_EQ(s.push("ART"), "START");
  EXPECT_EQ(s.push("S"), "");
  EXPECT_EQ(s.finish(), "S");
  EXPECT_EQ(s.text(), "STARTS");
}

TEST(TextStream, StopStringSpanningManyPieces) {
  infer::TextStream s({"abc"});
  std::string shown;
  for (char ch : std::string("xxabyabc-zz")) shown += s.push(std::string(1, ch));
  shown += s.finish();
  EXPECT_EQ(shown, "xxaby");
  EXPECT_TRUE(s.stopped());
}

}  // namespace
}  // namespace cotune
