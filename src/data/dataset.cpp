#include "data/dataset.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/log.h"
#include "base/mmap.h"
#include "base/rng.h"

namespace cotune::data {

// ---- selection ----------------------------------------------------------------------------------------------

Selection parse_selection(std::string_view spec) {
  Selection s;
  s.spec = std::string(spec);
  auto bad = [&](std::string_view why) -> Selection {
    fail("selection '{}': {} (expected e.g. train, train[0:500], train[:10%], train[100:])", spec, why);
  };
  size_t lb = spec.find('[');
  std::string_view name = spec.substr(0, lb);
  if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
      }))
    return bad(fmt::format("bad split name '{}'", name));
  s.split = std::string(name);
  if (lb == std::string_view::npos) return s;
  if (spec.back() != ']') return bad("missing ']'");
  std::string_view inner = spec.substr(lb + 1, spec.size() - lb - 2);
  size_t colon = inner.find(':');
  if (colon == std::string_view::npos) return bad("missing ':' inside the brackets");
  auto bound = [&](std::string_view t, bool& percent) -> std::optional<int64_t> {
    if (t.empty()) return std::nullopt;
    percent = t.back() == '%';
    if (percent) t.remove_suffix(1);
    int64_t v = 0;
    auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc() || p != t.data() + t.size() || v < 0) bad(fmt::format("bad bound '{}'", t));
    if (percent && v > 100) bad("a percentage above 100");
    return v;
  };
  auto b = bound(inner.substr(0, colon), s.begin_percent);
  s.begin = b.value_or(0);
  s.end = bound(inner.substr(colon + 1), s.end_percent);
  if (s.end && !s.begin_percent && !s.end_percent && *s.end < s.begin) bad("end before begin");
  return s;
}

std::pair<int64_t, int64_t> Selection::resolve(int64_t rows) const {
  auto at = [&](int64_t v, bool percent) { return std::min(rows, percent ? rows * v / 100 : v); };
  int64_t b = at(begin, begin_percent);
  int64_t e = end ? at(*end, end_percent) : rows;
  return {b, std::max(b, e)};
}

// ---- encoding -----------------------------------------------------------------------------------------------

void TokenizedDataset::append(std::span<const int32_t> ids, int32_t prompt_length, std::span<const uint8_t> mask) {
  size_t n = ids.size();
  if (max_seq_length > 0 && static_cast<int64_t>(n) > max_seq_length) {
    n = static_cast<size_t>(max_seq_length);
    ++truncated;
  }
  tokens.insert(tokens.end(), ids.begin(), ids.begin() + static_cast<ptrdiff_t>(n));
  if (!mask.empty()) {
    COTUNE_CHECK(mask.size() == ids.size(), "TokenizedDataset::append: mask has {} entries for {} tokens", mask.size(),
                 ids.size());
    COTUNE_CHECK(assistant_mask.size() + n == tokens.size(), "TokenizedDataset::append: a mask for some sequences only");
    assistant_mask.insert(assistant_mask.end(), mask.begin(), mask.begin() + static_cast<ptrdiff_t>(n));
  }
  offsets.push_back(static_cast<int64_t>(tokens.size()));
  prompt_lengths.push_back(std::min<int32_t>(prompt_length, static_cast<int32_t>(n)));
  full_lengths.push_back(static_cast<int32_t>(ids.size()));
}

int32_t count_prompt_tokens(const text::Tokenizer& tok, std::span<const int32_t> ids, std::string_view text,
                            size_t prompt_bytes) {
  // Tokens the post-processor adds in front of any text (BOS here) are what encoding "" yields.
  std::vector<int32_t> prefix = tok.encode("", true);
  if (ids.size() < prefix.size() || !std::equal(prefix.begin(), prefix.end(), ids.begin()))
    fail("count_prompt_tokens: the encoding does not start with the tokenizer's special prefix");
  size_t i = prefix.size();
  std::string seen;  // the decoded bytes of the prompt tokens so far
  while (i < ids.size() && seen.size() < prompt_bytes) {
    std::string b = tok.token_bytes(ids[i]);
    if (seen.size() + b.size() > prompt_bytes) break;  // straddles the boundary: response
    seen += b;
    ++i;
  }
  if (text.compare(0, seen.size(), seen) == 0) return static_cast<int32_t>(i);
  // The normalizer changed the prompt's bytes (e.g. NFC composed "e" + U+0301), so byte offsets do not line up:
  // the prompt is then the longest common prefix of the prompt's own encoding and the full one.
  std::vector<int32_t> p = tok.encode(text.substr(0, prompt_bytes), true);
  size_t k = 0;
  while (k < p.size() && k < ids.size() && p[k] == ids[k]) ++k;
  return static_cast<int32_t>(k);
}

