// Dataset sources: a JSON array of objects, JSON Lines (one object a line), CSV, Parquet, or a folder of such files,
// read as a stream. Memory stays bounded by the largest record (plus a read buffer; for Parquet one page a column),
// never by the file: each format's RecordReader (record_reader.h) hands one record at a time, as JSON text, to
// simdjson On-Demand.
//
// Parquet is told by its magic 'PAR1' (or the .parquet extension), CSV by the .csv extension; any other file is
// JSON Lines when its first non-space byte is `{`, a JSON array when it is `[`. A folder contributes its *.json,
// *.jsonl, *.csv and *.parquet files (not recursive), sorted by name.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/record_reader.h"

namespace cotune::data {

// What to do with a record that is not usable (malformed JSON, missing / non-string / empty field, bad UTF-8).
enum class OnBadRecord { error, skip };
OnBadRecord parse_on_bad_record(std::string_view s);  // "error" | "skip"
std::string_view to_string(OnBadRecord p);

// The files a --data path stands for: the file itself, or a folder's *.json / *.jsonl / *.csv / *.parquet sorted by
// name.
std::vector<std::string> list_data_files(const std::string& path);

// Splits one file into raw record texts (each one JSON value), streaming. Structural errors that leave no way to
// find the next record (unterminated string, unbalanced brackets in an array file, missing ',') throw Error
// naming file, line and byte offset; a JSON Lines file resynchronises at the next line, so its errors are
// per-record and reported by RecordSource.
class JsonRecordReader final : public RecordReader {
 public:
  enum class Format { json_array, json_lines };
  explicit JsonRecordReader(std::string path, size_t chunk_bytes = size_t{4} << 20);
  ~JsonRecordReader() override;
  JsonRecordReader(const JsonRecordReader&) = delete;
  JsonRecordReader& operator=(const JsonRecordReader&) = delete;

  // Next record: `json` views the internal buffer and stays valid until the next call. False at end of file.
  bool next(std::string_view& json, RecordLocation& loc) override;
  Format format() const { return format_; }
  const std::string& path() const override { return path_; }
  std::string_view malformed_hint() const override {
    return format_ == Format::json_lines ? " (JSON Lines needs one complete object a line)" : "";
  }
  // Bytes currently held by the read buffer (for memory tests).
  size_t buffer_capacity() const { return buf_.capacity(); }

 private:
  bool fill();  // reads more bytes after compacting; false at EOF
  void compact();
  void advance_to(size_t pos);  // consumes buf_[pos_, pos), counting lines
  [[noreturn]] void fail_at(size_t pos, std::string_view what);
  bool next_line(std::string_view& json, RecordLocation& loc);
  bool next_array_element(std::string_view& json, RecordLocation& loc);

  std::string path_;
  std::FILE* file_ = nullptr;
  Format format_ = Format::json_lines;
  std::string buf_;          // buf_[pos_, buf_.size()) not yet consumed
  size_t pos_ = 0;
  size_t chunk_;
  bool eof_ = false;
  int64_t buf_offset_ = 0;   // file offset of buf_[0]
  int64_t line_ = 1;         // line number at buf_[pos_]
  int64_t index_ = 0;
  int array_state_ = 0;      // 0: before '[', 1: expecting element or ']', 2: expecting ',' or ']', 3: done
};

// One usable record: the values of the requested fields, in the requested order.
struct Record {
  int64_t row = 0;  // 0-based row over all files (bad rows count too, so selections refer to source rows)
  std::vector<std::string> values;
  std::string json;         // the whole record's JSON text (record formats that read more than string fields)
  RecordLocation location;  // where it starts (error messages)
};

// Reads records across the files of a --data path and extracts the string fields a template needs. Bad records
// throw (OnBadRecord::error) or are counted and skipped with a warning (OnBadRecord::skip).
class RecordSource {
 public:
  RecordSource(const std::string& data_path, std::vector<std::string> fields, OnBadRecord policy);
  ~RecordSource();
  RecordSource(RecordSource&&) noexcept;
  // False at the end of the last file. `r.values` is reused between calls.
  bool next(Record& r);
  // Only rows in [first, last) are parsed and returned; rows before are boundary-scanned only, and reading stops
  // at `last`. Call before the first next().
  void set_row_range(int64_t first, int64_t last);
  int64_t rows_read() const;  // rows parsed so far (good and bad, inside the row range)
  int64_t skipped() const;    // bad rows skipped so far
  const std::vector<std::string>& files() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Byte offset of the first invalid UTF-8 sequence in `s`, or -1 when it is valid.
int64_t find_invalid_utf8(std::string_view s);

}  // namespace cotune::data
