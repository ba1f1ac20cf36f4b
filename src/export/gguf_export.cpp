#include "export/gguf_export.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "base/error.h"
#include "base/log.h"
#include "base/mmap.h"
#include "export/merge.h"
#include "export/ollama.h"
#include "formats/peft_adapter.h"
#include "formats/safetensors.h"
#include "kernels/ggml_quants.h"
#include "text/tokenizer.h"

namespace cotune::exporting {
namespace {

namespace fs = std::filesystem;
using formats::GgufValue;
using formats::GgufWriter;
using json = nlohmann::json;
using kernels::GgmlType;

struct FileTypeName {
  GgufFileType type;
  const char* name;
  const char* label;
};
constexpr FileTypeName kFileTypes[] = {
    {GgufFileType::f32, "f32", "F32"},          {GgufFileType::f16, "f16", "F16"},
    {GgufFileType::bf16, "bf16", "BF16"},       {GgufFileType::q8_0, "q8_0", "Q8_0"},
    {GgufFileType::q4_0, "q4_0", "Q4_0"},       {GgufFileType::q4_k_m, "q4_k_m", "Q4_K_M"},
    {GgufFileType::q5_k_m, "q5_k_m", "Q5_K_M"}, {GgufFileType::q6_k, "q6_k", "Q6_K"},
};

// Hugging Face suffix inside a decoder layer -> GGUF suffix (convert_hf_to_gguf.py's tensor map).
constexpr std::pair<const char*, const char*> kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.o_proj.bias", "attn_output.bias"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"mlp.gate_proj.bias", "ffn_gate.bias"},
    {"mlp.up_proj.bias", "ffn_up.bias"},
    {"mlp.down_proj.bias", "ffn_down.bias"},
};
constexpr std::pair<const char*, const char*> kGlobalNames[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

int layer_of(const std::string& gguf_name) {
  int l = -1;
  if (std::sscanf(gguf_name.c_str(), "blk.%d.", &l) != 1) return -1;
  return l;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

json read_json_if_present(const fs::path& p) {
  if (!fs::is_regular_file(p)) return json();
  try {
    return json::parse(read_file(p.string()));
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", p.string(), e.what());
  }
}

std::vector<float> tensor_to_f32(const formats::TensorEntry& e) {
  GgmlType t;
  if (e.dtype_name == "F32") t = GgmlType::f32;
  else if (e.dtype_name == "BF16") t = GgmlType::bf16;
  else if (e.dtype_name == "F16") t = GgmlType::f16;
  else fail("{}: tensor {} has dtype {}, expected F32, BF16 or F16", e.file, e.name, e.dtype_name);
  int64_t n = 1;
  for (int64_t d : e.shape) n *= d;
  std::vector<float> out(static_cast<size_t>(n));
  kernels::ggml_dequantize(t, e.data, out.data(), n);
  return out;
}

// "1.5B", "135M": the parameter count as convert_hf_to_gguf.py's size label spells it.
std::string size_label(int64_t params) {
  char buf[32];
  const double p = static_cast<double>(params);
  if (p >= 1e9) std::snprintf(buf, sizeof buf, "%.1fB", p / 1e9);
  else if (p >= 1e6) std::snprintf(buf, sizeof buf, "%.0fM", p / 1e6);
  else std::snprintf(buf, sizeof buf, "%.0fK", p / 1e3);
  std::string s = buf;
  if (s.size() > 3 && s.compare(s.size() - 3, 2, ".0") == 0) s.erase(s.size() - 3, 2);
  return s;
}

// `key: value` lines of a model card's YAML front matter (README.md), and `key:` followed by "- item" lists.
std::map<std::string, std::vector<std::string>> card_front_matter(const fs::path& readme) {
  std::map<std::string, std::vector<std::string>> out;
  if (!fs::is_regular_file(readme)) return out;
  const std::string text = read_file(readme.string());
  if (text.rfind("---", 0) != 0) return out;
  const size_t end = text.find("\n---", 3);
  if (end == std::string::npos) return out;
  std::string current;
  size_t pos = text.find('\n') + 1;
  while (pos < end) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos || nl > end) nl = end;
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    auto trim = [](std::string s) {
      while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
      size_t b = 0;
      while (b < s.size() && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
      s = s.substr(b);
      if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) s = s.substr(1, s.size() - 2);
      return s;
    };
    const std::string t = trim(line);
    if (t.rfind("- ", 0) == 0 && !current.empty()) {
      out[current].push_back(trim(t.substr(2)));
    } else if (const size_t colon = line.find(':'); colon != std::string::npos && !std::isspace(line[0])) {
      current = trim(line.substr(0, colon));
      const std::string v = trim(line.substr(colon + 1));
      if (!v.empty()) out[current].push_back(v);
    }
  }
  return out;
}

std::string pretty_name(const std::string& folder) {
  // "DeepSeek-R1-Distill-Qwen-1.5B" -> "DeepSeek R1 Distill Qwen 1.5B" (convert's general.name style).
  std::string s = folder;
  std::replace(s.begin(), s.end(), '-', ' ');
  std::replace(s.begin(), s.end(), '_', ' ');
  return s;
}

// tokenizer.ggml.pre: the name llama.cpp's loader knows for this pre-tokenizer.
std::string pre_tokenizer_name(const formats::ModelConfig& cfg, const json& tok) {
  if (cfg.model_type == "qwen2" || cfg.model_type == "qwen3") return "qwen2";
  const std::string pre = tok.contains("pre_tokenizer") ? tok["pre_tokenizer"].dump() : "";
  if (pre.find("\\\\p{N}{1,3}") != std::string::npos) return "llama-bpe";  // Llama 3
  // SmolLM: digits one by one (HF `Digits`, or the equivalent isolated Split on \p{N}), then GPT-2's ByteLevel.
  if ((pre.find("\"Digits\"") != std::string::npos && pre.find("\"individual_digits\":true") != std::string::npos) ||
      pre.find("{\"Regex\":\"\\\\p{N}\"}") != std::string::npos)
    return "smollm";
  return "gpt-2";
}

}  // namespace

