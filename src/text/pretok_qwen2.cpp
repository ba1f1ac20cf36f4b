// Hand-written matcher for the Qwen2 pre-tokenizer regex
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// with the backtracking semantics of a leftmost-first engine (Oniguruma in HF tokenizers, PCRE2 here).
// One character-class table lookup per code point instead of a regex VM; tests/text/pretok_test.cpp proves it
// equal to the PCRE2 regex on every code point and on random strings, and the goldens prove it equal to HF.
#include <utf8proc.h>

#include <cstdint>
#include <vector>

#include "text/pretok.h"
#include "text/unicode.h"

namespace cotune::text {
namespace {

enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3, kNewline = 4 };

bool is_white_space(char32_t c) {  // Unicode White_Space (what \s means in Unicode-aware engines)
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Letters and numbers added in Unicode 16, which HF's Oniguruma knows and utf8proc 2.8 (Unicode 15) does
// not (found by tests/text/pretok_test.cpp over every code point).
struct ClassRange {
  char32_t first, last;
  CharClass cls;
};
constexpr ClassRange kUnicode16Additions[] = {
{0x1C89, 0x1C8A, kLetter},
{0xA7CB, 0xA7CD, kLetter},
{0xA7DA, 0xA7DC, kLetter},
{0x105C0, 0x105F3, kLetter},
{0x10D40, 0x10D49, kNumber},
{0x10D4A, 0x10D65, kLetter},
{0x10D6F, 0x10D85, kLetter},
{0x10EC2, 0x10EC4, kLetter},
{0x11380, 0x11389, kLetter},
{0x1138B, 0x1138B, kLetter},
{0x1138E, 0x1138E, kLetter},
{0x11390, 0x113B5, kLetter},
{0x113B7, 0x113B7, kLetter},
{0x113D1, 0x113D1, kLetter},
{0x113D3, 0x113D3, kLetter},
{0x116D0, 0x116E3, kNumber},
{0x11BC0, 0x11BE0, kLetter},
{0x11BF0, 0x11BF9, kNumber},
{0x13460, 0x143FA, kLetter},
{0x16100, 0x1611D, kLetter},
{0x16130, 0x16139, kNumber},
{0x16D40, 0x16D6C, kLetter},
{0x16D70, 0x16D79, kNumber},
{0x18CFF, 0x18CFF, kLetter},
{0x1CCF0, 0x1CCF9, kNumber},
{0x1E5D0, 0x1E5ED, kLetter},
{0x1E5F0, 0x1E5F0, kLetter},
{0x1E5F1, 0x1E5FA, kNumber},
{0x2EBF0, 0x2EE5D, kLetter},
};

std::vector<uint8_t> build_classes() {
  std::vector<uint8_t> t(0x110000, kOther);
  for (char32_t c = 0; c < 0x110000; ++c) {
    if (c == '\r' || c == '\n') {
      t[c] = kNewline;
      continue;
    }
    if (is_white_space(c)) {
      t[c] = kSpace;
      continue;
    }
    switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
      case UTF8PROC_CATEGORY_LU:
      case UTF8PROC_CATEGORY_LL:
      case UTF8PROC_CATEGORY_LT:
      case UTF8PROC_CATEGORY_LM:
      case UTF8PROC_CATEGORY_LO: t[c] = kLetter; break;
      case UTF8PROC_CATEGORY_ND:
      case UTF8PROC_CATEGORY_NL:
      case UTF8PROC_CATEGORY_NO: t[c] = kNumber; break;
      default: break;
    }
  }
  for (const ClassRange& r : kUnicode16Additions)
    for (char32_t c = r.first; c <= r.last; ++c) t[c] = r.cls;
  return t;
}

const uint8_t* classes() {
  static const std::vector<uint8_t> table = build_classes();
  return table.data();
}

// Class of the code point at text[i]; sets `len` to its byte length.
inline uint8_t class_at(const uint8_t* cls, std::string_view text, size_t i, size_t& len) {
  const auto b = static_cast<unsigned char>(text[i]);
  if (b < 0x80) {
    len = 1;
    return cls[b];
  }
  size_t j = i;
  const char32_t c = next_code_point(text, j);
  len = j - i;
  return cls[c];
}

inline bool ascii_fold_eq(char c, char lower) { return c == lower || c == lower - 32; }

// Length of a contraction after the apostrophe at text[pos], or 0. (?i) also folds U+017F LATIN SMALL
// LETTER LONG S to 's'.
size_t contraction_length(std::string_view text, size_t pos) {
  const size_t n = text.size();
  const size_t a = pos + 1;
  if (a >= n) return 0;
  const char c1 = text[a];
  const char c2 = a + 1 < n ? text[a + 1] : '\0';
  if (ascii_fold_eq(c1, 's')) return 2;
  if (static_cast<unsigned char>(c1) == 0xC5 && a + 1 < n && static_cast<unsigned char>(c2) == 0xBF) return 3;  // 'ſ
  if (ascii_fold_eq(c1, 't')) return 2;
  if (ascii_fold_eq(c1, 'r') && ascii_fold_eq(c2, 'e')) return 3;
  if (ascii_fold_eq(c1, 'v') && ascii_fold_eq(c2, 'e')) return 3;
  if (ascii_fold_eq(c1, 'm')) return 2;
  if (ascii_fold_eq(c1, 'l') && ascii_fold_eq(c2, 'l')) return 3;
  if (ascii_fold_eq(c1, 'd')) return 2;
  return 0;
}

}  // namespace

