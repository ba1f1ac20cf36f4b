#include "data/parquet_column.h"

#include <snappy.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>

#include "base/error.h"
#include "base/half.h"
#include "data/json_text.h"

namespace cotune::data::parquet {
namespace {

// Limits on sizes read from the file, checked before anything is allocated.
constexpr int64_t kMaxPageBytes = int64_t{1} << 30;    // one page, decompressed
constexpr int64_t kMaxPageValues = int64_t{1} << 26;   // level triplets in one page

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

int bit_width_of(uint32_t max_value) {
  int w = 0;
  while (max_value >> w) ++w;
  return w;
}

// Decodes `count` values of the RLE / bit-packed hybrid encoding from [p, p+n) into `out` (resized), each checked
// to be <= max_value. `what` names the data in errors.
template <typename T>
void decode_hybrid(const uint8_t* p, size_t n, int bit_width, size_t count, uint32_t max_value, std::vector<T>& out,
                   const std::string& what) {
  out.resize(count);
  size_t pos = 0, done = 0;
  const uint64_t mask = bit_width == 0 ? 0 : (~uint64_t{0} >> (64 - bit_width));
  auto ran_out = [&] { fail("{}: the encoded data ends after {} of {} values", what, done, count); };
  while (done < count) {
    uint64_t header = 0;
    for (int shift = 0;; shift += 7) {
      if (pos >= n || shift > 63) ran_out();
      uint8_t b = p[pos++];
      header |= uint64_t{b & 0x7Fu} << shift;
      if (!(b & 0x80)) break;
    }
    if (header & 1) {  // bit-packed: (header >> 1) groups of 8 values, bit_width bytes a group
      uint64_t groups = header >> 1;
      if (groups > (uint64_t{1} << 60)) ran_out();  // so that groups * 8 cannot overflow
      if (bit_width > 0 && groups > (n - pos) / static_cast<uint64_t>(bit_width)) ran_out();
      size_t bytes = static_cast<size_t>(groups) * static_cast<size_t>(bit_width);
      size_t take = static_cast<size_t>(std::min<uint64_t>(groups * 8, count - done));
      const uint8_t* q = p + pos;
      uint64_t acc = 0;
      int bits = 0;
      for (size_t i = 0; i < take; ++i) {
        while (bits < bit_width) {
          acc |= uint64_t{*q++} << bits;
          bits += 8;
        }
        auto v = static_cast<uint32_t>(acc & mask);
        acc >>= bit_width;
        bits -= bit_width;
        if (v > max_value) fail("{}: value {} is larger than the maximum {}", what, v, max_value);
        out[done + i] = static_cast<T>(v);
      }
      done += take;
      pos += bytes;
    } else {  // run: (header >> 1) copies of one value stored in ceil(bit_width / 8) bytes
      uint64_t run = header >> 1;
      size_t vbytes = static_cast<size_t>((bit_width + 7) / 8);
      if (n - pos < vbytes) ran_out();
      uint32_t v = 0;
      for (size_t k = 0; k < vbytes; ++k) v |= uint32_t{p[pos + k]} << (8 * k);
      pos += vbytes;
      if (v > max_value) fail("{}: value {} is larger than the maximum {}", what, v, max_value);
      size_t take = static_cast<size_t>(std::min<uint64_t>(run, count - done));
      std::fill_n(out.begin() + static_cast<ptrdiff_t>(done), take, static_cast<T>(v));
      done += take;
    }
  }
}

// Days since 1970-01-01 -> civil date (H. Hinnant's algorithm).
void civil_from_days(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  auto doe = static_cast<unsigned>(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<int64_t>(yoe) + era * 400;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
}

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// "HH:MM:SS" plus ".fff" / ".ffffff" / ".fffffffff" when the fraction is not zero.
void append_time_of_day(std::string& out, int64_t units, int64_t per_second, int digits) {
  int64_t secs = units / per_second, frac = units % per_second;
  fmt::format_to(std::back_inserter(out), "{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
  if (frac) fmt::format_to(std::back_inserter(out), ".{:0{}}", frac, digits);
}

void append_timestamp(std::string& out, int64_t v, int32_t unit, bool utc) {
  int64_t per_second = unit == 1 ? 1000 : unit == 2 ? 1000000 : 1000000000;
  int digits = unit == 1 ? 3 : unit == 2 ? 6 : 9;
  int64_t per_day = per_second * 86400;
  int64_t days = floor_div(v, per_day);
  int64_t in_day = v - days * per_day;
  int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  fmt::format_to(std::back_inserter(out), "\"{:04}-{:02}-{:02}T", y, m, d);
  append_time_of_day(out, in_day, per_second, digits);
  out += utc ? "Z\"" : "\"";
}

__extension__ typedef __int128 int128;

void append_decimal(std::string& out, int128 v, int32_t scale) {
  bool neg = v < 0;
  // Digits of |v|, least significant first (unsigned arithmetic: |INT128_MIN| does not fit a signed value).
  unsigned __int128 u = neg ? static_cast<unsigned __int128>(0) - static_cast<unsigned __int128>(v)
                            : static_cast<unsigned __int128>(v);
  char digits[48];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + static_cast<int>(u % 10));
    u /= 10;
  } while (u);
  if (neg) out.push_back('-');
  if (scale <= 0) {
    for (int i = n - 1; i >= 0; --i) out.push_back(digits[i]);
    for (int i = 0; i < -scale; ++i) out.push_back('0');
    return;
  }
  if (n <= scale) {
    out += "0.";
    for (int i = 0; i < scale - n; ++i) out.push_back('0');
    for (int i = n - 1; i >= 0; --i) out.push_back(digits[i]);
    return;
  }
  for (int i = n - 1; i >= 0; --i) {
    out.push_back(digits[i]);
    if (i == scale) out.push_back('.');
  }
}

// Big-endian two's complement, as DECIMAL stores it in byte arrays.
int128 decimal_from_bytes(std::string_view b) {
  unsigned __int128 u = (!b.empty() && (static_cast<unsigned char>(b[0]) & 0x80)) ? ~static_cast<unsigned __int128>(0) : 0;
  for (char c : b) u = (u << 8) | static_cast<unsigned char>(c);
  return static_cast<int128>(u);
}

template <typename F>
void append_float(std::string& out, F v) {
  if (!std::isfinite(v)) {
    out += "null";  // JSON has no NaN / Infinity
    return;
  }
  fmt::format_to(std::back_inserter(out), "{}", v);
}


// DELTA_BINARY_PACKED: a header <block size> <miniblocks a block> <value count> <first value (zigzag)>, then blocks
// of <min delta (zigzag)> <one bit width a miniblock> <miniblocks of bit-packed deltas>. Decodes up to `max_count`
// values (the header's count must not exceed it) into `out` (wrapping arithmetic, as the encoder's), returns the
// bytes consumed (the data that follows belongs to DELTA_LENGTH_BYTE_ARRAY / DELTA_BYTE_ARRAY).
size_t decode_delta_binary_packed(const uint8_t* p, size_t n, size_t max_count, std::vector<uint64_t>& out,
                                  const std::string& what) {
  size_t pos = 0;
  auto varint = [&]() -> uint64_t {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      if (pos >= n || shift > 63) fail("{}: DELTA_BINARY_PACKED data ends inside a header", what);
      uint8_t b = p[pos++];
      v |= uint64_t{b & 0x7Fu} << shift;
      if (!(b & 0x80)) return v;
    }
  };
  auto zigzag = [](uint64_t u) { return (u >> 1) ^ (~(u & 1) + 1); };
  uint64_t block = varint(), miniblocks = varint(), total = varint();
  uint64_t value = zigzag(varint());
  if (block == 0 || block % 128 != 0 || block > (uint64_t{1} << 20) || miniblocks == 0 || block % miniblocks != 0 ||
      (block / miniblocks) % 32 != 0)
    fail("{}: DELTA_BINARY_PACKED block of {} values in {} miniblocks (expected a multiple of 128 in miniblocks of a "
         "multiple of 32)", what, block, miniblocks);
  if (total > max_count) fail("{}: DELTA_BINARY_PACKED holds {} values where at most {} are expected", what, total, max_count);
  out.clear();
  if (total == 0) return pos;
  out.reserve(static_cast<size_t>(total));
  out.push_back(value);
  const uint64_t per_mini = block / miniblocks;
  std::vector<uint8_t> widths(static_cast<size_t>(miniblocks));
  while (out.size() < total) {
    uint64_t min_delta = zigzag(varint());
    if (n - pos < miniblocks) fail("{}: DELTA_BINARY_PACKED data ends inside a block header", what);
    std::memcpy(widths.data(), p + pos, widths.size());
    pos += widths.size();
    for (size_t m = 0; m < widths.size() && out.size() < total; ++m) {
      int bw = widths[m];
      if (bw > 64) fail("{}: DELTA_BINARY_PACKED miniblock bit width {} (at most 64)", what, bw);
      size_t bytes = static_cast<size_t>(per_mini) * static_cast<size_t>(bw) / 8;
      if (n - pos < bytes) fail("{}: DELTA_BINARY_PACKED data ends inside a miniblock", what);
      const uint8_t* q = p + pos;
      size_t take = static_cast<size_t>(std::min<uint64_t>(per_mini, total - out.size()));
      for (size_t i = 0; i < take; ++i) {
        uint64_t delta = 0;
        if (bw > 0) {
          size_t bit = i * static_cast<size_t>(bw);
          unsigned __int128 acc = 0;
          size_t first = bit / 8, last = (bit + static_cast<size_t>(bw) + 7) / 8;  // bytes [first, last)
          for (size_t k = first; k < last; ++k) acc |= static_cast<unsigned __int128>(q[k]) << (8 * (k - first));
          delta = static_cast<uint64_t>(acc >> (bit % 8));
          if (bw < 64) delta &= (uint64_t{1} << bw) - 1;
        }
        value += min_delta + delta;
        out.push_back(value);
      }
      pos += bytes;
    }
  }
  return pos;
}

}  // namespace

