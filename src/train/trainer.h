// The LoRA SFT trainer loop: micro-batches from the data iterator, forward/backward through the model,
// gradient accumulation with one normalisation per optimizer step, clipping, the optimizer, the
// schedule, metrics, checkpoints and exact resume. It does not print: progress and metrics go to track.
//
// Loss of an optimizer step = (sum of token losses over all its micro-batches) / (counted predictions in
// the whole step), not a mean of per-micro-batch means. A counted prediction is a position whose
// next-token target is in the loss mask: a fully trained sequence of n tokens counts n-1 (transformers'
// num_items_in_batch counts one more per sequence; cotune follows the shifted count, as Unsloth does).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/dataset.h"
#include "model/lora.h"
#include "model/qwen2.h"
#include "track/metrics.h"
#include "train/checkpoint.h"

namespace cotune::train {

struct TrainOptions {
  // optimisation
  std::string optim = "adamw";  // adamw | adamw8bit
  double lr = 2e-4;
  std::string lr_scheduler = "linear";  // linear | cosine | constant | constant_with_warmup
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;  // used when warmup_steps == 0
  double weight_decay = 0.01;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;  // <= 0: no clipping
  // loop
  int64_t max_steps = 0;      // > 0 wins over num_epochs
  double num_epochs = 1.0;
  int64_t grad_accum = 1;
  uint64_t seed = 3407;
  int64_t logging_steps = 10;
  int64_t save_steps = 0;        // 0: only the final checkpoint
  int64_t save_total_limit = 0;  // 0: keep all checkpoints
  int64_t eval_steps = 0;        // 0: no evaluation during training
  bool load_best_model_at_end = false;
  std::string output_dir = "runs/cotune";
  bool resume = false;           // continue from the newest OUTPUT/checkpoint-N
  // what the run is, for the checkpoint's adapter_config.json and the report
  std::optional<std::string> base_model_name_or_path;
  std::string tokenizer_dir;
};

// What the trainer consumes, built by the caller (cli): the model with its adapter, the tokenized data
// and its train / validation indices, the batch layout, the metric sinks.
struct TrainInputs {
  const model::Qwen2Model* model = nullptr;
  model::LoraWeights* lora = nullptr;
  const data::TokenizedDataset* dataset = nullptr;
  std::vector<int64_t> train_indices, validation_indices;
  data::BatchOptions batch;
  model::RunnerOptions runner;
  track::MetricsHub* metrics = nullptr;
};

// One optimizer step's numbers, as logged.
struct StepRecord {
  int64_t step = 0;
  double epoch = 0, loss = 0, lr = 0, grad_norm = 0, mean_token_accuracy = 0, tokens_per_s = 0, elapsed_s = 0;
  int64_t tokens = 0;        // counted predictions
  int64_t input_tokens = 0;  // real tokens processed
};

struct EvalRecord {
  int64_t step = 0;
  double loss = 0, mean_token_accuracy = 0;
  int64_t tokens = 0;
};

// Hooks the caller may set (progress display, stop flag); none is required.
struct TrainHooks {
  std::function<void(const StepRecord&)> on_step;
  std::function<void(const EvalRecord&)> on_eval;
  std::function<void(const std::string&)> on_message;  // "saved checkpoint-40", ...
  std::function<bool()> should_stop;                    // e.g. Ctrl-C: checkpoint and stop after this step
};

struct TrainResult {
  int64_t steps_done = 0, total_steps = 0;
  bool stopped_early = false;  // should_stop
  int64_t input_tokens = 0, counted_tokens = 0;
  double seconds = 0;
  std::string last_checkpoint;  // folder, "" if none
  std::optional<EvalRecord> best_eval;
  std::string best_checkpoint;
};

// Runs the loop. Throws Error on a NaN/Inf loss or gradient norm (naming the step; the last good checkpoint
// stays on disk) and on any bad input.
TrainResult train(const TrainInputs& in, const TrainOptions& opt, const TrainHooks& hooks = {});

// Loss and token accuracy over the given sequences, masked as in training (no gradients).
EvalRecord evaluate(const model::Qwen2Model& model, model::LoraWeights* lora, const data::TokenizedDataset& ds,
                    const std::vector<int64_t>& indices, const data::BatchOptions& batch,
                    const model::RunnerOptions& runner);

// Total optimizer steps for the options and data (max_steps, or epochs x batches / grad_accum, rounded up).
int64_t planned_steps(const TrainOptions& opt, int64_t batches_per_epoch);

}  // namespace cotune::train
