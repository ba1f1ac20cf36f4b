// A reader of the Thrift compact protocol, the encoding of Parquet's file metadata and page headers
// (https://github.com/apache/thrift/blob/master/doc/specs/thrift-compact-protocol.md). Only what Parquet uses:
// structs, i8/i16/i32/i64 (zigzag varints), double, binary, bool, list/set, map (skipped). Every read is bounds
// checked against the span it was given; nesting is limited, so corrupt input gives an Error, never a crash.
//
// Use: begin_struct(); for (auto f = next_field(); f.type != CompactType::stop; f = next_field()) switch (f.id) {
//        case 1: x = read_i32(); break; ... default: skip(f.type); }  end_struct();
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cotune::data::thrift {

enum class CompactType : uint8_t {
  stop = 0, bool_true = 1, bool_false = 2, i8 = 3, i16 = 4, i32 = 5, i64 = 6, dbl = 7, binary = 8,
  list = 9, set = 10, map = 11, structure = 12,
};

class CompactReader {
 public:
  // `what` names the bytes in errors, e.g. "data.parquet: file metadata". `base_offset` is the file offset of p[0].
  CompactReader(const uint8_t* p, size_t n, std::string what, int64_t base_offset = 0);

  struct Field {
    int16_t id = 0;
    CompactType type = CompactType::stop;
  };
  struct ListHeader {
    CompactType element = CompactType::stop;
    uint32_t size = 0;  // at most the bytes left (each element takes at least one byte)
  };

  void begin_struct();
  void end_struct();
  Field next_field();                     // type == stop at the struct's end
  bool read_bool(const Field& f) const;   // a bool field's value lives in its header
  bool read_list_bool();                  // a bool inside a list is one byte
  int8_t read_i8();
  int16_t read_i16();
  int32_t read_i32();
  int64_t read_i64();
  double read_double();
  std::string_view read_binary();         // views the input
  std::string read_string() { return std::string(read_binary()); }
  ListHeader read_list_header();          // list and set
  void skip(CompactType t);

  size_t position() const { return pos_; }
  [[noreturn]] void corrupt(std::string_view detail) const;

 private:
  uint64_t read_varint();
  void skip_depth(CompactType t, int depth);

  const uint8_t* p_;
  size_t n_, pos_ = 0;
  std::string what_;
  int64_t base_;
  std::vector<int16_t> last_ids_;  // field id deltas are relative to the previous field of the same struct
  int16_t last_id_ = 0;
};

}  // namespace cotune::data::thrift
