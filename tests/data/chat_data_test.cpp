// Conversational datasets: record formats, rendering through chat templates, assistant masks against TRL's
// SFTTrainer(assistant_only_loss=True) (goldens from tools/make_chat_data_golden.py), and the dataset build.
#include "data/chat_data.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "common/test_paths.h"
#include "data/batch.h"
#include "data_test_util.h"

namespace cotune::data {
namespace {

using text::jinja::Value;

std::string error_of(auto&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

struct TrlCase {
  std::string messages_json;
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
};

std::vector<TrlCase> trl_cases() {
  std::ifstream in(cotune::testing::golden_dir() + "/data/trl_assistant_masks.jsonl");
  std::vector<TrlCase> out;
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::ordered_json::parse(line);
    out.push_back({j["messages"].dump(), j["input_ids"].get<std::vector<int32_t>>(),
                   j["assistant_masks"].get<std::vector<uint8_t>>()});
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> deepseek_specials() {
  return {{"bos_token", "<｜begin▁of▁sentence｜>"}, {"eos_token", "<｜end▁of▁sentence｜>"},
          {"pad_token", "<｜end▁of▁sentence｜>"}};
}

// TRL swaps in its generation-tagged training variant of the DeepSeek template; through that template our engine,
// tokenizer and span -> token mapping give TRL's input_ids and assistant masks exactly.
TEST(ChatData, GenerationBlocksMatchTrlAssistantMasks) {
  COTUNE_REQUIRE_FIXTURES(fx);
  const auto tok = text::Tokenizer::load(fx + "/deepseek-r1-distill-qwen-1.5b");
  std::ifstream src(cotune::testing::golden_dir() + "/chat_template/deepseek-r1-distill-training/chat_template.jinja");
  const std::string source((std::istreambuf_iterator<char>(src)), std::istreambuf_iterator<char>());
  const auto tpl = text::ChatTemplate::from_source(source, deepseek_specials(), "trl-deepseek-training");
  ASSERT_TRUE(tpl.has_generation_blocks());
  const auto cases = trl_cases();
  ASSERT_EQ(cases.size(), 5u);
  for (size_t i = 0; i < cases.size(); ++i) {
    const TrainingText t = render_chat_for_training(tpl, Value::from_json(cases[i].messages_json));
    const auto ids = tok.encode(t.text, t.add_special);
    ASSERT_EQ(ids, cases[i].ids) << "case " << i;
    EXPECT_EQ(spans_to_token_mask(tok, ids, t.text, t.add_special, t.trained_spans), cases[i].mask) << "case " << i;
  }
}

// With the model's own DeepSeek template (no generation blocks) a single-turn record gives TRL's text and ids, and
// trains TRL's tokens except the generation prompt "<｜Assistant｜><think>\n", which at inference is the prompt's
// end, not something the model writes.
TEST(ChatData, DeepSeekTemplateKeepsReasoningAndTrainsWhatTheModelWrites) {
  COTUNE_REQUIRE_FIXTURES(fx);
  const std::string dir = fx + "/deepseek-r1-distill-qwen-1.5b";
  const auto tok = text::Tokenizer::load(dir);
  const auto tpl = text::ChatTemplate::from_tokenizer_config(dir);
  const auto cases = trl_cases();
  int single_turn = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Value msgs = Value::from_json(cases[i].messages_json);
    if (msgs.items().size() != 2) continue;
    ++single_turn;
    const TrainingText t = render_chat_for_training(tpl, msgs);
    const auto ids = tok.encode(t.text, t.add_special);
    ASSERT_EQ(ids, cases[i].ids) << "case " << i;
    const auto mask = spans_to_token_mask(tok, ids, t.text, t.add_special, t.trained_spans);
    std::vector<int32_t> only_trl;
    for (size_t k = 0; k < ids.size(); ++k) {
      ASSERT_LE(mask[k], cases[i].mask[k]) << "case " << i << " token " << k;
      if (cases[i].mask[k] && !mask[k]) only_trl.push_back(ids[k]);
    }
    const bool reasoning = msgs.items()[1].get("content").as_string().rfind("<think>\n", 0) == 0;
    EXPECT_EQ(tok.decode(only_trl), reasoning ? "<｜Assistant｜><think>\n" : "<｜Assistant｜>") << "case " << i;
    // The prompt is exactly the inference prompt.
    const std::string prompt = tpl.render_value(Value::list({msgs.items()[0]}), {true, ""}).text;
    if (reasoning) {
      EXPECT_EQ(t.text.substr(0, prompt.size()), prompt);
      EXPECT_EQ(t.trained_spans.front().first, prompt.size());
    }
  }
  EXPECT_EQ(single_turn, 4);
}

TEST(ChatData, MultiTurnSpansWithQwenTemplate) {
  const auto tpl = text::ChatTemplate::from_tokenizer_config(cotune::testing::golden_dir() + "/chat_template/qwen2.5");
  const Value msgs = Value::from_json(R"([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
      {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}, {"role": "user", "content": "tail"}])");
  const TrainingText t = render_chat_for_training(tpl, msgs);
  const std::string sys = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";
  EXPECT_EQ(t.text, sys + "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n"
                          "<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\nd<|im_end|>\n");
  ASSERT_EQ(t.trained_spans.size(), 2u);
  EXPECT_EQ(t.text.substr(t.trained_spans[0].first, t.trained_spans[0].second - t.trained_spans[0].first),
            "b<|im_end|>\n");
  EXPECT_EQ(t.text.substr(t.trained_spans[1].first), "d<|im_end|>\n");
  EXPECT_FALSE(t.add_special);
  EXPECT_NE(error_of([&] { render_chat_for_training(tpl, Value::from_json(R"([{"role": "user", "content": "x"}])")); })
                .find("no assistant turn"),
            std::string::npos);
}

TEST(ChatData, RecordFormats) {
  EXPECT_EQ(detect_record_format(R"({"messages": []})"), RecordFormat::messages);
  EXPECT_EQ(detect_record_format(R"({"conversations": []})"), RecordFormat::sharegpt);
  EXPECT_EQ(detect_record_format(R"({"Question": "q", "Complex_CoT": "c", "Response": "r"})"), RecordFormat::medical_o1);
  EXPECT_EQ(detect_record_format(R"({"instruction": "i", "input": "", "output": "o"})"), RecordFormat::alpaca);
  EXPECT_EQ(detect_record_format(R"({"prompt": "p", "completion": "c"})"), RecordFormat::prompt_completion);
  EXPECT_EQ(detect_record_format(R"({"text": "t"})"), RecordFormat::text);
  EXPECT_NE(error_of([] { detect_record_format(R"({"foo": 1, "bar": 2})"); }).find("fields (foo, bar)"), std::string::npos);
  EXPECT_EQ(parse_record_format("prompt-completion"), RecordFormat::prompt_completion);
  EXPECT_NE(error_of([] { parse_record_format("xml"); }).find("unknown value 'xml'"), std::string::npos);

  auto sg = parse_example(R"({"system": "S", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]})",
                          RecordFormat::automatic);
  EXPECT_EQ(sg.messages.to_json(),
            R"([{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])");
  auto med = parse_example(R"({"Question": "Q", "Complex_CoT": "C", "Response": "R"})", RecordFormat::automatic);
  EXPECT_EQ(med.messages.items()[1].get("content").as_string(), "<think>\nC\n</think>\n\nR");
  auto al = parse_example(R"({"instruction": "Do", "input": "this", "output": "done"})", RecordFormat::automatic);
  EXPECT_EQ(al.messages.items()[0].get("content").as_string(), "Do\n\nthis");
  auto pt = render_plain_for_training(al, "</s>");
  EXPECT_EQ(pt.text.substr(pt.trained_spans[0].first), "done</s>");
  EXPECT_NE(pt.text.find("### Input:\nthis\n\n### Response:\n"), std::string::npos);
  auto pc = parse_example(R"({"prompt": [{"role": "user", "content": "u"}], "completion": [{"role": "assistant", "content": "a", "reasoning_content": "r"}]})",
                          RecordFormat::automatic);
  EXPECT_EQ(pc.messages.items().size(), 2u);
  EXPECT_EQ(pc.messages.items()[1].get("reasoning_content").as_string(), "r");
  EXPECT_FALSE(pc.has_plain);
  auto tx = render_plain_for_training(parse_example(R"({"text": "hello"})", RecordFormat::automatic), "<e>");
  EXPECT_EQ(tx.text, "hello<e>");
  EXPECT_NE(error_of([] { render_plain_for_training(parse_example(R"({"messages": [{"role": "user", "content": "x"}]})",
                                                                  RecordFormat::automatic), "e"); })
                .find("need a chat template"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_example(R"({"messages": [{"content": "x"}]})", RecordFormat::messages); })
                .find("messages[0] has no string 'role'"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_example(R"({"conversations": [{"from": "alien", "value": "x"}]})", RecordFormat::sharegpt); })
                .find("'alien'"),
            std::string::npos);
}

