// JSON lines in / out for `cotune tokenize` (see tokenizer.h).
#include <simdjson.h>

#include <cstdint>
#include <istream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "base/error.h"
#include "text/tokenizer.h"

namespace cotune::text {
namespace {

void write_ids(const std::vector<int32_t>& ids, std::string& out) {
  out += "{\"ids\": [";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(ids[i]);
  }
  out += "]}\n";
}

}  // namespace

size_t tokenize_jsonl(const Tokenizer& tok, std::istream& in, std::ostream& os, const JsonlOptions& opt) {
  simdjson::dom::parser parser;
  constexpr size_t kBlock = 4096;  // lines per encode_batch
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> id_lists;
  size_t line_no = 0, block_first_line = 1;
  std::string line, out;

  // Writes the block's results. On a bad line, the lines before it are still written, then the error
  // names the bad line.
  auto flush = [&] {
    out.clear();
    auto emit = [&] {
      os.write(out.data(), static_cast<std::streamsize>(out.size()));
      out.clear();
    };
    if (opt.decode) {
      for (size_t i = 0; i < id_lists.size(); ++i) {
        std::string text;
        try {
          text = tok.decode(id_lists[i], opt.skip_special);
        } catch (const Error& e) {
          emit();
          fail("line {}: {}", block_first_line + i, e.what());
        }
        out += nlohmann::json({{"text", std::move(text)}}).dump();
        out += '\n';
      }
    } else {
      std::vector<std::vector<int32_t>> ids;
      try {
        ids = tok.encode_batch(texts, opt.add_special);
      } catch (const Error&) {  // encode one by one up to the bad line
        for (size_t i = 0; i < texts.size(); ++i) {
          try {
            write_ids(tok.encode(texts[i], opt.add_special), out);
          } catch (const Error& e) {
            emit();
            fail("line {}: {}", block_first_line + i, e.what());
          }
        }
      }
      for (auto& v : ids) write_ids(v, out);
    }
    emit();
    texts.clear();
    id_lists.clear();
    block_first_line = line_no + 1;
  };
  auto bad_line = [&](std::string message) {
    --line_no;  // the lines before the bad one are complete
    flush();
    throw Error(std::move(message));
  };

  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    simdjson::dom::element doc;
    if (auto err = parser.parse(line).get(doc); err != simdjson::SUCCESS)
      bad_line(fmt::format("line {}: malformed JSON: {}", line_no, simdjson::error_message(err)));
    if (opt.decode) {
      simdjson::dom::array arr;
      if (doc["ids"].get(arr) != simdjson::SUCCESS) bad_line(fmt::format("line {}: expected {{\"ids\": [integers]}}", line_no));
      std::vector<int32_t> ids;
      for (auto v : arr) {
        int64_t id = 0;
        if (v.get(id) != simdjson::SUCCESS || id < INT32_MIN || id > INT32_MAX)
          bad_line(fmt::format("line {}: `ids` must hold 32-bit integers", line_no));
        ids.push_back(static_cast<int32_t>(id));
      }
      id_lists.push_back(std::move(ids));
    } else {
      std::string_view s;
      if (doc["text"].get(s) != simdjson::SUCCESS) bad_line(fmt::format("line {}: expected {{\"text\": string}}", line_no));
      texts.emplace_back(s);
    }
    if (texts.size() + id_lists.size() >= kBlock) flush();
  }
  flush();
  os.flush();
  return line_no;
}

}  // namespace cotune::text
