#include "infer/reasoning_stream.h"

#include <algorithm>

namespace cotune::infer {
namespace {
void emit(std::vector<ReasoningStream::Segment>& out, bool reasoning, std::string_view text) {
  if (text.empty()) return;
  if (!out.empty() && out.back().reasoning == reasoning) out.back().text += text;
  else out.push_back({reasoning, std::string(text)});
}
}  // namespace

std::vector<ReasoningStream::Segment> ReasoningStream::push(std::string_view piece) {
  std::vector<Segment> out;
  held_ += piece;
  size_t pos = 0;
  while (pos < held_.size()) {
    const std::string& tag = in_reasoning_ ? close_ : open_;
    const size_t at = held_.find(tag, pos);
    if (at != std::string::npos) {
      emit(out, in_reasoning_, std::string_view(held_).substr(pos, at - pos));
      in_reasoning_ = !in_reasoning_;
      pos = at + tag.size();
      continue;
    }
    // Hold back a tail that could be the start of the tag.
    size_t keep = 0;
    for (size_t k = std::min(tag.size() - 1, held_.size() - pos); k > 0; --k)
      if (held_.compare(held_.size() - k, k, tag, 0, k) == 0) {
        keep = k;
        break;
      }
    emit(out, in_reasoning_, std::string_view(held_).substr(pos, held_.size() - keep - pos));
    pos = held_.size() - keep;
    break;
  }
  held_.erase(0, pos);
  return out;
}

std::vector<ReasoningStream::Segment> ReasoningStream::finish() {
  std::vector<Segment> out;
  emit(out, in_reasoning_, held_);
  held_.clear();
  return out;
}

bool ReasoningStream::prompt_opens_reasoning(std::string_view prompt, std::string_view open_tag,
                                             std::string_view close_tag) {
  const size_t open = prompt.rfind(open_tag);
  if (open == std::string_view::npos) return false;
  const size_t close = prompt.rfind(close_tag);
  if (close != std::string_view::npos && close > open) return false;
  // Only whitespace may follow the open tag: the model continues inside it.
  return std::all_of(prompt.begin() + static_cast<long>(open + open_tag.size()), prompt.end(),
                     [](char c) { return c == '\n' || c == ' ' || c == '\r' || c == '\t'; });
}

}  // namespace cotune::infer
