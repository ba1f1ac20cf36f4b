#include "formats/model_config.h"

#include <gtest/gtest.h>

#include "base/error.h"
#include "base/mmap.h"
#include "common/test_paths.h"
#include "formats/temp_dir.h"

namespace cotune::formats {
namespace {

template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\n  lacks: " << p;
  }
}

// A small Qwen2 config in transformers 4.x spelling; tests patch single fields into it.
const char* kQwen2 = R"({
  "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
  "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
  "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "tie_word_embeddings": true, "hidden_act": "silu",
  "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2, "sliding_window": 4096,
  "use_sliding_window": false})";

// kQwen2 with `key` replaced (or added) by the JSON `value`; value "" removes the key.
// `base` with field `key` set to `value` (JSON text; empty: removed).
std::string patched_in(std::string s, const std::string& key, const std::string& value) {
  const std::string k = "\"" + key + "\":";
  size_t at = s.find(k);
  if (at != std::string::npos) {
    size_t end = at + k.size();
    int depth = 0;
    for (; end < s.size(); ++end) {
      char ch = s[end];
      if (ch == '[' || ch == '{') ++depth;
      if (ch == ']' || ch == '}') {
        if (depth == 0) break;
        --depth;
      }
      if (ch == ',' && depth == 0) break;
    }
    if (value.empty()) {
      if (s[end] == ',') ++end;
      s.erase(at, end - at);
      if (s[end - (end - at) - 1] == ' ') {}
    } else {
      s.replace(at, end - at, k + " " + value);
    }
  } else if (!value.empty()) {
    s.insert(s.size() - 1, ", " + k + " " + value);
  }
  // Removing the last key can leave ", }".
  for (size_t p; (p = s.find(",}")) != std::string::npos;) s.erase(p, 1);
  return s;
}

std::string patched(const std::string& key, const std::string& value) { return patched_in(kQwen2, key, value); }

ModelConfig parse(const std::string& text) { return parse_model_config(text, "test/config.json"); }

TEST(ModelConfig, RealDeepSeekR1DistillConfig) {
  COTUNE_REQUIRE_FIXTURES(fixtures);
  ModelConfig c = load_model_config(fixtures + "/deepseek-r1-distill-qwen-1.5b");
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_EQ(c.architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.hidden_size, 1536);
  EXPECT_EQ(c.intermediate_size, 8960);
  EXPECT_EQ(c.num_hidden_layers, 28);
  EXPECT_EQ(c.num_attention_heads, 12);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.rope_theta, 10000.0);  // written as the integer 10000
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_FALSE(c.use_sliding_window);
  EXPECT_EQ(c.eos_token_id, 151643);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  // Tensor by tensor (see the brief): embed + 28 x (q,k,v with bias, o, gate, up, down, 2 norms) + norm + lm_head.
  EXPECT_EQ(c.parameter_count(), 1'777'088'000);
  EXPECT_EQ(c.linear_parameter_count(),
            28 * (2 * 1536 * 1536 + 2 * 256 * 1536 + 3 * 1536 * 8960) + int64_t{151936} * 1536);
  // Same file given directly.
  EXPECT_EQ(load_model_config(fixtures + "/deepseek-r1-distill-qwen-1.5b/config.json").hidden_size, 1536);
}

TEST(ModelConfig, Transformers5Spellings) {
  std::string s = patched("rope_theta", "");
  s = patched("torch_dtype", "");
  std::string v5 = R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 1000,
    "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "dtype": "float32", "eos_token_id": [7, 8], "head_dim": null,
    "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}, "sliding_window": null,
    "rope_scaling": null})";
  ModelConfig c = parse(v5);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.torch_dtype, "float32");
  EXPECT_EQ(c.eos_token_id, 7);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.max_position_embeddings, 32768);  // Qwen2Config's default
  EXPECT_FALSE(c.tie_word_embeddings);
}

