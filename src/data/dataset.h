// SFT datasets: records -> template -> token ids (+ where the prompt ends), truncated to max_seq_length, cached on
// disk; plus row selection (`train[0:500]`), a validation split, and length statistics.
//
// Typical use (the trainer; the guide's settings):
//   auto tok = text::Tokenizer::load(model_dir);
//   auto tpl = text::PromptTemplate::builtin("medical-o1-zh");          // or PromptTemplate::load_file(path)
//   DataOptions d;  d.data_path = file_or_folder;  d.max_seq_length = 2048;  d.selection = parse_selection("train[0:500]");
//   TokenizedDataset ds = build_dataset(d, tpl, tok);                   // cached under default_cache_dir()
//   Split sp = split_validation(ds.size(), /*fraction*/ 0.0, /*count*/ 0, /*seed*/ 3407);
//   BatchOptions b;  b.max_tokens = 2048;  b.max_sequences = 1;  b.pad_id = tok.pad_id();  b.seed = 3407;
//   BatchIterator it(ds, sp.train, b);                                  // (batch.h) ds must outlive it
//   Batch batch = it.next();   checkpoint: it.state().to_json();   resume: it.restore(IteratorState::from_json(s))
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "data/source.h"
#include "text/template.h"
#include "text/tokenizer.h"

namespace cotune::data {

// A row range over the source, as in Hugging Face `datasets` split strings: "train", "train[0:500]",
// "train[:500]", "train[100:]", "train[:10%]", "train[10%:20%]". Only the split name "train" exists for local
// files. Bounds are clamped to the number of rows.
struct Selection {
  int64_t begin = 0;
  std::optional<int64_t> end;  // exclusive; nullopt = to the end
  bool begin_percent = false, end_percent = false;
  std::string spec = "train";  // as given (cache keys, messages)
  std::string split = "train"; // the split name; a dataset's configs map it to files (dataset_config.h), and
                               // build_dataset reads only "train" (a local file's one split, or the resolved files)

  bool is_all() const { return begin == 0 && !end; }
  bool needs_row_count() const { return begin_percent || end_percent; }
  // Resolves percentages against `rows`: [first, last) row indices.
  std::pair<int64_t, int64_t> resolve(int64_t rows) const;
};
Selection parse_selection(std::string_view spec);

struct DataOptions {
  std::string data_path;                      // file or folder (list_data_files)
  int64_t max_seq_length = 2048;              // longer sequences are cut (counted in `truncated`)
  OnBadRecord on_bad_record = OnBadRecord::error;
  Selection selection;                        // which source rows
  bool use_cache = true;
  std::string cache_dir;                      // "" = default_cache_dir()
  size_t encode_chunk = 256;                  // records formatted and encoded together (encode_batch)
};

// Tokenized sequences back to back. Sequence i is tokens[offsets[i], offsets[i+1]); its first prompt_lengths[i]
// tokens (BOS + formatted prompt) are the prompt, the rest (reasoning, answer, EOS) the response.
struct TokenizedDataset {
  std::vector<int32_t> tokens;          // [sum of lengths]
  std::vector<int64_t> offsets{0};      // [N+1]
  std::vector<int32_t> prompt_lengths;  // [N] (<= length when truncated into the prompt)
  std::vector<int32_t> full_lengths;    // [N] length before truncation
  std::vector<int64_t> rows;            // [N] source row of each sequence
  int64_t rows_read = 0;                // source rows read (within the selection), good and bad
  int64_t skipped = 0;                  // bad rows skipped
  int64_t truncated = 0;                // sequences cut to max_seq_length
  int64_t max_seq_length = 0;
  bool from_cache = false;              // loaded from the token cache (not serialised)
  // [sum of lengths] or empty: 1 where the token is trained under LossMask::assistant (the assistant turns of a
  // conversation, chat_data.h); empty for prompt-template datasets, where assistant means response.
  std::vector<uint8_t> assistant_mask;

