// Every setting of `cotune train`, as recipe keys and flags. Defaults follow the guide's recipe where it
// has one (r 16, alpha 16, dropout 0, all seven projections, lr 2e-4, linear, weight decay 0.01, seed 3407,
// max length 2048, logging every 10 steps).
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "cli/recipe.h"
#include "cli/tuning_config.h"
#include "tensor/tensor.h"
#include "train/trainer.h"

namespace cotune::cli {

// Bounds on sizes from flags and recipes, checked before anything is allocated or multiplied. A micro-batch's
// tokens are indexed with 32-bit offsets (cu_seqlens), so its token budget stays below 2^31.
constexpr int64_t kMaxBatchTokens = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxSequenceTokens = int64_t{1} << 24;  // 16,777,216 tokens: 128x Qwen2's 131,072 positions
constexpr int64_t kMaxBatchSequences = int64_t{1} << 20;
constexpr int64_t kMaxGradAccum = int64_t{1} << 16;      // a step's micro-batches are held together
constexpr int64_t kMaxSteps = int64_t{1} << 40;

struct TrainConfig {
  // model and data
  std::string model, tokenizer, data, data_config, data_files, template_name = "medical-o1-zh", template_file;
  std::string selection = "train", loss_on = "all", on_bad_record = "error", data_format = "auto";
  int64_t max_seq_length = 2048;
  bool shuffle = true, packing = false, data_cache = true;
  double validation_split = 0.0;
  int64_t validation_count = 0;
  // adapter
  int lora_r = 16;
  float lora_alpha = 16.0f, lora_dropout = 0.0f;
  bool use_rslora = false;
  std::vector<std::string> target_modules{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  std::string init_adapter;
  // optimisation
  std::string optim = "adamw8bit", lr_scheduler = "linear";
  double lr = 2e-4, warmup_ratio = 0.0, weight_decay = 0.01, max_grad_norm = 1.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;
  int64_t warmup_steps = 0;
  // loop
  int64_t max_steps = 0, batch_size = 1, max_tokens_per_batch = 4096, grad_accum = 1;
  double num_epochs = 1.0;
  uint64_t seed = 3407;
  int64_t logging_steps = 10, save_steps = 0, save_total_limit = 0, eval_steps = 0;
  bool load_best_model_at_end = false;
  // device and precision
  std::string device = "auto";
  bool gradient_checkpointing = true, load_in_4bit = false;
  // outputs
  std::string output = "runs/cotune";
  std::vector<std::string> report_to{"jsonl", "tensorboard"};
  // Weights & Biases (report_to = ["wandb", ...]); empty values defer to WANDB_* and the client's defaults.
  std::string wandb_project, wandb_entity, run_name, wandb_notes, wandb_mode;
  std::vector<std::string> wandb_tags;
  bool resume = false, save_merged = false;
  std::string push_to_hub;  // org/name: the adapter goes there, the merged model (when made) to org/name-merged
  bool hub_private = false;
  bool overwrite_output_dir = false;  // replace another run's outputs in `output` (cli/run_folder.h)
  std::vector<std::string> export_gguf;  // GGUF types written to OUTPUT/gguf at the end (e.g. q4_k_m, q8_0)
  int64_t sample_questions = 0, sample_max_new_tokens = 256;  // before/after answers (the guide's steps 3 and 7)
  TuningConfig tuning;  // kernel variants, CUDA graphs, keep_attention (defaults: the production behaviour)

  void bind(RecipeBinder& b);
  // Throws naming the bad key, its allowed range, and (with the binder) the recipe file and line or the flag
  // the value came from. Sizes are bounded here, before anything is allocated or multiplied.
  void validate(const RecipeBinder* origin = nullptr) const;
  Device resolved_device() const;        // "auto": cuda when a GPU is present and the build has CUDA
  train::TrainOptions train_options() const;
  std::vector<std::pair<std::string, std::string>> settings_table() const;  // for the report
};

}  // namespace cotune::cli