ColumnDescriptor describe_leaf(const SchemaElement& e, std::string path, int16_t max_def, int16_t max_rep,
                               const std::string& file) {
  using K = LogicalType::Kind;
  using C = ConvertedType;
  ColumnDescriptor c;
  c.path = std::move(path);
  c.type = e.type;
  c.type_length = e.type_length;
  c.max_def = max_def;
  c.max_rep = max_rep;
  const LogicalType& lt = e.logical;
  auto unsupported = [&](std::string_view what) -> ColumnDescriptor {
    fail("{}: column '{}': unsupported {} ({})", file, c.path, what, to_string(e.type));
  };
  bool is_decimal = lt.kind == K::decimal || e.converted == C::decimal;
  if (is_decimal) {
    c.kind = ValueKind::decimal;
    c.scale = lt.kind == K::decimal ? lt.scale : e.scale;
    if (e.type == PhysicalType::fixed_len_byte_array && e.type_length > 16)
      return unsupported(fmt::format("DECIMAL of {} bytes (at most 16)", e.type_length));
    if (e.type == PhysicalType::boolean || e.type == PhysicalType::float32 || e.type == PhysicalType::float64 ||
        e.type == PhysicalType::int96)
      return unsupported("DECIMAL storage");
    return c;
  }
  switch (e.type) {
    case PhysicalType::boolean: c.kind = ValueKind::boolean; break;
    case PhysicalType::int32: {
      bool is_unsigned = (lt.kind == K::integer && !lt.is_signed) || e.converted == C::uint_8 ||
                         e.converted == C::uint_16 || e.converted == C::uint_32;
      c.kind = is_unsigned ? ValueKind::uint32 : ValueKind::int32;
      if (lt.kind == K::date || e.converted == C::date) c.kind = ValueKind::date;
      if (lt.kind == K::time || e.converted == C::time_millis) c.kind = ValueKind::time, c.time_unit = 1;
      break;
    }
    case PhysicalType::int64: {
      bool is_unsigned = (lt.kind == K::integer && !lt.is_signed) || e.converted == C::uint_64;
      c.kind = is_unsigned ? ValueKind::uint64 : ValueKind::int64;
      if (lt.kind == K::timestamp) c.kind = ValueKind::timestamp, c.time_unit = lt.time_unit, c.utc = lt.adjusted_to_utc;
      else if (e.converted == C::timestamp_millis) c.kind = ValueKind::timestamp, c.time_unit = 1, c.utc = true;
      else if (e.converted == C::timestamp_micros) c.kind = ValueKind::timestamp, c.time_unit = 2, c.utc = true;
      else if (lt.kind == K::time) c.kind = ValueKind::time, c.time_unit = lt.time_unit;
      else if (e.converted == C::time_micros) c.kind = ValueKind::time, c.time_unit = 2;
      if ((c.kind == ValueKind::timestamp || c.kind == ValueKind::time) && (c.time_unit < 1 || c.time_unit > 3))
        return unsupported("time unit");
      break;
    }
    case PhysicalType::int96: c.kind = ValueKind::int96_timestamp; break;
    case PhysicalType::float32: c.kind = ValueKind::float32; break;
    case PhysicalType::float64: c.kind = ValueKind::float64; break;
    case PhysicalType::byte_array: c.kind = ValueKind::string; break;
    case PhysicalType::fixed_len_byte_array:
      if (e.type_length <= 0 || e.type_length > (1 << 20))
        fail("{}: column '{}': FIXED_LEN_BYTE_ARRAY length {} out of range (1 to 1 MiB)", file, c.path, e.type_length);
      c.kind = ValueKind::string;
      if (lt.kind == K::uuid && e.type_length == 16) c.kind = ValueKind::uuid;
      if (lt.kind == K::float16 && e.type_length == 2) c.kind = ValueKind::float16;
      break;
    default: fail("{}: column '{}': unknown physical type {}", file, c.path, static_cast<int>(e.type));
  }
  return c;
}

