// Prompt templates for SFT: text with `{FieldName}` placeholders filled from a dataset record.
//
// A template has two texts:
//   train   the whole training example, e.g. instruction + question + `<think>\n{Complex_CoT}\n</think>\n{Response}`
//   prompt  what the model is given at inference time; it must be a prefix of `train` (same literal text, same
//           placeholders), so the formatted prompt is exactly the first bytes of the formatted training text.
//           The response-only loss mask uses that: everything after the prompt (reasoning, answer, EOS) is trained.
//
// Syntax: `{Name}` where Name is [A-Za-z_][A-Za-z0-9_]* is a placeholder; `{{` and `}}` are literal braces.
// Anything else between braces (`{}`, `{0}`, `{a b}`) or an unpaired brace is an error naming the offset.
//
// Template files (--template-file) are JSON:
//   {"name": "my-template",                       (optional; defaults to the file name)
//    "train": "Q: {Question}\nA: {Answer}",       (required)
//    "prompt": "Q: {Question}\nA: "}              (optional; empty = no prompt, response mask = whole text)
//
// EOS is not part of the template: the data pipeline appends the tokenizer's EOS text after the formatted
// training text; BOS comes from the tokenizer's post-processor.
#pragma once
#include <cstddef>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cotune::text {

class PromptTemplate {
 public:
  // One parsed piece of a template: literal text, or a placeholder naming a field.
  struct Piece {
    bool is_field = false;
    std::string text;  // the literal (braces unescaped) or the field name
  };

  // Formatted training text: `text` = formatted train template + eos_text; its first `prompt_bytes`
  // bytes are the formatted prompt.
  struct TrainText {
    std::string text;
    size_t prompt_bytes = 0;
  };

  // Parses both texts; `name` only labels error messages and cache keys. Throws cotune::Error naming the
  // template and the byte offset of a bad placeholder, or saying where `prompt` stops being a prefix of `train`.
  static PromptTemplate parse(std::string name, std::string_view train, std::string_view prompt);
  // Built-in templates: "medical-o1-zh", "medical-o1-en". Unknown names throw, listing the known ones.
  static PromptTemplate builtin(std::string_view name);
  static std::vector<std::string> builtin_names();
  // A JSON template file (format above). Errors name the file.
  static PromptTemplate load_file(const std::string& path);

  const std::string& name() const { return name_; }
  const std::string& train_source() const { return train_src_; }
  const std::string& prompt_source() const { return prompt_src_; }
  // Field names used by `train`, in order of first appearance (e.g. Question, Complex_CoT, Response).
  const std::vector<std::string>& fields() const { return fields_; }
  // Field names used by `prompt` (a subset of fields()), in order of first appearance.
  const std::vector<std::string>& prompt_fields() const { return prompt_fields_; }
  // A string that changes whenever the formatted output could change (used in cache keys).
  std::string fingerprint() const;

  // values[i] is the value of fields()[i]. Appends eos_text after the formatted train text.
  TrainText format_train(std::span<const std::string> values, std::string_view eos_text) const;
  // The inference prompt (ends where the model starts writing, e.g. after "<think>\n").
  // values[i] is the value of prompt_fields()[i].
  std::string format_prompt(std::span<const std::string> values) const;
  // Same, looking fields up by name; a missing field throws naming it.
  std::string format_prompt(const std::map<std::string, std::string>& values) const;

 private:
  std::string name_, train_src_, prompt_src_;
  std::vector<Piece> train_, prompt_;
  std::vector<std::string> fields_, prompt_fields_;
  std::vector<int> train_field_index_;   // per train piece: index into fields_ (or -1 for literals)
  std::vector<int> prompt_field_index_;  // per prompt piece: index into prompt_fields_ (or -1)
};

// Parses template text into pieces (exposed for tests). Throws naming `what` and the byte offset.
std::vector<PromptTemplate::Piece> parse_template_text(std::string_view src, std::string_view what);

}  // namespace cotune::text
