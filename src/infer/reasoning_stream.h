// Splits streamed model text into reasoning (inside <think> ... </think>) and answer, for display: `cotune chat`
// dims or hides the reasoning. Tags split across stream pieces are handled (a piece ending in "</thi" is held
// back until the next one); the tags themselves are not part of any segment.
//
//   ReasoningStream rs(/*in_reasoning*/ prompt_ends_inside_think);
//   for (piece : stream) for (auto& seg : rs.push(piece)) show(seg.reasoning, seg.text);
//   for (auto& seg : rs.finish()) show(...);
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace cotune::infer {

class ReasoningStream {
 public:
  struct Segment {
    bool reasoning = false;
    std::string text;
  };
  explicit ReasoningStream(bool in_reasoning = false, std::string open_tag = "<think>",
                           std::string close_tag = "</think>")
      : in_reasoning_(in_reasoning), open_(std::move(open_tag)), close_(std::move(close_tag)) {}

  std::vector<Segment> push(std::string_view piece);
  std::vector<Segment> finish();  // what was held back
  bool in_reasoning() const { return in_reasoning_; }

  // True when a rendered prompt leaves the model inside a reasoning block (DeepSeek-R1's ends "<think>\n").
  static bool prompt_opens_reasoning(std::string_view prompt, std::string_view open_tag = "<think>",
                                     std::string_view close_tag = "</think>");

 private:
  bool in_reasoning_;
  std::string open_, close_;
  std::string held_;
};

}  // namespace cotune::infer
