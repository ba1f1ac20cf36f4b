#include "formats/gguf.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>

#include <simdjson.h>

#include "base/error.h"

namespace cotune::formats {
namespace {

constexpr const char* kGgufTypeNames[] = {"u8",   "i8",     "u16",    "i16",   "u32", "i32", "f32",
                                          "bool", "string", "array", "u64",   "i64", "f64"};

// A bounds-checked cursor over the mapped bytes; every read names what it was reading and where.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size, const std::string& path) : data_(data), size_(size), path_(path) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      fail("{}: truncated GGUF file: {} at offset {} needs {} bytes, the file has {} left", path_, what, pos_, n, left());
  }
  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& what) {
    const uint64_t at = pos_;
    const uint64_t n = read<uint64_t>(what + " length");
    if (n > left())
      fail("{}: {} at offset {} has length {}, beyond the end of the file ({} bytes left)", path_, what, at, n, left());
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    // GGUF strings are UTF-8 (what gguf-py and llama.cpp write); anything else would reach the JSON and
    // tokenizer code of an import as bytes no UTF-8 reader accepts.
    if (!simdjson::validate_utf8(s.data(), s.size()))
      fail("{}: {} at offset {} is not valid UTF-8 (GGUF strings are UTF-8)", path_, what, at);
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

// Smallest number of bytes an element of `t` takes in the file (so a count can be checked before reading).
uint64_t min_element_bytes(GgufType t) {
  switch (t) {
    case GgufType::u8: case GgufType::i8: case GgufType::boolean: return 1;
    case GgufType::u16: case GgufType::i16: return 2;
    case GgufType::u32: case GgufType::i32: case GgufType::f32: return 4;
    case GgufType::string: return 8;
    case GgufType::array: return 12;
    default: return 8;
  }
}

bool known_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::f64); }

GgufValue read_value(Cursor& c, GgufType type, const std::string& key, const std::string& path, int depth) {
  const std::string what = "value of key '" + key + "'";
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufType::u8: v.value = uint64_t{c.read<uint8_t>(what)}; break;
    case GgufType::i8: v.value = int64_t{c.read<int8_t>(what)}; break;
    case GgufType::u16: v.value = uint64_t{c.read<uint16_t>(what)}; break;
    case GgufType::i16: v.value = int64_t{c.read<int16_t>(what)}; break;
    case GgufType::u32: v.value = uint64_t{c.read<uint32_t>(what)}; break;
    case GgufType::i32: v.value = int64_t{c.read<int32_t>(what)}; break;
    case GgufType::u64: v.value = c.read<uint64_t>(what); break;
    case GgufType::i64: v.value = c.read<int64_t>(what); break;
    case GgufType::f32: v.value = double{c.read<float>(what)}; break;
    case GgufType::f64: v.value = c.read<double>(what); break;
    case GgufType::boolean: {
      const uint64_t at = c.pos();
      const uint8_t b = c.read<uint8_t>(what);
      if (b > 1) fail("{}: key '{}': bool at offset {} is {}, expected 0 or 1", path, key, at, b);
      v.value = b == 1;
      break;
    }
    case GgufType::string: v.value = c.read_string(what); break;
    case GgufType::array: {
      const uint64_t at = c.pos();
      if (depth > 8) fail("{}: key '{}': arrays nested deeper than 8 at offset {}", path, key, at);
      const uint32_t et = c.read<uint32_t>(what + " element type");
      if (!known_value_type(et)) fail("{}: key '{}': unknown array element type {} at offset {}", path, key, et, at);
      v.element_type = static_cast<GgufType>(et);
      const uint64_t n = c.read<uint64_t>(what + " element count");
      if (n > c.left() / min_element_bytes(v.element_type))
        fail("{}: key '{}': array of {} {} at offset {} cannot fit in the {} bytes left", path, key, n,
             gguf_type_name(v.element_type), at, c.left());
      std::vector<GgufValue> elems;
      elems.reserve(n);
      for (uint64_t i = 0; i < n; ++i) elems.push_back(read_value(c, v.element_type, key, path, depth + 1));
      v.value = std::move(elems);
      break;
    }
  }
  return v;
}

