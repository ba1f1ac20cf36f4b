// GGUF reader and writer: a file written by the `gguf` Python package (llama.cpp's gguf-py) read back and
// re-written byte for byte; every metadata type round-trips; bad input (truncation, bad magic, counts,
// lengths, offsets and sizes out of range or overflowing, unknown types) gives an error naming the file,
// the key or tensor, its type and the offset.
#include "formats/gguf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>

#include "base/error.h"
#include "common/test_paths.h"
#include "formats/temp_dir.h"

namespace cotune::formats {
namespace {

using test::TempDir;
using test::write_bytes;

template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\n  lacks: " << p;
  }
}

std::string golden() { return testing::golden_dir() + "/gguf/gguf-py/all_types.gguf"; }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(Gguf, ReadsFileWrittenByGgufPy) {
  GgufFile f = GgufFile::open(golden());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("t.u8"), 200);
  EXPECT_EQ(f.get_int("t.i8"), -100);
  EXPECT_EQ(f.get_int("t.u16"), 60000);
  EXPECT_EQ(f.get_int("t.i16"), -30000);
  EXPECT_EQ(f.get_int("t.u32"), 4000000000);
  EXPECT_EQ(f.get_int("t.i32"), -2000000000);
  EXPECT_EQ(f.get_float("t.f32"), 1.5);
  EXPECT_TRUE(f.get_bool("t.bool"));
  EXPECT_EQ(f.get_string("t.str"), "héllo ▁ 世界");
  EXPECT_EQ(f.get_int("t.u64"), int64_t{1} << 40);
  EXPECT_EQ(f.get_int("t.i64"), -(int64_t{1} << 40));
  EXPECT_EQ(f.get_float("t.f64"), 2.25);
  EXPECT_EQ(f.get_string_array("t.arr_str"), (std::vector<std::string>{"a", "", "ĠĠ", "<|im_end|>"}));
  EXPECT_EQ(f.get_int_array("t.arr_i32"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.get_float_array("t.arr_f32"), (std::vector<float>{0.5f, -1.25f}));
  EXPECT_EQ(f.metadata().front().first, "general.architecture");  // file order kept
  EXPECT_EQ(f.get_int_or("absent", 7), 7);
  expect_error([&] { f.get_int("t.str"); }, {golden(), "t.str", "string", "integer"});
  expect_error([&] { f.get_string("nope"); }, {"nope", "missing"});

  ASSERT_EQ(f.tensors().size(), 4u);
  const GgufTensorInfo& a = f.get("a.f32");
  EXPECT_EQ(a.type, GgmlType::f32);
  EXPECT_EQ(a.ne, (std::vector<int64_t>{64, 3}));
  EXPECT_EQ(a.shape(), (std::vector<int64_t>{3, 64}));
  EXPECT_EQ(a.nbytes, 3u * 64 * 4);
  std::ifstream in(testing::golden_dir() + "/gguf/gguf-py/all_types.a.f32", std::ios::binary);
  std::vector<float> want(192);
  in.read(reinterpret_cast<char*>(want.data()), 192 * 4);
  EXPECT_EQ(memcmp(a.data, want.data(), 192 * 4), 0);
  const GgufTensorInfo& q = f.get("c.q8_0");
  EXPECT_EQ(q.type, GgmlType::q8_0);
  EXPECT_EQ(q.nbytes, 3u * 2 * 34);
  EXPECT_EQ(f.get("d.vec").ne, (std::vector<int64_t>{5}));
  EXPECT_EQ(f.find("zzz"), nullptr);
  expect_error([&] { f.get("zzz"); }, {"zzz", "not found"});
}

