// A Parquet reader for the subset datasets use (our own: no Arrow), yielding each row as JSON object text.
//
// Supported: file metadata (Thrift compact), data pages v1 and v2, PLAIN and dictionary (PLAIN_DICTIONARY /
// RLE_DICTIONARY) encodings, RLE booleans, RLE / bit-packed levels, UNCOMPRESSED / SNAPPY / GZIP / ZSTD, several
// row groups, empty pages, nulls, and nested data through repetition / definition levels: LIST -> JSON array,
// MAP -> JSON object, other groups -> JSON object (so `messages: list<struct<role, content>>` reads as
// [{"role": ..., "content": ...}, ...]). Values: BOOLEAN, INT32 / INT64 (signed or unsigned), FLOAT / DOUBLE
// (NaN / Inf -> null), strings and binary (JSON strings), DECIMAL (a JSON number), DATE / TIME / TIMESTAMP / INT96
// (ISO 8601 strings), UUID, FLOAT16. Not supported, each named in its error: LZ4 / LZ4_RAW / BROTLI / LZO codecs,
// DELTA_* and BYTE_STREAM_SPLIT encodings, encrypted files, column data in other files.
//
// Memory: the footer, then per column one decompressed page and its dictionary; row groups are read one after
// the other (the file is memory-mapped, so untouched row groups cost nothing). Every size read from the file is
// checked against the file and fixed limits before anything is allocated; every error names the file, the column
// and what was expected.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/record_reader.h"

namespace cotune::data {

class ParquetReader final : public RecordReader {
 public:
  explicit ParquetReader(std::string path);
  ~ParquetReader() override;

  bool next(std::string_view& json, RecordLocation& loc) override;
  int64_t skip(int64_t n) override;
  int64_t known_record_count() const override;
  const std::string& path() const override;

  // The top-level column names, in order (the keys of each record).
  std::vector<std::string> column_names() const;
  int64_t row_group_count() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cotune::data