// The whole path: a messages JSONL -> dataset with assistant masks -> batch targets only on assistant tokens; a
// bad record names its file and line.
TEST(ChatData, BuildDatasetAndBatchTargets) {
  COTUNE_REQUIRE_FIXTURES(fx);
  const std::string dir = fx + "/deepseek-r1-distill-qwen-1.5b";
  const auto tok = text::Tokenizer::load(dir);
  const auto tpl = text::ChatTemplate::from_tokenizer_config(dir);
  testing::TempDir tmp;
  const std::string data = tmp.file("chat.jsonl",
                                    R"({"messages": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>\nr\n</think>\n\nA1"}]})"
                                    "\n"
                                    R"({"messages": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}, {"role": "user", "content": "Q3"}, {"role": "assistant", "content": "A3"}]})"
                                    "\n");
  DataOptions o;
  o.data_path = data;
  o.cache_dir = tmp.sub("cache");
  DatasetFormat f;
  f.chat_template = &tpl;
  TokenizedDataset ds = build_dataset(o, f, tok);
  ASSERT_EQ(ds.size(), 2u);
  ASSERT_EQ(ds.assistant_mask.size(), ds.tokens.size());
  EXPECT_FALSE(ds.from_cache);
  TokenizedDataset again = build_dataset(o, f, tok);
  EXPECT_TRUE(again.from_cache);
  EXPECT_EQ(again.assistant_mask, ds.assistant_mask);
  EXPECT_EQ(again.tokens, ds.tokens);

  BatchOptions bo;
  bo.max_tokens = 4096;
  bo.mask = LossMask::assistant;
  Batch b = make_batch(ds, {0, 1}, bo);
  // Decode what is trained in each sequence.
  std::vector<std::string> trained(2);
  for (int s = 0; s < 2; ++s) {
    std::vector<int32_t> t;
    for (int32_t k = b.cu_seqlens[s]; k < b.cu_seqlens[s + 1]; ++k)
      if (b.targets[k] != kIgnoreIndex) t.push_back(b.targets[k]);
    trained[s] = tok.decode(t);
  }
  EXPECT_EQ(trained[0], "r\n</think>\n\nA1<｜end▁of▁sentence｜>");
  EXPECT_EQ(trained[1], "A2<｜end▁of▁sentence｜>A3<｜end▁of▁sentence｜>");
  // response = everything after the first trained token (the user turn in between too)
  bo.mask = LossMask::response;
  Batch r = make_batch(ds, {1}, bo);
  EXPECT_GT(r.num_targets, b.num_targets - static_cast<int64_t>(tok.encode("r\n</think>\n\nA1<｜end▁of▁sentence｜>", false).size()));

  // The same records without a chat template: an error that says what to do.
  DatasetFormat plain;
  EXPECT_NE(error_of([&] { build_dataset(o, plain, tok); }).find("--template chat"), std::string::npos);
  // A record of the wrong shape names its line.
  const std::string bad = tmp.file("bad.jsonl", R"({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]})"
                                                "\n"
                                                R"({"messages": "oops"})"
                                                "\n");
  o.data_path = bad;
  o.use_cache = false;
  EXPECT_NE(error_of([&] { build_dataset(o, f, tok); }).find("bad.jsonl:2"), std::string::npos);
  o.on_bad_record = OnBadRecord::skip;
  EXPECT_EQ(build_dataset(o, f, tok).size(), 1u);
}

