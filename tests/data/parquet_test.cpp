// The Parquet reader: pyarrow-written goldens (every codec, page v1 / v2, dictionary and PLAIN, nested lists,
// structs, maps, nulls, several row groups, empty row groups) read back equal to pyarrow's own reading; bad input
// (truncated, bad magic, footer length out of range, sizes that overflow) gives an Error naming file and column.
#include "data/parquet.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "base/mmap.h"
#include "common/test_paths.h"
#include "data/source.h"
#include "data_test_util.h"

namespace cotune::data {
namespace {

using nlohmann::json;
using testing::error_of;
using testing::TempDir;

std::string golden(const std::string& name) { return cotune::testing::golden_dir() + "/data/parquet/" + name; }

std::vector<json> read_parquet(const std::string& path) {
  ParquetReader r(path);
  std::vector<json> rows;
  std::string_view text;
  RecordLocation loc;
  while (r.next(text, loc)) {
    EXPECT_EQ(loc.index, static_cast<int64_t>(rows.size()));
    rows.push_back(json::parse(text));
  }
  return rows;
}

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> rows;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

// Equal as JSON values; numbers compare with a relative tolerance of 1e-12 (FLOAT columns: cotune prints the
// float's shortest form, pyarrow its double widening), integers exactly.
bool same(const json& a, const json& b, const std::string& where, std::string& why) {
  if (a.is_number() && b.is_number()) {
    if (a.is_number_integer() && b.is_number_integer()) {
      if (a == b) return true;
    } else {
      double x = a.get<double>(), y = b.get<double>();
      double tol = (a.is_number_float() && b.is_number_float()) ? 1e-7 : 1e-12;  // float32 vs its widening
      if (std::abs(x - y) <= tol * std::max(1.0, std::abs(y))) return true;
    }
    why = where + ": " + a.dump() + " != " + b.dump();
    return false;
  }
  if (a.type() != b.type()) {
    why = where + ": " + a.dump() + " is not " + b.dump();
    return false;
  }
  if (a.is_array()) {
    if (a.size() != b.size()) {
      why = where + ": " + std::to_string(a.size()) + " elements, expected " + std::to_string(b.size());
      return false;
    }
    for (size_t i = 0; i < a.size(); ++i)
      if (!same(a[i], b[i], where + "[" + std::to_string(i) + "]", why)) return false;
    return true;
  }
  if (a.is_object()) {
    std::vector<std::string> ka, kb;
    for (auto& [k, v] : a.items()) ka.push_back(k);
    for (auto& [k, v] : b.items()) kb.push_back(k);
    if (ka != kb) {
      why = where + ": keys " + json(ka).dump() + " != " + json(kb).dump();
      return false;
    }
    for (auto& [k, v] : a.items())
      if (!same(v, b[k], where + "." + k, why)) return false;
    return true;
  }
  if (a != b) {
    why = where + ": " + a.dump() + " != " + b.dump();
    return false;
  }
  return true;
}

void expect_golden(const std::string& parquet, const std::string& expected) {
  auto got = read_parquet(golden(parquet));
  auto want = read_jsonl(golden(expected));
  ASSERT_EQ(got.size(), want.size()) << parquet;
  for (size_t i = 0; i < got.size(); ++i) {
    std::string why;
    EXPECT_TRUE(same(got[i], want[i], "row " + std::to_string(i), why)) << parquet << ": " << why;
  }
}

class ParquetGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ParquetGolden, ReadsBackWhatPyarrowReads) { expect_golden(GetParam() + ".parquet", "all.jsonl"); }

INSTANTIATE_TEST_SUITE_P(CodecsAndPages, ParquetGolden,
                         ::testing::Values("all_none_v1", "all_none_v2", "all_snappy_v1", "all_snappy_v2",
                                           "all_gzip_v1", "all_gzip_v2", "all_zstd_v1", "all_zstd_v2",
                                           "plain_snappy_v1", "plain_snappy_v2", "delta_none_v1", "delta_zstd_v2"));

TEST(Parquet, DictionaryFallingBackToPlain) { expect_golden("dict_fallback.parquet", "dict_fallback.jsonl"); }
TEST(Parquet, ZeroRowGroupBetweenOthers) { expect_golden("zero_row_group.parquet", "zero_row_group.jsonl"); }

TEST(Parquet, EmptyFile) {
  ParquetReader r(golden("empty.parquet"));
  std::string_view text;
  RecordLocation loc;
  EXPECT_FALSE(r.next(text, loc));
  EXPECT_EQ(r.known_record_count(), 0);
}

TEST(Parquet, MessagesColumnIsAnArrayOfObjects) {
  auto rows = read_parquet(golden("all_zstd_v2.parquet"));
  ASSERT_GT(rows.size(), 8u);
  EXPECT_EQ(rows[2]["messages"].size(), 3u);
  EXPECT_EQ(rows[2]["messages"][1]["role"], "user");
  EXPECT_EQ(rows[2]["messages"][1]["content"], "turn 1 of row 2: 中文 é ✓ 🙂");
  EXPECT_TRUE(rows[7]["messages"].is_null());
  EXPECT_EQ(rows[8]["messages"], json::array());
  ParquetReader r(golden("all_zstd_v2.parquet"));
  EXPECT_EQ(r.column_names().front(), "id");
  EXPECT_EQ(r.row_group_count(), 6);
  EXPECT_EQ(r.known_record_count(), 41);
}

TEST(Parquet, SkipMatchesReading) {
  auto all = read_parquet(golden("all_snappy_v1.parquet"));
  for (int64_t first : {0, 3, 8, 16, 19, 40, 41, 50}) {
    ParquetReader r(golden("all_snappy_v1.parquet"));
    int64_t skipped = r.skip(first);
    EXPECT_EQ(skipped, std::min<int64_t>(first, 41));
    std::string_view text;
    RecordLocation loc;
    if (first >= 41) {
      EXPECT_FALSE(r.next(text, loc));
      continue;
    }
    ASSERT_TRUE(r.next(text, loc));
    EXPECT_EQ(loc.index, first);
    EXPECT_EQ(loc.row_group, first / 8);
    EXPECT_EQ(json::parse(text), all[static_cast<size_t>(first)]) << first;
  }
}

TEST(Parquet, RecordSourceReadsTemplateFields) {
  const std::vector<std::string> fields = {"Question", "Complex_CoT", "Response"};
  auto want = read_jsonl(golden("medical.jsonl"));
  RecordSource src(golden("medical.parquet"), fields, OnBadRecord::error);
  src.set_row_range(4, 9);  // crosses row groups of 5 rows
  Record r;
  std::vector<int64_t> rows;
  while (src.next(r)) {
    rows.push_back(r.row);
    EXPECT_EQ(r.values[0], want[static_cast<size_t>(r.row)]["Question"].get<std::string>());
    EXPECT_EQ(r.values[2], want[static_cast<size_t>(r.row)]["Response"].get<std::string>());
  }
  EXPECT_EQ(rows, (std::vector<int64_t>{4, 5, 6, 7, 8}));
  EXPECT_EQ(count_records(golden("medical.parquet")), 12);
  EXPECT_EQ(detect_data_format(golden("medical.parquet")), DataFormat::parquet);
}

TEST(Parquet, BadFieldNamesFileAndRow) {
  // `id` is a number: the template's field check names the Parquet file and row.
  std::string err = error_of([] {
    RecordSource src(golden("all_none_v1.parquet"), {"id"}, OnBadRecord::error);
    Record r;
    while (src.next(r)) {
    }
  });
  EXPECT_NE(err.find("all_none_v1.parquet: row group 0, record 0: field 'id' is a number, expected a string"),
            std::string::npos) << err;
}

// ---- bad input ----------------------------------------------------------------------------------------------

std::string bytes_of(const std::string& path) { return read_file(path); }

std::string open_error(const std::string& path) {
  return error_of([&] {
    ParquetReader r(path);
    std::string_view text;
    RecordLocation loc;
    while (r.next(text, loc)) {
    }
  });
}

TEST(ParquetBadInput, TruncatedBadMagicAndFooterLength) {
  TempDir d;
  std::string good = bytes_of(golden("all_snappy_v1.parquet"));
  EXPECT_NE(open_error(d.file("short.parquet", "PAR1PAR1")).find("too short"), std::string::npos);
  EXPECT_NE(open_error(d.file("trunc.parquet", good.substr(0, good.size() / 2))).find("does not end with the magic 'PAR1'"),
            std::string::npos);
  std::string bad_head = good;
  bad_head[0] = 'X';
  EXPECT_NE(open_error(d.file("head.parquet", bad_head)).find("does not start with the magic 'PAR1'"), std::string::npos);
  std::string big_footer = good;
  uint32_t len = 0xFFFFFFF0u;
  std::memcpy(big_footer.data() + big_footer.size() - 8, &len, 4);
  std::string err = open_error(d.file("footer.parquet", big_footer));
  EXPECT_NE(err.find("footer.parquet: corrupt Parquet footer: its length 4294967280 is out of range"), std::string::npos)
      << err;
  std::string zero_footer = good;
  len = 0;
  std::memcpy(zero_footer.data() + zero_footer.size() - 8, &len, 4);
  err = open_error(d.file("zero.parquet", zero_footer));
  EXPECT_NE(err.find("zero.parquet: file metadata: corrupt Thrift metadata"), std::string::npos) << err;
  std::string pare = good;
  std::memcpy(pare.data() + pare.size() - 4, "PARE", 4);
  EXPECT_NE(open_error(d.file("enc.parquet", pare)).find("encrypted"), std::string::npos);
}

// A tiny Thrift compact writer, to build files whose headers say what a test needs.
struct ThriftWriter {
  std::string out;
  std::vector<int> last{0};
  void varint(uint64_t v) {
    while (v >= 0x80) out.push_back(static_cast<char>((v & 0x7F) | 0x80)), v >>= 7;
    out.push_back(static_cast<char>(v));
  }
  void field(int id, int type) {
    int delta = id - last.back();
    if (delta > 0 && delta <= 15) {
      out.push_back(static_cast<char>((delta << 4) | type));
    } else {
      out.push_back(static_cast<char>(type));
      varint(static_cast<uint64_t>((id << 1) ^ (id >> 31)));
    }
    last.back() = id;
  }
  void i32(int id, int64_t v) { field(id, 5), varint(static_cast<uint64_t>((v << 1) ^ (v >> 63))); }
  void i64(int id, int64_t v) { field(id, 6), varint(static_cast<uint64_t>((v << 1) ^ (v >> 63))); }
  void str(int id, const std::string& s) { field(id, 8), varint(s.size()), out += s; }
  void begin(int id) { field(id, 12), last.push_back(0); }
  void end() { out.push_back(0), last.pop_back(); }
  void list(int id, int elem_type, uint32_t n) {
    field(id, 9);
    if (n < 15) out.push_back(static_cast<char>((n << 4) | elem_type));
    else out.push_back(static_cast<char>(0xF0 | elem_type)), varint(n);
  }
  void list_begin_struct() { last.push_back(0); }
};

// One required INT32 column "x" holding `values`, in one PLAIN data page v1; the knobs corrupt one size each.
struct TinyFile {
  int32_t codec = 0, encoding = 0;
  int64_t page_num_values = -1, uncompressed = -1, compressed = -1, chunk_values = -1, chunk_size = -1, rows = -1;
  uint32_t schema_list_size = 2;
  std::vector<int32_t> values{10, 20, 30};

