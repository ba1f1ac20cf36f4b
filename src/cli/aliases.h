// The spellings users bring from TRL / transformers / Unsloth / PEFT, mapped onto cotune's recipe keys and
// values. A recipe may use either spelling (`learning_rate = 2e-4` is `lr = 2e-4`), and every alias is also a
// hidden flag (`--learning-rate`, `--learning_rate`). To add one: a row in the table in aliases.cpp.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace cotune::cli {

struct KeyAlias {
  std::string_view alias;   // the other tool's name, snake_case (e.g. "per_device_train_batch_size")
  std::string_view key;     // cotune's recipe key (e.g. "batch_size")
  std::string_view origin;  // where the spelling comes from (shown in --help)
};
const std::vector<KeyAlias>& key_aliases();
std::vector<std::string> aliases_of(std::string_view key);  // e.g. aliases_of("lr") = {"learning_rate"}

// The one-letter flag of a key, the same in every command: model -m, output -o ("" when none).
std::string_view short_flag_of(std::string_view key);

// The value a string key's alias spelling stands for (`optim = "adamw_8bit"` -> "adamw8bit"); the value itself
// when it has no alias.
std::string canonical_value(std::string_view key, const std::string& value);

// A boolean written as text, for flags and recipe strings: true/false, 1/0, yes/no, on/off (and the value
// aliases of the key, e.g. use_gradient_checkpointing = "unsloth"). Fails naming `where` and the accepted words.
bool parse_bool(std::string_view key, std::string_view text, const std::string& where);

}  // namespace cotune::cli
