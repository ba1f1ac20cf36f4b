#include "cli/recipe.h"

#include <toml++/toml.h>

#include <charconv>
#include <cmath>
#include <limits>

#include "base/error.h"
#include "base/log.h"
#include "base/mmap.h"
#include "cli/aliases.h"
#include "cli/did_you_mean.h"

namespace cotune::cli {

std::string kebab(const std::string& key) {
  std::string s = key;
  for (char& c : s)
    if (c == '_') c = '-';
  return s;
}

int64_t parse_int64(const std::string& text, const std::string& where) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data() + (text.starts_with('+') ? 1 : 0), end, v);
  if (ec == std::errc::result_out_of_range)
    fail("{}: {} does not fit a 64-bit integer (range [{}, {}])", where, text, std::numeric_limits<int64_t>::min(),
         std::numeric_limits<int64_t>::max());
  if (ec != std::errc() || p != end || text.empty()) fail("{}: expected an integer, got \"{}\"", where, text);
  return v;
}

uint64_t parse_uint64(const std::string& text, const std::string& where) {
  if (text.starts_with('-')) fail("{}: expected a non-negative integer, got {}", where, text);
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data() + (text.starts_with('+') ? 1 : 0), end, v);
  if (ec == std::errc::result_out_of_range)
    fail("{}: {} does not fit an unsigned 64-bit integer (at most {})", where, text,
         std::numeric_limits<uint64_t>::max());
  if (ec != std::errc() || p != end || text.empty()) fail("{}: expected a non-negative integer, got \"{}\"", where, text);
  return v;
}

double parse_finite(const std::string& text, const std::string& where) {
  double v = 0;
  const char* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data() + (text.starts_with('+') ? 1 : 0), end, v);
  if (ec != std::errc() || p != end || text.empty()) fail("{}: expected a number, got \"{}\"", where, text);
  if (!std::isfinite(v)) fail("{}: expected a finite number, got {}", where, text);
  return v;
}

namespace {

std::string where_of(const toml::node& n, const std::string& file, const std::string& key) {
  const auto& src = n.source();
  return fmt::format("{}:{}: key '{}'", file, src.begin.line, key);
}

// ---- values from flag text ----------------------------------------------------------------------------
template <typename T>
T from_text(const std::string& key, const std::string& text, const std::string& where);

template <>
std::string from_text<std::string>(const std::string& key, const std::string& text, const std::string&) {
  return canonical_value(key, text);
}
template <>
int64_t from_text<int64_t>(const std::string&, const std::string& text, const std::string& where) {
  return parse_int64(text, where);
}
template <>
int from_text<int>(const std::string&, const std::string& text, const std::string& where) {
  const int64_t v = parse_int64(text, where);
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
    fail("{}: {} does not fit a 32-bit integer (at most {})", where, v, std::numeric_limits<int>::max());
  return static_cast<int>(v);
}
template <>
uint64_t from_text<uint64_t>(const std::string&, const std::string& text, const std::string& where) {
  return parse_uint64(text, where);
}
template <>
double from_text<double>(const std::string&, const std::string& text, const std::string& where) {
  return parse_finite(text, where);
}
template <>
float from_text<float>(const std::string&, const std::string& text, const std::string& where) {
  const double v = parse_finite(text, where);
  if (std::fabs(v) > std::numeric_limits<float>::max()) fail("{}: {} does not fit a 32-bit float", where, text);
  return static_cast<float>(v);
}
template <>
bool from_text<bool>(const std::string& key, const std::string& text, const std::string& where) {
  return text.empty() || parse_bool(key, text, where);  // a bare switch
}

// ---- values from TOML -----------------------------------------------------------------------------------
template <typename T>
T toml_get(const std::string& key, const toml::node& n, const std::string& where);

template <>
std::string toml_get<std::string>(const std::string& key, const toml::node& n, const std::string& where) {
  if (n.is_string()) return canonical_value(key, *n.value<std::string>());
  fail("{}: expected a string", where);
}
template <>
int64_t toml_get<int64_t>(const std::string&, const toml::node& n, const std::string& where) {
  if (n.is_integer()) return *n.value<int64_t>();
  fail("{}: expected an integer", where);
}
template <>
int toml_get<int>(const std::string& key, const toml::node& n, const std::string& where) {
  const int64_t v = toml_get<int64_t>(key, n, where);
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
    fail("{}: {} does not fit a 32-bit integer (at most {})", where, v, std::numeric_limits<int>::max());
  return static_cast<int>(v);
}
template <>
uint64_t toml_get<uint64_t>(const std::string& key, const toml::node& n, const std::string& where) {
  int64_t v = toml_get<int64_t>(key, n, where);
  if (v < 0) fail("{}: expected a non-negative integer, got {}", where, v);
  return static_cast<uint64_t>(v);
}
template <>
double toml_get<double>(const std::string&, const toml::node& n, const std::string& where) {
  if (!n.is_floating_point() && !n.is_integer()) fail("{}: expected a number", where);
  const double v = *n.value<double>();
  if (!std::isfinite(v)) fail("{}: expected a finite number, got {}", where, v);
  return v;
}
template <>
float toml_get<float>(const std::string& key, const toml::node& n, const std::string& where) {
  const double v = toml_get<double>(key, n, where);
  if (std::fabs(v) > std::numeric_limits<float>::max()) fail("{}: {} does not fit a 32-bit float", where, v);
  return static_cast<float>(v);
}
template <>
bool toml_get<bool>(const std::string& key, const toml::node& n, const std::string& where) {
  if (n.is_boolean()) return *n.value<bool>();  // value<bool>() would also take an integer
  if (n.is_string()) return parse_bool(key, *n.value<std::string>(), where);  // "unsloth", "true"
  fail("{}: expected true or false", where);
}
template <>
std::vector<std::string> toml_get<std::vector<std::string>>(const std::string&, const toml::node& n,
                                                             const std::string& where) {
  std::vector<std::string> out;
  if (auto s = n.value<std::string>()) {
    out.push_back(*s);
    return out;
  }
  const toml::array* a = n.as_array();
  if (!a) fail("{}: expected a list of strings", where);
  for (const auto& e : *a) {
    auto s = e.value<std::string>();
    if (!s) fail("{}: expected a list of strings", where);
    out.push_back(*s);
  }
  return out;
}

template <typename T>
using FlagValue = std::conditional_t<std::is_same_v<T, std::vector<std::string>>, std::vector<std::string>, std::string>;

std::string snake(std::string s) {
  for (char& c : s)
    if (c == '-') c = '_';
  return s;
}

}  // namespace

