// `cotune train`, stage 1: the recipe and flags applied and validated; the model, tokenizer and template
// resolved (cli/cmd_train.h).
#include <filesystem>

#include "base/error.h"
#include "base/log.h"
#include "cli/cmd_train.h"
#include "cli/model_path.h"
#include "export/gguf_import.h"

namespace cotune::cli {

namespace fs = std::filesystem;

TrainSetup resolve_train_config(TrainCommand& cmd) {
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
  TemplateChoice tpl = choose_template(c.template_name, c.template_file, c.data_format, tokenizer_dir);

  return TrainSetup{model_ref, model_dir, device, tokenizer_dir, std::move(tok), std::move(tpl)};
}

}  // namespace cotune::cli