std::string dims_str(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

// Writes into a file descriptor, counting bytes; errors name the temp path.
class FdWriter {
 public:
  FdWriter(int fd, const std::string& path) : fd_(fd), path_(path) {}
  void write(const void* p, size_t n) {
    buf_.insert(buf_.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    pos_ += n;
    if (buf_.size() >= (1u << 22)) flush();
  }
  template <typename T>
  void put(T v) { write(&v, sizeof(T)); }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    write(s.data(), s.size());
  }
  void pad_to(uint64_t alignment) {
    static const uint8_t zeros[256] = {};
    while (pos_ % alignment) write(zeros, std::min<uint64_t>(alignment - pos_ % alignment, sizeof(zeros)));
  }
  void flush() {
    size_t off = 0;
    while (off < buf_.size()) {
      ssize_t w = ::write(fd_, buf_.data() + off, buf_.size() - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("{}: write failed: {}", path_, strerror(errno));
      }
      off += static_cast<size_t>(w);
    }
    buf_.clear();
  }
  uint64_t pos() const { return pos_; }

 private:
  int fd_;
  const std::string& path_;
  std::vector<uint8_t> buf_;
  uint64_t pos_ = 0;
};

void write_value(FdWriter& w, const GgufValue& v) {
  switch (v.type) {
    case GgufType::u8: w.put<uint8_t>(static_cast<uint8_t>(std::get<uint64_t>(v.value))); break;
    case GgufType::i8: w.put<int8_t>(static_cast<int8_t>(std::get<int64_t>(v.value))); break;
    case GgufType::u16: w.put<uint16_t>(static_cast<uint16_t>(std::get<uint64_t>(v.value))); break;
    case GgufType::i16: w.put<int16_t>(static_cast<int16_t>(std::get<int64_t>(v.value))); break;
    case GgufType::u32: w.put<uint32_t>(static_cast<uint32_t>(std::get<uint64_t>(v.value))); break;
    case GgufType::i32: w.put<int32_t>(static_cast<int32_t>(std::get<int64_t>(v.value))); break;
    case GgufType::u64: w.put<uint64_t>(std::get<uint64_t>(v.value)); break;
    case GgufType::i64: w.put<int64_t>(std::get<int64_t>(v.value)); break;
    case GgufType::f32: w.put<float>(static_cast<float>(std::get<double>(v.value))); break;
    case GgufType::f64: w.put<double>(std::get<double>(v.value)); break;
    case GgufType::boolean: w.put<uint8_t>(std::get<bool>(v.value) ? 1 : 0); break;
    case GgufType::string: w.put_string(std::get<std::string>(v.value)); break;
    case GgufType::array: {
      const auto& elems = std::get<std::vector<GgufValue>>(v.value);
      w.put<uint32_t>(static_cast<uint32_t>(v.element_type));
      w.put<uint64_t>(elems.size());
      for (const auto& e : elems) {
        COTUNE_CHECK(e.type == v.element_type, "gguf writer: array of {} holds a {}", gguf_type_name(v.element_type),
                     gguf_type_name(e.type));
        write_value(w, e);
      }
      break;
    }
  }
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kGgufTypeNames) ? kGgufTypeNames[i] : "unknown";
}

GgufValue GgufValue::string_array(const std::vector<std::string>& v) {
  std::vector<GgufValue> e;
  e.reserve(v.size());
  for (const auto& s : v) e.push_back(str(s));
  return array(GgufType::string, std::move(e));
}

GgufValue GgufValue::i32_array(const std::vector<int32_t>& v) {
  std::vector<GgufValue> e;
  e.reserve(v.size());
  for (int32_t x : v) e.push_back(i32(x));
  return array(GgufType::i32, std::move(e));
}

GgufValue GgufValue::f32_array(const std::vector<float>& v) {
  std::vector<GgufValue> e;
  e.reserve(v.size());
  for (float x : v) e.push_back(f32(x));
  return array(GgufType::f32, std::move(e));
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::u8: case GgufType::i8: case GgufType::u16: case GgufType::i16: case GgufType::u32:
    case GgufType::i32: case GgufType::u64: case GgufType::i64: return true;
    default: return false;
  }
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

