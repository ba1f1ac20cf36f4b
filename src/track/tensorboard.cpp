#include "track/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "base/error.h"
#include "base/log.h"
#include "track/protobuf.h"

namespace cotune::track {
namespace fs = std::filesystem;

// ---- CRC32C ---------------------------------------------------------------------------------

namespace {

// Byte-wise table for the reflected Castagnoli polynomial, built at compile time.
constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : (c >> 1);
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = kCrc32cTable[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// ---- TFRecord -------------------------------------------------------------------------------

namespace {

using protobuf::put_le32;
using protobuf::put_le64;

uint64_t get_le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

std::string tfrecord_frame(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_le64(out, data.size());
  put_le32(out, masked_crc32c(out.data(), 8));
  out.append(data);
  put_le32(out, masked_crc32c(data.data(), data.size()));
  return out;
}

std::vector<std::string> read_tfrecords(const fs::path& file, bool allow_torn_tail) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("cannot open TFRecord file {}", file.string());
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  std::vector<std::string> records;
  size_t off = 0;
  while (off < bytes.size()) {
    auto torn = [&](const char* what) {
      if (!allow_torn_tail) fail("{}: truncated record at byte {} ({})", file.string(), off, what);
      log::warn("{}: ignoring a truncated last record at byte {} ({})", file.string(), off, what);
    };
    if (bytes.size() - off < 12) {
      torn("header");
      break;
    }
    const uint64_t len = get_le(p + off, 8);
    if (static_cast<uint32_t>(get_le(p + off + 8, 4)) != masked_crc32c(p + off, 8))
      fail("{}: bad length CRC of the record at byte {}", file.string(), off);
    if (bytes.size() - off - 12 < len + 4) {
      torn("data");
      break;
    }
    const unsigned char* data = p + off + 12;
    if (static_cast<uint32_t>(get_le(data + len, 4)) != masked_crc32c(data, len))
      fail("{}: bad data CRC of the record at byte {}", file.string(), off);
    records.emplace_back(reinterpret_cast<const char*>(data), len);
    off += 12 + len + 4;
  }
  return records;
}

// ---- protobuf encoding ----------------------------------------------------------------------

namespace {

using protobuf::put_bytes;
using protobuf::put_double;
using protobuf::put_float;
using protobuf::put_int;

// Event header: wall_time (1), step (2).
std::string event_head(double wall_time, int64_t step) {
  std::string e;
  put_double(e, 1, wall_time);
  if (step != 0) put_int(e, 2, step);  // proto3: a zero field is simply absent
  return e;
}

}  // namespace

std::string encode_file_version_event(double wall_time, std::string_view version) {
  std::string e = event_head(wall_time, 0);
  put_bytes(e, 3, version);
  return e;
}

std::string encode_scalars_event(double wall_time, int64_t step,
                                 const std::vector<std::pair<std::string, float>>& tagged_values) {
  std::string summary;
  for (const auto& [tag, v] : tagged_values) {
    std::string value;
    put_bytes(value, 1, tag);
    put_float(value, 2, v);
    put_bytes(summary, 1, value);
  }
  std::string e = event_head(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

std::string encode_text_event(double wall_time, int64_t step, std::string_view tag, std::string_view text) {
  std::string plugin_data;
  put_bytes(plugin_data, 1, "text");
  std::string metadata;
  put_bytes(metadata, 1, plugin_data);
  std::string tensor;
  put_int(tensor, 1, 7);   // dtype DT_STRING
  put_bytes(tensor, 2, "");  // tensor_shape: a scalar (no dims)
  put_bytes(tensor, 8, text);
  std::string value;
  put_bytes(value, 1, tag);
  put_bytes(value, 8, tensor);
  put_bytes(value, 9, metadata);
  std::string summary;
  put_bytes(summary, 1, value);
  std::string e = event_head(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

std::string encode_session_start_event(double wall_time, int64_t step) {
  std::string session_log;
  put_int(session_log, 1, 1);  // status START
  std::string e = event_head(wall_time, step);
  put_bytes(e, 7, session_log);
  return e;
}

std::string tensorboard_tag(std::string_view key) {
  if (key.starts_with("eval_") && key.size() > 5) return "eval/" + std::string(key.substr(5));
  return "train/" + std::string(key);
}

// ---- sink -----------------------------------------------------------------------------------

namespace {

std::string host_name() {
  std::array<char, 256> buf{};
  if (gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string h(buf.data());
  for (char& c : h)
    if (c == '/') c = '_';  // a file name component
  return h;
}

}  // namespace

TensorBoardSink::TensorBoardSink(const fs::path& dir, const TensorBoardOptions& options)
    : fixed_wall_time_(options.wall_time) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create TensorBoard directory {}: {}", dir.string(), ec.message());
  const double t = now();
  const std::string base = fmt::format("events.out.tfevents.{}.{}", static_cast<int64_t>(std::floor(t)),
                                       options.hostname ? *options.hostname : host_name());
  path_ = dir / base;
  for (int n = 1; fs::exists(path_, ec); ++n) path_ = dir / fmt::format("{}.{}", base, n);
  file_ = std::fopen(path_.c_str(), "wb");
  if (!file_) fail("cannot create TensorBoard event file {}: {}", path_.string(), std::strerror(errno));
  write_record(encode_file_version_event(t));
  write_record(encode_session_start_event(t, options.resume_step.value_or(0) + 1));
}

TensorBoardSink::~TensorBoardSink() {
  try {
    close();
  } catch (const Error& e) {
    log::error("{}", e.what());
  }
}

double TensorBoardSink::now() const {
  if (fixed_wall_time_) return *fixed_wall_time_;
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

void TensorBoardSink::write_record(std::string_view event) {
  if (!file_) fail("{}: write after close()", path_.string());
  const std::string rec = tfrecord_frame(event);
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size() || std::fflush(file_) != 0)
    fail("cannot write TensorBoard event file {}: {}", path_.string(), std::strerror(errno));
}

void TensorBoardSink::log(int64_t step, const Scalars& scalars) {
  std::vector<std::pair<std::string, float>> values;
  values.reserve(scalars.size());
  for (const auto& [k, v] : scalars) {
    if (k == "step") continue;
    values.emplace_back(tensorboard_tag(k), static_cast<float>(v));
  }
  if (values.empty()) return;
  write_record(encode_scalars_event(now(), step, values));
}

void TensorBoardSink::log_text(int64_t step, std::string_view tag, std::string_view text) {
  write_record(encode_text_event(now(), step, tag, text));
}

void TensorBoardSink::flush() {
  if (file_) std::fflush(file_);
}

void TensorBoardSink::close() {
  if (!file_) return;
  std::FILE* f = file_;
  file_ = nullptr;
  if (std::fclose(f) != 0) fail("cannot close {}: {}", path_.string(), std::strerror(errno));
}

}  // namespace cotune::track