  std::string build() const {
    std::string data(reinterpret_cast<const char*>(values.data()), values.size() * 4);
    ThriftWriter page;
    page.i32(1, 0);  // DATA_PAGE
    page.i32(2, uncompressed >= 0 ? uncompressed : static_cast<int64_t>(data.size()));
    page.i32(3, compressed >= 0 ? compressed : static_cast<int64_t>(data.size()));
    page.begin(5);
    page.i32(1, page_num_values >= 0 ? page_num_values : static_cast<int64_t>(values.size()));
    page.i32(2, encoding);
    page.i32(3, 3);
    page.i32(4, 3);
    page.end();
    page.out.push_back(0);
    std::string chunk = page.out + data;
    ThriftWriter m;
    m.i32(1, 2);
    m.list(2, 12, schema_list_size);
    m.list_begin_struct();  // root
    m.str(4, "schema");
    m.i32(5, 1);
    m.end();
    m.list_begin_struct();  // x
    m.i32(1, 1);            // INT32
    m.i32(3, 0);            // REQUIRED
    m.str(4, "x");
    m.end();
    m.i64(3, static_cast<int64_t>(values.size()));
    m.list(4, 12, 1);
    m.list_begin_struct();  // row group
    m.list(1, 12, 1);
    m.list_begin_struct();  // column chunk
    m.i64(2, 4);
    m.begin(3);
    m.i32(1, 1);
    m.list(2, 5, 1);
    m.varint(0);
    m.list(3, 8, 1);
    m.varint(1), m.out += "x";
    m.i32(4, codec);
    m.i64(5, chunk_values >= 0 ? chunk_values : static_cast<int64_t>(values.size()));
    m.i64(6, static_cast<int64_t>(chunk.size()));
    m.i64(7, chunk_size >= 0 ? chunk_size : static_cast<int64_t>(chunk.size()));
    m.i64(9, 4);
    m.end();
    m.end();  // column chunk
    m.i64(2, static_cast<int64_t>(chunk.size()));
    m.i64(3, rows >= 0 ? rows : static_cast<int64_t>(values.size()));
    m.end();  // row group
    m.out.push_back(0);
    std::string file = "PAR1" + chunk + m.out;
    uint32_t len = static_cast<uint32_t>(m.out.size());
    file.append(reinterpret_cast<const char*>(&len), 4);
    return file + "PAR1";
  }
};

TEST(ParquetBadInput, HandBuiltFileReads) {
  TempDir d;
  auto rows = read_parquet(d.file("ok.parquet", TinyFile{}.build()));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2], json::parse(R"({"x": 30})"));
}

