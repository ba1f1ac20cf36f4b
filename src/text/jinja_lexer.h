// Internal to the Jinja interpreter: the token stream of a template (jinja.cpp parses it). Whitespace control
// (`-`/`+`, trim_blocks, lstrip_blocks, the trailing newline) is applied here, as jinja2's lexer does, so the
// parser only sees the text that will be written.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "text/jinja.h"

namespace cotune::text::jinja::detail {

struct Token {
  enum class Kind { text, var_begin, var_end, block_begin, block_end, name, string, integer, floating, op, eof };
  Kind kind = Kind::eof;
  std::string text;  // text / name / decoded string / operator
  int64_t integer = 0;
  double floating = 0;
  int line = 1;
};

// Throws cotune::Error naming `name` and the line of a malformed tag or literal.
std::vector<Token> tokenize(std::string_view source, const ParseOptions& opts, const std::string& name);

}  // namespace cotune::text::jinja::detail
