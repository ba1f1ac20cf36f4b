// GGUF (llama.cpp's model file), version 3 (version 2 read too): read by mmap with zero-copy tensor
// data, write atomically (temp file, then rename).
// Layout, all little-endian:
//   "GGUF" u32 version, u64 n_tensors, u64 n_kv
//   n_kv x (string key, u32 value_type, value)        string = u64 length + bytes (no NUL)
//                                                      array  = u32 element type, u64 count, elements
//   n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset)
//   padding to `general.alignment` (default 32), then the data block; each tensor's offset is relative to
//   it and a multiple of the alignment. ne[0] is the fastest-varying dimension (PyTorch's last one).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "base/mmap.h"
#include "kernels/ggml_quants.h"

namespace cotune::formats {

// The tensor types (kernels/ggml_quants.h holds the table and the block (de)quantizers).
using kernels::GgmlType;
using kernels::GgmlTypeInfo;
using kernels::ggml_type_info;
using kernels::ggml_type_name;

enum class GgufType : uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9,
  u64 = 10, i64 = 11, f64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Arrays hold elements of one type (nested arrays are allowed by the format).
struct GgufValue {
  GgufType type = GgufType::u8;
  GgufType element_type = GgufType::u8;  // arrays only
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GgufValue>> value;

  static GgufValue u32(uint32_t v) { return {GgufType::u32, GgufType::u8, uint64_t{v}}; }
  static GgufValue i32(int32_t v) { return {GgufType::i32, GgufType::u8, int64_t{v}}; }
  static GgufValue u64(uint64_t v) { return {GgufType::u64, GgufType::u8, v}; }
  static GgufValue f32(float v) { return {GgufType::f32, GgufType::u8, double{v}}; }
  static GgufValue boolean(bool v) { return {GgufType::boolean, GgufType::u8, v}; }
  static GgufValue str(std::string v) { return {GgufType::string, GgufType::u8, std::move(v)}; }
  static GgufValue array(GgufType element_type, std::vector<GgufValue> elements) {
    return {GgufType::array, element_type, std::move(elements)};
  }
  static GgufValue string_array(const std::vector<std::string>& v);
  static GgufValue i32_array(const std::vector<int32_t>& v);
  static GgufValue f32_array(const std::vector<float>& v);

  bool is_integer() const;  // u8..i64 (not bool)
  bool is_float() const { return type == GgufType::f32 || type == GgufType::f64; }
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::f32;
  std::vector<int64_t> ne;  // file order: ne[0] fastest
  uint64_t offset = 0;      // in the data block
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  int64_t numel() const;
  std::vector<int64_t> shape() const;  // PyTorch order (ne reversed)
};

class GgufFile {
 public:
  // Maps and validates the whole file: magic and version, every string, array and tensor record within
  // the file, known value and tensor types, dimensions positive and their product and byte size free of
  // overflow, ne[0] a multiple of the block size, offsets aligned, inside the data block and not
  // overlapping. Errors name the file, the key or tensor, its type and the byte offset.
  static GgufFile open(const std::string& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return file_->path(); }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find(const std::string& name) const;  // nullptr if absent
  const GgufTensorInfo& get(const std::string& name) const;   // throws naming the file and tensor
  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* value(const std::string& key) const;  // nullptr if absent

  // Typed access; errors name the file, key and the type found. Integers of any width convert when in range.
  bool has(const std::string& key) const { return value(key) != nullptr; }
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // f32/f64 (or an integer)
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;
  std::vector<float> get_float_array(const std::string& key) const;
  std::string get_string_or(const std::string& key, const std::string& fallback) const;
  int64_t get_int_or(const std::string& key, int64_t fallback) const;
  double get_float_or(const std::string& key, double fallback) const;
  bool get_bool_or(const std::string& key, bool fallback) const;

 private:
  const GgufValue& require(const std::string& key) const;
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
};

// Builds a GGUF file (version 3). Metadata keys and tensors keep the order they were added in (as
// llama.cpp's gguf writer does). Tensor bytes are produced at write() time, one tensor at a time, so an
// exported model never needs to be held whole in memory.
class GgufWriter {
 public:
  explicit GgufWriter(uint64_t alignment = 32) : alignment_(alignment) {}
  // Sets (or replaces) a key. `general.alignment` is written when the alignment is not 32.
  void set(const std::string& key, GgufValue value);
  // `ne` in file order (ne[0] fastest). `produce` fills exactly `nbytes` bytes when called.
  using Producer = std::function<void(std::vector<uint8_t>& out)>;
  void add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, Producer produce);
  void add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, std::vector<uint8_t> bytes);
  size_t tensor_count() const { return tensors_.size(); }
  // Writes `path` via a temp file and rename; a producer that throws leaves no file at `path`.
  void write(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    uint64_t nbytes;
    Producer produce;
  };
  uint64_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Pending> tensors_;
};

}  // namespace cotune::formats
