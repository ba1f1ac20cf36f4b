// PEFT LoRA adapter folders: `adapter_config.json` + `adapter_model.safetensors`, as
// `peft.PeftModel.from_pretrained` reads them. Keys look like
// `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight` ([r, in]) and `...lora_B.weight` ([out, r]).
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace cotune::formats {

// The largest LoRA rank accepted (recipes, flags, adapter configs): far above any useful rank, far below what
// would overflow the adapter's sizes (r x hidden elements per matrix).
constexpr int kMaxLoraRank = 65536;

struct PeftAdapterConfig {
  int r = 16;
  double lora_alpha = 16;
  double lora_dropout = 0.0;
  bool use_rslora = false;
  std::vector<std::string> target_modules;
  std::optional<std::string> base_model_name_or_path;  // null allowed
  std::string bias = "none";
  std::string task_type = "CAUSAL_LM";
};

// Reads DIR/adapter_config.json (or the file itself). Errors name the file and field; unsupported
// features (DoRA, rank_pattern/alpha_pattern, bias other than "none", modules_to_save, layers_to_transform)
// are errors, not silently ignored.
PeftAdapterConfig load_peft_adapter_config(const std::string& path);
std::string peft_adapter_config_to_json(const PeftAdapterConfig& c);

}  // namespace cotune::formats
