#include "formats/peft_adapter.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mmap.h"

namespace cotune::formats {

PeftAdapterConfig load_peft_adapter_config(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) file = path + "/adapter_config.json";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(file));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed JSON: {}", file, e.what());
  }
  if (!j.is_object()) fail("{}: expected a JSON object", file);
  PeftAdapterConfig c;
  auto field = [&](const char* k) -> const nlohmann::json* {
    auto it = j.find(k);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  try {
    if (auto* v = field("peft_type"); v && v->get<std::string>() != "LORA")
      fail("{}: peft_type is {}, only LORA adapters are supported", file, v->dump());
    if (auto* v = field("r")) {
      // Read wide, so a value past 2^31 is refused instead of wrapping into a plausible rank.
      const int64_t r = v->get<int64_t>();
      if (r <= 0 || r > kMaxLoraRank) fail("{}: r must be in [1, {}], got {}", file, kMaxLoraRank, v->dump());
      c.r = static_cast<int>(r);
    }
    if (auto* v = field("lora_alpha")) c.lora_alpha = v->get<double>();
    if (auto* v = field("lora_dropout")) c.lora_dropout = v->get<double>();
    if (auto* v = field("use_rslora")) c.use_rslora = v->get<bool>();
    if (auto* v = field("bias")) c.bias = v->get<std::string>();
    if (auto* v = field("task_type")) c.task_type = v->get<std::string>();
    if (auto* v = field("base_model_name_or_path")) c.base_model_name_or_path = v->get<std::string>();
    if (auto* v = field("target_modules")) {
      if (v->is_string()) fail("{}: target_modules as a regex string ({}) is not supported; list the modules", file, v->dump());
      c.target_modules = v->get<std::vector<std::string>>();
    }
    if (auto* v = field("use_dora"); v && v->get<bool>()) fail("{}: use_dora is true; DoRA is not supported", file);
    for (const char* k : {"rank_pattern", "alpha_pattern"})
      if (auto* v = field(k); v && !v->empty()) fail("{}: {} is set; per-module ranks are not supported", file, k);
    for (const char* k : {"modules_to_save", "layers_to_transform"})
      if (auto* v = field(k); v && !v->empty()) fail("{}: {} is set; not supported", file, k);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: a field has the wrong type: {}", file, e.what());
  }
  if (c.bias != "none") fail("{}: bias is \"{}\"; only \"none\" is supported", file, c.bias);
  if (c.r <= 0) fail("{}: r must be positive, got {}", file, c.r);
  if (!std::isfinite(c.lora_alpha) || c.lora_alpha <= 0) fail("{}: lora_alpha must be a positive number, got {}", file, c.lora_alpha);
  if (!(c.lora_dropout >= 0 && c.lora_dropout < 1)) fail("{}: lora_dropout must be in [0, 1), got {}", file, c.lora_dropout);
  if (c.target_modules.empty()) fail("{}: target_modules is missing or empty", file);
  return c;
}

std::string peft_adapter_config_to_json(const PeftAdapterConfig& c) {
  nlohmann::ordered_json j;
  j["alpha_pattern"] = nlohmann::json::object();
  j["auto_mapping"] = nullptr;
  j["base_model_name_or_path"] = c.base_model_name_or_path ? nlohmann::json(*c.base_model_name_or_path) : nlohmann::json(nullptr);
  j["bias"] = c.bias;
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["layers_pattern"] = nullptr;
  j["layers_to_transform"] = nullptr;
  j["lora_alpha"] = c.lora_alpha;
  j["lora_dropout"] = c.lora_dropout;
  j["modules_to_save"] = nullptr;
  j["peft_type"] = "LORA";
  j["r"] = c.r;
  j["rank_pattern"] = nlohmann::json::object();
  j["revision"] = nullptr;
  j["target_modules"] = c.target_modules;
  j["task_type"] = c.task_type;
  j["use_dora"] = false;
  j["use_rslora"] = c.use_rslora;
  return j.dump(2) + "\n";
}

}  // namespace cotune::formats
