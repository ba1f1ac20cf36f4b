// `cotune tokenize --tokenizer PATH [--no-special] [--decode]`: JSON lines on stdin -> JSON lines on stdout,
// one output line per input line, in order. {"text": ...} -> {"ids": [...]}; with --decode {"ids": [...]} ->
// {"text": ...}. Lines are processed in blocks with encode_batch (all cores).
#include <simdjson.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/command.h"
#include "text/tokenizer.h"

namespace cotune::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer;
  bool no_special = false;
  bool decode = false;
};

void write_ids(const std::vector<int32_t>& ids, std::string& out) {
  out += "{\"ids\": [";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(ids[i]);
  }
  out += "]}\n";
}

void run_tokenize(const TokenizeOptions& opt) {
  const text::Tokenizer tok = text::Tokenizer::load(opt.tokenizer);
  simdjson::dom::parser parser;
  constexpr size_t kBlock = 4096;  // lines per encode_batch
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> id_lists;
  size_t line_no = 0, block_first_line = 1;
  std::string line, out;

  auto flush = [&] {
    out.clear();
    if (opt.decode) {
      for (size_t i = 0; i < id_lists.size(); ++i) {
        std::string text = with_context(fmt::format("stdin line {}", block_first_line + i),
                                        [&] { return tok.decode(id_lists[i], /*skip_special=*/false); });
        out += nlohmann::json({{"text", std::move(text)}}).dump();
        out += '\n';
      }
    } else {
      std::vector<std::vector<int32_t>> ids;
      try {
        ids = tok.encode_batch(texts, !opt.no_special);
      } catch (const Error&) {  // find the first bad line to name it
        for (size_t i = 0; i < texts.size(); ++i)
          with_context(fmt::format("stdin line {}", block_first_line + i), [&] { return tok.encode(texts[i], !opt.no_special); });
        throw;
      }
      for (auto& v : ids) write_ids(v, out);
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    texts.clear();
    id_lists.clear();
    block_first_line = line_no + 1;
  };

  while (std::getline(std::cin, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    simdjson::dom::element doc;
    if (auto err = parser.parse(line).get(doc); err != simdjson::SUCCESS)
      fail("stdin line {}: malformed JSON: {}", line_no, simdjson::error_message(err));
    if (opt.decode) {
      simdjson::dom::array arr;
      if (doc["ids"].get(arr) != simdjson::SUCCESS) fail("stdin line {}: expected {{\"ids\": [integers]}}", line_no);
      std::vector<int32_t> ids;
      for (auto v : arr) {
        int64_t id = 0;
        if (v.get(id) != simdjson::SUCCESS || id < INT32_MIN || id > INT32_MAX)
          fail("stdin line {}: `ids` must hold integers", line_no);
        ids.push_back(static_cast<int32_t>(id));
      }
      id_lists.push_back(std::move(ids));
    } else {
      std::string_view s;
      if (doc["text"].get(s) != simdjson::SUCCESS) fail("stdin line {}: expected {{\"text\": string}}", line_no);
      texts.emplace_back(s);
    }
    if (texts.size() + id_lists.size() >= kBlock) flush();
  }
  flush();
  std::fflush(stdout);
}

void setup(CLI::App& app) {
  auto opt = std::make_shared<TokenizeOptions>();
  app.add_option("--tokenizer", opt->tokenizer, "tokenizer.json or a model folder holding it")->required();
  app.add_flag("--no-special", opt->no_special, "Do not add the post-processor's special tokens (BOS)");
  app.add_flag("--decode", opt->decode, "Read {\"ids\": [...]} lines and write {\"text\": ...}");
  app.callback([opt] { run_tokenize(*opt); });
}

}  // namespace

COTUNE_COMMAND(tokenize, "tokenize", "Tokenize JSON lines ({\"text\"} -> {\"ids\"}) or decode them (--decode)", 20, setup);

}  // namespace cotune::cli
