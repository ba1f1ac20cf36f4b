// `cotune inspect MODEL_DIR_OR_CONFIG [--json]`: the model's architecture, sizes, parameter count and
// weight memory (bf16 / NF4) from config.json, and, when safetensors weights are present, every tensor
// with a check against the layout the config implies. Exit code 1 when weights do not match the config.
#include <cstdio>
#include <memory>
#include <string>

#include "base/error.h"
#include "cli/command.h"
#include "cli/model_path.h"
#include "formats/inspect.h"

namespace cotune::cli {
namespace {

struct InspectOptions {
  std::string path;
  bool json = false;
};

void setup_inspect(CLI::App& app) {
  auto opt = std::make_shared<InspectOptions>();
  app.add_option("MODEL,-m,--model", opt->path,
                 "Model folder, its config.json, a .safetensors file beside a config.json, or a Hub name (org/name)")
      ->required();
  app.add_flag("--json", opt->json, "Print one JSON object instead of text");
  app.callback([opt] {
    const formats::InspectReport r = formats::inspect_model(resolve_model_dir(opt->path));
    const std::string out = opt->json ? formats::inspect_json(r) : formats::inspect_text(r);
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    if (r.has_weights && !r.check.ok()) fail("{}: weights do not match the config (see the check above)", r.weights_path);
  });
}

}  // namespace
}  // namespace cotune::cli

COTUNE_COMMAND(inspect, "inspect", "Show a model's architecture, size and memory needs; check its weights", 10,
               cotune::cli::setup_inspect);
