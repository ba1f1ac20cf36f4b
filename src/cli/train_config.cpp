#include "cli/train_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/error.h"
#include "cli/device.h"
#include "cli/did_you_mean.h"
#include "formats/peft_adapter.h"
#include "export/gguf_export.h"

namespace cotune::cli {

void TrainConfig::bind(RecipeBinder& b) {
  b.bind("model", model, "Model folder, or org/name (from the Hugging Face cache, downloaded when missing)");
  b.bind("tokenizer", tokenizer, "Tokenizer folder or tokenizer.json (default: the model folder)");
  b.bind("data", data,
         "Dataset: a JSON array, JSON Lines, CSV or Parquet file, a folder of them, or a Hub dataset org/name "
         "(downloaded when missing)");
  b.bind("data_config", data_config,
         "Dataset config (the card's configs: section), as load_dataset's name, e.g. zh for medical-o1-reasoning-SFT");
  b.bind("data_files", data_files, "File inside the data folder / dataset repo to use (e.g. medical_o1_sft_Chinese.json)");
  b.bind("template", template_name,
         "Built-in prompt template (medical-o1-zh, medical-o1-en) or chat (the model's chat template)");
  b.bind("template_file", template_file, "JSON template file {\"train\": ..., \"prompt\": ...} (overrides --template)");
  b.bind("data_format", data_format,
         "auto (from the fields), medical-o1, messages, sharegpt, alpaca, prompt-completion or text");
  b.bind("selection", selection, "Rows to use, as a datasets split string, e.g. train[0:500]");
  b.bind("max_seq_length", max_seq_length, "Longer examples are truncated (and counted)");
  b.bind("loss_on", loss_on,
         "all (every token after the first), response (after the prompt) or assistant (the assistant turns)");
  b.bind_switch("shuffle", "no-shuffle", shuffle, false, "Keep file order (epochs wrap in that order)");
  b.bind("packing", packing, "Pack several sequences into one row up to max_tokens_per_batch");
  b.bind("data_cache", data_cache, "Use the on-disk token cache");
  b.bind("on_bad_record", on_bad_record,
         "error (stop at the first malformed record, naming it) or skip (count and skip it)");
  b.bind("validation_split", validation_split, "Fraction of sequences held out for evaluation");
  b.bind("validation_count", validation_count, "Number of sequences held out for evaluation");
  b.bind("lora_r", lora_r, "LoRA rank");
  b.bind("lora_alpha", lora_alpha, "LoRA alpha (scale = alpha / r)");
  b.bind("lora_dropout", lora_dropout, "Dropout on the LoRA branch input");
  b.bind("use_rslora", use_rslora, "rsLoRA scaling alpha / sqrt(r)");
  b.bind("target_modules", target_modules, "Comma-separated projections to adapt");
  b.bind("init_adapter", init_adapter, "Start from an existing PEFT adapter folder (continued training)");
  b.bind("optim", optim, "adamw (fp32 states) or adamw8bit (blockwise 8-bit states, bitsandbytes scheme)");
  b.bind("lr", lr, "Peak learning rate");
  b.bind("lr_scheduler", lr_scheduler, "linear, cosine, constant or constant_with_warmup");
  b.bind("warmup_steps", warmup_steps, "Warmup steps (the first step's rate is 0 with warmup)");
  b.bind("warmup_ratio", warmup_ratio, "Warmup as a fraction of the steps (when warmup_steps is 0)");
  b.bind("weight_decay", weight_decay, "Decoupled weight decay");
  b.bind("adam_beta1", adam_beta1, "Adam beta1");
  b.bind("adam_beta2", adam_beta2, "Adam beta2");
  b.bind("adam_epsilon", adam_epsilon, "Adam epsilon");
  b.bind("max_grad_norm", max_grad_norm, "Clip the global gradient norm to this (0: no clipping)");
  b.bind("max_steps", max_steps, "Optimizer steps (wins over num_epochs when > 0)");
  b.bind("num_epochs", num_epochs, "Epochs over the training split (when max_steps is 0)");
  b.bind("batch_size", batch_size, "Sequences per micro-batch (without packing)");
  b.bind("max_tokens_per_batch", max_tokens_per_batch, "Token budget of a packed micro-batch");
  b.bind("grad_accum", grad_accum, "Micro-batches per optimizer step");
  b.bind("seed", seed, "Seed for shuffling, LoRA init and dropout");
  b.bind("logging_steps", logging_steps, "Print a progress line every N steps (when not on a terminal)");
  b.bind("save_steps", save_steps, "Checkpoint every N steps (0: only at the end)");
  b.bind("save_total_limit", save_total_limit, "Keep only the newest N checkpoints (and the best)");
  b.bind("eval_steps", eval_steps, "Evaluate the validation split every N steps (0: never)");
  b.bind("load_best_model_at_end", load_best_model_at_end, "End with the adapter of the lowest eval_loss");
  b.bind("device", device, "cpu, cuda or auto");
  b.bind("gradient_checkpointing", gradient_checkpointing, "Recompute each layer in backward");
  b.bind("load_in_4bit", load_in_4bit, "NF4 base weights (QLoRA)");
  b.bind("output", output, "Output folder (checkpoints, adapter, metrics, report)");
  b.bind("report_to", report_to, "Metric sinks: jsonl, tensorboard, wandb (or none)");
  b.bind("wandb_project", wandb_project, "W&B project (default $WANDB_PROJECT, else cotune)");
  b.bind("wandb_entity", wandb_entity, "W&B entity: user or team (default $WANDB_ENTITY, else the key's default)");
  b.bind("run_name", run_name, "W&B run name (default $WANDB_NAME, else the output folder)");
  b.bind("wandb_tags", wandb_tags, "W&B run tags, comma-separated (default $WANDB_TAGS)");
  b.bind("wandb_notes", wandb_notes, "W&B run notes (default $WANDB_NOTES)");
  b.bind("wandb_mode", wandb_mode,
         "W&B mode: online, offline (write wandb/offline-run-*/ for `wandb sync`) or disabled (default $WANDB_MODE, "
         "else online)");
  b.bind_switch("resume", "resume", resume, true, "Continue from the newest checkpoint in the output folder");
  b.bind_switch("overwrite_output_dir", "overwrite-output", overwrite_output_dir, true,
                "Replace another run's outputs in the output folder (only what cotune wrote there is removed)");
  b.bind("save_merged", save_merged, "Also write a merged 16-bit model to OUTPUT/merged");
  b.bind("push_to_hub", push_to_hub,
         "After training, upload the adapter (with a model card) to this Hub repo org/name, and the merged model "
         "(when saved) to org/name-merged; token from $HF_TOKEN or $HF_HOME/token");
  b.bind("hub_private", hub_private, "Create the push_to_hub repos private");
  b.bind("export_gguf", export_gguf,
         "GGUF files (with Ollama Modelfiles) to write to OUTPUT/gguf at the end: f32, f16, bf16, q8_0, q4_0, q4_k_m, "
         "q5_k_m, q6_k");
  b.bind("sample_questions", sample_questions,
         "Answer this many dataset questions with the inference prompt before and after training (OUTPUT/samples)");
  b.bind("sample_max_new_tokens", sample_max_new_tokens, "Token limit of each before/after answer");
  tuning.bind(b);
  b.accept("bf16", "cotune computes in bf16 on the GPU and in fp32 on the CPU");
  b.accept("fp16", "cotune computes in bf16 on the GPU (no fp16 loss scaling needed) and in fp32 on the CPU");
}

void TrainConfig::validate(const RecipeBinder* origin) const {
  const auto at = [&](const std::string& key) { return origin ? origin->where(key) : key; };
  const auto int_in = [&](const std::string& key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) fail("{}: must be in [{}, {}], got {}", at(key), lo, hi, v);
  };
  // Non-finite values cannot come from flags or recipes (parsed strictly), but a TrainConfig built in code may
  // hold them: `!(v >= lo)` is true for NaN.
  const auto real_in = [&](const std::string& key, double v, double lo, double hi, bool hi_open) {
    if (!std::isfinite(v) || !(v >= lo) || (hi_open ? !(v < hi) : !(v <= hi)))
      fail("{}: must be a finite number in [{}, {}{}, got {}", at(key), lo, hi, hi_open ? ")" : "]", v);
  };
  const auto positive = [&](const std::string& key, double v) {
    if (!std::isfinite(v) || !(v > 0)) fail("{}: must be a finite number > 0, got {}", at(key), v);
  };
  int_in("max_seq_length", max_seq_length, 2, kMaxSequenceTokens);
  int_in("batch_size", batch_size, 1, kMaxBatchSequences);
  int_in("grad_accum", grad_accum, 1, kMaxGradAccum);
  int_in("max_tokens_per_batch", max_tokens_per_batch, 2, kMaxBatchTokens);
  if (packing && max_tokens_per_batch < max_seq_length)
    fail("{} ({}) must be >= {} ({}) with packing", at("max_tokens_per_batch"), max_tokens_per_batch,
         at("max_seq_length"), max_seq_length);
  if (!packing && batch_size > kMaxBatchTokens / max_seq_length)
    fail("{} x {} = {} x {} tokens a micro-batch is more than the limit of {} tokens", at("batch_size"),
         at("max_seq_length"), batch_size, max_seq_length, kMaxBatchTokens);
  int_in("lora_r", lora_r, 1, formats::kMaxLoraRank);
  positive("lora_alpha", lora_alpha);
  real_in("lora_dropout", lora_dropout, 0, 1, true);
  positive("lr", lr);
  real_in("warmup_ratio", warmup_ratio, 0, 1, true);
  real_in("weight_decay", weight_decay, 0, 1e6, false);
  real_in("max_grad_norm", max_grad_norm, 0, 1e30, false);
  real_in("adam_beta1", adam_beta1, 0, 1, true);
  real_in("adam_beta2", adam_beta2, 0, 1, true);
  real_in("adam_epsilon", adam_epsilon, 0, 1, false);
  if (!(adam_epsilon > 0)) fail("{}: must be > 0, got {}", at("adam_epsilon"), adam_epsilon);
  int_in("warmup_steps", warmup_steps, 0, kMaxSteps);
  int_in("max_steps", max_steps, 0, kMaxSteps);
  if (max_steps == 0) real_in("num_epochs", num_epochs, 1e-9, 1e6, false);
  int_in("logging_steps", logging_steps, 1, kMaxSteps);
  int_in("save_steps", save_steps, 0, kMaxSteps);
  int_in("save_total_limit", save_total_limit, 0, kMaxSteps);
  int_in("eval_steps", eval_steps, 0, kMaxSteps);
  real_in("validation_split", validation_split, 0, 1, true);
  int_in("validation_count", validation_count, 0, std::numeric_limits<int32_t>::max());
  int_in("sample_questions", sample_questions, 0, 100000);
  int_in("sample_max_new_tokens", sample_max_new_tokens, 1, kMaxSequenceTokens);
  if (device != "auto" && device != "cpu" && device != "cuda")
    fail("{}: must be cpu, cuda or auto, got '{}'{}", at("device"), device, did_you_mean(device, {"cpu", "cuda", "auto"}));
  if (loss_on != "all" && loss_on != "response" && loss_on != "assistant")
    fail("{}: must be all, response or assistant, got '{}'{}", at("loss_on"), loss_on,
         did_you_mean(loss_on, {"all", "response", "assistant"}));
  if (optim != "adamw" && optim != "adamw8bit")
    fail("{}: must be adamw or adamw8bit (also TRL's adamw_torch, adamw_8bit, paged_adamw_8bit), got '{}'{}", at("optim"),
         optim, did_you_mean(optim, {"adamw", "adamw8bit"}));
  const std::vector<std::string> schedulers{"linear", "cosine", "constant", "constant_with_warmup"};
  if (std::find(schedulers.begin(), schedulers.end(), lr_scheduler) == schedulers.end())
    fail("{}: must be one of {}, got '{}'{}", at("lr_scheduler"), fmt::join(schedulers, ", "), lr_scheduler,
         did_you_mean(lr_scheduler, schedulers));
  if (on_bad_record != "error" && on_bad_record != "skip")
    fail("{}: must be error or skip, got '{}'", at("on_bad_record"), on_bad_record);
  for (const auto& t : export_gguf) with_context("export_gguf", [&] { exporting::parse_gguf_file_type(t); });
  if (!wandb_mode.empty() && wandb_mode != "online" && wandb_mode != "offline" && wandb_mode != "disabled")
    fail("{}: must be online, offline or disabled, got '{}'", at("wandb_mode"), wandb_mode);
  (void)tuning.kernel_tuning();  // the tuning keys' values (errors name the key)
  model::RunnerOptions probe;
  tuning.apply(probe);
}

