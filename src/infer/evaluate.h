// Evaluation: held-out loss / perplexity (masked as in training), "before / after" answers to a few questions,
// and the side-by-side report (Markdown + self-contained HTML + JSON) with the model's `<think>` reasoning shown
// apart from its final answer.
//
// The `train` command samples before and after training through the same calls:
//   auto qs = infer::read_questions(data_path, tpl, selection, 3, data::OnBadRecord::skip);
//   infer::Generator before(model, nullptr);                       // base (LoRA off)
//   auto b = infer::answer_questions(before, tok, qs, gen_opts);
//   ... train lora ...
//   infer::Generator after(model, &lora);                          // same loaded base, LoRA branch on
//   auto a = infer::answer_questions(after, tok, qs, gen_opts);
//   infer::ComparisonReport r;  r.questions = qs;  r.before = b;  r.after = a;  r.training_output = output_dir;
//   infer::write_comparison_report(output_dir + "/samples", r);
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/fs.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "infer/generator.h"
#include "text/template.h"

namespace cotune::infer {

struct HeldOutLoss {
  double loss_sum = 0.0;
  int64_t tokens = 0;     // counted (target) tokens
  int64_t sequences = 0;
  double mean() const { return tokens > 0 ? loss_sum / static_cast<double>(tokens) : 0.0; }
  double perplexity() const;
};

// Mean next-token loss over the dataset's sequences `indices` (all when empty) with the training loss mask.
// Sequences are packed into micro-batches of at most `max_tokens` tokens (0: the longest sequence, at least 2048).
HeldOutLoss held_out_loss(const model::Qwen2Model& model, const model::LoraWeights* lora,
                          const data::TokenizedDataset& ds, const std::vector<int64_t>& indices, data::LossMask mask,
                          int64_t max_tokens = 0);

// Generated text split at `</think>`. The prompt (or the text itself) opens `<think>`; everything before the
// closing tag is reasoning, the rest the answer. Without a closing tag: all reasoning when the thinking was
// opened (unfinished), else all answer.
struct ThinkSplit {
  std::string reasoning, answer;
  bool opened = false, closed = false;
};
ThinkSplit split_think(std::string_view generated, bool opened_in_prompt);
bool prompt_opens_think(std::string_view prompt);  // ends with "<think>" (trailing whitespace ignored)

struct Question {
  int64_t row = 0;        // source row
  std::string question;   // the first prompt field's value (for display)
  std::string prompt;     // the formatted prompt the model is given
  std::vector<std::pair<std::string, std::string>> reference;  // the record's other template fields (CoT, answer)
};

// The first `n` usable records of the selection, formatted with the template's prompt. Errors name the file.
std::vector<Question> read_questions(const std::string& data_path, const text::PromptTemplate& tpl,
                                     const data::Selection& selection, int64_t n, data::OnBadRecord policy);

// Answers every question with one generator (base, or base + adapter), in batches of the generator's size.
std::vector<GenerationOutput> answer_questions(Generator& gen, const text::Tokenizer& tok,
                                               const std::vector<Question>& questions, const GenerationOptions& opts,
                                               const StreamCallback& on_text = {});

struct ComparisonReport {
  std::string title = "cotune evaluation";
  std::string model, adapter, data, template_name;
  std::optional<HeldOutLoss> loss_before, loss_after;  // base, base + adapter
  std::vector<Question> questions;
  std::vector<GenerationOutput> before, after;         // per question; either may be empty
  GenerationOptions generation;                        // recorded in the report
  std::string training_output;                         // a training run's folder (its report/loss.svg), or ""
  std::string written_by = "cotune eval";              // the command named in the page's footer
};

// What an eval report folder holds: the folder is replaced whole, and only when it holds nothing else
// (check with require_replaceable_directory before the work).
extern const OutputFolderKind kComparisonReportFolder;
// Writes OUT/eval.json, OUT/report.md and OUT/report.html into a temp folder and moves it into place as OUT.
// The HTML is self-contained (styles inline, the loss curve embedded); the Markdown links the curve.
void write_comparison_report(const std::string& out_dir, const ComparisonReport& r);

// The pieces, for tests.
std::string report_json(const ComparisonReport& r);
std::string report_markdown(const ComparisonReport& r, const std::string& out_dir);
std::string report_html(const ComparisonReport& r);
std::string html_escape(std::string_view s);

}  // namespace cotune::infer