// Files written by the installed transformers (5.x) via tools/make_formats_golden.py.
TEST(ModelConfig, GoldenTransformers5Files) {
  ModelConfig q = load_model_config(testing::golden_dir() + "/formats/qwen2_config_tf5.json");
  EXPECT_EQ(q.architecture, "Qwen2ForCausalLM");  // no "architectures" key: implied by model_type
  EXPECT_EQ(q.rope_theta, 1e6);
  EXPECT_EQ(q.eos_token_id, 7);
  EXPECT_EQ(q.bos_token_id, -1);  // null
  EXPECT_EQ(q.sliding_window, 0);  // null
  EXPECT_TRUE(q.tie_word_embeddings);
  EXPECT_TRUE(q.attention_bias);
  EXPECT_EQ(q.head_dim, 16);
  ModelConfig l = load_model_config(testing::golden_dir() + "/formats/llama_config_tf5.json");
  EXPECT_EQ(l.model_type, "llama");
  EXPECT_TRUE(l.attention_bias);
  EXPECT_EQ(l.num_key_value_heads, 2);
  EXPECT_EQ(l.head_dim, 8);
  EXPECT_EQ(l.rope_theta, 10000.0);
  EXPECT_EQ(l.max_position_embeddings, 2048);
}

TEST(ModelConfig, LlamaFlags) {
  std::string s = R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 500,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 8,
    "head_dim": 16, "attention_bias": false, "rope_scaling": {"rope_type": "default"}})";
  ModelConfig c = parse(s);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 16);  // explicit and unlike hidden/heads = 8
  EXPECT_EQ(c.max_position_embeddings, 2048);
  const int64_t layer = 4 * 64 * 128 + 3 * 64 * 128 + 2 * 64;  // q,k,v,o + gate,up,down + 2 norms
  EXPECT_EQ(c.parameter_count(), 500 * 64 * 2 + layer + 64);
  std::string biased = s;
  biased.replace(biased.find("\"attention_bias\": false"), 23, "\"attention_bias\": true ");
  EXPECT_TRUE(parse(biased).attention_bias);
  EXPECT_EQ(parse(biased).parameter_count(), c.parameter_count() + 3 * 128 + 64);  // q,k,v,o biases
}

TEST(ModelConfig, RoundTripsThroughJson) {
  ModelConfig c = parse(kQwen2);
  std::string text = model_config_to_json(c);
  ModelConfig d = parse_model_config(text, "written");
  EXPECT_EQ(d.model_type, c.model_type);
  EXPECT_EQ(d.architecture, c.architecture);
  EXPECT_EQ(d.vocab_size, c.vocab_size);
  EXPECT_EQ(d.hidden_size, c.hidden_size);
  EXPECT_EQ(d.intermediate_size, c.intermediate_size);
  EXPECT_EQ(d.num_hidden_layers, c.num_hidden_layers);
  EXPECT_EQ(d.num_attention_heads, c.num_attention_heads);
  EXPECT_EQ(d.num_key_value_heads, c.num_key_value_heads);
  EXPECT_EQ(d.head_dim, c.head_dim);
  EXPECT_EQ(d.max_position_embeddings, c.max_position_embeddings);
  EXPECT_EQ(d.rms_norm_eps, c.rms_norm_eps);
  EXPECT_EQ(d.rope_theta, c.rope_theta);
  EXPECT_EQ(d.tie_word_embeddings, c.tie_word_embeddings);
  EXPECT_EQ(d.torch_dtype, c.torch_dtype);
  EXPECT_EQ(d.eos_token_id, c.eos_token_id);
  EXPECT_EQ(d.sliding_window, c.sliding_window);
  EXPECT_NE(text.find("\"torch_dtype\": \"bfloat16\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"rope_theta\": 10000.0"), std::string::npos) << text;
}

