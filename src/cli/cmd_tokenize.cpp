// `cotune tokenize --tokenizer PATH [--no-special] [--decode [--skip-special]]`: JSON lines on stdin -> JSON
// lines on stdout, one output line per input line, in order (text::tokenize_jsonl).
#include <iostream>
#include <memory>
#include <string>

#include "base/error.h"
#include "cli/command.h"
#include "cli/model_path.h"
#include "text/tokenizer.h"

namespace cotune::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer;
  bool no_special = false;
  bool decode = false;
  bool skip_special = false;
};

void run_tokenize(const TokenizeOptions& opt) {
  const text::Tokenizer tok = text::Tokenizer::load(resolve_model_dir(opt.tokenizer));
  std::ios::sync_with_stdio(false);
  with_context("stdin", [&] {
    return text::tokenize_jsonl(tok, std::cin, std::cout,
                                text::JsonlOptions{!opt.no_special, opt.decode, opt.skip_special});
  });
}

void setup_tokenize(CLI::App& app) {
  auto opt = std::make_shared<TokenizeOptions>();
  app.add_option("--tokenizer", opt->tokenizer, "tokenizer.json, or a model folder or Hub name holding it")->required();
  app.add_flag("--no-special", opt->no_special, "Do not add the post-processor's special tokens (BOS)");
  app.add_flag("--decode", opt->decode, "Read {\"ids\": [...]} lines and write {\"text\": ...}");
  app.add_flag("--skip-special", opt->skip_special, "With --decode: leave special tokens out of the text");
  app.callback([opt] { run_tokenize(*opt); });
}

}  // namespace

COTUNE_COMMAND(tokenize, "tokenize", "Tokenize JSON lines ({\"text\"} -> {\"ids\"}) or decode them (--decode)", 20,
               setup_tokenize);

}  // namespace cotune::cli
