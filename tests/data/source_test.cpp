// Streaming JSON / JSON Lines sources: formats, chunk boundaries, locations in messages, bad records, memory.
#include "data/source.h"

#include <gtest/gtest.h>

#include <chrono>

#include "data_test_util.h"

namespace cotune::data {
namespace {

using testing::error_of;
using testing::TempDir;

const std::vector<std::string> kFields = {"Question", "Complex_CoT", "Response"};

std::vector<Record> read_all(const std::string& path, OnBadRecord policy = OnBadRecord::error,
                             int64_t* skipped = nullptr) {
  RecordSource src(path, kFields, policy);
  std::vector<Record> out;
  Record r;
  while (src.next(r)) out.push_back(r);
  if (skipped) *skipped = src.skipped();
  return out;
}

std::string rec(const std::string& q, const std::string& c = "c", const std::string& r = "r") {
  return R"({"Question": ")" + q + R"(", "Complex_CoT": ")" + c + R"(", "Response": ")" + r + R"("})";
}

TEST(Source, JsonLinesWithBlankLinesAndCrlf) {
  TempDir d;
  auto p = d.file("a.jsonl", rec("q0") + "\r\n\n  \n" + rec("q1", "x\\ny") + "\n" + rec("q2"));  // no final newline
  auto rs = read_all(p);
  ASSERT_EQ(rs.size(), 3u);
  EXPECT_EQ(rs[0].values, (std::vector<std::string>{"q0", "c", "r"}));
  EXPECT_EQ(rs[1].values[1], "x\ny");
  EXPECT_EQ(rs[2].row, 2);
  JsonRecordReader reader(p);
  EXPECT_EQ(reader.format(), JsonRecordReader::Format::json_lines);
  std::string_view json;
  RecordLocation loc;
  std::vector<int64_t> lines;
  while (reader.next(json, loc)) lines.push_back(loc.line);
  EXPECT_EQ(lines, (std::vector<int64_t>{1, 4, 5}));
}

TEST(Source, JsonArraySameAtEveryChunkSize) {
  TempDir d;
  // Strings holding brackets, braces, escaped quotes and backslashes must not confuse the boundary scan.
  std::string content = "\xEF\xBB\xBF [\n  " + rec("a ] } [ {", "\\\"}\\\\", "ok") + ",\n\n  " + rec("é ✓ 中文") +
                        " ,\n" + R"({"Response": "r", "Question": "q", "extra": [1, {"x": [true, null]}], "Complex_CoT": "c"})" +
                        "\n]\n";
  auto p = d.file("a.json", content);
  for (size_t chunk : {size_t{1}, size_t{3}, size_t{7}, size_t{64}, size_t{1} << 20}) {
    JsonRecordReader reader(p, chunk);
    ASSERT_EQ(reader.format(), JsonRecordReader::Format::json_array);
    std::string_view json;
    RecordLocation loc;
    std::vector<int64_t> lines, offsets;
    std::vector<std::string> texts;
    while (reader.next(json, loc)) {
      lines.push_back(loc.line);
      offsets.push_back(loc.byte_offset);
      texts.emplace_back(json);
    }
    ASSERT_EQ(texts.size(), 3u) << "chunk " << chunk;
    EXPECT_EQ(lines, (std::vector<int64_t>{2, 4, 5})) << "chunk " << chunk;
    EXPECT_EQ(texts[0], rec("a ] } [ {", "\\\"}\\\\", "ok"));
    EXPECT_EQ(content.substr(offsets[1], texts[1].size()), texts[1]);
  }
  auto rs = read_all(p);
  ASSERT_EQ(rs.size(), 3u);
  EXPECT_EQ(rs[0].values[0], "a ] } [ {");
  EXPECT_EQ(rs[0].values[1], "\"}\\");
  EXPECT_EQ(rs[1].values[0], "é ✓ 中文");
  EXPECT_EQ(rs[2].values, (std::vector<std::string>{"q", "c", "r"}));  // template order, not file order
}

TEST(Source, EmptyArrayAndEmptyFile) {
  TempDir d;
  EXPECT_TRUE(read_all(d.file("a.json", " [ ] ")).empty());
  EXPECT_TRUE(read_all(d.file("b.jsonl", "")).empty());
}

TEST(Source, FolderInNameOrder) {
  TempDir d;
  std::filesystem::create_directories(d.sub("ds"));
  d.file("ds/b.jsonl", rec("b0") + "\n" + rec("b1") + "\n");
  d.file("ds/a.json", "[" + rec("a0") + "]");
  d.file("ds/notes.txt", "ignored");
  auto rs = read_all(d.sub("ds"));
  ASSERT_EQ(rs.size(), 3u);
  EXPECT_EQ(rs[0].values[0], "a0");
  EXPECT_EQ(rs[1].values[0], "b0");
  EXPECT_EQ(rs[2].row, 2);
  std::filesystem::create_directories(d.sub("empty"));
  EXPECT_NE(error_of([&] { read_all(d.sub("empty")); }).find("holds no .json, .jsonl, .csv or .parquet files"), std::string::npos);
  EXPECT_NE(error_of([&] { read_all(d.sub("nope.json")); }).find("no such data file"), std::string::npos);
}

TEST(Source, RowRange) {
  TempDir d;
  std::string s;
  for (int i = 0; i < 10; ++i) s += rec(std::string("q").append(std::to_string(i))) + "\n";
  s += "this line is broken and outside the range\n";
  auto p = d.file("a.jsonl", s);
  RecordSource src(p, kFields, OnBadRecord::error);
  src.set_row_range(2, 5);
  Record r;
  std::vector<int64_t> rows;
  while (src.next(r)) rows.push_back(r.row);
  EXPECT_EQ(rows, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(src.rows_read(), 3);
}

// Each bad input names the file, the line, the record and what is wrong.
struct BadCase {
  std::string name, file, content, expect;
};

TEST(Source, BadRecordsAreNamed) {
  TempDir d;
  const std::string good = rec("q");
  std::vector<BadCase> cases = {
      {"malformed line", "a.jsonl", good + "\n" + R"({"Question": "q", "Complex_CoT": )" + "\n",
       "a.jsonl:2 (byte " + std::to_string(good.size() + 1) + "): record 1: malformed JSON"},
      {"missing field", "a.jsonl", good + "\n" + R"({"Question": "q", "Complex_CoT": "c"})",
       ":2 (byte " + std::to_string(good.size() + 1) + "): record 1: missing field 'Response'"},
      {"number field", "a.jsonl", R"({"Question": "q", "Complex_CoT": "c", "Response": 42})",
       "record 0: field 'Response' is a number, expected a string"},
      {"null field", "a.jsonl", R"({"Question": null, "Complex_CoT": "c", "Response": "r"})",
       "field 'Question' is null, expected a string"},
      {"empty field", "a.jsonl", R"({"Question": "", "Complex_CoT": "c", "Response": "r"})",
       "field 'Question' is an empty string"},
      {"invalid utf8", "a.jsonl", "{\"Question\": \"ab\xC3\x28\", \"Complex_CoT\": \"c\", \"Response\": \"r\"}",
       "invalid UTF-8 at byte 16 of the record (byte 16 of the file)"},
      {"lone surrogate", "a.jsonl", R"({"Question": "\ud800", "Complex_CoT": "c", "Response": "r"})",
       "field 'Question' is not a valid JSON string"},
      {"bad other field", "a.jsonl", R"({"Question": "q", "x": tru, "Complex_CoT": "c", "Response": "r"})",
       "malformed JSON in field 'x'"},
      {"trailing junk", "a.jsonl", good + " x", "a.jsonl:1 (byte 0): record 0: malformed JSON"},
      {"not an object", "a.json", "[" + good + ",\n 12]", "a.json:2 (byte " + std::to_string(good.size() + 4) +
                                                             "): record 1: expected a JSON object, found a number"},
      {"unterminated string", "a.json", "[\n" + good + ",\n" + R"({"Question": "q)", "a.json:3 (byte " +
                                                             std::to_string(good.size() + 4) +
                                                             "): record 1 is not closed before the end of file (unterminated string)"},
      {"trailing comma", "a.json", "[" + good + ",]", "trailing ',' before ']'"},
      {"missing comma", "a.json", "[" + good + " " + good + "]", "expected ',' or ']' after record 0"},
      {"unclosed array", "a.json", "[" + good, "the JSON array is not closed"},
      {"data after array", "a.json", "[" + good + "] x", "unexpected data after the JSON array's closing ']'"},
      {"neither", "a.json", "  \"hello\"", "a.json:1 (byte 2): expected a JSON array '[' or JSON Lines objects '{'"},
  };
  for (const auto& c : cases) {
    auto p = d.file(c.name + "_" + c.file, c.content);
    std::string e = error_of([&] { read_all(p); });
    EXPECT_NE(e.find(c.expect), std::string::npos) << c.name << ": " << e;
    EXPECT_NE(e.find(p), std::string::npos) << c.name << ": " << e;
  }
}

TEST(Source, SkipPolicyKeepsGoodRecords) {
  TempDir d;
  auto p = d.file("a.jsonl", rec("q0") + "\n{broken\n" + R"({"Question": "q", "Complex_CoT": "c"})" + "\n" +
                                 R"({"Question": "", "Complex_CoT": "c", "Response": "r"})" + "\n" + rec("q4") + "\n");
  int64_t skipped = 0;
  auto rs = read_all(p, OnBadRecord::skip, &skipped);
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].row, 0);
  EXPECT_EQ(rs[1].row, 4);  // rows keep counting bad ones, so selections refer to source rows
  EXPECT_EQ(skipped, 3);
  EXPECT_NE(error_of([&] { read_all(p); }).find("--on-bad-record skip"), std::string::npos);
  EXPECT_NE(error_of([] { parse_on_bad_record("ignore"); }).find("expected 'error' or 'skip'"), std::string::npos);
}

TEST(Source, Utf8Validator) {
  EXPECT_EQ(find_invalid_utf8("plain ascii"), -1);
  EXPECT_EQ(find_invalid_utf8("中文 é ✓ 😀"), -1);
  EXPECT_EQ(find_invalid_utf8("ab\xC0\xAF"), 2);           // overlong
  EXPECT_EQ(find_invalid_utf8("a\xED\xA0\x80"), 1);        // surrogate
  EXPECT_EQ(find_invalid_utf8("abc\xE4\xB8"), 3);          // truncated
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0);     // > U+10FFFF
}

