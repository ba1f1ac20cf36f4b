// Internal to the Jinja interpreter: the syntax tree the parser builds (jinja_parser.cpp) and the renderer walks
// (jinja.cpp).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja.h"
#include "text/jinja_lexer.h"

namespace cotune::text::jinja::detail {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    literal,   // value
    name,      // name
    list,      // args
    tuple,     // args
    dict,      // kwargs-like pairs in `pairs` (key expr, value expr)
    attr,      // args[0].name
    item,      // args[0][args[1]]
    slice,     // args[0][args[1]:args[2]:args[3]] (null = omitted)
    call,      // args[0](args[1..], kwargs)
    filter,    // args[0] | name(args[1..], kwargs)
    test,      // args[0] is [not] name(args[1..], kwargs)
    unary,     // name in {"-", "+", "not"} of args[0]
    binary,    // args[0] name args[1]; name in + - * / // % ** ~ and or
    compare,   // args[0] ops[0] args[1] ops[1] args[2] ... (Python chaining)
    cond,      // args[1] if args[0] else args[2] (args[2] may be null)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::pair<ExprPtr, ExprPtr>> pairs;
  std::vector<std::string> ops;
};

struct Node;
using Body = std::vector<std::unique_ptr<Node>>;

struct Node {
  enum class Kind { text, output, if_, for_, set, set_block, macro, call_block, filter_block, generation, break_, continue_ };
  Kind kind;
  int line = 0;
  std::string text;                    // text
  ExprPtr expr;                        // output value, set value, for iterable, call_block's call
  std::vector<std::pair<ExprPtr, Body>> branches;  // if / elif
  Body body;                           // for / set_block / macro / call_block / filter_block / generation body
  Body else_body;                      // if's else, for's else
  std::vector<std::string> targets;    // for / set names; set ns.attr: {"ns", "attr"} with attr_target
  bool attr_target = false;
  ExprPtr loop_filter;                 // for ... if cond
  std::string macro_name;
  std::vector<std::string> params;     // macro / call_block caller params
  std::vector<ExprPtr> defaults;       // per param (null = none)
  std::vector<ExprPtr> filters;        // filter_block / set_block filters: Expr::filter over a null input
};

struct TemplateAstData {
  Body body;
  std::string name;
  bool has_generation = false;
};

TemplateAstData parse_tokens(std::vector<Token> tokens, std::string name);

}  // namespace cotune::text::jinja::detail