template <typename T>
void RecipeBinder::bind_value(const std::string& key, T& target, const std::string& help) {
  // Each spelling (the key and its aliases) is its own CLI11 option holding the text as given; the aliases are
  // hidden. The text is converted strictly when applied (CLI11 would wrap "-1" into a uint64_t).
  struct Spelling {
    CLI::Option* option;
    std::shared_ptr<FlagValue<T>> text;
    std::string flag;  // the long name, for messages
  };
  auto spellings = std::make_shared<std::vector<Spelling>>();
  const std::vector<std::string> aliases = aliases_of(key);
  std::string names = "--" + kebab(key);
  if (const auto s = short_flag_of(key); !s.empty()) names = std::string(s) + "," + names;
  std::string desc = help + " [recipe: " + key;
  for (const auto& a : aliases) desc += ", " + a;
  desc += "]";
  if constexpr (std::is_same_v<T, bool>) desc = help + " (true|false)" + desc.substr(help.size());
  auto add = [&](const std::string& flag_names, const std::string& flag, const std::string& description) {
    auto text = std::make_shared<FlagValue<T>>();
    CLI::Option* o = app_.add_option(flag_names, *text, description);
    if constexpr (std::is_same_v<T, std::vector<std::string>>) o->delimiter(',');
    if constexpr (std::is_same_v<T, bool>) {
      // `--load-in-4bit` alone means true, as the switches of eval and generate; `--load-in-4bit false` too.
      o->type_name("[BOOL]")->expected(0, 1);
    }
    else if constexpr (std::is_floating_point_v<T>) o->type_name("FLOAT");
    else if constexpr (std::is_same_v<T, uint64_t>) o->type_name("UINT");
    else if constexpr (std::is_integral_v<T>) o->type_name("INT");
    spellings->push_back(Spelling{o, text, flag});
    return o;
  };
  CLI::Option* main = add(names, "--" + kebab(key), desc);
  // (A bool's default goes in the text: CLI11 would hand a default_str to a bare `--flag` as its value.)
  if constexpr (std::is_same_v<T, bool>) main->description(desc + (target ? " (default true)" : " (default false)"));
  else if constexpr (!std::is_same_v<T, std::vector<std::string>>) main->default_str(fmt::format("{}", target));
  for (const auto& a : aliases) add("--" + kebab(a), "--" + kebab(a), "")->group("");  // hidden

  fields_.push_back(Field{
      key,
      [key, &target](const toml::node& n, const std::string& where) { target = toml_get<T>(key, n, where); },
      [key, spellings, &target]() -> std::optional<std::string> {
        std::optional<std::string> given;
        for (const auto& s : *spellings) {
          if (s.option->count() == 0) continue;
          const std::string& flag = s.flag;
          if (given) fail("{} and {} are the same setting ({}); give one of them", *given, flag, key);
          given = flag;
          if constexpr (std::is_same_v<T, std::vector<std::string>>) target = *s.text;
          else target = from_text<T>(key, *s.text, flag);
        }
        return given;
      },
      false, ""});
  fields_.back().value = [&target] { return nlohmann::json(target); };
}

