// Where a command's model comes from: a Hugging Face folder, org/name in the HF cache, or a GGUF file (or a
// folder holding one), which is converted once into a cached Hugging Face folder (export/gguf_import.h).
#pragma once
#include <string>

#include "export/gguf_import.h"
#include "hub/hf_cache.h"

namespace cotune::cli {

inline std::string resolve_model_dir(const std::string& spec) {
  if (exporting::is_gguf_model(spec)) return exporting::gguf_model_dir(spec);
  return hub::resolve(spec).path.string();
}

}  // namespace cotune::cli
