// Small filesystem helpers for outputs that must never be left half-written.
#pragma once
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace cotune {

// The files a kind of output folder holds, so that cotune replaces a folder only when it is one it wrote:
// `what` names the kind in messages ("a model"); `names` are exact file or folder names or patterns with
// `*` ("model-*.safetensors").
struct OutputFolderKind {
  const char* what;
  std::vector<const char*> names;
};
extern const OutputFolderKind kModelFolder;        // config.json, model*.safetensors, tokenizer files, ...
extern const OutputFolderKind kAdapterFolder;      // adapter_config.json, adapter_model.safetensors, tokenizer files
extern const OutputFolderKind kCheckpointFolder;   // an adapter + optimizer.safetensors + trainer_state.json

// Throws Error naming `dst` unless it is absent, an empty folder, or a folder holding only entries `kind`
// names (what cotune writes there): a regular file, a symlink or a folder with anything else in it is the
// user's, and cotune never deletes it. Call it before expensive work, so a refusal comes first.
void require_replaceable_directory(const std::string& dst, const OutputFolderKind& kind);

// Replaces directory `dst` by the complete directory `tmp` (same filesystem): the old `dst`, if any, is
// moved aside and removed only after `tmp` took its place, so an interruption leaves the old or the new
// folder, never a partial one. Checks require_replaceable_directory(dst, kind) first.
void replace_directory(const std::string& tmp, const std::string& dst, const OutputFolderKind& kind);

// Whether `name` matches `pattern`, where each `*` stands for any run of characters.
bool name_matches(std::string_view name, std::string_view pattern);

// Creates (or empties) a fresh temporary directory beside `dst` for building it: "<dst>.tmp-<pid>".
std::string fresh_temp_dir_for(const std::string& dst);

// Copies those of `names` that exist as regular files in `from` into `to` (overwriting).
void copy_files_if_present(const std::string& from, const std::string& to, std::initializer_list<const char*> names);

// The tokenizer files a model folder may hold (tokenizer.json, tokenizer_config.json, ...).
void copy_tokenizer_files(const std::string& from, const std::string& to);

}  // namespace cotune
