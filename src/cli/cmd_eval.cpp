// `cotune eval --model DIR [--adapter DIR] --data FILE [--data-files F] [--template NAME | --template-file F]
// [--selection S] [--sample-questions N] [--training-output DIR] --output DIR`: held-out loss and perplexity
// (masked as in training) of the base and of base + adapter, and answers to N questions before (base) and after (base + adapter), side by
// side in OUTPUT/report.html (self-contained), OUTPUT/report.md and OUTPUT/eval.json.
#include <cstdio>
#include <memory>
#include <string>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/data_choice.h"
#include "cli/device.h"
#include "cli/option_checks.h"
#include "cli/tuning_config.h"
#include "cli/model_path.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "data/truncation.h"
#include "hub/hf_cache.h"
#include "infer/evaluate.h"
#include "infer/generator.h"
#include "model/qwen2.h"
#include "text/template.h"
#include "text/tokenizer.h"

namespace cotune::cli {
namespace {

struct EvalArgs {
  TuningConfig tuning;  // kernel variants (--help: Kernel tuning)
  std::string model, adapter, data, data_files, template_name = "medical-o1-zh", template_file, selection = "train";
  std::string output, training_output, tokenizer, device = "auto", loss_on = "all", on_bad_record = "error";
  int64_t sample_questions = 3, max_seq_length = 2048, max_new_tokens = 0;
  bool greedy = false, no_loss = false, load_in_4bit = false;
  float temperature = 1.0f, top_p = 1.0f;
  uint64_t seed = 0;
  std::string questions_file;  // refused: see run_eval
  CLI::Option *o_max = nullptr, *o_temp = nullptr, *o_top_p = nullptr, *o_seed = nullptr;
};

void run_eval(const EvalArgs& a) {
  a.tuning.apply_kernels("eval");
  require_replaceable_directory(a.output, infer::kComparisonReportFolder);  // refuse before the work
  if (!a.questions_file.empty())
    fail("eval: --questions is generate's file of questions; the number of data questions answered here is "
         "--sample-questions N");
  const std::string model_dir = resolve_model_dir(a.model);
  const std::string data_path = resolve_data_path(a.data, a.data_files);
  text::Tokenizer tok =
      text::Tokenizer::load(a.tokenizer.empty() ? model_dir : hub::resolve(a.tokenizer).path.string());
  text::PromptTemplate tpl = a.template_file.empty() ? text::PromptTemplate::builtin(a.template_name)
                                                     : text::PromptTemplate::load_file(a.template_file);
  model::LoadOptions lo;
  lo.device = parse_device(a.device);
  lo.load_in_4bit = a.load_in_4bit;
  model::Qwen2Model model = model::Qwen2Model::load(model_dir, lo);
  if (a.max_seq_length > model.config().max_position_embeddings)
    log::warn("--max-seq-length {} is above the model's max_position_embeddings ({})", a.max_seq_length,
              model.config().max_position_embeddings);
  std::unique_ptr<model::LoraWeights> lora;
  std::string adapter_dir;
  if (!a.adapter.empty()) {
    adapter_dir = hub::resolve(a.adapter).path.string();
    lora = infer::load_adapter(model, adapter_dir);
  }
  const data::Selection selection = data::parse_selection(a.selection);
  const data::OnBadRecord policy = data::parse_on_bad_record(a.on_bad_record);

  infer::ComparisonReport r;
  r.title = lora ? "cotune eval: before and after fine-tuning" : "cotune eval";
  r.model = a.model;
  r.adapter = a.adapter;
  r.data = a.data + (a.selection == "train" ? "" : " " + a.selection);
  r.template_name = tpl.name();
  r.training_output = a.training_output;

  if (!a.no_loss) {
    data::DataOptions d;
    d.data_path = data_path;
    d.max_seq_length = a.max_seq_length;
    d.selection = selection;
    d.on_bad_record = policy;
    data::TokenizedDataset ds = data::build_dataset(d, tpl, tok);
    if (ds.size() == 0) fail("{}: no usable records in {}", data_path, a.selection);
    const data::LossMask mask = data::parse_loss_mask(a.loss_on);
    // A loss over no tokens would print 0.0000 and perplexity 1.00: refuse it, and say what was cut.
    const data::TruncationReport cut = data::truncation_report(ds, {}, mask);
    if (cut.trained_targets == 0)
      fail("no counted tokens: with --loss-on {}, none of the {} sequences keeps a token to score. {}", a.loss_on,
           cut.sequences, cut.describe("--max-seq-length"));
    if (cut.truncated > 0 || cut.no_trained_tokens > 0) log::warn("{}", cut.describe("--max-seq-length"));
    r.loss_before = infer::held_out_loss(model, nullptr, ds, {}, mask, a.max_seq_length);
    log::info("held-out loss (base): {:.4f}, perplexity {:.2f} over {} tokens of {} sequences", r.loss_before->mean(),
              r.loss_before->perplexity(), r.loss_before->tokens, r.loss_before->sequences);
    if (lora) {
      r.loss_after = infer::held_out_loss(model, lora.get(), ds, {}, mask, a.max_seq_length);
      log::info("held-out loss (base + adapter): {:.4f}, perplexity {:.2f}", r.loss_after->mean(),
                r.loss_after->perplexity());
    }
  }

  infer::GenerationOptions o = infer::GenerationOptions::from_model_folder(model_dir, &tok);
  if (a.o_max->count()) o.max_new_tokens = a.max_new_tokens;
  if (a.greedy) o.sampling.do_sample = false;
  if (a.o_temp->count()) o.sampling.temperature = a.temperature;
  if (a.o_top_p->count()) o.sampling.top_p = a.top_p;
  if (a.o_seed->count()) o.sampling.seed = a.seed;
  o.sampling.validate();
  r.generation = o;
  if (a.sample_questions > 0) {
    r.questions = infer::read_questions(data_path, tpl, selection, a.sample_questions, policy);
    infer::Generator before(model, nullptr);
    log::info("answering {} questions with the base model", r.questions.size());
    r.before = infer::answer_questions(before, tok, r.questions, o);
    if (lora) {
      infer::Generator after(model, lora.get());
      log::info("answering {} questions with base + adapter", r.questions.size());
      r.after = infer::answer_questions(after, tok, r.questions, o);
    }
  }
  infer::write_comparison_report(a.output, r);
  std::printf("report: %s/report.html (also report.md, eval.json)\n", a.output.c_str());
  if (r.loss_before) std::printf("loss before: %.4f  perplexity: %.2f\n", r.loss_before->mean(), r.loss_before->perplexity());
  if (r.loss_after) std::printf("loss after:  %.4f  perplexity: %.2f\n", r.loss_after->mean(), r.loss_after->perplexity());
}

void setup_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  app.add_option("--model,-m", a->model, "Base model folder or Hub name")->required();
  app.add_option("--adapter", a->adapter, "PEFT LoRA adapter: compared with the base (after vs before)");
  app.add_option("--data", a->data, "Held-out data: JSON / JSONL / CSV / Parquet file, folder, or Hub dataset")
      ->required();
  app.add_option("--data-files", a->data_files, "File inside the data folder / dataset repo to use");
  auto* t = app.add_option("--template", a->template_name, "Built-in template: medical-o1-zh | medical-o1-en");
  app.add_option("--template-file", a->template_file, "Custom template JSON")->excludes(t);
  app.add_option("--selection", a->selection, "Rows of the data, e.g. train[500:600] (default train)");
  app.add_option("--split", a->selection, "")->group("");  // the old name
  app.add_option("--sample-questions", a->sample_questions,
                 "Questions of the data answered before/after (default 3; 0: none)")
      ->check(CLI::Range(int64_t{0}, int64_t{100000}));
  app.add_option("--questions", a->questions_file, "")->group("");  // generate's --questions is a file
  app.add_option("--training-output", a->training_output, "A training run's output folder: its loss curve is shown");
  app.add_option("--output,-o", a->output, "Report folder")->required();
  app.add_option("--tokenizer", a->tokenizer, "tokenizer.json or a folder holding it (default: the model folder)");
  app.add_option("--max-seq-length", a->max_seq_length, "Longer held-out sequences are cut (default 2048)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 24));
  auto* loss_on = app.add_option("--loss-on", a->loss_on, "all | response: the tokens scored (default all, as in train)")
                      ->check(CLI::IsMember({"all", "response"}));
  app.add_option("--loss-mask", a->loss_on, "")->group("")->check(CLI::IsMember({"all", "response"}))->excludes(loss_on);
  app.add_option("--on-bad-record", a->on_bad_record, "error | skip")->check(CLI::IsMember({"error", "skip"}));
  app.add_flag("--no-loss", a->no_loss, "Skip the held-out loss");
  a->o_max = app.add_option("--max-new-tokens", a->max_new_tokens, "Tokens per answer at most (default 512)")
                 ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  app.add_flag("--greedy", a->greedy, "Greedy decoding instead of generation_config.json's sampling");
  a->o_temp = app.add_option("--temperature", a->temperature, "Sampling temperature")->check(finite_number());
  a->o_top_p = app.add_option("--top-p", a->top_p, "Nucleus sampling threshold")->check(finite_number());
  a->o_seed = app.add_option("--seed", a->seed, "Sampling seed")->check(unsigned_integer());
  app.add_option("--device", a->device, "auto | cpu | cuda (default auto: cuda when a GPU is visible)");
  app.add_flag("--load-in-4bit", a->load_in_4bit, "Quantize the base's projections to NF4 (QLoRA base)");
  a->tuning.add_kernel_flags(app);
  app.callback([a] { run_eval(*a); });
}

}  // namespace

COTUNE_COMMAND(eval, "eval", "Held-out loss and a before/after answer report (Markdown + HTML)", 55, setup_eval);

}  // namespace cotune::cli
