// Text-level generation on a tiny model with a tokenizer (init-model's demo preset): streaming pieces add up to
// the text, stop strings; held-out loss; the `<think>` split; the before/after report.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/test_paths.h"
#include "data/dataset.h"
#include "infer/evaluate.h"
#include "infer/generator.h"
#include "infer/text_stream.h"
#include "export/demo_model.h"
#include "model/qwen2.h"
#include "text/template.h"
#include "text/tokenizer.h"

namespace cotune {
namespace {

namespace fs = std::filesystem;

std::string demo_data() { return testing::source_dir() + "/recipes/data/demo_medical.jsonl"; }

// One demo model folder for the whole suite.
const std::string& demo_model() {
  static const std::string dir = [] {
    fs::path d = fs::temp_directory_path() / ("cotune_infer_demo_" + std::to_string(::getpid()));
    exporting::InitModelOptions o;
    o.preset = "demo";
    o.vocab_from = demo_data();
    exporting::init_model(d.string(), o);
    return d.string();
  }();
  return dir;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(GenerateText, StreamAddsUpToTextAndDefaultsComeFromTheFolder) {
  const std::string dir = demo_model();
  text::Tokenizer tok = text::Tokenizer::load(dir);
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  infer::GenerationOptions o = infer::GenerationOptions::from_model_folder(dir, &tok);
  EXPECT_TRUE(o.sampling.do_sample);  // init-model writes R1-Distill's generation_config.json
  EXPECT_FLOAT_EQ(o.sampling.temperature, 0.6f);
  EXPECT_FLOAT_EQ(o.sampling.top_p, 0.95f);
  ASSERT_FALSE(o.eos_ids.empty());
  o.max_new_tokens = 40;
  o.sampling.temperature = 1.5f;  // a random tiny model: many different tokens, multi-byte ones among them
  o.sampling.seed = 5;
  infer::Generator gen(m, nullptr);
  std::vector<std::string> prompts = {"A 24-year-old has a sore throat", "Fever and cough"};
  std::vector<std::string> streamed(prompts.size());
  auto outs = gen.generate_text(tok, prompts, o, [&](size_t i, std::string_view piece) {
    ASSERT_LT(i, streamed.size());
    EXPECT_EQ(infer::complete_utf8_prefix(piece), piece.size()) << "a piece ends inside a character";
    streamed[i] += piece;
  });
  ASSERT_EQ(outs.size(), prompts.size());
  for (size_t i = 0; i < outs.size(); ++i) {
    EXPECT_EQ(streamed[i], outs[i].text);
    EXPECT_EQ(outs[i].prompt_ids, tok.encode(prompts[i], true));
    std::vector<int32_t> ids = outs[i].ids;
    if (outs[i].finish_reason == "eos") ids.pop_back();
    EXPECT_EQ(outs[i].text, tok.decode(ids, /*skip_special=*/true));
  }
}

TEST(GenerateText, StopStringEndsGenerationAndIsCut) {
  const std::string dir = demo_model();
  text::Tokenizer tok = text::Tokenizer::load(dir);
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  infer::Generator gen(m, nullptr);
  infer::GenerationOptions o;
  o.max_new_tokens = 30;
  auto free_run = gen.generate_text(tok, {"The patient"}, o);
  const std::string& text = free_run[0].text;
  ASSERT_GE(text.size(), 6u);
  // Stop on a piece of the greedy text (3 ASCII letters after the start): the same greedy run stops there.
  size_t at = std::string::npos;
  for (size_t i = 2; i + 3 <= text.size() && at == std::string::npos; ++i)
    if (std::isalpha(static_cast<unsigned char>(text[i])) && std::isalpha(static_cast<unsigned char>(text[i + 1])) &&
        std::isalpha(static_cast<unsigned char>(text[i + 2])))
      at = i;
  ASSERT_NE(at, std::string::npos) << text;
  const std::string stop = text.substr(at, 3);
  o.stop_strings = {stop};
  auto stopped = gen.generate_text(tok, {"The patient"}, o);
  EXPECT_EQ(stopped[0].finish_reason, "stop");
  EXPECT_EQ(stopped[0].text, text.substr(0, text.find(stop)));
  EXPECT_LE(stopped[0].ids.size(), free_run[0].ids.size());
}

TEST(Eval, HeldOutLossMatchesTheRunner) {
  const std::string dir = demo_model();
  text::Tokenizer tok = text::Tokenizer::load(dir);
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  text::PromptTemplate tpl = text::PromptTemplate::builtin("medical-o1-en");
  data::DataOptions d;
  d.data_path = demo_data();
  d.use_cache = false;
  d.max_seq_length = 512;
  d.selection = data::parse_selection("train[0:6]");
  data::TokenizedDataset ds = data::build_dataset(d, tpl, tok);
  ASSERT_EQ(ds.size(), 6u);
  infer::HeldOutLoss all = infer::held_out_loss(m, nullptr, ds, {}, data::LossMask::response, 700);
  EXPECT_EQ(all.sequences, 6);
  // Sum of per-sequence losses, one at a time, with response-only targets.
  double sum = 0;
  int64_t counted = 0;
  for (size_t i = 0; i < ds.size(); ++i) {
    infer::HeldOutLoss one = infer::held_out_loss(m, nullptr, ds, {static_cast<int64_t>(i)}, data::LossMask::response);
    sum += one.loss_sum;
    counted += one.tokens;
    EXPECT_LT(one.tokens, ds.length(i) - 1);  // the prompt is not counted
  }
  EXPECT_EQ(all.tokens, counted);
  EXPECT_NEAR(all.loss_sum, sum, 1e-3 * sum);
  // A random model: about ln(vocab).
  EXPECT_NEAR(all.mean(), std::log(static_cast<double>(m.config().vocab_size)), 1.0);
  EXPECT_NEAR(all.perplexity(), std::exp(all.mean()), 1e-9);
  infer::HeldOutLoss every = infer::held_out_loss(m, nullptr, ds, {}, data::LossMask::all);
  EXPECT_GT(every.tokens, all.tokens);
}

TEST(Eval, SplitThink) {
  auto s = infer::split_think("  step one\nstep two\n</think>\n\nThe answer.", true);
  EXPECT_TRUE(s.closed);
  EXPECT_EQ(s.reasoning, "step one\nstep two");
  EXPECT_EQ(s.answer, "The answer.");
  s = infer::split_think("<think>why</think>because", false);
  EXPECT_EQ(s.reasoning, "why");
  EXPECT_EQ(s.answer, "because");
  s = infer::split_think("still thinking", true);
  EXPECT_FALSE(s.closed);
  EXPECT_EQ(s.reasoning, "still thinking");
  EXPECT_EQ(s.answer, "");
  s = infer::split_think("Plain answer", false);
  EXPECT_FALSE(s.opened);
  EXPECT_EQ(s.answer, "Plain answer");
  EXPECT_TRUE(infer::prompt_opens_think("### Response:\n<think>\n"));
  EXPECT_FALSE(infer::prompt_opens_think("### Response:\n"));
}

TEST(Eval, ReadQuestionsAndWriteReport) {
  const std::string dir = demo_model();
  text::Tokenizer tok = text::Tokenizer::load(dir);
  model::Qwen2Model m = model::Qwen2Model::load(dir);
  text::PromptTemplate tpl = text::PromptTemplate::builtin("medical-o1-en");
  auto qs = infer::read_questions(demo_data(), tpl, data::parse_selection("train[2:]"), 2, data::OnBadRecord::error);
  ASSERT_EQ(qs.size(), 2u);
  EXPECT_EQ(qs[0].row, 2);
  EXPECT_NE(qs[0].prompt.find(qs[0].question), std::string::npos);
  EXPECT_TRUE(infer::prompt_opens_think(qs[0].prompt));
  ASSERT_EQ(qs[0].reference.size(), 2u);  // Complex_CoT, Response

  infer::GenerationOptions o;
  o.max_new_tokens = 12;
  infer::Generator gen(m, nullptr);
  infer::ComparisonReport r;
  r.model = dir;
  r.template_name = tpl.name();
  r.questions = qs;
  r.before = infer::answer_questions(gen, tok, qs, o);
  r.after = r.before;
  r.after[0].text = "I think <b>so</b>\n</think>\nIt is <script>.";
  r.loss_before = infer::HeldOutLoss{10.0, 4, 1};
  r.generation = o;
  fs::path train_out = fs::path(demo_model()) / "train_out";
  fs::create_directories(train_out / "report");
  {
    std::ofstream f(train_out / "report" / "loss.svg");
    f << "<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"><text>LOSSCURVE</text></svg>";
  }
  r.training_output = train_out.string();
  const fs::path out = fs::path(demo_model()) / "eval_out";
  infer::write_comparison_report(out.string(), r);
  const std::string html = slurp(out / "report.html"), md = slurp(out / "report.md"), js = slurp(out / "eval.json");
  EXPECT_NE(html.find("LOSSCURVE"), std::string::npos);           // embedded
  EXPECT_EQ(html.find("<?xml"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;"), std::string::npos);      // escaped
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_NE(html.find("Reasoning"), std::string::npos);
  EXPECT_NE(md.find("../train_out/report/loss.svg"), std::string::npos);
  EXPECT_NE(md.find("2.5000"), std::string::npos);                // loss 10 / 4
  EXPECT_NE(js.find("\"answer\": \"It is <script>.\""), std::string::npos);
  EXPECT_NE(js.find("\"reasoning\": \"I think <b>so</b>\""), std::string::npos);
  EXPECT_FALSE(fs::exists(out / "report.html.tmp"));
}

}  // namespace
}  // namespace cotune