EncodedExample encode_example(const text::PromptTemplate& tpl, const text::Tokenizer& tok,
                              std::span<const std::string> values) {
  EncodedExample ex;
  auto t = tpl.format_train(values, tok.eos_token());
  ex.text = std::move(t.text);
  ex.prompt_bytes = t.prompt_bytes;
  ex.ids = tok.encode(ex.text, true);
  ex.prompt_tokens = count_prompt_tokens(tok, ex.ids, ex.text, ex.prompt_bytes);
  return ex;
}

// ---- hashing / cache ----------------------------------------------------------------------------------------

namespace {

struct Sha256 {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  Sha256() {
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) fail("OpenSSL: cannot initialise SHA-256");
  }
  ~Sha256() { EVP_MD_CTX_free(ctx); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* p, size_t n) { EVP_DigestUpdate(ctx, p, n); }
  void update(std::string_view s) {
    uint64_t n = s.size();  // length-prefixed, so ("ab","c") and ("a","bc") differ
    update(&n, sizeof n);
    update(s.data(), s.size());
  }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    std::string out;
    for (unsigned i = 0; i < len; ++i) out += fmt::format("{:02x}", md[i]);
    return out;
  }
};

constexpr char kCacheMagic[8] = {'C', 'O', 'T', 'U', 'N', 'E', 'D', 'S'};
constexpr uint32_t kCacheVersion = 2;  // 2: assistant_mask

template <typename T>
void put(std::string& out, const T* p, size_t n) {
  out.append(reinterpret_cast<const char*>(p), n * sizeof(T));
}

}  // namespace

std::string default_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/cotune/data";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/cotune/data";
  return "/tmp/cotune-cache/data";
}

std::string sha256_file_hex(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open: {}", path, std::strerror(errno));
  Sha256 h;
  std::vector<char> buf(size_t{1} << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) h.update(buf.data(), n);
  bool err = std::ferror(f);
  std::fclose(f);
  if (err) fail("{}: read error while hashing", path);
  return h.hex();
}

std::string cache_key(const DataOptions& opt, const text::PromptTemplate& tpl, const text::Tokenizer& tok) {
  return cache_key(opt, tpl.fingerprint(), tok);
}

std::string cache_key(const DataOptions& opt, const std::string& format_fingerprint, const text::Tokenizer& tok) {
  Sha256 h;
  h.update(fmt::format("cotune-data-cache v{}", kCacheVersion));
  for (const auto& f : list_data_files(opt.data_path)) {
    h.update(std::filesystem::path(f).filename().string());
    h.update(sha256_file_hex(f));
  }
  h.update(format_fingerprint);
  h.update(tok.content_hash());
  h.update(tok.eos_token());
  h.update(std::to_string(opt.max_seq_length));
  h.update(opt.selection.spec);
  h.update(to_string(opt.on_bad_record));
  return h.hex().substr(0, 40);
}

void save_token_cache(const std::string& path, const TokenizedDataset& ds) {
  // Layout: magic[8] u32 version u32 0 | u64 N u64 T | i64 rows_read skipped truncated max_seq_length |
  //         i32 tokens[T] | i64 offsets[N+1] | i32 prompt_lengths[N] | i32 full_lengths[N] | i64 rows[N] |
  //         u64 M | u8 assistant_mask[M] (M = 0 or T)
  std::string out;
  uint64_t n = ds.size(), t = ds.tokens.size();
  out.reserve(64 + t * 4 + n * 28);
  out.append(kCacheMagic, 8);
  uint32_t ver[2] = {kCacheVersion, 0};
  put(out, ver, 2);
  uint64_t counts[2] = {n, t};
  put(out, counts, 2);
  int64_t meta[4] = {ds.rows_read, ds.skipped, ds.truncated, ds.max_seq_length};
  put(out, meta, 4);
  put(out, ds.tokens.data(), t);
  put(out, ds.offsets.data(), n + 1);
  put(out, ds.prompt_lengths.data(), n);
  put(out, ds.full_lengths.data(), n);
  put(out, ds.rows.data(), n);
  const uint64_t m = ds.assistant_mask.size();
  put(out, &m, 1);
  put(out, ds.assistant_mask.data(), m);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  write_file_atomic(path, out.data(), out.size());
}