GgufFileType parse_gguf_file_type(const std::string& text) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const auto& f : kFileTypes)
    if (t == f.name) return f.type;
  std::string all;
  for (const auto& f : kFileTypes) all += (all.empty() ? "" : ", ") + std::string(f.name);
  fail("--type {}: unknown GGUF type (expected one of {})", text, all);
}

std::string gguf_file_type_label(GgufFileType t) {
  for (const auto& f : kFileTypes)
    if (f.type == t) return f.label;
  return "?";
}

std::vector<std::string> gguf_file_type_choices() {
  std::vector<std::string> v;
  for (const auto& f : kFileTypes) v.emplace_back(f.name);
  return v;
}

std::string gguf_tensor_name(const std::string& hf) {
  for (const auto& [h, g] : kGlobalNames)
    if (hf == h) return g;
  int layer = -1, consumed = 0;
  if (std::sscanf(hf.c_str(), "model.layers.%d.%n", &layer, &consumed) == 1 && consumed > 0) {
    const std::string rest = hf.substr(static_cast<size_t>(consumed));
    for (const auto& [h, g] : kLayerNames)
      if (rest == h) return "blk." + std::to_string(layer) + "." + g;
  }
  fail("tensor {} has no GGUF name (cotune exports Qwen2 / Llama-style decoders)", hf);
}

std::string hf_tensor_name(const std::string& gguf) {
  for (const auto& [h, g] : kGlobalNames)
    if (gguf == g) return h;
  int layer = -1, consumed = 0;
  if (std::sscanf(gguf.c_str(), "blk.%d.%n", &layer, &consumed) == 1 && consumed > 0) {
    const std::string rest = gguf.substr(static_cast<size_t>(consumed));
    for (const auto& [h, g] : kLayerNames)
      if (rest == g) return "model.layers." + std::to_string(layer) + "." + h;
  }
  return "";
}

bool gguf_tensor_order(const std::string& a, const std::string& b) {
  const int la = layer_of(a), lb = layer_of(b);
  if (la != lb) return la < lb;
  return a < b;
}

