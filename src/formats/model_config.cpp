#include "formats/model_config.h"

#include <simdjson.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_error.h"
#include "base/file_kind.h"
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
  // A size that cotune allocates or loops over: positive and at most `limit` (see kLimits below).
  int64_t size(const char* key, int64_t limit) const {
    int64_t v = positive(key);
    if (v > limit)
      fail("{}: field \"{}{}\" is {}, above cotune's limit of {} (a corrupt config, or a model far larger than any "
           "cotune can hold)",
           source_, prefix_, key, v, limit);
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

// RoPE scaling: transformers 4.x writes `rope_scaling` (null, or an object with `rope_type`/`type`); 5.x writes
// `rope_parameters` {rope_theta, rope_type, ...}. Implemented: "default", "linear", "llama3"; any other type (yarn,
// dynamic, longrope, ...) changes the math and is an error naming the field.
void parse_rope_scaling(object o, const std::string& source, const char* field, ModelConfig& c) {
  const std::string prefix = std::string(field) + ".";
  Fields f(o, source, prefix);
  std::string type;
  for (const char* key : {"rope_type", "type"})
    if (f.has(key)) type = f.string(key);
  if (type.empty()) {
    // A legacy rope_scaling object without a type still asks for scaling (e.g. {"factor": 2}).
    if (std::string_view(field) == "rope_scaling" && o.size() > 0)
      fail("{}: field \"rope_scaling\" is set without a rope_type: cotune implements rope types \"default\", "
           "\"linear\" and \"llama3\"",
           source);
    return;
  }
  if (type != "default" && type != "linear" && type != "llama3")
    fail("{}: field \"{}rope_type\" is \"{}\": cotune implements rope types \"default\", \"linear\" and \"llama3\"",
         source, prefix, type);
  c.rope_type = type;
  if (type == "default") return;
  c.rope_factor = f.number("factor");
  if (!(c.rope_factor >= 1.0))
    fail("{}: field \"{}factor\" must be at least 1, found {}", source, prefix, c.rope_factor);
  if (type == "llama3") {
    c.rope_low_freq_factor = f.number("low_freq_factor");
    c.rope_high_freq_factor = f.number("high_freq_factor");
    c.rope_original_max_position_embeddings = f.positive("original_max_position_embeddings");
    if (!(c.rope_high_freq_factor > c.rope_low_freq_factor) || !(c.rope_low_freq_factor > 0))
      fail("{}: fields \"{}low_freq_factor\" ({}) and \"high_freq_factor\" ({}) must satisfy 0 < low < high", source,
           prefix, c.rope_low_freq_factor, c.rope_high_freq_factor);
  }
  // A scaling that also scales the attention (yarn's attention_factor) is not among these types; a type we
  // implement with an explicit attention_factor != 1 would change the math.
  if (f.has("attention_factor") && f.number("attention_factor") != 1.0)
    fail("{}: field \"{}attention_factor\" is {}: cotune implements no attention scaling", source, prefix,
         f.number("attention_factor"));
}

// The families cotune implements: model_type -> the architecture name transformers writes.
const char* architecture_of(const std::string& model_type) {
  if (model_type == "qwen2") return "Qwen2ForCausalLM";
  if (model_type == "llama") return "LlamaForCausalLM";
  if (model_type == "qwen3") return "Qwen3ForCausalLM";
  if (model_type == "mistral") return "MistralForCausalLM";
  return nullptr;
}

// Upper bounds on the sizes a config.json may give, far above every released model (largest known: vocab
// 262,144, hidden 18,432, intermediate 53,248, 126 layers, 128 heads, head_dim 256), so that a corrupt or
// mutated file is an error naming the field instead of an unbounded loop or allocation. With these bounds
// every product the layout and parameter counts form fits in int64.
struct SizeLimits {
  int64_t vocab_size = int64_t{1} << 22;             // 4,194,304
  int64_t hidden_size = int64_t{1} << 17;            // 131,072
  int64_t intermediate_size = int64_t{1} << 20;      // 1,048,576
  int64_t num_hidden_layers = 4096;
  int64_t num_attention_heads = 4096;
  int64_t head_dim = 4096;
  int64_t max_position_embeddings = int64_t{1} << 30;
};
constexpr SizeLimits kLimits;

}  // namespace

