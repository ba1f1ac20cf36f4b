// cotune train: the LoRA SFT run, in the stages of cli/cmd_train.h (resolve the config, load the data, load the
// model, the training loop, finish and export). Orchestration only (DESIGN.md).
#include "cli/cmd_train.h"
#include "cli/command.h"

namespace cotune::cli {
namespace {

void run_train(TrainCommand& cmd) {
  const TrainSetup setup = resolve_train_config(cmd);
  TrainData data = load_train_data(cmd, setup);
  TrainModel model = load_train_model(cmd, setup, data);
  TrainRun run = run_train_loop(cmd, setup, data, model);
  finish_train(cmd, setup, data, model, run);
}

void setup_train(CLI::App& app) {
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

COTUNE_COMMAND(train, "train", "Fine-tune a LoRA adapter (SFT) from a recipe and/or flags", 40,
               setup_train);

}  // namespace cotune::cli
