// `cotune init-model --output DIR [--preset tiny|demo] [shape flags] [--vocab-from FILE --vocab-size N]
// [--seed S] [--tied] [--arch qwen2|llama|qwen3|mistral]`: a tiny random model folder of that family
// (config.json, model.safetensors in BF16, generation_config.json, tokenizer.json + tokenizer_config.json) that
// transformers loads as is.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/command.h"
#include "cli/option_checks.h"
#include "export/demo_model.h"

namespace cotune::cli {
namespace {

struct InitModelCli {
  std::string output;
  exporting::InitModelOptions opts;
};

void setup_init_model(CLI::App& app) {
  auto o = std::make_shared<InitModelCli>();
  app.add_option("--output,-o", o->output, "Folder to write the model into (created if missing)")->required();
  app.add_option("--preset", o->opts.preset, "Shape preset: tiny (hidden 64) or demo (hidden 128)")
      ->check(CLI::IsMember({"tiny", "demo"}))
      ->capture_default_str();
  app.add_option("--arch", o->opts.arch,
                 "Decoder family: qwen2 (q/k/v bias), llama (no bias, rope llama3), qwen3 (q/k norm), mistral "
                 "(sliding window)")
      ->check(CLI::IsMember({"qwen2", "llama", "qwen3", "mistral"}))
      ->capture_default_str();
  app.add_option("--hidden", o->opts.hidden_size, "Hidden size (overrides the preset)");
  app.add_option("--layers", o->opts.num_layers, "Decoder layers");
  app.add_option("--heads", o->opts.num_heads, "Attention heads");
  app.add_option("--kv-heads", o->opts.num_kv_heads, "Key/value heads (GQA)");
  app.add_option("--head-dim", o->opts.head_dim, "Head dimension (default hidden / heads)");
  app.add_option("--intermediate", o->opts.intermediate_size, "MLP intermediate size (default 3 x hidden)");
  app.add_option("--max-positions", o->opts.max_position_embeddings, "max_position_embeddings");
  app.add_option("--vocab-from", o->opts.vocab_from,
                 "Tokenizer training text: .jsonl / .json (medical-o1 records or string fields) or plain text "
                 "(default: a built-in clinical English corpus)");
  app.add_option("--vocab-size", o->opts.vocab_size,
                 "Total vocabulary incl. 6 added tokens (preset: tiny 384, demo 1024; fewer if the text runs out)");
  app.add_option("--seed", o->opts.seed, "Random seed of the weights")->capture_default_str()->check(unsigned_integer());
  app.add_option("--init-std", o->opts.init_std, "Standard deviation of the random weights")
      ->capture_default_str()
      ->check(finite_number());
  app.add_flag("--tied", o->opts.tied, "Tie the LM head to the embeddings");
  app.callback([o] {
    const exporting::InitModelResult r = exporting::init_model(o->output, o->opts);
    const auto& c = r.config;
    std::printf("wrote %s: qwen2, %lld layers, hidden %lld, heads %lld/%lld x %lld, intermediate %lld, vocab %d%s\n",
                o->output.c_str(), static_cast<long long>(c.num_hidden_layers), static_cast<long long>(c.hidden_size),
                static_cast<long long>(c.num_attention_heads), static_cast<long long>(c.num_key_value_heads),
                static_cast<long long>(c.head_dim), static_cast<long long>(c.intermediate_size), r.total_vocab,
                c.tie_word_embeddings ? ", tied" : "");
    std::printf("parameters: %lld (bf16, seed %llu)\n", static_cast<long long>(c.parameter_count()),
                static_cast<unsigned long long>(o->opts.seed));
    std::printf("tokenizer: %d BPE tokens (%d merges, %zu training texts) + %d added; bos %d, eos %d = pad\n",
                r.bpe_vocab, r.bpe_merges, r.training_texts, r.total_vocab - r.bpe_vocab, r.bos_id, r.eos_id);
    std::printf("a random model's loss is about ln(%d) = %.3f\n", r.total_vocab, std::log(static_cast<double>(r.total_vocab)));
  });
}

}  // namespace
}  // namespace cotune::cli

COTUNE_COMMAND(init_model, "init-model", "Write a tiny random model (Qwen2, Llama, Qwen3 or Mistral) + trained BPE tokenizer (demo, tests)", 5,
               cotune::cli::setup_init_model);
