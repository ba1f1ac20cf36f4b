// Ollama: the Modelfile written beside a GGUF export, so `ollama create NAME -f Modelfile` works as is.
//
// Ollama renders prompts with Go's text/template, not Jinja, so the model's chat template is turned into a Go
// template by probing it: the Jinja template (text::ChatTemplate, equal to transformers' apply_chat_template) is
// rendered for a few conversations made of sentinel texts, and the text around each sentinel gives the pieces of
// a "role block" template (what comes before and after a system, user and assistant message, the generation
// prompt, and the default system block a template writes when the conversation has none). The pieces are checked
// for consistency on the probes; a template that does not fit the role-block shape (e.g. Mistral's, which folds
// the system prompt into the last user turn) gets no TEMPLATE and Ollama falls back to the GGUF's chat template.
// tools/check_ollama_template.go renders the result with Go's text/template the way Ollama does and compares it
// with transformers' renderings.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "text/chat_template.h"

namespace cotune::exporting {

struct OllamaTemplate {
  std::string go_template;          // the TEMPLATE text (Go text/template)
  std::vector<std::string> stops;   // PARAMETER stop values: end-of-turn markers and EOS
  // The Jinja template trims message contents (Llama 3's `| trim`); Go templates in Ollama have no trim, so
  // a content with leading or trailing whitespace renders with it (the one known difference).
  bool trims_content = false;
  // The pieces found by probing (for tests and messages).
  std::string default_system_block, system_prefix, system_suffix, user_prefix, user_suffix, assistant_prefix,
      assistant_suffix, generation_prompt;
};

// The Go template equivalent of `tpl` for conversations of system / user / assistant messages that Ollama
// renders for a reply (the last message is the user's). `strip_bos`: the GGUF's tokenizer adds BOS itself
// (tokenizer.ggml.add_bos_token), so a BOS the Jinja template writes is left out of the Go template.
// nullopt when the template does not fit the role-block shape.
std::optional<OllamaTemplate> ollama_template(const text::ChatTemplate& tpl, bool strip_bos);

// The Modelfile for `gguf_file_name` (relative, beside it) from the model folder's tokenizer files: FROM, TEMPLATE
// (when the chat template converts), PARAMETER stop for the end-of-turn markers and EOS.
std::string ollama_modelfile(const std::string& model_dir, const std::string& gguf_file_name);

}  // namespace cotune::exporting