ColumnChunkReader::ColumnChunkReader(const uint8_t* file, size_t file_size, std::string file_name,
                                     const ColumnDescriptor& column, const ColumnChunkMeta& meta)
    : file_(file), file_name_(std::move(file_name)), col_(column), codec_(meta.codec), values_left_(meta.num_values) {
  if (!meta.file_path.empty())
    corrupt(fmt::format("its data is in another file ('{}'); such data sets are not supported", meta.file_path));
  if (codec_ != Codec::uncompressed && codec_ != Codec::snappy && codec_ != Codec::gzip && codec_ != Codec::zstd)
    fail("{}: column '{}': unsupported compression codec {} (supported: UNCOMPRESSED, SNAPPY, GZIP, ZSTD)", file_name_,
         col_.path, to_string(codec_));
  if (meta.type != col_.type)
    corrupt(fmt::format("the chunk's type {} differs from the schema's {}", to_string(meta.type), to_string(col_.type)));
  if (values_left_ == 0) {  // an empty chunk (a zero-row row group): writers leave its offsets at 0
    offset_ = end_ = 0;
    return;
  }
  // The data section lies between the leading magic and the footer; the caller passes its size as file_size.
  offset_ = meta.data_page_offset;
  if (meta.dictionary_page_offset > 0 && meta.dictionary_page_offset < offset_) offset_ = meta.dictionary_page_offset;
  int64_t size = meta.total_compressed_size;
  if (offset_ < 4 || size < 0 || offset_ > static_cast<int64_t>(file_size) || size > static_cast<int64_t>(file_size) - offset_)
    corrupt(fmt::format("the chunk's byte range (offset {}, {} bytes) lies outside the file's data ({} bytes)", offset_,
                        size, file_size));
  if (values_left_ < 0) corrupt(fmt::format("a negative value count ({})", values_left_));
  end_ = offset_ + size;
  switch (col_.type) {
    case PhysicalType::int32:
    case PhysicalType::float32: width_ = 4; break;
    case PhysicalType::int64:
    case PhysicalType::float64: width_ = 8; break;
    case PhysicalType::int96: width_ = 12; break;
    case PhysicalType::fixed_len_byte_array: width_ = static_cast<size_t>(col_.type_length); break;
    default: width_ = 0;
  }
}

