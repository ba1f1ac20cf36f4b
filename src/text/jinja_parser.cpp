// Jinja parser: tokens -> syntax tree, with jinja2's operator precedence (lowest first):
//   x if c else y;  or;  and;  not;  comparisons / in / not in (chained);  + -;  ~;  * / // %;  **;
//   unary - +;  primary with postfix .attr [item] [a:b:c] (call) and filters `|f` / tests `is t`.
#include <fmt/format.h>

#include "base/error.h"
#include "text/jinja_ast.h"
#include "text/jinja_lexer.h"

namespace cotune::text::jinja::detail {
namespace {

using TK = Token::Kind;

class Parser {
 public:
  Parser(std::vector<Token> tokens, std::string name) : toks_(std::move(tokens)), name_(std::move(name)) {}

  TemplateAstData run() {
    TemplateAstData ast;
    std::string stop;
    ast.body = parse_body({}, stop);
    if (!stop.empty()) error(peek().line, "unexpected '" + stop + "'");
    ast.name = name_;
    ast.has_generation = has_generation_;
    return ast;
  }

 private:
  std::vector<Token> toks_;
  std::string name_;
  size_t i_ = 0;
  bool has_generation_ = false;

  [[noreturn]] void error(int line, const std::string& what) const { fail("{}: line {}: {}", name_, line, what); }

  const Token& peek(size_t ahead = 0) const { return toks_[std::min(i_ + ahead, toks_.size() - 1)]; }
  const Token& next() {
    const Token& t = toks_[i_];
    if (i_ + 1 < toks_.size()) ++i_;
    return t;
  }
  bool is_op(std::string_view op, size_t ahead = 0) const {
    return peek(ahead).kind == TK::op && peek(ahead).text == op;
  }
  bool is_name(std::string_view n, size_t ahead = 0) const {
    return peek(ahead).kind == TK::name && peek(ahead).text == n;
  }
  void expect_op(std::string_view op) {
    if (!is_op(op)) error(peek().line, fmt::format("expected '{}', got {}", op, describe(peek())));
    next();
  }
  void expect_block_end() {
    if (peek().kind != TK::block_end) error(peek().line, "expected '%}', got " + describe(peek()));
    next();
  }
  std::string expect_name() {
    if (peek().kind != TK::name) error(peek().line, "expected a name, got " + describe(peek()));
    return next().text;
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TK::text: return "text";
      case TK::var_begin: return "'{{'";
      case TK::var_end: return "'}}'";
      case TK::block_begin: return "'{%'";
      case TK::block_end: return "'%}'";
      case TK::name: return "'" + t.text + "'";
      case TK::string: return "a string";
      case TK::integer:
      case TK::floating: return "a number";
      case TK::op: return "'" + t.text + "'";
      case TK::eof: return "the end of the template";
    }
    return "?";
  }

  // Statements until one of `stops` (a block keyword) at block start; `stop` gets which one (empty at EOF).
  Body parse_body(const std::vector<std::string_view>& stops, std::string& stop) {
    Body body;
    stop.clear();
    while (true) {
      const Token& t = peek();
      if (t.kind == TK::eof) {
        if (!stops.empty()) error(t.line, fmt::format("unexpected end of template, expected '{}'", stops.back()));
        return body;
      }
      if (t.kind == TK::text) {
        auto n = make(Node::Kind::text, t.line);
        n->text = t.text;
        next();
        body.push_back(std::move(n));
      } else if (t.kind == TK::var_begin) {
        next();
        auto n = make(Node::Kind::output, t.line);
        n->expr = parse_expression();
        if (peek().kind != TK::var_end) error(peek().line, "expected '}}', got " + describe(peek()));
        next();
        body.push_back(std::move(n));
      } else if (t.kind == TK::block_begin) {
        const Token& kw = peek(1);
        if (kw.kind != TK::name) error(kw.line, "expected a statement name, got " + describe(kw));
        for (auto s : stops) {
          if (kw.text == s) {
            next();
            next();
            stop = kw.text;
            return body;
          }
        }
        next();
        body.push_back(parse_statement());
      } else {
        error(t.line, "unexpected " + describe(t));
      }
    }
  }

