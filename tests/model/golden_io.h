// Reading the golden fixtures written by tools/make_golden.py.
#pragma once
#include <string>
#include <vector>

#include "formats/safetensors.h"
#include "model/qwen2.h"

namespace cotune::testing {

inline std::vector<float> read_f32(const formats::SafetensorsFile& f, const std::string& name) {
  const formats::TensorEntry* e = f.find(name);
  if (!e) fail("{}: golden tensor {} missing", f.path(), name);
  if (e->dtype_name != "F32") fail("{}: golden tensor {} is {}, expected F32", f.path(), name, e->dtype_name);
  std::vector<float> v(e->nbytes / 4);
  std::memcpy(v.data(), e->data, e->nbytes);
  return v;
}

inline std::vector<int32_t> read_i32(const formats::SafetensorsFile& f, const std::string& name) {
  const formats::TensorEntry* e = f.find(name);
  if (!e) fail("{}: golden tensor {} missing", f.path(), name);
  std::vector<int32_t> v(e->nbytes / 4);
  std::memcpy(v.data(), e->data, e->nbytes);
  return v;
}

inline model::PackedBatch read_batch(const formats::SafetensorsFile& f) {
  model::PackedBatch b;
  b.input_ids = read_i32(f, "input_ids");
  b.position_ids = read_i32(f, "position_ids");
  b.targets = read_i32(f, "targets");
  b.cu_seqlens = read_i32(f, "cu_seqlens");
  return b;
}

}  // namespace cotune::testing
