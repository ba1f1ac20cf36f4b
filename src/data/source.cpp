#include "data/source.h"

#include <simdjson.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "base/mmap.h"
#include "base/file_kind.h"
#include "base/log.h"

namespace cotune::data {

OnBadRecord parse_on_bad_record(std::string_view s) {
  if (s == "error") return OnBadRecord::error;
  if (s == "skip") return OnBadRecord::skip;
  fail("--on-bad-record: unknown value '{}' (expected 'error' or 'skip')", s);
}

std::string_view to_string(OnBadRecord p) { return p == OnBadRecord::error ? "error" : "skip"; }

std::vector<std::string> list_data_files(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(path, ec)) {
      if (e.is_regular_file() && is_data_file_name(e.path().filename().string())) files.push_back(e.path().string());
    }
    if (ec) fail("{}: cannot list folder: {}", path, ec.message());
    std::sort(files.begin(), files.end());
    if (files.empty()) {
      if (auto why = base::unsupported_in_folder(path))
        fail("{}: the folder holds no .json, .jsonl, .csv or .parquet files; {}", path, *why);
      fail("{}: the folder holds no .json, .jsonl, .csv or .parquet files", path);
    }
    return files;
  }
  if (!fs::exists(path, ec)) fail("{}: no such data file or folder", path);
  require_regular_file(path);
  return {path};
}

int64_t find_invalid_utf8(std::string_view s) {
  if (simdjson::validate_utf8(s.data(), s.size())) return -1;
  // Slow path only to name the offset: the first byte that does not start a well-formed sequence.
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return static_cast<int64_t>(i);
    }
    if (i + len > n) return static_cast<int64_t>(i);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return static_cast<int64_t>(i);
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return static_cast<int64_t>(i);
    i += len;
  }
  return -1;
}

// ---- JsonRecordReader -------------------------------------------------------------------------------------

namespace {
bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
}  // namespace

JsonRecordReader::JsonRecordReader(std::string path, size_t chunk_bytes) : path_(std::move(path)), chunk_(chunk_bytes) {
  require_regular_file(path_);  // a FIFO would block fopen until a writer appears
  if (auto why = base::unsupported_input(path_)) fail("{}", *why);
  file_ = std::fopen(path_.c_str(), "rb");
  if (!file_) fail("{}: cannot open: {}", path_, std::strerror(errno));
  // Detect the format from the first non-space byte (after a UTF-8 byte order mark, which is skipped).
  while (buf_.size() < 3 && fill()) {
  }
  if (buf_.compare(0, 3, "\xEF\xBB\xBF") == 0) advance_to(3);
  for (;;) {
    while (pos_ < buf_.size() && is_ws(buf_[pos_])) advance_to(pos_ + 1);
    if (pos_ < buf_.size() || !fill()) break;
  }
  if (pos_ < buf_.size()) {
    char c = buf_[pos_];
    if (c == '[') format_ = Format::json_array;
    else if (c == '{') format_ = Format::json_lines;
    else fail_at(pos_, fmt::format("expected a JSON array '[' or JSON Lines objects '{{', found '{}'", c));
  } else {
    log::warn("{}: empty data file", path_);
    eof_ = true;
    array_state_ = 3;
  }
}

JsonRecordReader::~JsonRecordReader() {
  if (file_) std::fclose(file_);
}

void JsonRecordReader::compact() {
  if (pos_ == 0) return;
  buf_.erase(0, pos_);
  buf_offset_ += static_cast<int64_t>(pos_);
  pos_ = 0;
}

