// A small byte-level BPE trainer (the algorithm of HF `tokenizers`' BpeTrainer, without its options) and the
// writer of the Hugging Face tokenizer files it produces: `tokenizer.json` + `tokenizer_config.json` shaped
// like DeepSeek-R1-Distill-Qwen's (NFC normalizer, Qwen2 Split regex + ByteLevel pre-tokenizer, BPE model,
// TemplateProcessing prepending BOS, ByteLevel decoder; added tokens after the BPE vocabulary).
// Used by `cotune init-model` to give a tiny random model a vocabulary of a few hundred tokens fitted to
// the demo data, so that its loss starts at ln(V) with a small V.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cotune::text {

struct BpeTrainOptions {
  int32_t vocab_size = 1024;  // BPE vocabulary size: 256 byte tokens + merges (added tokens come on top)
  int64_t min_frequency = 2;  // a pair seen fewer times (weighted by word counts) is never merged
  bool nfc = true;            // NFC-normalize texts first (the written tokenizer's normalizer)
};

// The trained model. Token ids 0..255 are the 256 bytes in the order of their GPT-2 byte-level characters
// (id 0 is '!', as in GPT-2 / Qwen2); later ids are merge results in the order they were learned.
struct BpeVocab {
  std::vector<std::string> tokens;                  // raw bytes of each token id
  std::vector<std::pair<int32_t, int32_t>> merges;  // rank order; merges[r] joins tokens (first, second)
  std::vector<int32_t> merge_result;                // merges[r] produces token merge_result[r]
  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
  // The token's string form in tokenizer.json (GPT-2 byte -> char mapping).
  std::string token_string(int32_t id) const;
};

// Pre-tokenizes (Qwen2 pattern, as the written tokenizer does) and counts the words of `texts`.
// Words are pre-token byte strings; the result is sorted by word (deterministic).
std::vector<std::pair<std::string, int64_t>> count_words(std::span<const std::string> texts, bool nfc = true);

// Learns merges from word counts: repeatedly merges the pair with the highest count (ties: the smallest
// (left id, right id)), until `vocab_size` tokens or no pair reaches `min_frequency`. Deterministic.
// A merge whose result already exists as a token (e.g. "ab"+"c" after "a"+"bc") reuses that id, as HF does.
BpeVocab train_bpe_from_counts(const std::vector<std::pair<std::string, int64_t>>& word_counts,
                               const BpeTrainOptions& opts);
BpeVocab train_bpe(std::span<const std::string> texts, const BpeTrainOptions& opts);

// Reference application of the merges to one pre-token (lowest rank first, leftmost among equals, as HF's
// BPE model does); for tests of the trainer independent of the tokenizer.
std::vector<int32_t> bpe_encode_word(const BpeVocab& vocab, std::string_view word);
// Pre-tokenizes (with NFC when `nfc`) and encodes a whole text with bpe_encode_word (no special tokens).
std::vector<int32_t> bpe_encode_text(const BpeVocab& vocab, std::string_view text, bool nfc = true);

// Texts for training from a file: `.jsonl` (one JSON object a line; for medical-o1 records the fields
// Question, Complex_CoT and Response, otherwise every string field), `.json` (an array of such objects,
// or one object), anything else read as plain text (one text per blank-line-separated paragraph).
// Stops after about `max_bytes` of text. Errors name the file and line.
std::vector<std::string> load_training_texts(const std::string& path, size_t max_bytes = size_t{64} << 20);

struct AddedToken {
  std::string content;
  bool special = false;
};

// What the tokenizer files declare besides the BPE model.
struct TokenizerFilesSpec {
  std::vector<AddedToken> added_tokens;  // ids follow the BPE vocabulary, in this order
  std::string bos_token;                 // prepended by the post-processor; must be one of added_tokens
  std::string eos_token;
  std::string pad_token;
  int64_t model_max_length = 16384;
  std::string chat_template;  // empty: none
};

// DeepSeek-R1-Distill's added tokens and chat template: EOS (special), <｜User｜>, <｜Assistant｜>, BOS
// (special), <think>, </think>; pad = EOS.
TokenizerFilesSpec r1_distill_tokenizer_spec();

// tokenizer.json text (key order and layout of the R1-Distill file).
std::string tokenizer_json(const BpeVocab& vocab, const TokenizerFilesSpec& spec);
// tokenizer_config.json text (add_bos_token true, LlamaTokenizerFast, bos/eos/pad as AddedToken objects).
std::string tokenizer_config_json(const TokenizerFilesSpec& spec);
// Writes DIR/tokenizer.json and DIR/tokenizer_config.json (each atomically); returns the total number of ids
// (BPE vocabulary + added tokens).
int32_t write_tokenizer_files(const std::string& dir, const BpeVocab& vocab, const TokenizerFilesSpec& spec);

}  // namespace cotune::text