std::vector<int64_t> GgufTensorInfo::shape() const { return {ne.rbegin(), ne.rend()}; }

GgufFile GgufFile::open(const std::string& path) {
  GgufFile g;
  g.file_ = std::make_shared<MappedFile>(path);
  const uint8_t* base = g.file_->data();
  const uint64_t size = g.file_->size();
  Cursor c(base, size, path);
  if (size < 4 || memcmp(base, "GGUF", 4) != 0)
    fail("{}: not a GGUF file (the first 4 bytes are not \"GGUF\")", path);
  c.read<uint32_t>("magic");
  g.version_ = c.read<uint32_t>("version");
  if (g.version_ != 2 && g.version_ != 3)
    fail("{}: GGUF version {} is not supported (expected 2 or 3)", path, g.version_);
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each key-value takes at least 8 (key length) + 4 (type) + 1 bytes, each tensor record at least 8 + 4 + 4 + 8.
  if (n_kv > c.left() / 13) fail("{}: metadata count {} cannot fit in a file of {} bytes", path, n_kv, size);

  for (uint64_t i = 0; i < n_kv; ++i) {
    const uint64_t at = c.pos();
    std::string key = c.read_string("metadata key #" + std::to_string(i));
    const uint32_t t = c.read<uint32_t>("type of key '" + key + "'");
    if (!known_value_type(t)) fail("{}: key '{}' at offset {} has unknown value type {}", path, key, at, t);
    GgufValue v = read_value(c, static_cast<GgufType>(t), key, path, 0);
    if (g.kv_index_.count(key)) fail("{}: key '{}' appears twice (second at offset {})", path, key, at);
    g.kv_index_[key] = g.kv_.size();
    g.kv_.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = g.value("general.alignment")) {
    if (a->type != GgufType::u32) fail("{}: general.alignment is a {}, expected u32", path, gguf_type_name(a->type));
    const uint64_t al = std::get<uint64_t>(a->value);
    if (al == 0 || (al & (al - 1)) != 0) fail("{}: general.alignment {} is not a power of two", path, al);
    g.alignment_ = al;
  }

  if (n_tensors > c.left() / 24)
    fail("{}: tensor count {} cannot fit in the {} bytes after the metadata (offset {})", path, n_tensors, c.left(),
         c.pos());
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const uint64_t at = c.pos();
    GgufTensorInfo t;
    t.name = c.read_string("name of tensor #" + std::to_string(i));
    const std::string what = "tensor '" + t.name + "'";
    const uint32_t nd = c.read<uint32_t>(what + " dimension count");
    if (nd < 1 || nd > 4) fail("{}: {} at offset {} has {} dimensions, expected 1 to 4", path, what, at, nd);
    int64_t numel = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t n = c.read<uint64_t>(what + " dimension");
      if (n == 0 || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          numel > std::numeric_limits<int64_t>::max() / static_cast<int64_t>(n))
        fail("{}: {} at offset {}: dimension {} of size {} is zero or makes the element count overflow", path, what,
             at, d, n);
      t.ne.push_back(static_cast<int64_t>(n));
      numel *= static_cast<int64_t>(n);
    }
    const uint32_t type = c.read<uint32_t>(what + " type");
    const GgmlTypeInfo* ti = ggml_type_info(type);
    if (!ti) fail("{}: {} at offset {} has ggml type {}, which cotune does not know", path, what, at, type);
    t.type = ti->type;
    if (t.ne[0] % ti->block_size != 0)
      fail("{}: {} ({}, {}) at offset {}: ne[0] = {} is not a multiple of the block size {}", path, what, ti->name,
           dims_str(t.ne), at, t.ne[0], ti->block_size);
    const uint64_t blocks = static_cast<uint64_t>(numel / ti->block_size);
    if (blocks > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(ti->type_size))
      fail("{}: {} ({}, {}) at offset {}: byte size overflows", path, what, ti->name, dims_str(t.ne), at);
    t.nbytes = blocks * static_cast<uint64_t>(ti->type_size);
    t.offset = c.read<uint64_t>(what + " offset");
    if (g.index_.count(t.name)) fail("{}: tensor '{}' appears twice (second at offset {})", path, t.name, at);
    g.index_[t.name] = g.tensors_.size();
    g.tensors_.push_back(std::move(t));
  }

  const uint64_t data_start = (c.pos() + g.alignment_ - 1) / g.alignment_ * g.alignment_;
  if (data_start > size && !g.tensors_.empty())
    fail("{}: truncated GGUF file: the data block would start at offset {}, the file has {} bytes", path, data_start, size);
  const uint64_t data_size = size > data_start ? size - data_start : 0;
  std::vector<std::pair<uint64_t, size_t>> spans;
  for (size_t i = 0; i < g.tensors_.size(); ++i) {
    GgufTensorInfo& t = g.tensors_[i];
    if (t.offset % g.alignment_ != 0)
      fail("{}: tensor '{}' ({}, {}): data offset {} is not a multiple of the alignment {}", path, t.name,
           ggml_type_name(t.type), dims_str(t.ne), t.offset, g.alignment_);
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      fail("{}: tensor '{}' ({}, {}): data at offset {} + {} bytes runs past the end of the data block ({} bytes "
           "from file offset {})",
           path, t.name, ggml_type_name(t.type), dims_str(t.ne), t.offset, t.nbytes, data_size, data_start);
    t.data = base + data_start + t.offset;
    spans.emplace_back(t.offset, i);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t k = 1; k < spans.size(); ++k) {
    const GgufTensorInfo& a = g.tensors_[spans[k - 1].second];
    const GgufTensorInfo& b = g.tensors_[spans[k].second];
    if (a.offset + a.nbytes > b.offset)
      fail("{}: tensor '{}' (offset {}, {} bytes) overlaps tensor '{}' at offset {}", path, a.name, a.offset, a.nbytes,
           b.name, b.offset);
  }
  return g;
}

