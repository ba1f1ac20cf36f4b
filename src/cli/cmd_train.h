// `cotune train` in stages (cmd_train*.cpp), run in this order by run_train (cmd_train.cpp); each stage takes
// what the ones before produced. Orchestration only (DESIGN.md): the work is done by data, model, train, infer,
// export, track and hub.
//   1. resolve_train_config  (cmd_train_config.cpp)  recipe + flags, validated; model, tokenizer, template
//   2. load_train_data       (cmd_train_data.cpp)    data choice, run folder, W&B sink, tokenized data, split, batches
//   3. load_train_model      (cmd_train_model.cpp)   the base (bf16 / NF4), the adapter, the "before" answers
//   4. run_train_loop        (cmd_train_loop.cpp)    metrics, progress, train::train
//   5. finish_train          (cmd_train_finish.cpp)  adapter, "after" answers, merged / GGUF exports, report, push
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/hub_data.h"
#include "cli/data_format.h"
#include "cli/recipe.h"
#include "cli/train_config.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "hub/hf_cache.h"
#include "infer/evaluate.h"
#include "infer/generator.h"
#include "model/lora.h"
#include "model/qwen2.h"
#include "text/tokenizer.h"
#include "track/metrics.h"
#include "track/wandb.h"
#include "train/trainer.h"

namespace cotune::cli {

struct TrainCommand {
  TrainConfig cfg;
  std::string recipe;
  std::unique_ptr<RecipeBinder> binder;
};

// 1. The recipe and flags applied and validated; the model, tokenizer and template resolved.
struct TrainSetup {
  hub::Resolved model_ref;  // a .gguf is converted once into a cached folder (cli/model_path.h)
  std::string model_dir;
  Device device = Device::cpu;
  std::string tokenizer_dir;
  text::Tokenizer tokenizer;
  TemplateChoice tpl;
};
TrainSetup resolve_train_config(TrainCommand& cmd);

// 2. The data, tokenized and split; the run folder claimed and the W&B sink open (a wrong key fails here, before
// the model loads).
struct TrainData {
  data::DataOptions options;
  DataChoice choice;
  std::vector<std::string> sink_names;         // report_to without wandb
  std::unique_ptr<track::WandbSink> wandb_sink;  // moved into the metrics hub by run_train_loop
  track::WandbSink* wandb = nullptr;           // the sink, wherever it is owned
  data::TokenizedDataset dataset;
  data::Split split;
  data::BatchOptions batch;
};
TrainData load_train_data(TrainCommand& cmd, const TrainSetup& setup);

// 3. The base model, the adapter and, when sample questions are asked for, the answers before training.
struct TrainModel {
  model::Qwen2Model model;
  std::unique_ptr<model::LoraWeights> lora;
  infer::GenerationOptions generation;
  infer::ComparisonReport samples;
};
TrainModel load_train_model(TrainCommand& cmd, const TrainSetup& setup, const TrainData& data);

// 4. The training loop with progress and metrics.
struct TrainRun {
  train::TrainOptions options;
  std::optional<int64_t> resume_step;
  track::MetricsHub metrics;
  train::TrainResult result;
};
TrainRun run_train_loop(TrainCommand& cmd, const TrainSetup& setup, TrainData& data, TrainModel& model);

// 5. Everything the run writes after training, then the exit status (130 when stopped early).
void finish_train(TrainCommand& cmd, const TrainSetup& setup, const TrainData& data, TrainModel& model, TrainRun& run);

}  // namespace cotune::cli
