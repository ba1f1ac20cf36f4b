// libFuzzer target: config.json parsed into a ModelConfig, then everything cotune derives from it before
// loading weights (the expected tensor list, memory estimates, parameter counts).
#include "base/error.h"
#include "formats/model_config.h"
#include "formats/qwen2_layout.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto c = cotune::formats::parse_model_config(text, "config.json");
    auto tensors = cotune::formats::expected_tensors(c);
    auto mem = cotune::formats::weight_memory(c);
    (void)tensors;
    (void)mem;
    (void)c.parameter_count();
    (void)c.linear_parameter_count();
    (void)cotune::formats::model_config_to_json(c);
  } catch (const cotune::Error&) {
  }
  return 0;
}