// The families' own keys, as transformers 4.x writes them (the 5.x forms are in tests/golden/families).
TEST(ModelConfig, FamiliesOwnKeys) {
  // Llama 3.1: rope_scaling llama3, no biases unless asked.
  std::string llama = patched("model_type", "\"llama\"");
  llama = patched_in(llama, "architectures", "[\"LlamaForCausalLM\"]");
  llama = patched_in(llama, "rope_scaling",
                     "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                     "\"original_max_position_embeddings\": 8192}");
  ModelConfig l = parse(llama);
  EXPECT_EQ(l.rope_type, "llama3");
  EXPECT_EQ(l.rope_factor, 8.0);
  EXPECT_EQ(l.rope_original_max_position_embeddings, 8192);
  EXPECT_FALSE(l.attention_bias || l.mlp_bias || l.o_proj_bias() || l.qk_norm);
  ModelConfig lr = parse_model_config(model_config_to_json(l), "written");  // the writer keeps the scaling
  EXPECT_EQ(lr.rope_type, "llama3");
  EXPECT_EQ(lr.rope_high_freq_factor, 4.0);
  l = parse(patched_in(llama, "attention_bias", "true"));
  EXPECT_TRUE(l.attention_bias && l.o_proj_bias());
  // Qwen3: q/k norm, head_dim 128 by default whatever hidden / heads is, bias off by default.
  std::string qwen3 = patched_in(patched("model_type", "\"qwen3\""), "architectures", "[\"Qwen3ForCausalLM\"]");
  ModelConfig q = parse(qwen3);
  EXPECT_TRUE(q.qk_norm);
  EXPECT_FALSE(q.attention_bias);
  EXPECT_EQ(q.head_dim, 128);
  EXPECT_EQ(q.attention_window(), 0);  // sliding_window 4096 is present but off (use_sliding_window false)
  EXPECT_EQ(parse_model_config(model_config_to_json(q), "written").qk_norm, true);
  // Mistral: the window applies; null means none; absent means MistralConfig's 4096.
  std::string mistral = patched_in(patched("model_type", "\"mistral\""), "architectures", "[\"MistralForCausalLM\"]");
  EXPECT_EQ(parse(mistral).attention_window(), 4096);
  EXPECT_EQ(parse(patched_in(mistral, "sliding_window", "null")).attention_window(), 0);
  EXPECT_EQ(parse(patched_in(mistral, "sliding_window", "")).attention_window(), 4096);
  EXPECT_EQ(parse(patched_in(mistral, "sliding_window", "128")).attention_window(), 128);
  EXPECT_FALSE(parse(mistral).attention_bias);
}

TEST(ModelConfig, LoadErrorsNameFileAndField) {
  test::TempDir dir;
  expect_error([&] { load_model_config(dir.path().string()); }, {dir.path().string(), "config.json"});
  test::write_bytes(dir / "config.json", "{\"model_type\": \"qwen2\",");
  expect_error([&] { load_model_config(dir.path().string()); }, {dir / "config.json", "not valid JSON"});
  expect_error([&] { load_model_config(dir / "nope.json"); }, {"nope.json"});
}

struct BadCase {
  std::string key, value;
  std::vector<std::string> parts;
};

