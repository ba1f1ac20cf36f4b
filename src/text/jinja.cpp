// Jinja renderer: walks the syntax tree with Python semantics (jinja2's runtime in transformers' sandbox).
// Scoping as jinja2: a for loop body and a macro body get their own frame (a `set` there does not leak out;
// that is why templates use namespace()); if blocks do not.
#include "text/jinja.h"

#include <fmt/format.h>
#include <utf8proc.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <cmath>
#include <ctime>
#include <map>

#include "base/error.h"
#include "text/jinja_ast.h"
#include "text/jinja_lexer.h"
#include "text/unicode.h"

namespace cotune::text::jinja {

struct TemplateAst {
  detail::TemplateAstData data;
};

namespace {

using detail::Body;
using detail::Expr;
using detail::Node;
using Kind = Value::Kind;

// ---- strings as Python sees them (code points) --------------------------------------------------------------
std::vector<char32_t> code_points(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out.push_back(next_code_point(s, i));
  return out;
}
std::string from_code_points(const std::vector<char32_t>& cps, size_t b, size_t e) {
  std::string out;
  for (size_t i = b; i < e; ++i) append_utf8(out, cps[i]);
  return out;
}
int64_t code_point_length(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}
// Python str.isspace() for one code point.
bool py_isspace(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

enum class StripSide { both, left, right };
std::string py_strip(const std::string& s, const Value& chars, StripSide side) {
  const auto cps = code_points(s);
  std::vector<char32_t> set;
  const bool use_set = chars.is_string();
  if (use_set) set = code_points(chars.as_string());
  const auto strip_it = [&](char32_t c) {
    return use_set ? std::find(set.begin(), set.end(), c) != set.end() : py_isspace(c);
  };
  size_t b = 0, e = cps.size();
  if (side != StripSide::right)
    while (b < e && strip_it(cps[b])) ++b;
  if (side != StripSide::left)
    while (e > b && strip_it(cps[e - 1])) --e;
  return from_code_points(cps, b, e);
}

std::string map_case(const std::string& s, bool upper) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = next_code_point(s, i);
    append_utf8(out, static_cast<char32_t>(upper ? utf8proc_toupper(static_cast<utf8proc_int32_t>(c))
                                                 : utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
  }
  return out;
}

std::string py_title(const std::string& s) {
  std::string out;
  bool prev_cased = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = next_code_point(s, i);
    const auto ci = static_cast<utf8proc_int32_t>(c);
    const bool cased = utf8proc_toupper(ci) != ci || utf8proc_tolower(ci) != ci;
    append_utf8(out, static_cast<char32_t>(prev_cased ? utf8proc_tolower(ci) : utf8proc_toupper(ci)));
    prev_cased = cased;
  }
  return out;
}

std::string py_capitalize(const std::string& s) {
  if (s.empty()) return s;
  size_t i = 0;
  const char32_t c = next_code_point(s, i);
  std::string out;
  append_utf8(out, static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))));
  return out + map_case(s.substr(i), false);
}

std::vector<std::string> py_split(const std::string& s, const Value& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep.is_none() || sep.is_undefined()) {
    const auto cps = code_points(s);
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && py_isspace(cps[i])) ++i;
      if (i >= cps.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t e = cps.size();
        while (e > i && py_isspace(cps[e - 1])) --e;
        out.push_back(from_code_points(cps, i, e));
        return out;
      }
      size_t j = i;
      while (j < cps.size() && !py_isspace(cps[j])) ++j;
      out.push_back(from_code_points(cps, i, j));
      i = j;
    }
    return out;
  }
  const std::string& d = sep.as_string();
  if (d.empty()) fail("empty separator");
  size_t start = 0;
  while (true) {
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) break;
    const size_t p = s.find(d, start);
    if (p == std::string::npos) break;
    out.push_back(s.substr(start, p - start));
    start = p + d.size();
  }
  out.push_back(s.substr(start));
  return out;
}

// The sandbox's bound on any string a template builds (rendered text, concatenation, repetition, replace, join):
// a chat template renders prompts, so a string past it can only come from a runaway or hostile template, which is
// refused naming the operation rather than allowed to take the machine's memory.
constexpr size_t kMaxStringBytes = size_t{64} << 20;
constexpr size_t kMaxListItems = 100000;  // as range()
void check_string_size(size_t bytes, const char* what) {
  if (bytes > kMaxStringBytes)
    fail("{} would make a string of {} bytes (sandbox limit {} MiB)", what, bytes, kMaxStringBytes >> 20);
}

