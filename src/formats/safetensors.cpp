#include "formats/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <simdjson.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "base/json_error.h"
#include "base/file_kind.h"

namespace cotune::formats {
namespace {

namespace fs = std::filesystem;

// The Rust safetensors crate refuses headers above 100 MB; so do we (a corrupt length otherwise asks
// for a huge allocation before any other check can run).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeInfo {
  const char* name;
  size_t size;
  // Position of the dtype in the Rust crate's `Dtype` enum. `serialize` sorts tensors by this rank,
  // descending, then by name; the writer reproduces it so files are byte-identical to Python's.
  int rank;
};

constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1, 0},     {"U8", 1, 4},   {"I8", 1, 5},    {"F8_E5M2", 1, 6}, {"F8_E4M3", 1, 7},
    {"I16", 2, 9},      {"U16", 2, 10}, {"F16", 2, 11},  {"BF16", 2, 12},   {"I32", 4, 13},
    {"U32", 4, 14},     {"F32", 4, 15}, {"F64", 8, 17},  {"I64", 8, 18},    {"U64", 8, 19},
};

const DtypeInfo* find_dtype(std::string_view name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

std::string known_dtypes() {
  std::string s;
  for (const auto& d : kDtypes) {
    if (!s.empty()) s += ", ";
    s += d.name;
  }
  return s;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// Element count of `shape` times `elem`, or false on overflow.
bool shape_bytes(const std::vector<int64_t>& shape, size_t elem, uint64_t& out) {
  uint64_t n = elem;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  out = n;
  return true;
}

// Reads a non-negative integer JSON value (simdjson gives small ints as INT64, huge as UINT64).
bool json_u64(simdjson::dom::element e, uint64_t& out) {
  if (e.is_uint64()) return !e.get_uint64().get(out);
  return false;
}

struct RawEntry {
  TensorEntry entry;
  uint64_t begin = 0, end = 0;
};

}  // namespace

int64_t first_non_finite(const TensorEntry& e) {
  // A value is NaN or infinite when all its exponent bits are set.
  auto scan = [&](auto word, auto exponent_mask) -> int64_t {
    using W = decltype(word);
    const size_t n = e.nbytes / sizeof(W);
    for (size_t i = 0; i < n; ++i) {
      W w;
      std::memcpy(&w, e.data + i * sizeof(W), sizeof(W));
      if ((w & exponent_mask) == exponent_mask) return static_cast<int64_t>(i);
    }
    return -1;
  };
  if (e.dtype_name == "F32") return scan(uint32_t{}, uint32_t{0x7F800000u});
  if (e.dtype_name == "BF16") return scan(uint16_t{}, uint16_t{0x7F80u});
  if (e.dtype_name == "F16") return scan(uint16_t{}, uint16_t{0x7C00u});
  if (e.dtype_name == "F64") return scan(uint64_t{}, uint64_t{0x7FF0000000000000ull});
  return -1;
}

size_t safetensors_dtype_size(const std::string& dtype_name) {
  const DtypeInfo* d = find_dtype(dtype_name);
  return d ? d->size : 0;
}

std::string dtype_to_safetensors(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::u8: return "U8";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
  }
  fail("dtype {} has no safetensors spelling", static_cast<int>(t));
}

