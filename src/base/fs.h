// Small filesystem helpers for outputs that must never be left half-written.
#pragma once
#include <initializer_list>
#include <string>

namespace cotune {

// Replaces directory `dst` by the complete directory `tmp` (same filesystem): the old `dst`, if any, is
// moved aside and removed only after `tmp` took its place, so an interruption leaves the old or the new
// folder, never a partial one.
void replace_directory(const std::string& tmp, const std::string& dst);

// Creates (or empties) a fresh temporary directory beside `dst` for building it: "<dst>.tmp-<pid>".
std::string fresh_temp_dir_for(const std::string& dst);

// Copies those of `names` that exist as regular files in `from` into `to` (overwriting).
void copy_files_if_present(const std::string& from, const std::string& to, std::initializer_list<const char*> names);

// The tokenizer files a model folder may hold (tokenizer.json, tokenizer_config.json, ...).
void copy_tokenizer_files(const std::string& from, const std::string& to);

}  // namespace cotune
