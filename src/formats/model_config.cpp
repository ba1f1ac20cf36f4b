#include "formats/model_config.h"

#include <simdjson.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mmap.h"

namespace cotune::formats {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

std::string type_name(element e) {
  switch (e.type()) {
    case element_type::ARRAY: return "an array";
    case element_type::OBJECT: return "an object";
    case element_type::INT64:
    case element_type::UINT64: return "an integer";
    case element_type::DOUBLE: return "a floating-point number";
    case element_type::STRING: return "a string";
    case element_type::BOOL: return "a boolean";
    case element_type::NULL_VALUE: return "null";
  }
  return "?";
}

// Typed field access over one JSON object; every error names the file and the field.
class Fields {
 public:
  Fields(object o, std::string source, std::string prefix = "")
      : o_(o), source_(std::move(source)), prefix_(std::move(prefix)) {}

  // Present and not null (transformers writes null for "unset").
  bool has(const char* key) const {
    element e;
    return !o_[key].get(e) && !e.is_null();
  }
  element at(const char* key) const {
    element e;
    if (o_[key].get(e) || e.is_null()) fail("{}: missing required field \"{}{}\"", source_, prefix_, key);
    return e;
  }
  int64_t integer(const char* key) const {
    element e = at(key);
    int64_t v = 0;
    if (e.get_int64().get(v))
      fail("{}: field \"{}{}\" must be an integer, found {}", source_, prefix_, key, type_name(e));
    return v;
  }
  int64_t positive(const char* key) const {
    int64_t v = integer(key);
    if (v <= 0) fail("{}: field \"{}{}\" must be positive, found {}", source_, prefix_, key, v);
    return v;
  }
  double number(const char* key) const {
    element e = at(key);
    if (e.is_int64()) return static_cast<double>(e.get_int64().value_unsafe());
    if (e.is_uint64()) return static_cast<double>(e.get_uint64().value_unsafe());
    double v = 0;
    if (e.get_double().get(v))
      fail("{}: field \"{}{}\" must be a number, found {}", source_, prefix_, key, type_name(e));
    return v;
  }
  bool boolean(const char* key) const {
    element e = at(key);
    bool v = false;
    if (e.get_bool().get(v))
      fail("{}: field \"{}{}\" must be true or false, found {}", source_, prefix_, key, type_name(e));
    return v;
  }
  std::string string(const char* key) const {
    element e = at(key);
    std::string_view v;
    if (e.get_string().get(v))
      fail("{}: field \"{}{}\" must be a string, found {}", source_, prefix_, key, type_name(e));
    return std::string(v);
  }
  // Token ids: an integer, or a list of them (transformers allows several EOS ids); the first is kept.
  int64_t token_id(const char* key) const {
    element e = at(key);
    int64_t v = 0;
    if (!e.get_int64().get(v)) return v;
    simdjson::dom::array a;
    if (!e.get_array().get(a)) {
      if (a.size() == 0) return -1;
      if (!a.at(0).get_int64().get(v)) return v;
    }
    fail("{}: field \"{}{}\" must be an integer or a list of integers, found {}", source_, prefix_, key,
         type_name(e));
  }

 private:
  object o_;
  std::string source_;
  std::string prefix_;
};

// Rope settings cotune implements: plain RoPE only. transformers 4.x writes `rope_scaling` (null, or an
// object with `rope_type`/`type`); 5.x writes `rope_parameters` {rope_theta, rope_type}.
void check_rope_type(object o, const std::string& source, const char* field) {
  bool typed = false;
  for (const char* key : {"rope_type", "type"}) {
    element e;
    if (o[key].get(e) || e.is_null()) continue;
    std::string_view t;
    if (e.get_string().get(t)) fail("{}: field \"{}.{}\" must be a string, found {}", source, field, key, type_name(e));
    if (t != "default")
      fail("{}: field \"{}.{}\" is \"{}\": cotune implements only plain RoPE (rope_type \"default\")", source, field,
           key, t);
    typed = true;
  }
  // A legacy rope_scaling object without a type still asks for scaling (e.g. {"factor": 2}).
  if (!typed && std::string_view(field) == "rope_scaling" && o.size() > 0)
    fail("{}: field \"rope_scaling\" is set without a rope_type: cotune implements only plain RoPE", source);
}

}  // namespace