TEST(ParquetBadInput, SizesOutOfRangeAreErrorsBeforeAllocating) {
  TempDir d;
  auto err_for = [&](TinyFile f) { return open_error(d.file("t.parquet", f.build())); };
  TinyFile f;
  f.uncompressed = 2147483647;
  EXPECT_NE(err_for(f).find("t.parquet: column 'x': page at byte 4: uncompressed size 2147483647 out of range"),
            std::string::npos) << err_for(f);
  f = {};
  f.compressed = 1 << 30;
  EXPECT_NE(err_for(f).find("column 'x': page at byte 4: compressed size 1073741824 out of range"), std::string::npos)
      << err_for(f);
  f = {};
  f.page_num_values = 2000000000;
  f.chunk_values = 2000000000;
  EXPECT_NE(err_for(f).find("column 'x': a data page of 2000000000 values"), std::string::npos) << err_for(f);
  f = {};
  f.page_num_values = 1000;  // more values than the page's bytes hold
  f.chunk_values = 1000;
  EXPECT_NE(err_for(f).find("1000 PLAIN values of 4 bytes do not fit the page's 12 bytes"), std::string::npos) << err_for(f);
  f = {};
  f.chunk_size = int64_t{1} << 40;
  EXPECT_NE(err_for(f).find("column 'x': the chunk's byte range (offset 4, 1099511627776 bytes) lies outside"),
            std::string::npos) << err_for(f);
  f = {};
  f.schema_list_size = 4000000;
  EXPECT_NE(err_for(f).find("t.parquet: file metadata: corrupt Thrift metadata at byte"), std::string::npos) << err_for(f);
  EXPECT_NE(err_for(f).find("a list of 4000000 elements"), std::string::npos) << err_for(f);
  f = {};
  f.rows = 5;  // the row group claims more rows than the chunk has
  EXPECT_NE(err_for(f).find("column 'x': the column chunk ends before its row group's 5 rows"), std::string::npos)
      << err_for(f);
}

