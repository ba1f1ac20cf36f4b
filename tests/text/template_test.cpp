// Prompt templates: placeholder syntax, prompt-prefix rule, built-ins against the guide / seed script text.
#include "text/template.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mmap.h"
#include "common/test_paths.h"

namespace cotune::text {
namespace {

std::string error_of(auto&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Template, ParsesFieldsAndEscapes) {
  auto t = PromptTemplate::parse("t", "{{x}} Q: {Question}\nA: {Answer} {Question}}}", "{{x}} Q: {Question}\nA: ");
  ASSERT_EQ(t.fields(), (std::vector<std::string>{"Question", "Answer"}));
  ASSERT_EQ(t.prompt_fields(), (std::vector<std::string>{"Question"}));
  std::vector<std::string> v = {"why?", "because"};
  auto out = t.format_train(v, "<eos>");
  EXPECT_EQ(out.text, "{x} Q: why?\nA: because why?}<eos>");
  EXPECT_EQ(out.prompt_bytes, std::string("{x} Q: why?\nA: ").size());
  EXPECT_EQ(out.text.substr(0, out.prompt_bytes), t.format_prompt(std::map<std::string, std::string>{{"Question", "why?"}}));
}

TEST(Template, RejectsBadPlaceholders) {
  EXPECT_NE(error_of([] { PromptTemplate::parse("t", "a {} b", ""); }).find("unknown placeholder '{}' at byte 2"),
            std::string::npos);
  EXPECT_NE(error_of([] { PromptTemplate::parse("t", "a {0}", ""); }).find("unknown placeholder '{0}'"), std::string::npos);
  EXPECT_NE(error_of([] { PromptTemplate::parse("t", "a {b c}", ""); }).find("unknown placeholder"), std::string::npos);
  EXPECT_NE(error_of([] { PromptTemplate::parse("t", "a {Q", ""); }).find("unterminated placeholder"), std::string::npos);
  EXPECT_NE(error_of([] { PromptTemplate::parse("t", "a } b", ""); }).find("unpaired '}' at byte 2"), std::string::npos);
  EXPECT_NE(error_of([] { PromptTemplate::parse("t", "", ""); }).find("empty"), std::string::npos);
}

TEST(Template, PromptMustBePrefixOfTrain) {
  std::string e = error_of([] { PromptTemplate::parse("t", "Q: {Question} A: {Answer}", "Q: {Answer}"); });
  EXPECT_NE(e.find("prompt must be the beginning of the train text"), std::string::npos) << e;
  EXPECT_NE(e.find("prompt continues '{Answer}' the train text continues '{Question} A: {Answe'"), std::string::npos)
      << e;
  // A prompt that ends inside a train literal is fine.
  auto t = PromptTemplate::parse("t", "Q: {Question}\nA: {Answer}", "Q: {Question}\nA");
  std::vector<std::string> v = {"q", "a"};
  EXPECT_EQ(t.format_train(v, "").prompt_bytes, 6u);
}

TEST(Template, MissingPromptFieldNamed) {
  auto t = PromptTemplate::builtin("medical-o1-en");
  std::string e = error_of([&] { t.format_prompt(std::map<std::string, std::string>{{"question", "x"}}); });
  EXPECT_NE(e.find("needs field 'Question'"), std::string::npos) << e;
}

TEST(Template, UnknownBuiltinListsKnown) {
  std::string e = error_of([] { PromptTemplate::builtin("alpaca"); });
  EXPECT_NE(e.find("medical-o1-zh, medical-o1-en"), std::string::npos) << e;
}

TEST(Template, MedicalEnMatchesGuide) {
  auto t = PromptTemplate::builtin("medical-o1-en");
  EXPECT_EQ(t.fields(), (std::vector<std::string>{"Question", "Complex_CoT", "Response"}));
  // GUIDE.md "Inference Prompt Template", with {question} filled.
  const std::string guide =
      "Below is an instruction that describes a task.\nPlease carefully reason step by step before answering.\n\n"
      "### Instruction:\nYou are a medical expert specializing in clinical reasoning, diagnosis, and treatment "
      "planning.\n\n### Question:\nQQ\n\n### Response:\n<think>\n";
  EXPECT_EQ(t.format_prompt(std::map<std::string, std::string>{{"Question", "QQ"}}), guide);
  std::vector<std::string> v = {"QQ", "CC", "RR"};
  auto out = t.format_train(v, "<｜end▁of▁sentence｜>");
  EXPECT_EQ(out.text, guide + "CC\n</think>\nRR<｜end▁of▁sentence｜>");
  EXPECT_EQ(out.prompt_bytes, guide.size());
}

// The zh template is the seed script's train_prompt_style without its 24-space indentation.
TEST(Template, MedicalZhMatchesSeedScript) {
  COTUNE_REQUIRE_FIXTURES(fx);
  auto j = nlohmann::json::parse(read_file(fx + "/medical-o1/seed_prompt_templates.json"));
  std::string train = j["seed_unsloth_qwen1.5b_zh"]["train_prompt_style"];
  std::string inference = j["seed_unsloth_qwen1.5b_zh"]["inference_prompt_style"];
  std::string clean;  // drop the 24 spaces after each newline
  for (size_t i = 0; i < train.size(); ++i) {
    clean += train[i];
    if (train[i] == '\n' && train.compare(i + 1, 24, std::string(24, ' ')) == 0) i += 24;
  }
  train = clean;
  // Fill the Python '{}' slots in order.
  auto fill = [](std::string s, std::vector<std::string> vals) {
    std::string out;
    size_t k = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s.compare(i, 2, "{}") == 0 && k < vals.size()) {
        out += vals[k++];
        ++i;
      } else {
        out += s[i];
      }
    }
    return out;
  };
  auto t = PromptTemplate::builtin("medical-o1-zh");
  std::vector<std::string> v = {"问题", "思考", "回答"};
  auto out = t.format_train(v, "<｜end▁of▁sentence｜>");
  EXPECT_EQ(out.text, fill(train, v) + "<｜end▁of▁sentence｜>");
  std::string prompt = t.format_prompt(std::map<std::string, std::string>{{"Question", "问题"}});
  // The seed's inference prompt is "...<think>{}": ours stops after "<think>\n", where the model starts writing.
  EXPECT_EQ(prompt, fill(inference, {"问题", "\n"}));
  EXPECT_EQ(out.text.substr(0, out.prompt_bytes), prompt);
}

TEST(Template, LoadsJsonFile) {
  auto dir = std::filesystem::temp_directory_path() / ("cotune_tpl_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto path = (dir / "qa.json").string();
  std::ofstream(path) << R"({"train": "Q: {q}\nA: {a}", "prompt": "Q: {q}\nA: "})";
  auto t = PromptTemplate::load_file(path);
  EXPECT_EQ(t.name(), "qa");
  EXPECT_EQ(t.fields(), (std::vector<std::string>{"q", "a"}));
  std::ofstream(path) << R"({"train": "Q: {q}\nA: {a}", "promt": "x"})";
  std::string e = error_of([&] { PromptTemplate::load_file(path); });
  EXPECT_NE(e.find("unknown key \"promt\""), std::string::npos) << e;
  EXPECT_NE(e.find(path), std::string::npos) << e;
  std::ofstream(path) << R"({"train": "Q: {q} {}"})";
  e = error_of([&] { PromptTemplate::load_file(path); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("unknown placeholder"), std::string::npos) << e;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cotune::text
