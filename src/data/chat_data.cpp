// Record formats -> messages / plain text, and training text with trained spans (rules in chat_data.h).
#include "data/chat_data.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace cotune::data {
namespace {

using text::jinja::List;
using text::jinja::Value;
using Json = nlohmann::ordered_json;

Json parse_object(std::string_view record_json) {
  Json j;
  try {
    j = Json::parse(record_json.begin(), record_json.end());
  } catch (const nlohmann::json::exception& e) {
    fail("malformed JSON: {}", e.what());
  }
  if (!j.is_object()) fail("expected a JSON object");
  return j;
}

std::string field_names(const Json& j) {
  std::string out;
  for (const auto& [k, v] : j.items()) out += (out.empty() ? "" : ", ") + k;
  return out.empty() ? "none" : out;
}

const Json& need(const Json& j, const char* key) {
  if (!j.contains(key)) fail("missing field '{}'", key);
  return j[key];
}

std::string need_string(const Json& j, const char* key, bool allow_empty = true) {
  const Json& v = need(j, key);
  if (!v.is_string()) fail("field '{}' is {}, expected a string", key, v.type_name());
  std::string s = v.get<std::string>();
  if (!allow_empty && s.empty()) fail("field '{}' is an empty string", key);
  return s;
}

Value message(std::string role, std::string content) {
  Value m = Value::dict();
  m.set("role", Value::string(std::move(role)));
  m.set("content", Value::string(std::move(content)));
  return m;
}

// A list of {"role", "content", ...} objects, checked and passed through with every field (reasoning_content,
// tool_calls, name, ...), as transformers hands them to the template.
Value messages_from(const Json& list, const char* field) {
  if (!list.is_array()) fail("field '{}' is {}, expected a list of messages", field, list.type_name());
  if (list.empty()) fail("field '{}' is an empty list", field);
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& m = list[i];
    if (!m.is_object()) fail("{}[{}] is {}, expected an object", field, i, m.type_name());
    if (!m.contains("role") || !m["role"].is_string()) fail("{}[{}] has no string 'role'", field, i);
    if (!m.contains("content")) fail("{}[{}] has no 'content'", field, i);
  }
  return Value::from_json(list.dump());
}

std::string sharegpt_role(const std::string& from, size_t i) {
  if (from == "system") return "system";
  if (from == "human" || from == "user") return "user";
  if (from == "gpt" || from == "assistant" || from == "model" || from == "chatgpt" || from == "bard" ||
      from == "bing")
    return "assistant";
  if (from == "tool" || from == "function" || from == "observation" || from == "function_response") return "tool";
  fail("conversations[{}].from = '{}': expected system, human, gpt (or user, assistant, tool)", i, from);
}

constexpr const char* kAlpacaWithInput =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n{}\n\n### Input:\n{}\n\n"
    "### Response:\n";
constexpr const char* kAlpacaNoInput =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{}\n\n### Response:\n";

size_t common_prefix(std::string_view a, std::string_view b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

Value prefix_of(const List& all, size_t n) { return Value::list(List(all.begin(), all.begin() + static_cast<long>(n))); }

std::string role_of(const Value& m) { return m.get("role").is_string() ? m.get("role").as_string() : ""; }

// Spans of the assistant turns before `last`, where the rendering is prefix-preserving (it is for the templates we
// know): each from where it leaves the generation prompt to the end of the turn.
void add_history_spans(const text::ChatTemplate& tpl, const List& msgs, size_t last, TrainingText& out) {
  text::ChatRenderOptions gen, plain;
  gen.add_generation_prompt = true;
  for (size_t i = 0; i < last; ++i) {
    if (role_of(msgs[i]) != "assistant") continue;
    const std::string p = tpl.render_value(prefix_of(msgs, i), gen).text;
    const std::string f = tpl.render_value(prefix_of(msgs, i + 1), plain).text;
    if (out.text.compare(0, f.size(), f) != 0) continue;  // not a prefix of the final text: left untrained
    const size_t b = common_prefix(p, f);
    if (f.size() > b) out.trained_spans.emplace_back(b, f.size());
  }
}

}  // namespace

RecordFormat parse_record_format(std::string_view s) {
  if (s == "auto" || s.empty()) return RecordFormat::automatic;
  if (s == "medical-o1") return RecordFormat::medical_o1;
  if (s == "messages") return RecordFormat::messages;
  if (s == "sharegpt") return RecordFormat::sharegpt;
  if (s == "alpaca") return RecordFormat::alpaca;
  if (s == "prompt-completion") return RecordFormat::prompt_completion;
  if (s == "text") return RecordFormat::text;
  fail("data format: unknown value '{}' (expected auto, medical-o1, messages, sharegpt, alpaca, prompt-completion "
       "or text)",
       s);
}

