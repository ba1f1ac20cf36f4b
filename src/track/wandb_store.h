// The W&B transaction log: wandb/<run dir>/run-<id>.wandb, the file the official client writes for every
// run (online or offline) and that `wandb sync` replays to the server.
//
// Layout (as wandb's own writer, core/pkg/leveldb + transactionlog): a 7-byte header
//   ":W&B" | magic 0xBEE1 (u16 LE) | version 0 (u8)
// then LevelDB-log framing over 32 KiB blocks (the header counts as part of block 0): each chunk is
//   crc32 (u32 LE; zlib's CRC-32 of the chunk type byte followed by the payload, not masked) |
//   payload length (u16 LE) | type (1 full, 2 first, 3 middle, 4 last) | payload
// A chunk header never straddles a block: fewer than 7 bytes left in a block are zero-filled. Each record
// is one serialized wandb_internal.Record protobuf; the encoders below write the fields the client
// writes for those records (numbers from wandb/proto/wandb_internal.proto).
//
// Version 0 is what wandb 0.31 writes and reads (checked in tools/check_wandb_offline.py).
#pragma once
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cotune::track::wandb {

// One key / JSON value pair, as the record items carry them (history, summary, config, stats).
struct JsonItem {
  std::string key;
  std::string value_json;
};

// The run's identity and settings: the first record of a log.
struct RunRecordFields {
  std::string run_id, entity, project, display_name, notes, host;
  std::vector<std::string> tags;
  std::vector<JsonItem> config;  // top-level config keys, values as JSON
  double start_time = 0;         // unix seconds
  int64_t starting_step = 0;     // the first _step of this log (a resumed run continues its history)
  bool resumed = false;
};

// Record encoders: each returns one serialized Record with `num` (the record's sequence number).
std::string encode_run_record(int64_t num, const RunRecordFields& run);
// history: items (key "_step" included, as the client writes it) and the step number.
std::string encode_history_record(int64_t num, int64_t step, const std::vector<JsonItem>& items);
std::string encode_summary_record(int64_t num, const std::vector<JsonItem>& updates);
std::string encode_config_record(int64_t num, const std::vector<JsonItem>& updates);
// stats: system metrics sampled at `time` (unix seconds); keys without the "system." prefix the stream adds.
std::string encode_stats_record(int64_t num, double time, const std::vector<JsonItem>& items);
// output_raw: console text (a line with its "\n"), stderr or stdout.
std::string encode_output_record(int64_t num, double time, std::string_view text, bool is_stderr);
// files: paths relative to the run's files/ folder that `wandb sync` uploads.
std::string encode_files_record(int64_t num, const std::vector<std::string>& paths);
// exit: the run ended with `exit_code` after `runtime_s` seconds.
std::string encode_exit_record(int64_t num, int exit_code, int64_t runtime_s);

// Appends records to a new .wandb file. Every append is written through (fflush), so a killed run
// keeps what it logged; a torn last chunk is what `wandb sync` already tolerates.
class TransactionLog {
 public:
  // Creates `path` (it must not exist: two writers must never share a log) and writes the header.
  explicit TransactionLog(const std::filesystem::path& path);
  ~TransactionLog();
  TransactionLog(const TransactionLog&) = delete;
  TransactionLog& operator=(const TransactionLog&) = delete;

  void append(std::string_view record);
  void close();
  const std::filesystem::path& path() const { return path_; }
  int64_t records() const { return records_; }

 private:
  void write_raw(std::string_view bytes);
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
  int64_t offset_ = 0;  // bytes written so far (the header included)
  int64_t records_ = 0;
};

// The record payloads of a .wandb file, in order (tests and tools). Checks the header and every checksum;
// fails naming the file and byte offset.
std::vector<std::string> read_transaction_log(const std::filesystem::path& path);

}  // namespace cotune::track::wandb
