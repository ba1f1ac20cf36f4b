#include "formats/inspect.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "formats/safetensors.h"

namespace cotune::formats {
namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// True when `dir` holds something Checkpoint::open would read.
bool folder_has_weights(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / "model.safetensors.index.json", ec)) return true;
  for (const auto& de : fs::directory_iterator(dir, ec))
    if (de.path().extension() == ".safetensors") return true;
  return false;
}

std::string with_commas(int64_t v) {
  // Appends digit by digit (std::string::insert trips a GCC 12 -Wrestrict false positive).
  const std::string digits = std::to_string(v);
  std::string s;
  size_t first = digits[0] == '-' ? 1 : 0;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > first && (digits.size() - i) % 3 == 0) s += ',';
    s += digits[i];
  }
  return s;
}

std::string gib(int64_t bytes) { return fmt::format("{:.2f} GiB", static_cast<double>(bytes) / (1 << 30)); }

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace

InspectReport inspect_model(const std::string& path) {
  std::error_code ec;
  InspectReport r;
  fs::path folder;
  std::string weights;  // empty: look in folder
  if (fs::is_directory(path, ec)) {
    folder = path;
    r.config_path = (folder / "config.json").string();
  } else if (!fs::exists(path, ec)) {
    fail("{}: no such file or folder", path);
  } else if (ends_with(path, ".safetensors") || ends_with(path, ".index.json")) {
    folder = fs::path(path).parent_path();
    if (folder.empty()) folder = ".";
    weights = path;
    r.config_path = (folder / "config.json").string();
  } else {
    folder = fs::path(path).parent_path();
    if (folder.empty()) folder = ".";
    r.config_path = path;
  }
  r.config = load_model_config(r.config_path);
  const ModelConfig& c = r.config;
  r.parameters = c.parameter_count();
  r.parameters_without_embeddings =
      r.parameters - c.vocab_size * c.hidden_size * (c.tie_word_embeddings ? 1 : 2);
  r.memory = weight_memory(c);

  if (weights.empty() && folder_has_weights(folder)) weights = folder.string();
  if (weights.empty()) {
    r.weights_absent = fmt::format("{}: no model.safetensors, model.safetensors.index.json or *.safetensors",
                                   folder.string());
    return r;
  }
  Checkpoint ck = Checkpoint::open(weights);
  r.has_weights = true;
  r.weights_path = weights;
  for (const auto& n : ck.names()) {
    const TensorEntry& e = ck.get(n);
    r.tensors.push_back({n, e.dtype_name, e.shape, fs::path(e.file).filename().string()});
  }
  r.check = check_checkpoint_against_config(ck, c);
  return r;
}