// medical-o1 records through the chat template: Question -> user, <think> CoT </think> Response -> assistant.
TEST(ChatData, MedicalRecordsThroughTheChatTemplate) {
  COTUNE_REQUIRE_FIXTURES(fx);
  const std::string dir = fx + "/deepseek-r1-distill-qwen-1.5b";
  const auto tok = text::Tokenizer::load(dir);
  const auto tpl = text::ChatTemplate::from_tokenizer_config(dir);
  DataOptions o;
  o.data_path = fx + "/medical-o1/medical_o1_sft_en_first10.json";
  o.use_cache = false;
  DatasetFormat f;
  f.chat_template = &tpl;
  TokenizedDataset ds = build_dataset(o, f, tok);
  ASSERT_EQ(ds.size(), 10u);
  const std::string first = tok.decode(ds.sequence(0));
  EXPECT_EQ(first.rfind("<｜begin▁of▁sentence｜><｜User｜>", 0), 0u);
  EXPECT_NE(first.find("<｜Assistant｜><think>\n"), std::string::npos);
  EXPECT_NE(first.find("\n</think>\n\n"), std::string::npos);
  EXPECT_EQ(first.substr(first.size() - std::string("<｜end▁of▁sentence｜>").size()), "<｜end▁of▁sentence｜>");
  // The trained part starts right after "<think>\n".
  const auto ids = ds.sequence(0);
  std::vector<int32_t> prompt(ids.begin(), ids.begin() + ds.prompt_lengths[0]);
  EXPECT_EQ(tok.decode(prompt).substr(tok.decode(prompt).size() - std::string("<｜Assistant｜><think>\n").size()),
            "<｜Assistant｜><think>\n");
}

}  // namespace
}  // namespace cotune::data
