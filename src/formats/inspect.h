// What `cotune inspect` reports about a model folder (or a config.json, or a .safetensors file beside
// one): the config's architecture, sizes and memory needs, and, when weights are present, every tensor
// and whether the set matches what the config implies. The CLI only prints it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "formats/qwen2_layout.h"

namespace cotune::formats {

struct InspectedTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string file;  // file name only (shards differ)
};

struct InspectReport {
  std::string config_path;
  ModelConfig config;
  int64_t parameters = 0;
  int64_t parameters_without_embeddings = 0;  // less embed_tokens and an untied lm_head
  WeightMemory memory;
  bool has_weights = false;
  std::string weights_path;    // the checkpoint (folder / file) that was read
  std::string weights_absent;  // when !has_weights: where we looked
  std::vector<InspectedTensor> tensors;  // sorted by name
  CheckpointCheck check;
};

// `path`: a model folder, its config.json, or a .safetensors / .index.json file whose folder holds
// config.json. Weights that exist but are corrupt are an error (not "no weights").
InspectReport inspect_model(const std::string& path);
std::string inspect_text(const InspectReport& r);
std::string inspect_json(const InspectReport& r);  // one JSON object, pretty-printed

}  // namespace cotune::formats
