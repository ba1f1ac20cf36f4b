#include "infer/text_stream.h"

#include <algorithm>

#include "text/unicode.h"

namespace cotune::infer {

size_t complete_utf8_prefix(std::string_view s) {
  const size_t n = s.size();
  // Look back over at most 3 bytes for the lead byte of the last character.
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for its lead
    size_t need = 1;
    if ((c & 0xE0) == 0xC0) need = 2;
    else if ((c & 0xF0) == 0xE0) need = 3;
    else if ((c & 0xF8) == 0xF0) need = 4;
    return back < need ? n - back : n;
  }
  return n;  // only continuation bytes (invalid): nothing to wait for
}

TextStream::TextStream(std::vector<std::string> stop_strings) {
  for (auto& s : stop_strings)
    if (!s.empty()) stops_.push_back(std::move(s));
  for (const auto& s : stops_) max_stop_ = std::max(max_stop_, s.size());
}

std::string TextStream::push(std::string_view bytes) {
  if (stopped_) return {};
  const size_t old = buf_.size();
  buf_.append(bytes);
  if (!stops_.empty()) {
    // A stop string can only be new if it ends inside the appended bytes.
    const size_t from = old >= max_stop_ ? old - max_stop_ + 1 : 0;
    size_t cut = std::string::npos;
    for (const auto& s : stops_) cut = std::min(cut, buf_.find(s, from));
    if (cut != std::string::npos) {
      buf_.resize(cut);
      stopped_ = true;
      std::string out = emitted_ < cut ? text::utf8_lossy(std::string_view(buf_).substr(emitted_)) : std::string();
      emitted_ = buf_.size();
      text_ += out;
      return out;
    }
  }
  size_t safe = buf_.size();
  // Hold back the longest tail that is a proper prefix of a stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t len = std::min(s.size() - 1, buf_.size()); len > hold; --len) {
      if (buf_.compare(buf_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  safe -= hold;
  safe = complete_utf8_prefix(std::string_view(buf_).substr(0, safe));
  if (safe <= emitted_) return {};
  std::string out = text::utf8_lossy(std::string_view(buf_).substr(emitted_, safe - emitted_));
  emitted_ = safe;
  text_ += out;
  return out;
}

std::string TextStream::finish() {
  if (emitted_ >= buf_.size()) return {};
  std::string out = text::utf8_lossy(std::string_view(buf_).substr(emitted_));  // an incomplete tail: U+FFFD
  emitted_ = buf_.size();
  text_ += out;
  return out;
}

}  // namespace cotune::infer
