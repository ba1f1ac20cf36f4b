// `cotune generate --model DIR [--adapter DIR] [--template NAME | --template-file F] (--prompt TEXT | --questions
// FILE.jsonl) [sampling flags] [--json]`: answers prompts with a model (base, base + LoRA adapter, merged, or the
// 4-bit base), streaming the text to the terminal, or one JSON object a line with --json:
//   {"prompt": ..., "text": ..., "ids": [...], "prompt_tokens": N, "tokens_per_s": X}
// Sampling defaults come from the model folder's generation_config.json; flags override them.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/data_choice.h"
#include "cli/device.h"
#include "cli/option_checks.h"
#include "cli/tuning_config.h"
#include "cli/model_path.h"
#include "data/source.h"
#include "hub/hf_cache.h"
#include "infer/generator.h"
#include "model/qwen2.h"
#include "text/template.h"
#include "text/tokenizer.h"

namespace cotune::cli {
namespace {

struct GenerateArgs {
  TuningConfig tuning;  // kernel variants (--help: Kernel tuning)
  std::string model, adapter, template_name, template_file, prompt, questions, tokenizer, device = "auto";
  std::string on_bad_record = "error";
  int64_t max_new_tokens = 0;
  bool greedy = false, json = false, load_in_4bit = false;
  float temperature = 1.0f, top_p = 1.0f, repetition_penalty = 1.0f;
  int64_t top_k = 0, batch_size = 8;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  CLI::Option *o_max = nullptr, *o_temp = nullptr, *o_top_p = nullptr, *o_top_k = nullptr, *o_rep = nullptr,
              *o_seed = nullptr;
};

// Prompt texts and the labels shown for them.
struct Prompts {
  std::vector<std::string> texts, labels;
};

Prompts collect_prompts(const GenerateArgs& a) {
  const bool has_tpl = !a.template_name.empty() || !a.template_file.empty();
  std::optional<text::PromptTemplate> tpl;
  if (has_tpl)
    tpl = a.template_file.empty() ? text::PromptTemplate::builtin(a.template_name)
                                  : text::PromptTemplate::load_file(a.template_file);
  if (tpl && tpl->prompt_source().empty())
    fail("template {} has no \"prompt\" text to generate from", tpl->name());
  Prompts p;
  if (!a.prompt.empty()) {
    if (!tpl) {
      p.texts.push_back(a.prompt);
    } else {
      const auto& f = tpl->prompt_fields();
      if (f.size() > 1)
        fail("template {} needs the fields {}: give them in a --questions file", tpl->name(), fmt::join(f, ", "));
      std::map<std::string, std::string> v;
      if (!f.empty()) v[f.front()] = a.prompt;
      p.texts.push_back(tpl->format_prompt(v));
    }
    p.labels.push_back(a.prompt);
    return p;
  }
  // --questions: one JSON object a record; the template's prompt fields, or "prompt" without a template.
  std::vector<std::string> fields = tpl ? tpl->prompt_fields() : std::vector<std::string>{"prompt"};
  if (fields.empty()) fail("template {} has no fields to fill from --questions", tpl->name());
  data::RecordSource src(resolve_data_path(a.questions, ""), fields, data::parse_on_bad_record(a.on_bad_record));
  data::Record r;
  while (src.next(r)) {
    if (!tpl) {
      p.texts.push_back(r.values[0]);
    } else {
      std::map<std::string, std::string> v;
      for (size_t i = 0; i < fields.size(); ++i) v[fields[i]] = r.values[i];
      p.texts.push_back(tpl->format_prompt(v));
    }
    p.labels.push_back(r.values[0]);
  }
  if (p.texts.empty()) fail("{}: no questions", a.questions);
  return p;
}

void run_generate(const GenerateArgs& a) {
  a.tuning.apply_kernels("generate");
  if (a.prompt.empty() == a.questions.empty()) fail("give exactly one of --prompt TEXT or --questions FILE.jsonl");
  if (a.batch_size <= 0 || a.batch_size > 4096) fail("--batch-size must be in [1, 4096], got {}", a.batch_size);
  const std::string model_dir = resolve_model_dir(a.model);
  const Prompts prompts = collect_prompts(a);
  text::Tokenizer tok =
      text::Tokenizer::load(a.tokenizer.empty() ? model_dir : hub::resolve(a.tokenizer).path.string());
  model::LoadOptions lo;
  lo.device = parse_device(a.device);
  lo.load_in_4bit = a.load_in_4bit;
  model::Qwen2Model model = model::Qwen2Model::load(model_dir, lo);
  std::unique_ptr<model::LoraWeights> lora;
  if (!a.adapter.empty()) lora = infer::load_adapter(model, hub::resolve(a.adapter).path.string());

  infer::GenerationOptions o = infer::GenerationOptions::from_model_folder(model_dir, &tok);
  if (a.o_max->count()) o.max_new_tokens = a.max_new_tokens;
  if (a.greedy) o.sampling.do_sample = false;
  if (a.o_temp->count()) o.sampling.temperature = a.temperature;
  if (a.o_top_p->count()) o.sampling.top_p = a.top_p;
  if (a.o_top_k->count()) o.sampling.top_k = a.top_k;
  if (a.o_rep->count()) o.sampling.repetition_penalty = a.repetition_penalty;
  if (a.o_seed->count()) o.sampling.seed = a.seed;
  if (!a.greedy && (a.o_temp->count() || a.o_top_p->count() || a.o_top_k->count())) o.sampling.do_sample = true;
  o.stop_strings = a.stop;
  o.sampling.validate();

  infer::GeneratorOptions go;
  go.max_batch = a.json ? a.batch_size : 1;  // the terminal stream shows one answer at a time
  infer::Generator gen(model, lora.get(), go);
  if (a.json) {
    auto outs = gen.generate_text(tok, prompts.texts, o);
    for (size_t i = 0; i < outs.size(); ++i) {
      nlohmann::ordered_json j;
      j["prompt"] = prompts.texts[i];
      j["text"] = outs[i].text;
      j["ids"] = outs[i].ids;
      j["prompt_tokens"] = outs[i].prompt_ids.size();
      j["tokens_per_s"] = outs[i].tokens_per_s;
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
    }
    std::fflush(stdout);
    return;
  }
  for (size_t i = 0; i < prompts.texts.size(); ++i) {
    if (prompts.texts.size() > 1) std::printf("%s### %zu: %s\n", i ? "\n" : "", i + 1, prompts.labels[i].c_str());
    std::fflush(stdout);
    auto outs = gen.generate_text(tok, {prompts.texts[i]}, o, [](size_t, std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    });
    std::printf("\n");
    std::fflush(stdout);
    log::info("{} tokens ({} prompt), {:.1f} tokens/s, stopped by {}", outs[0].ids.size(), outs[0].prompt_ids.size(),
              outs[0].tokens_per_s, outs[0].finish_reason);
  }
}

void setup_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  app.add_option("--model,-m", a->model, "Model folder or Hub name (config.json + safetensors + tokenizer)")->required();
  app.add_option("--adapter", a->adapter, "PEFT LoRA adapter folder, applied unmerged on top of the model");
  auto* t = app.add_option("--template", a->template_name, "Built-in prompt template: medical-o1-zh | medical-o1-en");
  app.add_option("--template-file", a->template_file, "Custom template JSON (its \"prompt\" text is used)")->excludes(t);
  auto* p = app.add_option("--prompt,-p", a->prompt, "The prompt, or with a template the question");
  app.add_option("--questions", a->questions, "JSONL file: one prompt a line (the template's fields, or \"prompt\")")
      ->excludes(p);
  app.add_option("--on-bad-record", a->on_bad_record, "A bad --questions line: error (stop, naming it) | skip")
      ->check(CLI::IsMember({"error", "skip"}));
  app.add_option("--tokenizer", a->tokenizer, "tokenizer.json or a folder holding it (default: the model folder)");
  a->o_max = app.add_option("--max-new-tokens", a->max_new_tokens, "Tokens to generate at most (default 512)")
                 ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  app.add_flag("--greedy", a->greedy, "Greedy decoding (arg-max) instead of sampling");
  a->o_temp = app.add_option("--temperature", a->temperature, "Sampling temperature (default: generation_config.json)")
                  ->check(finite_number());
  a->o_top_p = app.add_option("--top-p", a->top_p, "Nucleus sampling threshold")->check(finite_number());
  a->o_top_k = app.add_option("--top-k", a->top_k, "Sample among the k most likely tokens (0: all)")
                   ->check(CLI::Range(int64_t{0}, int64_t{1} << 31));
  a->o_rep = app.add_option("--repetition-penalty", a->repetition_penalty, "HF repetition penalty (1: off)")
                 ->check(finite_number());
  a->o_seed = app.add_option("--seed", a->seed, "Sampling seed (same seed and prompt: same text)")
                  ->check(unsigned_integer());
  app.add_option("--stop", a->stop, "Stop string (repeatable); cut from the text");
  app.add_flag("--json", a->json, "One JSON object a line: prompt, text, ids, prompt_tokens, tokens_per_s");
  app.add_option("--device", a->device, "auto | cpu | cuda (default auto: cuda when a GPU is visible)");
  app.add_flag("--load-in-4bit", a->load_in_4bit, "Quantize the base's projections to NF4 (QLoRA base)");
  auto* batch = app.add_option("--batch-size", a->batch_size, "Prompts generated together with --json (default 8)");
  app.add_option("--batch", a->batch_size, "")->group("")->excludes(batch);  // the old name
  a->tuning.add_kernel_flags(app);
  app.callback([a] { run_generate(*a); });
}

}  // namespace

COTUNE_COMMAND(generate, "generate", "Generate answers with a model (+ LoRA adapter): streamed, or JSON lines", 50,
               setup_generate);

}  // namespace cotune::cli