Tensor TensorEntry::tensor() const {
  DType t;
  if (dtype_name == "F32") t = DType::f32;
  else if (dtype_name == "BF16") t = DType::bf16;
  else if (dtype_name == "F16") t = DType::f16;
  else if (dtype_name == "U8") t = DType::u8;
  else if (dtype_name == "I32") t = DType::i32;
  else if (dtype_name == "I64") t = DType::i64;
  else
    fail("{}: tensor {} has dtype {}, which cotune tensors cannot hold (supported: F32, BF16, F16, U8, I32, I64)",
         file, name, dtype_name);
  if (shape.size() > static_cast<size_t>(kMaxDims))
    fail("{}: tensor {} has rank {} (shape {}); cotune tensors hold at most {} dimensions", file, name, shape.size(),
         shape_str(shape), kMaxDims);
  Shape s;
  s.ndim = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) s.dims[i] = shape[i];
  // The mapping is read-only (PROT_READ): the view is for reading or for copying to the device;
  // writing through it faults.
  return Tensor(const_cast<uint8_t*>(data), t, s, Device::cpu);
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.file_ = std::make_shared<MappedFile>(path);
  const uint8_t* bytes = f.file_->data();
  const size_t size = f.file_->size();
  if (size < 8) fail("{}: not a safetensors file: {} bytes, shorter than the 8-byte header length", path, size);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little-endian u64
  if (header_len > size - 8)
    fail("{}: header length {} runs past the end of the file ({} bytes): truncated or not a safetensors file", path,
         header_len, size);
  if (header_len > kMaxHeaderBytes)
    fail("{}: header length {} exceeds the {} byte limit of the safetensors format", path, header_len,
         kMaxHeaderBytes);
  const char* header = reinterpret_cast<const char*>(bytes + 8);
  if (header_len == 0 || header[0] != '{')
    fail("{}: header does not start with '{{' (not a safetensors file, or a corrupt header)", path);

  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto err = parser.parse(header, static_cast<size_t>(header_len), true).get(doc))
    fail("{}: header is not valid JSON: {} (at {})", path, simdjson::error_message(err),
         json_syntax_error(std::string_view(header, static_cast<size_t>(header_len))));
  simdjson::dom::object root;
  if (doc.get_object().get(root)) fail("{}: header JSON is not an object", path);

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  std::vector<RawEntry> raw;
  std::set<std::string, std::less<>> seen;
  bool seen_metadata = false;
  for (auto field : root) {
    std::string name(field.key);
    if (name == "__metadata__") {
      if (seen_metadata) fail("{}: __metadata__ appears twice in the header", path);
      seen_metadata = true;
      if (field.value.is_null()) continue;
      simdjson::dom::object meta;
      if (field.value.get_object().get(meta)) fail("{}: __metadata__ must be an object of strings", path);
      for (auto m : meta) {
        std::string_view v;
        if (m.value.get_string().get(v))
          fail("{}: __metadata__ value for key \"{}\" must be a string", path, std::string(m.key));
        f.metadata_[std::string(m.key)] = std::string(v);
      }
      continue;
    }
    if (!seen.insert(name).second) fail("{}: tensor {} appears twice in the header", path, name);
    simdjson::dom::object info;
    if (field.value.get_object().get(info))
      fail("{}: tensor {}: header entry must be an object with dtype, shape, data_offsets", path, name);
    RawEntry r;
    r.entry.name = name;
    r.entry.file = path;
    std::string_view dtype;
    simdjson::dom::element e;
    if (info["dtype"].get(e) || e.get_string().get(dtype))
      fail("{}: tensor {}: missing or non-string \"dtype\"", path, name);
    r.entry.dtype_name = std::string(dtype);
    const DtypeInfo* dt = find_dtype(dtype);
    if (!dt) fail("{}: tensor {}: unknown dtype \"{}\" (known: {})", path, name, dtype, known_dtypes());
    simdjson::dom::array arr;
    if (info["shape"].get(e) || e.get_array().get(arr))
      fail("{}: tensor {}: missing or non-array \"shape\"", path, name);
    for (auto d : arr) {
      uint64_t v = 0;
      if (!json_u64(d, v) || v > static_cast<uint64_t>(INT64_MAX))
        fail("{}: tensor {}: shape entries must be non-negative integers", path, name);
      r.entry.shape.push_back(static_cast<int64_t>(v));
    }
    if (info["data_offsets"].get(e) || e.get_array().get(arr) || arr.size() != 2)
      fail("{}: tensor {}: \"data_offsets\" must be an array [begin, end]", path, name);
    if (!json_u64(arr.at(0).value_unsafe(), r.begin) || !json_u64(arr.at(1).value_unsafe(), r.end))
      fail("{}: tensor {}: data_offsets must be non-negative integers", path, name);
    if (r.end < r.begin)
      fail("{}: tensor {}: data_offsets [{}, {}] end before they begin", path, name, r.begin, r.end);
    uint64_t need = 0;
    if (!shape_bytes(r.entry.shape, dt->size, need))
      fail("{}: tensor {}: shape {} overflows a 64-bit byte count", path, name, shape_str(r.entry.shape));
    if (r.end - r.begin != need)
      fail("{}: tensor {}: shape {} of {} needs {} bytes but data_offsets [{}, {}] span {}", path, name,
           shape_str(r.entry.shape), dt->name, need, r.begin, r.end, r.end - r.begin);
    if (r.end > data_size)
      fail("{}: tensor {}: data_offsets [{}, {}] run past the end of the data block ({} bytes): the file is "
           "truncated or the offsets are wrong",
           path, name, r.begin, r.end, data_size);
    raw.push_back(std::move(r));
  }

  // The Rust crate (which Python and transformers use) requires the tensors to tile the data block
  // exactly: sorted by offset, each starts where the previous ended, and the last ends at the end of
  // the file. Gaps, overlaps and trailing bytes are all rejected; we mirror that.
  std::vector<size_t> order(raw.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::pair(raw[a].begin, raw[a].end) < std::pair(raw[b].begin, raw[b].end);
  });
  uint64_t cursor = 0;
  const RawEntry* prev = nullptr;
  for (size_t i : order) {
    const RawEntry& r = raw[i];
    if (r.begin < cursor)
      fail("{}: tensor {}: data_offsets [{}, {}] overlap tensor {} (which ends at {})", path, r.entry.name, r.begin,
           r.end, prev->entry.name, cursor);
    if (r.begin > cursor)
      fail("{}: tensor {}: data_offsets [{}, {}] leave bytes [{}, {}) covered by no tensor (safetensors requires "
           "the data block to be contiguous)",
           path, r.entry.name, r.begin, r.end, cursor, r.begin);
    cursor = r.end;
    prev = &r;
  }
  if (cursor != data_size)
    fail("{}: the tensors cover {} bytes of the {}-byte data block: {} trailing bytes belong to no tensor", path,
         cursor, data_size, data_size - cursor);

  f.entries_.reserve(raw.size());
  for (auto& r : raw) {
    r.entry.data = bytes + data_start + r.begin;
    r.entry.nbytes = static_cast<size_t>(r.end - r.begin);
    f.index_.emplace(r.entry.name, f.entries_.size());
    f.entries_.push_back(std::move(r.entry));
  }
  return f;
}

const TensorEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

// ---- Checkpoint -------------------------------------------------------------------------------

namespace {

std::string join_names(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) {
    if (!s.empty()) s += ", ";
    s += x;
  }
  return s;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    if (fs::exists(dir / "model.safetensors", ec)) {
      Checkpoint c = open((dir / "model.safetensors").string());
      c.path_ = path;
      return c;
    }
    if (fs::exists(dir / "model.safetensors.index.json", ec)) {
      Checkpoint c = open((dir / "model.safetensors.index.json").string());
      c.path_ = path;
      return c;
    }
    std::vector<std::string> found;
    for (const auto& de : fs::directory_iterator(dir, ec))
      if (de.is_regular_file(ec) && de.path().extension() == ".safetensors") found.push_back(de.path().filename());
    std::sort(found.begin(), found.end());
    if (found.size() == 1) {
      Checkpoint c = open((dir / found[0]).string());
      c.path_ = path;
      return c;
    }
    if (found.empty()) {
      const auto why = base::unsupported_in_folder(path);
      fail("{}: no weights found: looked for model.safetensors, model.safetensors.index.json, or a single "
           "*.safetensors file{}",
           path, why ? "; " + *why : std::string());
    }
    fail("{}: several .safetensors files ({}) and no model.safetensors.index.json saying how they fit together",
         path, join_names(found));
  }
  if (!fs::exists(path, ec)) fail("{}: no such file or folder", path);
  if (auto why = base::unsupported_input(path)) fail("{}", *why);

  Checkpoint c;
  c.path_ = path;
  const std::string suffix = ".index.json";
  if (path.size() > suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0) {
    const std::string text = read_file(path);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (auto err = parser.parse(text).get(doc)) {
      const std::string where = json_syntax_error(text);
      fail("{}: not valid JSON: {}", path, where.empty() ? simdjson::error_message(err) : where);
    }
    simdjson::dom::object weight_map;
    if (doc["weight_map"].get_object().get(weight_map))
      fail("{}: missing \"weight_map\" object (tensor name -> shard file)", path);
    const fs::path dir = fs::path(path).parent_path();
    std::map<std::string, size_t> shard_index;
    for (auto kv : weight_map) {
      std::string name(kv.key);
      std::string_view shard;
      if (kv.value.get_string().get(shard))
        fail("{}: weight_map entry for tensor {} must be a file name string", path, name);
      const fs::path rel(shard);
      if (rel.is_absolute() || rel.empty() || std::find(rel.begin(), rel.end(), "..") != rel.end())
        fail("{}: weight_map entry for tensor {} names shard \"{}\", which is not a file in this folder", path, name,
             shard);
      auto it = shard_index.find(std::string(shard));
      if (it == shard_index.end()) {
        c.files_.push_back(with_context(fmt::format("{}: shard of tensor {}", path, name),
                                        [&] { return SafetensorsFile::open((dir / rel).string()); }));
        it = shard_index.emplace(std::string(shard), c.files_.size() - 1).first;
      }
      const SafetensorsFile& f = c.files_[it->second];
      const TensorEntry* e = f.find(name);
      if (!e) fail("{}: lists tensor {} in shard {}, but {} does not contain it", path, name, shard, f.path());
      if (!c.index_.emplace(name, std::pair(it->second, static_cast<size_t>(e - f.tensors().data()))).second)
        fail("{}: tensor {} appears twice in weight_map", path, name);
    }
    return c;
  }
  c.files_.push_back(SafetensorsFile::open(path));
  const auto& es = c.files_[0].tensors();
  for (size_t i = 0; i < es.size(); ++i) c.index_.emplace(es[i].name, std::pair(size_t{0}, i));
  return c;
}

