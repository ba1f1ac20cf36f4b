#include "text/pretok.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "base/error.h"
#include "text/unicode.h"

namespace cotune::text {

const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

void PreTokenizer::run_from(size_t i, std::string_view text, PieceSink sink) const {
  if (i == steps_.size()) {
    sink(text);
    return;
  }
  steps_[i]->split(text, [&](std::string_view piece) { run_from(i + 1, piece, sink); });
}

namespace {

// Applies a split behaviour to the (offsets, is_match) list of HF's Pattern::find_matches.
struct Segment {
  size_t start, end;
  bool is_match;
};

void emit_segments(std::string_view text, std::vector<Segment>& segs, SplitBehavior behavior, PieceSink sink) {
  std::vector<std::pair<size_t, size_t>> out;
  out.reserve(segs.size());
  switch (behavior) {
    case SplitBehavior::isolated:
      for (auto& s : segs) out.emplace_back(s.start, s.end);
      break;
    case SplitBehavior::removed:
      for (auto& s : segs)
        if (!s.is_match) out.emplace_back(s.start, s.end);
      break;
    case SplitBehavior::contiguous: {
      bool previous_match = false;
      for (auto& s : segs) {
        if (s.is_match == previous_match && !out.empty())
          out.back().second = s.end;
        else
          out.emplace_back(s.start, s.end);
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::merged_with_previous: {
      bool previous_match = false;
      for (auto& s : segs) {
        if (s.is_match && !previous_match && !out.empty())
          out.back().second = s.end;
        else
          out.emplace_back(s.start, s.end);
        previous_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::merged_with_next: {
      bool previous_match = false;
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty())
          out.back().first = it->start;
        else
          out.emplace_back(it->start, it->end);
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  for (auto& [a, b] : out)
    if (b > a) sink(text.substr(a, b - a));
}

class RegexSplit final : public PreTokenizerStep {
 public:
  RegexSplit(const std::string& pattern, bool literal, SplitBehavior behavior, bool invert, const std::string& what)
      : behavior_(behavior), invert_(invert) {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    const uint32_t options = literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP);
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &err, &err_off,
                          nullptr);
    if (code_ == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("{}: cannot compile the regex {:?} at offset {}: {}", what, pattern, err_off, reinterpret_cast<char*>(msg));
    }
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~RegexSplit() override { pcre2_code_free(code_); }
  RegexSplit(const RegexSplit&) = delete;
  RegexSplit& operator=(const RegexSplit&) = delete;

  void split(std::string_view text, PieceSink sink) const override {
    if (text.empty()) return;
    pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
    if (md == nullptr) fail("out of memory (PCRE2 match data)");
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    const size_t n = text.size();
    const bool stream = behavior_ == SplitBehavior::isolated && !invert_;
    std::vector<Segment> segs;
    size_t prev = 0, pos = 0;
    try {
      while (pos <= n) {
        int rc = jit_ ? pcre2_jit_match(code_, subject, n, pos, PCRE2_NO_UTF_CHECK, md, nullptr)
                      : pcre2_match(code_, subject, n, pos, PCRE2_NO_UTF_CHECK, md, nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) fail("regex match failed (PCRE2 error {})", rc);
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t s = ov[0], e = ov[1];
        if (e == s) {  // empty match: yields an empty piece (dropped); step one character on
          if (s >= n) break;
          pos = s + utf8_length(static_cast<unsigned char>(text[s]));
          continue;
        }
        if (stream) {
          if (s > prev) sink(text.substr(prev, s - prev));
          sink(text.substr(s, e - s));
        } else {
          if (s > prev) segs.push_back({prev, s, invert_});
          segs.push_back({s, e, !invert_});
        }
        prev = pos = e;
      }
    } catch (...) {
      pcre2_match_data_free(md);
      throw;
    }
    pcre2_match_data_free(md);
    if (stream) {
      if (prev < n) sink(text.substr(prev));
      return;
    }
    if (prev < n) segs.push_back({prev, n, invert_});
    emit_segments(text, segs, behavior_, sink);
  }

 private:
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
  SplitBehavior behavior_;
  bool invert_;
};

// The hand-written Qwen2 matcher as a split step (Isolated, not inverted: every match and every gap is a
// piece; the pattern matches every character, so there are no gaps).
class Qwen2Split final : public PreTokenizerStep {
 public:
  void split(std::string_view text, PieceSink sink) const override {
    size_t pos = 0;
    while (pos < text.size()) {
      const size_t end = qwen2_match_end(text, pos);
      sink(text.substr(pos, end - pos));
      pos = end;
    }
  }
};

class ByteLevelSplit final : public PreTokenizerStep {
 public:
  ByteLevelSplit(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<RegexSplit>(kGpt2Pattern, false, SplitBehavior::isolated, false, "ByteLevel");
  }
  void split(std::string_view text, PieceSink sink) const override {
    std::string prefixed;
    if (add_prefix_space_ && (text.empty() || text.front() != ' ')) {
      prefixed.reserve(text.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(text);
      text = prefixed;
    }
    if (regex_)
      regex_->split(text, sink);
    else if (!text.empty())
      sink(text);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<RegexSplit> regex_;
};

}  // namespace

std::unique_ptr<PreTokenizerStep> make_split(const std::string& pattern, bool literal, SplitBehavior behavior,
                                             bool invert, const std::string& what, bool force_regex) {
  if (!literal && !force_regex && pattern == kQwen2Pattern && behavior == SplitBehavior::isolated && !invert)
    return std::make_unique<Qwen2Split>();
  return std::make_unique<RegexSplit>(pattern, literal, behavior, invert, what);
}

std::unique_ptr<PreTokenizerStep> make_byte_level_split(bool add_prefix_space, bool use_regex) {
  return std::make_unique<ByteLevelSplit>(add_prefix_space, use_regex);
}

}  // namespace cotune::text