int64_t ModelConfig::parameter_count() const {
  const int64_t H = hidden_size, q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t layer = H * q + q * H + 2 * H * kv  // q, o, k, v weights
                  + 3 * H * intermediate_size  // gate, up, down
                  + 2 * H;                     // input / post-attention RMSNorm
  if (attention_bias) layer += q + 2 * kv;
  if (attention_bias && model_type == "llama") layer += H;  // Llama's attention_bias also covers o_proj
  if (mlp_bias) layer += 2 * intermediate_size + H;
  int64_t n = vocab_size * H + num_hidden_layers * layer + H;  // embeddings, layers, final norm
  if (!tie_word_embeddings) n += vocab_size * H;
  return n;
}

int64_t ModelConfig::linear_parameter_count() const {
  // Weights only (biases are not matmuls and are never quantized). The LM head is a matmul even when
  // its weight is tied to the embeddings, so it is always counted here.
  const int64_t H = hidden_size, q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  const int64_t layer = 2 * H * q + 2 * H * kv + 3 * H * intermediate_size;
  return num_hidden_layers * layer + vocab_size * H;
}

ModelConfig parse_model_config(const std::string& json_text, const std::string& source_name) {
  const std::string& src = source_name;
  simdjson::dom::parser parser;
  element doc;
  if (auto err = parser.parse(json_text).get(doc)) fail("{}: not valid JSON: {}", src, simdjson::error_message(err));
  object root;
  if (doc.get_object().get(root)) fail("{}: expected a JSON object at the top level", src);
  Fields f(root, src);
  ModelConfig c;

  c.model_type = f.string("model_type");
  if (c.model_type != "qwen2" && c.model_type != "llama")
    fail("{}: field \"model_type\" is \"{}\": cotune supports \"qwen2\" (Qwen2, Qwen2.5, DeepSeek-R1-Distill-Qwen) "
         "and \"llama\"",
         src, c.model_type);
  const std::string expected_arch = c.model_type == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
  c.architecture = expected_arch;
  if (f.has("architectures")) {
    simdjson::dom::array a;
    if (f.at("architectures").get_array().get(a) || a.size() == 0)
      fail("{}: field \"architectures\" must be a non-empty list of strings", src);
    std::string_view arch;
    if (a.at(0).get_string().get(arch)) fail("{}: field \"architectures[0]\" must be a string", src);
    if (arch != expected_arch)
      fail("{}: field \"architectures\" is [\"{}\"]: cotune expects \"{}\" for model_type \"{}\"", src, arch,
           expected_arch, c.model_type);
  }

  c.vocab_size = f.positive("vocab_size");
  c.hidden_size = f.positive("hidden_size");
  c.intermediate_size = f.positive("intermediate_size");
  c.num_hidden_layers = f.positive("num_hidden_layers");
  c.num_attention_heads = f.positive("num_attention_heads");
  // transformers' defaults for optional fields (Qwen2Config / LlamaConfig).
  c.num_key_value_heads = f.has("num_key_value_heads") ? f.positive("num_key_value_heads") : c.num_attention_heads;
  if (f.has("head_dim")) {
    // An explicit head_dim may differ from hidden/heads (Llama allows it); then no divisibility is implied.
    c.head_dim = f.positive("head_dim");
  } else {
    if (c.hidden_size % c.num_attention_heads != 0)
      fail("{}: hidden_size {} is not divisible by num_attention_heads {} (and no head_dim is given)", src,
           c.hidden_size, c.num_attention_heads);
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim % 2 != 0) fail("{}: head dimension {} is odd; RoPE needs an even head_dim", src, c.head_dim);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail("{}: num_attention_heads {} is not divisible by num_key_value_heads {}", src, c.num_attention_heads,
         c.num_key_value_heads);
  c.max_position_embeddings =
      f.has("max_position_embeddings") ? f.positive("max_position_embeddings") : (c.model_type == "qwen2" ? 32768 : 2048);
  if (f.has("rms_norm_eps")) c.rms_norm_eps = f.number("rms_norm_eps");
  if (!(c.rms_norm_eps > 0)) fail("{}: field \"rms_norm_eps\" must be positive, found {}", src, c.rms_norm_eps);
  if (f.has("tie_word_embeddings")) c.tie_word_embeddings = f.boolean("tie_word_embeddings");
  if (f.has("hidden_act")) c.hidden_act = f.string("hidden_act");
  if (c.hidden_act != "silu")
    fail("{}: field \"hidden_act\" is \"{}\": cotune implements only \"silu\"", src, c.hidden_act);

  // Qwen2's attention always carries q/k/v biases (the config has no switch); Llama's follows attention_bias.
  if (c.model_type == "qwen2") {
    c.attention_bias = true;
  } else {
    if (f.has("attention_bias")) c.attention_bias = f.boolean("attention_bias");
    if (f.has("mlp_bias")) c.mlp_bias = f.boolean("mlp_bias");
  }

  if (f.has("torch_dtype")) c.torch_dtype = f.string("torch_dtype");
  else if (f.has("dtype")) c.torch_dtype = f.string("dtype");

  if (f.has("bos_token_id")) c.bos_token_id = f.token_id("bos_token_id");
  if (f.has("eos_token_id")) c.eos_token_id = f.token_id("eos_token_id");

  if (f.has("use_sliding_window")) c.use_sliding_window = f.boolean("use_sliding_window");
  if (f.has("sliding_window")) c.sliding_window = f.integer("sliding_window");
  if (c.use_sliding_window)
    fail("{}: field \"use_sliding_window\" is true: cotune implements only full causal attention", src);
  // transformers 5.x states the attention kind per layer; only full attention is implemented.
  if (f.has("layer_types")) {
    simdjson::dom::array a;
    if (f.at("layer_types").get_array().get(a)) fail("{}: field \"layer_types\" must be a list of strings", src);
    size_t i = 0;
    for (auto e : a) {
      std::string_view t;
      if (e.get_string().get(t)) fail("{}: field \"layer_types[{}]\" must be a string", src, i);
      if (t != "full_attention")
        fail("{}: field \"layer_types[{}]\" is \"{}\": cotune implements only \"full_attention\"", src, i, t);
      ++i;
    }
    if (static_cast<int64_t>(i) != c.num_hidden_layers)
      fail("{}: field \"layer_types\" has {} entries, expected num_hidden_layers = {}", src, i, c.num_hidden_layers);
  }

  // RoPE: theta at the top level (4.x) or inside rope_parameters (5.x); any scaling is unsupported.
  if (f.has("rope_theta")) c.rope_theta = f.number("rope_theta");
  if (f.has("rope_scaling")) {
    object o;
    if (f.at("rope_scaling").get_object().get(o))
      fail("{}: field \"rope_scaling\" must be an object or null, found {}", src, type_name(f.at("rope_scaling")));
    check_rope_type(o, src, "rope_scaling");
  }
  if (f.has("rope_parameters")) {
    object o;
    if (f.at("rope_parameters").get_object().get(o))
      fail("{}: field \"rope_parameters\" must be an object, found {}", src, type_name(f.at("rope_parameters")));
    check_rope_type(o, src, "rope_parameters");
    Fields rp(o, src, "rope_parameters.");
    if (rp.has("rope_theta")) c.rope_theta = rp.number("rope_theta");
  }
  if (!(c.rope_theta > 0)) fail("{}: field \"rope_theta\" must be positive, found {}", src, c.rope_theta);
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) {
    file = (fs::path(path) / "config.json").string();
    if (!fs::is_regular_file(file, ec)) fail("{}: no config.json in this folder", path);
  }
  return parse_model_config(read_file(file), file);
}

std::string model_config_to_json(const ModelConfig& c) {
  // transformers 4.x keys, sorted and indented as `PretrainedConfig.to_json_file` writes them.
  nlohmann::json j;
  const bool qwen2 = c.model_type == "qwen2";
  j["architectures"] = {c.architecture};
  j["attention_dropout"] = 0.0;
  if (!qwen2) {
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = c.mlp_bias;
    j["pretraining_tp"] = 1;
  }
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_id >= 0) j["eos_token_id"] = c.eos_token_id;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = c.hidden_act;
  j["hidden_size"] = c.hidden_size;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = c.intermediate_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  if (qwen2) {
    j["max_window_layers"] = c.num_hidden_layers;
    j["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json(nullptr);
    j["use_sliding_window"] = c.use_sliding_window;
  }
  j["model_type"] = c.model_type;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_scaling"] = nullptr;
  j["rope_theta"] = c.rope_theta;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = c.torch_dtype;
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab_size;
  return j.dump(2) + "\n";  // nlohmann::json keeps keys sorted
}

}  // namespace cotune::formats
