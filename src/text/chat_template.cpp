// ChatTemplate: finding a model's chat template and rendering it with the variables transformers passes.
#include "text/chat_template.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"

namespace cotune::text {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail("{}: cannot open", p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// transformers' SPECIAL_TOKENS_ATTRIBUTES, in its order.
constexpr const char* kSpecialTokenNames[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                              "pad_token", "cls_token", "mask_token"};

// A special token entry of tokenizer_config.json: a string, or an AddedToken object {"content": ...}.
std::optional<std::string> token_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

std::optional<ChatTemplate> ChatTemplate::find(const std::string& model_dir) {
  fs::path dir(model_dir);
  fs::path config = dir / "tokenizer_config.json";
  if (fs::is_regular_file(dir) && dir.filename() == "tokenizer_config.json") {
    config = dir;
    dir = dir.parent_path();
  }
  std::vector<std::pair<std::string, std::string>> specials;
  std::string source, name;
  if (fs::exists(config)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file(config));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid JSON: {}", config.string(), e.what());
    }
    for (const char* key : kSpecialTokenNames) {
      if (!j.contains(key)) continue;
      if (auto t = token_text(j[key])) specials.emplace_back(key, *t);
    }
    if (j.contains("chat_template")) {
      const auto& ct = j["chat_template"];
      name = config.string() + ": chat_template";
      if (ct.is_string()) {
        source = ct.get<std::string>();
      } else if (ct.is_array()) {
        for (const auto& e : ct)
          if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
            source = e["template"].get<std::string>();
        if (source.empty()) fail("{}: chat_template is a list without a \"default\" entry", config.string());
      } else if (!ct.is_null()) {
        fail("{}: chat_template must be a string or a list of {{name, template}}", config.string());
      }
    }
  }
  const fs::path jinja_file = dir / "chat_template.jinja";
  if (fs::exists(jinja_file)) {
    source = read_file(jinja_file);
    name = jinja_file.string();
  }
  if (source.empty()) return std::nullopt;
  return from_source(std::move(source), std::move(specials), std::move(name));
}

ChatTemplate ChatTemplate::from_tokenizer_config(const std::string& model_dir) {
  auto t = find(model_dir);
  if (!t)
    fail("{}: no chat template (neither tokenizer_config.json's \"chat_template\" nor chat_template.jinja)",
         model_dir);
  return std::move(*t);
}

ChatTemplate ChatTemplate::from_source(std::string source, std::vector<std::pair<std::string, std::string>> specials,
                                       std::string name) {
  jinja::Template tpl = jinja::Template::parse(source, jinja::ParseOptions{}, name);
  return ChatTemplate(std::move(name), std::move(source), std::move(tpl), std::move(specials));
}

std::string ChatTemplate::special_token(const std::string& name) const {
  for (const auto& [k, v] : special_tokens_)
    if (k == name) return v;
  return "";
}

jinja::Value ChatTemplate::to_value(const std::vector<ChatMessage>& messages) {
  jinja::List list;
  for (const auto& m : messages) {
    jinja::Value d = jinja::Value::dict();
    d.set("role", jinja::Value::string(m.role));
    d.set("content", jinja::Value::string(m.content));
    list.push_back(d);
  }
  return jinja::Value::list(std::move(list));
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  ChatRenderOptions o;
  o.add_generation_prompt = add_generation_prompt;
  return render_value(to_value(messages), o).text;
}

jinja::RenderResult ChatTemplate::render_json(const std::string& messages_json, const ChatRenderOptions& opts) const {
  const jinja::Value v = with_context("messages", [&] { return jinja::Value::from_json(messages_json); });
  return render_value(v, opts);
}

jinja::RenderResult ChatTemplate::render_value(const jinja::Value& messages, const ChatRenderOptions& opts) const {
  if (!messages.is_list()) fail("{}: messages must be a list, got {}", name_, messages.type_name());
  // As transformers: drop null-valued keys (_normalize_chat_messages), then alias the reasoning fields
  // ({"thinking": r, **message, "reasoning_content": r}).
  jinja::List chat;
  for (const auto& m : messages.items()) {
    if (!m.is_dict()) fail("{}: each message must be an object, got {}", name_, m.type_name());
    jinja::Value copy = jinja::Value::dict();
    for (const auto& [k, v] : m.entries().entries)
      if (!v.is_none()) copy.set(k, v);
    jinja::Value reasoning;
    for (const char* key : {"reasoning_content", "thinking", "reasoning"}) {
      const jinja::Value r = copy.get(key);
      if (!r.is_undefined() && !r.is_none()) {
        reasoning = r;
        break;
      }
    }
    if (!reasoning.is_undefined()) {
      jinja::Value aliased = jinja::Value::dict();
      aliased.set("thinking", reasoning);
      for (const auto& [k, v] : copy.entries().entries) aliased.set(k, v);
      aliased.set("reasoning_content", reasoning);
      copy = aliased;
    }
    chat.push_back(copy);
  }
  jinja::Value ctx = jinja::Value::dict();
  for (const auto& [k, v] : special_tokens_) ctx.set(k, jinja::Value::string(v));
  if (!opts.extra_variables_json.empty()) {
    const jinja::Value extra =
        with_context("extra template variables", [&] { return jinja::Value::from_json(opts.extra_variables_json); });
    if (!extra.is_dict()) fail("extra template variables must be a JSON object");
    for (const auto& [k, v] : extra.entries().entries) ctx.set(k, v);
  }
  ctx.set("messages", jinja::Value::list(std::move(chat)));
  ctx.set("tools", jinja::Value::none());
  ctx.set("documents", jinja::Value::none());
  ctx.set("add_generation_prompt", jinja::Value::boolean(opts.add_generation_prompt));
  return template_.render(ctx);
}

}  // namespace cotune::text
