#include "cli/recipe.h"

#include <toml++/toml.h>

#include "base/error.h"
#include "base/log.h"
#include "base/mmap.h"

namespace cotune::cli {

std::string kebab(const std::string& key) {
  std::string s = key;
  for (char& c : s)
    if (c == '_') c = '-';
  return s;
}

namespace {

std::string where_of(const toml::node& n, const std::string& file, const std::string& key) {
  const auto& src = n.source();
  return fmt::format("{}:{}: key '{}'", file, src.begin.line, key);
}

template <typename T>
T toml_get(const toml::node& n, const std::string& where);

template <>
std::string toml_get<std::string>(const toml::node& n, const std::string& where) {
  if (auto v = n.value<std::string>()) return *v;
  fail("{}: expected a string", where);
}
template <>
int64_t toml_get<int64_t>(const toml::node& n, const std::string& where) {
  if (n.is_integer()) return *n.value<int64_t>();
  fail("{}: expected an integer", where);
}
template <>
int toml_get<int>(const toml::node& n, const std::string& where) {
  return static_cast<int>(toml_get<int64_t>(n, where));
}
template <>
uint64_t toml_get<uint64_t>(const toml::node& n, const std::string& where) {
  int64_t v = toml_get<int64_t>(n, where);
  if (v < 0) fail("{}: expected a non-negative integer", where);
  return static_cast<uint64_t>(v);
}
template <>
double toml_get<double>(const toml::node& n, const std::string& where) {
  if (n.is_floating_point() || n.is_integer()) return *n.value<double>();
  fail("{}: expected a number", where);
}
template <>
float toml_get<float>(const toml::node& n, const std::string& where) {
  return static_cast<float>(toml_get<double>(n, where));
}
template <>
bool toml_get<bool>(const toml::node& n, const std::string& where) {
  if (auto v = n.value<bool>()) return *v;
  fail("{}: expected true or false", where);
}
template <>
std::vector<std::string> toml_get<std::vector<std::string>>(const toml::node& n, const std::string& where) {
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

}  // namespace

template <typename T>
void RecipeBinder::bind_value(const std::string& key, T& target, const std::string& help) {
  auto tmp = std::make_shared<T>(target);
  CLI::Option* o = app_.add_option("--" + kebab(key), *tmp, help + " [recipe: " + key + "]");
  if constexpr (!std::is_same_v<T, std::vector<std::string>>) o->default_str(fmt::format("{}", target));
  if constexpr (std::is_same_v<T, std::vector<std::string>>) o->delimiter(',');
  fields_.push_back(Field{
      key, [&target](const toml::node& n, const std::string& where) { target = toml_get<T>(n, where); },
      [o, tmp, &target] {
        if (o->count() == 0) return false;
        target = *tmp;
        return true;
      }});
  fields_.back().value = [&target] { return nlohmann::json(target); };
}

void RecipeBinder::bind(const std::string& k, std::string& t, const std::string& h) { bind_value(k, t, h); }
void RecipeBinder::bind(const std::string& k, int64_t& t, const std::string& h) { bind_value(k, t, h); }
void RecipeBinder::bind(const std::string& k, int& t, const std::string& h) { bind_value(k, t, h); }
void RecipeBinder::bind(const std::string& k, double& t, const std::string& h) { bind_value(k, t, h); }
void RecipeBinder::bind(const std::string& k, float& t, const std::string& h) { bind_value(k, t, h); }
void RecipeBinder::bind(const std::string& k, uint64_t& t, const std::string& h) { bind_value(k, t, h); }
void RecipeBinder::bind(const std::string& k, std::vector<std::string>& t, const std::string& h) { bind_value(k, t, h); }

void RecipeBinder::bind(const std::string& key, bool& target, const std::string& help) {
  auto tmp = std::make_shared<std::string>();
  CLI::Option* o = app_.add_option("--" + kebab(key), *tmp, help + " (true|false) [recipe: " + key + "]");
  o->default_str(target ? "true" : "false");
  o->check(CLI::IsMember({"true", "false", "1", "0", "yes", "no", "on", "off"}));
  fields_.push_back(Field{
      key, [&target](const toml::node& n, const std::string& where) { target = toml_get<bool>(n, where); },
      [o, tmp, &target] {
        if (o->count() == 0) return false;
        target = *tmp == "true" || *tmp == "1" || *tmp == "yes" || *tmp == "on";
        return true;
      }});
  fields_.back().value = [&target] { return nlohmann::json(target); };
}

void RecipeBinder::bind_switch(const std::string& key, const std::string& flag, bool& target, bool value,
                               const std::string& help) {
  const std::string name = "--" + flag;
  const std::string desc = help + " [recipe: " + key + " = " + (value ? "true" : "false") + "]";
  CLI::Option* o = app_.add_flag(name, desc);
  fields_.push_back(Field{
      key, [&target](const toml::node& n, const std::string& where) { target = toml_get<bool>(n, where); },
      [o, &target, value] {
        if (o->count() == 0) return false;
        target = value;
        return true;
      }});
  fields_.back().value = [&target] { return nlohmann::json(target); };
}

void RecipeBinder::accept(const std::string& key, const std::string& why) { accepted_.emplace_back(key, why); }

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
      const std::string key(k.str());
      bool found = false;
      for (auto& f : fields_)
        if (f.key == key) {
          f.from_toml(node, where_of(node, recipe_path, key));
          f.set = true;
          found = true;
        }
      for (const auto& [ak, why] : accepted_)
        if (ak == key) {
          log::debug("{}: key '{}' accepted: {}", recipe_path, key, why);
          found = true;
        }
      if (!found) {
        std::string known;
        for (const auto& f : fields_) known += (known.empty() ? "" : ", ") + f.key;
        fail("{}: unknown recipe key '{}' (known keys: {})", recipe_path, key, known);
      }
    }
  }
  for (auto& f : fields_)
    if (f.from_cli()) f.set = true;
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

}  // namespace cotune::cli