// cotune's writer, given the same keys and tensors in the same order, writes the very bytes gguf-py wrote.
TEST(Gguf, WriterMatchesGgufPyByteForByte) {
  GgufFile g = GgufFile::open(golden());
  GgufWriter w;
  for (const auto& [k, v] : g.metadata()) w.set(k, v);
  for (const auto& t : g.tensors())
    w.add_tensor(t.name, t.type, t.ne, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  TempDir dir;
  w.write(dir / "out.gguf");
  EXPECT_EQ(slurp(dir / "out.gguf"), slurp(golden()));
}

TEST(Gguf, EveryValueTypeRoundTrips) {
  GgufWriter w(64);
  w.set("u8", {GgufType::u8, GgufType::u8, uint64_t{255}});
  w.set("i8", {GgufType::i8, GgufType::u8, int64_t{-128}});
  w.set("u16", {GgufType::u16, GgufType::u8, uint64_t{65535}});
  w.set("i16", {GgufType::i16, GgufType::u8, int64_t{-32768}});
  w.set("u32", GgufValue::u32(4294967295u));
  w.set("i32", GgufValue::i32(-7));
  w.set("f32", GgufValue::f32(0.1f));
  w.set("bool", GgufValue::boolean(false));
  w.set("str", GgufValue::str(""));
  w.set("u64", GgufValue::u64(std::numeric_limits<uint64_t>::max()));
  w.set("i64", {GgufType::i64, GgufType::u8, std::numeric_limits<int64_t>::min()});
  w.set("f64", {GgufType::f64, GgufType::u8, 1e300});
  w.set("strs", GgufValue::string_array({"x", "yy"}));
  w.set("nested", GgufValue::array(GgufType::array, {GgufValue::i32_array({1, 2}), GgufValue::i32_array({})}));
  w.set("i32", GgufValue::i32(-8));  // replaces, keeps the position
  std::vector<uint8_t> bytes(2 * 34, 0x11);
  w.add_tensor("t", GgmlType::q8_0, {32, 2}, bytes);
  w.add_tensor("u", GgmlType::f32, {3}, [](std::vector<uint8_t>& out) { out.assign(12, 0x22); });
  TempDir dir;
  w.write(dir / "rt.gguf");
  GgufFile f = GgufFile::open(dir / "rt.gguf");
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.get_int("u8"), 255);
  EXPECT_EQ(f.get_int("i8"), -128);
  EXPECT_EQ(f.get_int("u16"), 65535);
  EXPECT_EQ(f.get_int("i16"), -32768);
  EXPECT_EQ(f.get_int("u32"), 4294967295);
  EXPECT_EQ(f.get_int("i32"), -8);
  EXPECT_EQ(f.metadata()[5].first, "i32");
  EXPECT_FLOAT_EQ(static_cast<float>(f.get_float("f32")), 0.1f);
  EXPECT_FALSE(f.get_bool("bool"));
  EXPECT_EQ(f.get_string("str"), "");
  expect_error([&] { f.get_int("u64"); }, {"u64", "does not fit"});
  EXPECT_EQ(std::get<uint64_t>(f.value("u64")->value), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(f.get_int("i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f.get_float("f64"), 1e300);
  EXPECT_EQ(f.get_string_array("strs"), (std::vector<std::string>{"x", "yy"}));
  const auto& nested = std::get<std::vector<GgufValue>>(f.value("nested")->value);
  ASSERT_EQ(nested.size(), 2u);
  EXPECT_EQ(std::get<std::vector<GgufValue>>(nested[0].value).size(), 2u);
  EXPECT_EQ(f.get("t").data[0], 0x11);
  EXPECT_EQ(f.get("t").offset, 0u);
  EXPECT_EQ(f.get("u").offset, 128u);  // 68 bytes padded to the alignment of 64
  EXPECT_EQ(f.get("u").data[11], 0x22);
}

TEST(Gguf, WriterRejectsWrongSizesAndLeavesNoFile) {
  TempDir dir;
  GgufWriter w;
  w.add_tensor("short", GgmlType::f32, {4}, [](std::vector<uint8_t>& out) { out.assign(15, 0); });
  expect_error([&] { w.write(dir / "x.gguf"); }, {"short", "15 bytes", "expected 16"});
  EXPECT_FALSE(std::filesystem::exists(dir / "x.gguf"));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  GgufWriter w2;
  expect_error([&] { w2.add_tensor("odd", GgmlType::q4_k, {100, 2}, std::vector<uint8_t>{}); }, {"odd", "q4_K"});
}

// --- bad input: a valid file built here, then damaged in one place at a time ---

struct Bytes {
  std::string s;
  template <typename T>
  Bytes& put(T v) {
    s.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& v) {
    put<uint64_t>(v.size());
    s += v;
    return *this;
  }
};

// Header with one u32 key and one f32 tensor "w" of `ne` elements of `type` at `offset`.
std::string file_with(uint32_t type = 0, uint64_t ne0 = 4, uint64_t offset = 0, uint64_t data_bytes = 16,
                      uint32_t value_type = 4, uint32_t n_dims = 1, uint64_t ne1 = 0) {
  Bytes b;
  b.s = "GGUF";
  b.put<uint32_t>(3).put<uint64_t>(1).put<uint64_t>(1);
  b.str("k").put<uint32_t>(value_type).put<uint32_t>(5);
  b.str("w").put<uint32_t>(n_dims).put<uint64_t>(ne0);
  if (n_dims > 1) b.put<uint64_t>(ne1);
  b.put<uint32_t>(type).put<uint64_t>(offset);
  while (b.s.size() % 32) b.s.push_back('\0');
  b.s.append(data_bytes, '\x01');
  return b.s;
}

TEST(GgufBadInput, ValidBaseline) {
  TempDir dir;
  write_bytes(dir / "ok.gguf", file_with());
  GgufFile f = GgufFile::open(dir / "ok.gguf");
  EXPECT_EQ(f.get_int("k"), 5);
  EXPECT_EQ(f.get("w").nbytes, 16u);
}

TEST(GgufBadInput, BadMagicVersionAndEmpty) {
  TempDir dir;
  std::string s = file_with();
  s[0] = 'X';
  write_bytes(dir / "magic.gguf", s);
  expect_error([&] { GgufFile::open(dir / "magic.gguf"); }, {dir / "magic.gguf", "not a GGUF file"});
  write_bytes(dir / "empty.gguf", "");
  expect_error([&] { GgufFile::open(dir / "empty.gguf"); }, {"not a GGUF file"});
  s = file_with();
  s[4] = 1;
  write_bytes(dir / "v1.gguf", s);
  expect_error([&] { GgufFile::open(dir / "v1.gguf"); }, {"version 1", "expected 2 or 3"});
}

TEST(GgufBadInput, TruncatedAnywhereNamesWhatAndWhere) {
  TempDir dir;
  const std::string s = file_with();
  // Every cut inside the header or the data fails with an error (never a crash or a silent success).
  for (size_t cut = 4; cut < s.size(); ++cut) {
    write_bytes(dir / "cut.gguf", s.substr(0, cut));
    EXPECT_THROW(GgufFile::open(dir / "cut.gguf"), Error) << "cut at " << cut;
  }
  write_bytes(dir / "cut.gguf", s.substr(0, 39));
  expect_error([&] { GgufFile::open(dir / "cut.gguf"); }, {"truncated", "value of key 'k'", "offset 37"});
  write_bytes(dir / "cut.gguf", s.substr(0, s.size() - 1));
  expect_error([&] { GgufFile::open(dir / "cut.gguf"); }, {"tensor 'w'", "f32", "offset 0", "past the end"});
}

TEST(GgufBadInput, CountsAndLengthsOutOfRange) {
  TempDir dir;
  std::string s = file_with();
  const uint64_t huge = uint64_t{1} << 62;
  std::string c = s;
  memcpy(c.data() + 16, &huge, 8);  // metadata count
  write_bytes(dir / "kv.gguf", c);
  expect_error([&] { GgufFile::open(dir / "kv.gguf"); }, {"metadata count", "cannot fit"});
  c = s;
  memcpy(c.data() + 8, &huge, 8);  // tensor count
  write_bytes(dir / "nt.gguf", c);
  expect_error([&] { GgufFile::open(dir / "nt.gguf"); }, {"tensor count", "cannot fit"});
  c = s;
  memcpy(c.data() + 24, &huge, 8);  // key length
  write_bytes(dir / "klen.gguf", c);
  expect_error([&] { GgufFile::open(dir / "klen.gguf"); }, {"metadata key #0", "offset 24", "beyond the end"});
  // An array claiming more elements than the file could hold.
  Bytes b;
  b.s = "GGUF";
  b.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  b.str("arr").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(huge);
  write_bytes(dir / "arr.gguf", b.s);
  expect_error([&] { GgufFile::open(dir / "arr.gguf"); }, {"key 'arr'", "array of", "u32", "cannot fit"});
}

TEST(GgufBadInput, UnknownTypes) {
  TempDir dir;
  write_bytes(dir / "vt.gguf", file_with(0, 4, 0, 16, 77));
  expect_error([&] { GgufFile::open(dir / "vt.gguf"); }, {"key 'k'", "offset 24", "unknown value type 77"});
  write_bytes(dir / "tt.gguf", file_with(123));
  expect_error([&] { GgufFile::open(dir / "tt.gguf"); }, {"tensor 'w'", "ggml type 123", "offset"});
  Bytes b;
  b.s = "GGUF";
  b.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  b.str("flag").put<uint32_t>(7).put<uint8_t>(2);
  write_bytes(dir / "bool.gguf", b.s);
  expect_error([&] { GgufFile::open(dir / "bool.gguf"); }, {"key 'flag'", "bool", "expected 0 or 1"});
}

TEST(GgufBadInput, TensorShapesOffsetsAndSizes) {
  TempDir dir;
  // ne[0] not a multiple of the q4_K block.
  write_bytes(dir / "blk.gguf", file_with(12, 100));
  expect_error([&] { GgufFile::open(dir / "blk.gguf"); }, {"tensor 'w'", "q4_K", "[100]", "block size 256"});
  // Zero dimension, too many dimensions, element count overflowing int64.
  write_bytes(dir / "zero.gguf", file_with(0, 0));
  expect_error([&] { GgufFile::open(dir / "zero.gguf"); }, {"tensor 'w'", "dimension 0", "zero"});
  write_bytes(dir / "dims.gguf", file_with(0, 4, 0, 16, 4, 7));
  expect_error([&] { GgufFile::open(dir / "dims.gguf"); }, {"tensor 'w'", "7 dimensions"});
  write_bytes(dir / "ovf.gguf", file_with(0, uint64_t{1} << 40, 0, 16, 4, 2, uint64_t{1} << 40));
  expect_error([&] { GgufFile::open(dir / "ovf.gguf"); }, {"tensor 'w'", "overflow"});
  // Byte size overflowing u64 although the element count fits.
  write_bytes(dir / "bytes.gguf", file_with(0, uint64_t{1} << 31, 0, 16, 4, 2, uint64_t{1} << 31));
  expect_error([&] { GgufFile::open(dir / "bytes.gguf"); }, {"tensor 'w'", "f32", "byte size overflows"});
  // Offset misaligned, offset past the data, offset + size wrapping around.
  write_bytes(dir / "align.gguf", file_with(0, 4, 8, 64));
  expect_error([&] { GgufFile::open(dir / "align.gguf"); }, {"tensor 'w'", "f32", "offset 8", "alignment 32"});
  write_bytes(dir / "far.gguf", file_with(0, 4, 1u << 20));
  expect_error([&] { GgufFile::open(dir / "far.gguf"); }, {"tensor 'w'", "f32", "offset 1048576", "past the end"});
  write_bytes(dir / "wrap.gguf", file_with(0, 4, std::numeric_limits<uint64_t>::max() - 31));
  expect_error([&] { GgufFile::open(dir / "wrap.gguf"); }, {"tensor 'w'", "past the end"});
}

TEST(GgufBadInput, DuplicatesAndOverlaps) {
  TempDir dir;
  Bytes b;
  b.s = "GGUF";
  b.put<uint32_t>(3).put<uint64_t>(2).put<uint64_t>(0);
  b.str("a").put<uint32_t>(1).put<uint64_t>(8).put<uint32_t>(0).put<uint64_t>(0);
  b.str("b").put<uint32_t>(1).put<uint64_t>(8).put<uint32_t>(0).put<uint64_t>(0);
  while (b.s.size() % 32) b.s.push_back('\0');
  b.s.append(64, '\0');
  write_bytes(dir / "overlap.gguf", b.s);
  expect_error([&] { GgufFile::open(dir / "overlap.gguf"); }, {"tensor 'a'", "overlaps tensor 'b'"});
  Bytes k;
  k.s = "GGUF";
  k.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(2);
  k.str("x").put<uint32_t>(4).put<uint32_t>(1);
  k.str("x").put<uint32_t>(4).put<uint32_t>(2);
  write_bytes(dir / "dup.gguf", k.s);
  expect_error([&] { GgufFile::open(dir / "dup.gguf"); }, {"key 'x'", "twice"});
  Bytes al;
  al.s = "GGUF";
  al.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  al.str("general.alignment").put<uint32_t>(4).put<uint32_t>(24);
  write_bytes(dir / "al.gguf", al.s);
  expect_error([&] { GgufFile::open(dir / "al.gguf"); }, {"general.alignment", "24", "power of two"});
}

// GGUF strings are UTF-8: a key, a string value or an element of a string array that is not is refused naming it
// (a fuzzing find: invalid UTF-8 in tokenizer.ggml.tokens reached the importer's JSON writer, which threw).
TEST(GgufBadInput, StringsMustBeUtf8) {
  TempDir dir;
  Bytes v;
  v.s = "GGUF";
  v.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  v.str("general.name").put<uint32_t>(8).str("ok \xC3");
  write_bytes(dir / "value.gguf", v.s);
  expect_error([&] { GgufFile::open(dir / "value.gguf"); }, {"general.name", "not valid UTF-8"});
  Bytes a;
  a.s = "GGUF";
  a.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  a.str("tokenizer.ggml.tokens").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(2).str("a").str("\xFF\xFE");
  write_bytes(dir / "array.gguf", a.s);
  expect_error([&] { GgufFile::open(dir / "array.gguf"); }, {"tokenizer.ggml.tokens", "not valid UTF-8"});
  Bytes k;
  k.s = "GGUF";
  k.put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  k.str("bad\x80key").put<uint32_t>(4).put<uint32_t>(1);
  write_bytes(dir / "key.gguf", k.s);
  expect_error([&] { GgufFile::open(dir / "key.gguf"); }, {"metadata key #0", "not valid UTF-8"});
  Bytes t;
  t.s = "GGUF";
  t.put<uint32_t>(3).put<uint64_t>(1).put<uint64_t>(0);
  t.str("w\xE2\x82").put<uint32_t>(1).put<uint64_t>(4).put<uint32_t>(0).put<uint64_t>(0);
  write_bytes(dir / "tensor.gguf", t.s);
  expect_error([&] { GgufFile::open(dir / "tensor.gguf"); }, {"name of tensor #0", "not valid UTF-8"});
}

}  // namespace
}  // namespace cotune::formats
