#include "text/template.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_error.h"
#include "base/mmap.h"

namespace cotune::text {
namespace {

bool is_ident_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool is_ident_char(char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }

// The guide's inference prompt (GUIDE.md, "Inference Prompt Template"), ending after "<think>\n".
constexpr const char* kMedicalEnPrompt =
    "Below is an instruction that describes a task.\n"
    "Please carefully reason step by step before answering.\n"
    "\n"
    "### Instruction:\n"
    "You are a medical expert specializing in clinical reasoning, diagnosis, and treatment planning.\n"
    "\n"
    "### Question:\n"
    "{Question}\n"
    "\n"
    "### Response:\n"
    "<think>\n";

// The seed script's prompt (fixtures/medical-o1/seed_prompt_templates.json, `inference_prompt_style`), which is
// its `train_prompt_style` without the 24-space Python indentation, up to and including "<think>\n".
constexpr const char* kMedicalZhPrompt =
    "以下是描述任务的指令，以及提供更多上下文的输入。\n"
    "请写出恰当完成该请求的回答。\n"
    "在回答之前，请仔细思考问题，并创建一个逐步的思维链，以确保回答合乎逻辑且准确。\n"
    "\n"
    "### Instruction:\n"
    "你是一位在临床推理、诊断和治疗计划方面具有专业知识的医学专家。\n"
    "请回答以下医学问题。\n"
    "\n"
    "### Question:\n"
    "{Question}\n"
    "\n"
    "### Response:\n"
    "<think>\n";

// Both medical templates train on: prompt + reasoning inside <think> + answer (EOS appended by the pipeline).
constexpr const char* kMedicalTrainTail = "{Complex_CoT}\n</think>\n{Response}";

// Renders a piece list with fields as sentinel markers, so prefix checks compare literals and fields at once.
std::string render_skeleton(const std::vector<PromptTemplate::Piece>& pieces) {
  std::string out;
  for (const auto& p : pieces) {
    if (p.is_field) {
      out += '\x01';
      out += p.text;
      out += '\x02';
    } else {
      out += p.text;
    }
  }
  return out;
}

void collect_fields(const std::vector<PromptTemplate::Piece>& pieces, std::vector<std::string>& names,
                    std::vector<int>& piece_index) {
  piece_index.clear();
  for (const auto& p : pieces) {
    if (!p.is_field) {
      piece_index.push_back(-1);
      continue;
    }
    auto it = std::find(names.begin(), names.end(), p.text);
    if (it == names.end()) {
      names.push_back(p.text);
      it = names.end() - 1;
    }
    piece_index.push_back(static_cast<int>(it - names.begin()));
  }
}

}  // namespace

std::vector<PromptTemplate::Piece> parse_template_text(std::string_view src, std::string_view what) {
  std::vector<PromptTemplate::Piece> pieces;
  std::string literal;
  auto flush = [&] {
    if (!literal.empty()) pieces.push_back({false, std::move(literal)});
    literal.clear();
  };
  for (size_t i = 0; i < src.size(); ++i) {
    char c = src[i];
    if (c == '{') {
      if (i + 1 < src.size() && src[i + 1] == '{') {
        literal += '{';
        ++i;
        continue;
      }
      size_t close = src.find('}', i + 1);
      if (close == std::string_view::npos)
        fail("{}: unterminated placeholder '{{' at byte {} (write '{{{{' for a literal brace)", what, i);
      std::string_view name = src.substr(i + 1, close - i - 1);
      bool ok = !name.empty() && is_ident_start(name[0]) &&
                std::all_of(name.begin(), name.end(), [](char ch) { return is_ident_char(ch); });
      if (!ok)
        fail("{}: unknown placeholder '{{{}}}' at byte {}: expected {{FieldName}} with a name like Question or "
             "Complex_CoT (write '{{{{' / '}}}}' for literal braces)",
             what, name, i);
      flush();
      pieces.push_back({true, std::string(name)});
      i = close;
    } else if (c == '}') {
      if (i + 1 < src.size() && src[i + 1] == '}') {
        literal += '}';
        ++i;
        continue;
      }
      fail("{}: unpaired '}}' at byte {} (write '}}}}' for a literal brace)", what, i);
    } else {
      literal += c;
    }
  }
  flush();
  return pieces;
}

PromptTemplate PromptTemplate::parse(std::string name, std::string_view train, std::string_view prompt) {
  PromptTemplate t;
  t.name_ = std::move(name);
  t.train_src_ = std::string(train);
  t.prompt_src_ = std::string(prompt);
  t.train_ = parse_template_text(train, fmt::format("template '{}' (train)", t.name_));
  t.prompt_ = parse_template_text(prompt, fmt::format("template '{}' (prompt)", t.name_));
  if (t.train_.empty()) fail("template '{}': the train text is empty", t.name_);
  collect_fields(t.train_, t.fields_, t.train_field_index_);
  collect_fields(t.prompt_, t.prompt_fields_, t.prompt_field_index_);

  // The prompt must be a prefix of train, so the response mask can cut the formatted text at one byte offset.
  std::string ts = render_skeleton(t.train_), ps = render_skeleton(t.prompt_);
  if (ts.compare(0, ps.size(), ps) != 0) {
    size_t k = 0;
    while (k < ps.size() && k < ts.size() && ps[k] == ts[k]) ++k;
    size_t open = ps.rfind('\x01', k), close = ps.rfind('\x02', k);
    if (open != std::string::npos && (close == std::string::npos || close < open)) k = open;  // show whole {Field}
    std::string ctx_p = ps.substr(k, 20), ctx_t = ts.substr(k, 20);
    for (auto* s : {&ctx_p, &ctx_t})
      for (auto& ch : *s)
        if (ch == '\x01') ch = '{';
        else if (ch == '\x02') ch = '}';
    fail("template '{}': the prompt must be the beginning of the train text, but where the prompt continues '{}' "
         "the train text continues '{}'",
         t.name_, ctx_p, ctx_t);
  }
  return t;
}

std::vector<std::string> PromptTemplate::builtin_names() { return {"medical-o1-zh", "medical-o1-en"}; }

PromptTemplate PromptTemplate::builtin(std::string_view name) {
  if (name == "medical-o1-en")
    return parse("medical-o1-en", std::string(kMedicalEnPrompt) + kMedicalTrainTail, kMedicalEnPrompt);
  if (name == "medical-o1-zh")
    return parse("medical-o1-zh", std::string(kMedicalZhPrompt) + kMedicalTrainTail, kMedicalZhPrompt);
  std::string known;
  for (const auto& n : builtin_names()) known += (known.empty() ? "" : ", ") + n;
  fail("unknown template '{}': built-in templates are {} (or pass --template-file FILE)", name, known);
}

PromptTemplate PromptTemplate::load_file(const std::string& path) {
  std::string bytes = read_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(bytes);
  } catch (const nlohmann::json::exception&) {
    fail("{}: template file is not valid JSON: {}", path, json_syntax_error(bytes));
  }
  if (!j.is_object()) fail("{}: template file must be a JSON object with \"train\" and \"prompt\" keys", path);
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() != "name" && it.key() != "train" && it.key() != "prompt")
      fail("{}: unknown key \"{}\" (expected \"name\", \"train\", \"prompt\")", path, it.key());
    if (!it.value().is_string()) fail("{}: key \"{}\" must be a string", path, it.key());
  }
  if (!j.contains("train")) fail("{}: missing key \"train\" (the training text with {{Field}} placeholders)", path);
  std::string name = j.contains("name") ? j["name"].get<std::string>()
                                        : std::filesystem::path(path).stem().string();
  std::string prompt = j.contains("prompt") ? j["prompt"].get<std::string>() : std::string();
  return with_context(path, [&] { return parse(name, j["train"].get<std::string>(), prompt); });
}

