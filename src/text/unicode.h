// UTF-8 and Unicode helpers of the tokenizer: validation (naming the byte offset), the GPT-2 byte <-> char
// map of byte-level BPE, lossy UTF-8 repair (as Rust's String::from_utf8_lossy), and NF* normalization via
// utf8proc with a fast path for text that is already normalized.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cotune::text {

// Byte offset of the first invalid UTF-8 sequence in `s`, or nullopt when `s` is valid UTF-8
// (overlong forms, surrogates and code points above U+10FFFF are invalid, as in Rust's str).
std::optional<size_t> find_invalid_utf8(std::string_view s);

// Decodes the code point at s[i] (valid UTF-8 assumed) and advances i past it. A sequence cut by the end of `s`
// gives U+FFFD and one byte, never a read past the end.
inline char32_t next_code_point(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  if (i + (b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4) > s.size()) {
    ++i;
    return 0xFFFD;
  }
  if (b0 < 0xE0) {
    char32_t c = ((b0 & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
    i += 2;
    return c;
  }
  if (b0 < 0xF0) {
    char32_t c = ((b0 & 0x0Fu) << 12) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 6) |
                 (static_cast<unsigned char>(s[i + 2]) & 0x3Fu);
    i += 3;
    return c;
  }
  char32_t c = ((b0 & 0x07u) << 18) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 12) |
               ((static_cast<unsigned char>(s[i + 2]) & 0x3Fu) << 6) | (static_cast<unsigned char>(s[i + 3]) & 0x3Fu);
  i += 4;
  return c;
}

// Length in bytes of the UTF-8 sequence whose lead byte is `b0` (valid UTF-8 assumed).
inline size_t utf8_length(unsigned char b0) { return b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4; }

void append_utf8(std::string& out, char32_t c);

// GPT-2's bytes_to_unicode(): every byte maps to a printable code point (33..126, 161..172, 174..255 map to
// themselves, the other 68 bytes to 256..323 in order).
const std::array<char32_t, 256>& byte_to_char();
// The inverse: the byte of a code point, or -1 when the code point is not one of the 256.
int char_to_byte(char32_t c);

// Bytes -> valid UTF-8, each maximal invalid subsequence replaced by U+FFFD (Rust from_utf8_lossy,
// Python errors="replace").
std::string utf8_lossy(std::string_view bytes);

enum class NormalForm { nfc, nfd, nfkc, nfkd };
// Appends the normal form of valid UTF-8 `s` to `out`.
void normalize_append(std::string_view s, NormalForm form, std::string& out);
// True when NFC(s) == s is certain without running the normalizer (every code point is NFC_QC=Yes with
// combining class 0); false means "run the normalizer".
bool nfc_quick_check(std::string_view s);

}  // namespace cotune::text
