// `cotune forward --model DIR [--text "..." | --ids 1,2,3] [--tokenizer PATH]`: one forward pass on the CPU
// and the mean next-token loss, perplexity and token count. Without --text / --ids a fixed built-in
// sentence is used, so `init-model` + `forward` is a two-command demo (a random model gives ~ ln(vocab)).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/command.h"
#include "model/init.h"
#include "model/qwen2.h"
#include "text/tokenizer.h"

namespace cotune::cli {
namespace {

struct ForwardOptions {
  std::string model;
  std::string text;
  std::vector<int32_t> ids;
  std::string tokenizer;
};

void run_forward(const ForwardOptions& o) {
  std::vector<int32_t> ids = o.ids;
  std::string source = "--ids";
  if (ids.empty()) {
    const std::string tok_path = o.tokenizer.empty() ? o.model : o.tokenizer;
    const text::Tokenizer tok = text::Tokenizer::load(tok_path);
    const std::string& text = o.text.empty() ? model::builtin_sentence() : o.text;
    ids = tok.encode(text, /*add_special=*/true);
    source = o.text.empty() ? "built-in sentence" : "--text";
  }
  const model::Qwen2Model m = model::Qwen2Model::load(o.model);
  const model::SequenceLoss r = model::sequence_loss(m, ids);
  const int64_t V = m.config().vocab_size;
  std::printf("model: %s (%lld layers, hidden %lld, vocab %lld)\n", o.model.c_str(),
              static_cast<long long>(m.config().num_hidden_layers), static_cast<long long>(m.config().hidden_size),
              static_cast<long long>(V));
  std::printf("tokens: %lld (%s), predicted: %lld, argmax correct: %lld\n", static_cast<long long>(r.tokens),
              source.c_str(), static_cast<long long>(r.predicted), static_cast<long long>(r.correct));
  std::printf("loss: %.4f  perplexity: %.2f  (ln(vocab) = %.4f)\n", r.mean_loss, r.perplexity,
              std::log(static_cast<double>(V)));
}

void setup_forward(CLI::App& app) {
  auto o = std::make_shared<ForwardOptions>();
  app.add_option("--model,-m", o->model, "Model folder (config.json + safetensors)")->required();
  auto* text = app.add_option("--text", o->text, "Text to score (encoded with the model's tokenizer, BOS prepended)");
  app.add_option("--ids", o->ids, "Token ids to score, comma separated")->delimiter(',')->excludes(text);
  app.add_option("--tokenizer", o->tokenizer, "tokenizer.json or a folder holding it (default: the model folder)");
  app.callback([o] { run_forward(*o); });
}

}  // namespace
}  // namespace cotune::cli

COTUNE_COMMAND(forward, "forward", "Score a text with a model: mean next-token loss and perplexity (CPU)", 6,
               cotune::cli::setup_forward);
