#include "export/ollama.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "base/log.h"
#include "text/tokenizer.h"

namespace cotune::exporting {
namespace {

namespace fs = std::filesystem;
using text::ChatMessage;

// Sentinel message texts: plain letters and digits, which no chat template rewrites (some strip or split
// contents), and which never occur in a template's own text.
constexpr const char* kSys = "Qz7SystemProbe";
constexpr const char* kUser1 = "Qz7UserProbeOne";
constexpr const char* kAsst1 = "Qz7AssistantProbeOne";
constexpr const char* kUser2 = "Qz7UserProbeTwo";

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// Position of the only occurrence of `what` in `s`, npos when it is absent or occurs twice.
size_t find_once(const std::string& s, const std::string& what) {
  const size_t p = s.find(what);
  if (p == std::string::npos || s.find(what, p + 1) != std::string::npos) return std::string::npos;
  return p;
}

// Literal text inside a Go template: "{{" would open an action.
std::string go_literal(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 2, "{{") == 0) {
      out += "{{\"{{\"}}";
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The special-token-like marker a piece starts with ("<|im_start|>" of "<|im_start|>user\n", "<｜User｜>",
// "[INST]"), "" when it starts with plain text.
std::string leading_marker(const std::string& piece) {
  const size_t b = piece.find_first_not_of(" \n\t");
  if (b == std::string::npos) return "";
  const std::string s = piece.substr(b);
  if (starts_with(s, "<")) {
    const size_t e = s.find('>');
    return e == std::string::npos ? "" : s.substr(0, e + 1);
  }
  if (starts_with(s, "[")) {
    const size_t e = s.find(']');
    return e == std::string::npos ? "" : s.substr(0, e + 1);
  }
  return "";
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \n\t"), e = s.find_last_not_of(" \n\t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

std::optional<OllamaTemplate> ollama_template(const text::ChatTemplate& tpl, bool strip_bos) {
  auto render = [&](const std::vector<ChatMessage>& m, bool gen) -> std::optional<std::string> {
    try {
      return tpl.render(m, gen);
    } catch (const std::exception& e) {  // raise_exception (e.g. no system role) or an unsupported construct
      log::debug("chat template probe failed: {}", e.what());
      return std::nullopt;
    }
  };
  const auto ru = render({{"user", kUser1}}, false), rug = render({{"user", kUser1}}, true);
  const auto rua = render({{"user", kUser1}, {"assistant", kAsst1}}, false);
  const auto r2 = render({{"user", kUser1}, {"assistant", kAsst1}, {"user", kUser2}}, false);
  const auto rs = render({{"system", kSys}, {"user", kUser1}}, false);
  if (!ru || !rug || !rua || !r2 || !rs || !starts_with(*rug, *ru)) return std::nullopt;

  OllamaTemplate t;
  t.generation_prompt = rug->substr(ru->size());
  const size_t u1 = find_once(*r2, kUser1), a1 = find_once(*r2, kAsst1), u2 = find_once(*r2, kUser2);
  if (u1 == std::string::npos || a1 == std::string::npos || u2 == std::string::npos || !(u1 < a1 && a1 < u2))
    return std::nullopt;
  const std::string head = r2->substr(0, u1);
  t.user_suffix = r2->substr(u2 + std::string(kUser2).size());
  const std::string mid1 = r2->substr(u1 + std::string(kUser1).size(), a1 - u1 - std::string(kUser1).size());
  if (!starts_with(mid1, t.user_suffix)) return std::nullopt;
  t.assistant_prefix = mid1.substr(t.user_suffix.size());
  // The assistant's closing text from a conversation that ends with it. (What comes before may differ: Qwen3 writes
  // an empty <think></think> into an answer after the last user turn; Ollama never renders one, its last message
  // is the user's.)
  const size_t pa = find_once(*rua, kAsst1);
  if (pa == std::string::npos || !starts_with(*rua, head + kUser1 + t.user_suffix)) return std::nullopt;
  t.assistant_suffix = rua->substr(pa + std::string(kAsst1).size());
  const std::string mid2 = r2->substr(a1 + std::string(kAsst1).size(), u2 - a1 - std::string(kAsst1).size());
  if (!starts_with(mid2, t.assistant_suffix)) return std::nullopt;
  t.user_prefix = mid2.substr(t.assistant_suffix.size());
  if (!ends_with(head, t.user_prefix)) return std::nullopt;
  t.default_system_block = head.substr(0, head.size() - t.user_prefix.size());
  if (*ru != t.default_system_block + t.user_prefix + kUser1 + t.user_suffix) return std::nullopt;

  const size_t ps = find_once(*rs, kSys), pu = find_once(*rs, kUser1);
  if (ps == std::string::npos || pu == std::string::npos || ps > pu) return std::nullopt;
  t.system_prefix = rs->substr(0, ps);
  const std::string smid = rs->substr(ps + std::string(kSys).size(), pu - ps - std::string(kSys).size());
  if (!ends_with(smid, t.user_prefix) || rs->substr(pu + std::string(kUser1).size()) != t.user_suffix)
    return std::nullopt;
  t.system_suffix = smid.substr(0, smid.size() - t.user_prefix.size());

  if (const auto padded = render({{"user", std::string(" ") + kUser1 + " "}}, false))
    t.trims_content = padded->find(std::string(" ") + kUser1 + " ") == std::string::npos;

  const std::string bos = tpl.bos_token();
  if (strip_bos && !bos.empty()) {
    if (starts_with(t.default_system_block, bos)) t.default_system_block.erase(0, bos.size());
    if (starts_with(t.system_prefix, bos)) t.system_prefix.erase(0, bos.size());
  }
  for (const std::string* piece : {&t.default_system_block, &t.system_prefix, &t.system_suffix, &t.user_prefix,
                                   &t.user_suffix, &t.assistant_prefix, &t.assistant_suffix, &t.generation_prompt})
    if (piece->find("\"\"\"") != std::string::npos) return std::nullopt;  // would end the Modelfile's TEMPLATE

  // One line, no trim markers: "{{-" would also eat the newlines that belong to the pieces.
  // A system message decides, as in the Jinja template, not .System's truth: an empty system message still
  // replaces the default system block.
  t.go_template = "{{ $system := false }}{{ range .Messages }}{{ if eq .Role \"system\" }}{{ $system = true }}"
                  "{{ end }}{{ end }}{{ if $system }}" + go_literal(t.system_prefix) + "{{ .System }}" + go_literal(t.system_suffix) +
                  "{{ else }}" + go_literal(t.default_system_block) + "{{ end }}" +
                  "{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}" +
                  "{{ if eq .Role \"user\" }}" + go_literal(t.user_prefix) + "{{ .Content }}" +
                  go_literal(t.user_suffix) + "{{ else if eq .Role \"assistant\" }}" +
                  go_literal(t.assistant_prefix) + "{{ .Content }}{{ if not $last }}" +
                  go_literal(t.assistant_suffix) + "{{ end }}{{ end }}" +
                  "{{ if and $last (ne .Role \"assistant\") }}" + go_literal(t.generation_prompt) + "{{ end }}" +
                  "{{ end }}";

  // Generation must stop at the end of the assistant's turn (its suffix), and at the start of a new turn.
  auto add_stop = [&](const std::string& s) {
    if (!s.empty() && s.find('"') == std::string::npos &&
        std::find(t.stops.begin(), t.stops.end(), s) == t.stops.end())
      t.stops.push_back(s);
  };
  add_stop(leading_marker(t.assistant_suffix).empty() ? trim(t.assistant_suffix)
                                                      : leading_marker(t.assistant_suffix));
  add_stop(leading_marker(t.user_prefix));
  add_stop(tpl.eos_token());
  return t;
}

std::string ollama_modelfile(const std::string& model_dir, const std::string& gguf_file_name) {
  const fs::path dir(model_dir);
  std::string out = "# Ollama Modelfile written by cotune: `ollama create NAME -f Modelfile`\n";
  out += "FROM ./" + gguf_file_name + "\n";
  const std::optional<text::ChatTemplate> tpl = text::ChatTemplate::find(model_dir);
  if (!tpl) {
    out += "# no TEMPLATE: the model has no chat template (Ollama sends the prompt as is)\n";
    return out;
  }
  // BOS as the GGUF says (tokenizer.ggml.add_bos_token, from the same tokenizer files).
  bool add_bos = false;
  if (fs::is_regular_file(dir / "tokenizer.json")) {
    add_bos = text::Tokenizer::load(model_dir).add_bos_token();
  } else if (fs::is_regular_file(dir / "tokenizer_config.json")) {
    const auto j = nlohmann::json::parse(read_text(dir / "tokenizer_config.json"), nullptr, false);
    add_bos = j.is_object() && j.value("add_bos_token", false);
  }
  const std::optional<OllamaTemplate> t = ollama_template(*tpl, add_bos);
  if (!t) {
    out += "# no TEMPLATE: the chat template is not a plain sequence of role blocks; Ollama uses the chat template\n"
           "# stored in the GGUF (tokenizer.chat_template)\n";
    const std::string eos = tpl->eos_token();
    if (!eos.empty() && eos.find('"') == std::string::npos) out += "PARAMETER stop \"" + eos + "\"\n";
    return out;
  }
  out += "TEMPLATE \"\"\"" + t->go_template + "\"\"\"\n";
  for (const auto& s : t->stops) out += "PARAMETER stop \"" + s + "\"\n";
  return out;
}

}  // namespace cotune::exporting
