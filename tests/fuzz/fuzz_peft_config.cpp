// libFuzzer target: a PEFT adapter_config.json, read as `--init-adapter` and `merge` read it.
#include "base/error.h"
#include "formats/peft_adapter.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cotune::fuzz::write_input("adapter_config.json", data, size);
  try {
    auto c = cotune::formats::load_peft_adapter_config(path);
    (void)cotune::formats::peft_adapter_config_to_json(c);
  } catch (const cotune::Error&) {
  }
  return 0;
}
