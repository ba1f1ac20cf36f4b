// The few protobuf encoding primitives cotune's own writers need (TensorBoard events, W&B transaction
// logs): a message is built by appending fields to a std::string, nested messages as bytes fields.
// Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. Proto3 readers treat an absent field as
// zero / empty, so writers leave default values out.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace cotune::track::protobuf {

inline void put_le32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}
inline void put_le64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}
inline void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
inline void put_key(std::string& out, uint32_t field, uint32_t wire_type) { put_varint(out, (field << 3) | wire_type); }
inline void put_double(std::string& out, uint32_t field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_key(out, field, 1);
  put_le64(out, bits);
}
inline void put_float(std::string& out, uint32_t field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  put_key(out, field, 5);
  put_le32(out, bits);
}
// int32 / int64 / enum / bool: negative values as 10-byte two's complement, as protobuf does.
inline void put_int(std::string& out, uint32_t field, int64_t v) {
  put_key(out, field, 0);
  put_varint(out, static_cast<uint64_t>(v));
}
inline void put_bytes(std::string& out, uint32_t field, std::string_view v) {
  put_key(out, field, 2);
  put_varint(out, v.size());
  out.append(v);
}

}  // namespace cotune::track::protobuf
