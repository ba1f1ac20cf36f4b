// A Jinja interpreter for the subset Hugging Face chat templates use, rendering as Python's jinja2 does in
// the environment `transformers` builds for `apply_chat_template` (ImmutableSandboxedEnvironment with
// trim_blocks, lstrip_blocks, loop controls, the `{% generation %}` tracker; `raise_exception`,
// `strftime_now` globals; a `tojson` that writes json.dumps(ensure_ascii=False)).
//
// Supported: text, `{{ }}`, `{% %}`, `{# #}`, whitespace control (`-` / `+`), `{% raw %}`;
// statements if/elif/else, for (tuple targets, `if` filter, else, loop.*, break/continue), set (names, tuples,
// namespace attributes, block set), macro (defaults, caller), call, filter blocks, generation blocks;
// expressions with Python semantics: literals, lists, tuples, dicts, attribute / item access, slices,
// calls with keyword arguments, filters, tests, `in`, `~`, arithmetic, comparisons, and/or/not, `x if c else y`.
// Strings are UTF-8; lengths, indices and slices count code points, as Python does.
//
//   auto tpl = jinja::Template::parse(source);
//   jinja::Value ctx = jinja::Value::dict();  ctx.set("messages", jinja::Value::from_json(R"([...])"));
//   jinja::RenderResult r = tpl.render(ctx);   // r.text, r.generation_spans
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cotune::text::jinja {

class Value;
struct Dict;
struct Callable;
using List = std::vector<Value>;

// A Python value as a template sees it. Lists, dicts and callables are shared by reference (as in Python:
// `ns.x = 1` through one name is seen through every other).
class Value {
 public:
  enum class Kind { undefined, none, boolean, integer, floating, string, list, dict, callable };

  Value() = default;  // undefined
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value floating(double d);
  static Value string(std::string s);
  static Value list(List items = {});
  static Value tuple(List items);  // a list that prints as a Python tuple: (a, b)
  static Value dict();
  static Value callable(std::string name, std::function<Value(class CallArgs&)> fn);
  // JSON text -> Value (objects keep their key order, as json.loads does). Throws Error on bad JSON.
  static Value from_json(std::string_view json);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::undefined; }
  bool is_none() const { return kind_ == Kind::none; }
  bool is_string() const { return kind_ == Kind::string; }
  bool is_list() const { return kind_ == Kind::list; }
  bool is_tuple() const { return kind_ == Kind::list && b_; }
  bool is_dict() const { return kind_ == Kind::dict; }
  bool is_number() const { return kind_ == Kind::integer || kind_ == Kind::floating; }
  bool is_callable() const { return kind_ == Kind::callable; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }
  double as_double() const { return kind_ == Kind::integer ? static_cast<double>(i_) : d_; }
  const std::string& as_string() const { return s_; }
  List& items() const;  // list elements (Error unless a list)
  Dict& entries() const;  // dict entries (Error unless a dict)
  const Callable& function() const;

  // Dict helpers: set / get a key (get returns undefined when absent).
  void set(const std::string& key, Value v) const;
  Value get(const std::string& key) const;

  bool truthy() const;
  // Python str(): None -> "None", True -> "True", lists and dicts as repr.
  std::string str() const;
  // Python repr() (strings quoted).
  std::string repr() const;
  // json.dumps(ensure_ascii=False, indent, sort_keys): ", " and ": " separators, or "," and ": " with an indent.
  std::string to_json(int indent = -1, bool sort_keys = false) const;
  // Type name for error messages: "undefined", "NoneType", "str", ...
  std::string type_name() const;

 private:
  Kind kind_ = Kind::undefined;
  bool b_ = false;  // the boolean; for a list: whether it is a tuple
  int64_t i_ = 0;
  double d_ = 0;
  std::string s_;
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<Callable> fn_;
};

// An ordered dict (Python 3.7+ order: insertion). Keys are strings; a namespace() is a dict whose entries
// `set ns.attr = ...` may assign.
struct Dict {
  std::vector<std::pair<std::string, Value>> entries;
  bool is_namespace = false;
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);
};

// Positional and keyword arguments of a call.
class CallArgs {
 public:
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keywords;
  // Argument `i`, or keyword `name`, or `fallback` when neither is given.
  Value get(size_t i, std::string_view name, Value fallback = Value()) const;
  bool has(size_t i, std::string_view name) const;
};

struct Callable {
  std::string name;
  std::function<Value(CallArgs&)> fn;
};

struct ParseOptions {
  bool trim_blocks = true;              // drop the first newline after a block or comment tag
  bool lstrip_blocks = true;            // drop spaces / tabs from a line's start up to a block or comment tag
  bool keep_trailing_newline = false;   // jinja2's default drops one trailing newline of the source
};

struct RenderResult {
  std::string text;
  // Byte ranges [begin, end) of `text` written inside `{% generation %}` blocks, in order.
  std::vector<std::pair<size_t, size_t>> generation_spans;
};

struct TemplateAst;

class Template {
 public:
  // Throws cotune::Error naming `name`, the line and what was expected.
  static Template parse(std::string_view source, const ParseOptions& opts = {}, std::string name = "template");
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  ~Template();

  // `context` is a dict of variables. The transformers globals (raise_exception, strftime_now, namespace,
  // range, dict) are added where the context does not define them. Errors (including raise_exception's)
  // throw cotune::Error naming the template and line.
  RenderResult render(const Value& context) const;
  // True when the source uses `{% generation %}`.
  bool has_generation_blocks() const;

 private:
  explicit Template(std::unique_ptr<TemplateAst> ast);
  std::unique_ptr<TemplateAst> ast_;
};

}  // namespace cotune::text::jinja
