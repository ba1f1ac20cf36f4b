// The Ollama Modelfile's TEMPLATE (export/ollama.h), derived by probing the real chat templates of the families
// in tests/golden/chat_template (and the DeepSeek-R1-Distill fixture): its pieces, and the conversations Ollama
// renders for a reply, evaluated from those pieces the way Ollama's Go template does (system messages collected
// into .System and skipped in the loop, a system message present (even empty) replacing the default one, the generation prompt after the last user turn), compared with the Jinja
// rendering (= transformers' apply_chat_template, BOS left to the tokenizer). tools/check_ollama_template.go
// repeats the comparison with Go's own text/template.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/test_paths.h"
#include "export/ollama.h"
#include "text/chat_template.h"

namespace cotune::exporting {
namespace {

namespace fs = std::filesystem;
using text::ChatMessage;

std::string template_dir(const std::string& name) {
  return (fs::path(testing::golden_dir()) / "chat_template" / name).string();
}

// What Ollama's Execute produces with the derived pieces for `messages` (its collate: system contents joined by
// a blank line; consecutive messages of one role merged likewise).
std::string render_like_ollama(const OllamaTemplate& t, const std::vector<ChatMessage>& messages) {
  std::string system;
  bool has_system = false;
  std::vector<ChatMessage> turns;
  for (const auto& m : messages) {
    if (m.role == "system") {
      system += (has_system ? "\n\n" : "") + m.content;
      has_system = true;
    }
    if (!turns.empty() && turns.back().role == m.role) turns.back().content += "\n\n" + m.content;
    else turns.push_back(m);
  }
  std::string out = !has_system ? t.default_system_block : t.system_prefix + system + t.system_suffix;
  for (size_t i = 0; i < turns.size(); ++i) {
    const bool last = i + 1 == turns.size();
    if (turns[i].role == "user") out += t.user_prefix + turns[i].content + t.user_suffix;
    else if (turns[i].role == "assistant") out += t.assistant_prefix + turns[i].content + (last ? "" : t.assistant_suffix);
    if (last && turns[i].role != "assistant") out += t.generation_prompt;
  }
  return out;
}

const std::vector<std::vector<ChatMessage>>& conversations() {
  static const std::vector<std::vector<ChatMessage>> c = {
      {{"user", "What is the capital of France?"}},
      {{"system", ""}, {"user", "An empty system message replaces the default one."}},
      {{"system", "You are a careful clinician."}, {"user", "A 45-year-old man has chest pain. Next step?"}},
      {{"user", "Hi"}, {"assistant", "Hello! How can I help?"}, {"user", "Explain anemia in one line."}},
      {{"system", "Answer briefly."},
       {"user", "数字 12345 和中文，标点。"},
       {"assistant", "好的 🙂"},
       {"user", "emoji 🙂🚀 and ünïcödé\n\nwith two paragraphs"},
       {"assistant", "Done."},
       {"user", "  leading spaces and\ttabs  "}},
  };
  return c;
}

void expect_equivalent(const text::ChatTemplate& tpl, const OllamaTemplate& t, bool strip_bos) {
  for (const auto& conv : conversations()) {
    // A trimming template (Llama 3) differs, by design, on contents with surrounding whitespace (ollama.h).
    if (t.trims_content && conv.back().content.front() == ' ') continue;
    std::string want = tpl.render(conv, true);
    if (strip_bos && !tpl.bos_token().empty() && want.rfind(tpl.bos_token(), 0) == 0)
      want.erase(0, tpl.bos_token().size());
    EXPECT_EQ(render_like_ollama(t, conv), want) << "conversation of " << conv.size() << " messages";
  }
}

TEST(OllamaTemplate, DeepSeekR1DistillOpensThinkAndLeavesBosToTheTokenizer) {
  COTUNE_REQUIRE_FIXTURES(fx);
  const auto tpl = text::ChatTemplate::from_tokenizer_config(fx + "/deepseek-r1-distill-qwen-1.5b");
  const auto t = ollama_template(tpl, /*strip_bos*/ true);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->default_system_block, "");
  EXPECT_EQ(t->user_prefix, "<｜User｜>");
  EXPECT_EQ(t->assistant_prefix, "<｜Assistant｜>");
  EXPECT_EQ(t->assistant_suffix, "<｜end▁of▁sentence｜>");
  EXPECT_EQ(t->generation_prompt, "<｜Assistant｜><think>\n");
  EXPECT_EQ(t->stops, (std::vector<std::string>{"<｜end▁of▁sentence｜>", "<｜User｜>"}));
  expect_equivalent(tpl, *t, true);
}

TEST(OllamaTemplate, ChatMLFamiliesKeepTheirDefaultSystemPrompt) {
  for (const std::string name : {"qwen2.5", "smollm2", "qwen3"}) {
    SCOPED_TRACE(name);
    const auto tpl = text::ChatTemplate::from_tokenizer_config(template_dir(name));
    const auto t = ollama_template(tpl, false);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->user_prefix, "<|im_start|>user\n");
    EXPECT_EQ(t->user_suffix, "<|im_end|>\n");
    EXPECT_EQ(t->generation_prompt, "<|im_start|>assistant\n");
    EXPECT_EQ(t->system_prefix, "<|im_start|>system\n");
    EXPECT_EQ(t->stops.front(), "<|im_end|>");
    if (name == "qwen2.5") {
      EXPECT_EQ(t->default_system_block,
                "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n");
    }
    expect_equivalent(tpl, *t, false);
  }
}

