// Tokenizer throughput: encodes every {"text": ...} line of a JSONL file with cotune, single-threaded
// (encode in a loop) and batched on all cores (encode_batch), each with a freshly loaded tokenizer (a cold
// BPE cache, as the HF side gets). Prints one JSON line per mode; bench/tokenizer/run.sh compares with HF.
//   bench_tokenizer --tokenizer PATH --input FILE.jsonl [--mode single|batch|both] [--no-special]
#include <simdjson.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/parallel.h"
#include "text/tokenizer.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Order-sensitive checksum of the ids, the same formula as hf_bench.py.
uint64_t checksum(const std::vector<std::vector<int32_t>>& all) {
  uint64_t h = 0;
  for (const auto& ids : all) {
    uint64_t s = 0;
    for (int32_t id : ids) s += static_cast<uint64_t>(id);
    h = h * 1000003u + s * 31u + ids.size();
  }
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  std::string tokenizer, input, mode = "both";
  bool add_special = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tokenizer" && i + 1 < argc) tokenizer = argv[++i];
    else if (a == "--input" && i + 1 < argc) input = argv[++i];
    else if (a == "--mode" && i + 1 < argc) mode = argv[++i];
    else if (a == "--no-special") add_special = false;
    else {
      std::fprintf(stderr, "usage: bench_tokenizer --tokenizer PATH --input FILE.jsonl [--mode single|batch|both]\n");
      return 2;
    }
  }
  if (tokenizer.empty() || input.empty()) {
    std::fprintf(stderr, "bench_tokenizer: --tokenizer and --input are required\n");
    return 2;
  }
  try {
    std::vector<std::string> texts;
    size_t bytes = 0;
    {
      simdjson::dom::parser parser;
      simdjson::padded_string content = simdjson::padded_string::load(input).value();
      simdjson::dom::document_stream stream = parser.parse_many(content).value();
      for (auto doc : stream) {
        std::string_view s = doc["text"].get_string().value();
        texts.emplace_back(s);
        bytes += s.size();
      }
    }
    for (const std::string m : {"single", "batch"}) {
      if (mode != "both" && mode != m) continue;
      auto t0 = std::chrono::steady_clock::now();
      const auto tok = cotune::text::Tokenizer::load(tokenizer);
      const double load_s = seconds_since(t0);
      std::vector<std::vector<int32_t>> ids;
      t0 = std::chrono::steady_clock::now();
      if (m == "single") {
        ids.reserve(texts.size());
        for (const std::string& t : texts) ids.push_back(tok.encode(t, add_special));
      } else {
        ids = tok.encode_batch(texts, add_special);
      }
      const double s = seconds_since(t0);
      size_t tokens = 0;
      for (const auto& v : ids) tokens += v.size();
      std::printf(
          "{\"impl\": \"cotune\", \"mode\": \"%s\", \"threads\": %d, \"docs\": %zu, \"bytes\": %zu, \"tokens\": %zu, "
          "\"seconds\": %.4f, \"load_seconds\": %.4f, \"checksum\": \"%llu\"}\n",
          m.c_str(), m == "single" ? 1 : cotune::cpu_threads(), texts.size(), bytes, tokens, s, load_s,
          static_cast<unsigned long long>(checksum(ids)));
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return 1;
  }
  return 0;
}
