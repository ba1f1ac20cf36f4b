// libFuzzer target: a GGUF file (a downloaded llama.cpp / Ollama model), read as `cotune inspect` reads it (header,
// metadata, tensor table, every tensor's data view), then imported as generate / train / eval import one
// (exporting::convert_gguf_to_hf: config, tokenizer and dequantized weights into a Hugging Face folder).
#include <filesystem>

#include "base/error.h"
#include "export/gguf_import.h"
#include "formats/gguf.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cotune::fuzz::write_input("model.gguf", data, size);
  try {
    auto f = cotune::formats::GgufFile::open(path);
    size_t total = 0;
    for (const auto& kv : f.metadata()) total += kv.first.size();
    for (const auto& t : f.tensors()) {
      total += t.name.size();
      (void)t.shape();
    }
    (void)total;
  } catch (const cotune::Error&) {
    return 0;
  }
  const std::string out = cotune::fuzz::scratch_dir() + "/imported";
  try {
    cotune::exporting::convert_gguf_to_hf(path, out);
  } catch (const cotune::Error&) {
  }
  std::error_code ec;
  std::filesystem::remove_all(out, ec);
  return 0;
}
