#include "cli/aliases.h"

#include "base/error.h"

namespace cotune::cli {

const std::vector<KeyAlias>& key_aliases() {
  static const std::vector<KeyAlias> table = {
      {"learning_rate", "lr", "TRL"},
      {"per_device_train_batch_size", "batch_size", "TRL"},
      {"gradient_accumulation_steps", "grad_accum", "TRL"},
      {"num_train_epochs", "num_epochs", "TRL"},
      {"lr_scheduler_type", "lr_scheduler", "TRL"},
      {"output_dir", "output", "TRL"},
      {"max_length", "max_seq_length", "TRL"},
      {"r", "lora_r", "PEFT"},
      {"use_gradient_checkpointing", "gradient_checkpointing", "Unsloth"},
      {"random_state", "seed", "Unsloth"},
      {"model_name", "model", "Unsloth"},
      {"model_name_or_path", "model", "TRL"},
      {"dataset_name", "data", "TRL"},
  };
  return table;
}

std::vector<std::string> aliases_of(std::string_view key) {
  std::vector<std::string> out;
  for (const auto& a : key_aliases())
    if (a.key == key) out.emplace_back(a.alias);
  return out;
}

std::string_view short_flag_of(std::string_view key) {
  if (key == "model") return "-m";
  if (key == "output") return "-o";
  return "";
}

namespace {

struct ValueAlias {
  std::string_view key, alias, value;
};

// Values of TRL's `optim` that mean one of cotune's two optimizers (the paged variants page states to host
// memory under pressure; cotune's states are small enough to stay put).
const ValueAlias kValueAliases[] = {
    {"optim", "adamw_8bit", "adamw8bit"},      {"optim", "paged_adamw_8bit", "adamw8bit"},
    {"optim", "adamw_bnb_8bit", "adamw8bit"},  {"optim", "adamw_torch", "adamw"},
    {"optim", "adamw_torch_fused", "adamw"},   {"optim", "adamw_hf", "adamw"},
    {"optim", "paged_adamw_32bit", "adamw"},   {"gradient_checkpointing", "unsloth", "true"},
};

}  // namespace

std::string canonical_value(std::string_view key, const std::string& value) {
  for (const auto& v : kValueAliases)
    if (v.key == key && v.alias == value) return std::string(v.value);
  return value;
}

bool parse_bool(std::string_view key, std::string_view text, const std::string& where) {
  const std::string t = canonical_value(key, std::string(text));
  if (t == "true" || t == "1" || t == "yes" || t == "on" || t == "True") return true;
  if (t == "false" || t == "0" || t == "no" || t == "off" || t == "False") return false;
  fail("{}: expected a boolean (true or false), got \"{}\"", where, text);
}

}  // namespace cotune::cli
