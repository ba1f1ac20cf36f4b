#include "formats/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <limits>

#include "base/half.h"
#include "common/test_paths.h"
#include "formats/temp_dir.h"

namespace cotune::formats {
namespace {

using test::raw_safetensors;
using test::TempDir;
using test::write_bytes;

// Runs fn, which must throw cotune::Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\n  lacks: " << p;
  }
}

std::string golden() { return testing::golden_dir() + "/formats/tiny.safetensors"; }

TEST(Safetensors, ReadsGoldenFileFromPython) {
  SafetensorsFile f = SafetensorsFile::open(golden());
  EXPECT_EQ(f.tensors().size(), 10u);
  ASSERT_EQ(f.metadata().size(), 1u);
  EXPECT_EQ(f.metadata().at("format"), "pt");

  const TensorEntry* w = f.find("model.w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype_name, "F32");
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w->file, golden());
  Tensor t = w->tensor();
  EXPECT_EQ(t.dtype, DType::f32);
  EXPECT_EQ(t.shape, (Shape{2, 3}));
  for (int k = 0; k < 6; ++k) EXPECT_EQ(t.ptr<float>()[k], k * 0.5f - 1) << k;

  Tensor b = f.find("a.bias")->tensor();
  EXPECT_EQ(b.dtype, DType::bf16);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(bf16_to_f32(b.ptr<uint16_t>()[k]), k * 0.5f - 1);
  Tensor h = f.find("half")->tensor();
  EXPECT_EQ(h.dtype, DType::f16);
  for (int k = 0; k < 4; ++k) EXPECT_EQ(f16_to_f32(h.ptr<uint16_t>()[k]), k * 0.5f - 1);
  Tensor ids = f.find("ids")->tensor();
  EXPECT_EQ(ids.ptr<int32_t>()[3], 40000);
  EXPECT_EQ(ids.ptr<int32_t>()[1], -2);
  Tensor big = f.find("big")->tensor();
  EXPECT_EQ(big.ptr<int64_t>()[1], int64_t{1} << 40);
  EXPECT_EQ(f.find("bytes")->tensor().ptr<uint8_t>()[4], 255);
  Tensor s = f.find("scalar")->tensor();
  EXPECT_EQ(s.ndim(), 0);
  EXPECT_EQ(*s.ptr<float>(), 2.5f);
  EXPECT_EQ(f.find("empty")->nbytes, 0u);
  EXPECT_EQ(f.find("empty")->tensor().numel(), 0);
  EXPECT_EQ(f.find("nope"), nullptr);
  // Recognised dtypes that cotune tensors cannot hold: the entry is readable, tensor() says why not.
  EXPECT_EQ(f.find("dbl")->nbytes, 8u);
  expect_error([&] { f.find("dbl")->tensor(); }, {"dbl", "F64", golden()});
  expect_error([&] { f.find("flag")->tensor(); }, {"flag", "BOOL"});
}

