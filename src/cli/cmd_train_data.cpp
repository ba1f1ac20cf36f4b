// `cotune train`, stage 2: the data choice, the run folder claimed, the W&B sink (a wrong key fails here, before the
// model loads), the tokenized data, its split and the batch options (cli/cmd_train.h).
#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/log.h"
#include "cli/cmd_train.h"
#include "cli/data_choice.h"
#include "cli/hub_data.h"
#include "cli/run_folder.h"
#include "data/truncation.h"

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

}  // namespace

TrainData load_train_data(TrainCommand& cmd, const TrainSetup& setup) {
  TrainConfig& c = cmd.cfg;
  const text::Tokenizer& tok = setup.tokenizer;
  const TemplateChoice& tpl = setup.tpl;
  const hub::Resolved& model_ref = setup.model_ref;
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


  return TrainData{std::move(dopt), data_choice,       std::move(sink_names), std::move(wandb_sink), wandb,
                   std::move(ds),   std::move(split), bo};
}

}  // namespace cotune::cli