ColumnChunkReader::~ColumnChunkReader() {
  if (zstd_) ZSTD_freeDCtx(zstd_);
}

void ColumnChunkReader::corrupt(std::string_view detail) const {
  fail("{}: column '{}': {}", file_name_, col_.path, detail);
}

const uint8_t* ColumnChunkReader::decompress(const uint8_t* src, size_t n, size_t out_size, std::vector<uint8_t>& out) {
  out.resize(std::max<size_t>(out_size, 1));  // never a null buffer: zlib rejects one even for 0 bytes
  auto bad = [&](std::string_view why) {
    corrupt(fmt::format("{} page data does not decompress: {}", to_string(codec_), why));
  };
  switch (codec_) {
    case Codec::uncompressed:
      if (n != out_size) bad(fmt::format("{} bytes stored where the header says {}", n, out_size));
      return src;
    case Codec::snappy: {
      size_t len = 0;
      if (!snappy::GetUncompressedLength(reinterpret_cast<const char*>(src), n, &len)) bad("bad Snappy header");
      if (len != out_size) bad(fmt::format("{} bytes where the page header says {}", len, out_size));
      if (!snappy::RawUncompress(reinterpret_cast<const char*>(src), n, reinterpret_cast<char*>(out.data())))
        bad("corrupt Snappy data");
      return out.data();
    }
    case Codec::zstd: {
      if (!zstd_ && !(zstd_ = ZSTD_createDCtx())) bad("out of memory");
      size_t r = ZSTD_decompressDCtx(zstd_, out.data(), out_size, src, n);
      if (ZSTD_isError(r)) bad(ZSTD_getErrorName(r));
      if (r != out_size) bad(fmt::format("{} bytes where the page header says {}", r, out_size));
      return out.data();
    }
    case Codec::gzip: {
      z_stream zs{};
      if (inflateInit2(&zs, 15 + 32) != Z_OK) bad("zlib init failed");  // 15 + 32: gzip or zlib header
      zs.next_in = const_cast<Bytef*>(src);
      zs.avail_in = static_cast<uInt>(n);
      zs.next_out = out.data();
      zs.avail_out = static_cast<uInt>(out_size);
      int rc = inflate(&zs, Z_FINISH);
      size_t got = zs.total_out;
      inflateEnd(&zs);
      if (rc != Z_STREAM_END) bad(zs.msg ? zs.msg : "truncated or corrupt GZIP data");
      if (got != out_size) bad(fmt::format("{} bytes where the page header says {}", got, out_size));
      return out.data();
    }
    default: break;
  }
  bad("unsupported codec");
  return nullptr;
}