// The same tensors written by cotune must give the very bytes Python's safetensors wrote.
TEST(Safetensors, WriterMatchesPythonByteForByte) {
  SafetensorsFile g = SafetensorsFile::open(golden());
  SafetensorsWriter w;
  // Add in an order unlike the file's, so the writer's sort is what makes them match.
  std::vector<std::string> names;
  for (const auto& e : g.tensors()) names.push_back(e.name);
  std::sort(names.rbegin(), names.rend());
  for (const auto& n : names) {
    const TensorEntry* e = g.find(n);
    w.add(e->name, e->dtype_name, e->shape, e->data, e->nbytes);
  }
  w.set_metadata("format", "pt");
  TempDir dir;
  w.write(dir / "out.safetensors");
  EXPECT_EQ(read_file(dir / "out.safetensors"), read_file(golden()));
  EXPECT_EQ(w.total_bytes(), 90u);
  // Nothing but the result is left in the folder.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(Safetensors, WriterRoundTripsHostTensorsAndOwnedBytes) {
  float v[6] = {1, 2, 3, 4, 5, 6};
  Tensor t(v, DType::f32, Shape{3, 2});
  SafetensorsWriter w;
  w.add("x", t);
  w.add_owned("y", "U8", {2}, {7, 9});
  w.add_owned("no_meta", "I64", {0}, {});
  TempDir dir;
  w.write(dir / "rt.safetensors");
  SafetensorsFile f = SafetensorsFile::open(dir / "rt.safetensors");
  EXPECT_TRUE(f.metadata().empty());
  Tensor x = f.find("x")->tensor();
  EXPECT_EQ(x.shape, (Shape{3, 2}));
  EXPECT_EQ(std::memcmp(x.data, v, sizeof v), 0);
  EXPECT_EQ(f.find("y")->data[1], 9);
  // The header is space-padded to 8 bytes so the data block is aligned.
  std::string raw = read_file(dir / "rt.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u);
}

TEST(Safetensors, WriterRejectsBadInput) {
  SafetensorsWriter w;
  float v[4] = {};
  expect_error([&] { w.add("a", "F32", {2, 3}, v, 16); }, {"a", "24 bytes"});
  expect_error([&] { w.add("a", "Q4", {4}, v, 4); }, {"a", "Q4"});
  expect_error([&] { w.add("__metadata__", "F32", {1}, v, 4); }, {"__metadata__"});
  w.add("a", "F32", {4}, v, 16);
  expect_error([&] { w.add("a", "F32", {4}, v, 16); }, {"a", "twice"});
  Tensor gpu(v, DType::f32, Shape{4}, Device::cuda);
  expect_error([&] { w.add("g", gpu); }, {"g", "host"});
}

TEST(Safetensors, FailedWriteLeavesNoFile) {
  SafetensorsWriter w;
  float v[1] = {1};
  w.add("a", "F32", {1}, v, 4);
  TempDir dir;
  const std::string target = dir / "missing_folder/out.safetensors";
  expect_error([&] { w.write(target); }, {"missing_folder"});
  EXPECT_FALSE(std::filesystem::exists(target));
}

// ---- bad files: each one names the file and (where there is one) the tensor -------------------

class BadSafetensors : public ::testing::Test {
 protected:
  std::string make(const std::string& bytes) {
    write_bytes(dir_ / "bad.safetensors", bytes);
    return dir_ / "bad.safetensors";
  }
  TempDir dir_;
};

TEST_F(BadSafetensors, TooShortForHeaderLength) {
  auto p = make("abc");
  expect_error([&] { SafetensorsFile::open(p); }, {p, "8-byte"});
  p = make("");
  expect_error([&] { SafetensorsFile::open(p); }, {p});
}

TEST_F(BadSafetensors, HeaderLengthBeyondFile) {
  auto p = make(raw_safetensors("{}", "", 1000));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "header length 1000", "past the end"});
  p = make(raw_safetensors("{}", "", ~uint64_t{1}));  // 2^64 - 2: must not wrap around
  expect_error([&] { SafetensorsFile::open(p); }, {p, "past the end"});
}

TEST_F(BadSafetensors, HeaderMustStartWithBrace) {
  auto p = make(raw_safetensors(" {}", ""));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "'{'"});
}

TEST_F(BadSafetensors, MalformedJson) {
  auto p = make(raw_safetensors(R"({"a":{"dtype":"F32",)", ""));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "not valid JSON"});
  p = make(raw_safetensors(R"({"a":[1,2]})", ""));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "tensor a", "object"});
  p = make(raw_safetensors(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "xxxx"));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "tensor a", "shape"});
  p = make(raw_safetensors(R"({"a":{"dtype":"F32","shape":[1]}})", "xxxx"));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "tensor a", "data_offsets"});
  p = make(raw_safetensors(R"({"__metadata__":{"k":1}})", ""));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "__metadata__", "\"k\""});
}

TEST_F(BadSafetensors, UnknownDtype) {
  auto p = make(raw_safetensors(R"({"w":{"dtype":"Q4_K","shape":[1],"data_offsets":[0,1]}})", "x"));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "tensor w", "unknown dtype \"Q4_K\""});
}