GgmlType gguf_tensor_type(GgufFileType ftype, const std::string& name, const std::vector<int64_t>& ne, int layer,
                          int n_layers, bool tied) {
  // llama-quantize quantizes only tensors of 2+ dimensions named "*weight", never norms.
  const bool quantizable = ne.size() >= 2 && ends_with(name, "weight") && name.find("_norm.weight") == std::string::npos;
  if (ne.size() < 2) return GgmlType::f32;  // the converter keeps 1-D tensors in F32
  switch (ftype) {
    case GgufFileType::f32: return GgmlType::f32;
    case GgufFileType::f16: return quantizable ? GgmlType::f16 : GgmlType::f32;
    case GgufFileType::bf16: return quantizable ? GgmlType::bf16 : GgmlType::f32;
    default: break;
  }
  if (!quantizable) return GgmlType::f32;
  GgmlType t = GgmlType::q8_0;
  switch (ftype) {
    case GgufFileType::q8_0: t = GgmlType::q8_0; break;
    case GgufFileType::q4_0: t = GgmlType::q4_0; break;
    case GgufFileType::q4_k_m: t = GgmlType::q4_k; break;
    case GgufFileType::q5_k_m: t = GgmlType::q5_k; break;
    case GgufFileType::q6_k: t = GgmlType::q6_k; break;
    default: break;
  }
  // llama_tensor_get_type_impl, the branches these mixes reach (dense models, no imatrix). The layer counters
  // of llama.cpp (i_attention_wv, i_ffn_down) equal the layer index: it visits tensors in layer order.
  auto use_more_bits = [](int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; };
  const auto block = [](GgmlType x) { return kernels::ggml_type_info(x).block_size; };
  const bool is_output = name == "output.weight" || (tied && name == "token_embd.weight");
  if (is_output) {
    if (ne[0] % block(t) != 0) t = GgmlType::q8_0;
    else if (t != GgmlType::q8_0) t = GgmlType::q6_k;
  } else if (name.find("attn_v.weight") != std::string::npos) {
    if ((ftype == GgufFileType::q4_k_m || ftype == GgufFileType::q5_k_m) && use_more_bits(layer, n_layers))
      t = GgmlType::q6_k;
  } else if (name.find("ffn_down.weight") != std::string::npos) {
    if ((ftype == GgufFileType::q4_k_m || ftype == GgufFileType::q5_k_m) && use_more_bits(layer, n_layers))
      t = GgmlType::q6_k;
  }
  // tensor_type_fallback: a row length the block does not divide.
  if (ne[0] % block(t) != 0) {
    switch (t) {
      case GgmlType::q4_k: t = GgmlType::q5_0; break;
      case GgmlType::q5_k: t = GgmlType::q5_1; break;
      case GgmlType::q6_k: t = GgmlType::q8_0; break;
      default: break;
    }
    if (ne[0] % block(t) != 0) t = GgmlType::f16;
  }
  return t;
}

void llama_permute_rows(std::vector<float>& w, int64_t rows, int64_t cols, int64_t n_heads, bool inverse) {
  COTUNE_CHECK(n_heads > 0 && rows % (2 * n_heads) == 0, "llama q/k permutation: {} rows do not split into {} heads",
               rows, n_heads);
  const int64_t head = rows / n_heads, half = head / 2;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < half; ++i) {
        const int64_t hf_row = h * head + j * half + i;  // Hugging Face (rotate_half) order
        const int64_t gg_row = h * head + 2 * i + j;     // GGUF (interleaved pairs) order
        const int64_t src = inverse ? gg_row : hf_row, dst = inverse ? hf_row : gg_row;
        std::memcpy(&out[static_cast<size_t>(dst * cols)], &w[static_cast<size_t>(src * cols)],
                    static_cast<size_t>(cols) * sizeof(float));
      }
  w.swap(out);
}

std::vector<float> llama3_rope_factors(double theta, int64_t head_dim, double factor, double low_freq_factor,
                                       double high_freq_factor, double original_max_position) {
  COTUNE_CHECK(head_dim >= 2 && head_dim % 2 == 0, "llama3 rope factors: head_dim {} must be even", head_dim);
  COTUNE_CHECK(high_freq_factor > low_freq_factor, "llama3 rope: high_freq_factor {} must exceed low_freq_factor {}",
               high_freq_factor, low_freq_factor);
  // As the converter computes them, in f32: freq_i = 1 / theta^(2i / dim), wavelen = 2 pi / freq.
  const float f = static_cast<float>(factor), lo = static_cast<float>(low_freq_factor),
              hi = static_cast<float>(high_freq_factor), old = static_cast<float>(original_max_position);
  const float low_wavelen = old / lo, high_wavelen = old / hi;
  std::vector<float> out;
  for (int64_t i = 0; i < head_dim; i += 2) {
    const float freq = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(i) / static_cast<float>(head_dim));
    const float wavelen = static_cast<float>(2.0 * 3.141592653589793) / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(f);
    } else {
      const float smooth = (old / wavelen - lo) / (hi - lo);
      out.push_back(1.0f / ((1.0f - smooth) / f + smooth));
    }
  }
  return out;
}

