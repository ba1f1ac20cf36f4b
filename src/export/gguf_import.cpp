#include "export/gguf_import.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/mmap.h"
#include "export/gguf_export.h"
#include "formats/gguf.h"
#include "formats/model_config.h"
#include "formats/safetensors.h"
#include "kernels/ggml_quants.h"

namespace cotune::exporting {
namespace {

namespace fs = std::filesystem;
using formats::GgufFile;
using json = nlohmann::json;

// llama.cpp's token types.
constexpr int64_t kNormal = 1, kControl = 3, kUserDefined = 4;

const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

json split_step(const std::string& pattern) {
  return {{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}};
}
json byte_level(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", use_regex}};
}

std::string architecture_class(const std::string& arch) {
  if (arch == "qwen2") return "Qwen2ForCausalLM";
  if (arch == "qwen3") return "Qwen3ForCausalLM";
  return "LlamaForCausalLM";
}

// GGUF stores these hyperparameters as float32: written back as the shortest decimal that is the same float32
// (1e-06, as the source config.json had it, not 9.999999974752427e-07), so the rebuilt config.json reads like
// the original and holds the same value once the model converts it to float.
double f32_decimal(double v) { return std::stod(fmt::format("{}", static_cast<float>(v))); }

// config.json text from the GGUF metadata.
std::string config_json(const GgufFile& g, int64_t n_vocab, int64_t bos, int64_t eos) {
  const std::string arch = g.get_string("general.architecture");
  if (arch != "qwen2" && arch != "llama" && arch != "qwen3")
    fail("{}: architecture {} cannot be imported (cotune reads qwen2, qwen3 and llama GGUFs)", g.path(), arch);
  const std::string a = arch + ".";
  formats::ModelConfig c;
  c.model_type = arch;
  c.architecture = architecture_class(arch);
  c.vocab_size = g.get_int_or(a + "vocab_size", n_vocab);
  c.hidden_size = g.get_int(a + "embedding_length");
  c.intermediate_size = g.get_int(a + "feed_forward_length");
  c.num_hidden_layers = g.get_int(a + "block_count");
  c.num_attention_heads = g.get_int(a + "attention.head_count");
  c.num_key_value_heads = g.get_int_or(a + "attention.head_count_kv", c.num_attention_heads);
  c.head_dim = g.get_int_or(a + "attention.key_length", c.hidden_size / c.num_attention_heads);
  c.max_position_embeddings = g.get_int_or(a + "context_length", 4096);
  c.rms_norm_eps = f32_decimal(g.get_float(a + "attention.layer_norm_rms_epsilon"));
  c.rope_theta = f32_decimal(g.get_float_or(a + "rope.freq_base", 10000.0));
  c.tie_word_embeddings = g.find("output.weight") == nullptr;
  c.attention_bias = g.find("blk.0.attn_q.bias") != nullptr;
  c.torch_dtype = "float32";
  c.bos_token_id = bos;
  c.eos_token_id = eos;
  c.sliding_window = 0;
  json j = json::parse(formats::model_config_to_json(c));
  if (arch == "qwen2") j["sliding_window"] = nullptr;
  const std::string scaling = g.get_string_or(a + "rope.scaling.type", "none");
  if (scaling == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", f32_decimal(g.get_float(a + "rope.scaling.factor"))}};
  } else if (scaling == "yarn") {
    j["rope_scaling"] = {{"rope_type", "yarn"},
                         {"factor", f32_decimal(g.get_float(a + "rope.scaling.factor"))},
                         {"original_max_position_embeddings", g.get_int(a + "rope.scaling.original_context_length")}};
  } else if (scaling != "none") {
    fail("{}: {}rope.scaling.type {} is not supported", g.path(), a, scaling);
  }
  if (const formats::GgufTensorInfo* rf = g.find("rope_freqs.weight")) {
    // llama3 rope scaling: llama.cpp's converter writes its per-frequency divisors, not the parameters. The
    // parameters are those that reproduce the tensor: factor is its largest divisor (the low frequencies), and
    // every Llama 3.x release uses low / high frequency factors 1 / 4 over 8192 original positions.
    if (arch != "llama") fail("{}: tensor rope_freqs.weight in a {} model: llama.cpp reads it for llama only", g.path(), arch);
    if (rf->type != kernels::GgmlType::f32 || rf->numel() != c.head_dim / 2)
      fail("{}: tensor rope_freqs.weight must be F32 of head_dim / 2 = {} values, it is {} of {}", g.path(),
           c.head_dim / 2, kernels::ggml_type_name(rf->type), rf->numel());
    std::vector<float> got(static_cast<size_t>(rf->numel()));
    std::memcpy(got.data(), rf->data, got.size() * sizeof(float));
    const float factor = *std::max_element(got.begin(), got.end());
    struct Setting {
      double low, high, original;
    };
    // Candidates for the original context: 8192 (every Llama 3.x release), the value each blended divisor implies
    // (s = (1/d - 1/f) / (1 - 1/f), original = (low + s (high - low)) * wavelen), then powers of two.
    std::vector<Setting> tries = {{1.0, 4.0, 8192.0}};
    for (size_t i = 0; i < got.size(); ++i) {
      const double d = got[i];
      if (!(d > 1.0 && d < factor) || factor <= 1.0f) continue;
      const double sm = (1.0 / d - 1.0 / factor) / (1.0 - 1.0 / factor);
      const double wavelen = 2.0 * 3.141592653589793 * std::pow(c.rope_theta, 2.0 * static_cast<double>(i) / c.head_dim);
      tries.push_back({1.0, 4.0, std::round((1.0 + sm * 3.0) * wavelen)});
    }
    for (double o = 256; o <= 1048576; o *= 2) tries.push_back({1.0, 4.0, o});
    bool matched = false;
    for (const Setting st : tries) {
      const std::vector<float> want =
          llama3_rope_factors(c.rope_theta, c.head_dim, factor, st.low, st.high, st.original);
      bool same = true;
      for (size_t i = 0; i < want.size() && same; ++i)
        same = std::fabs(want[i] - got[i]) <= 1e-5f * std::max(1.0f, std::fabs(got[i]));
      if (!same) continue;
      j["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", f32_decimal(factor)},
                           {"low_freq_factor", st.low},
                           {"high_freq_factor", st.high},
                           {"original_max_position_embeddings", static_cast<int64_t>(st.original)}};
      matched = true;
      break;
    }
    if (!matched)
      fail("{}: tensor rope_freqs.weight holds divisors no llama3 setting reproduces (tried factor {} with low / high "
           "frequency factors 1 / 4 over the original contexts they imply, 8192 and powers of two)", g.path(), factor);
  }
  return j.dump(2) + "\n";
}

struct TokenizerFiles {
  std::string tokenizer_json, tokenizer_config_json;
  int64_t bos = -1, eos = -1;
};

TokenizerFiles tokenizer_files(const GgufFile& g) {
  const std::string model = g.get_string("tokenizer.ggml.model");
  if (model != "gpt2")
    fail("{}: tokenizer.ggml.model is {}, cotune imports byte-level BPE (gpt2) tokenizers", g.path(), model);
  const std::vector<std::string> tokens = g.get_string_array("tokenizer.ggml.tokens");
  std::vector<int64_t> types = g.has("tokenizer.ggml.token_type") ? g.get_int_array("tokenizer.ggml.token_type")
                                                                  : std::vector<int64_t>(tokens.size(), kNormal);
  if (types.size() != tokens.size())
    fail("{}: tokenizer.ggml.token_type has {} entries, tokenizer.ggml.tokens {}", g.path(), types.size(), tokens.size());
  const std::vector<std::string> merges = g.get_string_array("tokenizer.ggml.merges");
  const std::string pre = g.get_string_or("tokenizer.ggml.pre", "default");

  json vocab = json::object();
  json added = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (types[i] == kControl || types[i] == kUserDefined) {
      // Also in the model's vocab (as most tokenizer.json files have them): tools that read `vocab` alone
      // (convert_hf_to_gguf.py via transformers) then see every id.
      vocab[tokens[i]] = i;
      added.push_back({{"id", i},
                       {"content", tokens[i]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", types[i] == kControl}});
    } else if (types[i] == kNormal) {
      vocab[tokens[i]] = i;
    }
  }
  json pre_tok;
  json normalizer = nullptr;
  if (pre == "qwen2" || pre == "deepseek-r1-qwen") {
    pre_tok = {{"type", "Sequence"}, {"pretokenizers", {split_step(kQwen2Pattern), byte_level(false)}}};
    normalizer = {{"type", "NFC"}};
  } else if (pre == "llama-bpe" || pre == "llama3") {
    pre_tok = {{"type", "Sequence"}, {"pretokenizers", {split_step(kLlama3Pattern), byte_level(false)}}};
  } else if (pre == "smollm") {
    // SmolLM's Digits(individual_digits) is a Split on each digit, isolated.
    pre_tok = {{"type", "Sequence"}, {"pretokenizers", {split_step(R"(\p{N})"), byte_level(true)}}};
  } else if (pre == "gpt-2" || pre == "gpt2" || pre == "default") {
    pre_tok = byte_level(true);
  } else {
    fail("{}: tokenizer.ggml.pre {} is not supported (cotune knows qwen2, llama-bpe, smollm, gpt-2)", g.path(), pre);
  }

  const int64_t bos = g.get_int_or("tokenizer.ggml.bos_token_id", -1);
  const int64_t eos = g.get_int_or("tokenizer.ggml.eos_token_id", -1);
  const int64_t pad = g.get_int_or("tokenizer.ggml.padding_token_id", -1);
  const auto text_of = [&](int64_t id) -> json {
    if (id < 0) return nullptr;
    if (id >= static_cast<int64_t>(tokens.size()))
      fail("{}: special token id {} is outside the {} tokens", g.path(), id, tokens.size());
    return tokens[static_cast<size_t>(id)];
  };
  // llama.cpp's default for gpt2-type vocabularies: no BOS unless the file says so.
  const bool add_bos = g.get_bool_or("tokenizer.ggml.add_bos_token", false);
  const bool add_eos = g.get_bool_or("tokenizer.ggml.add_eos_token", false);
  json post = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  if ((add_bos && bos >= 0) || (add_eos && eos >= 0)) {
    json single = json::array(), pair = json::array(), special = json::object();
    auto special_token = [&](int64_t id, int type_id) {
      const std::string t = tokens[static_cast<size_t>(id)];
      special[t] = {{"id", t}, {"ids", {id}}, {"tokens", {t}}};
      return json{{"SpecialToken", {{"id", t}, {"type_id", type_id}}}};
    };
    if (add_bos && bos >= 0) single.push_back(special_token(bos, 0)), pair.push_back(special_token(bos, 0));
    single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    pair.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    if (add_eos && eos >= 0) single.push_back(special_token(eos, 0)), pair.push_back(special_token(eos, 0));
    if (add_bos && bos >= 0) pair.push_back(special_token(bos, 1));
    pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
    if (add_eos && eos >= 0) pair.push_back(special_token(eos, 1));
    post = {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", special}};
  }
  json tok = {{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", added},
              {"normalizer", normalizer},
              {"pre_tokenizer", pre_tok},
              {"post_processor", post},
              {"decoder", byte_level(false)},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", ""},
                {"end_of_word_suffix", ""},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", merges}}}};
  json cfg = {{"add_bos_token", add_bos},
              {"add_eos_token", add_eos},
              {"bos_token", text_of(bos)},
              {"eos_token", text_of(eos)},
              {"pad_token", text_of(pad)},
              {"clean_up_tokenization_spaces", false},
              {"model_max_length", g.get_int_or(g.get_string("general.architecture") + ".context_length", 4096)},
              {"tokenizer_class", "PreTrainedTokenizerFast"}};
  if (g.has("tokenizer.chat_template")) cfg["chat_template"] = g.get_string("tokenizer.chat_template");
  TokenizerFiles f;
  f.tokenizer_json = tok.dump(1);
  f.tokenizer_config_json = cfg.dump(2) + "\n";
  f.bos = bos;
  f.eos = eos;
  return f;
}

// Streams model.safetensors: every tensor dequantized to F32, in the safetensors writer's order (by name for
// one dtype), one tensor in memory at a time.
void write_safetensors(const GgufFile& g, const std::string& path) {
  const std::string arch = g.get_string("general.architecture");
  const int64_t n_head = g.get_int(arch + ".attention.head_count");
  const int64_t n_head_kv = g.get_int_or(arch + ".attention.head_count_kv", n_head);
  struct Item {
    std::string hf;
    const formats::GgufTensorInfo* t;
  };
  std::vector<Item> items;
  for (const auto& t : g.tensors()) {
    if (t.name == "rope_freqs.weight") continue;  // llama3 rope scaling: config.json's rope_scaling (config_json)
    const std::string hf = hf_tensor_name(t.name);
    if (hf.empty())
      fail("{}: tensor '{}' ({}, offset {}) has no Hugging Face counterpart cotune knows", g.path(), t.name,
           kernels::ggml_type_name(t.type), t.offset);
    if (!kernels::ggml_can_dequantize(t.type))
      fail("{}: tensor '{}' has type {} (offset {}), which cotune cannot dequantize", g.path(), t.name,
           kernels::ggml_type_name(t.type), t.offset);
    items.push_back({hf, &t});
  }
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.hf < b.hf; });
  // Header as the safetensors writer lays it out for one dtype: tensors by name, then padded with spaces to 8.
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& it : items) {
    const uint64_t bytes = static_cast<uint64_t>(it.t->numel()) * 4;
    header[it.hf] = {{"dtype", "F32"}, {"shape", it.t->shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  header["__metadata__"] = {{"format", "pt"}};
  std::string header_text = header.dump();
  while (header_text.size() % 8) header_text.push_back(' ');
  const std::string& header_ref = header_text;
  const std::string tmp = path + ".tmp-" + std::to_string(getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("{}: cannot create: {}", tmp, std::strerror(errno));
  try {
    const uint64_t n = header_ref.size();
    auto put = [&](const void* p, size_t bytes) {
      if (std::fwrite(p, 1, bytes, f) != bytes) fail("{}: write failed: {}", tmp, std::strerror(errno));
    };
    put(&n, 8);
    put(header_ref.data(), header_ref.size());
    std::vector<float> buf;
    for (const auto& it : items) {
      const auto& t = *it.t;
      buf.resize(static_cast<size_t>(t.numel()));
      with_context(fmt::format("{}: tensor '{}' ({}, offset {})", g.path(), t.name, kernels::ggml_type_name(t.type),
                               t.offset),
                   [&] { kernels::ggml_dequantize(t.type, t.data, buf.data(), t.numel()); });
      if (arch == "llama" && t.ne.size() == 2) {
        const bool q = t.name.find("attn_q.weight") != std::string::npos;
        const bool k = t.name.find("attn_k.weight") != std::string::npos;
        if (q || k) llama_permute_rows(buf, t.ne[1], t.ne[0], q ? n_head : n_head_kv, true);
      }
      put(buf.data(), buf.size() * 4);
    }
    if (std::fflush(f) != 0 || ::fsync(fileno(f)) != 0) fail("{}: write failed: {}", tmp, std::strerror(errno));
    std::fclose(f);
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  fs::rename(tmp, path);
}

}  // namespace

bool is_gguf_model(const std::string& spec) {
  std::error_code ec;
  const fs::path p(spec);
  if (fs::is_regular_file(p, ec)) return p.extension() == ".gguf";
  if (!fs::is_directory(p, ec) || fs::exists(p / "config.json", ec)) return false;
  for (const auto& e : fs::directory_iterator(p, ec))
    if (e.is_regular_file() && e.path().extension() == ".gguf") return true;
  return false;
}

std::string gguf_file_of(const std::string& spec) {
  const fs::path p(spec);
  if (fs::is_regular_file(p)) return p.string();
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(p))
    if (e.is_regular_file() && e.path().extension() == ".gguf") found.push_back(e.path());
  if (found.empty()) fail("{}: no .gguf file in the folder", spec);
  if (found.size() > 1) {
    std::sort(found.begin(), found.end());
    std::string names;
    for (const auto& f : found) names += (names.empty() ? "" : ", ") + f.filename().string();
    fail("{}: several .gguf files ({}); name one", spec, names);
  }
  return found.front().string();
}

void convert_gguf_to_hf(const std::string& gguf_path, const std::string& out_dir) {
  const GgufFile g = GgufFile::open(gguf_path);
  const std::string type = g.get_string_or("general.type", "model");
  if (type != "model") fail("{}: general.type is {} (a LoRA adapter?), expected a model", gguf_path, type);
  const TokenizerFiles tok = tokenizer_files(g);
  const int64_t n_vocab = static_cast<int64_t>(g.get_string_array("tokenizer.ggml.tokens").size());
  const std::string config = config_json(g, n_vocab, tok.bos, tok.eos);
  const std::string tmp = fresh_temp_dir_for(out_dir);
  try {
    write_file_atomic(tmp + "/config.json", config);
    write_file_atomic(tmp + "/tokenizer.json", tok.tokenizer_json);
    write_file_atomic(tmp + "/tokenizer_config.json", tok.tokenizer_config_json);
    json gen = {{"do_sample", false}};
    if (tok.bos >= 0) gen["bos_token_id"] = tok.bos;
    if (tok.eos >= 0) gen["eos_token_id"] = tok.eos;
    write_file_atomic(tmp + "/generation_config.json", gen.dump(2) + "\n");
    write_safetensors(g, tmp + "/model.safetensors");
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  replace_directory(tmp, out_dir, kModelFolder);
}

std::string gguf_model_dir(const std::string& spec) {
  const std::string file = fs::absolute(gguf_file_of(spec)).lexically_normal().string();
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) fail("{}: cannot stat: {}", file, std::strerror(errno));
  fs::path cache;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) cache = x;
  else if (const char* h = std::getenv("HOME"); h && *h) cache = fs::path(h) / ".cache";
  else cache = fs::temp_directory_path();
  const std::string key = file + "|" + std::to_string(st.st_size) + "|" + std::to_string(st.st_mtime);
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016zx", std::hash<std::string>{}(key));
  const fs::path dir = cache / "cotune" / "gguf" / (fs::path(file).stem().string() + "-" + hash);
  if (fs::is_regular_file(dir / "model.safetensors") && fs::is_regular_file(dir / "config.json")) return dir.string();
  fs::create_directories(dir.parent_path());
  log::info("converting {} to a model folder in {} (once; dequantized to F32)", file, dir.string());
  convert_gguf_to_hf(file, dir.string());
  return dir.string();
}

}  // namespace cotune::exporting
