// `cotune chat-template --model DIR [--add-generation-prompt] [--vars JSON]`: renders conversations through the
// model's chat template, so anyone can check a rendering against transformers' apply_chat_template.
//   stdin:  {"messages": [{"role": ..., "content": ...}, ...]}            one conversation a line
//           (optional per line: "add_generation_prompt": bool, "variables": {...} overriding the flags)
//   stdout: {"text": "...", "ids": [...]}                                  ids = encode(text, add_special=false),
//           as apply_chat_template(tokenize=True); left out when the folder has no tokenizer.json
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "base/error.h"
#include "cli/command.h"
#include "cli/model_path.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace cotune::cli {
namespace {

struct ChatTemplateOptions {
  std::string model;
  bool add_generation_prompt = false;
  std::string vars;
};

void run_chat_template(const ChatTemplateOptions& opt) {
  const std::string model = resolve_model_dir(opt.model);
  const text::ChatTemplate tpl = text::ChatTemplate::from_tokenizer_config(model);
  std::optional<text::Tokenizer> tok;
  const auto tok_path = std::filesystem::path(model) / "tokenizer.json";
  if (std::filesystem::exists(tok_path)) tok = text::Tokenizer::load(model);
  std::ios::sync_with_stdio(false);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    with_context(fmt::format("stdin line {}", line_no), [&] {
      nlohmann::ordered_json j;
      try {
        j = nlohmann::ordered_json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        fail("invalid JSON: {}", e.what());
      }
      if (!j.is_object() || !j.contains("messages") || !j["messages"].is_array())
        fail("expected an object with a \"messages\" array");
      text::ChatRenderOptions o;
      o.add_generation_prompt = j.value("add_generation_prompt", opt.add_generation_prompt);
      o.extra_variables_json = j.contains("variables") ? j["variables"].dump() : opt.vars;
      const std::string rendered = tpl.render_json(j["messages"].dump(), o).text;
      nlohmann::ordered_json out;
      out["text"] = rendered;
      if (tok) out["ids"] = tok->encode(rendered, false);
      std::cout << out.dump() << '\n';
      return 0;
    });
  }
  std::cout.flush();
}

void setup_chat_template(CLI::App& app) {
  auto opt = std::make_shared<ChatTemplateOptions>();
  app.add_option("--model", opt->model, "Model folder (tokenizer_config.json / chat_template.jinja), Hub name or GGUF file")->required();
  app.add_flag("--add-generation-prompt", opt->add_generation_prompt,
               "End with the assistant header, where the model starts writing");
  app.add_option("--vars", opt->vars, "Extra template variables as a JSON object, e.g. '{\"enable_thinking\": false}'");
  app.callback([opt] { run_chat_template(*opt); });
}

}  // namespace

COTUNE_COMMAND(chat_template, "chat-template",
               "Render {\"messages\": [...]} JSON lines through the model's chat template -> {\"text\", \"ids\"}", 21,
               setup_chat_template);

}  // namespace cotune::cli
