#include "data/thrift_compact.h"

#include <cstring>

#include "base/error.h"

namespace cotune::data::thrift {
namespace {
constexpr size_t kMaxDepth = 64;  // Parquet's structs nest a handful deep; more means corrupt input
}

CompactReader::CompactReader(const uint8_t* p, size_t n, std::string what, int64_t base_offset)
    : p_(p), n_(n), what_(std::move(what)), base_(base_offset) {}

void CompactReader::corrupt(std::string_view detail) const {
  fail("{}: corrupt Thrift metadata at byte {}: {}", what_, base_ + static_cast<int64_t>(pos_), detail);
}

uint64_t CompactReader::read_varint() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= n_) corrupt("the data ends inside a varint");
    uint8_t b = p_[pos_++];
    v |= uint64_t{b & 0x7Fu} << shift;
    if (!(b & 0x80)) return v;
  }
  corrupt("a varint longer than 10 bytes");
}

void CompactReader::begin_struct() {
  if (last_ids_.size() >= kMaxDepth) corrupt("structs nested too deep");
  last_ids_.push_back(last_id_);
  last_id_ = 0;
}

void CompactReader::end_struct() {
  last_id_ = last_ids_.back();
  last_ids_.pop_back();
}

CompactReader::Field CompactReader::next_field() {
  if (pos_ >= n_) corrupt("the data ends inside a struct (no stop byte)");
  uint8_t b = p_[pos_++];
  Field f;
  f.type = static_cast<CompactType>(b & 0x0F);
  if (f.type == CompactType::stop) return f;
  if (static_cast<uint8_t>(f.type) > 12) corrupt(fmt::format("unknown field type {}", b & 0x0F));
  int delta = b >> 4;
  f.id = delta ? static_cast<int16_t>(last_id_ + delta) : read_i16();
  last_id_ = f.id;
  return f;
}

bool CompactReader::read_bool(const Field& f) const {
  if (f.type == CompactType::bool_true) return true;
  if (f.type == CompactType::bool_false) return false;
  corrupt(fmt::format("field {} should be a bool, its type is {}", f.id, static_cast<int>(f.type)));
}

bool CompactReader::read_list_bool() {
  if (pos_ >= n_) corrupt("the data ends inside a list of bools");
  return p_[pos_++] == 1;
}

int8_t CompactReader::read_i8() {
  if (pos_ >= n_) corrupt("the data ends inside a byte field");
  return static_cast<int8_t>(p_[pos_++]);
}

int16_t CompactReader::read_i16() { return static_cast<int16_t>(read_i32()); }

int32_t CompactReader::read_i32() {
  uint64_t v = read_varint();
  if (v > 0xFFFFFFFFu) corrupt("a 32-bit integer out of range");
  auto u = static_cast<uint32_t>(v);
  return static_cast<int32_t>((u >> 1) ^ (~(u & 1) + 1));  // zigzag
}

int64_t CompactReader::read_i64() {
  uint64_t u = read_varint();
  return static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
}

double CompactReader::read_double() {
  if (n_ - pos_ < 8) corrupt("the data ends inside a double");
  double d;
  std::memcpy(&d, p_ + pos_, 8);  // little-endian, as the host
  pos_ += 8;
  return d;
}

std::string_view CompactReader::read_binary() {
  uint64_t len = read_varint();
  if (len > n_ - pos_) corrupt(fmt::format("a string of {} bytes, but only {} bytes are left", len, n_ - pos_));
  std::string_view s(reinterpret_cast<const char*>(p_ + pos_), len);
  pos_ += len;
  return s;
}

CompactReader::ListHeader CompactReader::read_list_header() {
  if (pos_ >= n_) corrupt("the data ends inside a list header");
  uint8_t b = p_[pos_++];
  ListHeader h;
  h.element = static_cast<CompactType>(b & 0x0F);
  uint64_t size = b >> 4;
  if (size == 15) size = read_varint();
  if (size > n_ - pos_) corrupt(fmt::format("a list of {} elements, but only {} bytes are left", size, n_ - pos_));
  h.size = static_cast<uint32_t>(size);
  return h;
}

void CompactReader::skip(CompactType t) { skip_depth(t, 0); }

void CompactReader::skip_depth(CompactType t, int depth) {
  if (static_cast<size_t>(depth) > kMaxDepth) corrupt("values nested too deep");
  switch (t) {
    case CompactType::bool_true:
    case CompactType::bool_false: return;  // in the field header
    case CompactType::i8: read_i8(); return;
    case CompactType::i16:
    case CompactType::i32:
    case CompactType::i64: read_varint(); return;
    case CompactType::dbl: read_double(); return;
    case CompactType::binary: read_binary(); return;
    case CompactType::list:
    case CompactType::set: {
      ListHeader h = read_list_header();
      for (uint32_t i = 0; i < h.size; ++i) {
        if (h.element == CompactType::bool_true || h.element == CompactType::bool_false) read_list_bool();
        else skip_depth(h.element, depth + 1);
      }
      return;
    }
    case CompactType::map: {
      uint64_t size = read_varint();
      if (size == 0) return;
      if (size > n_ - pos_) corrupt("a map larger than the data left");
      uint8_t kv = read_i8();
      auto k = static_cast<CompactType>(kv >> 4), v = static_cast<CompactType>(kv & 0x0F);
      for (uint64_t i = 0; i < size; ++i) {
        for (CompactType e : {k, v}) {
          if (e == CompactType::bool_true || e == CompactType::bool_false) read_list_bool();
          else skip_depth(e, depth + 1);
        }
      }
      return;
    }
    case CompactType::structure: {
      begin_struct();
      for (Field f = next_field(); f.type != CompactType::stop; f = next_field()) skip_depth(f.type, depth + 1);
      end_struct();
      return;
    }
    case CompactType::stop: break;
  }
  corrupt(fmt::format("cannot skip a value of type {}", static_cast<int>(t)));
}

}  // namespace cotune::data::thrift
