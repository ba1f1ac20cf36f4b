// Parquet file metadata (the footer) and page headers, decoded from Thrift compact
// (https://github.com/apache/parquet-format/blob/master/src/main/thrift/parquet.thrift): only the fields a reader
// of datasets needs; the rest (statistics, indexes, encryption, bloom filters) is skipped.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/thrift_compact.h"

namespace cotune::data::parquet {

enum class PhysicalType : int32_t {
  boolean = 0, int32 = 1, int64 = 2, int96 = 3, float32 = 4, float64 = 5, byte_array = 6, fixed_len_byte_array = 7,
};
enum class Repetition : int32_t { required = 0, optional = 1, repeated = 2 };
enum class Codec : int32_t { uncompressed = 0, snappy = 1, gzip = 2, lzo = 3, brotli = 4, lz4 = 5, zstd = 6, lz4_raw = 7 };
enum class Encoding : int32_t {
  plain = 0, plain_dictionary = 2, rle = 3, bit_packed = 4, delta_binary_packed = 5, delta_length_byte_array = 6,
  delta_byte_array = 7, rle_dictionary = 8, byte_stream_split = 9,
};
enum class PageType : int32_t { data_page = 0, index_page = 1, dictionary_page = 2, data_page_v2 = 3 };

// The legacy ConvertedType values a reader still meets (older writers set only these).
enum class ConvertedType : int32_t {
  none = -1, utf8 = 0, map = 1, map_key_value = 2, list = 3, enum_ = 4, decimal = 5, date = 6, time_millis = 7,
  time_micros = 8, timestamp_millis = 9, timestamp_micros = 10, uint_8 = 11, uint_16 = 12, uint_32 = 13,
  uint_64 = 14, int_8 = 15, int_16 = 16, int_32 = 17, int_64 = 18, json = 19, bson = 20, interval = 21,
};

struct LogicalType {
  enum class Kind { none, string, map, list, enum_, decimal, date, time, timestamp, integer, unknown, json, bson, uuid, float16, other };
  Kind kind = Kind::none;
  int32_t bit_width = 0;   // integer
  bool is_signed = true;   // integer
  int32_t scale = 0, precision = 0;  // decimal
  int32_t time_unit = 0;   // time / timestamp: 1 millis, 2 micros, 3 nanos
  bool adjusted_to_utc = false;
};

struct SchemaElement {
  std::string name;
  bool has_type = false;  // leaves have a physical type, groups do not
  PhysicalType type = PhysicalType::boolean;
  int32_t type_length = 0;  // FIXED_LEN_BYTE_ARRAY
  Repetition repetition = Repetition::required;
  int32_t num_children = 0;
  ConvertedType converted = ConvertedType::none;
  int32_t scale = 0, precision = 0;
  LogicalType logical;
};

struct ColumnChunkMeta {
  std::string file_path;  // non-empty: the data lives in another file (not supported)
  PhysicalType type = PhysicalType::boolean;
  std::vector<std::string> path_in_schema;
  Codec codec = Codec::uncompressed;
  int64_t num_values = 0;
  int64_t total_uncompressed_size = 0, total_compressed_size = 0;
  int64_t data_page_offset = 0;
  int64_t dictionary_page_offset = -1;  // -1: none
};

struct RowGroupMeta {
  std::vector<ColumnChunkMeta> columns;
  int64_t num_rows = 0;
};

struct FileMetaData {
  int32_t version = 0;
  std::vector<SchemaElement> schema;  // depth-first, the root first
  int64_t num_rows = 0;
  std::vector<RowGroupMeta> row_groups;
  std::string created_by;
};

struct DataPageHeader {  // v1 and v2 in one
  int32_t num_values = 0;
  int32_t num_nulls = 0, num_rows = 0;  // v2 only
  Encoding encoding = Encoding::plain;
  Encoding definition_level_encoding = Encoding::rle, repetition_level_encoding = Encoding::rle;  // v1 only
  int32_t definition_levels_byte_length = 0, repetition_levels_byte_length = 0;                  // v2 only
  bool is_compressed = true;                                                                      // v2 only
};

struct PageHeader {
  PageType type = PageType::data_page;
  int32_t uncompressed_page_size = 0, compressed_page_size = 0;
  DataPageHeader data;          // data_page / data_page_v2
  int32_t dictionary_num_values = 0;
  Encoding dictionary_encoding = Encoding::plain;
};

// `what` names the bytes in errors ("data.parquet: file metadata").
FileMetaData parse_file_metadata(const uint8_t* p, size_t n, const std::string& what);
// Parses the header at the reader's position; the page's data follows it.
PageHeader parse_page_header(thrift::CompactReader& r);

std::string_view to_string(Codec c);
std::string_view to_string(Encoding e);
std::string_view to_string(PhysicalType t);

}  // namespace cotune::data::parquet