// A 100 MB JSON array streams through with memory bounded by the read buffer, not the file.
TEST(Source, HundredMegabyteArrayInBoundedMemory) {
  TempDir d;
  const std::string path = d.sub("big.json");
  const int64_t target = int64_t{100} << 20;
  int64_t written = 0, records = 0;
  {
    std::ofstream out(path, std::ios::binary);
    std::string cot(700, 'x');
    for (size_t i = 0; i < cot.size(); i += 50) cot[i] = ' ';
    out << "[\n";
    while (written < target) {
      std::string r = (records ? ",\n" : "") + rec("question number " + std::to_string(records) + " 中文", cot,
                                                   "answer " + std::to_string(records));
      out << r;
      written += static_cast<int64_t>(r.size());
      ++records;
    }
    out << "\n]\n";
  }
  const bool reset = testing::reset_peak_rss();
  const int64_t before = testing::peak_rss_kib();
  auto t0 = std::chrono::steady_clock::now();
  RecordSource src(path, kFields, OnBadRecord::error);
  Record r;
  int64_t n = 0, bytes = 0;
  while (src.next(r)) {
    ++n;
    bytes += static_cast<int64_t>(r.values[1].size());
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t after = testing::peak_rss_kib();
  EXPECT_EQ(n, records);
  EXPECT_EQ(bytes, records * 700);
  const int64_t delta_mib = (after - before) / 1024;
  std::printf("[ measure  ] 100 MB JSON array: %lld records in %.2f s (%.0f MB/s), peak RSS delta %lld MiB "
              "(peak reset: %s)\n",
              static_cast<long long>(n), secs, static_cast<double>(written) / 1e6 / secs,
              static_cast<long long>(delta_mib), reset ? "yes" : "no");
  if (testing::kSanitized) GTEST_SKIP() << "memory budget not checked under AddressSanitizer (shadow memory)";
  EXPECT_LT(delta_mib, 32) << "streaming reader should not hold the file in memory";
}

}  // namespace
}  // namespace cotune::data