std::string_view to_string(RecordFormat f) {
  switch (f) {
    case RecordFormat::automatic: return "auto";
    case RecordFormat::medical_o1: return "medical-o1";
    case RecordFormat::messages: return "messages";
    case RecordFormat::sharegpt: return "sharegpt";
    case RecordFormat::alpaca: return "alpaca";
    case RecordFormat::prompt_completion: return "prompt-completion";
    case RecordFormat::text: return "text";
  }
  return "?";
}

RecordFormat detect_record_format(std::string_view record_json) {
  const Json j = parse_object(record_json);
  if (j.contains("messages")) return RecordFormat::messages;
  if (j.contains("conversations")) return RecordFormat::sharegpt;
  if (j.contains("Question") && j.contains("Response")) return RecordFormat::medical_o1;
  if (j.contains("instruction") && j.contains("output")) return RecordFormat::alpaca;
  if (j.contains("prompt") && j.contains("completion")) return RecordFormat::prompt_completion;
  if (j.contains("text")) return RecordFormat::text;
  fail("cannot tell the record's format from its fields ({}): expected messages, conversations (ShareGPT), "
       "Question/Complex_CoT/Response (medical-o1), instruction/output (Alpaca), prompt/completion or text; or give "
       "--data-format",
       field_names(j));
}

Example parse_example(std::string_view record_json, RecordFormat format) {
  const Json j = parse_object(record_json);
  if (format == RecordFormat::automatic) format = detect_record_format(record_json);
  Example ex;
  ex.format = format;
  switch (format) {
    case RecordFormat::automatic: break;
    case RecordFormat::messages: ex.messages = messages_from(need(j, "messages"), "messages"); break;
    case RecordFormat::sharegpt: {
      const Json& c = need(j, "conversations");
      if (!c.is_array() || c.empty()) fail("field 'conversations' must be a non-empty list");
      List msgs;
      for (size_t i = 0; i < c.size(); ++i) {
        if (!c[i].is_object() || !c[i].contains("from") || !c[i]["from"].is_string() || !c[i].contains("value") ||
            !c[i]["value"].is_string())
          fail("conversations[{}] must be an object with string 'from' and 'value'", i);
        msgs.push_back(message(sharegpt_role(c[i]["from"].get<std::string>(), i), c[i]["value"].get<std::string>()));
      }
      if (j.contains("system") && j["system"].is_string() && !j["system"].get<std::string>().empty() &&
          role_of(msgs.front()) != "system")
        msgs.insert(msgs.begin(), message("system", j["system"].get<std::string>()));
      ex.messages = Value::list(std::move(msgs));
      break;
    }
    case RecordFormat::medical_o1: {
      const std::string q = need_string(j, "Question", false);
      const std::string cot = need_string(j, "Complex_CoT", false);
      const std::string r = need_string(j, "Response", false);
      ex.messages = Value::list({message("user", q), message("assistant", "<think>\n" + cot + "\n</think>\n\n" + r)});
      break;
    }
    case RecordFormat::alpaca: {
      const std::string instruction = need_string(j, "instruction", false);
      const std::string input = j.contains("input") && j["input"].is_string() ? j["input"].get<std::string>() : "";
      ex.completion = need_string(j, "output", false);
      ex.prompt = input.empty() ? fmt::format(kAlpacaNoInput, instruction) : fmt::format(kAlpacaWithInput, instruction, input);
      ex.has_plain = true;
      List msgs;
      if (j.contains("system") && j["system"].is_string() && !j["system"].get<std::string>().empty())
        msgs.push_back(message("system", j["system"].get<std::string>()));
      msgs.push_back(message("user", input.empty() ? instruction : instruction + "\n\n" + input));
      msgs.push_back(message("assistant", ex.completion));
      ex.messages = Value::list(std::move(msgs));
      break;
    }
    case RecordFormat::prompt_completion: {
      const Json& p = need(j, "prompt");
      const Json& c = need(j, "completion");
      List msgs;
      if (p.is_string() && c.is_string()) {
        ex.prompt = p.get<std::string>();
        ex.completion = c.get<std::string>();
        if (ex.completion.empty()) fail("field 'completion' is an empty string");
        ex.has_plain = true;
        msgs.push_back(message("user", ex.prompt));
        msgs.push_back(message("assistant", ex.completion));
      } else {
        const Value prompt = messages_from(p, "prompt"), completion = messages_from(c, "completion");
        for (const auto& m : prompt.items()) msgs.push_back(m);
        for (const auto& m : completion.items()) msgs.push_back(m);
      }
      ex.messages = Value::list(std::move(msgs));
      break;
    }
    case RecordFormat::text:
      ex.text = need_string(j, "text", false);
      ex.has_plain = true;
      break;
  }
  return ex;
}