void add_model_metadata(GgufWriter& w, const std::string& model_dir, const formats::ModelConfig& cfg,
                        GgufFileType ftype, const std::string& name) {
  const fs::path dir(model_dir);
  const std::string arch = cfg.model_type == "llama" ? "llama" : cfg.model_type;
  if (arch != "qwen2" && arch != "llama" && arch != "qwen3")
    fail("{}: model_type {} cannot be exported to GGUF (cotune writes qwen2, qwen3 and llama)", model_dir,
         cfg.model_type);
  const json raw_cfg = read_json_if_present(dir / "config.json");
  const auto card = card_front_matter(dir / "README.md");

  w.set("general.architecture", GgufValue::str(arch));
  w.set("general.type", GgufValue::str("model"));
  const std::string folder = fs::path(model_dir).lexically_normal().filename().string().empty()
                                 ? fs::path(model_dir).lexically_normal().parent_path().filename().string()
                                 : fs::path(model_dir).lexically_normal().filename().string();
  w.set("general.name", GgufValue::str(name.empty() ? pretty_name(folder) : name));
  w.set("general.size_label", GgufValue::str(size_label(cfg.parameter_count())));
  if (auto it = card.find("license"); it != card.end() && !it->second.empty())
    w.set("general.license", GgufValue::str(it->second.front()));
  if (auto it = card.find("base_model"); it != card.end() && !it->second.empty()) {
    w.set("general.base_model.count", GgufValue::u32(static_cast<uint32_t>(it->second.size())));
    for (size_t i = 0; i < it->second.size(); ++i) {
      const std::string& id = it->second[i];
      const std::string p = "general.base_model." + std::to_string(i) + ".";
      const size_t slash = id.find('/');
      w.set(p + "name", GgufValue::str(pretty_name(slash == std::string::npos ? id : id.substr(slash + 1))));
      if (slash != std::string::npos) w.set(p + "organization", GgufValue::str(pretty_name(id.substr(0, slash))));
      w.set(p + "repo_url", GgufValue::str("https://huggingface.co/" + id));
    }
  }

  const std::string a = arch + ".";
  w.set(a + "block_count", GgufValue::u32(static_cast<uint32_t>(cfg.num_hidden_layers)));
  w.set(a + "context_length", GgufValue::u32(static_cast<uint32_t>(cfg.max_position_embeddings)));
  w.set(a + "embedding_length", GgufValue::u32(static_cast<uint32_t>(cfg.hidden_size)));
  w.set(a + "feed_forward_length", GgufValue::u32(static_cast<uint32_t>(cfg.intermediate_size)));
  w.set(a + "attention.head_count", GgufValue::u32(static_cast<uint32_t>(cfg.num_attention_heads)));
  w.set(a + "attention.head_count_kv", GgufValue::u32(static_cast<uint32_t>(cfg.num_key_value_heads)));
  // rope scaling as the converter writes it (linear / yarn); llama3-style scaling is the rope_freqs tensor that
  // export_one writes (no metadata keys).
  // transformers 4.x `rope_scaling`, 5.x `rope_parameters` (which also holds rope_theta and type "default").
  const json rs = raw_cfg.contains("rope_scaling") && raw_cfg["rope_scaling"].is_object() ? raw_cfg["rope_scaling"]
                  : raw_cfg.contains("rope_parameters")                                   ? raw_cfg["rope_parameters"]
                                                                                          : json();
  if (rs.is_object()) {
    const std::string type = rs.value("rope_type", rs.value("type", std::string()));
    const double factor = rs.value("factor", 0.0);
    if (type == "linear" && factor > 0) {
      w.set(a + "rope.scaling.type", GgufValue::str("linear"));
      w.set(a + "rope.scaling.factor", GgufValue::f32(static_cast<float>(factor)));
    } else if (type == "yarn" && factor > 0) {
      w.set(a + "rope.scaling.type", GgufValue::str("yarn"));
      w.set(a + "rope.scaling.factor", GgufValue::f32(static_cast<float>(factor)));
      w.set(a + "rope.scaling.original_context_length",
            GgufValue::u32(rs.value("original_max_position_embeddings", 0u)));
    } else if (type == "llama3") {
      if (arch != "llama")
        fail("{}/config.json: rope_scaling llama3 on a {} model cannot be exported to GGUF (llama.cpp reads "
             "rope_freqs for llama only)", model_dir, arch);
    } else if (type != "default" && !type.empty()) {
      fail("{}/config.json: rope_scaling type {} cannot be exported to GGUF yet (linear, yarn and llama3 can)",
           model_dir, type);
    }
  }
  w.set(a + "rope.freq_base", GgufValue::f32(static_cast<float>(cfg.rope_theta)));
  w.set(a + "attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(cfg.rms_norm_eps)));
  if (raw_cfg.contains("head_dim") && raw_cfg["head_dim"].is_number_integer()) {
    w.set(a + "attention.key_length", GgufValue::u32(static_cast<uint32_t>(cfg.head_dim)));
    w.set(a + "attention.value_length", GgufValue::u32(static_cast<uint32_t>(cfg.head_dim)));
  }
  w.set("general.file_type", GgufValue::u32(static_cast<uint32_t>(ftype)));
  if (arch == "llama") {
    w.set(a + "vocab_size", GgufValue::u32(static_cast<uint32_t>(cfg.vocab_size)));
    w.set(a + "rope.dimension_count", GgufValue::u32(static_cast<uint32_t>(cfg.head_dim)));
  }

  // Tokenizer: ids 0..vocab_size-1 from tokenizer.json's vocab and added tokens (missing ids as "[PADn]",
  // UNUSED), as get_vocab_base() writes them.
  const fs::path tok_path = dir / "tokenizer.json";
  if (!fs::is_regular_file(tok_path)) fail("{}: no tokenizer.json (GGUF needs the tokenizer)", model_dir);
  const json tok = read_json_if_present(tok_path);
  const text::Tokenizer tokenizer = text::Tokenizer::load(model_dir);
  if (!tok.contains("model") || tok["model"].value("type", std::string()) != "BPE")
    fail("{}: only byte-level BPE tokenizers are exported to GGUF", tok_path.string());
  const int64_t n_vocab = std::max<int64_t>(cfg.vocab_size, tokenizer.vocab_size());
  std::vector<std::string> tokens(static_cast<size_t>(n_vocab));
  std::vector<int32_t> types(static_cast<size_t>(n_vocab), 0);
  for (const auto& [text, id] : tok["model"]["vocab"].items()) {
    const int64_t i = id.get<int64_t>();
    if (i < 0 || i >= n_vocab) fail("{}: token {} has id {} outside the vocabulary of {}", tok_path.string(), text, i, n_vocab);
    tokens[static_cast<size_t>(i)] = text;
    types[static_cast<size_t>(i)] = 1;  // NORMAL
  }
  if (tok.contains("added_tokens"))
    for (const auto& at : tok["added_tokens"]) {
      const int64_t i = at.value("id", int64_t{-1});
      if (i < 0 || i >= n_vocab) continue;
      const std::string content = at.value("content", std::string());
      const bool looks_special = (content.rfind("<|", 0) == 0 && ends_with(content, "|>")) ||
                                 (content.rfind("<｜", 0) == 0 && ends_with(content, "｜>"));
      tokens[static_cast<size_t>(i)] = content;
      types[static_cast<size_t>(i)] = at.value("special", false) || looks_special ? 3 : 4;  // CONTROL : USER_DEFINED
    }
  for (int64_t i = 0; i < n_vocab; ++i)
    if (types[static_cast<size_t>(i)] == 0) {
      tokens[static_cast<size_t>(i)] = "[PAD" + std::to_string(i) + "]";
      types[static_cast<size_t>(i)] = 5;  // UNUSED
    }
  std::vector<std::string> merges;
  for (const auto& m : tok["model"]["merges"]) {
    if (m.is_string()) {
      merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2) {
      // Pair form: spaces inside a part would be ambiguous; the converter writes them as U+0120.
      auto part = [](std::string s) {
        std::string o;
        for (char c : s) o += c == ' ' ? std::string("\xC4\xA0") : std::string(1, c);
        return o;
      };
      merges.push_back(part(m[0].get<std::string>()) + " " + part(m[1].get<std::string>()));
    }
  }
  w.set("tokenizer.ggml.model", GgufValue::str("gpt2"));
  w.set("tokenizer.ggml.pre", GgufValue::str(pre_tokenizer_name(cfg, tok)));
  w.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
  w.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
  w.set("tokenizer.ggml.merges", GgufValue::string_array(merges));
  if (tokenizer.bos_id() >= 0) w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(tokenizer.bos_id())));
  if (tokenizer.eos_id() >= 0) w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(tokenizer.eos_id())));
  if (tokenizer.pad_id() >= 0)
    w.set("tokenizer.ggml.padding_token_id", GgufValue::u32(static_cast<uint32_t>(tokenizer.pad_id())));
  const json tcfg = read_json_if_present(dir / "tokenizer_config.json");
  w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(tokenizer.add_bos_token()));
  if (tcfg.contains("add_eos_token") && tcfg["add_eos_token"].is_boolean())
    w.set("tokenizer.ggml.add_eos_token", GgufValue::boolean(tcfg["add_eos_token"].get<bool>()));
  std::string chat_template;
  if (tcfg.contains("chat_template") && tcfg["chat_template"].is_string()) {
    chat_template = tcfg["chat_template"].get<std::string>();
  } else if (fs::is_regular_file(dir / "chat_template.jinja")) {
    chat_template = read_file((dir / "chat_template.jinja").string());
  }
  if (!chat_template.empty()) w.set("tokenizer.chat_template", GgufValue::str(chat_template));
  w.set("general.quantization_version", GgufValue::u32(2));
}