const TensorEntry* Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return nullptr;
  return &files_[it->second.first].tensors()[it->second.second];
}

const TensorEntry& Checkpoint::get(const std::string& name) const {
  if (const TensorEntry* e = find(name)) return *e;
  // Suggest names that share the longest prefix: typos and naming-scheme mismatches
  // ("model.layers" vs "layers") are the usual cause.
  size_t best = 0;
  std::vector<std::string> near;
  for (const auto& [n, _] : index_) {
    size_t k = 0;
    while (k < n.size() && k < name.size() && n[k] == name[k]) ++k;
    if (k > best) {
      best = k;
      near.clear();
    }
    if (k == best && near.size() < 3) near.push_back(n);
  }
  fail("{}: tensor {} not found (expected by the model; the checkpoint holds {} tensors{}{})", path_, name,
       index_.size(), near.empty() ? "" : ", nearest: ", join_names(near));
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> v;
  v.reserve(index_.size());
  for (const auto& [n, _] : index_) v.push_back(n);
  return v;  // std::map keeps them sorted
}

// ---- Writer -----------------------------------------------------------------------------------

void SafetensorsWriter::add(const std::string& name, const std::string& dtype_name, std::vector<int64_t> shape,
                            const void* data, size_t nbytes) {
  if (name.empty() || name == "__metadata__") fail("safetensors writer: invalid tensor name \"{}\"", name);
  const DtypeInfo* dt = find_dtype(dtype_name);
  if (!dt) fail("safetensors writer: tensor {}: unknown dtype \"{}\" (known: {})", name, dtype_name, known_dtypes());
  uint64_t need = 0;
  if (!shape_bytes(shape, dt->size, need))
    fail("safetensors writer: tensor {}: invalid shape {}", name, shape_str(shape));
  if (need != nbytes)
    fail("safetensors writer: tensor {}: shape {} of {} needs {} bytes, got {}", name, shape_str(shape), dtype_name,
         need, nbytes);
  if (nbytes > 0 && data == nullptr) fail("safetensors writer: tensor {}: null data", name);
  for (const auto& p : pending_)
    if (p.name == name) fail("safetensors writer: tensor {} added twice", name);
  pending_.push_back(Pending{name, dtype_name, std::move(shape), data, nbytes});
}