bool ColumnChunkReader::load_page() {
  for (;;) {
    if (values_left_ <= 0 || offset_ >= end_) return false;
    thrift::CompactReader r(file_ + offset_, static_cast<size_t>(end_ - offset_),
                            fmt::format("{}: column '{}': page header", file_name_, col_.path), offset_);
    PageHeader h = parse_page_header(r);
    int64_t data_at = offset_ + static_cast<int64_t>(r.position());
    if (h.compressed_page_size < 0 || h.compressed_page_size > end_ - data_at)
      corrupt(fmt::format("page at byte {}: compressed size {} out of range ({} bytes left in the chunk)", offset_,
                          h.compressed_page_size, end_ - data_at));
    if (h.uncompressed_page_size < 0 || h.uncompressed_page_size > kMaxPageBytes)
      corrupt(fmt::format("page at byte {}: uncompressed size {} out of range (0 to {})", offset_,
                          h.uncompressed_page_size, kMaxPageBytes));
    const uint8_t* p = file_ + data_at;
    auto n = static_cast<size_t>(h.compressed_page_size);
    offset_ = data_at + h.compressed_page_size;
    switch (h.type) {
      case PageType::dictionary_page:
        decode_dictionary(h, p, n);
        continue;
      case PageType::data_page:
      case PageType::data_page_v2:
        decode_data_page(h, p, n);
        if (page_values_ == 0) continue;  // an empty page
        return true;
      case PageType::index_page:
        continue;
    }
    corrupt(fmt::format("page at byte {}: unknown page type {}", data_at, static_cast<int>(h.type)));
  }
}

void ColumnChunkReader::decode_dictionary(const PageHeader& h, const uint8_t* p, size_t n) {
  if (h.dictionary_encoding != Encoding::plain && h.dictionary_encoding != Encoding::plain_dictionary)
    corrupt(fmt::format("unsupported dictionary encoding {} (expected PLAIN)", to_string(h.dictionary_encoding)));
  if (col_.type == PhysicalType::boolean) corrupt("a dictionary page in a BOOLEAN column");
  const uint8_t* d = decompress(p, n, static_cast<size_t>(h.uncompressed_page_size), dict_buf_);
  auto size = static_cast<size_t>(h.uncompressed_page_size);
  if (h.dictionary_num_values < 0) corrupt("a negative dictionary size");
  auto count = static_cast<size_t>(h.dictionary_num_values);
  // Each entry takes at least 4 bytes (a length) or its fixed width: bound the count before reserving.
  size_t min_bytes = width_ ? width_ : 4;
  if (count > size / min_bytes)
    corrupt(fmt::format("dictionary of {} entries in {} bytes", count, size));
  dict_text_.clear();
  dict_end_.clear();
  dict_end_.reserve(count);
  size_t pos = 0;
  for (size_t i = 0; i < count; ++i) {
    if (width_) {
      render_fixed(d + pos, dict_text_);
      pos += width_;
    } else {
      if (size - pos < 4) corrupt(fmt::format("dictionary entry {} runs past the page", i));
      uint32_t len = load_u32(d + pos);
      pos += 4;
      if (len > size - pos) corrupt(fmt::format("dictionary entry {} of {} bytes runs past the page", i, len));
      render_bytes(std::string_view(reinterpret_cast<const char*>(d + pos), len), dict_text_);
      pos += len;
    }
    dict_end_.push_back(dict_text_.size());
  }
  has_dict_ = true;
}

void ColumnChunkReader::decode_data_page(const PageHeader& h, const uint8_t* p, size_t n) {
  const DataPageHeader& dh = h.data;
  if (dh.num_values < 0 || dh.num_values > kMaxPageValues || dh.num_values > values_left_)
    corrupt(fmt::format("a data page of {} values (at most {} are left in the chunk, {} allowed a page)", dh.num_values,
                        values_left_, kMaxPageValues));
  auto count = static_cast<size_t>(dh.num_values);
  values_left_ -= dh.num_values;
  page_values_ = count;
  next_ = next_value_ = 0;
  auto page_size = static_cast<size_t>(h.uncompressed_page_size);
  const int rep_bits = bit_width_of(static_cast<uint32_t>(col_.max_rep));
  const int def_bits = bit_width_of(static_cast<uint32_t>(col_.max_def));
  std::string what = fmt::format("{}: column '{}'", file_name_, col_.path);
  const uint8_t* values;
  size_t values_size;
  if (h.type == PageType::data_page) {
    const uint8_t* d = decompress(p, n, page_size, page_buf_);
    size_t pos = 0;
    auto levels = [&](std::vector<int16_t>& out, int16_t max, int bits, Encoding enc, const char* name) {
      out.clear();
      if (max == 0) return;
      if (enc != Encoding::rle)
        corrupt(fmt::format("unsupported {} level encoding {} (expected RLE)", name, to_string(enc)));
      if (page_size - pos < 4) corrupt(fmt::format("the page ends before its {} levels", name));
      uint32_t len = load_u32(d + pos);
      pos += 4;
      if (len > page_size - pos) corrupt(fmt::format("{} levels of {} bytes run past the page", name, len));
      decode_hybrid(d + pos, len, bits, count, static_cast<uint32_t>(max), out, what + " " + name + " levels");
      pos += len;
    };
    levels(rep_, col_.max_rep, rep_bits, dh.repetition_level_encoding, "repetition");
    levels(def_, col_.max_def, def_bits, dh.definition_level_encoding, "definition");
    values = d + pos;
    values_size = page_size - pos;
  } else {
    int64_t rl = dh.repetition_levels_byte_length, dl = dh.definition_levels_byte_length;
    if (rl < 0 || dl < 0 || rl + dl > static_cast<int64_t>(n) || rl + dl > static_cast<int64_t>(page_size))
      corrupt(fmt::format("level lengths {} + {} out of range for a page of {} bytes", rl, dl, n));
    rep_.clear();
    def_.clear();
    if (col_.max_rep > 0)
      decode_hybrid(p, static_cast<size_t>(rl), rep_bits, count, static_cast<uint32_t>(col_.max_rep), rep_,
                    what + " repetition levels");
    if (col_.max_def > 0)
      decode_hybrid(p + rl, static_cast<size_t>(dl), def_bits, count, static_cast<uint32_t>(col_.max_def), def_,
                    what + " definition levels");
    size_t skip = static_cast<size_t>(rl + dl);
    if (dh.is_compressed && codec_ != Codec::uncompressed) {
      values = decompress(p + skip, n - skip, page_size - skip, page_buf_);
    } else {
      if (n != page_size) corrupt(fmt::format("an uncompressed page of {} bytes whose header says {}", n, page_size));
      values = p + skip;
    }
    values_size = page_size - skip;
  }
  size_t defined = count;
  if (!def_.empty()) defined = static_cast<size_t>(std::count(def_.begin(), def_.end(), col_.max_def));
  if (!rep_.empty() && rep_[0] != 0 && h.type == PageType::data_page_v2)
    corrupt("a v2 data page that does not start at a row boundary");
  decode_values(dh.encoding, values, values_size, defined);
}