Device TrainConfig::resolved_device() const { return parse_device(device, "device"); }

train::TrainOptions TrainConfig::train_options() const {
  train::TrainOptions o;
  o.optim = optim;
  o.lr = lr;
  o.lr_scheduler = lr_scheduler;
  o.warmup_steps = warmup_steps;
  o.warmup_ratio = warmup_ratio;
  o.weight_decay = weight_decay;
  o.adam_beta1 = adam_beta1;
  o.adam_beta2 = adam_beta2;
  o.adam_epsilon = adam_epsilon;
  o.max_grad_norm = max_grad_norm;
  o.max_steps = max_steps;
  o.num_epochs = num_epochs;
  o.grad_accum = grad_accum;
  o.seed = seed;
  o.logging_steps = logging_steps;
  o.save_steps = save_steps;
  o.save_total_limit = save_total_limit;
  o.eval_steps = eval_steps;
  o.load_best_model_at_end = load_best_model_at_end;
  o.output_dir = output;
  o.resume = resume;
  return o;
}

std::vector<std::pair<std::string, std::string>> TrainConfig::settings_table() const {
  return {{"model", model},
          {"data", data + (data_config.empty() ? "" : " (" + data_config + ")") + (selection != "train" ? " " + selection : "")},
          {"template", (template_file.empty() ? template_name : template_file) +
                           (data_format != "auto" ? " (data format " + data_format + ")" : "")},
          {"loss on", loss_on},
          {"max_seq_length", std::to_string(max_seq_length)},
          {"LoRA", fmt::format("r {} alpha {} dropout {}{} on {}", lora_r, lora_alpha, lora_dropout,
                               use_rslora ? " (rsLoRA)" : "", fmt::join(target_modules, ","))},
          {"optimizer", fmt::format("{} lr {} {} warmup {} wd {} clip {}", optim, lr, lr_scheduler,
                                    warmup_steps > 0 ? std::to_string(warmup_steps) : fmt::format("{}", warmup_ratio),
                                    weight_decay, max_grad_norm)},
          {"batch", packing ? fmt::format("packed {} tokens x {} accumulation", max_tokens_per_batch, grad_accum)
                            : fmt::format("{} x {} accumulation", batch_size, grad_accum)},
          {"steps", max_steps > 0 ? std::to_string(max_steps) : fmt::format("{} epochs", num_epochs)},
          {"seed", std::to_string(seed)},
          {"4-bit base", load_in_4bit ? "yes (NF4)" : "no"},
          {"gradient checkpointing", gradient_checkpointing ? "on" : "off"}};
}

}  // namespace cotune::cli
