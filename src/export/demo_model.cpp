// Random Qwen2 model folders (`cotune init-model`): preset shapes, HF-style random init in BF16, and the
// tokenizer trained on the demo data. Files are written one by one atomically, config.json last, so a
// folder interrupted half-way never looks like a complete model.
#include "export/demo_model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "base/half.h"
#include "base/log.h"
#include "base/mmap.h"
#include "base/rng.h"
#include "formats/qwen2_layout.h"
#include "formats/safetensors.h"

namespace cotune::exporting {
namespace {

namespace fs = std::filesystem;

void require_positive(int64_t v, const char* what) {
  if (v <= 0) fail("init-model: {} must be positive (got {})", what, v);
}

}  // namespace

formats::ModelConfig preset_config(const std::string& preset) {
  formats::ModelConfig c;
  c.model_type = "qwen2";
  c.architecture = "Qwen2ForCausalLM";
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.attention_bias = true;  // Qwen2's q/k/v projections always carry a bias
  c.hidden_act = "silu";
  c.torch_dtype = "bfloat16";
  c.use_sliding_window = false;
  if (preset == "tiny") {
    c.hidden_size = 64;
    c.head_dim = 16;
    c.intermediate_size = 192;
    c.vocab_size = 384;
  } else if (preset == "demo") {
    c.hidden_size = 128;
    c.head_dim = 32;
    c.intermediate_size = 384;
    c.vocab_size = 1024;
  } else {
    fail("init-model: unknown preset \"{}\" (expected \"tiny\" or \"demo\")", preset);
  }
  return c;
}

formats::ModelConfig config_from_options(const InitModelOptions& o) {
  formats::ModelConfig c = preset_config(o.preset);
  if (o.hidden_size) {
    c.hidden_size = o.hidden_size;
    if (!o.intermediate_size) c.intermediate_size = 3 * o.hidden_size;
  }
  if (o.num_layers) c.num_hidden_layers = o.num_layers;
  if (o.num_heads) c.num_attention_heads = o.num_heads;
  if (o.num_kv_heads) c.num_key_value_heads = o.num_kv_heads;
  if (o.intermediate_size) c.intermediate_size = o.intermediate_size;
  if (o.max_position_embeddings) c.max_position_embeddings = o.max_position_embeddings;
  if (o.head_dim) {
    c.head_dim = o.head_dim;
  } else if (o.hidden_size || o.num_heads) {
    if (c.hidden_size % c.num_attention_heads != 0)
      fail("init-model: hidden size {} is not divisible by {} heads (give --head-dim)", c.hidden_size,
           c.num_attention_heads);
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (o.vocab_size) c.vocab_size = o.vocab_size;
  c.tie_word_embeddings = o.tied;
  // The family: what its config.json would say (model_config.h), at the preset's shape.
  if (o.arch == "llama") {
    c.model_type = "llama";
    c.architecture = "LlamaForCausalLM";
    c.attention_bias = false;
    c.rope_theta = 500000.0;
    c.rope_type = "llama3";
    c.rope_factor = 8.0;
    c.rope_low_freq_factor = 1.0;
    c.rope_high_freq_factor = 4.0;
    c.rope_original_max_position_embeddings = std::max<int64_t>(c.max_position_embeddings / 4, 1);
  } else if (o.arch == "qwen3") {
    c.model_type = "qwen3";
    c.architecture = "Qwen3ForCausalLM";
    c.attention_bias = false;
    c.qk_norm = true;
    c.rope_theta = 1000000.0;
  } else if (o.arch == "mistral") {
    c.model_type = "mistral";
    c.architecture = "MistralForCausalLM";
    c.attention_bias = false;
    c.sliding_window = std::max<int64_t>(c.max_position_embeddings / 2, 1);
  } else if (o.arch != "qwen2") {
    fail("init-model: unknown --arch \"{}\" (expected qwen2, llama, qwen3 or mistral)", o.arch);
  }
  require_positive(c.hidden_size, "--hidden");
  require_positive(c.num_hidden_layers, "--layers");
  require_positive(c.num_attention_heads, "--heads");
  require_positive(c.num_key_value_heads, "--kv-heads");
  require_positive(c.head_dim, "--head-dim");
  require_positive(c.intermediate_size, "--intermediate");
  require_positive(c.max_position_embeddings, "--max-positions");
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail("init-model: --heads {} must be a multiple of --kv-heads {}", c.num_attention_heads, c.num_key_value_heads);
  if (c.head_dim % 2 != 0) fail("init-model: --head-dim {} must be even (rotary embedding pairs)", c.head_dim);
  return c;
}

void write_random_weights(const formats::ModelConfig& config, uint64_t seed, float std, const std::string& path) {
  const std::vector<formats::ExpectedTensor> tensors = formats::expected_tensors(config);
  formats::SafetensorsWriter writer;
  writer.set_metadata("format", "pt");
  for (size_t index = 0; index < tensors.size(); ++index) {
    const auto& t = tensors[index];
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    std::vector<uint8_t> bytes(static_cast<size_t>(numel) * 2);
    auto* out = reinterpret_cast<uint16_t*>(bytes.data());
    if (t.role == formats::TensorRole::norm) {
      for (int64_t i = 0; i < numel; ++i) out[i] = f32_to_bf16(1.0f);
    } else {
      // One Philox stream per tensor: counter blocks [index << 32, ...) of the seed's key.
      Rng rng(seed, static_cast<uint64_t>(index) << 32);
      for (int64_t i = 0; i < numel; ++i) out[i] = f32_to_bf16(std * rng.normal());
    }
    writer.add_owned(t.name, "BF16", t.shape, std::move(bytes));
  }
  writer.write(path);
}

InitModelResult init_model(const std::string& dir, const InitModelOptions& opts) {
  InitModelResult r;
  formats::ModelConfig cfg = config_from_options(opts);
  const text::TokenizerFilesSpec spec = text::r1_distill_tokenizer_spec();
  const auto added = static_cast<int64_t>(spec.added_tokens.size());
  if (cfg.vocab_size < 256 + added)
    fail("init-model: --vocab-size {} is too small: the tokenizer needs 256 byte tokens + {} added tokens",
         cfg.vocab_size, added);

  std::vector<std::string> texts;
  if (opts.vocab_from.empty()) {
    texts.push_back(builtin_corpus());
  } else {
    texts = text::load_training_texts(opts.vocab_from);
  }
  r.training_texts = texts.size();
  text::BpeTrainOptions topt;
  topt.vocab_size = static_cast<int32_t>(cfg.vocab_size - added);
  const text::BpeVocab vocab = text::train_bpe(texts, topt);
  r.bpe_vocab = vocab.size();
  r.bpe_merges = static_cast<int32_t>(vocab.merges.size());
  r.total_vocab = r.bpe_vocab + static_cast<int32_t>(added);
  for (size_t i = 0; i < spec.added_tokens.size(); ++i) {
    if (spec.added_tokens[i].content == spec.bos_token) r.bos_id = r.bpe_vocab + static_cast<int32_t>(i);
    if (spec.added_tokens[i].content == spec.eos_token) r.eos_id = r.bpe_vocab + static_cast<int32_t>(i);
  }
  if (r.total_vocab < cfg.vocab_size)
    log::info("init-model: the training text supports {} BPE tokens (+{} added = {}), fewer than the {} requested",
              r.bpe_vocab, added, r.total_vocab, cfg.vocab_size);
  cfg.vocab_size = r.total_vocab;
  // As in DeepSeek-R1-Distill's config.json, both ids name EOS; the BOS the tokenizer prepends is another
  // token. Special ids are always taken from the tokenizer files (DESIGN.md).
  cfg.bos_token_id = r.eos_id;
  cfg.eos_token_id = r.eos_id;
  r.config = cfg;

  // Built in a temp folder beside `dir` and moved into place whole, as every output folder is: an
  // interrupted run leaves no folder that looks like a model.
  if (fs::path(dir).has_parent_path()) {
    std::error_code ec;
    fs::create_directories(fs::path(dir).parent_path(), ec);
    if (ec) fail("{}: cannot create the parent folder: {}", dir, ec.message());
  }
  require_replaceable_directory(dir, kModelFolder);
  const std::string tmp = fresh_temp_dir_for(dir);
  const fs::path d(tmp);
  try {
    text::write_tokenizer_files(tmp, vocab, spec);
    write_random_weights(cfg, opts.seed, opts.init_std, (d / "model.safetensors").string());
    nlohmann::ordered_json gen;
    gen["_from_model_config"] = true;
    gen["bos_token_id"] = r.bos_id;
    gen["eos_token_id"] = r.eos_id;
    gen["do_sample"] = true;
    gen["temperature"] = 0.6;
    gen["top_p"] = 0.95;
    write_file_atomic((d / "generation_config.json").string(), gen.dump(2) + "\n");
    write_file_atomic((d / "config.json").string(), formats::model_config_to_json(cfg));
    replace_directory(tmp, dir, kModelFolder);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  return r;
}

const std::string& builtin_sentence() {
  static const std::string s =
      "A 45-year-old man presents with chest pain radiating to the left arm; the most likely diagnosis is "
      "acute myocardial infarction, and an ECG should be obtained immediately.";
  return s;
}

const std::string& builtin_corpus() {
  static const std::string s = builtin_sentence() + "\n\n" + R"(Question: A 60-year-old woman presents with fatigue, weight gain, cold intolerance and constipation. Her skin is dry and her reflexes show a delayed relaxation phase. What is the most likely diagnosis?

Okay, let's think about this. The patient is tired, gaining weight and always feels cold. Constipation and dry skin fit a slow metabolism. The delayed relaxation of the reflexes is a classic sign of low thyroid hormone. So the most likely diagnosis is hypothyroidism, and the most common cause in this age group is Hashimoto thyroiditis. We should check the TSH level, which would be elevated, and the free T4, which would be low.

Response: The most likely diagnosis is primary hypothyroidism, most often caused by Hashimoto thyroiditis. The next step is to measure serum TSH and free T4; treatment is levothyroxine.

Question: A 25-year-old man has a sudden onset of severe headache, neck stiffness and fever. On examination he has photophobia and a positive Kernig sign. What is the next best step in management?

Let me think. Fever, headache and neck stiffness together suggest meningitis. Bacterial meningitis is an emergency, so we should not delay antibiotics. If there are no signs of raised intracranial pressure, a lumbar puncture can be done first, but empirical antibiotics such as ceftriaxone and vancomycin should be started right away, together with dexamethasone.

Response: Start empirical intravenous antibiotics (ceftriaxone plus vancomycin) with dexamethasone without delay, and perform a lumbar puncture to confirm the diagnosis when it is safe.

Question: A 70-year-old patient with diabetes and hypertension has swelling of both legs, shortness of breath on exertion and needs three pillows to sleep. What is the most likely cause of his symptoms?

Hmm, the patient has leg edema, dyspnea on exertion and orthopnea. These are the typical signs of heart failure. Diabetes and hypertension are the main risk factors. An echocardiogram will show the ejection fraction, and the BNP level will be high. Treatment includes diuretics for the congestion, and ACE inhibitors and beta blockers to improve survival.

Response: The most likely cause is congestive heart failure. Confirm with BNP and echocardiography; treat with diuretics, an ACE inhibitor and a beta blocker.

Question: A child presents with a barking cough, hoarse voice and inspiratory stridor after a few days of a runny nose. What is the most likely diagnosis and treatment?

The barking cough and stridor point to croup, which is usually caused by the parainfluenza virus. Most children get better with a single dose of oral dexamethasone, and nebulized epinephrine is given when the stridor is present at rest.

Response: The diagnosis is croup (laryngotracheobronchitis). Give a single dose of dexamethasone, and nebulized epinephrine for stridor at rest.
)";
  return s;
}

}  // namespace cotune::exporting
