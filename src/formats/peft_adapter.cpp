#include "formats/peft_adapter.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_error.h"
#include "base/mmap.h"

namespace cotune::formats {

namespace {

const char* json_type(const nlohmann::json& v) {
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "a list";
  if (v.is_object()) return "an object";
  return "null";
}

}  // namespace

PeftAdapterConfig load_peft_adapter_config(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) file = path + "/adapter_config.json";
  const std::string text = read_file(file);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    fail("{}: malformed JSON: {}", file, json_syntax_error(text));
  }
  if (!j.is_object()) fail("{}: expected a JSON object", file);
  PeftAdapterConfig c;
  auto field = [&](const char* k) -> const nlohmann::json* {
    auto it = j.find(k);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  auto wrong = [&](const char* k, const nlohmann::json& v, const char* expected) {
    fail("{}: field \"{}\" must be {}, found {} ({})", file, k, expected, json_type(v), v.dump());
  };
  auto string_of = [&](const char* k, const nlohmann::json& v) {
    if (!v.is_string()) wrong(k, v, "a string");
    return v.get<std::string>();
  };
  auto number_of = [&](const char* k, const nlohmann::json& v) {
    if (!v.is_number()) wrong(k, v, "a number");
    const double d = v.get<double>();
    if (!std::isfinite(d)) wrong(k, v, "a finite number");
    return d;
  };
  auto bool_of = [&](const char* k, const nlohmann::json& v) {
    if (!v.is_boolean()) wrong(k, v, "true or false");
    return v.get<bool>();
  };
  if (auto* v = field("peft_type"); v && string_of("peft_type", *v) != "LORA")
    fail("{}: peft_type is {}, only LORA adapters are supported", file, v->dump());
  if (auto* v = field("r")) {
    if (!v->is_number_integer()) wrong("r", *v, "a positive integer");
    const bool in_range = v->is_number_unsigned()
                              ? v->get<uint64_t>() >= 1 && v->get<uint64_t>() <= static_cast<uint64_t>(kMaxLoraRank)
                              : v->get<int64_t>() >= 1 && v->get<int64_t>() <= kMaxLoraRank;
    if (!in_range)
      fail("{}: field \"r\" is {}; the LoRA rank must be in [1, {}]", file, v->dump(), kMaxLoraRank);
    c.r = static_cast<int>(v->get<int64_t>());
  }
  if (auto* v = field("lora_alpha")) c.lora_alpha = number_of("lora_alpha", *v);
  if (auto* v = field("lora_dropout")) {
    c.lora_dropout = number_of("lora_dropout", *v);
    if (c.lora_dropout < 0 || c.lora_dropout >= 1)
      fail("{}: field \"lora_dropout\" is {}; it must be in [0, 1)", file, c.lora_dropout);
  }
  if (auto* v = field("use_rslora")) c.use_rslora = bool_of("use_rslora", *v);
  if (auto* v = field("bias")) c.bias = string_of("bias", *v);
  if (auto* v = field("task_type")) c.task_type = string_of("task_type", *v);
  if (auto* v = field("base_model_name_or_path")) c.base_model_name_or_path = string_of("base_model_name_or_path", *v);
  if (auto* v = field("target_modules")) {
    if (v->is_string()) fail("{}: target_modules as a regex string ({}) is not supported; list the modules", file, v->dump());
    if (!v->is_array()) wrong("target_modules", *v, "a list of module names");
    for (const auto& m : *v) {
      if (!m.is_string()) wrong("target_modules", *v, "a list of strings");
      c.target_modules.push_back(m.get<std::string>());
    }
  }
  if (auto* v = field("use_dora"); v && bool_of("use_dora", *v)) fail("{}: use_dora is true; DoRA is not supported", file);
  for (const char* k : {"rank_pattern", "alpha_pattern"})
    if (auto* v = field(k); v && !v->empty()) fail("{}: {} is set; per-module ranks are not supported", file, k);
  for (const char* k : {"modules_to_save", "layers_to_transform"})
    if (auto* v = field(k); v && !v->empty()) fail("{}: {} is set; not supported", file, k);
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