size_t qwen2_match_end(std::string_view text, size_t pos) {
  const uint8_t* cls = classes();
  const size_t n = text.size();
  size_t len0 = 0;
  const uint8_t c0 = class_at(cls, text, pos, len0);

  // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (text[pos] == '\'') {
    if (size_t k = contraction_length(text, pos)) return pos + k;
  }
  // 2. [^\r\n\p{L}\p{N}]?\p{L}+
  size_t letters_from = n;  // where the \p{L}+ run starts, if alternative 2 applies
  if (c0 == kLetter) {
    letters_from = pos;
  } else if ((c0 == kOther || c0 == kSpace) && pos + len0 < n) {
    size_t len1 = 0;
    if (class_at(cls, text, pos + len0, len1) == kLetter) letters_from = pos + len0;
  }
  if (letters_from < n) {
    size_t i = letters_from, len = 0;
    while (i < n && class_at(cls, text, i, len) == kLetter) i += len;
    return i;
  }
  // 3. \p{N}
  if (c0 == kNumber) return pos + len0;
  // 4. ` ?[^\s\p{L}\p{N}]+[\r\n]*`
  size_t others_from = n;
  if (c0 == kOther) {
    others_from = pos;
  } else if (text[pos] == ' ' && pos + 1 < n) {
    size_t len1 = 0;
    if (class_at(cls, text, pos + 1, len1) == kOther) others_from = pos + 1;
  }
  if (others_from < n) {
    size_t i = others_from, len = 0;
    while (i < n && class_at(cls, text, i, len) == kOther) i += len;
    while (i < n && (text[i] == '\r' || text[i] == '\n')) ++i;
    return i;
  }
  // c0 is white space from here on. W = the maximal white-space run at pos.
  size_t i = pos, len = 0, last_newline_end = 0, last_char_start = pos;
  while (i < n) {
    const uint8_t c = class_at(cls, text, i, len);
    if (c != kSpace && c != kNewline) break;
    if (c == kNewline) last_newline_end = i + len;
    last_char_start = i;
    i += len;
  }
  const size_t w_end = i;
  // 5. \s*[\r\n]+ : up to and including the last newline of W.
  if (last_newline_end != 0) return last_newline_end;
  // 6. \s+(?!\S) : all of W at the end of the text, else W minus its last character (if that leaves any).
  if (w_end == n) return n;
  if (last_char_start > pos) return last_char_start;
  // 7. \s+
  return w_end;
}

}  // namespace cotune::text
