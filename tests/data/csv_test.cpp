// CSV sources (RFC 4180 as `load_dataset("csv")` reads it): header names, quotes, escaped quotes, newlines inside
// quotes, CRLF, BOM, blank lines, short and long rows, the same records at every read-chunk size; a folder mixing
// CSV, Parquet and JSON Lines.
#include "data/csv.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/mmap.h"
#include "common/test_paths.h"
#include "data/source.h"
#include "data_test_util.h"

namespace cotune::data {
namespace {

using nlohmann::json;
using testing::error_of;
using testing::TempDir;

std::vector<json> read_csv(const std::string& path, size_t chunk = size_t{4} << 20,
                           std::vector<RecordLocation>* locs = nullptr) {
  CsvRecordReader r(path, chunk);
  std::vector<json> rows;
  std::string_view text;
  RecordLocation loc;
  while (r.next(text, loc)) {
    rows.push_back(json::parse(text));
    if (locs) locs->push_back(loc);
  }
  return rows;
}

TEST(Csv, Rfc4180AtEveryChunkSize) {
  TempDir d;
  std::string content =
      "\xEF\xBB\xBFQuestion,Complex_CoT,Response\r\n"
      "plain,\"quoted, with comma\",\"say \"\"hi\"\"\"\r\n"
      "\r\n"
      "\"multi\nline\r\nfield\",,\"中文 ✓\"\n"
      "last,\"\",no newline at the end";
  auto p = d.file("a.csv", content);
  std::vector<json> want = {
      json{{"Question", "plain"}, {"Complex_CoT", "quoted, with comma"}, {"Response", "say \"hi\""}},
      json{{"Question", "multi\nline\r\nfield"}, {"Complex_CoT", ""}, {"Response", "中文 ✓"}},
      json{{"Question", "last"}, {"Complex_CoT", ""}, {"Response", "no newline at the end"}},
  };
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{1} << 20}) {
    std::vector<RecordLocation> locs;
    EXPECT_EQ(read_csv(p, chunk, &locs), want) << "chunk " << chunk;
    ASSERT_EQ(locs.size(), 3u);
    EXPECT_EQ(locs[0].line, 2);
    EXPECT_EQ(locs[1].line, 4);
    EXPECT_EQ(locs[2].line, 7);
    EXPECT_EQ(locs[2].index, 2);
  }
  CsvRecordReader r(p);
  EXPECT_EQ(r.header(), (std::vector<std::string>{"Question", "Complex_CoT", "Response"}));
}

TEST(Csv, HeaderNamesAsPandasGivesThem) {
  TempDir d;
  auto p = d.file("h.csv", "a,,a,b\n1,2,3,4\n");
  auto rows = read_csv(p);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0], (json{{"a", "1"}, {"Unnamed: 1", "2"}, {"a.1", "3"}, {"b", "4"}}));
}

TEST(Csv, ShortRowsGetNullsLongRowsFail) {
  TempDir d;
  auto p = d.file("s.csv", "a,b,c\n1\n1,2,3,4\n");
  CsvRecordReader r(p);
  std::string_view text;
  RecordLocation loc;
  ASSERT_TRUE(r.next(text, loc));
  EXPECT_EQ(json::parse(text), (json{{"a", "1"}, {"b", nullptr}, {"c", nullptr}}));
  std::string err = error_of([&] { r.next(text, loc); });
  EXPECT_NE(err.find("s.csv:3 (byte 8): record 1 has 4 fields, the header names 3"), std::string::npos) << err;
}

TEST(Csv, UnterminatedQuoteAndEmptyFile) {
  TempDir d;
  std::string err = error_of([&] { read_csv(d.file("q.csv", "a,b\n1,\"never closed\n2,3\n")); });
  EXPECT_NE(err.find("q.csv:2 (byte 4): unterminated quoted field"), std::string::npos) << err;
  err = error_of([&] { read_csv(d.file("e.csv", "")); });
  EXPECT_NE(err.find("e.csv: empty CSV file"), std::string::npos) << err;
}

TEST(Csv, RecordSourceWithBadRecordPolicy) {
  TempDir d;
  auto p = d.file("m.csv", "Question,Complex_CoT,Response\nq0,c0,r0\nq1,c1\nq2,c2,r2\n");
  const std::vector<std::string> fields = {"Question", "Complex_CoT", "Response"};
  std::string err = error_of([&] {
    RecordSource src(p, fields, OnBadRecord::error);
    Record r;
    while (src.next(r)) {
    }
  });
  EXPECT_NE(err.find("m.csv:3 (byte 39): record 1: field 'Response' is null, expected a string"), std::string::npos)
      << err;
  RecordSource src(p, fields, OnBadRecord::skip);
  Record r;
  std::vector<std::string> got;
  while (src.next(r)) got.push_back(r.values[2]);
  EXPECT_EQ(got, (std::vector<std::string>{"r0", "r2"}));
  EXPECT_EQ(src.skipped(), 1);
  EXPECT_EQ(count_records(p), 3);
}

TEST(Csv, FolderMixingFormats) {
  TempDir d;
  std::filesystem::create_directories(d.sub("ds"));
  d.file("ds/a.csv", "Question,Complex_CoT,Response\nqa,ca,ra\n");
  std::filesystem::copy_file(cotune::testing::golden_dir() + "/data/parquet/medical.parquet", d.sub("ds/b.parquet"));
  d.file("ds/c.jsonl", R"({"Question": "qc", "Complex_CoT": "cc", "Response": "rc"})" "\n");
  d.file("ds/notes.txt", "ignored");
  EXPECT_EQ(list_data_files(d.sub("ds")).size(), 3u);
  RecordSource src(d.sub("ds"), {"Question", "Complex_CoT", "Response"}, OnBadRecord::error);
  Record r;
  std::vector<std::string> q;
  while (src.next(r)) q.push_back(r.values[0]);
  ASSERT_EQ(q.size(), 14u);  // 1 + the 12 Parquet rows + 1
  EXPECT_EQ(q.front(), "qa");
  EXPECT_EQ(q.back(), "qc");
  EXPECT_EQ(detect_data_format(d.sub("ds/a.csv")), DataFormat::csv);
  EXPECT_EQ(detect_data_format(d.sub("ds/c.jsonl")), DataFormat::json);
  // A Parquet file under another name is still found by its magic.
  std::filesystem::copy_file(d.sub("ds/b.parquet"), d.sub("renamed.json"));
  EXPECT_EQ(detect_data_format(d.sub("renamed.json")), DataFormat::parquet);
}

}  // namespace
}  // namespace cotune::data