void RecipeBinder::bind(const std::string& k, std::string& t, const std::string& h) { bind_value(k, t, h); }
void RecipeBinder::bind(const std::string& k, int64_t& t, const std::string& h) { bind_value(k, t, h); }
void RecipeBinder::bind(const std::string& k, int& t, const std::string& h) { bind_value(k, t, h); }
void RecipeBinder::bind(const std::string& k, double& t, const std::string& h) { bind_value(k, t, h); }
void RecipeBinder::bind(const std::string& k, float& t, const std::string& h) { bind_value(k, t, h); }
void RecipeBinder::bind(const std::string& k, uint64_t& t, const std::string& h) { bind_value(k, t, h); }
void RecipeBinder::bind(const std::string& k, bool& t, const std::string& h) { bind_value(k, t, h); }
void RecipeBinder::bind(const std::string& k, std::vector<std::string>& t, const std::string& h) { bind_value(k, t, h); }

void RecipeBinder::bind_switch(const std::string& key, const std::string& flag, bool& target, bool value,
                               const std::string& help) {
  const std::string name = "--" + flag;
  const std::string desc = help + " [recipe: " + key + " = " + (value ? "true" : "false") + "]";
  CLI::Option* o = app_.add_flag(name, desc);
  fields_.push_back(Field{
      key, [key, &target](const toml::node& n, const std::string& where) { target = toml_get<bool>(key, n, where); },
      [o, &target, value, name]() -> std::optional<std::string> {
        if (o->count() == 0) return std::nullopt;
        target = value;
        return name;
      },
      false, ""});
  fields_.back().value = [&target] { return nlohmann::json(target); };
}

void RecipeBinder::accept(const std::string& key, const std::string& why) {
  auto ignored = std::make_shared<bool>(false);
  bind_value(key, *ignored, "Accepted for TRL recipes and ignored: " + why);
  fields_.back().value = {};  // not a setting of the run
  fields_.back().from_toml = [key, ignored, why](const toml::node& n, const std::string& where) {
    *ignored = toml_get<bool>(key, n, where);
    log::debug("{}: accepted and ignored: {}", where, why);
  };
}

std::vector<std::string> RecipeBinder::known_keys() const {
  std::vector<std::string> out;
  for (const auto& f : fields_) {
    out.push_back(f.key);
    for (auto& a : aliases_of(f.key)) out.push_back(a);
  }
  return out;
}

void RecipeBinder::apply(const std::string& recipe_path) {
  if (!recipe_path.empty()) {
    toml::table tbl;
    require_regular_file(recipe_path);  // a FIFO would block the read forever
    try {
      tbl = toml::parse_file(recipe_path);
    } catch (const toml::parse_error& e) {
      fail("{}:{}:{}: invalid TOML: {}", recipe_path, e.source().begin.line, e.source().begin.column, e.description());
    }
    for (const auto& [k, node] : tbl) {
      const std::string given(k.str());
      std::string key = snake(given);
      for (const auto& a : key_aliases())
        if (a.alias == key) key = std::string(a.key);
      const std::string where = where_of(node, recipe_path, given);
      Field* field = nullptr;
      for (auto& f : fields_)
        if (f.key == key) field = &f;
      if (!field) {
        const std::string hint = did_you_mean(given, known_keys());
        fail("{}: unknown recipe key '{}'{}; `cotune train --help` lists every key", recipe_path, given,
             hint.empty() ? "" : hint);
      }
      if (field->set)
        fail("{}: '{}' sets {} again (already set at {})", where, given, key, field->origin);
      field->from_toml(node, where);
      field->set = true;
      field->origin = where;
    }
  }
  for (auto& f : fields_)
    if (auto flag = f.from_cli()) {
      f.set = true;
      f.origin = *flag;
    }
}

nlohmann::json RecipeBinder::values() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& f : fields_)
    if (f.value && !out.contains(f.key)) out[f.key] = f.value();  // a key bound twice (value + switch): first
  return out;
}

bool RecipeBinder::was_set(const std::string& key) const {
  for (const auto& f : fields_)
    if (f.key == key) return f.set;
  return false;
}

bool RecipeBinder::set_by_flag(const std::string& key) const {
  for (const auto& f : fields_)
    if (f.key == key) return f.set && f.origin.starts_with('-');
  return false;
}

std::string RecipeBinder::where(const std::string& key) const {
  for (const auto& f : fields_)
    if (f.key == key && f.set) return f.origin;
  return key;
}

}  // namespace cotune::cli