void ColumnChunkReader::decode_values(Encoding enc, const uint8_t* p, size_t n, size_t count) {
  std::string what = fmt::format("{}: column '{}' values", file_name_, col_.path);
  plain_count_ = count;
  switch (enc) {
    case Encoding::plain:
      if (col_.type == PhysicalType::boolean) {
        if (n < (count + 7) / 8) corrupt(fmt::format("{} PLAIN booleans need {} bytes, the page has {}", count, (count + 7) / 8, n));
        source_ = Source::plain_bits;
        plain_ = p;
      } else if (width_) {
        if (count > n / width_) corrupt(fmt::format("{} PLAIN values of {} bytes do not fit the page's {} bytes", count, width_, n));
        source_ = Source::plain_fixed;
        plain_ = p;
      } else {
        source_ = Source::plain_bytes;
        if (count > n / 4) corrupt(fmt::format("{} PLAIN byte arrays do not fit the page's {} bytes", count, n));
        bytes_.resize(count);
        size_t pos = 0;
        for (size_t i = 0; i < count; ++i) {
          if (n - pos < 4) corrupt(fmt::format("byte array {} of the page runs past its end", i));
          uint32_t len = load_u32(p + pos);
          pos += 4;
          if (len > n - pos) corrupt(fmt::format("byte array {} of the page ({} bytes) runs past its end", i, len));
          bytes_[i] = std::string_view(reinterpret_cast<const char*>(p + pos), len);
          pos += len;
        }
      }
      return;
    case Encoding::plain_dictionary:
    case Encoding::rle_dictionary: {
      if (!has_dict_) corrupt("a dictionary-encoded page without a dictionary page before it");
      source_ = Source::indices;
      if (count == 0) return indices_.clear();
      if (n < 1) corrupt("a dictionary-encoded page without its bit width");
      int bits = p[0];
      if (bits > 32) corrupt(fmt::format("dictionary index bit width {} (at most 32)", bits));
      uint32_t max_index = dict_end_.empty() ? 0 : static_cast<uint32_t>(dict_end_.size() - 1);
      if (dict_end_.empty()) corrupt("dictionary indices into an empty dictionary");
      decode_hybrid(p + 1, n - 1, bits, count, max_index, indices_, what + " (dictionary indices)");
      return;
    }
    case Encoding::delta_binary_packed: {
      if (col_.type != PhysicalType::int32 && col_.type != PhysicalType::int64) break;
      std::vector<uint64_t> v;
      decode_delta_binary_packed(p, n, count, v, what);
      if (v.size() != count) corrupt(fmt::format("DELTA_BINARY_PACKED holds {} values, the levels say {}", v.size(), count));
      decoded_.resize(count * width_ + 1);
      for (size_t i = 0; i < count; ++i) {
        if (width_ == 4) {
          auto x = static_cast<uint32_t>(v[i]);
          std::memcpy(decoded_.data() + i * 4, &x, 4);
        } else {
          std::memcpy(decoded_.data() + i * 8, &v[i], 8);
        }
      }
      source_ = Source::plain_fixed;
      plain_ = decoded_.data();
      return;
    }
    case Encoding::delta_length_byte_array:
    case Encoding::delta_byte_array: {
      if (col_.type != PhysicalType::byte_array) break;
      std::vector<uint64_t> prefix, length;
      size_t pos = 0;
      if (enc == Encoding::delta_byte_array) {
        pos = decode_delta_binary_packed(p, n, count, prefix, what + " (prefix lengths)");
        if (prefix.size() != count) corrupt(fmt::format("DELTA_BYTE_ARRAY holds {} prefixes, the levels say {}", prefix.size(), count));
      }
      pos += decode_delta_binary_packed(p + pos, n - pos, count, length, what + " (lengths)");
      if (length.size() != count) corrupt(fmt::format("{} holds {} lengths, the levels say {}", to_string(enc), length.size(), count));
      // Suffixes (or whole values) follow back to back; every length is checked against the bytes left.
      std::vector<std::pair<size_t, size_t>> spans(count);  // (offset, size) into arena_ or the page
      arena_.clear();
      size_t prev_begin = 0, prev_size = 0;
      for (size_t i = 0; i < count; ++i) {
        if (length[i] > n - pos) corrupt(fmt::format("byte array {} of {} bytes runs past the page", i, length[i]));
        auto len = static_cast<size_t>(length[i]);
        if (enc == Encoding::delta_length_byte_array) {
          spans[i] = {pos, len};
        } else {
          if (prefix[i] > prev_size) corrupt(fmt::format("byte array {}: prefix of {} bytes, the previous value has {}", i, prefix[i], prev_size));
          auto pre = static_cast<size_t>(prefix[i]);
          if (arena_.size() + pre + len > static_cast<size_t>(kMaxPageBytes)) corrupt("DELTA_BYTE_ARRAY values larger than a page may be");
          size_t begin = arena_.size();
          arena_.append(arena_, prev_begin, pre);
          arena_.append(reinterpret_cast<const char*>(p + pos), len);
          spans[i] = {begin, pre + len};
          prev_begin = begin, prev_size = pre + len;
        }
        pos += len;
      }
      bytes_.resize(count);
      const char* base = enc == Encoding::delta_length_byte_array ? reinterpret_cast<const char*>(p) : arena_.data();
      for (size_t i = 0; i < count; ++i) bytes_[i] = std::string_view(base + spans[i].first, spans[i].second);
      source_ = Source::plain_bytes;
      return;
    }
    case Encoding::byte_stream_split: {
      if (!width_ || col_.type == PhysicalType::int96) break;
      if (count > n / width_) corrupt(fmt::format("{} BYTE_STREAM_SPLIT values of {} bytes do not fit the page's {} bytes", count, width_, n));
      decoded_.resize(count * width_ + 1);
      // Byte k of value i is stored at k * count + i.
      for (size_t k = 0; k < width_; ++k)
        for (size_t i = 0; i < count; ++i) decoded_[i * width_ + k] = p[k * count + i];
      source_ = Source::plain_fixed;
      plain_ = decoded_.data();
      return;
    }
    case Encoding::rle:
      if (col_.type != PhysicalType::boolean) break;
      if (n < 4) corrupt("RLE booleans without their length");
      if (load_u32(p) > n - 4) corrupt("RLE booleans run past the page");
      source_ = Source::rle_bools;
      decode_hybrid(p + 4, load_u32(p), 1, count, 1, indices_, what + " (RLE booleans)");
      return;
    default: break;
  }
  corrupt(fmt::format("unsupported encoding {} for {} values (supported: PLAIN, PLAIN_DICTIONARY, RLE_DICTIONARY, "
                      "RLE for booleans, DELTA_BINARY_PACKED for integers, DELTA_LENGTH_BYTE_ARRAY and "
                      "DELTA_BYTE_ARRAY for byte arrays, BYTE_STREAM_SPLIT for fixed-width values)",
                      to_string(enc), to_string(col_.type)));
}