TrainingText render_chat_for_training(const text::ChatTemplate& tpl, const Value& messages) {
  const List& all = messages.items();
  size_t last = all.size();
  for (size_t i = all.size(); i-- > 0;)
    if (role_of(all[i]) == "assistant") {
      last = i;
      break;
    }
  if (last == all.size()) fail("the conversation has no assistant turn to train on");
  const List msgs(all.begin(), all.begin() + static_cast<long>(last) + 1);
  text::ChatRenderOptions gen, plain;
  gen.add_generation_prompt = true;
  TrainingText out;

  if (tpl.has_generation_blocks()) {
    // TRL's assistant_only_loss: the template marks what the assistant writes.
    text::jinja::RenderResult r = tpl.render_value(Value::list(msgs), plain);
    out.text = std::move(r.text);
    for (const auto& s : r.generation_spans)
      if (s.second > s.first) out.trained_spans.push_back(s);
    return out;
  }

  // The last assistant turn, as the model writes it after the generation prompt.
  const std::string prompt = tpl.render_value(prefix_of(msgs, last), gen).text;
  const std::string full = tpl.render_value(Value::list(msgs), plain).text;
  std::string tail;
  if (full.size() >= prompt.size() && full.compare(0, prompt.size(), prompt) == 0) {
    tail = full.substr(prompt.size());
  } else {
    // The template rewrites the turn (DeepSeek drops the reasoning): render it around a sentinel to learn what
    // comes before and after the content, and write the content as given.
    const std::string sentinel = "\x1f" "cotune-assistant-content" "\x1f";
    List probe = msgs;
    Value turn = Value::dict();
    for (const auto& [k, v] : msgs[last].entries().entries) turn.set(k, v);
    const Value content = turn.get("content");
    if (!content.is_string()) fail("the last assistant message's content must be a string");
    turn.set("content", Value::string(sentinel));
    probe[last] = turn;
    const std::string s = tpl.render_value(Value::list(probe), plain).text;
    const size_t at = s.find(sentinel);
    if (at == std::string::npos || s.find(sentinel, at + 1) != std::string::npos)
      fail("{}: cannot locate the assistant's content in the rendered turn", tpl.name());
    const std::string before = s.substr(0, at), after = s.substr(at + sentinel.size());
    if (prompt.compare(0, before.size(), before) != 0 || before.size() > prompt.size())
      fail("{}: the generation prompt does not continue the rendered history; cannot train the last assistant turn",
           tpl.name());
    const std::string already = prompt.substr(before.size());  // written by the generation prompt, e.g. "<think>\n"
    const std::string& body = content.as_string();
    if (body.compare(0, already.size(), already) != 0) {
      // The content does not continue the generation prompt (no reasoning for a template that opens "<think>"):
      // the turn as the template renders it, trained from where it leaves the generation prompt.
      out.text = full;
      const size_t b = common_prefix(prompt, full);
      add_history_spans(tpl, msgs, last, out);
      if (full.size() > b) out.trained_spans.emplace_back(b, full.size());
      return out;
    }
    tail = body.substr(already.size()) + after;
  }
  out.text = prompt + tail;

  add_history_spans(tpl, msgs, last, out);
  if (!tail.empty()) out.trained_spans.emplace_back(prompt.size(), out.text.size());
  return out;
}

TrainingText render_plain_for_training(const Example& ex, std::string_view eos_text) {
  TrainingText out;
  out.add_special = true;
  if (!ex.has_plain)
    fail("{} records need a chat template (--template chat) to become training text", to_string(ex.format));
  if (ex.format == RecordFormat::text) {
    out.text = ex.text + std::string(eos_text);
    out.trained_spans.emplace_back(0, out.text.size());
    return out;
  }
  out.text = ex.prompt + ex.completion + std::string(eos_text);
  out.trained_spans.emplace_back(ex.prompt.size(), out.text.size());
  return out;
}

std::vector<uint8_t> spans_to_token_mask(const text::Tokenizer& tok, std::span<const int32_t> ids,
                                         std::string_view text, bool add_special,
                                         const std::vector<std::pair<size_t, size_t>>& spans) {
  std::vector<uint8_t> mask(ids.size(), 0);
  size_t first = 0;
  if (add_special) first = tok.encode("", true).size();
  // Byte offsets of each token in the text.
  std::vector<size_t> begin(ids.size(), 0), end(ids.size(), 0);
  std::string seen;
  for (size_t i = first; i < ids.size(); ++i) {
    begin[i] = seen.size();
    seen += tok.token_bytes(ids[i]);
    end[i] = seen.size();
  }
  std::vector<std::pair<size_t, size_t>> sp = spans;
  if (seen != text) {
    // The normalizer changed the bytes (NFC): map each span boundary to the normalized text through the
    // tokenizer's own normalization of the text before it.
    const auto map = [&](size_t b) {
      size_t n = 0;
      for (int32_t id : tok.encode(text.substr(0, b), false)) n += tok.token_bytes(id).size();
      return n;
    };
    for (auto& s : sp) s = {map(s.first), map(s.second)};
  }
  // As transformers: a token is in the mask when it overlaps a span.
  size_t k = 0;
  for (size_t i = first; i < ids.size() && k < sp.size(); ++i) {
    while (k < sp.size() && begin[i] >= sp[k].second) ++k;
    if (k == sp.size()) break;
    if (end[i] > sp[k].first) mask[i] = 1;
  }
  return mask;
}

}  // namespace cotune::data