TEST_F(BadSafetensors, ShapeDisagreesWithOffsets) {
  auto p = make(raw_safetensors(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", std::string(12, 'x')));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "tensor w", "needs 16 bytes", "span 12"});
  p = make(raw_safetensors(R"({"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,4]}})", "xxxx"));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "tensor w", "overflow"});
}

TEST_F(BadSafetensors, Truncated) {
  // A valid file cut short: the last tensor's data runs past the end.
  std::string full = read_file(golden());
  auto p = make(full.substr(0, full.size() - 5));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "tensor", "truncated"});
  p = make(full.substr(0, 100));  // cut inside the header
  expect_error([&] { SafetensorsFile::open(p); }, {p, "past the end"});
}

TEST_F(BadSafetensors, OffsetsOutOfRange) {
  auto p = make(raw_safetensors(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[100,104]}})", "abcd"));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "tensor w", "[100, 104]"});
  p = make(raw_safetensors(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", "abcd"));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "tensor w", "end before"});
}

TEST_F(BadSafetensors, OverlappingOffsets) {
  auto p = make(raw_safetensors(
      R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
      "abcdef"));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "tensor b", "overlap tensor a"});
}

TEST_F(BadSafetensors, GapsAndTrailingBytesAreRejectedLikeRust) {
  auto p = make(raw_safetensors(
      R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})",
      "abcdef"));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "tensor b", "[2, 4)", "contiguous"});
  p = make(raw_safetensors(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "abcdef"));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "4 trailing bytes"});
}

TEST_F(BadSafetensors, DuplicateNames) {
  auto p = make(raw_safetensors(
      R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
      "abcd"));
  expect_error([&] { SafetensorsFile::open(p); }, {p, "tensor a", "twice"});
}

TEST_F(BadSafetensors, RankAboveFourIsReadableButNotATensor) {
  auto p = make(raw_safetensors(R"({"r5":{"dtype":"U8","shape":[1,1,1,1,2],"data_offsets":[0,2]}})", "ab"));
  SafetensorsFile f = SafetensorsFile::open(p);
  expect_error([&] { f.find("r5")->tensor(); }, {p, "r5", "rank 5"});
}

TEST_F(BadSafetensors, MissingFile) {
  expect_error([&] { SafetensorsFile::open(dir_ / "nope.safetensors"); }, {"nope.safetensors"});
}

// ---- checkpoints ------------------------------------------------------------------------------

void write_one(const std::string& path, const std::vector<std::pair<std::string, float>>& tensors) {
  SafetensorsWriter w;
  std::vector<std::vector<uint8_t>> keep;
  for (const auto& [name, value] : tensors) {
    std::vector<uint8_t> b(4);
    std::memcpy(b.data(), &value, 4);
    w.add_owned(name, "F32", {1}, b);
  }
  w.write(path);
}

float value_of(const TensorEntry& e) {
  float v;
  std::memcpy(&v, e.data, 4);
  return v;
}

TEST(Checkpoint, ShardedIndex) {
  TempDir dir;
  write_one(dir / "model-00001-of-00002.safetensors", {{"a", 1}, {"b", 2}});
  write_one(dir / "model-00002-of-00002.safetensors", {{"c", 3}, {"extra", 9}});
  write_bytes(dir / "model.safetensors.index.json", R"({"metadata":{"total_size":12},"weight_map":{
    "a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors",
    "c":"model-00002-of-00002.safetensors"}})");
  Checkpoint c = Checkpoint::open(dir.path().string());
  EXPECT_EQ(c.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(value_of(c.get("c")), 3.f);
  EXPECT_EQ(c.get("a").file, dir / "model-00001-of-00002.safetensors");
  EXPECT_EQ(c.find("extra"), nullptr);  // the index is authoritative
  expect_error([&] { c.get("d"); }, {dir.path().string(), "tensor d not found"});
  // Opening the index file directly works too.
  EXPECT_EQ(Checkpoint::open(dir / "model.safetensors.index.json").names().size(), 3u);
}