void ColumnChunkReader::render_fixed(const uint8_t* p, std::string& out) const {
  auto it = std::back_inserter(out);
  switch (col_.kind) {
    case ValueKind::int32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      fmt::format_to(it, "{}", v);
      return;
    }
    case ValueKind::uint32: fmt::format_to(it, "{}", load_u32(p)); return;
    case ValueKind::int64:
    case ValueKind::uint64:
    case ValueKind::timestamp: {
      int64_t v;
      std::memcpy(&v, p, 8);
      if (col_.kind == ValueKind::uint64) fmt::format_to(it, "{}", static_cast<uint64_t>(v));
      else if (col_.kind == ValueKind::int64) fmt::format_to(it, "{}", v);
      else append_timestamp(out, v, col_.time_unit, col_.utc);
      return;
    }
    case ValueKind::float32: {
      float v;
      std::memcpy(&v, p, 4);
      append_float(out, v);
      return;
    }
    case ValueKind::float64: {
      double v;
      std::memcpy(&v, p, 8);
      append_float(out, v);
      return;
    }
    case ValueKind::float16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      append_float(out, f16_to_f32(h));
      return;
    }
    case ValueKind::date: {
      int32_t v;
      std::memcpy(&v, p, 4);
      int64_t y;
      unsigned m, d;
      civil_from_days(v, y, m, d);
      fmt::format_to(it, "\"{:04}-{:02}-{:02}\"", y, m, d);
      return;
    }
    case ValueKind::time: {
      int64_t v;
      if (col_.type == PhysicalType::int32) {
        int32_t v32;
        std::memcpy(&v32, p, 4);
        v = v32;
      } else {
        std::memcpy(&v, p, 8);
      }
      int64_t per_second = col_.time_unit == 1 ? 1000 : col_.time_unit == 2 ? 1000000 : 1000000000;
      if (v < 0 || v >= per_second * 86400) {
        fmt::format_to(it, "{}", v);  // not a time of day: the raw count
        return;
      }
      out.push_back('"');
      append_time_of_day(out, v, per_second, col_.time_unit == 1 ? 3 : col_.time_unit == 2 ? 6 : 9);
      out.push_back('"');
      return;
    }
    case ValueKind::int96_timestamp: {
      int64_t nanos;
      std::memcpy(&nanos, p, 8);
      int64_t julian = static_cast<int32_t>(load_u32(p + 8));
      append_timestamp(out, (julian - 2440588) * 86400000000000LL + nanos, 3, false);
      return;
    }
    case ValueKind::decimal: {
      if (col_.type == PhysicalType::int32) {
        int32_t v;
        std::memcpy(&v, p, 4);
        append_decimal(out, v, col_.scale);
      } else if (col_.type == PhysicalType::int64) {
        int64_t v;
        std::memcpy(&v, p, 8);
        append_decimal(out, v, col_.scale);
      } else {
        append_decimal(out, decimal_from_bytes(std::string_view(reinterpret_cast<const char*>(p), width_)), col_.scale);
      }
      return;
    }
    case ValueKind::uuid: {
      out.push_back('"');
      for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
        fmt::format_to(it, "{:02x}", p[i]);
      }
      out.push_back('"');
      return;
    }
    case ValueKind::string:
      append_json_string(out, std::string_view(reinterpret_cast<const char*>(p), width_));
      return;
    case ValueKind::boolean: break;
  }
  corrupt("cannot render this value type");
}