namespace {

struct PlannedTensor {
  std::string gguf_name;
  const formats::TensorEntry* entry;
  GgmlType type;
  std::vector<int64_t> ne;
  int64_t permute_heads = 0;  // Llama q/k: heads of the permutation (0 = none)
};

std::string output_path_for(const GgufExportOptions& o, GgufFileType t, const std::string& name_stem) {
  const std::string label = gguf_file_type_label(t);
  const bool is_dir = fs::is_directory(o.output) || (!o.output.empty() && o.output.back() == '/') ||
                      !ends_with(o.output, ".gguf");
  if (is_dir) return (fs::path(o.output) / (name_stem + "-" + label + ".gguf")).string();
  if (o.types.size() == 1) return o.output;
  return o.output.substr(0, o.output.size() - 5) + "-" + label + ".gguf";
}

GgufExportResult export_one(const std::string& model_dir, const formats::ModelConfig& cfg,
                            const formats::Checkpoint& ckpt, GgufFileType ftype, const std::string& path,
                            const std::string& name) {
  GgufWriter w;
  add_model_metadata(w, model_dir, cfg, ftype, name);
  const bool tied = ckpt.find("lm_head.weight") == nullptr || cfg.tie_word_embeddings;
  std::vector<PlannedTensor> plan;
  for (const std::string& hf : ckpt.names()) {
    if (hf == "lm_head.weight" && cfg.tie_word_embeddings) continue;  // a tied model's duplicate
    if (ends_with(hf, "rotary_emb.inv_freq")) continue;
    const formats::TensorEntry& e = ckpt.get(hf);
    PlannedTensor p;
    p.gguf_name = gguf_tensor_name(hf);
    p.entry = &e;
    p.ne.assign(e.shape.rbegin(), e.shape.rend());
    p.type = gguf_tensor_type(ftype, p.gguf_name, p.ne, layer_of(p.gguf_name), static_cast<int>(cfg.num_hidden_layers),
                              tied);
    if (cfg.model_type == "llama") {
      if (ends_with(p.gguf_name, "attn_q.weight")) p.permute_heads = cfg.num_attention_heads;
      if (ends_with(p.gguf_name, "attn_k.weight")) p.permute_heads = cfg.num_key_value_heads;
    }
    plan.push_back(std::move(p));
  }
  std::sort(plan.begin(), plan.end(),
            [](const PlannedTensor& a, const PlannedTensor& b) { return gguf_tensor_order(a.gguf_name, b.gguf_name); });
  GgufExportResult r;
  r.path = path;
  r.type = ftype;
  if (cfg.rope_type == "llama3") {
    // First, as the converter writes its generated tensors before the checkpoint's.
    const std::vector<float> factors =
        llama3_rope_factors(cfg.rope_theta, cfg.head_dim, cfg.rope_factor, cfg.rope_low_freq_factor,
                            cfg.rope_high_freq_factor, static_cast<double>(cfg.rope_original_max_position_embeddings));
    ++r.tensor_types[kernels::ggml_type_name(GgmlType::f32)];
    w.add_tensor("rope_freqs.weight", GgmlType::f32, {static_cast<int64_t>(factors.size())},
                 [factors](std::vector<uint8_t>& out) {
                   out.resize(factors.size() * sizeof(float));
                   std::memcpy(out.data(), factors.data(), out.size());
                 });
  }
  for (const auto& p : plan) {
    ++r.tensor_types[kernels::ggml_type_name(p.type)];
    w.add_tensor(p.gguf_name, p.type, p.ne, [p](std::vector<uint8_t>& out) {
      std::vector<float> x = tensor_to_f32(*p.entry);
      if (p.permute_heads > 0) llama_permute_rows(x, p.entry->shape[0], p.entry->shape[1], p.permute_heads, false);
      const int64_t n = static_cast<int64_t>(x.size());
      out.resize(static_cast<size_t>(kernels::ggml_bytes(p.type, n)));
      kernels::ggml_quantize(p.type, x.data(), out.data(), n);
    });
  }
  w.write(path);
  r.bytes = fs::file_size(path);
  return r;
}

}  // namespace

