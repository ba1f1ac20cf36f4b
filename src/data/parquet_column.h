// Reading one column chunk of a Parquet row group, page by page: page headers, decompression (Snappy / GZIP / ZSTD
// through Debian's libraries), repetition / definition levels (RLE / bit-packed hybrid), and values (PLAIN,
// PLAIN_DICTIONARY / RLE_DICTIONARY, RLE booleans), each value rendered as JSON text. Memory: one decompressed page
// and the chunk's dictionary (pre-rendered), never the whole chunk. The DELTA_* encodings and BYTE_STREAM_SPLIT
// (written by Spark / DuckDB with format v2, and pyarrow on request) are decoded too.
#pragma once
#include <zstd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/parquet_metadata.h"

namespace cotune::data::parquet {

// How a leaf's values become JSON.
enum class ValueKind {
  boolean, int32, uint32, int64, uint64, float32, float64, float16,
  string,                                      // BYTE_ARRAY / FIXED_LEN_BYTE_ARRAY as a JSON string (UTF-8 checked later)
  decimal,                                     // INT32 / INT64 / BYTE_ARRAY / FIXED_LEN_BYTE_ARRAY, big-endian unscaled, <= 16 bytes
  date,                                        // INT32 days since 1970-01-01 -> "YYYY-MM-DD"
  time,                                        // INT32 millis / INT64 micros or nanos of the day -> "HH:MM:SS[.fff]"
  timestamp,                                   // INT64 since the epoch -> "YYYY-MM-DDTHH:MM:SS[.fff][Z]"
  int96_timestamp,                             // legacy INT96 (nanos of the day, Julian day)
  uuid,                                        // FIXED_LEN_BYTE_ARRAY(16) -> "8-4-4-4-12"
};

// One leaf column of the schema.
struct ColumnDescriptor {
  std::string path;  // dotted, for messages ("messages.list.element.role")
  PhysicalType type = PhysicalType::byte_array;
  int32_t type_length = 0;
  int16_t max_def = 0, max_rep = 0;
  ValueKind kind = ValueKind::string;
  int32_t scale = 0;      // decimal
  int32_t time_unit = 0;  // time / timestamp: 1 millis, 2 micros, 3 nanos
  bool utc = false;       // timestamp adjusted to UTC: rendered with a trailing Z
};

// Picks the ValueKind for a leaf from its physical and logical (or converted) type; throws for combinations that
// cannot be rendered faithfully (e.g. a DECIMAL wider than 16 bytes).
ColumnDescriptor describe_leaf(const SchemaElement& e, std::string path, int16_t max_def, int16_t max_rep,
                               const std::string& file);

// The level triplets of one row of one column: rep[i], def[i], and for defined values (def == max_def) their
// JSON text, text[end[i-1], end[i]) (empty for nulls).
struct ColumnRow {
  std::vector<int16_t> rep, def;
  std::vector<size_t> end;
  std::string text;
  void clear() {
    rep.clear(), def.clear(), end.clear(), text.clear();
  }
};

class ColumnChunkReader {
 public:
  // `file` / `file_size`: the whole file (mapped); `file_name` for messages.
  ColumnChunkReader(const uint8_t* file, size_t file_size, std::string file_name, const ColumnDescriptor& column,
                    const ColumnChunkMeta& meta);
  ~ColumnChunkReader();
  ColumnChunkReader(const ColumnChunkReader&) = delete;
  ColumnChunkReader& operator=(const ColumnChunkReader&) = delete;

  // Replaces `row` with the next row's triplets; false when the chunk has no more rows.
  bool read_row(ColumnRow& row);
  // Skips the next row; false when the chunk has no more rows.
  bool skip_row();

 private:
  bool load_page();  // the next data page (dictionary pages are taken on the way); false at the chunk's end
  void decode_dictionary(const PageHeader& h, const uint8_t* p, size_t n);
  void decode_data_page(const PageHeader& h, const uint8_t* p, size_t n);
  void decode_values(Encoding enc, const uint8_t* p, size_t n, size_t count);
  const uint8_t* decompress(const uint8_t* src, size_t n, size_t out_size, std::vector<uint8_t>& out);
  void render(size_t value_index, std::string& out) const;
  void render_fixed(const uint8_t* p, std::string& out) const;
  void render_bytes(std::string_view b, std::string& out) const;
  bool has_triplet();  // loads pages as needed
  [[noreturn]] void corrupt(std::string_view detail) const;

  const uint8_t* file_;
  std::string file_name_;
  ColumnDescriptor col_;
  Codec codec_;
  int64_t offset_, end_;              // the chunk's byte range still to read
  int64_t values_left_;               // from the metadata: values (triplets) not yet loaded
  size_t width_ = 0;                  // bytes per PLAIN value of fixed width
  ZSTD_DCtx* zstd_ = nullptr;

  // The dictionary, pre-rendered: entry i is dict_text_[dict_end_[i-1], dict_end_[i]).
  bool has_dict_ = false;
  std::string dict_text_;
  std::vector<size_t> dict_end_;

  // The current page.
  std::vector<uint8_t> page_buf_, dict_buf_;
  std::vector<int16_t> rep_, def_;  // empty when the column has no such levels (all 0 / all max)
  size_t page_values_ = 0, next_ = 0, next_value_ = 0;
  enum class Source { plain_fixed, plain_bits, plain_bytes, indices, rle_bools } source_ = Source::plain_fixed;
  const uint8_t* plain_ = nullptr;
  size_t plain_count_ = 0;
  std::vector<std::string_view> bytes_;
  std::vector<uint32_t> indices_;
  std::vector<uint8_t> decoded_;  // DELTA_BINARY_PACKED / BYTE_STREAM_SPLIT values as PLAIN little-endian bytes
  std::string arena_;             // DELTA_BYTE_ARRAY values, rebuilt from prefixes and suffixes
};

}  // namespace cotune::data::parquet
