// `cotune forward --model DIR [--text "..." | --ids 1,2,3] [--tokenizer PATH] [--adapter DIR] [--dump-logits FILE]`:
// one forward pass on the CPU and the mean next-token loss, perplexity and token count. Without --text / --ids a
// fixed built-in sentence is used, so `init-model` + `forward` is a two-command demo (a random model gives
// ~ ln(vocab)). --adapter applies a PEFT LoRA adapter (unmerged, as in training); --dump-logits writes the full
// fp32 logits [T, V] and the input_ids [T] to a safetensors file (tools/check_merged.py compares them with
// transformers).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/command.h"
#include "hub/hf_cache.h"
#include "cli/model_path.h"
#include "formats/peft_adapter.h"
#include "formats/safetensors.h"
#include "model/lora.h"
#include "export/demo_model.h"
#include "model/sequence_loss.h"
#include "model/qwen2.h"
#include "text/tokenizer.h"

namespace cotune::cli {
namespace {

struct ForwardOptions {
  std::string model;
  std::string text;
  std::vector<int32_t> ids;
  std::string tokenizer;
  std::string adapter;      // PEFT adapter folder ("" = none)
  std::string dump_logits;  // safetensors file for the logits ("" = none)
};

// The loss through a runner carrying the adapter, and (when asked) the logits written to a file.
model::SequenceLoss forward_with_runner(const model::Qwen2Model& m, const ForwardOptions& o,
                                        const std::vector<int32_t>& ids) {
  const int64_t V = m.config().vocab_size;
  if (ids.size() < 2) fail("forward: need at least 2 tokens to predict one, got {}", ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= V)
      fail("forward: token id {} at position {} is outside the vocabulary [0, {})", ids[i], i, V);
  std::unique_ptr<model::LoraWeights> lora;
  if (!o.adapter.empty()) {
    lora = with_context("adapter " + o.adapter, [&] {
      const auto lc = model::LoraConfig::from_peft(formats::load_peft_adapter_config(o.adapter));
      auto w = std::make_unique<model::LoraWeights>(m.config(), lc, Device::cpu);
      w->load_peft_weights(o.adapter);
      return w;
    });
  }
  const model::PackedBatch batch = model::PackedBatch::from_sequences({ids});
  model::RunnerOptions ro;
  ro.max_tokens = batch.tokens();
  ro.training = false;
  ro.gradient_checkpointing = false;
  model::Qwen2Runner runner(m, lora.get(), ro);
  const model::StepStats st = runner.forward_backward(batch, /*backward=*/false, 1.0f);
  if (!o.dump_logits.empty()) {
    const std::vector<float> logits = runner.forward_logits(batch);
    formats::SafetensorsWriter w;
    w.add("logits", "F32", {batch.tokens(), V}, logits.data(), logits.size() * sizeof(float));
    w.add("input_ids", "I32", {batch.tokens()}, ids.data(), ids.size() * sizeof(int32_t));
    w.set_metadata("model", o.model);
    if (!o.adapter.empty()) w.set_metadata("adapter", o.adapter);
    w.write(o.dump_logits);
  }
  model::SequenceLoss r;
  r.tokens = batch.tokens();
  r.predicted = st.counted;
  r.correct = st.correct;
  r.mean_loss = st.counted > 0 ? st.loss_sum / static_cast<double>(st.counted) : 0.0;
  r.perplexity = std::exp(r.mean_loss);
  return r;
}

void run_forward(ForwardOptions o) {
  const std::string model_dir = resolve_model_dir(o.model);
  if (!o.adapter.empty()) o.adapter = hub::resolve(o.adapter).path.string();
  std::vector<int32_t> ids = o.ids;
  std::string source = "--ids";
  if (ids.empty()) {
    const std::string tok_path = o.tokenizer.empty() ? model_dir : hub::resolve(o.tokenizer).path.string();
    const text::Tokenizer tok = text::Tokenizer::load(tok_path);
    const std::string& text = o.text.empty() ? exporting::builtin_sentence() : o.text;
    ids = tok.encode(text, /*add_special=*/true);
    source = o.text.empty() ? "built-in sentence" : "--text";
  }
  const model::Qwen2Model m = model::Qwen2Model::load(model_dir);
  const bool runner = !o.adapter.empty() || !o.dump_logits.empty();
  const model::SequenceLoss r = runner ? forward_with_runner(m, o, ids) : model::sequence_loss(m, ids);
  const int64_t V = m.config().vocab_size;
  std::printf("model: %s (%lld layers, hidden %lld, vocab %lld)\n", o.model.c_str(),
              static_cast<long long>(m.config().num_hidden_layers), static_cast<long long>(m.config().hidden_size),
              static_cast<long long>(V));
  std::printf("tokens: %lld (%s), predicted: %lld, argmax correct: %lld\n", static_cast<long long>(r.tokens),
              source.c_str(), static_cast<long long>(r.predicted), static_cast<long long>(r.correct));
  if (!o.adapter.empty()) std::printf("adapter: %s\n", o.adapter.c_str());
  std::printf("loss: %.4f  perplexity: %.2f  (ln(vocab) = %.4f)\n", r.mean_loss, r.perplexity,
              std::log(static_cast<double>(V)));
  if (!o.dump_logits.empty()) std::printf("logits: %s\n", o.dump_logits.c_str());
}

void setup_forward(CLI::App& app) {
  auto o = std::make_shared<ForwardOptions>();
  app.add_option("--model,-m", o->model, "Model folder (config.json + safetensors) or Hub name (org/name)")->required();
  auto* text = app.add_option("--text", o->text, "Text to score (encoded with the model's tokenizer, BOS prepended)");
  app.add_option("--ids", o->ids, "Token ids to score, comma separated")->delimiter(',')->excludes(text);
  app.add_option("--tokenizer", o->tokenizer, "tokenizer.json or a folder holding it (default: the model folder)");
  app.add_option("--adapter", o->adapter, "PEFT LoRA adapter folder to apply (unmerged)");
  app.add_option("--dump-logits", o->dump_logits,
                 "Write the fp32 logits [T, V] and input_ids to this safetensors file");
  app.callback([o] { run_forward(*o); });
}

}  // namespace
}  // namespace cotune::cli

COTUNE_COMMAND(forward, "forward", "Score a text with a model: mean next-token loss and perplexity (CPU)", 6,
               cotune::cli::setup_forward);