std::vector<GgufExportResult> export_gguf(const GgufExportOptions& o) {
  COTUNE_CHECK(!o.types.empty(), "export gguf: no --type given");
  COTUNE_CHECK(!o.output.empty(), "export gguf: no output path (-o) given");
  std::string model_dir = o.model_dir;
  std::string merged_tmp;
  if (!o.adapter_dir.empty()) {
    // The adapter is merged into a 16-bit folder first (exporting::merge_lora), removed at the end.
    const fs::path base = fs::is_directory(o.output) || !ends_with(o.output, ".gguf") ? fs::path(o.output)
                                                                                       : fs::path(o.output).parent_path();
    fs::create_directories(base.empty() ? fs::path(".") : base);
    merged_tmp = ((base.empty() ? fs::path(".") : base) / (".merged-for-gguf-" + std::to_string(getpid()))).string();
    log::info("merging adapter {} into {} before the GGUF export", o.adapter_dir, o.model_dir);
    merge_lora(o.model_dir, o.adapter_dir, merged_tmp);
    model_dir = merged_tmp;
  }
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      if (!dir.empty()) {
        std::error_code ec;
        fs::remove_all(dir, ec);
      }
    }
  } cleanup{merged_tmp};

  const formats::ModelConfig cfg = formats::load_model_config(model_dir);
  const formats::Checkpoint ckpt = formats::Checkpoint::open(model_dir);
  std::string stem = o.file_stem.empty() ? fs::path(o.model_dir).lexically_normal().filename().string() : o.file_stem;
  if (stem.empty()) stem = fs::path(o.model_dir).lexically_normal().parent_path().filename().string();
  std::vector<GgufExportResult> results;
  for (GgufFileType t : o.types) {
    const std::string path = output_path_for(o, t, stem);
    log::info("writing {} ({})", path, gguf_file_type_label(t));
    GgufExportResult r = export_one(model_dir, cfg, ckpt, t, path, o.name);
    if (o.write_modelfile) {
      const fs::path mf = fs::path(path).parent_path() /
                          (o.types.size() == 1 || t == o.types.front() ? std::string("Modelfile")
                                                                        : "Modelfile." + gguf_file_type_label(t));
      write_file_atomic(mf.string(), ollama_modelfile(model_dir, fs::path(path).filename().string()));
      r.modelfile = mf.string();
    }
    results.push_back(std::move(r));
  }
  return results;
}

