// Writes a LoRA adapter as a PEFT folder (adapter_config.json + adapter_model.safetensors, f32 weights),
// which `peft.PeftModel.from_pretrained(base, DIR)` loads with no missing or unexpected keys; the
// tokenizer files of the base model are copied beside it, as `tokenizer.save_pretrained` would.
#pragma once
#include <optional>
#include <string>

#include "model/lora.h"

namespace cotune::exporting {

struct AdapterExportOptions {
  std::optional<std::string> base_model_name_or_path;  // recorded in adapter_config.json (null allowed)
  std::string tokenizer_dir;                           // copy the tokenizer files from here ("" = none)
};

// Writes DIR atomically (built in a temp folder that then replaces DIR).
void save_peft_adapter(const std::string& dir, const model::LoraWeights& lora, const AdapterExportOptions& opts);

}  // namespace cotune::exporting
