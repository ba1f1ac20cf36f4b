// Streaming generated text safely: token bytes arrive one token at a time, and a token may end in the middle of
// a UTF-8 character (byte-level BPE) or in the middle of a stop string. TextStream releases only complete
// characters, holds back a tail that could still become a stop string, and cuts the text where a stop string
// appears (the stop string itself is not part of the text). Bytes that are not UTF-8 become U+FFFD exactly as
// the tokenizer's decode repairs them (maximal subparts, text/unicode.h utf8_lossy), so the pieces always add
// up to Tokenizer::decode of the same tokens.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace cotune::infer {

class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop_strings = {});

  // Appends the bytes of one token; returns the text that became safe to show (possibly empty). After a stop
  // string appeared, stopped() is true and further pushes return nothing.
  std::string push(std::string_view bytes);
  // End of generation: returns what was held back (an incomplete UTF-8 tail becomes U+FFFD).
  std::string finish();

  bool stopped() const { return stopped_; }
  // The text released so far (after finish(): all of it, cut before the first stop string). Valid UTF-8.
  const std::string& text() const { return text_; }

 private:
  std::vector<std::string> stops_;
  size_t max_stop_ = 0;
  std::string buf_;   // raw bytes
  std::string text_;  // released text
  size_t emitted_ = 0;
  bool stopped_ = false;
};

// Length of the longest prefix of s[0, end) that does not end inside a UTF-8 character: a lead byte near the
// end whose character is not complete yet is excluded. Bytes that are not valid UTF-8 do not hold text back.
size_t complete_utf8_prefix(std::string_view s);

}  // namespace cotune::infer
