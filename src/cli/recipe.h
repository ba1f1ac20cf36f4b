// Recipes: every TOML key of a recipe is also a command-line flag (`lora_r` <-> `--lora-r`) that overrides
// it. A RecipeBinder registers each key once; after parsing it applies the recipe file, then the flags that
// were given. Unknown recipe keys are errors naming the file and key (a typo must not be silently ignored).
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
  // A recipe key that is accepted and ignored, with a reason (e.g. `bf16`: cotune always computes in bf16 on GPU).
  void accept(const std::string& key, const std::string& why);

  // Reads the recipe file (if any) into the targets, then the flags given on the command line.
  void apply(const std::string& recipe_path);
  // True when the key was set by the recipe or a flag.
  bool was_set(const std::string& key) const;
  // Every bound key and its current value (after apply(): the run's settings), e.g. for the W&B config.
  nlohmann::json values() const;

 private:
  struct Field {
    std::string key;
    std::function<void(const toml::node&, const std::string& where)> from_toml;
    std::function<bool()> from_cli;  // applies the flag when given; returns whether it was
    bool set = false;
    std::function<nlohmann::json()> value{};
  };
  CLI::App& app_;
  std::vector<Field> fields_;
  std::vector<std::pair<std::string, std::string>> accepted_;
  template <typename T>
  void bind_value(const std::string& key, T& target, const std::string& help);
};

std::string kebab(const std::string& key);  // lora_r -> lora-r

}  // namespace cotune::cli
