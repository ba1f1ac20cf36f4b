#include "data/csv.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_set>

#include "base/error.h"
#include "data/json_text.h"

namespace cotune::data {

CsvRecordReader::CsvRecordReader(std::string path, size_t chunk_bytes) : path_(std::move(path)), chunk_(chunk_bytes) {
  file_ = std::fopen(path_.c_str(), "rb");
  if (!file_) fail("{}: cannot open: {}", path_, std::strerror(errno));
  while (buf_.size() < 3 && fill()) {
  }
  if (buf_.compare(0, 3, "\xEF\xBB\xBF") == 0) pos_ = 3;
  int64_t line, offset;
  if (!read_record(line, offset)) fail("{}: empty CSV file (expected a header row with the column names)", path_);
  header_ = fields_;
  // Names as pandas gives them: empty -> "Unnamed: i", repeats -> "name.1", "name.2", ...
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < header_.size(); ++i) {
    std::string name = header_[i].empty() ? fmt::format("Unnamed: {}", i) : header_[i];
    std::string unique = name;
    for (int k = 1; seen.count(unique); ++k) unique = fmt::format("{}.{}", name, k);
    seen.insert(unique);
    header_[i] = unique;
    std::string key;
    append_json_string(key, unique);
    key.push_back(':');
    keys_json_.push_back(std::move(key));
  }
}

CsvRecordReader::~CsvRecordReader() {
  if (file_) std::fclose(file_);
}

bool CsvRecordReader::fill() {
  if (eof_) return false;
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    buf_offset_ += static_cast<int64_t>(pos_);
    pos_ = 0;
  }
  size_t old = buf_.size();
  buf_.resize(old + chunk_);
  size_t n = std::fread(buf_.data() + old, 1, chunk_, file_);
  buf_.resize(old + n);
  if (n < chunk_) {
    if (std::ferror(file_)) fail("{}: read error at byte {}", path_, buf_offset_ + static_cast<int64_t>(old + n));
    eof_ = true;
  }
  return n > 0;
}

bool CsvRecordReader::parse_record(size_t& consumed, bool at_eof) {
  fields_.clear();
  const char* p = buf_.data() + pos_;
  size_t n = buf_.size() - pos_, i = 0;
  std::string field;
  for (;;) {
    field.clear();
    if (i < n && p[i] == '"') {  // quoted: up to the closing quote, "" is a quote
      ++i;
      for (;;) {
        const char* q = static_cast<const char*>(std::memchr(p + i, '"', n - i));
        if (!q) {
          if (at_eof)
            fail("{}:{} (byte {}): unterminated quoted field: the file ends inside quotes opened in this record",
                 path_, line_, buf_offset_ + static_cast<int64_t>(pos_));
          return false;
        }
        size_t at = static_cast<size_t>(q - p);
        field.append(p + i, at - i);
        if (at + 1 < n && p[at + 1] == '"') {
          field.push_back('"');
          i = at + 2;
          continue;
        }
        if (at + 1 >= n && !at_eof) return false;  // "" may straddle the buffer's end
        i = at + 1;
        break;
      }
      // Text between the closing quote and the separator is kept, as pandas does ("a"b -> ab).
      while (i < n && p[i] != ',' && p[i] != '\n' && p[i] != '\r') field.push_back(p[i++]);
    } else {
      size_t start = i;
      while (i < n && p[i] != ',' && p[i] != '\n' && p[i] != '\r') ++i;
      field.append(p + start, i - start);
    }
    if (i >= n && !at_eof) return false;
    fields_.push_back(field);
    if (i < n && p[i] == ',') {
      ++i;
      continue;
    }
    // End of the record: \n, \r\n, \r, or the end of the file.
    if (i < n && p[i] == '\r') {
      if (i + 1 >= n && !at_eof) return false;
      ++i;
      if (i < n && p[i] == '\n') ++i;
    } else if (i < n) {
      ++i;
    }
    consumed = i;
    return true;
  }
}

bool CsvRecordReader::read_record(int64_t& line, int64_t& offset) {
  for (;;) {
    if (pos_ >= buf_.size() && !fill()) return false;
    // Blank lines are skipped (pandas' skip_blank_lines).
    char c = buf_[pos_];
    if (c == '\n' || c == '\r') {
      if (c == '\r' && pos_ + 1 >= buf_.size()) fill();
      if (c == '\r' && pos_ + 1 < buf_.size() && buf_[pos_ + 1] == '\n') ++pos_;
      ++pos_;
      ++line_;
      continue;
    }
    size_t consumed = 0;
    while (!parse_record(consumed, eof_)) fill();
    line = line_;
    offset = buf_offset_ + static_cast<int64_t>(pos_);
    for (size_t k = pos_; k < pos_ + consumed; ++k) {
      if (buf_[k] == '\n' || (buf_[k] == '\r' && (k + 1 >= buf_.size() || buf_[k + 1] != '\n'))) ++line_;
    }
    pos_ += consumed;
    return true;
  }
}

bool CsvRecordReader::next(std::string_view& json, RecordLocation& loc) {
  int64_t line, offset;
  if (!read_record(line, offset)) return false;
  if (fields_.size() > header_.size())
    fail("{}:{} (byte {}): record {} has {} fields, the header names {} (a separator inside an unquoted field?)",
         path_, line, offset, index_, fields_.size(), header_.size());
  record_.clear();
  record_.push_back('{');
  for (size_t i = 0; i < header_.size(); ++i) {
    if (i) record_.push_back(',');
    record_ += keys_json_[i];
    if (i < fields_.size()) append_json_string(record_, fields_[i]);
    else record_ += "null";
  }
  record_.push_back('}');
  loc = RecordLocation{};
  loc.file = path_;
  loc.line = line;
  loc.byte_offset = offset;
  loc.index = index_++;
  json = record_;
  return true;
}

}  // namespace cotune::data
