// ReasoningStream: reasoning / answer split of streamed text, tags split across pieces.
#include "infer/reasoning_stream.h"

#include <gtest/gtest.h>

namespace cotune::infer {
namespace {

std::string show(ReasoningStream& rs, const std::vector<std::string>& pieces) {
  std::string out;
  auto add = [&](const std::vector<ReasoningStream::Segment>& segs) {
    for (const auto& s : segs) out += (s.reasoning ? "R(" : "A(") + s.text + ")";
  };
  for (const auto& p : pieces) add(rs.push(p));
  add(rs.finish());
  return out;
}

TEST(ReasoningStream, SplitsAcrossPieces) {
  ReasoningStream a(true);
  EXPECT_EQ(show(a, {"Let me ", "think.\n</th", "ink>\n\nThe ", "answer"}), "R(Let me )R(think.\n)A(\n\nThe )A(answer)");
  ReasoningStream b(false);
  EXPECT_EQ(show(b, {"<think>x</think>y", "<", "b"}), "R(x)A(y)A(<b)");
  ReasoningStream c(false);
  EXPECT_EQ(show(c, {"no tags < here"}), "A(no tags < here)");
  ReasoningStream d(true);
  EXPECT_EQ(show(d, {"unfinished </thi"}), "R(unfinished )R(</thi)");
}

TEST(ReasoningStream, PromptOpensReasoning) {
  EXPECT_TRUE(ReasoningStream::prompt_opens_reasoning("<｜User｜>q<｜Assistant｜><think>\n"));
  EXPECT_FALSE(ReasoningStream::prompt_opens_reasoning("<|im_start|>assistant\n"));
  EXPECT_FALSE(ReasoningStream::prompt_opens_reasoning("<think>\n\n</think>\n\n"));
  EXPECT_FALSE(ReasoningStream::prompt_opens_reasoning("<think>x"));
}

}  // namespace
}  // namespace cotune::infer
