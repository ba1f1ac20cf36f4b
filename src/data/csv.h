// CSV files as `load_dataset("csv")` reads them (RFC 4180): the first record is the header (its names are the
// record's keys), fields may be quoted, with "" for a quote inside and newlines inside quotes; CRLF or LF line ends,
// a UTF-8 byte order mark is skipped, blank lines are skipped. Each row becomes a JSON object text.
//
// Differences from pandas (which `datasets` uses): every value stays a string (no number inference), and an
// empty field is "" rather than NaN / None. A row with fewer fields than the header gets null for the missing
// ones (as pandas); a row with more fields is an error naming its line (as pandas). Duplicate header names get
// ".1", ".2" suffixes and empty ones "Unnamed: i", as pandas names them.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "data/record_reader.h"

namespace cotune::data {

class CsvRecordReader final : public RecordReader {
 public:
  explicit CsvRecordReader(std::string path, size_t chunk_bytes = size_t{4} << 20);
  ~CsvRecordReader() override;
  CsvRecordReader(const CsvRecordReader&) = delete;
  CsvRecordReader& operator=(const CsvRecordReader&) = delete;

  bool next(std::string_view& json, RecordLocation& loc) override;
  const std::string& path() const override { return path_; }
  const std::vector<std::string>& header() const { return header_; }

 private:
  // Parses one record at buf_[pos_...] into fields_; false when the buffer ends first (more data needed).
  // Sets `consumed` to the bytes the record takes, its line end included.
  bool parse_record(size_t& consumed, bool at_eof);
  bool read_record(int64_t& line, int64_t& offset);  // false at the end of the file
  bool fill();

  std::string path_;
  std::FILE* file_ = nullptr;
  size_t chunk_;
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false;
  int64_t buf_offset_ = 0, line_ = 1, index_ = 0;
  std::vector<std::string> fields_, header_, keys_json_;
  std::string record_;
};

}  // namespace cotune::data
