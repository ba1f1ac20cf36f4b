// libFuzzer target: a safetensors file (8-byte header length, JSON header, data block), opened and every
// tensor viewed as cotune's loaders do.
#include "base/error.h"
#include "formats/safetensors.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cotune::fuzz::write_input("model.safetensors", data, size);
  try {
    auto f = cotune::formats::SafetensorsFile::open(path);
    size_t total = 0;
    for (const auto& e : f.tensors()) {
      total += e.nbytes;
      try {
        cotune::Tensor t = e.tensor();
        (void)t;
      } catch (const cotune::Error&) {
      }
    }
    (void)total;
  } catch (const cotune::Error&) {
  }
  return 0;
}