  static std::unique_ptr<Node> make(Node::Kind k, int line) {
    auto n = std::make_unique<Node>();
    n->kind = k;
    n->line = line;
    return n;
  }

  std::unique_ptr<Node> parse_statement() {
    const Token& kw = next();
    const std::string& w = kw.text;
    const int line = kw.line;
    std::string stop;
    if (w == "if") {
      auto n = make(Node::Kind::if_, line);
      ExprPtr cond = parse_expression();
      expect_block_end();
      while (true) {
        Body b = parse_body({"elif", "else", "endif"}, stop);
        n->branches.emplace_back(std::move(cond), std::move(b));
        if (stop == "elif") {
          cond = parse_expression();
          expect_block_end();
          continue;
        }
        if (stop == "else") {
          expect_block_end();
          n->else_body = parse_body({"endif"}, stop);
        }
        expect_block_end();
        return n;
      }
    }
    if (w == "for") {
      auto n = make(Node::Kind::for_, line);
      n->targets = parse_targets();
      if (!is_name("in")) error(peek().line, "expected 'in' in for loop, got " + describe(peek()));
      next();
      n->expr = parse_tuple_or_expression(/*allow_cond=*/false);
      if (is_name("if")) {
        next();
        n->loop_filter = parse_expression();
      }
      if (is_name("recursive")) error(peek().line, "recursive loops are not supported");
      expect_block_end();
      n->body = parse_body({"else", "endfor"}, stop);
      if (stop == "else") {
        expect_block_end();
        n->else_body = parse_body({"endfor"}, stop);
      }
      expect_block_end();
      return n;
    }
    if (w == "set") {
      std::vector<std::string> targets;
      bool attr = false;
      const std::string first = expect_name();
      targets.push_back(first);
      if (is_op(".")) {
        next();
        targets.push_back(expect_name());
        attr = true;
      } else {
        while (is_op(",")) {
          next();
          targets.push_back(expect_name());
        }
      }
      if (is_op("=")) {
        next();
        auto n = make(Node::Kind::set, line);
        n->targets = std::move(targets);
        n->attr_target = attr;
        n->expr = parse_tuple_or_expression(true);
        expect_block_end();
        return n;
      }
      if (attr || targets.size() != 1) error(peek().line, "expected '=' in set");
      auto n = make(Node::Kind::set_block, line);
      n->targets = std::move(targets);
      while (is_op("|")) {
        next();
        n->filters.push_back(parse_filter_call(nullptr));
      }
      expect_block_end();
      n->body = parse_body({"endset"}, stop);
      expect_block_end();
      return n;
    }
    if (w == "macro") {
      auto n = make(Node::Kind::macro, line);
      n->macro_name = expect_name();
      parse_params(*n);
      expect_block_end();
      n->body = parse_body({"endmacro"}, stop);
      expect_block_end();
      return n;
    }
    if (w == "call") {
      auto n = make(Node::Kind::call_block, line);
      if (is_op("(")) parse_params(*n);
      n->expr = parse_expression();
      if (n->expr->kind != Expr::Kind::call) error(line, "expected a macro call after 'call'");
      expect_block_end();
      n->body = parse_body({"endcall"}, stop);
      expect_block_end();
      return n;
    }
    if (w == "filter") {
      auto n = make(Node::Kind::filter_block, line);
      n->filters.push_back(parse_filter_call(nullptr));
      while (is_op("|")) {
        next();
        n->filters.push_back(parse_filter_call(nullptr));
      }
      expect_block_end();
      n->body = parse_body({"endfilter"}, stop);
      expect_block_end();
      return n;
    }
    if (w == "generation") {
      has_generation_ = true;
      auto n = make(Node::Kind::generation, line);
      expect_block_end();
      n->body = parse_body({"endgeneration"}, stop);
      expect_block_end();
      return n;
    }
    if (w == "break" || w == "continue") {
      expect_block_end();
      return make(w == "break" ? Node::Kind::break_ : Node::Kind::continue_, line);
    }
    error(line, "unknown or unsupported statement '" + w + "'");
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> targets;
    const bool paren = is_op("(");
    if (paren) next();
    targets.push_back(expect_name());
    while (is_op(",")) {
      next();
      targets.push_back(expect_name());
    }
    if (paren) expect_op(")");
    return targets;
  }

