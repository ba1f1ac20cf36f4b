#include "data/parquet_metadata.h"

#include "base/error.h"

namespace cotune::data::parquet {
namespace {

using thrift::CompactReader;
using thrift::CompactType;
using Field = CompactReader::Field;

// Calls fn(field) for each field of the struct at the reader's position; fn returns false to have it skipped.
template <typename Fn>
void for_each_field(CompactReader& r, Fn&& fn) {
  r.begin_struct();
  for (Field f = r.next_field(); f.type != CompactType::stop; f = r.next_field())
    if (!fn(f)) r.skip(f.type);
  r.end_struct();
}

// Calls fn() for each element of a list (the caller reads the element).
template <typename Fn>
void for_each_element(CompactReader& r, CompactType expected, Fn&& fn) {
  auto h = r.read_list_header();
  if (h.size > 0 && h.element != expected)
    r.corrupt(fmt::format("a list of type {} where {} was expected", static_cast<int>(h.element),
                          static_cast<int>(expected)));
  for (uint32_t i = 0; i < h.size; ++i) fn();
}

void expect(CompactReader& r, const Field& f, CompactType t) {
  if (f.type != t)
    r.corrupt(fmt::format("field {} has type {}, expected {}", f.id, static_cast<int>(f.type), static_cast<int>(t)));
}

template <typename E>
E read_enum(CompactReader& r, const Field& f) {
  expect(r, f, CompactType::i32);
  return static_cast<E>(r.read_i32());
}

LogicalType parse_logical_type(CompactReader& r) {
  LogicalType lt;
  for_each_field(r, [&](const Field& f) {
    using K = LogicalType::Kind;
    expect(r, f, CompactType::structure);
    switch (f.id) {
      case 1: lt.kind = K::string; break;
      case 2: lt.kind = K::map; break;
      case 3: lt.kind = K::list; break;
      case 4: lt.kind = K::enum_; break;
      case 5:
        lt.kind = K::decimal;
        for_each_field(r, [&](const Field& g) {
          if (g.id == 1) lt.scale = (expect(r, g, CompactType::i32), r.read_i32());
          else if (g.id == 2) lt.precision = (expect(r, g, CompactType::i32), r.read_i32());
          else return false;
          return true;
        });
        return true;
      case 6: lt.kind = K::date; break;
      case 7:
      case 8:
        lt.kind = f.id == 7 ? K::time : K::timestamp;
        for_each_field(r, [&](const Field& g) {
          if (g.id == 1) lt.adjusted_to_utc = r.read_bool(g);
          else if (g.id == 2) {
            expect(r, g, CompactType::structure);
            for_each_field(r, [&](const Field& u) {  // TimeUnit: a union of empty structs
              lt.time_unit = u.id;
              return false;
            });
          } else {
            return false;
          }
          return true;
        });
        return true;
      case 10:
        lt.kind = K::integer;
        for_each_field(r, [&](const Field& g) {
          if (g.id == 1) lt.bit_width = (expect(r, g, CompactType::i8), r.read_i8());
          else if (g.id == 2) lt.is_signed = r.read_bool(g);
          else return false;
          return true;
        });
        return true;
      case 11: lt.kind = K::unknown; break;
      case 12: lt.kind = K::json; break;
      case 13: lt.kind = K::bson; break;
      case 14: lt.kind = K::uuid; break;
      case 15: lt.kind = K::float16; break;
      default: lt.kind = K::other; break;
    }
    return false;  // skip the (empty or unused) struct
  });
  return lt;
}

SchemaElement parse_schema_element(CompactReader& r) {
  SchemaElement e;
  for_each_field(r, [&](const Field& f) {
    switch (f.id) {
      case 1: e.type = read_enum<PhysicalType>(r, f), e.has_type = true; return true;
      case 2: e.type_length = (expect(r, f, CompactType::i32), r.read_i32()); return true;
      case 3: e.repetition = read_enum<Repetition>(r, f); return true;
      case 4: e.name = (expect(r, f, CompactType::binary), r.read_string()); return true;
      case 5: e.num_children = (expect(r, f, CompactType::i32), r.read_i32()); return true;
      case 6: e.converted = read_enum<ConvertedType>(r, f); return true;
      case 7: e.scale = (expect(r, f, CompactType::i32), r.read_i32()); return true;
      case 8: e.precision = (expect(r, f, CompactType::i32), r.read_i32()); return true;
      case 10: expect(r, f, CompactType::structure), e.logical = parse_logical_type(r); return true;
      default: return false;
    }
  });
  return e;
}

ColumnChunkMeta parse_column_meta(CompactReader& r, ColumnChunkMeta c) {
  for_each_field(r, [&](const Field& f) {
    switch (f.id) {
      case 1: c.type = read_enum<PhysicalType>(r, f); return true;
      case 3:
        expect(r, f, CompactType::list);
        for_each_element(r, CompactType::binary, [&] { c.path_in_schema.push_back(r.read_string()); });
        return true;
      case 4: c.codec = read_enum<Codec>(r, f); return true;
      case 5: c.num_values = (expect(r, f, CompactType::i64), r.read_i64()); return true;
      case 6: c.total_uncompressed_size = (expect(r, f, CompactType::i64), r.read_i64()); return true;
      case 7: c.total_compressed_size = (expect(r, f, CompactType::i64), r.read_i64()); return true;
      case 9: c.data_page_offset = (expect(r, f, CompactType::i64), r.read_i64()); return true;
      case 11: c.dictionary_page_offset = (expect(r, f, CompactType::i64), r.read_i64()); return true;
      default: return false;
    }
  });
  return c;
}

ColumnChunkMeta parse_column_chunk(CompactReader& r) {
  ColumnChunkMeta c;
  bool has_meta = false;
  for_each_field(r, [&](const Field& f) {
    if (f.id == 1) {
      expect(r, f, CompactType::binary);
      c.file_path = r.read_string();
      return true;
    }
    if (f.id == 3) {
      expect(r, f, CompactType::structure);
      c = parse_column_meta(r, std::move(c));
      has_meta = true;
      return true;
    }
    return false;
  });
  if (!has_meta) r.corrupt("a column chunk without its metadata (encrypted columns are not supported)");
  return c;
}

RowGroupMeta parse_row_group(CompactReader& r) {
  RowGroupMeta g;
  for_each_field(r, [&](const Field& f) {
    if (f.id == 1) {
      expect(r, f, CompactType::list);
      for_each_element(r, CompactType::structure, [&] { g.columns.push_back(parse_column_chunk(r)); });
      return true;
    }
    if (f.id == 3) {
      g.num_rows = (expect(r, f, CompactType::i64), r.read_i64());
      return true;
    }
    return false;
  });
  return g;
}

void parse_data_page_header(CompactReader& r, DataPageHeader& h, bool v2) {
  for_each_field(r, [&](const Field& f) {
    if (!v2) {
      switch (f.id) {
        case 1: h.num_values = (expect(r, f, CompactType::i32), r.read_i32()); return true;
        case 2: h.encoding = read_enum<Encoding>(r, f); return true;
        case 3: h.definition_level_encoding = read_enum<Encoding>(r, f); return true;
        case 4: h.repetition_level_encoding = read_enum<Encoding>(r, f); return true;
        default: return false;
      }
    }
    switch (f.id) {
      case 1: h.num_values = (expect(r, f, CompactType::i32), r.read_i32()); return true;
      case 2: h.num_nulls = (expect(r, f, CompactType::i32), r.read_i32()); return true;
      case 3: h.num_rows = (expect(r, f, CompactType::i32), r.read_i32()); return true;
      case 4: h.encoding = read_enum<Encoding>(r, f); return true;
      case 5: h.definition_levels_byte_length = (expect(r, f, CompactType::i32), r.read_i32()); return true;
      case 6: h.repetition_levels_byte_length = (expect(r, f, CompactType::i32), r.read_i32()); return true;
      case 7: h.is_compressed = r.read_bool(f); return true;
      default: return false;
    }
  });
}

}  // namespace

FileMetaData parse_file_metadata(const uint8_t* p, size_t n, const std::string& what) {
  CompactReader r(p, n, what);
  FileMetaData m;
  for_each_field(r, [&](const Field& f) {
    switch (f.id) {
      case 1: m.version = (expect(r, f, CompactType::i32), r.read_i32()); return true;
      case 2:
        expect(r, f, CompactType::list);
        for_each_element(r, CompactType::structure, [&] { m.schema.push_back(parse_schema_element(r)); });
        return true;
      case 3: m.num_rows = (expect(r, f, CompactType::i64), r.read_i64()); return true;
      case 4:
        expect(r, f, CompactType::list);
        for_each_element(r, CompactType::structure, [&] { m.row_groups.push_back(parse_row_group(r)); });
        return true;
      case 6: m.created_by = (expect(r, f, CompactType::binary), r.read_string()); return true;
      default: return false;
    }
  });
  return m;
}

PageHeader parse_page_header(CompactReader& r) {
  PageHeader h;
  bool has_type = false, has_sizes[2] = {false, false};
  for_each_field(r, [&](const Field& f) {
    switch (f.id) {
      case 1: h.type = read_enum<PageType>(r, f), has_type = true; return true;
      case 2: h.uncompressed_page_size = (expect(r, f, CompactType::i32), r.read_i32()), has_sizes[0] = true; return true;
      case 3: h.compressed_page_size = (expect(r, f, CompactType::i32), r.read_i32()), has_sizes[1] = true; return true;
      case 5: expect(r, f, CompactType::structure), parse_data_page_header(r, h.data, false); return true;
      case 7:
        expect(r, f, CompactType::structure);
        for_each_field(r, [&](const Field& g) {
          if (g.id == 1) h.dictionary_num_values = (expect(r, g, CompactType::i32), r.read_i32());
          else if (g.id == 2) h.dictionary_encoding = read_enum<Encoding>(r, g);
          else return false;
          return true;
        });
        return true;
      case 8: expect(r, f, CompactType::structure), parse_data_page_header(r, h.data, true); return true;
      default: return false;
    }
  });
  if (!has_type || !has_sizes[0] || !has_sizes[1]) r.corrupt("a page header without its type or sizes");
  return h;
}

std::string_view to_string(Codec c) {
  switch (c) {
    case Codec::uncompressed: return "UNCOMPRESSED";
    case Codec::snappy: return "SNAPPY";
    case Codec::gzip: return "GZIP";
    case Codec::lzo: return "LZO";
    case Codec::brotli: return "BROTLI";
    case Codec::lz4: return "LZ4";
    case Codec::zstd: return "ZSTD";
    case Codec::lz4_raw: return "LZ4_RAW";
  }
  return "an unknown codec";
}

std::string_view to_string(Encoding e) {
  switch (e) {
    case Encoding::plain: return "PLAIN";
    case Encoding::plain_dictionary: return "PLAIN_DICTIONARY";
    case Encoding::rle: return "RLE";
    case Encoding::bit_packed: return "BIT_PACKED";
    case Encoding::delta_binary_packed: return "DELTA_BINARY_PACKED";
    case Encoding::delta_length_byte_array: return "DELTA_LENGTH_BYTE_ARRAY";
    case Encoding::delta_byte_array: return "DELTA_BYTE_ARRAY";
    case Encoding::rle_dictionary: return "RLE_DICTIONARY";
    case Encoding::byte_stream_split: return "BYTE_STREAM_SPLIT";
  }
  return "an unknown encoding";
}

std::string_view to_string(PhysicalType t) {
  switch (t) {
    case PhysicalType::boolean: return "BOOLEAN";
    case PhysicalType::int32: return "INT32";
    case PhysicalType::int64: return "INT64";
    case PhysicalType::int96: return "INT96";
    case PhysicalType::float32: return "FLOAT";
    case PhysicalType::float64: return "DOUBLE";
    case PhysicalType::byte_array: return "BYTE_ARRAY";
    case PhysicalType::fixed_len_byte_array: return "FIXED_LEN_BYTE_ARRAY";
  }
  return "an unknown type";
}

}  // namespace cotune::data::parquet
