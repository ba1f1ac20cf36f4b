// Byte-level BPE tokenizer loaded from Hugging Face `tokenizer.json` (+ `tokenizer_config.json`),
// producing exactly the ids of the `tokenizers` library. Special ids (BOS, EOS, PAD) come from these
// files, never from the model's config.json.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cotune::text {

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or a folder holding tokenizer.json (and optionally
  // tokenizer_config.json beside it). Throws cotune::Error naming the file and the unsupported component.
  static Tokenizer load(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // As HF `tokenizer.encode(text)` (add_special = true: post-processor applied, e.g. BOS prepended) or
  // `encode(text, add_special_tokens=False)`. Invalid UTF-8 throws Error naming the byte offset.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const;
  // Encodes many texts on all cores; result[i] = encode(texts[i], add_special).
  std::vector<std::vector<int32_t>> encode_batch(std::span<const std::string> texts, bool add_special = true) const;
  // As HF `decode(ids, skip_special_tokens=skip_special)`. Unknown ids throw Error.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The raw bytes of one token after byte-level decoding (may be part of a UTF-8 character).
  std::string token_bytes(int32_t id) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;  // vocab or added token
  std::string id_to_token(int32_t id) const;                           // the token's string form
  bool is_special(int32_t id) const;
  int32_t vocab_size() const;  // highest id + 1 (base vocab plus added tokens)
  // Whether `id` names a token (a model's embedding is often padded past the tokenizer: 151,936 rows for
  // 151,665 ids in DeepSeek-R1-Distill-Qwen; the ids in between have no text).
  bool has_id(int32_t id) const;

  // From tokenizer_config.json where present (bos_token / eos_token / pad_token), else from the
  // post-processor / added tokens; -1 when the tokenizer has none.
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  std::string eos_token() const;  // the EOS token's text, e.g. "<｜end▁of▁sentence｜>"
  std::string bos_token() const;
  bool add_bos_token() const;       // tokenizer_config.json `add_bos_token`
  int64_t model_max_length() const;  // tokenizer_config.json `model_max_length` (or a large number)
  // Hex SHA-256 of tokenizer.json's bytes (cache keys).
  const std::string& content_hash() const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// `cotune tokenize`: reads JSON lines from `in` and writes one JSON line per input line to `out`, in order.
// {"text": "..."} -> {"ids": [...]} (encode with add_special), or with `decode` {"ids": [...]} ->
// {"text": "..."}. Lines are encoded in blocks with encode_batch. A bad line throws Error naming its line
// number, after the lines before it have been written. Returns the number of lines.
struct JsonlOptions {
  bool add_special = true;    // encode: as HF encode(text) (false: add_special_tokens=False)
  bool decode = false;        // {"ids"} -> {"text"}
  bool skip_special = false;  // decode: leave special tokens out
};
size_t tokenize_jsonl(const Tokenizer& tokenizer, std::istream& in, std::ostream& out, const JsonlOptions& options);

}  // namespace cotune::text
