#include "hub/model_card.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>

namespace cotune::hub {

namespace {

bool is_hub_name(const std::string& s) {
  const auto slash = s.find('/');
  return !s.empty() && s.front() != '/' && s.front() != '.' && s.front() != '~' &&
         (slash == std::string::npos || s.find('/', slash + 1) == std::string::npos);
}

// Markdown quote of model output: every line prefixed, long answers cut.
std::string quote(std::string s) {
  if (s.size() > 1500) s = s.substr(0, 1500) + " …";
  std::string out = "> ";
  for (char c : s) {
    out.push_back(c);
    if (c == '\n') out += "> ";
  }
  return out;
}

}  // namespace

std::string model_card(const ModelCardInfo& info) {
  YAML::Emitter y;
  y << YAML::BeginMap;
  if (is_hub_name(info.base_model)) y << YAML::Key << "base_model" << YAML::Value << info.base_model;
  y << YAML::Key << "library_name" << YAML::Value << (info.is_adapter ? "peft" : "transformers");
  std::vector<std::string> datasets;
  for (const auto& d : info.datasets)
    if (is_hub_name(d) && d.find('/') != std::string::npos) datasets.push_back(d);
  if (!datasets.empty()) y << YAML::Key << "datasets" << YAML::Value << datasets;
  std::vector<std::string> tags = info.tags;
  const std::vector<std::string> kind_tags =
      info.is_adapter ? std::vector<std::string>{"lora", "peft"} : std::vector<std::string>{"merged", "lora"};
  for (const auto& t : kind_tags)
    if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
  if (info.is_adapter && is_hub_name(info.base_model))
    tags.push_back("base_model:adapter:" + info.base_model);
  y << YAML::Key << "tags" << YAML::Value << tags;
  y << YAML::Key << "pipeline_tag" << YAML::Value << info.pipeline_tag;
  y << YAML::EndMap;

  std::string md = "---\n" + std::string(y.c_str()) + "\n---\n\n";
  const std::string name = info.repo_id.empty() ? "this model" : info.repo_id;
  md += fmt::format("# {}\n\n", info.repo_id.empty() ? "cotune fine-tune" : info.repo_id);
  if (info.is_adapter) {
    md += fmt::format("A LoRA adapter for [{0}](https://huggingface.co/{0}), trained with "
                      "[cotune](https://github.com/) (supervised fine-tuning{1}).\n\n",
                      info.base_model, datasets.empty() ? "" : " on " + datasets.front());
    md += fmt::format("```python\nfrom peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
                      "model = AutoPeftModelForCausalLM.from_pretrained(\"{0}\")\n"
                      "tokenizer = AutoTokenizer.from_pretrained(\"{0}\")\n```\n\n",
                      name);
  } else {
    md += fmt::format("[{0}](https://huggingface.co/{0}) with a LoRA adapter merged into its weights (16-bit), trained "
                      "with cotune{1}.\n\n",
                      info.base_model, datasets.empty() ? "" : " on " + datasets.front());
    md += fmt::format("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                      "model = AutoModelForCausalLM.from_pretrained(\"{0}\")\n"
                      "tokenizer = AutoTokenizer.from_pretrained(\"{0}\")\n```\n\n",
                      name);
  }
  if (!info.facts.empty()) {
    md += "## Training\n\n| | |\n|---|---|\n";
    for (const auto& [k, v] : info.facts) md += fmt::format("| {} | {} |\n", k, v);
    md += "\n";
  }
  for (const auto& f : info.figures) md += fmt::format("![{}]({})\n\n", f, f);
  if (!info.recipe_toml.empty()) md += "## Recipe\n\n```toml\n" + info.recipe_toml + (info.recipe_toml.ends_with('\n') ? "" : "\n") + "```\n\n";
  if (!info.samples.empty()) {
    md += "## Answers before and after fine-tuning\n\n";
    for (size_t i = 0; i < info.samples.size(); ++i) {
      const auto& s = info.samples[i];
      md += fmt::format("### Question {}\n\n{}\n\n**Before**\n\n{}\n\n**After**\n\n{}\n\n", i + 1, quote(s.question),
                        quote(s.before), quote(s.after));
    }
  }
  return md;
}

}  // namespace cotune::hub
