#include "track/wandb_store.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "base/error.h"
#include "track/protobuf.h"

namespace cotune::track::wandb {
namespace fs = std::filesystem;
using protobuf::put_bytes;
using protobuf::put_int;

namespace {

constexpr int64_t kBlockSize = 32768;
constexpr int64_t kChunkHeaderSize = 7;
enum ChunkType : uint8_t { kFull = 1, kFirst = 2, kMiddle = 3, kLast = 4 };

// Record fields (wandb_internal.proto).
enum RecordField : uint32_t {
  kNum = 1, kHistory = 2, kSummary = 3, kConfig = 5, kFiles = 6, kStats = 7, kOutputRaw = 13, kRun = 17,
  kExit = 18,
};

std::string timestamp(double unix_s) {  // google.protobuf.Timestamp
  std::string t;
  const double secs = std::floor(unix_s);
  put_int(t, 1, static_cast<int64_t>(secs));
  const auto nanos = static_cast<int64_t>((unix_s - secs) * 1e9);
  if (nanos > 0) put_int(t, 2, nanos);
  return t;
}

// HistoryItem / SummaryItem: nested_key (2) holding the one key, value_json (16); wandb 0.31 writes
// flat keys this way too. ConfigItem and StatsItem: key (1), value_json (16).
std::string nested_item(const JsonItem& item) {
  std::string m;
  put_bytes(m, 2, item.key);
  put_bytes(m, 16, item.value_json);
  return m;
}
std::string flat_item(const JsonItem& item) {
  std::string m;
  put_bytes(m, 1, item.key);
  put_bytes(m, 16, item.value_json);
  return m;
}

std::string config_message(const std::vector<JsonItem>& updates) {  // ConfigRecord
  std::string c;
  for (const auto& it : updates) put_bytes(c, 1, flat_item(it));
  return c;
}

std::string record(int64_t num, RecordField field, std::string_view body) {
  std::string r;
  put_int(r, kNum, num);
  put_bytes(r, field, body);
  return r;
}

}  // namespace

std::string encode_run_record(int64_t num, const RunRecordFields& run) {
  std::string m;
  put_bytes(m, 1, run.run_id);
  if (!run.entity.empty()) put_bytes(m, 2, run.entity);
  if (!run.project.empty()) put_bytes(m, 3, run.project);
  if (!run.config.empty()) put_bytes(m, 4, config_message(run.config));
  if (!run.display_name.empty()) put_bytes(m, 8, run.display_name);
  if (!run.notes.empty()) put_bytes(m, 9, run.notes);
  for (const auto& t : run.tags) put_bytes(m, 10, t);
  if (!run.host.empty()) put_bytes(m, 13, run.host);
  if (run.starting_step != 0) put_int(m, 14, run.starting_step);
  put_bytes(m, 17, timestamp(run.start_time));
  if (run.resumed) put_int(m, 18, 1);
  return record(num, kRun, m);
}

std::string encode_history_record(int64_t num, int64_t step, const std::vector<JsonItem>& items) {
  std::string m;
  for (const auto& it : items) put_bytes(m, 1, nested_item(it));
  std::string step_msg;
  if (step != 0) put_int(step_msg, 1, step);
  put_bytes(m, 2, step_msg);
  return record(num, kHistory, m);
}

std::string encode_summary_record(int64_t num, const std::vector<JsonItem>& updates) {
  std::string m;
  for (const auto& it : updates) put_bytes(m, 1, nested_item(it));
  return record(num, kSummary, m);
}

std::string encode_config_record(int64_t num, const std::vector<JsonItem>& updates) {
  return record(num, kConfig, config_message(updates));
}

std::string encode_stats_record(int64_t num, double time, const std::vector<JsonItem>& items) {
  std::string m;  // stats_type SYSTEM is 0: absent
  put_bytes(m, 2, timestamp(time));
  for (const auto& it : items) put_bytes(m, 3, flat_item(it));
  return record(num, kStats, m);
}

std::string encode_output_record(int64_t num, double time, std::string_view text, bool is_stderr) {
  std::string m;
  if (!is_stderr) put_int(m, 1, 1);  // STDOUT = 1, STDERR = 0
  put_bytes(m, 2, timestamp(time));
  put_bytes(m, 3, text);
  return record(num, kOutputRaw, m);
}

std::string encode_files_record(int64_t num, const std::vector<std::string>& paths) {
  std::string m;
  for (const auto& p : paths) {
    std::string item;
    put_bytes(item, 1, p);
    put_bytes(m, 1, item);
  }
  return record(num, kFiles, m);
}

std::string encode_exit_record(int64_t num, int exit_code, int64_t runtime_s) {
  std::string m;
  if (exit_code != 0) put_int(m, 1, exit_code);
  if (runtime_s != 0) put_int(m, 2, runtime_s);
  return record(num, kExit, m);
}

// ---- the log file ---------------------------------------------------------------------------

TransactionLog::TransactionLog(const fs::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create W&B run file {}: {}", path.string(), std::strerror(errno));
  file_ = ::fdopen(fd, "wb");
  if (!file_) {
    ::close(fd);
    fail("cannot open W&B run file {}: {}", path.string(), std::strerror(errno));
  }
  std::string header = ":W&B";
  protobuf::put_le32(header, 0xBEE1u);  // magic (u16) + version 0 (u8), then one byte we drop
  header.resize(7);
  write_raw(header);
}

TransactionLog::~TransactionLog() {
  if (file_) std::fclose(file_);
}

void TransactionLog::write_raw(std::string_view bytes) {
  if (!file_) fail("{}: write after close()", path_.string());
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size())
    fail("cannot write W&B run file {}: {}", path_.string(), std::strerror(errno));
  offset_ += static_cast<int64_t>(bytes.size());
}

