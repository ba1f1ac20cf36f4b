// Tokenizer: loading tokenizer.json / tokenizer_config.json (simdjson) and the encode / decode pipeline of
// HF tokenizers: added tokens -> normalizer -> normalized added tokens -> pre-tokenizer -> byte-level BPE
// -> post-processor; decode: tokens -> ByteLevel decoder -> lossy UTF-8.
#include "text/tokenizer.h"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <future>
#include <limits>
#include <mutex>

#include "base/error.h"
#include "base/json_error.h"
#include "base/mmap.h"
#include "text/bpe.h"
#include "text/pretok.h"
#include "text/unicode.h"

namespace cotune::text {

std::string sha256_hex(std::string_view data);  // tokenizer_sha256.cpp

namespace {

namespace fs = std::filesystem;

// The largest token id cotune accepts: per-id tables are sized by the largest id, so a corrupt id (up to
// 2^31-1) would otherwise ask for gigabytes. 2^22 ids is 16x the largest released vocabulary (262,144) and
// matches the vocab_size limit of config.json (formats/model_config.cpp).
constexpr int64_t kMaxTokenId = (int64_t{1} << 22) - 1;

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool normalized = true;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

// ---- JSON helpers: every error names the file and the field ---------------------------------------------

struct JsonReader {
  std::string file;

  [[noreturn]] void bad(std::string_view where, std::string_view expected) const {
    fail("{}: field `{}`: expected {}", file, where, expected);
  }
  std::optional<element> field(const object& o, std::string_view key) const {
    element e;
    if (o.at_key(key).get(e) != simdjson::SUCCESS) return std::nullopt;
    return e;
  }
  object as_object(const element& e, std::string_view where) const {
    object o;
    if (e.get(o) != simdjson::SUCCESS) bad(where, "an object");
    return o;
  }
  array as_array(const element& e, std::string_view where) const {
    array a;
    if (e.get(a) != simdjson::SUCCESS) bad(where, "an array");
    return a;
  }
  std::string_view as_string(const element& e, std::string_view where) const {
    std::string_view s;
    if (e.get(s) != simdjson::SUCCESS) bad(where, "a string");
    return s;
  }
  int64_t as_int(const element& e, std::string_view where) const {
    int64_t v;
    if (e.get(v) != simdjson::SUCCESS) bad(where, "an integer");
    return v;
  }
  bool as_bool(const element& e, std::string_view where) const {
    bool v;
    if (e.get(v) != simdjson::SUCCESS) bad(where, "true or false");
    return v;
  }
  bool get_bool(const object& o, std::string_view key, bool fallback, std::string_view where) const {
    auto e = field(o, key);
    if (!e || e->is_null()) return fallback;
    return as_bool(*e, fmt::format("{}.{}", where, key));
  }
  std::string get_string(const object& o, std::string_view key, std::string_view where) const {
    auto e = field(o, key);
    if (!e) bad(fmt::format("{}.{}", where, key), "a string (missing)");
    return std::string(as_string(*e, fmt::format("{}.{}", where, key)));
  }
  bool is_null_or_missing(const object& o, std::string_view key) const {
    auto e = field(o, key);
    return !e || e->is_null();
  }
};

// Leftmost-longest matcher for added tokens (HF uses Aho-Corasick, MatchKind::LeftmostLongest). Added
// tokens are few; candidates are found by their first byte.
class AddedMatcher {
 public:
  void add(std::string pattern, size_t token_index) {
    if (pattern.empty()) return;
    const auto b = static_cast<unsigned char>(pattern[0]);
    by_first_byte_[b].push_back({std::move(pattern), token_index});
    auto& v = by_first_byte_[b];
    std::stable_sort(v.begin(), v.end(), [](const Pattern& x, const Pattern& y) { return x.text.size() > y.text.size(); });
    first_bytes_[b] = true;
    any_ = true;
  }
  bool empty() const { return !any_; }
  // Finds the leftmost-longest match starting at or after `from`; returns false when none.
  bool find(std::string_view text, size_t from, size_t& start, size_t& end, size_t& token_index) const {
    for (size_t i = from; i < text.size(); ++i) {
      const auto b = static_cast<unsigned char>(text[i]);
      if (!first_bytes_[b]) continue;
      for (const Pattern& p : by_first_byte_[b]) {
        if (text.compare(i, p.text.size(), p.text) == 0) {
          start = i;
          end = i + p.text.size();
          token_index = p.token_index;
          return true;
        }
      }
    }
    return false;
  }