TEST(OllamaTemplate, Llama3HeadersWithTheirSystemPreamble) {
  const auto tpl = text::ChatTemplate::from_tokenizer_config(template_dir("llama-3.2"));
  const auto t = ollama_template(tpl, true);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->user_prefix, "<|start_header_id|>user<|end_header_id|>\n\n");
  EXPECT_EQ(t->assistant_suffix, "<|eot_id|>");
  EXPECT_EQ(t->generation_prompt, "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(t->system_prefix.rfind("<|start_header_id|>system<|end_header_id|>\n\n", 0), 0u) << t->system_prefix;
  EXPECT_NE(t->stops.end(), std::find(t->stops.begin(), t->stops.end(), "<|eot_id|>"));
  EXPECT_TRUE(t->trims_content);
  expect_equivalent(tpl, *t, true);
}

TEST(OllamaTemplate, GoLiteralsAndTheModelfileShape) {
  // "{{" in a template's own text must not open a Go action.
  const auto tpl = text::ChatTemplate::from_source(
      "{% for m in messages %}{{ '{{' + m.role + '}} ' + m.content + '\\n' }}{% endfor %}"
      "{% if add_generation_prompt %}{{ '{{assistant}} ' }}{% endif %}",
      {});
  const auto t = ollama_template(tpl, false);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->user_prefix, "{{user}} ");
  EXPECT_NE(t->go_template.find("{{\"{{\"}}user}} {{ .Content }}"), std::string::npos) << t->go_template;
}

TEST(OllamaTemplate, TemplatesThatAreNotRoleBlocksGetNone) {
  // Mistral folds the system prompt into the last user turn: no role-block Go template reproduces it.
  const auto tpl = text::ChatTemplate::from_tokenizer_config(template_dir("mistral-nemo-instruct-2407"));
  const auto t = ollama_template(tpl, true);
  if (t) expect_equivalent(tpl, *t, true);  // if it does convert, it must render the same
  // A template that refuses a system message cannot be probed.
  const auto strict = text::ChatTemplate::from_source(
      "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system') }}{% endif %}"
      "{{ m.content }}{% endfor %}",
      {});
  EXPECT_FALSE(ollama_template(strict, false));
}

}  // namespace
}  // namespace cotune::exporting
