// safetensors: read by mmap with zero-copy views, single files or sharded checkpoints
// (`model.safetensors.index.json`); write atomically (temp file, then rename).
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[b,e]},
// "__metadata__": {str: str}}, then the data block; offsets are relative to the data block.
#pragma once
#include <cstdint>
#include <deque>
#include <map>
#include <unordered_map>
#include <memory>
#include <string>
#include <vector>

#include "base/mmap.h"
#include "tensor/tensor.h"

namespace cotune::formats {

// One tensor in a safetensors file. `dtype_name` is the file's own spelling ("BF16", "F32", "U8", ...);
// `tensor` views the mapped bytes (device cpu) when the dtype is one cotune's DType can hold.
struct TensorEntry {
  std::string name;
  std::string dtype_name;
  std::vector<int64_t> shape;  // any rank the file uses
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::string file;  // the file holding it
  Tensor tensor() const;  // throws Error naming tensor and file when dtype/rank is not representable
};

class SafetensorsFile {
 public:
  // Maps and validates the file: header length within the file, JSON well formed, known dtypes,
  // offsets in range, non-overlapping and matching dtype x shape. Errors name the file and tensor.
  static SafetensorsFile open(const std::string& path);

  const std::vector<TensorEntry>& tensors() const { return entries_; }
  const TensorEntry* find(const std::string& name) const;  // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return file_->path(); }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorEntry> entries_;  // header order
  std::map<std::string, std::string> metadata_;
  std::unordered_map<std::string, size_t> index_;  // name -> entries_ position
};

// All tensors of a checkpoint folder or file: `model.safetensors`, or the shards named by
// `model.safetensors.index.json` (`weight_map`), or a single given .safetensors path.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& path);  // folder or file
  const TensorEntry* find(const std::string& name) const;
  // Throws Error "<file>: tensor <name> not found (expected ...)".
  const TensorEntry& get(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::pair<size_t, size_t>> index_;  // name -> (file, entry)
};

// Builds a safetensors file in memory-light fashion and writes it atomically.
class SafetensorsWriter {
 public:
  // Adds a tensor; the bytes are copied at write() time from `data` (which must stay valid until then).
  void add(const std::string& name, const std::string& dtype_name, std::vector<int64_t> shape, const void* data,
           size_t nbytes);
  void add(const std::string& name, const Tensor& t);  // host tensor
  // Adds a tensor whose bytes the writer keeps (for data computed on the fly, e.g. converted dtypes).
  void add_owned(const std::string& name, const std::string& dtype_name, std::vector<int64_t> shape,
                 std::vector<uint8_t> bytes);
  void set_metadata(const std::string& key, const std::string& value);
  // Writes `path` (tensors sorted by name, 8-byte aligned header as HF writes it) via temp + rename.
  void write(const std::string& path) const;
  size_t total_bytes() const;
  // The header JSON as write() emits it (padded with spaces to a multiple of 8 bytes). Tensors are
  // ordered as the Rust safetensors crate orders them: by dtype (wider first), then by name; metadata
  // keys sorted.
  std::string header_json() const;

 private:
  struct Pending {
    std::string name, dtype;
    std::vector<int64_t> shape;
    const void* data;
    size_t nbytes;
  };
  std::vector<const Pending*> storage_order() const;
  std::vector<Pending> pending_;
  std::deque<std::vector<uint8_t>> owned_;  // add_owned buffers (deque: pointers stay valid)
  std::map<std::string, std::string> metadata_;
};

// Index of the first NaN or infinity in a floating-point tensor (F32, BF16, F16, F64), or -1 when every
// value is finite or the dtype is not floating point. Reads the mapped bytes (about 10 GB/s).
int64_t first_non_finite(const TensorEntry& e);

std::string dtype_to_safetensors(DType t);  // "F32", "BF16", ...
size_t safetensors_dtype_size(const std::string& dtype_name);  // 0 if unknown

}  // namespace cotune::formats