GgufLoraResult export_gguf_lora(const std::string& adapter_dir, const std::string& model_dir,
                                const std::string& output) {
  const formats::PeftAdapterConfig acfg = formats::load_peft_adapter_config(adapter_dir);
  const formats::ModelConfig cfg = formats::load_model_config(model_dir);
  const fs::path weights = fs::path(adapter_dir) / "adapter_model.safetensors";
  const formats::SafetensorsFile st = formats::SafetensorsFile::open(weights.string());
  GgufWriter w;
  const std::string arch = cfg.model_type;
  w.set("general.architecture", GgufValue::str(arch));
  w.set("general.type", GgufValue::str("adapter"));
  w.set("adapter.type", GgufValue::str("lora"));
  GgufLoraResult r;
  r.path = output;
  // llama.cpp scales a LoRA by alpha / r; rsLoRA's alpha / sqrt(r) is the same scale with alpha * sqrt(r).
  r.alpha = static_cast<float>(acfg.use_rslora ? acfg.lora_alpha * std::sqrt(static_cast<double>(acfg.r))
                                               : acfg.lora_alpha);
  w.set("adapter.lora.alpha", GgufValue::f32(r.alpha));
  w.set("general.name", GgufValue::str(fs::path(adapter_dir).lexically_normal().filename().string()));
  w.set("general.file_type", GgufValue::u32(0));
  w.set("general.quantization_version", GgufValue::u32(2));

  struct Pair {
    const formats::TensorEntry* a = nullptr;
    const formats::TensorEntry* b = nullptr;
  };
  std::map<std::string, Pair, decltype(&gguf_tensor_order)> pairs(&gguf_tensor_order);
  const std::string prefix = "base_model.model.";
  for (const auto& e : st.tensors()) {
    std::string n = e.name;
    if (n.rfind(prefix, 0) == 0) n = n.substr(prefix.size());
    const bool is_a = n.find(".lora_A.") != std::string::npos, is_b = n.find(".lora_B.") != std::string::npos;
    if (!is_a && !is_b) fail("{}: tensor {} is not a LoRA A/B matrix (only LoRA adapters convert to GGUF)", weights.string(), e.name);
    const std::string base = n.substr(0, n.find(is_a ? ".lora_A." : ".lora_B.")) + ".weight";
    const std::string g = gguf_tensor_name(base);
    (is_a ? pairs[g].a : pairs[g].b) = &e;
  }
  for (const auto& [g, p] : pairs) {
    if (!p.a || !p.b) fail("{}: {} has only one of lora_A / lora_B", weights.string(), g);
    if (p.a->shape.size() != 2 || p.b->shape.size() != 2 || p.a->shape[0] != p.b->shape[1])
      fail("{}: {}: lora_A {} and lora_B {} shapes do not chain", weights.string(), g, p.a->shape.size(), p.b->shape.size());
    int64_t heads = 0;
    if (cfg.model_type == "llama" && ends_with(g, "attn_q.weight")) heads = cfg.num_attention_heads;
    if (cfg.model_type == "llama" && ends_with(g, "attn_k.weight")) heads = cfg.num_key_value_heads;
    const std::string stem = g.substr(0, g.size() - std::string(".weight").size()) + ".weight";
    const formats::TensorEntry* a = p.a;
    const formats::TensorEntry* b = p.b;
    w.add_tensor(stem + ".lora_a", GgmlType::f32, {a->shape[1], a->shape[0]}, [a](std::vector<uint8_t>& out) {
      std::vector<float> x = tensor_to_f32(*a);
      out.resize(x.size() * 4);
      std::memcpy(out.data(), x.data(), out.size());
    });
    w.add_tensor(stem + ".lora_b", GgmlType::f32, {b->shape[1], b->shape[0]}, [b, heads](std::vector<uint8_t>& out) {
      std::vector<float> x = tensor_to_f32(*b);
      if (heads > 0) llama_permute_rows(x, b->shape[0], b->shape[1], heads, false);
      out.resize(x.size() * 4);
      std::memcpy(out.data(), x.data(), out.size());
    });
    r.tensors += 2;
  }
  if (r.tensors == 0) fail("{}: no LoRA tensors", weights.string());
  w.write(output);
  return r;
}

}  // namespace cotune::exporting
