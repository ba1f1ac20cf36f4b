// The record readers behind every dataset source: one file in, raw JSON object text out, one record at a time.
// JSON / JSON Lines files pass their records through (source.h); CSV rows (csv.h) and Parquet rows (parquet.h)
// are rendered as JSON objects, so every later stage (field extraction, record formats, templates) reads one
// record format whatever the file was.
//
//   auto reader = open_record_reader("train.parquet");   // format from the magic bytes / extension
//   std::string_view json;  RecordLocation loc;
//   while (reader->next(json, loc)) use(json);           // json is valid until the next call
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace cotune::data {

// Where a record starts, for error messages: "file:line (byte N): record K" for text formats,
// "file: row group G, record K" for Parquet.
struct RecordLocation {
  std::string file;
  int64_t line = 0;         // 1-based line of the record's first byte; 0 = not a text format
  int64_t byte_offset = 0;  // of the record's first byte in the file (text formats)
  int64_t index = 0;        // 0-based record index within the file
  int64_t row_group = -1;   // Parquet
  std::string describe() const;
};

class RecordReader {
 public:
  virtual ~RecordReader() = default;
  // Next record as JSON text (an object for CSV / Parquet; any JSON value for JSON files, checked later).
  // `json` stays valid until the next call. False at the end of the file; structural errors throw Error.
  virtual bool next(std::string_view& json, RecordLocation& loc) = 0;
  // Skips up to `n` records without rendering them where the format allows (Parquet skips whole row groups);
  // returns how many were skipped (fewer only at the end of the file).
  virtual int64_t skip(int64_t n);
  // The number of records when the file says so without being read (Parquet's footer), else -1.
  virtual int64_t known_record_count() const { return -1; }
  // Appended to "malformed JSON" messages (e.g. " (JSON Lines needs one complete object a line)").
  virtual std::string_view malformed_hint() const { return {}; }
  virtual const std::string& path() const = 0;
};

enum class DataFormat { json, csv, parquet };
std::string_view to_string(DataFormat f);

// Parquet when the file starts with "PAR1" (or ends in .parquet), CSV when it ends in .csv, else JSON
// (array or JSON Lines, told apart by the first byte).
DataFormat detect_data_format(const std::string& path);
bool is_data_file_name(const std::string& name);  // .json .jsonl .csv .parquet
std::unique_ptr<RecordReader> open_record_reader(const std::string& path);
// Records in one file: Parquet reads its footer, the text formats are scanned for record boundaries.
int64_t count_records(const std::string& path);

}  // namespace cotune::data
