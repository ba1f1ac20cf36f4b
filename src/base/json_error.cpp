#include "base/json_error.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace cotune {
namespace {

// A SAX consumer that keeps nothing: only the parser's own error position matters.
struct DiscardingSax : nlohmann::json_sax<nlohmann::json> {
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) override {
    error_byte = position;
    message = ex.what();
    return false;
  }
  std::size_t error_byte = 0;
  std::string message;
};

}  // namespace

std::string text_position(std::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  const std::string_view before = text.substr(0, offset);
  const size_t line = 1 + static_cast<size_t>(std::count(before.begin(), before.end(), '\n'));
  const size_t last_nl = before.rfind('\n');
  const size_t column = last_nl == std::string_view::npos ? offset + 1 : offset - last_nl;
  return fmt::format("line {}, column {}", line, column);
}

std::string json_syntax_error(std::string_view text) {
  DiscardingSax sax;
  if (nlohmann::json::sax_parse(text.begin(), text.end(), &sax)) return "";
  // nlohmann's position counts the characters read, the offending one included.
  const size_t at = sax.error_byte > 0 ? sax.error_byte - 1 : 0;
  std::string what = sax.message;
  // Drop the library's "[json.exception.parse_error.101] parse error at line 1, column 5: " prefix.
  if (const size_t colon = what.find(": "); what.rfind("[json.exception", 0) == 0 && colon != std::string::npos)
    what = what.substr(colon + 2);
  return text_position(text, at) + ": " + what;
}

}  // namespace cotune