TEST(ModelConfig, BadConfigsNameTheField) {
  const std::vector<BadCase> cases = {
      {"hidden_size", "", {"missing required field \"hidden_size\""}},
      {"num_hidden_layers", "null", {"missing required field \"num_hidden_layers\""}},
      {"model_type", "", {"\"model_type\""}},
      {"hidden_size", "\"64\"", {"\"hidden_size\"", "integer", "a string"}},
      {"hidden_size", "64.0", {"\"hidden_size\"", "integer"}},
      {"vocab_size", "0", {"\"vocab_size\"", "positive"}},
      {"tie_word_embeddings", "1", {"\"tie_word_embeddings\"", "true or false"}},
      {"rope_theta", "\"big\"", {"\"rope_theta\"", "number"}},
      {"model_type", "\"gemma\"", {"\"model_type\"", "gemma"}},
      {"model_type", "\"mistral\"", {"\"architectures\"", "MistralForCausalLM"}},
      {"architectures", "[\"Qwen2MoeForCausalLM\"]", {"\"architectures\"", "Qwen2MoeForCausalLM"}},
      {"architectures", "[]", {"\"architectures\""}},
      {"num_attention_heads", "5", {"hidden_size 64", "num_attention_heads 5"}},
      {"num_key_value_heads", "3", {"num_attention_heads 4", "num_key_value_heads 3"}},
      {"use_sliding_window", "true", {"\"use_sliding_window\""}},
      {"rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}", {"\"rope_scaling.rope_type\"", "yarn"}},
      {"rope_scaling", "{\"type\": \"dynamic\", \"factor\": 2.0}", {"\"rope_scaling.rope_type\"", "dynamic"}},
      {"rope_scaling", "{\"type\": \"linear\"}", {"\"rope_scaling.factor\""}},
      {"rope_scaling", "{\"rope_type\": \"linear\", \"factor\": 0.5}", {"\"rope_scaling.factor\"", "at least 1"}},
      {"rope_scaling",
       "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 4.0, \"high_freq_factor\": 1.0, "
       "\"original_max_position_embeddings\": 8192}",
       {"\"rope_scaling.low_freq_factor\"", "high_freq_factor"}},
      {"rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0}",
       {"\"rope_scaling.original_max_position_embeddings\""}},
      {"partial_rotary_factor", "0.5", {"\"partial_rotary_factor\""}},
      {"final_logit_softcapping", "30.0", {"\"final_logit_softcapping\""}},
      {"rope_scaling", "{\"factor\": 2.0}", {"\"rope_scaling\"", "rope_type"}},
      {"rope_parameters", "{\"rope_theta\": 5.0, \"rope_type\": \"llama3\"}", {"\"rope_parameters.factor\""}},
      {"rope_parameters", "{\"rope_theta\": 5.0, \"rope_type\": \"yarn\", \"factor\": 4.0}",
       {"\"rope_parameters.rope_type\"", "yarn"}},
      {"rope_parameters", "{\"rope_theta\": \"x\"}", {"\"rope_parameters.rope_theta\"", "number"}},
      {"hidden_act", "\"gelu\"", {"\"hidden_act\"", "gelu"}},
      {"eos_token_id", "\"</s>\"", {"\"eos_token_id\""}},
      {"layer_types", "[\"full_attention\", \"sliding_attention\"]", {"\"layer_types[1]\"", "sliding_attention"}},
      {"layer_types", "[\"full_attention\"]", {"\"layer_types\"", "1 entries"}},
  };
  for (const auto& bc : cases) {
    SCOPED_TRACE(bc.key + " = " + bc.value);
    std::string text = patched(bc.key, bc.value);
    try {
      parse(text);
      ADD_FAILURE() << "accepted:\n" << text;
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("test/config.json"), std::string::npos) << msg;
      for (const auto& p : bc.parts) EXPECT_NE(msg.find(p), std::string::npos) << msg << "\n  lacks: " << p;
    }
  }
  expect_error([] { parse("[1, 2]"); }, {"test/config.json", "object"});
}

// Issue 14 items 10/11: sizes from a (corrupt or mutated) config are bounded before anything loops over or
// allocates them; each is an error naming the field, its value and the limit.
TEST(ModelConfig, SizesAboveTheLimitsNameTheField) {
  const std::vector<BadCase> cases = {
      {"num_hidden_layers", "100000000", {"\"num_hidden_layers\" is 100000000", "limit of 4096"}},
      {"vocab_size", "4611686018427387904", {"\"vocab_size\" is 4611686018427387904", "limit of 4194304"}},
      {"hidden_size", "1099511627776", {"\"hidden_size\" is 1099511627776", "limit of 131072"}},
      {"intermediate_size", "9223372036854775807", {"\"intermediate_size\"", "limit of 1048576"}},
      {"num_attention_heads", "65536", {"\"num_attention_heads\" is 65536", "limit of 4096"}},
      {"num_key_value_heads", "8192", {"\"num_key_value_heads\" is 8192"}},
      {"head_dim", "1048576", {"\"head_dim\" is 1048576", "limit of 4096"}},
      {"max_position_embeddings", "9007199254740993", {"\"max_position_embeddings\"", "limit of 1073741824"}},
  };
  for (const auto& bc : cases) {
    SCOPED_TRACE(bc.key + " = " + bc.value);
    expect_error([&] { parse(patched(bc.key, bc.value)); }, {"test/config.json"});
    try {
      parse(patched(bc.key, bc.value));
    } catch (const Error& e) {
      for (const auto& p : bc.parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
  // At the limits every derived count still fits in int64 (no overflow into a small or negative size).
  const ModelConfig big = parse(patched("vocab_size", "4194304"));
  EXPECT_GT(big.parameter_count(), 0);
}

TEST(ModelConfig, SyntaxErrorsGiveLineAndColumn) {
  expect_error([] { parse("{\n  \"model_type\": \"qwen2\",\n  \"vocab_size\": 10,,\n}"); },
               {"test/config.json", "not valid JSON", "line 3, column 20"});
}

}  // namespace
}  // namespace cotune::formats