 private:
  struct Pattern {
    std::string text;
    size_t token_index;
  };
  std::array<std::vector<Pattern>, 256> by_first_byte_;
  std::array<bool, 256> first_bytes_{};
  bool any_ = false;
};

bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_alphanumeric(char32_t c);  // below

// Last code point before `end` (valid UTF-8, end > 0).
char32_t code_point_before(std::string_view s, size_t end, size_t& start) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  start = i;
  size_t j = i;
  return next_code_point(s, j);
}

}  // namespace

}  // namespace cotune::text

#include <utf8proc.h>

namespace cotune::text {
namespace {
bool is_alphanumeric(char32_t c) {  // Rust char::is_alphanumeric, approximated by the L and N categories
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return true;
    default: return false;
  }
}
}  // namespace

struct Tokenizer::Impl {
  std::string file;  // tokenizer.json path, for messages
  std::string hash;

  std::vector<AddedToken> added;
  AddedMatcher raw_matcher;         // added tokens with normalized = false, matched on the input text
  AddedMatcher normalized_matcher;  // normalized = true, matched on the normalized pieces
  std::vector<NormalForm> normalizers;
  PreTokenizer pretokenizer;
  std::unique_ptr<BpeModel> bpe;
  std::vector<int32_t> prefix_ids, suffix_ids;  // post-processor's single template around $A

  std::vector<std::string> token_strings;  // id -> token string form ("" for holes)
  std::vector<std::string> decode_bytes;   // id -> bytes after the decoder
  std::vector<uint8_t> valid;              // id exists
  std::vector<uint8_t> special;            // id is a special added token
  StringIdTable token_to_id;  // vocab entries and added tokens (by content)
  bool byte_level_decoder = true;

  int32_t bos = -1, eos = -1, pad = -1;
  bool add_bos = false;
  int64_t max_length = int64_t{1} << 62;

  // Calls sink(piece, id) over `text` cut at the matches of `matcher`: id >= 0 for an added token, -1 for
  // the text between (HF AddedVocabulary::find_matches, with the lstrip / rstrip / single_word rules).
  template <class Sink>
  void split_added(std::string_view text, const AddedMatcher& matcher, Sink&& sink) const {
    if (matcher.empty()) {
      if (!text.empty()) sink(text, -1);
      return;
    }
    size_t from = 0, start_offset = 0, s = 0, e = 0, index = 0;
    while (from < text.size() && matcher.find(text, from, s, e, index)) {
      from = e;
      const AddedToken& t = added[index];
      size_t start = s, stop = e;
      if (t.single_word) {
        size_t cs = 0;
        const bool start_space = start == 0 || !is_alphanumeric(code_point_before(text, start, cs));
        size_t j = stop;
        const bool stop_space = stop == text.size() || !is_alphanumeric(next_code_point(text, j));
        if (!start_space || !stop_space) continue;
      }
      if (t.lstrip) {
        size_t i = start;
        while (i > 0) {
          size_t cs = 0;
          if (!is_white_space(code_point_before(text, i, cs))) break;
          i = cs;
        }
        start = std::max(i, start_offset);
      }
      if (t.rstrip) {
        size_t i = stop;
        while (i < text.size()) {
          size_t j = i;
          if (!is_white_space(next_code_point(text, j))) break;
          i = j;
        }
        stop = i;
        from = std::max(from, stop);
      }
      if (start_offset < start) sink(text.substr(start_offset, start - start_offset), -1);
      sink(text.substr(start, stop - start), t.id);
      start_offset = stop;
    }
    if (start_offset < text.size()) sink(text.substr(start_offset), -1);
  }

  void encode_words(std::string_view text, std::vector<int32_t>& ids, BpeScratch& scratch) const {
    pretokenizer.run(text, [&](std::string_view word) { bpe->tokenize(word, ids, scratch); });
  }

