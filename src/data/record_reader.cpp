#include "data/record_reader.h"

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "data/csv.h"
#include "data/parquet.h"
#include "data/source.h"

namespace cotune::data {

std::string RecordLocation::describe() const {
  if (line > 0) return fmt::format("{}:{} (byte {}): record {}", file, line, byte_offset, index);
  if (row_group >= 0) return fmt::format("{}: row group {}, record {}", file, row_group, index);
  return fmt::format("{}: record {}", file, index);
}

int64_t RecordReader::skip(int64_t n) {
  std::string_view json;
  RecordLocation loc;
  int64_t done = 0;
  while (done < n && next(json, loc)) ++done;
  return done;
}

std::string_view to_string(DataFormat f) {
  switch (f) {
    case DataFormat::json: return "JSON";
    case DataFormat::csv: return "CSV";
    case DataFormat::parquet: return "Parquet";
  }
  return "?";
}

namespace {
std::string lower_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}
}  // namespace

bool is_data_file_name(const std::string& name) {
  std::string ext = lower_extension(name);
  return ext == ".json" || ext == ".jsonl" || ext == ".csv" || ext == ".parquet";
}

DataFormat detect_data_format(const std::string& path) {
  char magic[4] = {};
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    size_t n = std::fread(magic, 1, 4, f);
    std::fclose(f);
    if (n == 4 && std::memcmp(magic, "PAR1", 4) == 0) return DataFormat::parquet;
  }
  std::string ext = lower_extension(path);
  if (ext == ".parquet") return DataFormat::parquet;  // the reader names what is wrong with its magic
  if (ext == ".csv") return DataFormat::csv;
  return DataFormat::json;
}

std::unique_ptr<RecordReader> open_record_reader(const std::string& path) {
  switch (detect_data_format(path)) {
    case DataFormat::parquet: return std::make_unique<ParquetReader>(path);
    case DataFormat::csv: return std::make_unique<CsvRecordReader>(path);
    case DataFormat::json: break;
  }
  return std::make_unique<JsonRecordReader>(path);
}

int64_t count_records(const std::string& path) {
  auto reader = open_record_reader(path);
  if (int64_t n = reader->known_record_count(); n >= 0) return n;
  return reader->skip(INT64_MAX);
}

}  // namespace cotune::data