std::string PromptTemplate::fingerprint() const {
  nlohmann::json j = {{"train", train_src_}, {"prompt", prompt_src_}};
  return j.dump();
}

PromptTemplate::TrainText PromptTemplate::format_train(std::span<const std::string> values,
                                                       std::string_view eos_text) const {
  COTUNE_CHECK(values.size() == fields_.size(), "template '{}': format_train got {} values for {} fields", name_,
               values.size(), fields_.size());
  TrainText out;
  size_t reserve = eos_text.size();
  for (size_t i = 0; i < train_.size(); ++i)
    reserve += train_field_index_[i] < 0 ? train_[i].text.size() : values[train_field_index_[i]].size();
  out.text.reserve(reserve);
  // The prompt pieces are a prefix of the train pieces (checked in parse), except that the last prompt literal
  // may end inside a train literal; so the prompt's byte length is computed from the prompt's own pieces.
  for (size_t i = 0; i < prompt_.size(); ++i) {
    if (prompt_field_index_[i] < 0) {
      out.prompt_bytes += prompt_[i].text.size();
    } else {
      auto it = std::find(fields_.begin(), fields_.end(), prompt_[i].text);
      out.prompt_bytes += values[it - fields_.begin()].size();
    }
  }
  for (size_t i = 0; i < train_.size(); ++i)
    out.text += train_field_index_[i] < 0 ? train_[i].text : values[train_field_index_[i]];
  out.text += eos_text;
  return out;
}

std::string PromptTemplate::format_prompt(std::span<const std::string> values) const {
  COTUNE_CHECK(values.size() == prompt_fields_.size(), "template '{}': format_prompt got {} values for {} fields",
               name_, values.size(), prompt_fields_.size());
  std::string out;
  for (size_t i = 0; i < prompt_.size(); ++i)
    out += prompt_field_index_[i] < 0 ? prompt_[i].text : values[prompt_field_index_[i]];
  return out;
}

std::string PromptTemplate::format_prompt(const std::map<std::string, std::string>& values) const {
  std::vector<std::string> v;
  for (const auto& f : prompt_fields_) {
    auto it = values.find(f);
    if (it == values.end()) fail("template '{}': the prompt needs field '{}', which was not given", name_, f);
    v.push_back(it->second);
  }
  return format_prompt(v);
}

}  // namespace cotune::text