const GgufTensorInfo* GgufFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::get(const std::string& name) const {
  const GgufTensorInfo* t = find(name);
  if (!t) fail("{}: tensor '{}' not found", path(), name);
  return *t;
}

const GgufValue* GgufFile::value(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufValue& GgufFile::require(const std::string& key) const {
  const GgufValue* v = value(key);
  if (!v) fail("{}: metadata key '{}' is missing", path(), key);
  return *v;
}

namespace {

int64_t as_int(const GgufValue& v, const std::string& path, const std::string& key) {
  if (const auto* u = std::get_if<uint64_t>(&v.value); u && v.is_integer()) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail("{}: key '{}' = {} does not fit a signed 64-bit integer", path, key, *u);
    return static_cast<int64_t>(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&v.value); i && v.is_integer()) return *i;
  fail("{}: key '{}' is a {}, expected an integer", path, key, gguf_type_name(v.type));
}

double as_float(const GgufValue& v, const std::string& path, const std::string& key) {
  if (v.is_float()) return std::get<double>(v.value);
  if (v.is_integer()) return static_cast<double>(as_int(v, path, key));
  fail("{}: key '{}' is a {}, expected a number", path, key, gguf_type_name(v.type));
}

const std::vector<GgufValue>& as_array(const GgufValue& v, const std::string& path, const std::string& key) {
  if (v.type != GgufType::array) fail("{}: key '{}' is a {}, expected an array", path, key, gguf_type_name(v.type));
  return std::get<std::vector<GgufValue>>(v.value);
}

}  // namespace

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = require(key);
  if (v.type != GgufType::string) fail("{}: key '{}' is a {}, expected a string", path(), key, gguf_type_name(v.type));
  return std::get<std::string>(v.value);
}

int64_t GgufFile::get_int(const std::string& key) const { return as_int(require(key), path(), key); }
double GgufFile::get_float(const std::string& key) const { return as_float(require(key), path(), key); }

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = require(key);
  if (v.type != GgufType::boolean) fail("{}: key '{}' is a {}, expected a bool", path(), key, gguf_type_name(v.type));
  return std::get<bool>(v.value);
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& v = require(key);
  const auto& a = as_array(v, path(), key);
  if (v.element_type != GgufType::string)
    fail("{}: key '{}' is an array of {}, expected strings", path(), key, gguf_type_name(v.element_type));
  std::vector<std::string> out;
  out.reserve(a.size());
  for (const auto& e : a) out.push_back(std::get<std::string>(e.value));
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const auto& a = as_array(require(key), path(), key);
  std::vector<int64_t> out;
  out.reserve(a.size());
  for (const auto& e : a) out.push_back(as_int(e, path(), key));
  return out;
}