  void encode_into(std::string_view text, std::vector<int32_t>& ids) const {
    BpeScratch scratch;
    std::string normalized;
    split_added(text, raw_matcher, [&](std::string_view piece, int32_t id) {
      if (id >= 0) {
        ids.push_back(id);
        return;
      }
      std::string_view view = piece;
      if (!normalizers.empty()) {
        normalized.clear();
        normalize_append(piece, normalizers[0], normalized);
        for (size_t k = 1; k < normalizers.size(); ++k) {
          std::string next;
          normalize_append(normalized, normalizers[k], next);
          normalized.swap(next);
        }
        view = normalized;
      }
      split_added(view, normalized_matcher, [&](std::string_view p, int32_t pid) {
        if (pid >= 0)
          ids.push_back(pid);
        else
          encode_words(p, ids, scratch);
      });
    });
  }

  int32_t id_of(std::string_view token, std::string_view where) const {
    const int32_t id = token_to_id.find(token);
    if (id < 0) fail("{}: `{}` is {:?}, which is not a token of the vocabulary", file, where, token);
    return id;
  }

  void check_id(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= valid.size() || !valid[static_cast<size_t>(id)])
      fail("unknown token id {} (tokenizer {} has {} ids)", id, file, valid.size());
  }
};

namespace {

using Impl = Tokenizer::Impl;

NormalForm parse_normal_form(std::string_view type, const JsonReader& r, std::string_view where) {
  if (type == "NFC") return NormalForm::nfc;
  if (type == "NFD") return NormalForm::nfd;
  if (type == "NFKC") return NormalForm::nfkc;
  if (type == "NFKD") return NormalForm::nfkd;
  fail("{}: unsupported normalizer `{}` at `{}` (supported: NFC, NFD, NFKC, NFKD, Sequence)", r.file, type, where);
}

void parse_normalizer(const element& e, const JsonReader& r, std::string_view where, Impl& impl) {
  if (e.is_null()) return;
  const object o = r.as_object(e, where);
  const std::string type = r.get_string(o, "type", where);
  if (type == "Sequence") {
    auto list = r.field(o, "normalizers");
    if (!list) r.bad(fmt::format("{}.normalizers", where), "an array");
    size_t k = 0;
    for (element sub : r.as_array(*list, where)) parse_normalizer(sub, r, fmt::format("{}.normalizers[{}]", where, k++), impl);
    return;
  }
  impl.normalizers.push_back(parse_normal_form(type, r, where));
}

SplitBehavior parse_behavior(std::string_view b, const JsonReader& r, std::string_view where) {
  if (b == "Isolated") return SplitBehavior::isolated;
  if (b == "Removed") return SplitBehavior::removed;
  if (b == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (b == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (b == "Contiguous") return SplitBehavior::contiguous;
  fail("{}: unsupported Split behavior `{}` at `{}`", r.file, b, where);
}

// Returns whether a ByteLevel step was seen.
bool parse_pre_tokenizer(const element& e, const JsonReader& r, std::string_view where, Impl& impl) {
  if (e.is_null()) return false;
  const object o = r.as_object(e, where);
  const std::string type = r.get_string(o, "type", where);
  if (type == "Sequence") {
    auto list = r.field(o, "pretokenizers");
    if (!list) r.bad(fmt::format("{}.pretokenizers", where), "an array");
    bool byte_level = false;
    size_t k = 0;
    for (element sub : r.as_array(*list, where))
      byte_level |= parse_pre_tokenizer(sub, r, fmt::format("{}.pretokenizers[{}]", where, k++), impl);
    return byte_level;
  }
  if (type == "Split") {
    auto pat = r.field(o, "pattern");
    if (!pat) r.bad(fmt::format("{}.pattern", where), "{\"Regex\": ...} or {\"String\": ...}");
    const object po = r.as_object(*pat, fmt::format("{}.pattern", where));
    std::string pattern;
    bool literal = false;
    if (auto re = r.field(po, "Regex")) {
      pattern = r.as_string(*re, fmt::format("{}.pattern.Regex", where));
    } else if (auto st = r.field(po, "String")) {
      pattern = r.as_string(*st, fmt::format("{}.pattern.String", where));
      literal = true;
    } else {
      r.bad(fmt::format("{}.pattern", where), "{\"Regex\": ...} or {\"String\": ...}");
    }
    const SplitBehavior behavior = parse_behavior(r.get_string(o, "behavior", where), r, where);
    const bool invert = r.get_bool(o, "invert", false, where);
    impl.pretokenizer.add(make_split(pattern, literal, behavior, invert, fmt::format("{}: {}", r.file, where)));
    return false;
  }
  if (type == "ByteLevel") {
    const bool prefix = r.get_bool(o, "add_prefix_space", true, where);
    const bool use_regex = r.get_bool(o, "use_regex", true, where);
    impl.pretokenizer.add(make_byte_level_split(prefix, use_regex));
    return true;
  }
  fail("{}: unsupported pre_tokenizer `{}` at `{}` (supported: Split, ByteLevel, Sequence)", r.file, type, where);
}

// Appends the special ids of a TemplateProcessing template's items before / after $A.
void parse_template(const object& o, const JsonReader& r, std::string_view where, Impl& impl) {
  auto single = r.field(o, "single");
  if (!single) r.bad(fmt::format("{}.single", where), "an array");
  auto specials = r.field(o, "special_tokens");
  object special_map;
  if (specials) special_map = r.as_object(*specials, fmt::format("{}.special_tokens", where));
  int sequences = 0;
  size_t k = 0;
  for (element item : r.as_array(*single, fmt::format("{}.single", where))) {
    const std::string at = fmt::format("{}.single[{}]", where, k++);
    const object io = r.as_object(item, at);
    if (auto seq = r.field(io, "Sequence")) {
      const object so = r.as_object(*seq, at + ".Sequence");
      const std::string id = r.get_string(so, "id", at + ".Sequence");
      if (id != "A") fail("{}: `{}`: the single template may only use sequence A, not {}", r.file, at, id);
      ++sequences;
      continue;
    }
    auto sp = r.field(io, "SpecialToken");
    if (!sp) r.bad(at, "{\"Sequence\": ...} or {\"SpecialToken\": ...}");
    const object spo = r.as_object(*sp, at + ".SpecialToken");
    const std::string name = r.get_string(spo, "id", at + ".SpecialToken");
    auto entry = specials ? r.field(special_map, name) : std::nullopt;
    if (!entry) fail("{}: `{}`: special token {:?} is not in `{}.special_tokens`", r.file, at, name, where);
    const object eo = r.as_object(*entry, fmt::format("{}.special_tokens.{}", where, name));
    auto ids = r.field(eo, "ids");
    if (!ids) r.bad(fmt::format("{}.special_tokens.{}.ids", where, name), "an array of ids");
    for (element v : r.as_array(*ids, "ids")) {
      const auto id = static_cast<int32_t>(r.as_int(v, fmt::format("{}.special_tokens.{}.ids", where, name)));
      (sequences == 0 ? impl.prefix_ids : impl.suffix_ids).push_back(id);
    }
  }
  if (sequences != 1) fail("{}: `{}.single` must contain sequence A exactly once", r.file, where);
}

void parse_post_processor(const element& e, const JsonReader& r, std::string_view where, Impl& impl) {
  if (e.is_null()) return;
  const object o = r.as_object(e, where);
  const std::string type = r.get_string(o, "type", where);
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "TemplateProcessing") {
    if (!impl.prefix_ids.empty() || !impl.suffix_ids.empty())
      fail("{}: `{}`: more than one TemplateProcessing is not supported", r.file, where);
    parse_template(o, r, where, impl);
    return;
  }
  if (type == "Sequence") {
    auto list = r.field(o, "processors");
    if (!list) r.bad(fmt::format("{}.processors", where), "an array");
    size_t k = 0;
    for (element sub : r.as_array(*list, where)) parse_post_processor(sub, r, fmt::format("{}.processors[{}]", where, k++), impl);
    return;
  }
  fail("{}: unsupported post_processor `{}` at `{}` (supported: TemplateProcessing, ByteLevel, Sequence)", r.file, type,
       where);
}

void parse_decoder(const element& e, const JsonReader& r, Impl& impl) {
  if (e.is_null()) {
    impl.byte_level_decoder = false;
    return;
  }
  const object o = r.as_object(e, "decoder");
  const std::string type = r.get_string(o, "type", "decoder");
  if (type != "ByteLevel") fail("{}: unsupported decoder `{}` (supported: ByteLevel)", r.file, type);
}

// Raw bytes of a byte-level token string; nullopt when a character is not one of the 256 byte characters.
std::optional<std::string> byte_level_to_bytes(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    const int b = char_to_byte(next_code_point(token, i));
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
  }
  return out;
}

void parse_model(const element& e, const JsonReader& r, Impl& impl) {
  const object o = r.as_object(e, "model");
  if (auto t = r.field(o, "type")) {
    const std::string_view type = r.as_string(*t, "model.type");
    if (type != "BPE") fail("{}: unsupported model `{}` (supported: BPE)", r.file, type);
  }
  if (auto d = r.field(o, "dropout"); d && !d->is_null()) {
    double p = 0;
    if (d->get(p) != simdjson::SUCCESS || p != 0.0) fail("{}: unsupported `model.dropout` (only null or 0)", r.file);
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (auto v = r.field(o, key); v && !v->is_null() && !r.as_string(*v, fmt::format("model.{}", key)).empty())
      fail("{}: unsupported `model.{}` (only null or \"\")", r.file, key);
  }
  if (r.get_bool(o, "byte_fallback", false, "model")) fail("{}: unsupported `model.byte_fallback: true`", r.file);
  const bool ignore_merges = r.get_bool(o, "ignore_merges", false, "model");
  const bool fuse_unk = r.get_bool(o, "fuse_unk", false, "model");

  auto vocab_e = r.field(o, "vocab");
  if (!vocab_e) r.bad("model.vocab", "an object token -> id");
  const object vocab = r.as_object(*vocab_e, "model.vocab");
  std::vector<std::pair<std::string_view, int32_t>> entries;
  entries.reserve(vocab.size());
  int32_t max_id = -1;
  for (auto [key, value] : vocab) {
    int64_t id = 0;
    if (value.get(id) != simdjson::SUCCESS || id < 0)
      fail("{}: `model.vocab`: token {:?} must map to a non-negative integer id", r.file, key);
    if (id > kMaxTokenId)
      fail("{}: `model.vocab`: token {:?} has id {}, above cotune's limit of {} (a corrupt tokenizer.json?)", r.file,
           key, id, kMaxTokenId);
    entries.emplace_back(key, static_cast<int32_t>(id));
    max_id = std::max(max_id, static_cast<int32_t>(id));
  }
  const size_t n = static_cast<size_t>(max_id + 1);
  std::vector<std::string> vocab_bytes(n);
  std::vector<bool> mergeable(n, false);
  impl.token_strings.assign(n, std::string());
  impl.decode_bytes.assign(n, std::string());
  impl.valid.assign(n, 0);
  size_t key_bytes = 0;
  for (auto [key, id] : entries) key_bytes += key.size();
  impl.token_to_id.reserve(entries.size() + 64, key_bytes + 1024);
  for (auto [key, id] : entries) {
    const auto i = static_cast<size_t>(id);
    impl.token_strings[i] = key;
    impl.valid[i] = 1;
    impl.token_to_id.put(key, id);
    if (auto b = byte_level_to_bytes(key)) {
      vocab_bytes[i] = *b;
      mergeable[i] = true;
      impl.decode_bytes[i] = std::move(*b);
    } else {
      vocab_bytes[i] = key;
      impl.decode_bytes[i] = key;  // ByteLevel decoder: a token with a foreign character keeps its UTF-8 bytes
    }
  }

  int32_t unk_id = -1;
  if (auto u = r.field(o, "unk_token"); u && !u->is_null()) unk_id = impl.id_of(r.as_string(*u, "model.unk_token"), "model.unk_token");

  auto merges_e = r.field(o, "merges");
  if (!merges_e) r.bad("model.merges", "an array");
  const array merges_a = r.as_array(*merges_e, "model.merges");
  std::vector<std::array<int32_t, 3>> merges;
  merges.reserve(merges_a.size());
  std::string joined;
  size_t rank = 0;
  for (element m : merges_a) {
    std::string_view left, right;
    std::string_view s;
    if (m.get(s) == simdjson::SUCCESS) {
      const size_t sp = s.find(' ');
      if (sp == std::string_view::npos || s.find(' ', sp + 1) != std::string_view::npos)
        fail("{}: `model.merges[{}]` = {:?}: expected two tokens separated by one space", r.file, rank, s);
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else {
      array pair;
      if (m.get(pair) != simdjson::SUCCESS || pair.size() != 2)
        fail("{}: `model.merges[{}]`: expected \"a b\" or [\"a\", \"b\"]", r.file, rank);
      left = r.as_string(pair.at(0).value(), "model.merges[i][0]");
      right = r.as_string(pair.at(1).value(), "model.merges[i][1]");
    }
    const int32_t l = impl.token_to_id.find(left);
    const int32_t rr = impl.token_to_id.find(right);
    if (l < 0 || rr < 0) fail("{}: `model.merges[{}]`: token {:?} is not in the vocab", r.file, rank, l < 0 ? left : right);
    joined.assign(left);
    joined.append(right);
    const int32_t j = impl.token_to_id.find(joined);
    if (j < 0)
      fail("{}: `model.merges[{}]`: merged token {:?} is not in the vocab", r.file, rank, joined);
    merges.push_back({l, rr, j});
    ++rank;
  }
  impl.bpe = std::make_unique<BpeModel>(std::move(vocab_bytes), mergeable, merges, ignore_merges, unk_id, fuse_unk);
}

void parse_added_tokens(const element& e, const JsonReader& r, Impl& impl) {
  if (e.is_null()) return;
  size_t k = 0;
  for (element item : r.as_array(e, "added_tokens")) {
    const std::string where = fmt::format("added_tokens[{}]", k++);
    const object o = r.as_object(item, where);
    AddedToken t;
    t.content = r.get_string(o, "content", where);
    auto id = r.field(o, "id");
    if (!id) r.bad(where + ".id", "an integer");
    const int64_t v = r.as_int(*id, where + ".id");
    if (v < 0) r.bad(where + ".id", "a non-negative id");
    if (v > kMaxTokenId)
      fail("{}: field `{}.id` is {}, above cotune's limit of {} (a corrupt tokenizer.json?)", r.file, where, v,
           kMaxTokenId);
    t.id = static_cast<int32_t>(v);
    t.special = r.get_bool(o, "special", false, where);
    t.normalized = r.get_bool(o, "normalized", !t.special, where);
    t.lstrip = r.get_bool(o, "lstrip", false, where);
    t.rstrip = r.get_bool(o, "rstrip", false, where);
    t.single_word = r.get_bool(o, "single_word", false, where);
    impl.added.push_back(std::move(t));
  }
}

// tokenizer_config.json's bos_token / eos_token / pad_token: a string, an {"content": ...} object or null.
std::optional<std::string> config_token(const object& o, std::string_view key, const JsonReader& r) {
  auto e = r.field(o, key);
  if (!e || e->is_null()) return std::nullopt;
  std::string_view s;
  if (e->get(s) == simdjson::SUCCESS) return std::string(s);
  object to;
  if (e->get(to) == simdjson::SUCCESS) return r.get_string(to, "content", key);
  r.bad(key, "a string, an object with `content`, or null");
}

// simdjson 3.0 rejects integers beyond 64 bits, which tokenizer_config.json files carry
// ("model_max_length": 1000000000000000019884624838656): such integer literals get a ".0" so they parse as
// doubles. Strings are skipped.
std::string widen_big_integers(std::string_view json) {
  std::string out;
  out.reserve(json.size() + 16);
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      out.push_back(c);
      if (c == '\\' && i + 1 < json.size()) out.push_back(json[++i]);
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
      out.push_back(c);
      continue;
    }
    if (c >= '0' && c <= '9' && (i == 0 || !(json[i - 1] >= '0' && json[i - 1] <= '9') ) ) {
      size_t j = i;
      while (j < json.size() && json[j] >= '0' && json[j] <= '9') ++j;
      const bool fraction_or_exp = j < json.size() && (json[j] == '.' || json[j] == 'e' || json[j] == 'E');
      const bool after_point = i > 0 && (json[i - 1] == '.' || json[i - 1] == 'e' || json[i - 1] == 'E' ||
                                         json[i - 1] == '+' || (json[i - 1] == '-' && i > 1 && (json[i - 2] == 'e' || json[i - 2] == 'E')));
      out.append(json.substr(i, j - i));
      if (j - i >= 19 && !fraction_or_exp && !after_point) out += ".0";
      i = j - 1;
      continue;
    }
    out.push_back(c);
  }
  return out;
}

