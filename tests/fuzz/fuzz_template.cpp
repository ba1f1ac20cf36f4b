// libFuzzer target: a --template-file (JSON {"name", "train", "prompt"}) parsed, then formatted with
// values for its fields.
#include <map>
#include <vector>

#include "base/error.h"
#include "fuzz_input.h"
#include "text/template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cotune::fuzz::write_input("template.json", data, size);
  try {
    auto t = cotune::text::PromptTemplate::load_file(path);
    std::vector<std::string> values(t.fields().size(), "value");
    const auto text = t.format_train(values, "<eos>");
    std::vector<std::string> pvalues(t.prompt_fields().size(), "value");
    const std::string prompt = t.format_prompt(pvalues);
    if (text.prompt_bytes != prompt.size() || text.text.compare(0, prompt.size(), prompt) != 0) std::abort();
    (void)t.fingerprint();
  } catch (const cotune::Error&) {
  }
  return 0;
}