std::optional<TokenizedDataset> load_token_cache(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return std::nullopt;
  MappedFile m(path);
  const uint8_t* p = m.data();
  size_t left = m.size();
  auto take = [&](void* dst, size_t bytes) {
    if (bytes == 0) return true;  // an empty array's data() may be null: memcpy must not see it
    if (bytes > left) return false;
    std::memcpy(dst, p, bytes);
    p += bytes;
    left -= bytes;
    return true;
  };
  char magic[8];
  uint32_t ver[2];
  uint64_t counts[2];
  int64_t meta[4];
  if (!take(magic, 8) || std::memcmp(magic, kCacheMagic, 8) != 0 || !take(ver, 8) || ver[0] != kCacheVersion ||
      !take(counts, 16) || !take(meta, 32)) {
    log::warn("{}: not a cotune token cache (or an older version); rebuilding it", path);
    return std::nullopt;
  }
  uint64_t n = counts[0], t = counts[1];
  // Counts are checked against the file size before they size anything (a corrupt count must not wrap the
  // sum below into a match and then ask for terabytes).
  const uint64_t fixed = t * 4 + (n + 1) * 8 + n * 4 + n * 4 + n * 8;
  uint64_t mask_len = 0;
  if (t <= left / 4 && n <= left / 24 && left >= fixed + 8) std::memcpy(&mask_len, p + fixed, 8);
  if (t > left / 4 || n > left / 24 || (mask_len != 0 && mask_len != t) || left != fixed + 8 + mask_len) {
    log::warn("{}: token cache has the wrong size (truncated?); rebuilding it", path);
    return std::nullopt;
  }
  TokenizedDataset ds;
  ds.tokens.resize(t);
  ds.offsets.resize(n + 1);
  ds.prompt_lengths.resize(n);
  ds.full_lengths.resize(n);
  ds.rows.resize(n);
  take(ds.tokens.data(), t * 4);
  take(ds.offsets.data(), (n + 1) * 8);
  take(ds.prompt_lengths.data(), n * 4);
  take(ds.full_lengths.data(), n * 4);
  take(ds.rows.data(), n * 8);
  take(&mask_len, 8);
  ds.assistant_mask.resize(mask_len);
  take(ds.assistant_mask.data(), mask_len);
  ds.rows_read = meta[0];
  ds.skipped = meta[1];
  ds.truncated = meta[2];
  ds.max_seq_length = meta[3];
  if (ds.offsets.front() != 0 || ds.offsets.back() != static_cast<int64_t>(t) ||
      !std::is_sorted(ds.offsets.begin(), ds.offsets.end())) {
    log::warn("{}: token cache offsets are inconsistent; rebuilding it", path);
    return std::nullopt;
  }
  ds.from_cache = true;
  return ds;
}

// ---- building -----------------------------------------------------------------------------------------------

namespace {

TokenizedDataset tokenize_records(const DataOptions& opt, const text::PromptTemplate& tpl,
                                  const text::Tokenizer& tok) {
  TokenizedDataset ds;
  ds.max_seq_length = opt.max_seq_length;
  int64_t first = 0, last = INT64_MAX;
  if (opt.selection.needs_row_count()) {
    // Percentages need the row count: Parquet's footer says it, text files get one pass finding record boundaries.
    int64_t rows = 0;
    for (const auto& f : list_data_files(opt.data_path)) rows += count_records(f);
    std::tie(first, last) = opt.selection.resolve(rows);
  } else if (!opt.selection.is_all()) {
    first = opt.selection.begin;
    last = opt.selection.end.value_or(INT64_MAX);
  }

  // Rows outside the selection are only boundary-scanned, never parsed: a selection reads what it names.
  RecordSource src(opt.data_path, tpl.fields(), opt.on_bad_record);
  src.set_row_range(first, last);
  std::vector<std::string> texts;
  std::vector<size_t> prompt_bytes;
  std::vector<int64_t> rows;
  std::string eos = tok.eos_token();
  auto flush = [&] {
    if (texts.empty()) return;
    auto ids = tok.encode_batch(texts, true);
    for (size_t i = 0; i < texts.size(); ++i) {
      ds.append(ids[i], count_prompt_tokens(tok, ids[i], texts[i], prompt_bytes[i]));
      ds.rows.push_back(rows[i]);
    }
    texts.clear();
    prompt_bytes.clear();
    rows.clear();
  };
  Record rec;
  while (src.next(rec)) {
    auto t = tpl.format_train(rec.values, eos);
    texts.push_back(std::move(t.text));
    prompt_bytes.push_back(t.prompt_bytes);
    rows.push_back(rec.row);
    if (texts.size() >= opt.encode_chunk) flush();
  }
  flush();
  ds.rows_read = src.rows_read();
  ds.skipped = src.skipped();
  return ds;
}

}  // namespace