void TransactionLog::append(std::string_view rec) {
  std::string out;
  bool first = true;
  size_t pos = 0;
  int64_t at = offset_;
  do {
    int64_t left = kBlockSize - at % kBlockSize;
    if (left < kChunkHeaderSize) {  // the block's tail is zero-filled
      out.append(static_cast<size_t>(left), '\0');
      at += left;
      left = kBlockSize;
    }
    const size_t room = static_cast<size_t>(left - kChunkHeaderSize);
    const size_t n = std::min(room, rec.size() - pos);
    const bool last = pos + n == rec.size();
    const uint8_t type = first && last ? kFull : first ? kFirst : last ? kLast : kMiddle;
    uLong crc = ::crc32(0L, &type, 1);
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(rec.data() + pos), static_cast<uInt>(n));
    protobuf::put_le32(out, static_cast<uint32_t>(crc));
    out.push_back(static_cast<char>(n & 0xFF));
    out.push_back(static_cast<char>((n >> 8) & 0xFF));
    out.push_back(static_cast<char>(type));
    out.append(rec.substr(pos, n));
    at += kChunkHeaderSize + static_cast<int64_t>(n);
    pos += n;
    first = false;
  } while (pos < rec.size());
  write_raw(out);
  if (std::fflush(file_) != 0) fail("cannot write W&B run file {}: {}", path_.string(), std::strerror(errno));
  ++records_;
}

void TransactionLog::close() {
  if (!file_) return;
  std::FILE* f = file_;
  file_ = nullptr;
  if (std::fclose(f) != 0) fail("cannot close W&B run file {}: {}", path_.string(), std::strerror(errno));
}

std::vector<std::string> read_transaction_log(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open W&B run file {}", path.string());
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 7 || bytes.compare(0, 4, ":W&B") != 0 || static_cast<uint8_t>(bytes[4]) != 0xE1 ||
      static_cast<uint8_t>(bytes[5]) != 0xBE || bytes[6] != 0)
    fail("{}: not a W&B run file (expected the header \":W&B\", magic 0xBEE1, version 0)", path.string());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  std::vector<std::string> out;
  std::string cur;
  bool in_record = false;
  size_t off = 7;
  while (off < bytes.size()) {
    const size_t left = kBlockSize - off % kBlockSize;
    if (left < kChunkHeaderSize) {
      off += left;
      continue;
    }
    if (bytes.size() - off < kChunkHeaderSize) fail("{}: truncated chunk header at byte {}", path.string(), off);
    const uint32_t crc = p[off] | (p[off + 1] << 8) | (p[off + 2] << 16) | (static_cast<uint32_t>(p[off + 3]) << 24);
    const size_t len = p[off + 4] | (p[off + 5] << 8);
    const uint8_t type = p[off + 6];
    if (off + kChunkHeaderSize + len > bytes.size()) fail("{}: truncated chunk at byte {}", path.string(), off);
    uLong c = ::crc32(0L, &type, 1);
    c = ::crc32(c, p + off + kChunkHeaderSize, static_cast<uInt>(len));
    if (static_cast<uint32_t>(c) != crc) fail("{}: bad chunk checksum at byte {}", path.string(), off);
    if ((type == kFull || type == kFirst) == in_record || type < kFull || type > kLast)
      fail("{}: unexpected chunk type {} at byte {}", path.string(), type, off);
    cur.append(bytes, off + kChunkHeaderSize, len);
    in_record = type == kFirst || type == kMiddle;
    if (!in_record) out.push_back(std::move(cur)), cur.clear();
    off += kChunkHeaderSize + len;
  }
  if (in_record) fail("{}: the last record is incomplete", path.string());
  return out;
}

}  // namespace cotune::track::wandb
