// The model card (README.md) pushed with an adapter or a merged model: YAML metadata the Hub indexes, then a
// short body (what was trained, how to load it, the recipe, the loss curve figures, before/after answers).
//
//   ---
//   base_model: deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B
//   library_name: peft                      # transformers for a merged model
//   datasets:
//   - FreedomIntelligence/medical-o1-reasoning-SFT
//   tags: [cotune, lora, sft, ...]
//   pipeline_tag: text-generation
//   ---
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace cotune::hub {

struct CardSample {
  std::string question, before, after;
};

struct ModelCardInfo {
  std::string repo_id;                 // where the card goes (for the usage snippet)
  std::string base_model;              // org/name (a local path is left out of the metadata)
  bool is_adapter = true;              // PEFT adapter (library_name: peft) or merged model (transformers)
  std::vector<std::string> datasets;   // org/name of the training data (local paths are left out)
  std::vector<std::string> tags{"cotune", "sft"};
  std::string pipeline_tag = "text-generation";
  std::string recipe_toml;             // shown verbatim
  std::vector<std::pair<std::string, std::string>> facts;  // (name, value) rows: steps, final loss, ...
  std::vector<std::string> figures;    // repo-relative image paths (loss curve, lr)
  std::vector<CardSample> samples;     // before / after answers
};

std::string model_card(const ModelCardInfo& info);

}  // namespace cotune::hub
