// cotune train: the LoRA SFT run. Orchestration only (DESIGN.md): resolve the model, build the data,
// set up the adapter, run train::train with progress and metrics, export the adapter and the report.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/data_choice.h"
#include "cli/hub_data.h"
#include "cli/hub_push.h"
#include "cli/model_path.h"
#include "cli/recipe.h"
#include "cli/run_folder.h"
#include "cli/train_config.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "data/truncation.h"
#include "export/gguf_export.h"
#include "export/merge.h"
#include "export/peft_export.h"
#include "infer/evaluate.h"
#include "infer/generator.h"
#include "hub/hf_cache.h"
#ifdef COTUNE_WITH_CUDA
#include "kernels/cuda/context.h"
#endif
#include "model/lora.h"
#include "model/qwen2.h"
#include "cli/data_format.h"
#include "text/template.h"
#include "text/tokenizer.h"
#include "track/metrics.h"
#include "track/progress.h"
#include "track/report.h"
#include "track/stop_flag.h"
#include "track/wandb.h"
#include "train/trainer.h"

namespace cotune::cli {
namespace {

namespace fs = std::filesystem;

// The W&B run's settings and config: every recipe key with its value, and the model and data identity.
track::wandb::WandbOptions wandb_options(const TrainConfig& c, const RecipeBinder& binder, const hub::Resolved& model,
                                         const hub::Resolved& data) {
  track::wandb::WandbOptions o;
  o.project = c.wandb_project;
  o.entity = c.wandb_entity;
  o.run_name = c.run_name.empty() ? c.output : c.run_name;  // transformers names the run after output_dir
  o.notes = c.wandb_notes;
  o.tags = c.wandb_tags;
  o.mode = c.wandb_mode;
  o.output_dir = c.output;
  o.resume = c.resume;
  o.config = binder.values();
  auto identity = [](const hub::Resolved& r) {
    nlohmann::json j = {{"path", r.path.string()}};
    if (!r.repo_id.empty()) j["repo_id"] = r.repo_id;
    if (!r.revision.empty()) j["revision"] = r.revision;
    if (!r.commit.empty()) j["commit"] = r.commit;
    return j;
  };
  o.config["model_identity"] = identity(model);
  o.config["data_identity"] = identity(data);
  std::ifstream mc(model.path / "config.json");  // the model's config.json, as transformers' callback logs it
  if (mc) {
    auto j = nlohmann::json::parse(mc, nullptr, false);
    if (j.is_object()) o.config["model_config"] = j;
  }
  return o;
}

struct TrainCommand {
  TrainConfig cfg;
  std::string recipe;
  std::unique_ptr<RecipeBinder> binder;
};

void run_train(TrainCommand& cmd) {
  cmd.binder->apply(cmd.recipe);
  TrainConfig& c = cmd.cfg;
  // `--data FILE` on the command line stands for the whole data choice: a recipe's data_files belonged to the
  // recipe's data and must not be applied to another path.
  // (--data FOLDER or org/name keeps them: a local copy of the recipe's dataset has the same files and configs.)
  const bool data_file_flag = cmd.binder->set_by_flag("data") && fs::is_regular_file(c.data);
  if (data_file_flag && !cmd.binder->set_by_flag("data_files") && !c.data_files.empty()) {
    log::info("--data {} replaces the recipe's data and data_files (\"{}\")", c.data, c.data_files);
    c.data_files.clear();
  }
  if (data_file_flag && !cmd.binder->set_by_flag("data_config") && !c.data_config.empty()) {
    log::info("--data {} replaces the recipe's data and data_config (\"{}\")", c.data, c.data_config);
    c.data_config.clear();
  }
  c.validate(cmd.binder.get());
  if (c.model.empty()) fail("no model: give --model DIR|org/name or `model = ...` in the recipe");
  if (c.data.empty()) fail("no data: give --data FILE or `data = ...` in the recipe");

  // ---- model, tokenizer, template, data ----------------------------------------------------------
  hub::Resolved model_ref;  // a .gguf is converted once into a cached folder (cli/model_path.h)
  if (exporting::is_gguf_model(c.model)) model_ref.path = resolve_model_dir(c.model);
  else model_ref = hub::resolve(c.model);
  const std::string model_dir = model_ref.path.string();
  const Device device = c.resolved_device();
  log::info("model {} ({}), device {}", c.model, model_dir, device_name(device));
  c.tuning.apply_kernels("train");
  log::debug("train: runner tuning: {}", c.tuning.describe_runner());
  const std::string tokenizer_dir = c.tokenizer.empty() ? model_dir : hub::resolve(c.tokenizer).path.string();
  text::Tokenizer tok = text::Tokenizer::load(tokenizer_dir);
  const TemplateChoice tpl = choose_template(c.template_name, c.template_file, c.data_format, tokenizer_dir);

  data::DataOptions dopt;
  dopt.selection = data::parse_selection(c.selection);
  // A local folder of several data files, no dataset card (whose configs resolve_data lists) and no choice:
  // refused, never mixed (resolve_data_path names the files).
  if (c.data_config.empty() && c.data_files.empty() && fs::is_directory(c.data) &&
      !fs::exists(fs::path(c.data) / "README.md"))
    (void)resolve_data_path(c.data, "");
  const DataChoice data_choice = resolve_data(c.data, c.data_config, c.data_files, dopt.selection);
  dopt.data_path = data_choice.data_path;
  log::info("data {}", data_choice.description);
  hub::Resolved data_ref;  // the data's identity (for W&B)
  data_ref.path = data_choice.data_path;
  data_ref.repo_id = data_choice.repo_id;
  data_ref.revision = data_choice.revision;
  data_ref.commit = data_choice.commit;
  // The output folder is this run's (or refused) before anything writes into it, W&B included.
  claim_run_folder(c.output, c.resume, c.overwrite_output_dir);
  // W&B first: a wrong key must fail before the data is tokenized and the model loaded.
  std::vector<std::string> sink_names = c.report_to;
  std::unique_ptr<track::WandbSink> wandb_sink;
  if (auto it = std::find(sink_names.begin(), sink_names.end(), "wandb"); it != sink_names.end()) {
    sink_names.erase(it);
    wandb_sink = track::make_wandb_sink(wandb_options(c, *cmd.binder, model_ref, data_ref));
  }
  track::WandbSink* wandb = wandb_sink.get();  // owned by the hub below
  dopt.max_seq_length = c.max_seq_length;
  dopt.on_bad_record = data::parse_on_bad_record(c.on_bad_record);
  dopt.use_cache = c.data_cache;
  data::TokenizedDataset ds = data::build_dataset(dopt, tpl.format(), tok);
  data::Split split = data::split_validation(static_cast<int64_t>(ds.size()), c.validation_split, c.validation_count, c.seed);
  log::info("data: {} sequences ({} for validation), {} truncated to {} tokens{}", ds.size(), split.validation.size(),
            ds.truncated, c.max_seq_length, ds.from_cache ? " (token cache)" : "");

  // A run that trains on nothing must not look like one that trained: count what max_seq_length cut away.
  const data::LossMask mask = data::parse_loss_mask(c.loss_on);
  const data::TruncationReport cut = data::truncation_report(ds, split.train, mask);
  const std::string key = "max_seq_length";
  if (cut.trained_targets == 0)
    fail("no trained tokens: with loss_on = {}, none of the {} training sequences keeps a token to train on. {}",
         c.loss_on, cut.sequences, cut.describe(key));
  if (cut.truncated > 0 || cut.no_trained_tokens > 0) log::warn("{}", cut.describe(key));
  if (c.eval_steps > 0 && !split.validation.empty() &&
      data::truncation_report(ds, split.validation, mask).trained_targets == 0)
    fail("no evaluated tokens: with loss_on = {}, none of the {} validation sequences keeps a counted token ({})",
         c.loss_on, split.validation.size(), data::truncation_report(ds, split.validation, mask).describe(key));

  data::BatchOptions bo;
  bo.packing = c.packing;
  bo.max_tokens = c.packing ? c.max_tokens_per_batch : c.batch_size * c.max_seq_length;
  bo.max_sequences = c.packing ? 0 : c.batch_size;
  bo.mask = mask;
  bo.shuffle = c.shuffle;
  bo.seed = c.seed;
  bo.pad_id = tok.pad_id() >= 0 ? tok.pad_id() : tok.eos_id();

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
  model::LoraWeights lora(model.config(), lc, device);
  if (!c.init_adapter.empty()) {
    lora.load_peft_weights(c.init_adapter);
    log::info("LoRA initialised from {}", c.init_adapter);
  } else {
    lora.init_peft_default(c.seed);
  }
  log::info("LoRA r={} alpha={} on {}: {} trainable parameters", lc.r, lc.alpha, fmt::join(lc.target_modules, ","),
            lora.parameter_count());

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

  // ---- run ----------------------------------------------------------------------------------------
  train::TrainOptions to = c.train_options();
  to.base_model_name_or_path = c.model;
  to.tokenizer_dir = tokenizer_dir;
  fs::create_directories(to.output_dir);
  std::optional<int64_t> resume_step;
  if (to.resume) resume_step = train::latest_checkpoint_step(to.output_dir);
  track::MetricsHub hub = track::MetricsHub::open(sink_names, to.output_dir, resume_step);
  if (wandb_sink) hub.add_sink(std::move(wandb_sink));

  train::TrainInputs in;
  in.model = &model;
  in.lora = &lora;
  in.dataset = &ds;
  in.train_indices = split.train;
  in.validation_indices = split.validation;
  in.batch = bo;
  in.runner.max_tokens = bo.max_tokens;
  in.runner.gradient_checkpointing = c.gradient_checkpointing;
  c.tuning.apply(in.runner);
  in.metrics = &hub;

  data::BatchIterator probe(ds, split.train, bo);
  const int64_t total = train::planned_steps(to, probe.batches_in_epoch());
  track::ProgressOptions po;
  po.total_steps = total;
  po.log_every = to.logging_steps;
  track::Progress progress(po);
  track::StopFlag stop;
  std::optional<double> last_eval;
  train::TrainHooks hooks;
  hooks.on_step = [&](const train::StepRecord& r) {
    track::StepStats s;
    s.step = r.step;
    s.loss = r.loss;
    s.lr = r.lr;
    s.grad_norm = r.grad_norm;
    s.tokens_per_s = r.tokens_per_s;
    s.eval_loss = last_eval;
#ifdef COTUNE_WITH_CUDA
    if (device == Device::cuda) {
      const auto info = kernels::cuda::device_info();
      s.gpu_mem_used_gib = static_cast<double>(info.total_bytes - info.free_bytes) / 1073741824.0;
      s.gpu_mem_total_gib = static_cast<double>(info.total_bytes) / 1073741824.0;
    }
#endif
    progress.update(s);
    if (wandb && (r.step % to.logging_steps == 0 || r.step == total))  // the progress line, for the run's console
      wandb->log_console(fmt::format("step {}/{} | loss {:.4f} | lr {:.2e} | grad_norm {:.3f} | {:.0f} tok/s", r.step,
                                     total, r.loss, r.lr, r.grad_norm, r.tokens_per_s));
  };
  hooks.on_eval = [&](const train::EvalRecord& e) {
    last_eval = e.loss;
    const std::string line = fmt::format("step {}: eval_loss {:.4f}, eval_mean_token_accuracy {:.3f}", e.step, e.loss,
                                         e.mean_token_accuracy);
    progress.message(line);
    if (wandb) wandb->log_console(line);
  };
  hooks.on_message = [&](const std::string& m) {
    progress.message(m);
    if (wandb) wandb->log_console(m);
  };
  hooks.should_stop = [&] { return stop.requested(); };

  train::TrainResult res = train::train(in, to, hooks);
  progress.finish();

  // ---- outputs ------------------------------------------------------------------------------------
  const std::string adapter_dir = (fs::path(to.output_dir) / "adapter").string();
  exporting::save_peft_adapter(adapter_dir, lora, {c.model, to.tokenizer_dir});
  log::info("adapter written to {}", adapter_dir);

  if (c.sample_questions > 0 && !res.stopped_early) {  // the guide's step 7
    infer::Generator gen(model, &lora);
    log::info("answering {} questions after training", samples.questions.size());
    samples.after = infer::answer_questions(gen, tok, samples.questions, gen_opts);
    samples.adapter = adapter_dir;
    samples.training_output = to.output_dir;
    const std::string sdir = (fs::path(to.output_dir) / "samples").string();
    infer::write_comparison_report(sdir, samples);
    log::info("before/after answers: {}/report.html", sdir);
    track::Table table;  // the W&B "samples" table, one row a question
    table.columns = {"question", "before", "after"};
    for (size_t i = 0; i < samples.questions.size(); ++i)
      table.rows.push_back({samples.questions[i].question, i < samples.before.size() ? samples.before[i].text : "",
                            i < samples.after.size() ? samples.after[i].text : ""});
    hub.log_table(res.steps_done, "samples", table);
  }
  if (c.save_merged && !res.stopped_early) {
    const std::string merged = (fs::path(to.output_dir) / "merged").string();
    exporting::MergeResult mr = exporting::merge_lora(model_dir, adapter_dir, merged);
    for (const auto& n : mr.notes) log::info("{}", n);
    log::info("merged 16-bit model written to {} ({} shard(s))", merged, mr.shards.size());
  }
  if (!c.export_gguf.empty() && !res.stopped_early) {
    exporting::GgufExportOptions go;
    go.model_dir = model_dir;
    go.adapter_dir = adapter_dir;
    go.types.clear();
    for (const auto& t : c.export_gguf) go.types.push_back(exporting::parse_gguf_file_type(t));
    go.output = (fs::path(to.output_dir) / "gguf").string() + "/";
    go.file_stem = fs::path(to.output_dir).filename().string();
    for (const auto& r : exporting::export_gguf(go))
      log::info("GGUF written: {} ({:.1f} MB), Ollama: {}", r.path, static_cast<double>(r.bytes) / 1e6, r.modelfile);
  }

  const std::string since_resume = resume_step ? fmt::format(" (since the resume at step {})", *resume_step) : "";
  track::ReportInput ri;
  ri.subtitle = c.model + " → " + to.output_dir;
  ri.status = res.stopped_early ? fmt::format("stopped at step {} (continue with --resume)", res.steps_done) : "completed";
  ri.total_steps = res.total_steps;
  ri.settings = c.settings_table();
  ri.facts = {{"device", std::string(device_name(device))},
              {"sequences", fmt::format("{} train, {} validation", split.train.size(), split.validation.size())},
              // res counts this process's steps only; after a resume, say so (the totals above cover the run).
              {"input tokens", fmt::format("{}{}", res.input_tokens, since_resume)},
              {"trained tokens", fmt::format("{}{}", res.counted_tokens, since_resume)},
              {"LoRA parameters", fmt::format("{}", lora.parameter_count())},
              {"adapter", adapter_dir}};
  track::ReportFiles rf = track::write_report(to.output_dir, hub.history(), ri);
  // transformers' end-of-training figures, for the W&B summary (train/train_runtime, ...).
  const track::RunTotals totals = track::compute_totals(hub.history(), ri);
  track::Scalars final_figures = {{"train_runtime", res.seconds},
                                  {"train_tokens_per_second", totals.tokens_per_s},
                                  {"total_tokens", static_cast<double>(res.input_tokens)},
                                  {"global_step", static_cast<double>(res.steps_done)}};
  if (const auto& losses = hub.history().series("loss"); !losses.empty()) {  // the mean, as transformers reports
    double sum = 0;
    for (const auto& p : losses) sum += p.value;
    final_figures["train_loss"] = sum / static_cast<double>(losses.size());
  }
  hub.log_summary(final_figures);
  if (res.stopped_early) hub.set_exit_code(130);
  hub.close();
  std::fprintf(stderr, "%s\n", track::summary_table(hub.history(), ri, rf.index_html).c_str());
  if (!c.push_to_hub.empty() && !res.stopped_early) {  // the guide's last step, after every output is on disk
    TrainPush tp;
    tp.repo_id = c.push_to_hub;
    tp.private_repo = c.hub_private;
    tp.base_model = c.model;
    tp.dataset = data_choice.repo_id;
    tp.output_dir = to.output_dir;
    tp.recipe_path = cmd.recipe;
    tp.report = rf;
    tp.samples = &samples;
    tp.facts = ri.facts;
    tp.facts.insert(tp.facts.begin(), {"steps", fmt::format("{}", res.steps_done)});
    if (auto loss = hub.history().last("loss")) tp.facts.insert(tp.facts.begin() + 1, {"final loss", fmt::format("{:.4f}", *loss)});
    push_training_outputs(tp);
  }
  // A run stopped by Ctrl-C has written its checkpoint and outputs; the exit status says it did not finish
  // (130, the shell's convention for SIGINT), so scripts do not go on to merge or upload a partial run.
  if (res.stopped_early) throw CLI::RuntimeError(130);
}

void setup(CLI::App& app) {
  auto cmd = std::make_shared<TrainCommand>();
  cmd->binder = std::make_unique<RecipeBinder>(app);
  app.add_option("--recipe", cmd->recipe, "TOML recipe; every key is also a flag below, which overrides it")
      ->check(CLI::ExistingFile);
  cmd->cfg.bind(*cmd->binder);
  app.footer(
      "Loss normalisation: the loss of an optimizer step is the sum of token losses over all its micro-batches\n"
      "divided by the number of counted predictions in the whole step. A counted prediction is a position whose\n"
      "next-token target is trained, so a fully trained sequence of n tokens counts n-1 (transformers'\n"
      "num_items_in_batch counts one more per sequence; cotune follows the shifted count, as Unsloth does).\n"
      "Ctrl-C stops after the current step and writes a checkpoint; --resume continues from it exactly.");
  app.callback([cmd] { run_train(*cmd); });
}

}  // namespace

COTUNE_COMMAND(train, "train", "Fine-tune a LoRA adapter (SFT) from a recipe and/or flags", 40, setup);

}  // namespace cotune::cli