TokenizedDataset build_dataset(const DataOptions& opt, const text::PromptTemplate& tpl, const text::Tokenizer& tok) {
  if (opt.max_seq_length < 2) fail("max_seq_length must be at least 2, got {}", opt.max_seq_length);
  if (opt.selection.split != "train")
    fail("selection '{}': {} holds only the 'train' split (a dataset repo's or folder's other splits come from its "
         "configs: give the repo or folder as data, not a file)",
         opt.selection.spec, opt.data_path);
  auto t0 = std::chrono::steady_clock::now();
  std::string cache_path;
  if (opt.use_cache) {
    std::string dir = opt.cache_dir.empty() ? default_cache_dir() : opt.cache_dir;
    cache_path = dir + "/" + cache_key(opt, tpl, tok) + ".tokens";
    if (auto ds = load_token_cache(cache_path)) {
      log::info("data: {} sequences from the token cache {}", ds->size(), cache_path);
      return std::move(*ds);
    }
  }
  TokenizedDataset ds = tokenize_records(opt, tpl, tok);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log::info("data: {} sequences, {} tokens from {} in {:.2f} s ({} truncated to {}, {} skipped)", ds.size(),
            ds.tokens.size(), opt.data_path, secs, ds.truncated, opt.max_seq_length, ds.skipped);
  if (ds.size() == 0) fail("{}: no usable records in selection '{}'", opt.data_path, opt.selection.spec);
  if (!cache_path.empty()) {
    try {
      save_token_cache(cache_path, ds);
    } catch (const Error& e) {
      log::warn("could not write the token cache (continuing without it): {}", e.what());
    }
  }
  return ds;
}

// ---- validation split ---------------------------------------------------------------------------------------

Split split_validation(int64_t n, double fraction, int64_t count, uint64_t seed) {
  if (fraction < 0 || fraction >= 1) fail("validation fraction must be in [0, 1), got {}", fraction);
  if (count < 0) fail("validation count must be >= 0, got {}", count);
  if (fraction > 0 && count > 0) fail("give a validation fraction or a count, not both");
  int64_t k = count > 0 ? count : static_cast<int64_t>(static_cast<double>(n) * fraction + 0.5);
  if (fraction > 0 && k == 0 && n > 1) k = 1;
  if (k >= n && k > 0) fail("validation split of {} rows leaves no training rows (dataset has {})", k, n);
  // Partial Fisher-Yates: the first k of a seeded permutation are the validation rows.
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  Rng rng(seed ^ 0x76616c6964617465ull);  // "validate": a stream apart from the shuffle's
  for (int64_t i = 0; i < k; ++i) std::swap(perm[i], perm[i + static_cast<int64_t>(rng.below(n - i))]);
  Split s;
  s.validation.assign(perm.begin(), perm.begin() + k);
  s.train.assign(perm.begin() + k, perm.end());
  std::sort(s.validation.begin(), s.validation.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

// ---- statistics ---------------------------------------------------------------------------------------------

DatasetStats compute_stats(const TokenizedDataset& ds) {
  DatasetStats s;
  s.records = static_cast<int64_t>(ds.size());
  s.rows_read = ds.rows_read;
  s.skipped = ds.skipped;
  s.truncated = ds.truncated;
  s.max_seq_length = ds.max_seq_length;
  s.tokens = static_cast<int64_t>(ds.tokens.size());
  if (ds.size() == 0) return s;
  std::vector<int32_t> lens = ds.full_lengths;
  std::sort(lens.begin(), lens.end());
  auto pct = [&](double q) {  // nearest-rank percentile
    size_t r = static_cast<size_t>(std::ceil(q * static_cast<double>(lens.size())));
    return static_cast<int64_t>(lens[std::max<size_t>(r, 1) - 1]);
  };
  s.min_length = lens.front();
  s.max_length = lens.back();
  s.p50_length = pct(0.50);
  s.p95_length = pct(0.95);
  double sum = 0;
  for (int32_t l : lens) sum += l;
  s.mean_length = sum / static_cast<double>(lens.size());
  for (size_t i = 0; i < ds.size(); ++i) s.prompt_tokens += ds.prompt_lengths[i];
  s.response_tokens = s.tokens - s.prompt_tokens;
  s.response_fraction = s.tokens ? static_cast<double>(s.response_tokens) / static_cast<double>(s.tokens) : 0.0;
  return s;
}

std::string DatasetStats::to_json() const {
  nlohmann::ordered_json j;
  j["records"] = records;
  j["rows_read"] = rows_read;
  j["skipped"] = skipped;
  j["tokens"] = tokens;
  j["length"] = {{"min", min_length}, {"mean", std::round(mean_length * 100) / 100}, {"p50", p50_length},
                 {"p95", p95_length}, {"max", max_length}};
  j["max_seq_length"] = max_seq_length;
  j["truncated"] = truncated;
  j["prompt_tokens"] = prompt_tokens;
  j["response_tokens"] = response_tokens;
  j["response_token_fraction"] = std::round(response_fraction * 10000) / 10000;
  return j.dump(2);
}

}  // namespace cotune::data
