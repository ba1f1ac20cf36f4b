// `cotune train`, stage 3: the base model (bf16, or NF4 with load_in_4bit), the LoRA adapter (PEFT default init, or
// --init-adapter) and, when sample questions are asked for, the answers before training (cli/cmd_train.h).
#include <fmt/ranges.h>

#include "base/error.h"
#include "base/log.h"
#include "cli/cmd_train.h"
#include "formats/peft_adapter.h"

namespace cotune::cli {

TrainModel load_train_model(TrainCommand& cmd, const TrainSetup& setup, const TrainData& data) {
  TrainConfig& c = cmd.cfg;
  const std::string& model_dir = setup.model_dir;
  const Device device = setup.device;
  const text::Tokenizer& tok = setup.tokenizer;
  const TemplateChoice& tpl = setup.tpl;
  const data::DataOptions& dopt = data.options;
  model::LoadOptions lo;
  lo.device = device;
  lo.load_in_4bit = c.load_in_4bit;
  model::Qwen2Model model = model::Qwen2Model::load(model_dir, lo);
  if (c.max_seq_length > model.config().max_position_embeddings)
    log::warn("max_seq_length = {} is above the model's max_position_embeddings ({}): positions past it were never "
              "trained", c.max_seq_length, model.config().max_position_embeddings);

  model::LoraConfig lc;
  if (!c.init_adapter.empty()) {
    c.init_adapter = hub::resolve(c.init_adapter).path.string();
    lc = model::LoraConfig::from_peft(formats::load_peft_adapter_config(c.init_adapter));
  } else {
    lc.r = c.lora_r;
    lc.alpha = c.lora_alpha;
    lc.dropout = c.lora_dropout;
    lc.use_rslora = c.use_rslora;
    lc.target_modules = c.target_modules;
  }
  auto lora = std::make_unique<model::LoraWeights>(model.config(), lc, device);
  if (!c.init_adapter.empty()) {
    lora->load_peft_weights(c.init_adapter);
    log::info("LoRA initialised from {}", c.init_adapter);
  } else {
    lora->init_peft_default(c.seed);
  }
  log::info("LoRA r={} alpha={} on {}: {} trainable parameters", lc.r, lc.alpha, fmt::join(lc.target_modules, ","),
            lora->parameter_count());

  // ---- "before" answers (the guide's step 3) -------------------------------------------------------
  infer::ComparisonReport samples;
  infer::GenerationOptions gen_opts = infer::GenerationOptions::from_model_folder(model_dir, &tok);
  gen_opts.max_new_tokens = c.sample_max_new_tokens;
  const bool prompt_questions =
      tpl.prompt && (tpl.from_file || data::resolve_record_format(dopt, tpl.record_format) == data::RecordFormat::medical_o1);
  if (c.sample_questions > 0 && !prompt_questions) {
    log::warn("sample questions (before/after answers) need a prompt template over medical-o1 style records; "
              "skipped here (use `cotune chat` or `cotune generate` to look at answers)");
  } else if (c.sample_questions > 0) {
    samples.title = "cotune: answers before and after fine-tuning";
    samples.written_by = "cotune train";
    samples.model = c.model;
    samples.data = c.data;
    samples.template_name = tpl.name();
    samples.generation = gen_opts;
    samples.questions = infer::read_questions(dopt.data_path, *tpl.prompt, dopt.selection, c.sample_questions, dopt.on_bad_record);
    infer::Generator gen(model, nullptr);
    log::info("answering {} questions before training", samples.questions.size());
    samples.before = infer::answer_questions(gen, tok, samples.questions, gen_opts);
  }

  return TrainModel{std::move(model), std::move(lora), std::move(gen_opts), std::move(samples)};
}

}  // namespace cotune::cli
