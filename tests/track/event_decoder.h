// A protobuf reader for the tests, written independently of the writer in src/track/tensorboard.cpp:
// it walks the generic wire format (varint / fixed64 / length-delimited / fixed32) and picks the
// event.proto fields by number, so an encoder mistake (wrong field number or wire type) shows up here.
#pragma once
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cotune::track::testing {

struct WireField {
  uint32_t number = 0;
  uint32_t wire_type = 0;
  uint64_t varint = 0;     // wire type 0
  uint64_t fixed = 0;      // wire types 1 and 5 (raw bits)
  std::string_view bytes;  // wire type 2
};

inline std::vector<WireField> parse_message(std::string_view m) {
  std::vector<WireField> out;
  size_t i = 0;
  auto varint = [&]() {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      if (i >= m.size() || shift > 63) throw std::runtime_error("bad varint");
      const auto b = static_cast<unsigned char>(m[i++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
  };
  auto fixed = [&](int n) {
    if (i + n > m.size()) throw std::runtime_error("truncated fixed field");
    uint64_t v = 0;
    for (int k = 0; k < n; ++k) v |= static_cast<uint64_t>(static_cast<unsigned char>(m[i + k])) << (8 * k);
    i += n;
    return v;
  };
  while (i < m.size()) {
    const uint64_t key = varint();
    WireField f;
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire_type = static_cast<uint32_t>(key & 7);
    switch (f.wire_type) {
      case 0: f.varint = varint(); break;
      case 1: f.fixed = fixed(8); break;
      case 5: f.fixed = fixed(4); break;
      case 2: {
        const uint64_t n = varint();
        if (i + n > m.size()) throw std::runtime_error("truncated bytes field");
        f.bytes = m.substr(i, n);
        i += n;
        break;
      }
      default: throw std::runtime_error("unexpected wire type " + std::to_string(f.wire_type));
    }
    out.push_back(f);
  }
  return out;
}

struct DecodedValue {
  std::string tag;
  std::optional<float> simple_value;
  std::optional<std::string> text;         // tensor.string_val (DT_STRING)
  std::optional<std::string> plugin_name;  // metadata.plugin_data.plugin_name
};

struct DecodedEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::optional<std::string> file_version;
  std::vector<DecodedValue> values;  // summary.value
  std::optional<int> session_status;
};

inline const WireField* find(const std::vector<WireField>& fs, uint32_t number, uint32_t wire_type) {
  for (const auto& f : fs)
    if (f.number == number) {
      if (f.wire_type != wire_type) throw std::runtime_error("field " + std::to_string(number) + ": wrong wire type");
      return &f;
    }
  return nullptr;
}

inline DecodedEvent decode_event(std::string_view data) {
  DecodedEvent e;
  const auto fields = parse_message(data);
  if (auto f = find(fields, 1, 1)) std::memcpy(&e.wall_time, &f->fixed, 8);
  if (auto f = find(fields, 2, 0)) e.step = static_cast<int64_t>(f->varint);
  if (auto f = find(fields, 3, 2)) e.file_version = std::string(f->bytes);
  if (auto f = find(fields, 7, 2)) {
    const auto sl = parse_message(f->bytes);
    e.session_status = 0;
    if (auto s = find(sl, 1, 0)) e.session_status = static_cast<int>(s->varint);
  }
  if (auto f = find(fields, 5, 2)) {
    for (const auto& v : parse_message(f->bytes)) {
      if (v.number != 1 || v.wire_type != 2) throw std::runtime_error("Summary: unexpected field");
      const auto vf = parse_message(v.bytes);
      DecodedValue dv;
      if (auto t = find(vf, 1, 2)) dv.tag = std::string(t->bytes);
      if (auto s = find(vf, 2, 5)) {
        const auto bits = static_cast<uint32_t>(s->fixed);
        float x;
        std::memcpy(&x, &bits, 4);
        dv.simple_value = x;
      }
      if (auto t = find(vf, 8, 2)) {
        const auto tf = parse_message(t->bytes);
        auto dtype = find(tf, 1, 0);
        if (!dtype || dtype->varint != 7) throw std::runtime_error("text tensor: dtype is not DT_STRING");
        if (auto sv = find(tf, 8, 2)) dv.text = std::string(sv->bytes);
      }
      if (auto md = find(vf, 9, 2)) {
        const auto mf = parse_message(md->bytes);
        if (auto pd = find(mf, 1, 2)) {
          const auto pf = parse_message(pd->bytes);
          if (auto pn = find(pf, 1, 2)) dv.plugin_name = std::string(pn->bytes);
        }
      }
      e.values.push_back(dv);
    }
  }
  return e;
}

}  // namespace cotune::track::testing