bool JsonRecordReader::fill() {
  if (eof_) return false;
  compact();
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

void JsonRecordReader::advance_to(size_t pos) {
  line_ += std::count(buf_.begin() + static_cast<ptrdiff_t>(pos_), buf_.begin() + static_cast<ptrdiff_t>(pos), '\n');
  pos_ = pos;
}

void JsonRecordReader::fail_at(size_t pos, std::string_view what) {
  int64_t line = line_ + std::count(buf_.begin() + static_cast<ptrdiff_t>(pos_),
                                    buf_.begin() + static_cast<ptrdiff_t>(std::min(pos, buf_.size())), '\n');
  fail("{}:{} (byte {}): {}", path_, line, buf_offset_ + static_cast<int64_t>(pos), what);
}

bool JsonRecordReader::next(std::string_view& json, RecordLocation& loc) {
  return format_ == Format::json_lines ? next_line(json, loc) : next_array_element(json, loc);
}

bool JsonRecordReader::next_line(std::string_view& json, RecordLocation& loc) {
  for (;;) {
    size_t from = pos_;
    size_t nl;
    for (;;) {
      nl = buf_.find('\n', from);
      if (nl != std::string::npos) break;
      if (eof_) {
        nl = buf_.size();
        break;
      }
      size_t scanned = buf_.size() - pos_;
      fill();
      from = pos_ + scanned;
    }
    if (pos_ >= buf_.size()) return false;
    size_t end = nl;
    while (end > pos_ && is_ws(buf_[end - 1])) --end;  // '\r' and trailing spaces
    size_t start = pos_;
    while (start < end && is_ws(buf_[start])) ++start;
    if (start == end) {  // blank line
      advance_to(std::min(nl + 1, buf_.size()));
      continue;
    }
    json = std::string_view(buf_).substr(start, end - start);
    loc.file = path_;
    loc.line = line_;
    loc.byte_offset = buf_offset_ + static_cast<int64_t>(start);
    loc.index = index_++;
    advance_to(std::min(nl + 1, buf_.size()));
    return true;
  }
}

bool JsonRecordReader::next_array_element(std::string_view& json, RecordLocation& loc) {
  // Skips whitespace; false when the file ends first.
  auto skip_ws = [&]() -> bool {
    for (;;) {
      while (pos_ < buf_.size() && is_ws(buf_[pos_])) advance_to(pos_ + 1);
      if (pos_ < buf_.size()) return true;
      if (!fill()) return false;
    }
  };
  for (;;) {
    switch (array_state_) {
      case 0:  // before '[' (the constructor already skipped the space in front of it)
        advance_to(pos_ + 1);
        array_state_ = 1;
        continue;
      case 1:  // after '['
      case 4:  // after ','
        if (!skip_ws()) fail_at(pos_, "the JSON array is not closed: expected a record or ']' before the end of file");
        if (buf_[pos_] == ']') {
          if (array_state_ == 4) fail_at(pos_, "trailing ',' before ']' in the JSON array");
          advance_to(pos_ + 1);
          array_state_ = 3;
          continue;
        }
        break;  // an element starts at pos_
      case 2:  // after an element
        if (!skip_ws()) fail_at(pos_, "the JSON array is not closed: expected ',' or ']' before the end of file");
        if (buf_[pos_] == ',') {
          advance_to(pos_ + 1);
          array_state_ = 4;
          continue;
        }
        if (buf_[pos_] == ']') {
          advance_to(pos_ + 1);
          array_state_ = 3;
          continue;
        }
        fail_at(pos_, fmt::format("expected ',' or ']' after record {} in the JSON array, found '{}'", index_ - 1,
                                  buf_[pos_]));
      case 3:  // after ']': only whitespace may follow
        if (skip_ws()) fail_at(pos_, "unexpected data after the JSON array's closing ']'");
        return false;
    }

    // Find the element's end: brackets balance outside strings. Offsets are relative to pos_, which fill() may move.
    loc.file = path_;
    loc.line = line_;
    loc.byte_offset = buf_offset_ + static_cast<int64_t>(pos_);
    loc.index = index_;
    size_t rel = 0;
    int depth = 0;
    bool in_string = false, escape = false, scalar = false;
    char first = buf_[pos_];
    if (first == '"') {
      in_string = true;
      rel = 1;
    } else if (first != '{' && first != '[') {
      scalar = true;
    }
    size_t end_rel = 0;
    for (bool done = false; !done;) {
      const char* p = buf_.data() + pos_;
      size_t n = buf_.size() - pos_;
      for (; rel < n; ++rel) {
        char c = p[rel];
        if (in_string) {
          if (escape) escape = false;
          else if (c == '\\') escape = true;
          else if (c == '"') {
            in_string = false;
            if (first == '"') {
              end_rel = rel + 1;
              done = true;
              break;
            }
          }
        } else if (scalar) {
          if (c == ',' || c == ']' || is_ws(c)) {
            end_rel = rel;
            done = true;
            break;
          }
        } else if (c == '"') {
          in_string = true;
        } else if (c == '{' || c == '[') {
          ++depth;
        } else if (c == '}' || c == ']') {
          if (--depth == 0) {
            end_rel = rel + 1;
            done = true;
            break;
          }
        }
      }
      if (done) break;
      if (!fill()) {
        if (scalar) {
          end_rel = rel;
          break;
        }
        fail_at(pos_, fmt::format("record {} is not closed before the end of file ({})", index_,
                                  in_string ? "unterminated string" : "unbalanced brackets"));
      }
    }
    json = std::string_view(buf_).substr(pos_, end_rel);
    ++index_;
    advance_to(pos_ + end_rel);
    array_state_ = 2;
    return true;
  }
}

// ---- RecordSource -----------------------------------------------------------------------------------------

namespace {

const char* type_name(simdjson::ondemand::json_type t) {
  using T = simdjson::ondemand::json_type;
  switch (t) {
    case T::array: return "an array";
    case T::object: return "an object";
    case T::number: return "a number";
    case T::string: return "a string";
    case T::boolean: return "a boolean";
    case T::null: return "null";
  }
  return "an unknown value";
}

// Walks a value completely, so that malformed JSON anywhere in a record is caught (On-Demand is lazy).
simdjson::error_code validate_value(simdjson::ondemand::value v, int depth) {
  using namespace simdjson;
  if (depth > 256) return DEPTH_ERROR;
  ondemand::json_type t;
  if (auto e = v.type().get(t)) return e;
  switch (t) {
    case ondemand::json_type::array: {
      ondemand::array a;
      if (auto e = v.get_array().get(a)) return e;
      for (auto el : a) {
        ondemand::value x;
        if (auto e = std::move(el).get(x)) return e;
        if (auto e = validate_value(x, depth + 1)) return e;
      }
      return SUCCESS;
    }
    case ondemand::json_type::object: {
      ondemand::object o;
      if (auto e = v.get_object().get(o)) return e;
      for (auto f : o) {
        ondemand::field fl;
        if (auto e = std::move(f).get(fl)) return e;
        std::string_view key;
        if (auto e = fl.unescaped_key().get(key)) return e;
        if (auto e = validate_value(fl.value(), depth + 1)) return e;
      }
      return SUCCESS;
    }
    case ondemand::json_type::number: {
      double d;
      return v.get_double().get(d);
    }
    case ondemand::json_type::string: {
      std::string_view s;
      return v.get_string().get(s);
    }
    case ondemand::json_type::boolean: {
      bool b;
      return v.get_bool().get(b);
    }
    case ondemand::json_type::null: {
      bool is_null;
      if (auto e = v.is_null().get(is_null)) return e;
      return is_null ? SUCCESS : INCORRECT_TYPE;
    }
  }
  return INCORRECT_TYPE;
}

}  // namespace

struct RecordSource::Impl {
  std::vector<std::string> files;
  size_t next_file = 0;
  std::unique_ptr<RecordReader> reader;
  std::vector<std::string> fields;
  OnBadRecord policy;
  simdjson::ondemand::parser parser;
  std::string scratch;  // the record copied with simdjson's padding after it
  std::vector<char> found;
  int64_t rows = 0, skipped = 0;  // rows parsed (inside the range), bad rows skipped
  int64_t row = 0;                 // next row index over all files
  int64_t first = 0, last = INT64_MAX;
  bool summary_logged = false;

  // Fills r.values; returns an empty string on success, else what is wrong with the record.
  std::string extract(std::string_view json, const RecordLocation& loc, Record& r) {
    using namespace simdjson;
    if (int64_t bad = find_invalid_utf8(json); bad >= 0)
      return fmt::format("invalid UTF-8 at byte {} of the record (byte {} of the file)", bad, loc.byte_offset + bad);
    scratch.assign(json);
    scratch.resize(json.size() + SIMDJSON_PADDING, '\0');
    padded_string_view view(scratch.data(), json.size(), scratch.size());
    std::string_view hint = reader->malformed_hint();
    ondemand::document doc;
    // Names where in the record parsing stopped (simdjson's current location), when it knows.
    auto malformed = [&](std::string_view where, error_code e) {
      std::string at;
      const char* p = nullptr;
      if (doc.current_location().get(p) == SUCCESS && p >= scratch.data() && p <= scratch.data() + json.size())
        at = fmt::format(" near byte {} of the record", p - scratch.data());
      return fmt::format("malformed JSON{}{}: {}{}", where, at, error_message(e), hint);
    };
    if (auto e = parser.iterate(view).get(doc)) return fmt::format("malformed JSON: {}{}", error_message(e), hint);
    ondemand::json_type t;
    if (auto e = doc.type().get(t)) return malformed("", e);
    if (t != ondemand::json_type::object) return fmt::format("expected a JSON object, found {}", type_name(t));
    ondemand::object obj;
    if (auto e = doc.get_object().get(obj)) return malformed("", e);
    found.assign(fields.size(), 0);
    for (auto f : obj) {
      ondemand::field fl;
      if (auto e = std::move(f).get(fl)) return malformed("", e);
      std::string_view key;
      if (auto e = fl.unescaped_key().get(key)) return malformed(" in a key", e);
      auto it = std::find(fields.begin(), fields.end(), key);
      if (it == fields.end()) {
        if (auto e = validate_value(fl.value(), 0)) return malformed(fmt::format(" in field '{}'", key), e);
        continue;
      }
      size_t i = static_cast<size_t>(it - fields.begin());
      ondemand::value v = fl.value();
      ondemand::json_type vt;
      if (auto e = v.type().get(vt)) return malformed(fmt::format(" in field '{}'", key), e);
      if (vt != ondemand::json_type::string)
        return fmt::format("field '{}' is {}, expected a string", key, type_name(vt));
      std::string_view s;
      if (auto e = v.get_string().get(s))
        return fmt::format("field '{}' is not a valid JSON string (bad escape or lone surrogate): {}", key,
                           error_message(e));
      r.values[i].assign(s);
      found[i] = 1;
    }
    // After the whole object has been walked the document must be exhausted (OUT_OF_BOUNDS = nothing left).
    if (const char* rest = nullptr; doc.current_location().get(rest) != OUT_OF_BOUNDS)
      return fmt::format("unexpected data after the record's closing '}}'{}", hint);
    for (size_t i = 0; i < fields.size(); ++i) {
      if (!found[i]) {
        std::string need;
        for (const auto& f : fields) need += (need.empty() ? "" : ", ") + f;
        return fmt::format("missing field '{}' (the template needs {})", fields[i], need);
      }
      if (r.values[i].empty()) return fmt::format("field '{}' is an empty string", fields[i]);
    }
    return {};
  }
};

RecordSource::RecordSource(const std::string& data_path, std::vector<std::string> fields, OnBadRecord policy)
    : impl_(std::make_unique<Impl>()) {
  impl_->files = list_data_files(data_path);
  impl_->fields = std::move(fields);
  impl_->policy = policy;
}

RecordSource::~RecordSource() = default;
RecordSource::RecordSource(RecordSource&&) noexcept = default;

bool RecordSource::next(Record& r) {
  Impl& m = *impl_;
  r.values.resize(m.fields.size());
  for (;;) {
    if (!m.reader) {
      if (m.next_file >= m.files.size()) {
        if (m.skipped > 0 && !m.summary_logged) {
          log::warn("skipped {} bad record(s) of {} (--on-bad-record skip)", m.skipped, m.rows);
          m.summary_logged = true;
        }
        return false;
      }
      m.reader = open_record_reader(m.files[m.next_file++]);
    }
    if (m.row < m.first) {  // rows before the range: skipped without being parsed (Parquet: whole row groups)
      int64_t skipped = m.reader->skip(m.first - m.row);
      m.row += skipped;
      if (m.row < m.first) {
        m.reader.reset();
        continue;
      }
    }
    if (m.row >= m.last) {
      m.reader.reset();
      m.next_file = m.files.size();
      continue;
    }
    std::string_view json;
    RecordLocation loc;
    if (!m.reader->next(json, loc)) {
      m.reader.reset();
      continue;
    }
    r.row = m.row++;
    if (r.row < m.first) continue;
    ++m.rows;
    std::string problem = m.extract(json, loc, r);
    if (problem.empty()) {
      r.json.assign(json);
      r.location = loc;
      return true;
    }
    if (m.policy == OnBadRecord::error)
      fail("{}: {} (pass --on-bad-record skip to skip bad records)", loc.describe(), problem);
    if (m.skipped < 10) log::warn("skipping {}: {}", loc.describe(), problem);
    ++m.skipped;
  }
}

void RecordSource::set_row_range(int64_t first, int64_t last) {
  impl_->first = first;
  impl_->last = last;
}

int64_t RecordSource::rows_read() const { return impl_->rows; }
int64_t RecordSource::skipped() const { return impl_->skipped; }
const std::vector<std::string>& RecordSource::files() const { return impl_->files; }

}  // namespace cotune::data
