// Jinja lexer: template source -> tokens, with jinja2's whitespace rules.
//   - newlines are normalised to "\n"; without keep_trailing_newline one trailing newline is dropped;
//   - `{%-` / `{{-` / `{#-` strip all whitespace before the tag, `-%}` / `-}}` / `-#}` all whitespace after;
//   - trim_blocks drops the first "\n" after `%}` / `#}` (not after `}}`; `+%}` keeps it);
//   - lstrip_blocks drops spaces and tabs between a line's start and `{%` / `{#` (not `{{`; `{%+` keeps them).
#include "text/jinja_lexer.h"

#include <cctype>
#include <cstdlib>

#include "base/error.h"
#include "text/unicode.h"

namespace cotune::text::jinja::detail {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string normalize_newlines(std::string_view src, bool keep_trailing_newline) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out += '\n';
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out += src[i];
    }
  }
  if (!keep_trailing_newline && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  Lexer(std::string_view src, const ParseOptions& opts, const std::string& name)
      : src_(normalize_newlines(src, opts.keep_trailing_newline)), opts_(opts), name_(name) {}

  std::vector<Token> run() {
    bool line_starting = true;
    while (pos_ < src_.size()) {
      const size_t tag = find_tag(pos_);
      std::string text = src_.substr(pos_, (tag == std::string::npos ? src_.size() : tag) - pos_);
      if (tag != std::string::npos) {
        const char kind = src_[tag + 1];
        const char sign = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
        if (sign == '-') {
          size_t e = text.size();
          while (e > 0 && is_space(text[e - 1])) --e;
          text.resize(e);
        } else if (sign != '+' && opts_.lstrip_blocks && kind != '{') {
          const size_t nl = text.rfind('\n');
          const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
          if ((l_pos > 0 || line_starting) && l_pos < text.size()) {
            bool blank = true;
            for (size_t i = l_pos; i < text.size(); ++i)
              if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' && text[i] != '\f' && text[i] != '\v')
                blank = false;
            if (blank) text.resize(l_pos);
          }
        }
      }
      if (!text.empty()) push(Token::Kind::text, std::move(text));
      const size_t text_end = tag == std::string::npos ? src_.size() : tag;
      count_lines(pos_, text_end);
      pos_ = text_end;
      if (tag == std::string::npos) break;
      lex_tag();
      line_starting = pos_ > 0 && src_[pos_ - 1] == '\n';
    }
    push(Token::Kind::eof, "");
    return std::move(tokens_);
  }

 private:
  std::string src_;
  const ParseOptions& opts_;
  const std::string& name_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;

  [[noreturn]] void error(const std::string& what) const { fail("{}: line {}: {}", name_, line_, what); }

  void push(Token::Kind k, std::string text) {
    Token t;
    t.kind = k;
    t.text = std::move(text);
    t.line = line_;
    tokens_.push_back(std::move(t));
  }

  void count_lines(size_t from, size_t to) {
    for (size_t i = from; i < to && i < src_.size(); ++i)
      if (src_[i] == '\n') ++line_;
  }

  size_t find_tag(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  // After an end tag at src_[end_pos, after): whitespace control for what follows.
  void after_end_tag(size_t after, char sign, bool is_block) {
    count_lines(pos_, after);
    pos_ = after;
    if (sign == '-') {
      size_t p = pos_;
      while (p < src_.size() && is_space(src_[p])) ++p;
      count_lines(pos_, p);
      pos_ = p;
    } else if (is_block && sign != '+' && opts_.trim_blocks && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
      ++line_;
    }
  }

  bool starts_with_word(size_t p, std::string_view word) const {
    if (src_.compare(p, word.size(), word) != 0) return false;
    const size_t e = p + word.size();
    return e >= src_.size() || !(std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_');
  }

  void lex_tag() {
    const char kind = src_[pos_ + 1];
    size_t p = pos_ + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    if (kind == '#') {
      const size_t end = src_.find("#}", p);
      if (end == std::string::npos) error("unterminated comment");
      const char sign = end > p && (src_[end - 1] == '-' || src_[end - 1] == '+') ? src_[end - 1] : '\0';
      after_end_tag(end + 2, sign, true);
      return;
    }
    // {% raw %} ... {% endraw %}: the body is literal text.
    if (kind == '%') {
      size_t q = p;
      while (q < src_.size() && is_space(src_[q])) ++q;
      if (starts_with_word(q, "raw")) {
        q += 3;
        while (q < src_.size() && is_space(src_[q])) ++q;
        char sign = '\0';
        if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) sign = src_[q++];
        if (src_.compare(q, 2, "%}") != 0) error("expected '%}' after 'raw'");
        after_end_tag(q + 2, sign, true);
        lex_raw_body();
        return;
      }
    }
    const bool is_var = kind == '{';
    push(is_var ? Token::Kind::var_begin : Token::Kind::block_begin, "");
    count_lines(pos_, p);
    pos_ = p;
    int depth = 0;  // open ( [ { inside the tag: a '}' there is an operator, not the end
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) {
        if (src_[pos_] == '\n') ++line_;
        ++pos_;
      }
      if (pos_ >= src_.size()) error(is_var ? "unterminated '{{'" : "unterminated '{%'");
      const char c = src_[pos_];
      const std::string_view rest(src_.data() + pos_, src_.size() - pos_);
      const std::string_view close = is_var ? "}}" : "%}";
      if (depth == 0) {
        char sign = '\0';
        size_t len = 0;
        if ((c == '-' || c == '+') && rest.substr(1, 2) == close) {
          sign = c;
          len = 3;
        } else if (rest.substr(0, 2) == close) {
          len = 2;
        }
        if (len) {
          push(is_var ? Token::Kind::var_end : Token::Kind::block_end, "");
          after_end_tag(pos_ + len, sign, !is_var);
          return;
        }
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos_;
        while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        push(Token::Kind::name, src_.substr(pos_, e - pos_));
        pos_ = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number();
      } else if (c == '\'' || c == '"') {
        lex_string(c);
      } else {
        static const char* const two[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op;
        for (const char* t : two)
          if (rest.substr(0, 2) == t) op = t;
        if (op.empty()) {
          if (std::string_view("+-*/%~<>=()[]{},.:|").find(c) == std::string_view::npos)
            error(std::string("unexpected character '") + c + "'");
          op = std::string(1, c);
          if (c == '(' || c == '[' || c == '{') ++depth;
          if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
        }
        push(Token::Kind::op, op);
        pos_ += op.size();
      }
    }
  }

  void lex_raw_body() {
    // Find `{%[-+]? endraw [-+]?%}`.
    size_t search = pos_;
    while (true) {
      const size_t open = src_.find("{%", search);
      if (open == std::string::npos) error("missing '{% endraw %}'");
      size_t q = open + 2;
      char lsign = '\0';
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) lsign = src_[q++];
      while (q < src_.size() && is_space(src_[q])) ++q;
      if (!starts_with_word(q, "endraw")) {
        search = open + 2;
        continue;
      }
      q += 6;
      while (q < src_.size() && is_space(src_[q])) ++q;
      char rsign = '\0';
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) rsign = src_[q++];
      if (src_.compare(q, 2, "%}") != 0) error("expected '%}' after 'endraw'");
      std::string body = src_.substr(pos_, open - pos_);
      if (lsign == '-') {
        size_t e = body.size();
        while (e > 0 && is_space(body[e - 1])) --e;
        body.resize(e);
      }
      if (!body.empty()) push(Token::Kind::text, std::move(body));
      count_lines(pos_, open);
      pos_ = open;
      after_end_tag(q + 2, rsign, true);
      return;
    }
  }

  void lex_number() {
    size_t e = pos_;
    bool is_float = false;
    const auto digits = [&] {
      while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
    };
    digits();
    if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
      is_float = true;
      ++e;
      digits();
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t f = e + 1;
      if (f < src_.size() && (src_[f] == '+' || src_[f] == '-')) ++f;
      if (f < src_.size() && std::isdigit(static_cast<unsigned char>(src_[f]))) {
        is_float = true;
        e = f;
        digits();
      }
    }
    std::string text;
    for (size_t i = pos_; i < e; ++i)
      if (src_[i] != '_') text += src_[i];
    Token t;
    t.line = line_;
    t.text = text;
    if (is_float) {
      t.kind = Token::Kind::floating;
      // As Python's float(): out of range is inf (1e999) or 0 (1e-999), never an error (stod throws there).
      t.floating = std::strtod(text.c_str(), nullptr);
    } else {
      t.kind = Token::Kind::integer;
      try {
        t.integer = std::stoll(text);
      } catch (const std::exception&) {
        error("integer literal out of range: " + text);
      }
    }
    tokens_.push_back(std::move(t));
    pos_ = e;
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // A string literal, decoded as Python's unicode-escape (what jinja2 does after its own regex match).
  void lex_string(char quote) {
    const int start_line = line_;
    std::string out;
    size_t i = pos_ + 1;
    while (true) {
      if (i >= src_.size()) error("unterminated string literal");
      const char c = src_[i];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        out += c;
        ++i;
        continue;
      }
      if (i + 1 >= src_.size()) error("unterminated string literal");
      const char e = src_[i + 1];
      i += 2;
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\n': ++line_; break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (size_t k = 0; k < n; ++k) {
            const int h = i + k < src_.size() ? hex_value(src_[i + k]) : -1;
            if (h < 0) error(std::string("truncated \\") + e + " escape in string literal");
            cp = cp * 16 + static_cast<char32_t>(h);
          }
          i += n;
          if (cp > 0x10FFFF) error("illegal Unicode character in string literal");
          append_utf8(out, cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && i < src_.size() && src_[i] >= '0' && src_[i] <= '7'; ++k)
              cp = cp * 8 + static_cast<char32_t>(src_[i++] - '0');
            append_utf8(out, cp);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    Token t;
    t.kind = Token::Kind::string;
    t.text = std::move(out);
    t.line = start_line;
    tokens_.push_back(std::move(t));
    pos_ = i + 1;
  }
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const ParseOptions& opts, const std::string& name) {
  return Lexer(source, opts, name).run();
}

}  // namespace cotune::text::jinja::detail
