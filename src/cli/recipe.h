// Recipes: every TOML key of a recipe is also a command-line flag (`lora_r` <-> `--lora-r`) that overrides
// it. A RecipeBinder registers each key once; after parsing it applies the recipe file, then the flags that
// were given. The spellings of TRL / Unsloth / PEFT (aliases.h) are accepted for keys and flags alike.
// Unknown recipe keys are errors naming the file and key, with the closest known keys (a typo must not be
// silently ignored). Values are parsed strictly: an integer that does not fit its key, a non-finite number or
// a word that is not a boolean is an error naming the key (recipe file and line) or the flag.
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace toml {
inline namespace v3 {
class node;
}
}  // namespace toml

namespace cotune::cli {

class RecipeBinder {
 public:
  explicit RecipeBinder(CLI::App& app) : app_(app) {}

  // A key with a value: flag --kebab-name VALUE, recipe key snake_name.
  void bind(const std::string& key, std::string& target, const std::string& help);
  void bind(const std::string& key, int64_t& target, const std::string& help);
  void bind(const std::string& key, int& target, const std::string& help);
  void bind(const std::string& key, double& target, const std::string& help);
  void bind(const std::string& key, float& target, const std::string& help);
  void bind(const std::string& key, uint64_t& target, const std::string& help);
  void bind(const std::string& key, bool& target, const std::string& help);  // --flag true|false
  void bind(const std::string& key, std::vector<std::string>& target, const std::string& help);  // comma list
  // A key whose flag is a switch that sets `target = value` (e.g. --no-shuffle sets shuffle = false).
  void bind_switch(const std::string& key, const std::string& flag, bool& target, bool value, const std::string& help);
  // A boolean recipe key (and flag) that is checked and ignored, with a reason (e.g. `bf16`: cotune always
  // computes in bf16 on the GPU). A value that is not a boolean is still an error.
  void accept(const std::string& key, const std::string& why);

  // Reads the recipe file (if any) into the targets, then the flags given on the command line.
  void apply(const std::string& recipe_path);
  // True when the key was set by the recipe or a flag; set_by_flag: by a flag (which wins over the recipe).
  bool was_set(const std::string& key) const;
  bool set_by_flag(const std::string& key) const;
  // Where the key's value came from, for error messages: "recipe.toml:12: key 'lr'", "--lr" (the spelling
  // given), or "lr" when it kept its default.
  std::string where(const std::string& key) const;
  // Every key and alias (for "did you mean").
  std::vector<std::string> known_keys() const;
  // Every bound key and its current value (after apply(): the run's settings), e.g. for the W&B config.
  nlohmann::json values() const;

 private:
  struct Field {
    std::string key;
    std::function<void(const toml::node&, const std::string& where)> from_toml;
    std::function<std::optional<std::string>()> from_cli;  // applies the flag when given; returns its name
    bool set = false;
    std::string origin;
    std::function<nlohmann::json()> value{};
  };
  CLI::App& app_;
  std::vector<Field> fields_;
  template <typename T>
  void bind_value(const std::string& key, T& target, const std::string& help);
};

std::string kebab(const std::string& key);  // lora_r -> lora-r

// Strict conversions of flag text, naming `where` in errors (also used by commands without a recipe).
int64_t parse_int64(const std::string& text, const std::string& where);
uint64_t parse_uint64(const std::string& text, const std::string& where);
double parse_finite(const std::string& text, const std::string& where);

}  // namespace cotune::cli
