// Chat templates: a model's `chat_template` (tokenizer_config.json, or chat_template.jinja beside it) rendered
// exactly as `transformers`' tokenizer.apply_chat_template(messages, tokenize=False, ...) does.
//
//   auto tpl = text::ChatTemplate::from_tokenizer_config(model_dir);
//   std::string prompt = tpl.render({{"system", "Be brief."}, {"user", "Hi"}}, /*add_generation_prompt*/ true);
//   ids = tokenizer.encode(prompt, /*add_special*/ false);   // as apply_chat_template(tokenize=True): the
//                                                            // template writes BOS itself where the model wants it
//
// What the template sees (as transformers 4.5x / 5.x): `messages` (keys whose value is null dropped; a reasoning
// field `reasoning_content` / `thinking` / `reasoning` copied under `thinking` and `reasoning_content`), `tools`
// and `documents` = None, `add_generation_prompt`, the tokenizer's named special tokens that are set (bos_token,
// eos_token, unk_token, sep_token, pad_token, cls_token, mask_token) and any extra variables the caller gives
// (e.g. {"enable_thinking": false} for Qwen3, {"date_string": "26 Jul 2024"} for Llama 3.x).
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja.h"

namespace cotune::text {

struct ChatMessage {
  std::string role;     // "system" | "user" | "assistant" | "tool" | ...
  std::string content;
};

struct ChatRenderOptions {
  bool add_generation_prompt = false;
  // Extra template variables as a JSON object ("" = none), e.g. R"({"enable_thinking": false})".
  std::string extra_variables_json;
};

class ChatTemplate {
 public:
  // The template of a model folder (or a tokenizer_config.json path): chat_template.jinja when present (it wins,
  // as in transformers), else tokenizer_config.json's `chat_template` (a string, or a list of {name, template}
  // from which "default" is taken). Throws Error naming the file when there is none or it does not parse.
  static ChatTemplate from_tokenizer_config(const std::string& model_dir);
  // As above, nullopt when the folder has no chat template (a parse error still throws).
  static std::optional<ChatTemplate> find(const std::string& model_dir);
  // A template from source text with the given special tokens (name -> text, e.g. {"bos_token", "<s>"}).
  static ChatTemplate from_source(std::string source, std::vector<std::pair<std::string, std::string>> special_tokens,
                                  std::string name = "chat_template");

  ChatTemplate(ChatTemplate&&) noexcept = default;
  ChatTemplate& operator=(ChatTemplate&&) noexcept = default;

  // Plain role/content messages.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // Messages as a JSON array of objects (any fields: tool_calls, reasoning_content, ...). The result's
  // generation_spans are the byte ranges written inside `{% generation %}` blocks.
  jinja::RenderResult render_json(const std::string& messages_json, const ChatRenderOptions& opts) const;
  // Messages as a template value (a list of dicts).
  jinja::RenderResult render_value(const jinja::Value& messages, const ChatRenderOptions& opts) const;

  static jinja::Value to_value(const std::vector<ChatMessage>& messages);

  const std::string& source() const { return source_; }
  const std::string& name() const { return name_; }
  // The special token texts the template sees ("" when the tokenizer has none).
  std::string bos_token() const { return special_token("bos_token"); }
  std::string eos_token() const { return special_token("eos_token"); }
  std::string special_token(const std::string& name) const;
  bool has_generation_blocks() const { return template_.has_generation_blocks(); }

 private:
  ChatTemplate(std::string name, std::string source, jinja::Template tpl,
               std::vector<std::pair<std::string, std::string>> special_tokens)
      : name_(std::move(name)), source_(std::move(source)), template_(std::move(tpl)),
        special_tokens_(std::move(special_tokens)) {}
  std::string name_;
  std::string source_;
  jinja::Template template_;
  std::vector<std::pair<std::string, std::string>> special_tokens_;
};

}  // namespace cotune::text