void SafetensorsWriter::add(const std::string& name, const Tensor& t) {
  if (t.device != Device::cpu) fail("safetensors writer: tensor {} is on {}, expected a host tensor", name,
                                    device_name(t.device));
  std::vector<int64_t> shape(t.shape.dims.begin(), t.shape.dims.begin() + t.shape.ndim);
  add(name, dtype_to_safetensors(t.dtype), std::move(shape), t.data, t.nbytes());
}

void SafetensorsWriter::add_owned(const std::string& name, const std::string& dtype_name,
                                  std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  owned_.push_back(std::move(bytes));
  try {
    add(name, dtype_name, std::move(shape), owned_.back().data(), owned_.back().size());
  } catch (...) {
    owned_.pop_back();
    throw;
  }
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

size_t SafetensorsWriter::total_bytes() const {
  size_t n = 0;
  for (const auto& p : pending_) n += p.nbytes;
  return n;
}

std::vector<const SafetensorsWriter::Pending*> SafetensorsWriter::storage_order() const {
  std::vector<const Pending*> sorted;
  for (const auto& p : pending_) sorted.push_back(&p);
  std::sort(sorted.begin(), sorted.end(), [](const Pending* a, const Pending* b) {
    int ra = find_dtype(a->dtype)->rank, rb = find_dtype(b->dtype)->rank;
    if (ra != rb) return ra > rb;
    return a->name < b->name;
  });
  return sorted;
}

std::string SafetensorsWriter::header_json() const {
  const std::vector<const Pending*> sorted = storage_order();
  // Built by hand to fix the key order: __metadata__ first, then tensors in storage order, compact
  // separators (serde_json's output). nlohmann escapes strings exactly as serde_json does.
  std::string h = "{";
  if (!metadata_.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata_) {
      if (!first) h += ',';
      first = false;
      h += nlohmann::json(k).dump() + ":" + nlohmann::json(v).dump();
    }
    h += "}";
  }
  uint64_t offset = 0;
  for (const Pending* p : sorted) {
    if (h.size() > 1) h += ',';
    h += nlohmann::json(p->name).dump();
    h += ":{\"dtype\":\"" + p->dtype + "\",\"shape\":[";
    for (size_t i = 0; i < p->shape.size(); ++i) {
      if (i) h += ',';
      h += std::to_string(p->shape[i]);
    }
    h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + p->nbytes) + "]}";
    offset += p->nbytes;
  }
  h += "}";
  // Pad with spaces so the data block starts 8-byte aligned, as the Python library does.
  h.append((8 - h.size() % 8) % 8, ' ');
  return h;
}

namespace {

// Writes everything or throws; `fd` stays open for the caller to clean up.
void write_all(int fd, const void* data, size_t n, const std::string& tmp) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    // Linux caps a single write at ~2 GiB; chunk so huge tensors need no special case.
    ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("{}: write failed: {}", tmp, std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

void SafetensorsWriter::write(const std::string& path) const {
  const std::string header = header_json();
  const std::vector<const Pending*> sorted = storage_order();

  // Stream header and tensors straight into a temp file beside `path` (same filesystem, so the
  // rename is atomic): a multi-GB model is never buffered whole, and a crash leaves no file that
  // looks complete under the final name.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create: {}", tmp, std::strerror(errno));
  try {
    uint8_t len[8];
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    write_all(fd, len, 8, tmp);
    write_all(fd, header.data(), header.size(), tmp);
    for (const Pending* p : sorted) write_all(fd, p->data, p->nbytes, tmp);
    if (::fsync(fd) != 0) fail("{}: cannot flush to disk: {}", tmp, std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot close: {}", tmp, std::strerror(e));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot rename into place: {}", path, std::strerror(e));
  }
}

}  // namespace cotune::formats
