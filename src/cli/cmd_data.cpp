// `cotune data stats|preview`: look at a dataset through a template and a tokenizer before training on it.
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "base/error.h"
#include "cli/command.h"
#include "cli/model_path.h"
#include "cli/data_choice.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "data/preview.h"
#include "cli/data_format.h"
#include "text/template.h"
#include "text/tokenizer.h"

namespace cotune::cli {
namespace {

struct DataArgs {
  std::string data, data_files, model, tokenizer, template_name, template_file, selection = "train";
  std::string on_bad_record = "error", cache_dir;
  std::string data_format = "auto";
  int64_t max_seq_length = 2048;
  bool no_cache = false;
  // preview
  int64_t count = 3, start = 0, max_chars = 0;
  std::string loss_on = "all", color = "auto";
};

void add_common(CLI::App& app, DataArgs& a) {
  app.add_option("--data", a.data,
                 "Dataset: a JSON array, JSON Lines, CSV or Parquet file, a folder, or a Hub dataset (org/name)")
      ->required();
  app.add_option("--data-files", a.data_files, "File inside the data folder / dataset repo to use");
  auto* m = app.add_option("--model,-m", a.model, "Model folder or Hub name whose tokenizer to use");
  app.add_option("--tokenizer", a.tokenizer, "tokenizer.json, or a folder / Hub name holding it (default: --model)")
      ->excludes(m);
  auto* t = app.add_option("--template", a.template_name,
                           "Built-in prompt template: medical-o1-zh | medical-o1-en (default medical-o1-zh), or chat (the model's "
                           "chat template, for conversational records)");
  auto* tf = app.add_option("--template-file", a.template_file,
                            "Custom template, JSON: {\"train\": \"...{Field}...\", \"prompt\": \"...\"} where prompt "
                            "is the beginning of train up to where the model answers; {{ and }} are literal braces");
  t->excludes(tf);
  app.add_option("--max-seq-length", a.max_seq_length, "Cut sequences to this many tokens (counted as truncated)")
      ->capture_default_str();
  app.add_option("--selection", a.selection, "Rows to use, e.g. train, train[0:500], train[:10%]")->capture_default_str();
  app.add_option("--split", a.selection, "")->group("");  // the old name
  app.add_option("--on-bad-record", a.on_bad_record,
                 "What a bad record does (malformed JSON, missing / non-string / empty field, invalid UTF-8): "
                 "error = stop with its file, line and record; skip = warn and leave it out")
      ->check(CLI::IsMember({"error", "skip"}))
      ->capture_default_str();
  app.add_option("--data-format", a.data_format,
                 "Record format: auto (from the fields) | medical-o1 | messages | sharegpt | alpaca | "
                 "prompt-completion | text")
      ->capture_default_str();
  app.add_option("--cache-dir", a.cache_dir, "Token cache folder (default $XDG_CACHE_HOME/cotune/data)");
  app.add_flag("--no-cache", a.no_cache, "Neither read nor write the token cache");
}

struct Loaded {
  text::Tokenizer tok;
  TemplateChoice tpl;
  data::TokenizedDataset ds;
};

Loaded load(const DataArgs& a) {
  if (a.tokenizer.empty() && a.model.empty()) fail("give --model (a model folder or Hub name) or --tokenizer");
  const std::string tokenizer_dir = resolve_model_dir(a.tokenizer.empty() ? a.model : a.tokenizer);
  text::Tokenizer tok = text::Tokenizer::load(tokenizer_dir);
  TemplateChoice tpl = choose_template(a.template_name, a.template_file, a.data_format, tokenizer_dir);
  data::DataOptions opt;
  opt.data_path = resolve_data_path(a.data, a.data_files);
  opt.max_seq_length = a.max_seq_length;
  opt.on_bad_record = data::parse_on_bad_record(a.on_bad_record);
  opt.selection = data::parse_selection(a.selection);
  opt.use_cache = !a.no_cache;
  opt.cache_dir = a.cache_dir;
  data::TokenizedDataset ds = data::build_dataset(opt, tpl.format(), tok);
  return Loaded{std::move(tok), std::move(tpl), std::move(ds)};
}

void setup_data(CLI::App& app) {
  app.require_subcommand(1);
  auto args = std::make_shared<DataArgs>();

  CLI::App* stats = app.add_subcommand("stats", "Print dataset statistics as JSON (records, tokens, lengths, "
                                                "truncation, response-token fraction)");
  add_common(*stats, *args);
  stats->callback([args] {
    Loaded l = load(*args);
    std::puts(data::compute_stats(l.ds).to_json().c_str());
  });

  CLI::App* preview = app.add_subcommand("preview", "Show formatted records with the tokens the loss ignores marked "
                                                    "(dim on a terminal, [[ ]] otherwise)");
  add_common(*preview, *args);
  preview->add_option("-n,--count", args->count, "How many records to show")->capture_default_str();
  preview->add_option("--start", args->start, "First sequence to show")->capture_default_str();
  auto* loss_on = preview->add_option("--loss-on", args->loss_on,
                                      "Loss mask: all (as train's default) | response | assistant (the assistant turns)")
                      ->check(CLI::IsMember({"all", "response", "assistant"}))
                      ->capture_default_str();
  preview->add_option("--mask", args->loss_on, "")  // the old name
      ->group("")
      ->check(CLI::IsMember({"all", "response", "assistant"}))
      ->excludes(loss_on);
  preview->add_option("--color", args->color, "auto | always | never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  preview->add_option("--max-chars", args->max_chars, "Cut each marked segment to this many bytes (0 = whole)");
  preview->callback([args] {
    Loaded l = load(*args);
    data::PreviewStyle style;
    style.ansi = args->color == "always" || (args->color == "auto" && ::isatty(STDOUT_FILENO));
    style.max_chars = args->max_chars;
    data::LossMask mask = data::parse_loss_mask(args->loss_on);
    int64_t n = static_cast<int64_t>(l.ds.size());
    if (args->start < 0 || args->start >= n) fail("--start {}: the dataset has {} sequences", args->start, n);
    for (int64_t i = args->start; i < std::min(n, args->start + args->count); ++i)
      std::fputs(data::render_preview(l.tok, l.ds, static_cast<size_t>(i), mask, style).c_str(), stdout);
  });
}

}  // namespace

COTUNE_COMMAND(data, "data", "Inspect an SFT dataset: stats (JSON) and preview (formatted records, masked part marked)",
               30, setup_data);

}  // namespace cotune::cli