std::vector<float> GgufFile::get_float_array(const std::string& key) const {
  const auto& a = as_array(require(key), path(), key);
  std::vector<float> out;
  out.reserve(a.size());
  for (const auto& e : a) out.push_back(static_cast<float>(as_float(e, path(), key)));
  return out;
}

std::string GgufFile::get_string_or(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}
int64_t GgufFile::get_int_or(const std::string& key, int64_t fallback) const { return has(key) ? get_int(key) : fallback; }
double GgufFile::get_float_or(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool_or(const std::string& key, bool fallback) const { return has(key) ? get_bool(key) : fallback; }

void GgufWriter::set(const std::string& key, GgufValue value) {
  for (auto& kv : kv_)
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, Producer produce) {
  COTUNE_CHECK(!ne.empty() && ne.size() <= 4, "gguf writer: tensor '{}' has {} dimensions, expected 1 to 4", name,
               ne.size());
  for (const auto& t : tensors_) COTUNE_CHECK(t.name != name, "gguf writer: tensor '{}' added twice", name);
  int64_t rows = 1;
  for (size_t d = 1; d < ne.size(); ++d) rows *= ne[d];
  const uint64_t nbytes = static_cast<uint64_t>(with_context("gguf writer: tensor '" + name + "'", [&] {
    return kernels::ggml_bytes(type, ne[0]) * rows;
  }));
  tensors_.push_back({name, type, std::move(ne), nbytes, std::move(produce)});
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne,
                            std::vector<uint8_t> bytes) {
  auto shared = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  add_tensor(name, type, std::move(ne), [shared](std::vector<uint8_t>& out) { out = *shared; });
}

void GgufWriter::write(const std::string& path) const {
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const std::string tmp = path + ".tmp-" + std::to_string(getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create: {}", tmp, strerror(errno));
  try {
    FdWriter w(fd, tmp);
    w.write("GGUF", 4);
    w.put<uint32_t>(3);
    w.put<uint64_t>(tensors_.size());
    const bool write_alignment = alignment_ != 32 && !std::any_of(kv_.begin(), kv_.end(), [](const auto& kv) {
      return kv.first == "general.alignment";
    });
    w.put<uint64_t>(kv_.size() + (write_alignment ? 1 : 0));
    for (const auto& [key, value] : kv_) {
      w.put_string(key);
      w.put<uint32_t>(static_cast<uint32_t>(value.type));
      write_value(w, value);
    }
    if (write_alignment) {
      w.put_string("general.alignment");
      w.put<uint32_t>(static_cast<uint32_t>(GgufType::u32));
      w.put<uint32_t>(static_cast<uint32_t>(alignment_));
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
      w.put_string(t.name);
      w.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
      for (int64_t d : t.ne) w.put<uint64_t>(static_cast<uint64_t>(d));
      w.put<uint32_t>(static_cast<uint32_t>(t.type));
      w.put<uint64_t>(offset);
      offset += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
    }
    w.pad_to(alignment_);
    std::vector<uint8_t> bytes;
    for (const auto& t : tensors_) {
      bytes.clear();
      t.produce(bytes);
      if (bytes.size() != t.nbytes)
        fail("gguf writer: tensor '{}' ({}, {}) produced {} bytes, expected {}", t.name, ggml_type_name(t.type),
             dims_str(t.ne), bytes.size(), t.nbytes);
      w.write(bytes.data(), bytes.size());
      w.pad_to(alignment_);
    }
    w.flush();
    if (::fsync(fd) != 0) fail("{}: fsync failed: {}", tmp, strerror(errno));
    ::close(fd);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot rename from {}: {}", path, tmp, strerror(e));
  }
}

}  // namespace cotune::formats