void ColumnChunkReader::render_bytes(std::string_view b, std::string& out) const {
  if (col_.kind == ValueKind::decimal) {
    if (b.size() > 16) corrupt(fmt::format("a DECIMAL of {} bytes (at most 16)", b.size()));
    append_decimal(out, decimal_from_bytes(b), col_.scale);
    return;
  }
  append_json_string(out, b);
}

void ColumnChunkReader::render(size_t v, std::string& out) const {
  switch (source_) {
    case Source::indices: {
      uint32_t i = indices_[v];
      size_t begin = i == 0 ? 0 : dict_end_[i - 1];
      out.append(dict_text_, begin, dict_end_[i] - begin);
      return;
    }
    case Source::rle_bools: out += indices_[v] ? "true" : "false"; return;
    case Source::plain_bits: out += ((plain_[v >> 3] >> (v & 7)) & 1) ? "true" : "false"; return;
    case Source::plain_fixed: render_fixed(plain_ + v * width_, out); return;
    case Source::plain_bytes: render_bytes(bytes_[v], out); return;
  }
}

bool ColumnChunkReader::has_triplet() { return next_ < page_values_ || load_page(); }

bool ColumnChunkReader::read_row(ColumnRow& row) {
  row.clear();
  for (bool first = true;; first = false) {
    if (!has_triplet()) {
      if (first) return false;
      break;
    }
    int16_t rep = rep_.empty() ? 0 : rep_[next_];
    if (first && rep != 0)
      corrupt(fmt::format("a row starts with repetition level {} (expected 0)", rep));
    if (!first && rep == 0) break;
    int16_t def = def_.empty() ? col_.max_def : def_[next_];
    ++next_;
    row.rep.push_back(rep);
    row.def.push_back(def);
    if (def == col_.max_def) {
      if (next_value_ >= plain_count_) corrupt("more defined levels than values in a page");
      render(next_value_++, row.text);
    }
    row.end.push_back(row.text.size());
  }
  return true;
}

bool ColumnChunkReader::skip_row() {
  for (bool first = true;; first = false) {
    if (!has_triplet()) return !first;
    int16_t rep = rep_.empty() ? 0 : rep_[next_];
    if (!first && rep == 0) return true;
    if ((def_.empty() ? col_.max_def : def_[next_]) == col_.max_def) ++next_value_;
    ++next_;
  }
}

}  // namespace cotune::data::parquet