std::string py_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` between code points (and at both ends).
    const auto cps = code_points(s);
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      if (i < cps.size()) append_utf8(out, cps[i]);
      check_string_size(out.size(), "replace");
    }
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t p = s.find(from, start);
    if (p == std::string::npos) break;
    out.append(s, start, p - start);
    out += to;
    check_string_size(out.size(), "replace");
    start = p + from.size();
    ++done;
  }
  out.append(s, start, std::string::npos);
  return out;
}

// ---- Python operators ---------------------------------------------------------------------------------------
bool is_intlike(const Value& v) { return v.kind() == Kind::integer || v.kind() == Kind::boolean; }
int64_t int_of(const Value& v) { return v.kind() == Kind::boolean ? (v.as_bool() ? 1 : 0) : v.as_int(); }
double num_of(const Value& v) { return v.kind() == Kind::floating ? v.as_double() : static_cast<double>(int_of(v)); }
bool is_num(const Value& v) { return is_intlike(v) || v.kind() == Kind::floating; }

bool py_equal(const Value& a, const Value& b) {
  if (is_num(a) && is_num(b)) {
    if (is_intlike(a) && is_intlike(b)) return int_of(a) == int_of(b);
    return num_of(a) == num_of(b);
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::undefined:
    case Kind::none: return true;
    case Kind::string: return a.as_string() == b.as_string();
    case Kind::list: {
      const List &x = a.items(), &y = b.items();
      if (x.size() != y.size() || a.is_tuple() != b.is_tuple()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!py_equal(x[i], y[i])) return false;
      return true;
    }
    case Kind::dict: {
      const Dict &x = a.entries(), &y = b.entries();
      if (&x == &y) return true;
      if (x.entries.size() != y.entries.size()) return false;
      for (const auto& [k, v] : x.entries) {
        const Value* o = y.find(k);
        if (!o || !py_equal(v, *o)) return false;
      }
      return true;
    }
    case Kind::callable: return &a.function() == &b.function();
    default: return false;
  }
}

// -1, 0, 1; Error when Python would raise TypeError.
int py_compare(const Value& a, const Value& b, std::string_view op) {
  if (is_num(a) && is_num(b)) {
    if (is_intlike(a) && is_intlike(b)) return int_of(a) < int_of(b) ? -1 : int_of(a) > int_of(b) ? 1 : 0;
    const double x = num_of(a), y = num_of(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.as_string().compare(b.as_string());  // UTF-8 byte order = code point order
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list()) {
    const List &x = a.items(), &y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (py_equal(x[i], y[i])) continue;
      return py_compare(x[i], y[i], op);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  fail("'{}' not supported between instances of '{}' and '{}'", op, a.type_name(), b.type_name());
}

bool py_contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Kind::string:
      if (!item.is_string())
        fail("'in <string>' requires string as left operand, not {}", item.type_name());
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Kind::list:
      for (const auto& v : container.items())
        if (py_equal(v, item)) return true;
      return false;
    case Kind::dict: return item.is_string() && container.entries().find(item.as_string()) != nullptr;
    case Kind::undefined: return false;
    default: fail("argument of type '{}' is not iterable", container.type_name());
  }
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

Value arithmetic(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined() || b.is_undefined()) fail("'{}' with an undefined value", op);
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      check_string_size(a.as_string().size() + b.as_string().size(), "'+'");
      return Value::string(a.as_string() + b.as_string());
    }
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      List out = a.items();
      out.insert(out.end(), b.items().begin(), b.items().end());
      return a.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
    }
  }
  if (op == "*") {
    const Value* s = a.is_string() || a.is_list() ? &a : b.is_string() || b.is_list() ? &b : nullptr;
    const Value* n = s == &a ? &b : &a;
    if (s && is_intlike(*n)) {
      const int64_t times = std::max<int64_t>(0, int_of(*n));
      if (s->is_string()) {
        const size_t len = s->as_string().size();
        if (len == 0) return Value::string("");  // '' * n: no loop of n empty appends (a fuzz find: n = 1.1e11)
        if (static_cast<uint64_t>(times) > kMaxStringBytes / len)
          fail("'*' would repeat a string of {} bytes {} times (sandbox limit {} MiB)", len, times, kMaxStringBytes >> 20);
        std::string out;
        for (int64_t i = 0; i < times; ++i) out += s->as_string();
        return Value::string(std::move(out));
      }
      const size_t items = s->items().size();
      if (items == 0) return s->is_tuple() ? Value::tuple({}) : Value::list();  // [] * n: nothing to repeat
      if (static_cast<uint64_t>(times) > kMaxListItems / items)
        fail("'*' would repeat a list of {} items {} times (sandbox limit {} items)", items, times, kMaxListItems);
      List out;
      for (int64_t i = 0; i < times; ++i) out.insert(out.end(), s->items().begin(), s->items().end());
      return Value::list(std::move(out));
    }
  }
  if (op == "%" && a.is_string()) fail("printf-style '%' formatting of strings is not supported");
  if (!is_num(a) || !is_num(b))
    fail("unsupported operand type(s) for {}: '{}' and '{}'", op, a.type_name(), b.type_name());
  const bool ints = is_intlike(a) && is_intlike(b);
  if (op == "/") {
    if (num_of(b) == 0) fail("division by zero");
    return Value::floating(num_of(a) / num_of(b));
  }
  if (ints) {
    // Python's ints are unbounded; ours are 64-bit: a result past that range is an error naming the operation
    // (never a silent wrap-around or undefined behaviour).
    const int64_t x = int_of(a), y = int_of(b);
    int64_t r = 0;
    auto overflow = [&]() -> Value { fail("integer overflow: {} {} {} does not fit in 64 bits", x, op, y); };
    if (op == "+") return __builtin_add_overflow(x, y, &r) ? overflow() : Value::integer(r);
    if (op == "-") return __builtin_sub_overflow(x, y, &r) ? overflow() : Value::integer(r);
    if (op == "*") return __builtin_mul_overflow(x, y, &r) ? overflow() : Value::integer(r);
    if (op == "//" || op == "%") {
      if (y == 0) fail("integer division or modulo by zero");
      if (x == std::numeric_limits<int64_t>::min() && y == -1) {
        if (op == "%") return Value::integer(0);
        return overflow();
      }
      const int64_t q = floor_div(x, y);
      return Value::integer(op == "//" ? q : x - q * y);
    }
    if (op == "**") {
      if (y < 0) return Value::floating(std::pow(static_cast<double>(x), static_cast<double>(y)));
      // By squaring: at most 64 multiplications (a huge exponent of 0, 1 or -1 is quick; of anything else, overflow).
      int64_t base = x, e = y;
      r = 1;
      while (e > 0) {
        if ((e & 1) && __builtin_mul_overflow(r, base, &r)) return overflow();
        e >>= 1;
        if (e > 0 && __builtin_mul_overflow(base, base, &base)) {
          // base^2 overflowed: only harmless if no further factor is taken, which needs base in {0, 1, -1} (no overflow).
          return overflow();
        }
      }
      return Value::integer(r);
    }
  }
  const double x = num_of(a), y = num_of(b);
  if (op == "+") return Value::floating(x + y);
  if (op == "-") return Value::floating(x - y);
  if (op == "*") return Value::floating(x * y);
  if (op == "//" || op == "%") {
    if (y == 0) fail("float division or modulo by zero");
    const double q = std::floor(x / y);
    return Value::floating(op == "//" ? q : x - q * y);
  }
  if (op == "**") return Value::floating(std::pow(x, y));
  fail("unknown operator '{}'", op);
}

// Python-style index normalisation for item access; false when out of range.
bool normalize_index(int64_t& i, int64_t n) {
  if (i < 0) i += n;
  return i >= 0 && i < n;
}

// Python slice indices for length n.
std::vector<int64_t> slice_indices(int64_t n, const Value& start, const Value& stop, const Value& step) {
  const int64_t st = step.is_none() || step.is_undefined() ? 1 : int_of(step);
  if (st == 0) fail("slice step cannot be zero");
  const auto clamp = [&](const Value& v, int64_t dflt) {
    if (v.is_none() || v.is_undefined()) return dflt;
    int64_t i = int_of(v);
    if (i < 0) {
      i += n;
      if (i < 0) i = st < 0 ? -1 : 0;
    } else if (i >= n) {
      i = st < 0 ? n - 1 : n;
    }
    return i;
  };
  const int64_t b = clamp(start, st < 0 ? n - 1 : 0);
  const int64_t e = clamp(stop, st < 0 ? -1 : n);
  std::vector<int64_t> idx;
  // A step past the remaining range ends the walk (i + st would overflow for a step near 2^63).
  for (int64_t i = b; st > 0 ? i < e : i > e;) {
    idx.push_back(i);
    if (__builtin_add_overflow(i, st, &i)) break;
  }
  return idx;
}

List iterate(const Value& v) {
  switch (v.kind()) {
    case Kind::list: return v.items();
    case Kind::dict: {
      List keys;
      for (const auto& kv : v.entries().entries) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case Kind::string: {
      List chars;
      const std::string& s = v.as_string();
      for (size_t i = 0; i < s.size();) {
        const size_t b = i;
        next_code_point(s, i);
        chars.push_back(Value::string(s.substr(b, i - b)));
      }
      return chars;
    }
    case Kind::undefined: return {};
    default: fail("'{}' object is not iterable", v.type_name());
  }
}

int64_t py_len(const Value& v) {
  switch (v.kind()) {
    case Kind::string: return code_point_length(v.as_string());
    case Kind::list: return static_cast<int64_t>(v.items().size());
    case Kind::dict: return static_cast<int64_t>(v.entries().entries.size());
    case Kind::undefined: return 0;
    default: fail("object of type '{}' has no len()", v.type_name());
  }
}

Value method(const std::string& name, std::function<Value(CallArgs&)> fn) {
  return Value::callable(name, std::move(fn));
}

// `obj.name` for Python objects: methods of str / dict / list, dict keys, namespace attributes.
Value get_attribute(const Value& obj, const std::string& name) {
  if (obj.is_string()) {
    const std::string s = obj.as_string();
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const StripSide side = name == "strip" ? StripSide::both : name == "lstrip" ? StripSide::left : StripSide::right;
      return method(name, [s, side](CallArgs& a) { return Value::string(py_strip(s, a.get(0, "chars"), side)); });
    }
    if (name == "split" || name == "rsplit") {
      const bool right = name == "rsplit";
      return method(name, [s, right](CallArgs& a) {
        const Value sep = a.get(0, "sep");
        const Value ms = a.get(1, "maxsplit");
        const int64_t maxsplit = ms.is_undefined() ? -1 : int_of(ms);
        std::vector<std::string> parts;
        if (right && maxsplit >= 0 && sep.is_string()) {
          // rsplit with a limit: split from the right
          std::string rest = s;
          std::vector<std::string> rev;
          while (static_cast<int64_t>(rev.size()) < maxsplit) {
            const size_t p = rest.rfind(sep.as_string());
            if (p == std::string::npos) break;
            rev.push_back(rest.substr(p + sep.as_string().size()));
            rest.resize(p);
          }
          parts.push_back(rest);
          parts.insert(parts.end(), rev.rbegin(), rev.rend());
        } else {
          parts = py_split(s, sep, right ? -1 : maxsplit);
        }
        List out;
        for (auto& p : parts) out.push_back(Value::string(std::move(p)));
        return Value::list(std::move(out));
      });
    }
    if (name == "startswith" || name == "endswith") {
      const bool starts = name == "startswith";
      return method(name, [s, starts](CallArgs& a) {
        const Value p = a.get(0, "prefix");
        List options = p.is_list() ? p.items() : List{p};
        for (const auto& o : options) {
          if (!o.is_string()) fail("{} first arg must be str or a tuple of str", starts ? "startswith" : "endswith");
          const std::string& x = o.as_string();
          if (x.size() <= s.size() && (starts ? s.compare(0, x.size(), x) == 0
                                              : s.compare(s.size() - x.size(), x.size(), x) == 0))
            return Value::boolean(true);
        }
        return Value::boolean(false);
      });
    }
    if (name == "upper" || name == "lower")
      return method(name, [s, up = name == "upper"](CallArgs&) { return Value::string(map_case(s, up)); });
    if (name == "title") return method(name, [s](CallArgs&) { return Value::string(py_title(s)); });
    if (name == "capitalize") return method(name, [s](CallArgs&) { return Value::string(py_capitalize(s)); });
    if (name == "replace")
      return method(name, [s](CallArgs& a) {
        const Value c = a.get(2, "count");
        return Value::string(py_replace(s, a.get(0, "old").str(), a.get(1, "new").str(), c.is_undefined() ? -1 : int_of(c)));
      });
    if (name == "find" || name == "rfind" || name == "index" || name == "rindex")
      return method(name, [s, name](CallArgs& a) {
        const std::string sub = a.get(0, "sub").str();
        const size_t p = name[0] == 'r' ? s.rfind(sub) : s.find(sub);
        if (p == std::string::npos) {
          if (name.find("index") != std::string::npos) fail("substring not found");
          return Value::integer(-1);
        }
        return Value::integer(code_point_length(std::string_view(s).substr(0, p)));
      });
    if (name == "count")
      return method(name, [s](CallArgs& a) {
        const std::string sub = a.get(0, "sub").str();
        if (sub.empty()) return Value::integer(code_point_length(s) + 1);
        int64_t n = 0;
        for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
        return Value::integer(n);
      });
    if (name == "join")
      return method(name, [s](CallArgs& a) {
        std::string out;
        bool first = true;
        for (const auto& v : iterate(a.get(0, "iterable"))) {
          if (!v.is_string()) fail("sequence item: expected str instance, {} found", v.type_name());
          if (!first) out += s;
          first = false;
          out += v.as_string();
          check_string_size(out.size(), "join");
        }
        return Value::string(std::move(out));
      });
    if (name == "splitlines")
      return method(name, [s](CallArgs&) {
        List out;
        size_t start = 0;
        for (size_t i = 0; i < s.size(); ++i) {
          if (s[i] == '\n' || s[i] == '\r') {
            out.push_back(Value::string(s.substr(start, i - start)));
            if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
            start = i + 1;
          }
        }
        if (start < s.size()) out.push_back(Value::string(s.substr(start)));
        return Value::list(std::move(out));
      });
    if (name == "isdigit" || name == "isspace" || name == "isalpha" || name == "isalnum" || name == "islower" ||
        name == "isupper")
      return method(name, [s, name](CallArgs&) {
        if (s.empty()) return Value::boolean(false);
        bool cased = false;
        for (size_t i = 0; i < s.size();) {
          const char32_t c = next_code_point(s, i);
          const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
          const bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
          const bool digit = cat == UTF8PROC_CATEGORY_ND;
          if (name == "isdigit" && !digit) return Value::boolean(false);
          if (name == "isspace" && !py_isspace(c)) return Value::boolean(false);
          if (name == "isalpha" && !letter) return Value::boolean(false);
          if (name == "isalnum" && !letter && !digit) return Value::boolean(false);
          if (name == "islower" && cat == UTF8PROC_CATEGORY_LU) return Value::boolean(false);
          if (name == "isupper" && cat == UTF8PROC_CATEGORY_LL) return Value::boolean(false);
          if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL) cased = true;
        }
        if (name == "islower" || name == "isupper") return Value::boolean(cased);
        return Value::boolean(true);
      });
    return Value();
  }
  if (obj.is_dict()) {
    const Dict& d = obj.entries();
    if (!d.is_namespace) {
      if (name == "items" || name == "keys" || name == "values") {
        return method(name, [obj, name](CallArgs&) {
          List out;
          for (const auto& [k, v] : obj.entries().entries) {
            if (name == "items") out.push_back(Value::tuple({Value::string(k), v}));
            else if (name == "keys") out.push_back(Value::string(k));
            else out.push_back(v);
          }
          return Value::list(std::move(out));
        });
      }
      if (name == "get") {
        return method(name, [obj](CallArgs& a) {
          const Value k = a.get(0, "key");
          const Value* v = k.is_string() ? obj.entries().find(k.as_string()) : nullptr;
          return v ? *v : a.get(1, "default", Value::none());
        });
      }
      if (name == "update" || name == "pop" || name == "setdefault" || name == "clear" || name == "popitem")
        fail("access to attribute '{}' of 'dict' object is unsafe", name);
    }
    const Value* v = d.find(name);
    return v ? *v : Value();
  }
  if (obj.is_list()) {
    if (name == "append" || name == "extend" || name == "pop" || name == "insert" || name == "remove" ||
        name == "clear" || name == "sort" || name == "reverse")
      fail("access to attribute '{}' of 'list' object is unsafe", name);
    if (name == "index")
      return method(name, [obj](CallArgs& a) {
        const List& items = obj.items();
        const Value x = a.get(0, "value");
        for (size_t i = 0; i < items.size(); ++i)
          if (py_equal(items[i], x)) return Value::integer(static_cast<int64_t>(i));
        fail("value is not in list");
      });
    if (name == "count")
      return method(name, [obj](CallArgs& a) {
        int64_t n = 0;
        for (const auto& v : obj.items()) n += py_equal(v, a.get(0, "value"));
        return Value::integer(n);
      });
    return Value();
  }
  return Value();
}

// `obj[key]` (jinja2: item first, then attribute).
Value get_item(const Value& obj, const Value& key) {
  if (obj.is_dict()) {
    if (key.is_string()) {
      const Value* v = obj.entries().find(key.as_string());
      if (v) return *v;
      return get_attribute(obj, key.as_string());
    }
    return Value();
  }
  if (obj.is_list() && is_intlike(key)) {
    int64_t i = int_of(key);
    const List& items = obj.items();
    return normalize_index(i, static_cast<int64_t>(items.size())) ? items[static_cast<size_t>(i)] : Value();
  }
  if (obj.is_string() && is_intlike(key)) {
    const auto cps = code_points(obj.as_string());
    int64_t i = int_of(key);
    if (!normalize_index(i, static_cast<int64_t>(cps.size()))) return Value();
    return Value::string(from_code_points(cps, static_cast<size_t>(i), static_cast<size_t>(i) + 1));
  }
  if (key.is_string()) return get_attribute(obj, key.as_string());
  return Value();
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// Dotted attribute path as jinja2's make_attrgetter: "a.b" or "0".
Value get_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    // An index past int64 (jinja2 makes it a Python int) is out of range of anything: the lookup is undefined.
    int64_t index = std::numeric_limits<int64_t>::max();
    if (numeric) std::from_chars(part.data(), part.data() + part.size(), index);
    cur = numeric ? get_item(cur, Value::integer(index)) : get_item(cur, Value::string(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

struct Frame {
  std::map<std::string, Value, std::less<>> vars;
  std::shared_ptr<Frame> parent;
  Value lookup(const std::string& name) const {
    for (const Frame* f = this; f; f = f->parent.get()) {
      auto it = f->vars.find(name);
      if (it != f->vars.end()) return it->second;
    }
    return Value();
  }
};
using FramePtr = std::shared_ptr<Frame>;

enum class Flow { normal, break_, continue_ };

class Renderer {
 public:
  Renderer(const detail::TemplateAstData& ast, RenderResult& result) : ast_(ast), result_(result) {
    out_ = &result_.text;
  }

  void run(const Value& context) {
    auto globals = std::make_shared<Frame>();
    add_globals(*globals);
    for (const auto& [k, v] : context.entries().entries) globals->vars[k] = v;
    auto root = std::make_shared<Frame>();
    root->parent = globals;
    root_ = root;
    exec_body(ast_.body, root);
  }

 private:
  const detail::TemplateAstData& ast_;
  RenderResult& result_;
  std::string* out_;
  FramePtr root_;

  [[noreturn]] void error(int line, const std::string& what) const {
    fail("{}: line {}: {}", ast_.name, line, what);
  }

  template <typename Fn>
  auto at_line(int line, Fn&& fn) -> decltype(fn()) {
    try {
      return fn();
    } catch (const Error& e) {
      const std::string msg = e.what();
      if (msg.rfind(ast_.name + ":", 0) == 0) throw;
      error(line, msg);
    }
  }

  static void add_globals(Frame& g) {
    g.vars["raise_exception"] = Value::callable("raise_exception", [](CallArgs& a) -> Value {
      fail("raise_exception: {}", a.get(0, "message").str());
    });
    g.vars["namespace"] = Value::callable("namespace", [](CallArgs& a) {
      Value ns = Value::dict();
      ns.entries().is_namespace = true;
      for (const auto& p : a.positional) {
        if (!p.is_dict()) fail("namespace() takes keyword arguments or a dict");
        for (const auto& [k, v] : p.entries().entries) ns.set(k, v);
      }
      for (const auto& [k, v] : a.keywords) ns.set(k, v);
      return ns;
    });
    g.vars["dict"] = Value::callable("dict", [](CallArgs& a) {
      Value d = Value::dict();
      for (const auto& p : a.positional) {
        if (p.is_dict()) {
          for (const auto& [k, v] : p.entries().entries) d.set(k, v);
        } else {
          for (const auto& kv : iterate(p)) d.set(get_item(kv, Value::integer(0)).str(), get_item(kv, Value::integer(1)));
        }
      }
      for (const auto& [k, v] : a.keywords) d.set(k, v);
      return d;
    });
    g.vars["range"] = Value::callable("range", [](CallArgs& a) {
      int64_t start = 0, stop = 0, step = 1;
      if (a.positional.size() == 1) {
        stop = int_of(a.positional[0]);
      } else if (a.positional.size() >= 2) {
        start = int_of(a.positional[0]);
        stop = int_of(a.positional[1]);
        if (a.positional.size() > 2) step = int_of(a.positional[2]);
      } else {
        fail("range expected at least 1 argument");
      }
      if (step == 0) fail("range() arg 3 must not be zero");
      List out;
      for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
        out.push_back(Value::integer(i));
        if (out.size() > 100000) fail("range() too large (sandbox limit 100000)");
        if (__builtin_add_overflow(i, step, &i)) break;  // the next value lies past int64: the range ends
      }
      return Value::list(std::move(out));
    });
    g.vars["strftime_now"] = Value::callable("strftime_now", [](CallArgs& a) {
      const std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[256];
      const size_t n = std::strftime(buf, sizeof buf, a.get(0, "format").str().c_str(), &tm);
      return Value::string(std::string(buf, n));
    });
  }

  void write(const std::string& s) {
    check_string_size(out_->size() + s.size(), "the rendered text");
    out_->append(s);
  }

  // ---- statements ------------------------------------------------------------------------------------------
  Flow exec_body(const Body& body, const FramePtr& frame) {
    for (const auto& n : body) {
      const Flow f = exec(*n, frame);
      if (f != Flow::normal) return f;
    }
    return Flow::normal;
  }

  std::string capture(const Body& body, const FramePtr& frame) {
    std::string buf;
    std::string* saved = out_;
    out_ = &buf;
    try {
      exec_body(body, frame);
    } catch (...) {
      out_ = saved;
      throw;
    }
    out_ = saved;
    return buf;
  }

  void assign(const Node& n, const FramePtr& frame, const std::vector<std::string>& targets, const Value& v) {
    if (targets.size() == 1) {
      frame->vars[targets[0]] = v;
      return;
    }
    const List items = iterate(v);
    if (items.size() != targets.size())
      error(n.line, fmt::format("cannot unpack {} values into {} names", items.size(), targets.size()));
    for (size_t i = 0; i < targets.size(); ++i) frame->vars[targets[i]] = items[i];
  }

  Flow exec(const Node& n, const FramePtr& frame) {
    switch (n.kind) {
      case Node::Kind::text: write(n.text); return Flow::normal;
      case Node::Kind::output: {
        const Value v = eval(*n.expr, frame);
        write(v.str());
        return Flow::normal;
      }
      case Node::Kind::if_: {
        for (const auto& [cond, body] : n.branches)
          if (eval(*cond, frame).truthy()) return exec_body(body, frame);
        return exec_body(n.else_body, frame);
      }
      case Node::Kind::for_: return exec_for(n, frame);
      case Node::Kind::set: {
        const Value v = eval(*n.expr, frame);
        if (n.attr_target) {
          const Value ns = frame->lookup(n.targets[0]);
          if (!ns.is_dict() || !ns.entries().is_namespace)
            error(n.line, fmt::format("cannot assign attribute on non-namespace object '{}'", n.targets[0]));
          ns.set(n.targets[1], v);
        } else {
          assign(n, frame, n.targets, v);
        }
        return Flow::normal;
      }
      case Node::Kind::set_block: {
        Value v = Value::string(capture(n.body, frame));
        for (const auto& f : n.filters) v = apply_filter_expr(*f, v, frame);
        frame->vars[n.targets[0]] = v;
        return Flow::normal;
      }
      case Node::Kind::macro: {
        frame->vars[n.macro_name] = make_macro(n, frame, nullptr);
        return Flow::normal;
      }
      case Node::Kind::call_block: {
        const Value caller = make_macro(n, frame, nullptr, "caller");
        write(call_expr(*n.expr, frame, &caller).str());
        return Flow::normal;
      }
      case Node::Kind::filter_block: {
        Value v = Value::string(capture(n.body, frame));
        for (const auto& f : n.filters) v = apply_filter_expr(*f, v, frame);
        write(v.str());
        return Flow::normal;
      }
      case Node::Kind::generation: {
        const bool top = out_ == &result_.text;
        const size_t start = out_->size();
        const Flow f = exec_body(n.body, frame);
        if (top) result_.generation_spans.emplace_back(start, out_->size());
        return f;
      }
      case Node::Kind::break_: return Flow::break_;
      case Node::Kind::continue_: return Flow::continue_;
    }
    return Flow::normal;
  }

  Flow exec_for(const Node& n, const FramePtr& frame) {
    const Value seq = eval(*n.expr, frame);
    List items = at_line(n.line, [&] { return iterate(seq); });
    if (n.loop_filter) {
      List kept;
      for (const auto& it : items) {
        auto f = std::make_shared<Frame>();
        f->parent = frame;
        assign(n, f, n.targets, it);
        if (eval(*n.loop_filter, f).truthy()) kept.push_back(it);
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec_body(n.else_body, frame);
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      auto f = std::make_shared<Frame>();
      f->parent = frame;
      Value loop = Value::dict();
      loop.set("index0", Value::integer(i));
      loop.set("index", Value::integer(i + 1));
      loop.set("revindex0", Value::integer(len - i - 1));
      loop.set("revindex", Value::integer(len - i));
      loop.set("first", Value::boolean(i == 0));
      loop.set("last", Value::boolean(i == len - 1));
      loop.set("length", Value::integer(len));
      // depth counts recursive loop() calls only, so it is 1 in every non-recursive loop, nested or not
      loop.set("depth", Value::integer(1));
      loop.set("depth0", Value::integer(0));
      if (i > 0) loop.set("previtem", items[static_cast<size_t>(i - 1)]);
      if (i + 1 < len) loop.set("nextitem", items[static_cast<size_t>(i + 1)]);
      loop.set("cycle", Value::callable("cycle", [i](CallArgs& a) {
                 if (a.positional.empty()) fail("no items for cycling given");
                 return a.positional[static_cast<size_t>(i) % a.positional.size()];
               }));
      f->vars["loop"] = loop;
      assign(n, f, n.targets, items[static_cast<size_t>(i)]);
      if (exec_body(n.body, f) == Flow::break_) break;
    }
    return Flow::normal;
  }

  Value make_macro(const Node& n, const FramePtr& def_frame, const Value* caller, std::string name = "") {
    (void)caller;
    const Node* node = &n;
    if (name.empty()) name = n.macro_name;
    // The frame is held weakly: the macro is stored in that frame, and a strong reference would be a cycle.
    std::weak_ptr<Frame> weak_frame = def_frame;
    return Value::callable(name, [this, node, weak_frame, name](CallArgs& a) {
      auto f = std::make_shared<Frame>();
      f->parent = weak_frame.lock();
      if (!f->parent) fail("macro '{}' called after the block that defined it ended", name);
      for (size_t i = 0; i < node->params.size(); ++i) {
        const std::string& p = node->params[i];
        if (a.has(i, p)) {
          f->vars[p] = a.get(i, p);
        } else if (node->defaults[i]) {
          f->vars[p] = eval(*node->defaults[i], f);
        } else {
          f->vars[p] = Value();
        }
      }
      for (const auto& [k, v] : a.keywords)
        if (k == "caller") f->vars["caller"] = v;
      return Value::string(capture(node->body, f));
    });
  }

  // ---- expressions -----------------------------------------------------------------------------------------
  Value eval(const Expr& e, const FramePtr& frame) {
    return at_line(e.line, [&] { return eval_inner(e, frame); });
  }

  static std::string describe(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::name: return e.name;
      case Expr::Kind::attr: return describe(*e.args[0]) + "." + e.name;
      case Expr::Kind::item: return describe(*e.args[0]) + "[...]";
      default: return "expression";
    }
  }

  Value eval_inner(const Expr& e, const FramePtr& frame) {
    switch (e.kind) {
      case Expr::Kind::literal: return e.value;
      case Expr::Kind::name: return frame->lookup(e.name);
      case Expr::Kind::list:
      case Expr::Kind::tuple: {
        List items;
        for (const auto& a : e.args) items.push_back(eval(*a, frame));
        return e.kind == Expr::Kind::tuple ? Value::tuple(std::move(items)) : Value::list(std::move(items));
      }
      case Expr::Kind::dict: {
        Value d = Value::dict();
        for (const auto& [k, v] : e.pairs) d.set(eval(*k, frame).str(), eval(*v, frame));
        return d;
      }
      case Expr::Kind::attr: {
        const Value obj = eval(*e.args[0], frame);
        if (obj.is_undefined()) fail("'{}' is undefined", describe(*e.args[0]));
        return get_attribute(obj, e.name);
      }
      case Expr::Kind::item: {
        const Value obj = eval(*e.args[0], frame);
        if (obj.is_undefined()) fail("'{}' is undefined", describe(*e.args[0]));
        return get_item(obj, eval(*e.args[1], frame));
      }
      case Expr::Kind::slice: {
        const Value obj = eval(*e.args[0], frame);
        const auto part = [&](size_t i) { return e.args[i] ? eval(*e.args[i], frame) : Value::none(); };
        const Value b = part(1), en = part(2), st = part(3);
        if (obj.is_string()) {
          const auto cps = code_points(obj.as_string());
          std::string out;
          for (int64_t i : slice_indices(static_cast<int64_t>(cps.size()), b, en, st))
            append_utf8(out, cps[static_cast<size_t>(i)]);
          return Value::string(std::move(out));
        }
        if (obj.is_list()) {
          const List& items = obj.items();
          List out;
          for (int64_t i : slice_indices(static_cast<int64_t>(items.size()), b, en, st))
            out.push_back(items[static_cast<size_t>(i)]);
          return Value::list(std::move(out));
        }
        if (obj.is_undefined()) fail("'{}' is undefined", describe(*e.args[0]));
        fail("'{}' object is not subscriptable", obj.type_name());
      }
      case Expr::Kind::call: return call_expr(e, frame, nullptr);
      case Expr::Kind::filter: return apply_filter_expr(e, eval(*e.args[0], frame), frame);
      case Expr::Kind::test: {
        const Value v = eval(*e.args[0], frame);
        CallArgs args = eval_args(e, frame, 1);
        const bool r = apply_test(e.name, v, args);
        return Value::boolean(e.negated ? !r : r);
      }
      case Expr::Kind::unary: {
        const Value v = eval(*e.args[0], frame);
        if (e.name == "not") return Value::boolean(!v.truthy());
        if (!is_num(v)) fail("bad operand type for unary {}: '{}'", e.name, v.type_name());
        if (e.name == "+") return is_intlike(v) ? Value::integer(int_of(v)) : v;
        if (is_intlike(v) && int_of(v) == std::numeric_limits<int64_t>::min())
          fail("integer overflow: -({}) does not fit in 64 bits", int_of(v));
        return is_intlike(v) ? Value::integer(-int_of(v)) : Value::floating(-v.as_double());
      }
      case Expr::Kind::binary: {
        if (e.name == "and") {
          Value a = eval(*e.args[0], frame);
          return a.truthy() ? eval(*e.args[1], frame) : a;
        }
        if (e.name == "or") {
          Value a = eval(*e.args[0], frame);
          return a.truthy() ? a : eval(*e.args[1], frame);
        }
        const Value a = eval(*e.args[0], frame);
        const Value b = eval(*e.args[1], frame);
        if (e.name == "~") {
          std::string joined = a.str();
          const std::string right = b.str();
          check_string_size(joined.size() + right.size(), "'~'");
          return Value::string(joined + right);
        }
        return arithmetic(e.name, a, b);
      }
      case Expr::Kind::compare: {
        Value left = eval(*e.args[0], frame);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.args[i + 1], frame);
          const std::string& op = e.ops[i];
          bool r;
          if (op == "==") r = py_equal(left, right);
          else if (op == "!=") r = !py_equal(left, right);
          else if (op == "in") r = py_contains(right, left);
          else if (op == "not in") r = !py_contains(right, left);
          else {
            const int c = py_compare(left, right, op);
            r = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
          }
          if (!r) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::Kind::cond: {
        if (eval(*e.args[0], frame).truthy()) return eval(*e.args[1], frame);
        return e.args[2] ? eval(*e.args[2], frame) : Value();
      }
    }
    return Value();
  }

  CallArgs eval_args(const Expr& e, const FramePtr& frame, size_t first) {
    CallArgs args;
    for (size_t i = first; i < e.args.size(); ++i) args.positional.push_back(eval(*e.args[i], frame));
    for (const auto& [k, v] : e.kwargs) args.keywords.emplace_back(k, eval(*v, frame));
    return args;
  }

  Value call_expr(const Expr& e, const FramePtr& frame, const Value* caller) {
    const Value callee = eval(*e.args[0], frame);
    CallArgs args = eval_args(e, frame, 1);
    if (caller) args.keywords.emplace_back("caller", *caller);
    if (callee.is_undefined()) fail("'{}' is undefined", describe(*e.args[0]));
    return callee.function().fn(args);
  }

  Value apply_filter_expr(const Expr& f, const Value& input, const FramePtr& frame) {
    CallArgs args = eval_args(f, frame, 1);
    return at_line(f.line, [&] { return apply_filter(f.name, input, args); });
  }

  // Runs a test by name (select / reject / selectattr use it too).
  bool apply_test(const std::string& name, const Value& v, CallArgs& a) {
    const Value arg = a.get(0, "value");
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "number") return is_num(v);
    if (name == "integer") return v.kind() == Kind::integer;
    if (name == "float") return v.kind() == Kind::floating;
    if (name == "boolean") return v.kind() == Kind::boolean;
    if (name == "true") return v.kind() == Kind::boolean && v.as_bool();
    if (name == "false") return v.kind() == Kind::boolean && !v.as_bool();
    if (name == "mapping") return v.is_dict();
    if (name == "sequence") return v.is_list() || v.is_string() || v.is_dict();
    if (name == "iterable") return v.is_list() || v.is_string() || v.is_dict() || v.is_undefined();
    if (name == "callable") return v.is_callable();
    if (name == "odd" || name == "even") {
      if (!is_intlike(v)) fail("'{}' test needs an integer, got {}", name, v.type_name());
      return (int_of(v) % 2 != 0) == (name == "odd");
    }
    if (name == "divisibleby") {
      const int64_t d = int_of(arg);
      if (d == 0) fail("integer division or modulo by zero");
      return int_of(v) % d == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==") return py_equal(v, arg);
    if (name == "ne" || name == "!=") return !py_equal(v, arg);
    if (name == "lt" || name == "lessthan" || name == "<") return py_compare(v, arg, "<") < 0;
    if (name == "le" || name == "<=") return py_compare(v, arg, "<=") <= 0;
    if (name == "gt" || name == "greaterthan" || name == ">") return py_compare(v, arg, ">") > 0;
    if (name == "ge" || name == ">=") return py_compare(v, arg, ">=") >= 0;
    if (name == "in") return py_contains(arg, v);
    if (name == "sameas") {
      if (v.kind() != arg.kind()) return false;
      if (v.is_none() || v.is_undefined()) return true;
      if (v.kind() == Kind::boolean) return v.as_bool() == arg.as_bool();
      if (v.is_list() || v.is_dict()) return py_equal(v, arg) && (v.is_list() ? &v.items() == &arg.items() : &v.entries() == &arg.entries());
      return py_equal(v, arg);
    }
    if (name == "lower") return v.is_string() && map_case(v.as_string(), false) == v.as_string();
    if (name == "upper") return v.is_string() && map_case(v.as_string(), true) == v.as_string();
    if (name == "escaped") return false;
    fail("no test named '{}'", name);
  }

  // select / reject / selectattr / rejectattr: args after the attribute are a test name and its arguments.
  List select_items(const Value& input, CallArgs& a, bool by_attr, bool keep) {
    size_t first = 0;
    std::string attr;
    if (by_attr) {
      attr = a.get(0, "attribute").str();
      first = 1;
    }
    const bool has_test = a.positional.size() > first;
    std::string test = has_test ? a.positional[first].str() : "";
    CallArgs test_args;
    for (size_t i = first + 1; i < a.positional.size(); ++i) test_args.positional.push_back(a.positional[i]);
    List out;
    for (const auto& item : iterate(input)) {
      const Value v = by_attr ? get_path(item, attr) : item;
      const bool r = has_test ? apply_test(test, v, test_args) : v.truthy();
      if (r == keep) out.push_back(item);
    }
    return out;
  }

  Value apply_filter(const std::string& name, const Value& v, CallArgs& a) {
    if (name == "trim") return Value::string(py_strip(v.str(), a.get(0, "chars"), StripSide::both));
    if (name == "length" || name == "count") return Value::integer(py_len(v));
    if (name == "upper" || name == "lower") return Value::string(map_case(v.str(), name == "upper"));
    if (name == "title") return Value::string(py_title(v.str()));
    if (name == "capitalize") return Value::string(py_capitalize(v.str()));
    if (name == "replace") {
      const Value c = a.get(2, "count");
      return Value::string(py_replace(v.str(), a.get(0, "old").str(), a.get(1, "new").str(),
                                      c.is_undefined() || c.is_none() ? -1 : int_of(c)));
    }
    if (name == "tojson") {
      // transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
      const Value indent = a.get(1, "indent");
      const Value sort = a.get(3, "sort_keys");
      return Value::string(v.to_json(indent.is_number() ? static_cast<int>(int_of(indent)) : -1, sort.truthy()));
    }
    if (name == "items") {
      if (v.is_undefined()) return Value::list();
      if (!v.is_dict()) fail("items filter: expected a mapping, got {}", v.type_name());
      List out;
      for (const auto& [k, x] : v.entries().entries) out.push_back(Value::tuple({Value::string(k), x}));
      return Value::list(std::move(out));
    }
    if (name == "dictsort") {
      if (!v.is_dict()) fail("dictsort filter: expected a mapping, got {}", v.type_name());
      List out;
      for (const auto& [k, x] : v.entries().entries) out.push_back(Value::tuple({Value::string(k), x}));
      std::stable_sort(out.begin(), out.end(), [](const Value& x, const Value& y) {
        return map_case(x.items()[0].str(), false) < map_case(y.items()[0].str(), false);
      });
      return Value::list(std::move(out));
    }
    if (name == "join") {
      const std::string sep = a.get(0, "d", Value::string("")).str();
      const Value attr = a.get(1, "attribute");
      std::string out;
      bool first = true;
      for (const auto& item : iterate(v)) {
        if (!first) out += sep;
        first = false;
        out += (attr.is_undefined() ? item : get_path(item, attr.str())).str();
        check_string_size(out.size(), "join");
      }
      return Value::string(std::move(out));
    }
    if (name == "default" || name == "d") {
      const bool boolean = a.get(1, "boolean").truthy();
      if (v.is_undefined() || (boolean && !v.truthy())) return a.get(0, "default_value", Value::string(""));
      return v;
    }
    if (name == "first" || name == "last") {
      const List items = iterate(v);
      if (items.empty()) return Value();
      return name == "first" ? items.front() : items.back();
    }
    if (name == "list") return Value::list(iterate(v));
    if (name == "string") return Value::string(v.str());
    if (name == "safe" || name == "forceescape") return v;
    if (name == "e" || name == "escape") return Value::string(html_escape(v.str()));
    if (name == "int") {
      // A float past int64's range (or NaN) has no int64 value: the default, as for text that is no number.
      auto truncate = [&](double d) {
        return std::isfinite(d) && std::fabs(d) < 9.2e18 ? Value::integer(static_cast<int64_t>(d))
                                                          : a.get(0, "default", Value::integer(0));
      };
      if (is_num(v)) return v.kind() == Kind::floating ? truncate(v.as_double()) : Value::integer(int_of(v));
      try {
        size_t used = 0;
        const std::string s = py_strip(v.str(), Value(), StripSide::both);
        const int64_t i = std::stoll(s, &used);
        if (used == s.size()) return Value::integer(i);
        return truncate(std::stod(s));
      } catch (const std::exception&) {
        return a.get(0, "default", Value::integer(0));
      }
    }
    if (name == "float") {
      if (is_num(v)) return Value::floating(num_of(v));
      try {
        return Value::floating(std::stod(v.str()));
      } catch (const std::exception&) {
        return a.get(0, "default", Value::floating(0.0));
      }
    }
    if (name == "abs") {
      if (is_intlike(v) && int_of(v) == std::numeric_limits<int64_t>::min())
        fail("abs filter: integer overflow: |{}| does not fit in 64 bits", int_of(v));
      if (is_intlike(v)) return Value::integer(std::llabs(int_of(v)));
      return Value::floating(std::fabs(num_of(v)));
    }
    if (name == "round") {
      const int64_t precision = int_of(a.get(0, "precision", Value::integer(0)));
      const std::string method = a.get(1, "method", Value::string("common")).str();
      const double scale = std::pow(10.0, static_cast<double>(precision));
      double x = num_of(v) * scale;
      x = method == "ceil" ? std::ceil(x) : method == "floor" ? std::floor(x) : std::round(x);
      return Value::floating(x / scale);
    }
    if (name == "reverse") {
      if (v.is_string()) {
        auto cps = code_points(v.as_string());
        std::reverse(cps.begin(), cps.end());
        return Value::string(from_code_points(cps, 0, cps.size()));
      }
      List items = iterate(v);
      std::reverse(items.begin(), items.end());
      return Value::list(std::move(items));
    }
    if (name == "sort") {
      List items = iterate(v);
      const bool reverse = a.get(0, "reverse").truthy();
      const bool case_sensitive = a.get(1, "case_sensitive").truthy();
      const Value attr = a.get(2, "attribute");
      const auto key = [&](const Value& x) {
        Value k = attr.is_undefined() ? x : get_path(x, attr.str());
        if (!case_sensitive && k.is_string()) k = Value::string(map_case(k.as_string(), false));
        return k;
      };
      std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        return reverse ? py_compare(key(y), key(x), "<") < 0 : py_compare(key(x), key(y), "<") < 0;
      });
      return Value::list(std::move(items));
    }
    if (name == "unique") {
      List out;
      for (const auto& x : iterate(v)) {
        bool seen = false;
        for (const auto& y : out) seen = seen || py_equal(x, y);
        if (!seen) out.push_back(x);
      }
      return Value::list(std::move(out));
    }
    if (name == "min" || name == "max") {
      const List items = iterate(v);
      if (items.empty()) return Value();
      Value best = items[0];
      for (const auto& x : items)
        if ((name == "min" ? py_compare(x, best, "<") : py_compare(best, x, "<")) < 0) best = x;
      return best;
    }
    if (name == "sum") {
      Value total = a.get(1, "start", Value::integer(0));
      const Value attr = a.get(0, "attribute");
      for (const auto& x : iterate(v)) total = arithmetic("+", total, attr.is_undefined() ? x : get_path(x, attr.str()));
      return total;
    }
    if (name == "wordcount") return Value::integer(static_cast<int64_t>(py_split(v.str(), Value(), -1).size()));
    if (name == "indent") {
      const Value w = a.get(0, "width", Value::integer(4));
      const std::string pad = w.is_string() ? w.as_string() : std::string(static_cast<size_t>(int_of(w)), ' ');
      const bool first = a.get(1, "first").truthy();
      const bool blank = a.get(2, "blank").truthy();
      const std::string s = v.str();
      std::string out;
      size_t start = 0;
      bool is_first = true;
      while (true) {
        const size_t nl = s.find('\n', start);
        const std::string line = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        if ((!is_first || first) && (blank || !line.empty())) out += pad;
        out += line;
        is_first = false;
        if (nl == std::string::npos) break;
        out += '\n';
        start = nl + 1;
      }
      return Value::string(std::move(out));
    }
    if (name == "select" || name == "reject") return Value::list(select_items(v, a, false, name == "select"));
    if (name == "selectattr" || name == "rejectattr")
      return Value::list(select_items(v, a, true, name == "selectattr"));
    if (name == "map") {
      List out;
      const Value attr = a.get(99, "attribute");
      if (!attr.is_undefined()) {
        const Value dflt = a.get(99, "default");
        for (const auto& x : iterate(v)) {
          Value r = get_path(x, attr.str());
          out.push_back(r.is_undefined() && !dflt.is_undefined() ? dflt : r);
        }
        return Value::list(std::move(out));
      }
      if (a.positional.empty()) fail("map filter needs a filter name or attribute=");
      const std::string filter = a.positional[0].str();
      CallArgs rest;
      rest.positional.assign(a.positional.begin() + 1, a.positional.end());
      rest.keywords = a.keywords;
      for (const auto& x : iterate(v)) out.push_back(apply_filter(filter, x, rest));
      return Value::list(std::move(out));
    }
    if (name == "attr") return get_attribute(v, a.get(0, "name").str());
    if (name == "batch") {
      const int64_t size = int_of(a.get(0, "linecount"));
      if (size <= 0) fail("batch size must be positive");
      List out, cur;
      for (const auto& x : iterate(v)) {
        cur.push_back(x);
        if (static_cast<int64_t>(cur.size()) == size) {
          out.push_back(Value::list(std::move(cur)));
          cur.clear();
        }
      }
      if (!cur.empty()) out.push_back(Value::list(std::move(cur)));
      return Value::list(std::move(out));
    }
    if (name == "format") {
      // printf-style with %s / %d / %%, the forms templates use.
      const std::string f = v.str();
      std::string out;
      size_t arg = 0;
      for (size_t i = 0; i < f.size(); ++i) {
        if (f[i] != '%' || i + 1 >= f.size()) {
          out += f[i];
          continue;
        }
        const char c = f[++i];
        if (c == '%') {
          out += '%';
        } else if (c == 's' || c == 'd') {
          if (arg >= a.positional.size()) fail("not enough arguments for format string");
          const Value& x = a.positional[arg++];
          if (c == 'd' && is_num(x) && !is_intlike(x) && !(std::isfinite(num_of(x)) && std::fabs(num_of(x)) < 9.2e18))
            fail("format filter: %d of {} has no 64-bit integer value", x.str());
          out += c == 'd' ? std::to_string(!is_num(x) ? 0 : is_intlike(x) ? int_of(x) : static_cast<int64_t>(num_of(x)))
                          : x.str();
        } else {
          fail("format filter: unsupported conversion '%{}'", c);
        }
      }
      return Value::string(std::move(out));
    }
    fail("no filter named '{}'", name);
  }
};

}  // namespace

Template::Template(std::unique_ptr<TemplateAst> ast) : ast_(std::move(ast)) {}
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;
Template::~Template() = default;

Template Template::parse(std::string_view source, const ParseOptions& opts, std::string name) {
  // Python reads a template as text: bytes that are not UTF-8 never reach jinja2 (a fuzzing find: they made the
  // code-point walk of the string filters read past the end).
  if (const auto bad = find_invalid_utf8(source)) {
    const auto line = 1 + std::count(source.begin(), source.begin() + static_cast<std::ptrdiff_t>(*bad), '\n');
    fail("{}: line {}: the template is not valid UTF-8 (byte {})", name, line, *bad);
  }
  auto ast = std::make_unique<TemplateAst>();
  ast->data = detail::parse_tokens(detail::tokenize(source, opts, name), name);
  return Template(std::move(ast));
}

bool Template::has_generation_blocks() const { return ast_->data.has_generation; }

RenderResult Template::render(const Value& context) const {
  if (!context.is_dict()) fail("{}: render context must be a dict", ast_->data.name);
  RenderResult result;
  Renderer r(ast_->data, result);
  r.run(context);
  return result;
}

}  // namespace cotune::text::jinja
