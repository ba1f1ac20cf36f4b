// libFuzzer target: a `cotune train --recipe` TOML file applied to every train setting and validated, as
// `cotune train` does before it loads anything.
#include "base/error.h"
#include "cli/recipe.h"
#include "cli/train_config.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cotune::fuzz::write_input("recipe.toml", data, size);
  CLI::App app{"fuzz"};
  cotune::cli::TrainConfig cfg;
  cotune::cli::RecipeBinder binder(app);
  cfg.bind(binder);
  try {
    const char* argv[] = {"fuzz"};
    app.parse(1, argv);
    binder.apply(path);
    cfg.validate();
    (void)cfg.train_options();
    (void)cfg.settings_table();
  } catch (const cotune::Error&) {
  }
  return 0;
}