TEST(Checkpoint, IndexedTensorMissingFromShard) {
  TempDir dir;
  write_one(dir / "s1.safetensors", {{"a", 1}});
  write_bytes(dir / "model.safetensors.index.json", R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}})");
  expect_error([&] { Checkpoint::open(dir.path().string()); },
               {"model.safetensors.index.json", "tensor b", "s1.safetensors", "does not contain"});
  write_bytes(dir / "model.safetensors.index.json", R"({"weight_map":{"a":"s2.safetensors"}})");
  expect_error([&] { Checkpoint::open(dir.path().string()); }, {"tensor a", "s2.safetensors"});
  write_bytes(dir / "model.safetensors.index.json", R"({"weight_map":{"a":"../s1.safetensors"}})");
  expect_error([&] { Checkpoint::open(dir.path().string()); }, {"tensor a", "not a file in this folder"});
  write_bytes(dir / "model.safetensors.index.json", R"({"weights":{}})");
  expect_error([&] { Checkpoint::open(dir.path().string()); }, {"weight_map"});
}

TEST(Checkpoint, FolderPreferenceOrder) {
  TempDir dir;
  expect_error([&] { Checkpoint::open(dir.path().string()); },
               {dir.path().string(), "model.safetensors", "model.safetensors.index.json", "*.safetensors"});
  write_one(dir / "adapter_model.safetensors", {{"lora", 5}});
  EXPECT_EQ(value_of(Checkpoint::open(dir.path().string()).get("lora")), 5.f);  // the only .safetensors
  EXPECT_EQ(value_of(Checkpoint::open(dir / "adapter_model.safetensors").get("lora")), 5.f);
  write_one(dir / "other.safetensors", {{"x", 6}});
  expect_error([&] { Checkpoint::open(dir.path().string()); }, {"adapter_model.safetensors, other.safetensors"});
  write_one(dir / "s.safetensors", {{"y", 8}});
  write_bytes(dir / "model.safetensors.index.json", R"({"weight_map":{"y":"s.safetensors"}})");
  EXPECT_EQ(Checkpoint::open(dir.path().string()).names(), std::vector<std::string>{"y"});
  write_one(dir / "model.safetensors", {{"z", 7}});
  Checkpoint c = Checkpoint::open(dir.path().string());
  EXPECT_EQ(c.names(), std::vector<std::string>{"z"});
  EXPECT_EQ(c.path(), dir.path().string());
  expect_error([&] { Checkpoint::open(dir / "absent"); }, {"absent", "no such"});
}

}  // namespace
}  // namespace cotune::formats

namespace cotune::formats {
namespace {

// Issue 14 item 11: corrupt (NaN / Inf) weights are found at load, by element.
TEST(Safetensors, FirstNonFiniteFindsNanAndInfinityPerDtype) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  float f32[4] = {1, 2, nan, 4};
  float f32_inf[3] = {0, -inf, 1};
  float ok[2] = {1e38f, -1e-38f};
  const uint16_t bf16[3] = {0x3F80, 0x7FC0, 0};  // 1, NaN, 0
  const uint16_t f16[3] = {0x3C00, 0x0000, 0xFC00};  // 1, 0, -Inf
  SafetensorsWriter w;
  w.add("f32", Tensor(f32, DType::f32, Shape{4}));
  w.add("f32_inf", Tensor(f32_inf, DType::f32, Shape{3}));
  w.add("ok", Tensor(ok, DType::f32, Shape{2}));
  w.add("bf16", "BF16", {3}, bf16, sizeof bf16);
  w.add("f16", "F16", {3}, f16, sizeof f16);
  w.add_owned("u8", "U8", {2}, {0xFF, 0xFF});
  TempDir dir;
  w.write(dir / "nan.safetensors");
  SafetensorsFile f = SafetensorsFile::open(dir / "nan.safetensors");
  EXPECT_EQ(first_non_finite(*f.find("f32")), 2);
  EXPECT_EQ(first_non_finite(*f.find("f32_inf")), 1);
  EXPECT_EQ(first_non_finite(*f.find("ok")), -1);
  EXPECT_EQ(first_non_finite(*f.find("bf16")), 1);
  EXPECT_EQ(first_non_finite(*f.find("f16")), 2);
  EXPECT_EQ(first_non_finite(*f.find("u8")), -1);  // not floating point
}

}  // namespace
}  // namespace cotune::formats
