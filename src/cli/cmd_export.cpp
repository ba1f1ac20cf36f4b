// `cotune export gguf --model DIR [--adapter DIR] --type TYPE [--type TYPE ...] -o FILE.gguf|DIR`:
// writes the model (with the adapter merged in) as GGUF for llama.cpp / Ollama / LM Studio, one file per type,
// each with an Ollama Modelfile beside it (exporting::export_gguf, src/export/gguf_export.h).
// `cotune export gguf-lora --adapter DIR [--model DIR] -o FILE.gguf`: the adapter alone as a llama.cpp LoRA
// adapter (`llama-cli -m base.gguf --lora FILE.gguf`).
// `cotune export modelfile --model DIR --gguf FILE.gguf [-o Modelfile]`: the Ollama Modelfile alone, for a GGUF
// written elsewhere (its TEMPLATE from the model's chat template: src/export/ollama.h).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/mmap.h"
#include "cli/command.h"
#include "cli/model_path.h"
#include "export/gguf_export.h"
#include "export/ollama.h"
#include "formats/peft_adapter.h"
#include "hub/hf_cache.h"

namespace cotune::cli {
namespace {

struct GgufCliOptions {
  std::string model, adapter, output, name;
  std::vector<std::string> types;
  bool no_modelfile = false;
};

struct GgufLoraCliOptions {
  std::string adapter, model, output;
};

struct ModelfileCliOptions {
  std::string model, gguf, output;
};

void run_modelfile(const ModelfileCliOptions& c) {
  const std::string text = exporting::ollama_modelfile(resolve_model_dir(c.model), c.gguf);
  if (c.output.empty() || c.output == "-") {
    std::fputs(text.c_str(), stdout);
    return;
  }
  write_file_atomic(c.output, text);
  std::printf("wrote %s (ollama create NAME -f %s)\n", c.output.c_str(), c.output.c_str());
}

void run_gguf(const GgufCliOptions& c) {
  exporting::GgufExportOptions o;
  o.model_dir = resolve_model_dir(c.model);
  if (!c.adapter.empty()) o.adapter_dir = hub::resolve(c.adapter).path.string();
  o.types.clear();
  for (const auto& t : c.types) o.types.push_back(exporting::parse_gguf_file_type(t));
  o.output = c.output;
  o.name = c.name;
  o.write_modelfile = !c.no_modelfile;
  for (const auto& r : exporting::export_gguf(o)) {
    std::string mix;
    for (const auto& [t, n] : r.tensor_types) mix += (mix.empty() ? "" : ", ") + std::to_string(n) + " " + t;
    std::printf("wrote %s (%s, %.1f MB): %s\n", r.path.c_str(), exporting::gguf_file_type_label(r.type).c_str(),
                static_cast<double>(r.bytes) / 1e6, mix.c_str());
    if (!r.modelfile.empty()) std::printf("      %s (ollama create NAME -f %s)\n", r.modelfile.c_str(), r.modelfile.c_str());
  }
}

void run_gguf_lora(const GgufLoraCliOptions& c) {
  const std::string adapter = hub::resolve(c.adapter).path.string();
  std::string model = c.model;
  if (model.empty()) {
    const auto acfg = formats::load_peft_adapter_config(adapter);
    if (!acfg.base_model_name_or_path)
      fail("{}: adapter_config.json has no base_model_name_or_path; give the base model with --model", adapter);
    model = *acfg.base_model_name_or_path;
  }
  const auto r = exporting::export_gguf_lora(adapter, resolve_model_dir(model), c.output);
  std::printf("wrote %s: %lld LoRA tensors, alpha %g (llama-cli -m BASE.gguf --lora %s)\n", r.path.c_str(),
              static_cast<long long>(r.tensors), static_cast<double>(r.alpha), r.path.c_str());
}

void setup_export(CLI::App& app) {
  app.require_subcommand(1);
  auto g = std::make_shared<GgufCliOptions>();
  CLI::App* gguf = app.add_subcommand("gguf", "Write the model as GGUF (llama.cpp, Ollama, LM Studio) with a Modelfile");
  gguf->add_option("--model,-m", g->model, "Model folder, org/name in the Hugging Face cache, or a .gguf")->required();
  gguf->add_option("--adapter,-a", g->adapter, "PEFT LoRA adapter to merge in first");
  std::string choices;
  for (const auto& t : exporting::gguf_file_type_choices()) choices += (choices.empty() ? "" : ", ") + t;
  gguf->add_option("--type,-t", g->types, "GGUF type, repeatable (one file each): " + choices)->required();
  gguf->add_option("--output,-o", g->output,
                   "FILE.gguf (with several types, the type is inserted before .gguf) or a folder")
      ->required();
  gguf->add_option("--name", g->name, "general.name in the file (default: from the model folder)");
  gguf->add_flag("--no-modelfile", g->no_modelfile, "Do not write an Ollama Modelfile beside the GGUF");
  gguf->callback([g] { run_gguf(*g); });

  auto l = std::make_shared<GgufLoraCliOptions>();
  CLI::App* lora = app.add_subcommand("gguf-lora", "Write a PEFT adapter as a llama.cpp GGUF LoRA adapter");
  lora->add_option("--adapter,-a", l->adapter, "PEFT LoRA adapter folder")->required();
  lora->add_option("--model,-m", l->model, "Base model (default: the adapter's base_model_name_or_path)");
  lora->add_option("--output,-o", l->output, "FILE.gguf")->required();
  lora->callback([l] { run_gguf_lora(*l); });

  auto m = std::make_shared<ModelfileCliOptions>();
  CLI::App* mf = app.add_subcommand("modelfile", "Write the Ollama Modelfile (FROM, TEMPLATE, stops) for a GGUF");
  mf->add_option("--model,-m", m->model, "Model folder (its chat template and tokenizer files), Hub name or .gguf")
      ->required();
  mf->add_option("--gguf", m->gguf, "The GGUF file the Modelfile's FROM names (relative to the Modelfile)")->required();
  mf->add_option("--output,-o", m->output, "Modelfile path (default: standard output)");
  mf->callback([m] { run_modelfile(*m); });
}

}  // namespace

COTUNE_COMMAND(export, "export", "Export for other runtimes: GGUF (llama.cpp, Ollama), GGUF LoRA adapters, Ollama Modelfiles", 65,
               setup_export);

}  // namespace cotune::cli