void parse_config(const std::string& path, Impl& impl) {
  JsonReader r{path};
  simdjson::padded_string raw;
  if (simdjson::padded_string::load(path).get(raw) != simdjson::SUCCESS) fail("{}: cannot read the file", path);
  const simdjson::padded_string content(widen_big_integers(std::string_view(raw.data(), raw.size())));
  simdjson::dom::parser parser;
  element root;
  if (auto err = parser.parse(content).get(root); err != simdjson::SUCCESS) {
    const std::string where = json_syntax_error(std::string_view(raw.data(), raw.size()));
    fail("{}: malformed JSON: {}", path, where.empty() ? simdjson::error_message(err) : where);
  }
  const object o = r.as_object(root, "(root)");
  if (auto t = config_token(o, "bos_token", r)) impl.bos = impl.id_of(*t, "bos_token");
  if (auto t = config_token(o, "eos_token", r)) impl.eos = impl.id_of(*t, "eos_token");
  if (auto t = config_token(o, "pad_token", r)) impl.pad = impl.id_of(*t, "pad_token");
  impl.add_bos = r.get_bool(o, "add_bos_token", false, "add_bos_token");
  if (auto m = r.field(o, "model_max_length"); m && !m->is_null()) {
    int64_t i = 0;
    uint64_t u = 0;
    double d = 0;
    if (m->get(i) == simdjson::SUCCESS) {
      impl.max_length = std::min(i, impl.max_length);
    } else if (m->get(u) == simdjson::SUCCESS) {
      // beyond int64: keep the large default
    } else if (m->get(d) == simdjson::SUCCESS && std::isfinite(d) && d > 0) {
      if (d < static_cast<double>(impl.max_length)) impl.max_length = static_cast<int64_t>(d);
    } else {
      r.bad("model_max_length", "a positive number");
    }
  }
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path) {
  std::error_code ec;
  fs::path json_path = path;
  if (fs::is_directory(json_path, ec)) json_path /= "tokenizer.json";
  if (!fs::exists(json_path, ec)) fail("tokenizer: {} not found (expected tokenizer.json or a folder holding it)", json_path.string());
  require_regular_file(json_path.string());
  const fs::path config_path = json_path.parent_path() / "tokenizer_config.json";

  auto impl = std::make_unique<Impl>();
  impl->file = json_path.string();
  JsonReader r{impl->file};

  simdjson::padded_string content;
  if (simdjson::padded_string::load(impl->file).get(content) != simdjson::SUCCESS) fail("{}: cannot read the file", impl->file);
  // The content hash runs on a second core while the JSON is parsed.
  auto hash = std::async(std::launch::async, [&content] { return sha256_hex(std::string_view(content.data(), content.size())); });
  simdjson::dom::parser parser;
  element root;
  if (auto err = parser.parse(content).get(root); err != simdjson::SUCCESS) {
    const std::string where = json_syntax_error(std::string_view(content.data(), content.size()));
    fail("{}: malformed JSON: {}", impl->file, where.empty() ? simdjson::error_message(err) : where);
  }
  const object o = r.as_object(root, "(root)");

  if (!r.is_null_or_missing(o, "truncation")) fail("{}: unsupported `truncation` (only null)", impl->file);
  if (!r.is_null_or_missing(o, "padding")) fail("{}: unsupported `padding` (only null)", impl->file);
  auto model = r.field(o, "model");
  if (!model) r.bad("model", "an object");
  parse_model(*model, r, *impl);
  if (auto e = r.field(o, "added_tokens")) parse_added_tokens(*e, r, *impl);
  if (auto e = r.field(o, "normalizer")) parse_normalizer(*e, r, "normalizer", *impl);
  bool byte_level = false;
  if (auto e = r.field(o, "pre_tokenizer")) byte_level = parse_pre_tokenizer(*e, r, "pre_tokenizer", *impl);
  if (!byte_level)
    fail("{}: unsupported `pre_tokenizer` without a ByteLevel step (the BPE model here is byte-level)", impl->file);
  if (auto e = r.field(o, "decoder")) parse_decoder(*e, r, *impl);
  else impl->byte_level_decoder = false;

  // Added tokens extend the id space; their text is matched before anything else.
  for (size_t i = 0; i < impl->added.size(); ++i) {
    const AddedToken& t = impl->added[i];
    const auto id = static_cast<size_t>(t.id);
    if (id >= impl->valid.size()) {
      impl->valid.resize(id + 1, 0);
      impl->token_strings.resize(id + 1);
      impl->decode_bytes.resize(id + 1);
    }
    // A normalized added token is matched (and, as HF does, named by id_to_token and decoded) in its
    // normalized form; token_to_id knows it by its original content.
    std::string form = t.content;
    if (t.normalized) {
      for (NormalForm nf : impl->normalizers) {
        std::string next;
        normalize_append(form, nf, next);
        form.swap(next);
      }
      impl->normalized_matcher.add(form, i);
    } else {
      impl->raw_matcher.add(t.content, i);
    }
    impl->valid[id] = 1;
    // ByteLevel decoder: characters of the byte alphabet map back to bytes, else the token's UTF-8 is kept.
    if (auto b = byte_level_to_bytes(form)) impl->decode_bytes[id] = *b;
    else impl->decode_bytes[id] = form;
    impl->token_strings[id] = std::move(form);
    impl->token_to_id.put(t.content, t.id);
  }
  impl->special.assign(impl->valid.size(), 0);
  for (const AddedToken& t : impl->added)
    if (t.special) impl->special[static_cast<size_t>(t.id)] = 1;
  if (auto e = r.field(o, "post_processor")) parse_post_processor(*e, r, "post_processor", *impl);
  for (int32_t id : impl->prefix_ids) impl->check_id(id);
  for (int32_t id : impl->suffix_ids) impl->check_id(id);

  if (fs::exists(config_path, ec)) {
    require_regular_file(config_path.string());
    parse_config(config_path.string(), *impl);
  }
  if (impl->bos < 0 && !impl->prefix_ids.empty()) impl->bos = impl->prefix_ids.front();
  if (impl->eos < 0) {
    for (const char* name : {"<|endoftext|>", "</s>", "<|end_of_text|>"})
      if (const int32_t id = impl->token_to_id.find(name); id >= 0) {
        impl->eos = id;
        break;
      }
  }
  impl->hash = hash.get();
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  if (auto bad = find_invalid_utf8(text)) fail("tokenizer: invalid UTF-8 in the text at byte offset {}", *bad);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special) ids.insert(ids.end(), impl_->prefix_ids.begin(), impl_->prefix_ids.end());
  impl_->encode_into(text, ids);
  if (add_special) ids.insert(ids.end(), impl_->suffix_ids.begin(), impl_->suffix_ids.end());
  return ids;
}

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(std::span<const std::string> texts, bool add_special) const {
  std::vector<std::vector<int32_t>> out(texts.size());
  std::mutex error_mutex;
  std::optional<std::pair<size_t, std::string>> first_error;
  const auto n = static_cast<int64_t>(texts.size());
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < n; ++i) {
    try {
      out[static_cast<size_t>(i)] = encode(texts[static_cast<size_t>(i)], add_special);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!first_error || first_error->first > static_cast<size_t>(i)) first_error.emplace(static_cast<size_t>(i), e.what());
    }
  }
  if (first_error) fail("text {} of the batch: {}", first_error->first, first_error->second);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  if (!impl_->byte_level_decoder) {  // no decoder: HF joins the token strings with spaces
    bool first = true;
    for (int32_t id : ids) {
      impl_->check_id(id);
      if (skip_special && impl_->special[static_cast<size_t>(id)]) continue;
      if (!first) bytes.push_back(' ');
      bytes += impl_->token_strings[static_cast<size_t>(id)];
      first = false;
    }
    return bytes;
  }
  bytes.reserve(ids.size() * 4);
  for (int32_t id : ids) {
    impl_->check_id(id);
    if (skip_special && impl_->special[static_cast<size_t>(id)]) continue;
    bytes += impl_->decode_bytes[static_cast<size_t>(id)];
  }
  if (!find_invalid_utf8(bytes)) return bytes;
  return utf8_lossy(bytes);
}

std::string Tokenizer::token_bytes(int32_t id) const {
  impl_->check_id(id);
  return impl_->decode_bytes[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  const int32_t id = impl_->token_to_id.find(token);
  if (id < 0) return std::nullopt;
  return id;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  impl_->check_id(id);
  return impl_->token_strings[static_cast<size_t>(id)];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[static_cast<size_t>(id)];
}
int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->valid.size()); }
bool Tokenizer::has_id(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->valid.size() && impl_->valid[static_cast<size_t>(id)];
}
int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::pad_id() const { return impl_->pad; }
std::string Tokenizer::eos_token() const { return impl_->eos >= 0 ? impl_->token_strings[static_cast<size_t>(impl_->eos)] : ""; }
std::string Tokenizer::bos_token() const { return impl_->bos >= 0 ? impl_->token_strings[static_cast<size_t>(impl_->bos)] : ""; }
bool Tokenizer::add_bos_token() const { return impl_->add_bos; }
int64_t Tokenizer::model_max_length() const { return impl_->max_length; }
const std::string& Tokenizer::content_hash() const { return impl_->hash; }

}  // namespace cotune::text
