// libFuzzer target: tokenizer.json loaded, then a fixed text (ASCII, CJK, a special token) encoded and the
// ids decoded back.
#include "base/error.h"
#include "fuzz_input.h"
#include "text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cotune::fuzz::write_input("tokenizer.json", data, size);
  try {
    auto tok = cotune::text::Tokenizer::load(path);
    const auto ids = tok.encode("Hello world! 你好 <think>\n123 </think><｜end▁of▁sentence｜>");
    (void)tok.decode(ids);
    (void)tok.decode(ids, true);
    for (int32_t id : ids) (void)tok.id_to_token(id);
  } catch (const cotune::Error&) {
  }
  return 0;
}