TEST(ParquetBadInput, UnsupportedCodecAndEncodingAreNamed) {
  TempDir d;
  TinyFile f;
  f.codec = 7;
  std::string err = open_error(d.file("t.parquet", f.build()));
  EXPECT_NE(err.find("t.parquet: column 'x': unsupported compression codec LZ4_RAW (supported: UNCOMPRESSED, SNAPPY, "
                     "GZIP, ZSTD)"), std::string::npos) << err;
  f = {};
  f.encoding = 7;
  err = open_error(d.file("t.parquet", f.build()));
  EXPECT_NE(err.find("t.parquet: column 'x': unsupported encoding DELTA_BYTE_ARRAY for INT32 values"),
            std::string::npos) << err;
}

// Random byte changes anywhere in real files: each read either succeeds or throws Error (under ASan in CI: no
// out-of-bounds access, no huge allocation). Uncompressed files let the changes reach the level and value decoders.
class ParquetMutated : public ::testing::TestWithParam<std::string> {};

TEST_P(ParquetMutated, NeverCrash) {
  TempDir d;
  std::string good = bytes_of(golden(GetParam() + ".parquet"));
  std::mt19937 rng(1234);
  int errors = 0;
  const int rounds = testing::kSanitized ? 100 : 300;
  for (int round = 0; round < rounds; ++round) {
    std::string bad = good;
    int changes = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < changes; ++k) {
      // Half of the changes hit the footer, where sizes and offsets live.
      size_t footer = good.size() - 8 - 3000;
      size_t at = (rng() % 2) ? footer + rng() % 3000 : 4 + rng() % (good.size() - 12);
      bad[at] = static_cast<char>(rng());
    }
    std::string path = d.file("m.parquet", bad);
    try {
      ParquetReader r(path);
      std::string_view text;
      RecordLocation loc;
      while (r.next(text, loc)) {
      }
    } catch (const Error& e) {
      ++errors;
      EXPECT_NE(std::string(e.what()).find("m.parquet"), std::string::npos) << e.what();
    }
  }
  EXPECT_GT(errors, rounds / 10);
}

INSTANTIATE_TEST_SUITE_P(Files, ParquetMutated, ::testing::Values("all_snappy_v2", "all_none_v1", "delta_none_v1"));

}  // namespace
}  // namespace cotune::data