int64_t ModelConfig::parameter_count() const {
  const int64_t H = hidden_size, q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t layer = H * q + q * H + 2 * H * kv  // q, o, k, v weights
                  + 3 * H * intermediate_size  // gate, up, down
                  + 2 * H;                     // input / post-attention RMSNorm
  if (attention_bias) layer += q + 2 * kv;
  if (o_proj_bias()) layer += H;
  if (qk_norm) layer += 2 * head_dim;
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
  if (auto err = parser.parse(json_text).get(doc)) {
    const std::string where = json_syntax_error(json_text);
    fail("{}: not valid JSON: {}", src, where.empty() ? simdjson::error_message(err) : where);
  }
  object root;
  if (doc.get_object().get(root)) fail("{}: expected a JSON object at the top level", src);
  Fields f(root, src);
  ModelConfig c;

  c.model_type = f.string("model_type");
  if (!architecture_of(c.model_type))
    fail("{}: field \"model_type\" is \"{}\": cotune supports \"qwen2\" (Qwen2, Qwen2.5, DeepSeek-R1-Distill-Qwen), "
         "\"llama\" (Llama 2/3.x, DeepSeek-R1-Distill-Llama), \"qwen3\" and \"mistral\"",
         src, c.model_type);
  const std::string expected_arch = architecture_of(c.model_type);
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

  c.vocab_size = f.size("vocab_size", kLimits.vocab_size);
  c.hidden_size = f.size("hidden_size", kLimits.hidden_size);
  c.intermediate_size = f.size("intermediate_size", kLimits.intermediate_size);
  c.num_hidden_layers = f.size("num_hidden_layers", kLimits.num_hidden_layers);
  c.num_attention_heads = f.size("num_attention_heads", kLimits.num_attention_heads);
  // transformers' defaults for optional fields (Qwen2Config / LlamaConfig).
  c.num_key_value_heads =
      f.has("num_key_value_heads") ? f.size("num_key_value_heads", kLimits.num_attention_heads) : c.num_attention_heads;
  if (c.model_type == "qwen3" && !f.has("head_dim")) {
    c.head_dim = 128;  // Qwen3Config's default, whatever hidden_size / num_attention_heads is
  } else if (f.has("head_dim")) {
    // An explicit head_dim may differ from hidden/heads (Llama allows it); then no divisibility is implied.
    c.head_dim = f.size("head_dim", kLimits.head_dim);
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
      f.has("max_position_embeddings") ? f.size("max_position_embeddings", kLimits.max_position_embeddings) : (c.model_type == "qwen2" ? 32768 : 2048);
  if (f.has("rms_norm_eps")) c.rms_norm_eps = f.number("rms_norm_eps");
  if (!(c.rms_norm_eps > 0)) fail("{}: field \"rms_norm_eps\" must be positive, found {}", src, c.rms_norm_eps);
  if (f.has("tie_word_embeddings")) c.tie_word_embeddings = f.boolean("tie_word_embeddings");
  if (f.has("hidden_act")) c.hidden_act = f.string("hidden_act");
  if (c.hidden_act != "silu")
    fail("{}: field \"hidden_act\" is \"{}\": cotune implements only \"silu\"", src, c.hidden_act);

  // Qwen2's attention always carries q/k/v biases (the config has no switch); Llama's and Qwen3's follow
  // attention_bias (q/k/v and o); Mistral's never has one. Only Llama has mlp_bias.
  if (c.model_type == "qwen2") {
    c.attention_bias = true;
  } else if (c.model_type == "llama" || c.model_type == "qwen3") {
    if (f.has("attention_bias")) c.attention_bias = f.boolean("attention_bias");
  }
  if (c.model_type == "llama" && f.has("mlp_bias")) c.mlp_bias = f.boolean("mlp_bias");
  c.qk_norm = c.model_type == "qwen3";

  if (f.has("torch_dtype")) c.torch_dtype = f.string("torch_dtype");
  else if (f.has("dtype")) c.torch_dtype = f.string("dtype");

  if (f.has("bos_token_id")) c.bos_token_id = f.token_id("bos_token_id");
  if (f.has("eos_token_id")) c.eos_token_id = f.token_id("eos_token_id");

  // Sliding windows. Mistral: sliding_window (MistralConfig's default 4096 when absent, null for none) applies to
  // every layer. Qwen2/Qwen3: sliding_window and max_window_layers apply only with use_sliding_window, which cotune
  // rejects; with it off they are read and ignored.
  if (c.model_type == "mistral") {
    c.sliding_window = 4096;
    element e;
    if (!root["sliding_window"].get(e)) c.sliding_window = e.is_null() ? 0 : f.positive("sliding_window");
  } else if (f.has("sliding_window")) {
    c.sliding_window = f.integer("sliding_window");
  }
  if (f.has("max_window_layers")) c.max_window_layers = f.integer("max_window_layers");
  if (f.has("use_sliding_window")) c.use_sliding_window = f.boolean("use_sliding_window");
  if (c.use_sliding_window)
    fail("{}: field \"use_sliding_window\" is true: cotune implements sliding-window attention only for Mistral "
         "(every layer); the Qwen2/Qwen3 layer-dependent window is not implemented",
         src);
  // Keys of other families that change the math, present in configs that otherwise look like ours.
  if (f.has("partial_rotary_factor") && f.number("partial_rotary_factor") != 1.0)
    fail("{}: field \"partial_rotary_factor\" is {}: cotune implements RoPE over the whole head", src,
         f.number("partial_rotary_factor"));
  for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping", "query_pre_attn_scalar"})
    if (f.has(key)) fail("{}: field \"{}\" is set: cotune does not implement it", src, key);
  // transformers 5.x states the attention kind per layer; full attention everywhere, or Mistral's window.
  if (f.has("layer_types")) {
    simdjson::dom::array a;
    if (f.at("layer_types").get_array().get(a)) fail("{}: field \"layer_types\" must be a list of strings", src);
    size_t i = 0;
    for (auto e : a) {
      std::string_view t;
      if (e.get_string().get(t)) fail("{}: field \"layer_types[{}]\" must be a string", src, i);
      if (t != "full_attention" && !(t == "sliding_attention" && c.attention_window() > 0))
        fail("{}: field \"layer_types[{}]\" is \"{}\": cotune implements only \"full_attention\"", src, i, t);
      ++i;
    }
    if (static_cast<int64_t>(i) != c.num_hidden_layers)
      fail("{}: field \"layer_types\" has {} entries, expected num_hidden_layers = {}", src, i, c.num_hidden_layers);
  }

  // RoPE: theta at the top level (4.x) or inside rope_parameters (5.x); scaling in rope_scaling or rope_parameters.
  if (f.has("rope_theta")) c.rope_theta = f.number("rope_theta");
  if (f.has("rope_scaling")) {
    object o;
    if (f.at("rope_scaling").get_object().get(o))
      fail("{}: field \"rope_scaling\" must be an object or null, found {}", src, type_name(f.at("rope_scaling")));
    parse_rope_scaling(o, src, "rope_scaling", c);
  }
  if (f.has("rope_parameters")) {
    object o;
    if (f.at("rope_parameters").get_object().get(o))
      fail("{}: field \"rope_parameters\" must be an object, found {}", src, type_name(f.at("rope_parameters")));
    parse_rope_scaling(o, src, "rope_parameters", c);
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
    if (!fs::exists(file, ec)) {  // a FIFO or other odd file is refused by read_file, naming what it is
      if (auto why = base::unsupported_in_folder(path)) fail("{}: no config.json in this folder; {}", path, *why);
      fail("{}: no config.json in this folder", path);
    }
  } else if (auto why = base::unsupported_input(path)) {
    fail("{}", *why);
  }
  return parse_model_config(read_file(file), file);
}

std::string model_config_to_json(const ModelConfig& c) {
  // transformers 4.x keys, sorted and indented as `PretrainedConfig.to_json_file` writes them.
  nlohmann::json j;
  const bool qwen = c.model_type == "qwen2" || c.model_type == "qwen3";
  j["architectures"] = {c.architecture};
  j["attention_dropout"] = 0.0;
  if (c.model_type == "llama" || c.model_type == "qwen3") j["attention_bias"] = c.attention_bias;
  if (c.model_type == "llama") {
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
  if (qwen) {
    j["max_window_layers"] = c.max_window_layers > 0 ? c.max_window_layers : c.num_hidden_layers;
    j["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json(nullptr);
    j["use_sliding_window"] = c.use_sliding_window;
  }
  if (c.model_type == "mistral")
    j["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json(nullptr);
  j["model_type"] = c.model_type;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["rms_norm_eps"] = c.rms_norm_eps;
  if (c.rope_type == "default") {
    j["rope_scaling"] = nullptr;
  } else {
    nlohmann::json r;
    r["rope_type"] = c.rope_type;
    r["factor"] = c.rope_factor;
    if (c.rope_type == "llama3") {
      r["low_freq_factor"] = c.rope_low_freq_factor;
      r["high_freq_factor"] = c.rope_high_freq_factor;
      r["original_max_position_embeddings"] = c.rope_original_max_position_embeddings;
    }
    j["rope_scaling"] = r;
  }
  j["rope_theta"] = c.rope_theta;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = c.torch_dtype;
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab_size;
  return j.dump(2) + "\n";  // nlohmann::json keeps keys sorted
}

}  // namespace cotune::formats