  size_t size() const { return prompt_lengths.size(); }
  int64_t length(size_t i) const { return offsets[i + 1] - offsets[i]; }
  std::span<const int32_t> sequence(size_t i) const {
    return {tokens.data() + offsets[i], static_cast<size_t>(length(i))};
  }
  // Appends one sequence, truncating to max_seq_length (0 = no limit). `mask` (same length as ids) goes to
  // assistant_mask; give it for every sequence or for none.
  void append(std::span<const int32_t> ids, int32_t prompt_length, std::span<const uint8_t> mask = {});
};

// One formatted, encoded example (no truncation), as the dataset builder and `data preview` see it.
struct EncodedExample {
  std::string text;            // formatted training text, EOS text appended
  size_t prompt_bytes = 0;     // text[0, prompt_bytes) is the prompt
  std::vector<int32_t> ids;    // tokenizer.encode(text, add_special = true)
  int32_t prompt_tokens = 0;   // ids[0, prompt_tokens) cover the prompt (BOS included)
};

// Formats with the template and encodes. Values are in template.fields() order.
EncodedExample encode_example(const text::PromptTemplate& tpl, const text::Tokenizer& tok,
                              std::span<const std::string> values);
// How many leading tokens of `ids` = encode(text, add_special = true) belong to the prompt text[0, prompt_bytes):
// the tokens the post-processor puts in front (BOS) plus the tokens that end at or before byte `prompt_bytes`. A
// token straddling the boundary counts as response, so it is trained. When the tokenizer's normalizer changed the
// prompt's bytes, falls back to the longest common prefix with encode(prompt).
int32_t count_prompt_tokens(const text::Tokenizer& tok, std::span<const int32_t> ids, std::string_view text,
                            size_t prompt_bytes);

// Reads, formats, encodes and truncates the selected records, using the token cache when allowed.
TokenizedDataset build_dataset(const DataOptions& opt, const text::PromptTemplate& tpl, const text::Tokenizer& tok);

// ---- token cache --------------------------------------------------------------------------------------------
// Cache files live in `dir` as <key>.tokens, key = SHA-256 over (format version, SHA-256 of every data file's
// bytes and its name, template fingerprint, tokenizer content hash, max_seq_length, selection, bad-record policy).
// Written atomically (temp file + rename); a corrupt or foreign file is ignored and rebuilt.
std::string default_cache_dir();  // $XDG_CACHE_HOME/cotune/data, else $HOME/.cache/cotune/data
std::string sha256_file_hex(const std::string& path);
std::string cache_key(const DataOptions& opt, const text::PromptTemplate& tpl, const text::Tokenizer& tok);
// The same over any formatter's fingerprint (chat_data.h's formats).
std::string cache_key(const DataOptions& opt, const std::string& format_fingerprint, const text::Tokenizer& tok);
void save_token_cache(const std::string& path, const TokenizedDataset& ds);
std::optional<TokenizedDataset> load_token_cache(const std::string& path);  // nullopt if missing / invalid

// ---- validation split ---------------------------------------------------------------------------------------
// Splits sequence indices [0, n) into train and validation. `fraction` in (0, 1) or `count` >= 1 (one of them;
// both zero = no validation). The validation rows are a seeded random choice; both lists are returned sorted,
// so --no-shuffle still walks the training rows in file order.
struct Split {
  std::vector<int64_t> train, validation;
};
Split split_validation(int64_t n, double fraction, int64_t count, uint64_t seed);

// ---- statistics ---------------------------------------------------------------------------------------------
struct DatasetStats {
  int64_t records = 0, rows_read = 0, skipped = 0, truncated = 0;
  int64_t tokens = 0;                   // after truncation
  int64_t min_length = 0, max_length = 0, p50_length = 0, p95_length = 0;  // before truncation
  double mean_length = 0;
  int64_t prompt_tokens = 0, response_tokens = 0;  // after truncation; response includes EOS
  double response_fraction = 0;                    // response_tokens / tokens
  int64_t max_seq_length = 0;
  std::string to_json() const;  // one JSON object, 2-space indented
};
DatasetStats compute_stats(const TokenizedDataset& ds);

}  // namespace cotune::data