  void parse_params(Node& n) {
    expect_op("(");
    while (!is_op(")")) {
      n.params.push_back(expect_name());
      if (is_op("=")) {
        next();
        n.defaults.push_back(parse_expression());
      } else {
        n.defaults.push_back(nullptr);
      }
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
  }

  // ---- expressions ----------------------------------------------------------------------------------------
  ExprPtr new_expr(Expr::Kind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }

  // `a, b` without brackets (set values, for iterables) as a tuple.
  ExprPtr parse_tuple_or_expression(bool allow_cond) {
    const int line = peek().line;
    ExprPtr first = allow_cond ? parse_expression() : parse_or();
    if (!is_op(",")) return first;
    auto t = new_expr(Expr::Kind::tuple, line);
    t->args.push_back(std::move(first));
    while (is_op(",")) {
      next();
      if (peek().kind == TK::block_end) break;
      t->args.push_back(allow_cond ? parse_expression() : parse_or());
    }
    return t;
  }

  ExprPtr parse_expression() {
    ExprPtr e = parse_or();
    while (is_name("if")) {
      const int line = next().line;
      auto c = new_expr(Expr::Kind::cond, line);
      ExprPtr cond = parse_or();
      ExprPtr otherwise;
      if (is_name("else")) {
        next();
        otherwise = parse_expression();
      }
      c->args.push_back(std::move(cond));
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(otherwise));
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(std::string op, ExprPtr a, ExprPtr b, int line) {
    auto e = new_expr(Expr::Kind::binary, line);
    e->name = std::move(op);
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      const int line = next().line;
      e = binary("or", std::move(e), parse_and(), line);
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      const int line = next().line;
      e = binary("and", std::move(e), parse_not(), line);
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      const int line = next().line;
      auto e = new_expr(Expr::Kind::unary, line);
      e->name = "not";
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    const int line = peek().line;
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (peek().kind == TK::op &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == ">" ||
           peek().text == "<=" || peek().text == ">=")) {
        op = next().text;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "not in";
      } else {
        break;
      }
      if (!cmp) {
        cmp = new_expr(Expr::Kind::compare, line);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      e = binary(t.text, std::move(e), parse_concat(), t.line);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      const int line = next().line;
      e = binary("~", std::move(e), parse_math2(), line);
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      e = binary(t.text, std::move(e), parse_pow(), t.line);
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      const int line = next().line;
      e = binary("**", std::move(e), parse_unary(true), line);
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      e = new_expr(Expr::Kind::unary, t.line);
      e->name = t.text;
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_postfix(parse_primary());
    }
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    if (t.kind == TK::name) {
      next();
      const std::string& n = t.text;
      if (n == "true" || n == "True") return literal(Value::boolean(true), t.line);
      if (n == "false" || n == "False") return literal(Value::boolean(false), t.line);
      if (n == "none" || n == "None") return literal(Value::none(), t.line);
      auto e = new_expr(Expr::Kind::name, t.line);
      e->name = n;
      return e;
    }
    if (t.kind == TK::string) {
      // Adjacent string literals concatenate, as in Python.
      std::string s = next().text;
      while (peek().kind == TK::string) s += next().text;
      return literal(Value::string(std::move(s)), t.line);
    }
    if (t.kind == TK::integer) return literal(Value::integer(next().integer), t.line);
    if (t.kind == TK::floating) return literal(Value::floating(next().floating), t.line);
    if (is_op("(")) {
      next();
      if (is_op(")")) {
        next();
        return new_expr(Expr::Kind::tuple, t.line);
      }
      ExprPtr e = parse_expression();
      if (is_op(",")) {
        auto tup = new_expr(Expr::Kind::tuple, t.line);
        tup->args.push_back(std::move(e));
        while (is_op(",")) {
          next();
          if (is_op(")")) break;
          tup->args.push_back(parse_expression());
        }
        e = std::move(tup);
      }
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      next();
      auto e = new_expr(Expr::Kind::list, t.line);
      while (!is_op("]")) {
        e->args.push_back(parse_expression());
        if (!is_op(",")) break;
        next();
      }
      expect_op("]");
      return e;
    }
    if (is_op("{")) {
      next();
      auto e = new_expr(Expr::Kind::dict, t.line);
      while (!is_op("}")) {
        ExprPtr k = parse_expression();
        expect_op(":");
        ExprPtr v = parse_expression();
        e->pairs.emplace_back(std::move(k), std::move(v));
        if (!is_op(",")) break;
        next();
      }
      expect_op("}");
      return e;
    }
    error(t.line, "unexpected " + describe(t) + " in expression");
  }

  ExprPtr literal(Value v, int line) {
    auto e = new_expr(Expr::Kind::literal, line);
    e->value = std::move(v);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        const int line = next().line;
        auto a = new_expr(Expr::Kind::attr, line);
        if (peek().kind == TK::integer) {
          // `x.0` is item 0, as in jinja2
          a->kind = Expr::Kind::item;
          a->args.push_back(std::move(e));
          a->args.push_back(literal(Value::integer(next().integer), line));
        } else {
          a->name = expect_name();
          a->args.push_back(std::move(e));
        }
        e = std::move(a);
      } else if (is_op("[")) {
        const int line = next().line;
        ExprPtr parts[3];
        bool is_slice = false;
        int part = 0;
        while (true) {
          if (is_op("]")) break;
          if (is_op(":")) {
            next();
            is_slice = true;
            if (++part > 2) error(line, "too many ':' in subscript");
            continue;
          }
          parts[part] = parse_expression();
        }
        expect_op("]");
        if (is_slice) {
          auto s = new_expr(Expr::Kind::slice, line);
          s->args.push_back(std::move(e));
          for (auto& p : parts) s->args.push_back(std::move(p));
          e = std::move(s);
        } else {
          if (!parts[0]) error(line, "empty subscript");
          auto it = new_expr(Expr::Kind::item, line);
          it->args.push_back(std::move(e));
          it->args.push_back(std::move(parts[0]));
          e = std::move(it);
        }
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  void parse_call_args(Expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().kind == TK::name && is_op("=", 1)) {
        std::string k = next().text;
        next();
        call.kwargs.emplace_back(std::move(k), parse_expression());
      } else {
        if (!call.kwargs.empty()) error(peek().line, "positional argument after a keyword argument");
        call.args.push_back(parse_expression());
      }
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = new_expr(Expr::Kind::call, peek().line);
    c->args.push_back(std::move(callee));
    parse_call_args(*c);
    return c;
  }

  // `name` or `name(args)` after `|`; the input goes in args[0] (null for filter blocks).
  ExprPtr parse_filter_call(ExprPtr input) {
    const int line = peek().line;
    auto f = new_expr(Expr::Kind::filter, line);
    f->name = expect_name();
    while (is_op(".")) {
      next();
      f->name += "." + expect_name();
    }
    f->args.push_back(std::move(input));
    if (is_op("(")) parse_call_args(*f);
    return f;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        next();
        e = parse_filter_call(std::move(e));
      } else if (is_name("is")) {
        const int line = next().line;
        auto t = new_expr(Expr::Kind::test, line);
        if (is_name("not")) {
          next();
          t->negated = true;
        }
        t->name = expect_name();
        t->args.push_back(std::move(e));
        if (is_op("(")) {
          parse_call_args(*t);
        } else if (starts_test_argument()) {
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  // jinja2 reads one bare argument after a test name (`is divisibleby 3`, `is sameas none`) unless the next
  // token ends the expression or is an operator keyword.
  bool starts_test_argument() const {
    const Token& t = peek();
    if (t.kind == TK::string || t.kind == TK::integer || t.kind == TK::floating) return true;
    if (t.kind == TK::op) return t.text == "[" || t.text == "{";
    if (t.kind == TK::name) {
      static const char* const stop[] = {"else", "or", "and", "if", "in", "is", "not", "recursive"};
      for (const char* s : stop)
        if (t.text == s) return false;
      return true;
    }
    return false;
  }
};

}  // namespace

TemplateAstData parse_tokens(std::vector<Token> tokens, std::string name) {
  return Parser(std::move(tokens), std::move(name)).run();
}

}  // namespace cotune::text::jinja::detail