std::string inspect_text(const InspectReport& r) {
  const ModelConfig& c = r.config;
  std::string s;
  auto line = [&](const std::string& key, const std::string& value) { s += fmt::format("{:<24}{}\n", key, value); };
  line("config", r.config_path);
  line("architecture", fmt::format("{} (model_type {})", c.architecture, c.model_type));
  line("layers", std::to_string(c.num_hidden_layers));
  line("attention heads", fmt::format("{} (key/value heads {}, head dim {})", c.num_attention_heads,
                                      c.num_key_value_heads, c.head_dim));
  line("hidden size", std::to_string(c.hidden_size));
  line("intermediate size", std::to_string(c.intermediate_size));
  line("vocabulary", std::to_string(c.vocab_size));
  line("max positions", std::to_string(c.max_position_embeddings));
  line("rope theta", fmt::format("{}", c.rope_theta));
  if (c.rope_type == "linear") line("rope scaling", fmt::format("linear, factor {}", c.rope_factor));
  if (c.rope_type == "llama3")
    line("rope scaling", fmt::format("llama3, factor {}, low/high frequency factors {}/{}, original max positions {}",
                                     c.rope_factor, c.rope_low_freq_factor, c.rope_high_freq_factor,
                                     c.rope_original_max_position_embeddings));
  line("rms norm eps", fmt::format("{}", c.rms_norm_eps));
  line("tied embeddings", c.tie_word_embeddings ? "yes" : "no");
  line("qkv bias", c.attention_bias ? (c.o_proj_bias() ? "yes (o_proj too)" : "yes") : "no");
  if (c.mlp_bias) line("mlp bias", "yes");
  if (c.qk_norm) line("q/k norm", "yes (per-head RMSNorm before RoPE)");
  if (c.attention_window() > 0) line("sliding window", std::to_string(c.attention_window()));
  line("dtype", c.torch_dtype);
  line("parameters", fmt::format("{} ({:.2f} B)", with_commas(r.parameters), r.parameters / 1e9));
  line("  without embeddings", fmt::format("{} (embed_tokens{} excluded)", with_commas(r.parameters_without_embeddings),
                                           c.tie_word_embeddings ? "" : " and lm_head"));
  line("weights in bf16", gib(r.memory.bf16_bytes));
  line("weights in NF4", gib(r.memory.nf4_bytes) + " (decoder linears 4-bit + absmax; embeddings, lm_head, norms bf16)");
  if (!r.has_weights) {
    s += "\nno weights found (" + r.weights_absent + ")\n";
    return s;
  }
  s += fmt::format("\nweights: {} ({} tensors)\n", r.weights_path, r.tensors.size());
  size_t width = 0;
  for (const auto& t : r.tensors) width = std::max(width, t.name.size());
  for (const auto& t : r.tensors) s += fmt::format("  {:<{}}  {:<5} {}\n", t.name, width, t.dtype, shape_str(t.shape));
  if (r.check.ok() && r.check.unexpected.empty()) {
    s += "check: every tensor the config implies is present with the right shape\n";
  } else {
    s += fmt::format("check: {} missing, {} wrong shape, {} unexpected{}\n", r.check.missing.size(),
                     r.check.wrong_shape.size(), r.check.unexpected.size(),
                     r.check.ok() ? " (unexpected tensors are ignored by the loader)" : "");
    std::string m = r.check.message();
    size_t start = 0;
    while (start < m.size()) {
      size_t end = m.find('\n', start);
      if (end == std::string::npos) end = m.size();
      s += "  " + m.substr(start, end - start) + "\n";
      start = end + 1;
    }
  }
  return s;
}

std::string inspect_json(const InspectReport& r) {
  const ModelConfig& c = r.config;
  nlohmann::ordered_json j;
  j["config_path"] = r.config_path;
  j["architecture"] = c.architecture;
  j["model_type"] = c.model_type;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_theta"] = c.rope_theta;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["attention_bias"] = c.attention_bias;
  j["mlp_bias"] = c.mlp_bias;
  j["qk_norm"] = c.qk_norm;
  j["rope_type"] = c.rope_type;
  if (c.rope_type != "default") j["rope_factor"] = c.rope_factor;
  j["sliding_window"] = c.attention_window();
  j["torch_dtype"] = c.torch_dtype;
  j["parameters"] = r.parameters;
  j["parameters_without_embeddings"] = r.parameters_without_embeddings;
  j["weights_bytes_bf16"] = r.memory.bf16_bytes;
  j["weights_bytes_nf4"] = r.memory.nf4_bytes;
  j["has_weights"] = r.has_weights;
  if (!r.has_weights) {
    j["weights_absent"] = r.weights_absent;
    return j.dump(2) + "\n";
  }
  j["weights_path"] = r.weights_path;
  auto& ts = j["tensors"] = nlohmann::ordered_json::array();
  for (const auto& t : r.tensors)
    ts.push_back(nlohmann::ordered_json{{"name", t.name}, {"dtype", t.dtype}, {"shape", t.shape}, {"file", t.file}});
  j["check"] = nlohmann::ordered_json{{"ok", r.check.ok()},
                                      {"missing", r.check.missing},
                                      {"wrong_shape", r.check.wrong_shape},
                                      {"unexpected", r.check.unexpected}};
  return j.dump(2) + "\n";
}

}  // namespace cotune::formats
