// TensorBoard event files, written by hand (DESIGN.md: a small format, no protobuf library).
//
// A file is a sequence of TFRecords:
//   u64 length (little-endian) | u32 masked_crc32c(length bytes) | data | u32 masked_crc32c(data)
// where mask(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 and CRC32C is the Castagnoli CRC.
// Each record's data is a protobuf `tensorflow.Event` (event.proto), of which we write:
//   Event   { double wall_time = 1; int64 step = 2; oneof { string file_version = 3;
//             Summary summary = 5; SessionLog session_log = 7; } }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; TensorProto tensor = 8; SummaryMetadata metadata = 9; }
//   SummaryMetadata { PluginData plugin_data = 1; }  PluginData { string plugin_name = 1; }
//   TensorProto { DataType dtype = 1 (DT_STRING = 7); TensorShapeProto tensor_shape = 2; bytes string_val = 8; }
//   SessionLog { SessionStatus status = 1 (START = 1); }
// The first record is the file_version event "brain.Event:2", the second a SessionLog START at the first
// step this file will hold: TensorBoard then drops events at that step or later from the folder's older
// files (a previous run into the same OUTPUT, or the abandoned tail before a resume), as it does for
// TensorFlow's own restarts. Scalars are simple_value (TensorBoard migrates them to its scalars plugin);
// text is a DT_STRING tensor tagged for the "text" plugin.
//
// Usage (normally through MetricsHub::open({"tensorboard"}, ...)):
//   cotune::track::TensorBoardSink tb("OUTPUT/tb");
//   tb.log(1, {{"loss", 2.3}, {"lr", 2e-4}});   // tags "train/loss", "train/lr"
//   tb.log(10, {{"eval_loss", 2.1}});            // tag "eval/loss"
//   $ tensorboard --logdir OUTPUT/tb
#pragma once
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "track/metrics.h"

namespace cotune::track {

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), e.g. crc32c("123456789") == 0xE3069283.
uint32_t crc32c(const void* data, size_t size);
inline uint32_t crc32c(std::string_view s) { return crc32c(s.data(), s.size()); }
// The masked CRC TFRecord stores (so that CRCs of data that itself holds CRCs stay well distributed).
uint32_t masked_crc32c(const void* data, size_t size);

// One TFRecord: framing around `data`, as bytes.
std::string tfrecord_frame(std::string_view data);
// Reads the records of a TFRecord file, checking both CRCs of each. A torn last record (a writer that
// was killed mid-record) ends the list with a warning when `allow_torn_tail`; any other damage fails
// naming the file and byte offset.
std::vector<std::string> read_tfrecords(const std::filesystem::path& file, bool allow_torn_tail = true);

// Event payloads (protobuf bytes, see the top of this file).
std::string encode_file_version_event(double wall_time, std::string_view version = "brain.Event:2");
std::string encode_scalars_event(double wall_time, int64_t step,
                                 const std::vector<std::pair<std::string, float>>& tagged_values);
std::string encode_text_event(double wall_time, int64_t step, std::string_view tag, std::string_view text);
std::string encode_session_start_event(double wall_time, int64_t step);

// The tag a metric key gets: "eval_loss" -> "eval/loss", anything else "K" -> "train/K" (the grouping
// transformers' TensorBoard callback uses, so runs of both tools line up in one TensorBoard).
std::string tensorboard_tag(std::string_view key);

struct TensorBoardOptions {
  // Resuming after step N: the SessionLog START is at step N+1, so TensorBoard keeps the earlier files'
  // steps <= N and drops the abandoned tail. Without it (a fresh run) START is at step 1: an older run's
  // events in the same folder no longer show.
  std::optional<int64_t> resume_step;
  // For tests: fixed wall time and host name instead of the clock and gethostname().
  std::optional<double> wall_time;
  std::optional<std::string> hostname;
};

// Writes DIR/events.out.tfevents.<unix seconds>.<hostname> (a ".N" suffix if that name exists), one
// event a log() call holding all its scalars, flushed after every record.
class TensorBoardSink : public MetricsSink {
 public:
  explicit TensorBoardSink(const std::filesystem::path& dir, const TensorBoardOptions& options = {});
  ~TensorBoardSink() override;
  TensorBoardSink(const TensorBoardSink&) = delete;
  TensorBoardSink& operator=(const TensorBoardSink&) = delete;

  void log(int64_t step, const Scalars& scalars) override;
  void log_text(int64_t step, std::string_view tag, std::string_view text) override;
  void flush() override;
  void close() override;
  std::string_view name() const override { return "tensorboard"; }
  const std::filesystem::path& path() const { return path_; }

 private:
  double now() const;
  void write_record(std::string_view event);

  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
  std::optional<double> fixed_wall_time_;
};

}  // namespace cotune::track
