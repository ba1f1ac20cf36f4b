// Byte-level BPE training (HF BpeTrainer's algorithm: count pre-tokenized words, merge the most frequent
// adjacent pair, update the counts of the words that held it) and the HF tokenizer files for the result.
#include "text/train_bpe.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <unordered_map>

#include "base/error.h"
#include "base/log.h"
#include "base/mmap.h"
#include "text/pretok.h"
#include "text/unicode.h"

namespace cotune::text {
namespace {

namespace fs = std::filesystem;

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// byte -> token id: ids 0..255 follow the order of the bytes' GPT-2 characters (id 0 = '!').
std::array<int32_t, 256> byte_ids() {
  std::array<int, 256> order{};
  for (int b = 0; b < 256; ++b) order[static_cast<size_t>(b)] = b;
  const auto& chars = byte_to_char();
  std::sort(order.begin(), order.end(),
            [&](int x, int y) { return chars[static_cast<size_t>(x)] < chars[static_cast<size_t>(y)]; });
  std::array<int32_t, 256> ids{};
  for (int i = 0; i < 256; ++i) ids[static_cast<size_t>(order[static_cast<size_t>(i)])] = i;
  return ids;
}

const std::array<int32_t, 256>& byte_id_table() {
  static const std::array<int32_t, 256> table = byte_ids();
  return table;
}

// Runs NFC (optionally) and the Qwen2 pre-tokenizer over one text, passing each pre-token's bytes to `sink`.
template <class Sink>
void pre_tokenize(std::string_view text, bool nfc, const PreTokenizerStep& split, Sink&& sink) {
  if (auto bad = find_invalid_utf8(text)) fail("invalid UTF-8 at byte offset {}", *bad);
  std::string normalized;
  if (nfc && !nfc_quick_check(text)) {
    normalize_append(text, NormalForm::nfc, normalized);
    text = normalized;
  }
  split.split(text, [&](std::string_view piece) { sink(piece); });
}

std::unique_ptr<PreTokenizerStep> qwen2_split() {
  return make_split(kQwen2Pattern, /*literal=*/false, SplitBehavior::isolated, /*invert=*/false, "train_bpe");
}

// Symbols of one word, merged in place: every non-overlapping (a, b), left to right, becomes `merged`
// (HF `Word::merge`). Returns whether anything changed.
bool merge_word(std::vector<int32_t>& w, int32_t a, int32_t b, int32_t merged) {
  size_t out = 0;
  bool changed = false;
  for (size_t i = 0; i < w.size(); ++i) {
    if (i + 1 < w.size() && w[i] == a && w[i + 1] == b) {
      w[out++] = merged;
      ++i;
      changed = true;
    } else {
      w[out++] = w[i];
    }
  }
  w.resize(out);
  return changed;
}

void add_string_fields(simdjson::dom::object obj, std::vector<std::string>& texts, size_t& total) {
  static const char* const kMedicalFields[] = {"Question", "Complex_CoT", "Response"};
  bool medical = false;
  for (const char* f : kMedicalFields) {
    std::string_view s;
    if (obj[f].get(s) == simdjson::SUCCESS) {
      medical = true;
      texts.emplace_back(s);
      total += s.size();
    }
  }
  if (medical) return;
  for (auto field : obj) {
    std::string_view s;
    if (field.value.get(s) == simdjson::SUCCESS) {
      texts.emplace_back(s);
      total += s.size();
    }
  }
}

}  // namespace

std::string BpeVocab::token_string(int32_t id) const {
  std::string out;
  for (unsigned char c : tokens.at(static_cast<size_t>(id))) append_utf8(out, byte_to_char()[c]);
  return out;
}

std::vector<std::pair<std::string, int64_t>> count_words(std::span<const std::string> texts, bool nfc) {
  const auto split = qwen2_split();
  std::unordered_map<std::string, int64_t> counts;
  for (size_t i = 0; i < texts.size(); ++i) {
    with_context(fmt::format("training text {}", i), [&] {
      pre_tokenize(texts[i], nfc, *split, [&](std::string_view piece) { ++counts[std::string(piece)]; });
    });
  }
  std::vector<std::pair<std::string, int64_t>> out(counts.begin(), counts.end());
  std::sort(out.begin(), out.end());
  return out;
}

BpeVocab train_bpe_from_counts(const std::vector<std::pair<std::string, int64_t>>& word_counts,
                               const BpeTrainOptions& opts) {
  if (opts.vocab_size < 256) fail("BPE vocab_size {} is below the 256 byte tokens", opts.vocab_size);
  const auto& byte_id = byte_id_table();
  BpeVocab v;
  v.tokens.resize(256);
  for (int b = 0; b < 256; ++b) v.tokens[static_cast<size_t>(byte_id[static_cast<size_t>(b)])] = std::string(1, static_cast<char>(b));
  std::unordered_map<std::string, int32_t> token_ids;
  for (int32_t id = 0; id < 256; ++id) token_ids.emplace(v.tokens[static_cast<size_t>(id)], id);

  // Words as symbol sequences, with their counts; each pair's total count and the words that (may) hold it.
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> counts;
  words.reserve(word_counts.size());
  for (const auto& [w, c] : word_counts) {
    std::vector<int32_t> syms;
    syms.reserve(w.size());
    for (unsigned char ch : w) syms.push_back(byte_id[ch]);
    words.push_back(std::move(syms));
    counts.push_back(c);
  }
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> pair_words;  // may hold duplicates / stale entries
  for (size_t wi = 0; wi < words.size(); ++wi) {
    const auto& w = words[wi];
    for (size_t i = 0; i + 1 < w.size(); ++i) {
      const uint64_t k = pair_key(w[i], w[i + 1]);
      pair_count[k] += counts[wi];
      auto& list = pair_words[k];
      if (list.empty() || list.back() != static_cast<int32_t>(wi)) list.push_back(static_cast<int32_t>(wi));
    }
  }

  while (v.size() < opts.vocab_size) {
    // The most frequent pair; ties go to the smallest (left, right) so that the result is deterministic.
    uint64_t best = 0;
    int64_t best_count = 0;
    for (const auto& [k, c] : pair_count) {
      if (c > best_count || (c == best_count && k < best)) {
        best = k;
        best_count = c;
      }
    }
    if (best_count < std::max<int64_t>(opts.min_frequency, 1)) break;
    const auto a = static_cast<int32_t>(best >> 32), b = static_cast<int32_t>(best & 0xffffffffu);
    std::string joined = v.tokens[static_cast<size_t>(a)] + v.tokens[static_cast<size_t>(b)];
    int32_t merged;
    if (auto it = token_ids.find(joined); it != token_ids.end()) {
      merged = it->second;  // reached before by another split of the same bytes
    } else {
      merged = v.size();
      token_ids.emplace(joined, merged);
      v.tokens.push_back(std::move(joined));
    }
    v.merges.emplace_back(a, b);
    v.merge_result.push_back(merged);

    std::vector<int32_t> affected = std::move(pair_words[best]);
    pair_words.erase(best);
    std::sort(affected.begin(), affected.end());
    affected.erase(std::unique(affected.begin(), affected.end()), affected.end());
    for (int32_t wi : affected) {
      auto& w = words[static_cast<size_t>(wi)];
      const int64_t c = counts[static_cast<size_t>(wi)];
      std::vector<int32_t> before = w;
      if (!merge_word(w, a, b, merged)) continue;
      for (size_t i = 0; i + 1 < before.size(); ++i) {
        auto it = pair_count.find(pair_key(before[i], before[i + 1]));
        if ((it->second -= c) <= 0) pair_count.erase(it);
      }
      for (size_t i = 0; i + 1 < w.size(); ++i) {
        const uint64_t k = pair_key(w[i], w[i + 1]);
        pair_count[k] += c;
        if (w[i] == merged || w[i + 1] == merged) {
          auto& list = pair_words[k];
          if (list.empty() || list.back() != wi) list.push_back(wi);
        }
      }
    }
    pair_count.erase(best);  // already gone: the updates above removed every occurrence (kept as a guard)
  }
  return v;
}

BpeVocab train_bpe(std::span<const std::string> texts, const BpeTrainOptions& opts) {
  return train_bpe_from_counts(count_words(texts, opts.nfc), opts);
}

std::vector<int32_t> bpe_encode_word(const BpeVocab& vocab, std::string_view word) {
  std::unordered_map<uint64_t, int32_t> rank;
  rank.reserve(vocab.merges.size());
  for (size_t r = vocab.merges.size(); r-- > 0;) rank[pair_key(vocab.merges[r].first, vocab.merges[r].second)] = static_cast<int32_t>(r);
  const auto& byte_id = byte_id_table();
  std::vector<int32_t> w;
  for (unsigned char ch : word) w.push_back(byte_id[ch]);
  for (;;) {
    // Lowest rank first, leftmost among equals (HF `Word::merge_all`), one merge at a time.
    int32_t best_rank = std::numeric_limits<int32_t>::max();
    size_t best_pos = 0;
    for (size_t i = 0; i + 1 < w.size(); ++i) {
      auto it = rank.find(pair_key(w[i], w[i + 1]));
      if (it != rank.end() && it->second < best_rank) {
        best_rank = it->second;
        best_pos = i;
      }
    }
    if (best_rank == std::numeric_limits<int32_t>::max()) break;
    w[best_pos] = vocab.merge_result[static_cast<size_t>(best_rank)];
    w.erase(w.begin() + static_cast<std::ptrdiff_t>(best_pos) + 1);
  }
  return w;
}

std::vector<int32_t> bpe_encode_text(const BpeVocab& vocab, std::string_view text, bool nfc) {
  const auto split = qwen2_split();
  std::vector<int32_t> ids;
  pre_tokenize(text, nfc, *split, [&](std::string_view piece) {
    auto w = bpe_encode_word(vocab, piece);
    ids.insert(ids.end(), w.begin(), w.end());
  });
  return ids;
}

std::vector<std::string> load_training_texts(const std::string& path, size_t max_bytes) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail("{}: training text file not found", path);
  const std::string ext = fs::path(path).extension().string();
  std::vector<std::string> texts;
  size_t total = 0;
  simdjson::dom::parser parser;
  if (ext == ".jsonl") {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open", path);
    std::string line;
    size_t line_no = 0;
    while (total < max_bytes && std::getline(in, line)) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      simdjson::dom::element doc;
      if (auto err = parser.parse(line).get(doc); err != simdjson::SUCCESS)
        fail("{}: line {}: malformed JSON: {}", path, line_no, simdjson::error_message(err));
      simdjson::dom::object obj;
      if (doc.get(obj) != simdjson::SUCCESS) fail("{}: line {}: expected a JSON object", path, line_no);
      add_string_fields(obj, texts, total);
    }
  } else if (ext == ".json") {
    simdjson::padded_string content;
    if (simdjson::padded_string::load(path).get(content) != simdjson::SUCCESS) fail("{}: cannot read the file", path);
    simdjson::dom::element doc;
    if (auto err = parser.parse(content).get(doc); err != simdjson::SUCCESS)
      fail("{}: malformed JSON: {}", path, simdjson::error_message(err));
    simdjson::dom::array arr;
    simdjson::dom::object obj;
    if (doc.get(arr) == simdjson::SUCCESS) {
      size_t i = 0;
      for (auto e : arr) {
        if (total >= max_bytes) break;
        if (e.get(obj) != simdjson::SUCCESS) fail("{}: element {}: expected a JSON object", path, i);
        add_string_fields(obj, texts, total);
        ++i;
      }
    } else if (doc.get(obj) == simdjson::SUCCESS) {
      add_string_fields(obj, texts, total);
    } else {
      fail("{}: expected a JSON array of objects or an object", path);
    }
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open", path);
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string all = ss.str();
    if (all.size() > max_bytes) {
      const size_t cut = all.rfind('\n', max_bytes);
      all.resize(cut == std::string::npos ? max_bytes : cut + 1);
      if (auto bad = find_invalid_utf8(all); bad && *bad + 4 >= all.size()) all.resize(*bad);  // cut mid-character
    }
    if (auto bad = find_invalid_utf8(all)) fail("{}: invalid UTF-8 at byte offset {}", path, *bad);
    texts.push_back(std::move(all));
  }
  if (texts.empty()) fail("{}: no training text found (expected Question/Complex_CoT/Response or string fields)", path);
  return texts;
}

TokenizerFilesSpec r1_distill_tokenizer_spec() {
  TokenizerFilesSpec s;
  const std::string bos = "<｜begin▁of▁sentence｜>", eos = "<｜end▁of▁sentence｜>";
  // Order and specialness of DeepSeek-R1-Distill-Qwen's added tokens (ids 151643..151649 there, less <|EOT|>).
  s.added_tokens = {{eos, true}, {"<｜User｜>", false}, {"<｜Assistant｜>", false}, {bos, true},
                    {"<think>", false}, {"</think>", false}};
  s.bos_token = bos;
  s.eos_token = eos;
  s.pad_token = eos;
  s.model_max_length = 16384;
  // The R1-Distill chat template (tokenizer_config.json of deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B).
  s.chat_template =
    R"TPL({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% se)TPL"
    R"TPL(t ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}{%- for me)TPL"
    R"TPL(ssage in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content')TPL"
    R"TPL(] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}{%- if m)TPL"
    R"TPL(essage['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endi)TPL"
    R"TPL(f %}{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = fals)TPL"
    R"TPL(e -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁be)TPL"
    R"TPL(gin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```js)TPL"
    R"TPL(on' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first)TPL"
    R"TPL( = true -%}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['functio)TPL"
    R"TPL(n']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁)TPL"
    R"TPL(end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}{%- if messa)TPL"
    R"TPL(ge['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}{{'<｜tool▁outputs)TPL"
    R"TPL(▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% se)TPL"
    R"TPL(t content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</thi)TPL"
    R"TPL(nk>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %})TPL"
    R"TPL({%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜too)TPL"
    R"TPL(l▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_)TPL"
    R"TPL(output_first = false %}{%- else %}{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁)TPL"
    R"TPL(end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif )TPL"
    R"TPL(%}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\n'}}{% endif %})TPL"
      ;
  return s;
}

std::string tokenizer_json(const BpeVocab& vocab, const TokenizerFilesSpec& spec) {
  using ojson = nlohmann::ordered_json;
  const int32_t n = vocab.size();
  std::optional<int32_t> bos_id;
  ojson added = ojson::array();
  for (size_t i = 0; i < spec.added_tokens.size(); ++i) {
    const auto& t = spec.added_tokens[i];
    const int32_t id = n + static_cast<int32_t>(i);
    if (t.content == spec.bos_token) bos_id = id;
    ojson e;
    e["id"] = id;
    e["content"] = t.content;
    e["single_word"] = false;
    e["lstrip"] = false;
    e["rstrip"] = false;
    e["normalized"] = false;
    e["special"] = t.special;
    added.push_back(std::move(e));
  }
  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = std::move(added);
  j["normalizer"] = {{"type", "NFC"}};
  ojson split = {{"type", "Split"},
                 {"pattern", {{"Regex", kQwen2Pattern}}},
                 {"behavior", "Isolated"},
                 {"invert", false}};
  ojson byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", ojson::array({split, byte_level})}};
  if (!spec.bos_token.empty()) {
    if (!bos_id) fail("tokenizer spec: bos_token {:?} is not one of the added tokens", spec.bos_token);
    auto special = [&](int type_id) { return ojson{{"SpecialToken", {{"id", spec.bos_token}, {"type_id", type_id}}}}; };
    auto seq = [&](const char* id, int type_id) { return ojson{{"Sequence", {{"id", id}, {"type_id", type_id}}}}; };
    ojson pp;
    pp["type"] = "TemplateProcessing";
    pp["single"] = ojson::array({special(0), seq("A", 0)});
    pp["pair"] = ojson::array({special(0), seq("A", 0), special(1), seq("B", 1)});
    pp["special_tokens"] = {
        {spec.bos_token, {{"id", spec.bos_token}, {"ids", ojson::array({*bos_id})}, {"tokens", ojson::array({spec.bos_token})}}}};
    j["post_processor"] = std::move(pp);
  } else {
    j["post_processor"] = nullptr;
  }
  j["decoder"] = byte_level;
  ojson model;
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = nullptr;
  model["continuing_subword_prefix"] = "";
  model["end_of_word_suffix"] = "";
  model["fuse_unk"] = false;
  model["byte_fallback"] = false;
  model["ignore_merges"] = false;
  ojson vocab_j = ojson::object();
  for (int32_t id = 0; id < n; ++id) vocab_j[vocab.token_string(id)] = id;
  model["vocab"] = std::move(vocab_j);
  ojson merges = ojson::array();
  for (const auto& [a, b] : vocab.merges) merges.push_back(vocab.token_string(a) + " " + vocab.token_string(b));
  model["merges"] = std::move(merges);
  j["model"] = std::move(model);
  return j.dump(2) + "\n";
}

std::string tokenizer_config_json(const TokenizerFilesSpec& spec) {
  using ojson = nlohmann::ordered_json;
  auto added = [](const std::string& content) {
    return ojson{{"__type", "AddedToken"}, {"content", content}, {"lstrip", false},
                 {"normalized", true},     {"rstrip", false},    {"single_word", false}};
  };
  ojson j;
  j["add_bos_token"] = !spec.bos_token.empty();
  j["add_eos_token"] = false;
  j["bos_token"] = spec.bos_token.empty() ? ojson(nullptr) : added(spec.bos_token);
  j["clean_up_tokenization_spaces"] = false;
  j["eos_token"] = added(spec.eos_token);
  j["legacy"] = true;
  j["model_max_length"] = spec.model_max_length;
  j["pad_token"] = added(spec.pad_token);
  j["sp_model_kwargs"] = ojson::object();
  j["unk_token"] = nullptr;
  j["tokenizer_class"] = "LlamaTokenizerFast";
  if (!spec.chat_template.empty()) j["chat_template"] = spec.chat_template;
  return j.dump(2) + "\n";
}

int32_t write_tokenizer_files(const std::string& dir, const BpeVocab& vocab, const TokenizerFilesSpec& spec) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create the folder: {}", dir, ec.message());
  write_file_atomic((fs::path(dir) / "tokenizer.json").string(), tokenizer_json(vocab, spec));
  write_file_atomic((fs::path(dir) / "tokenizer_config.json").string(), tokenizer_config_json(spec));
  return vocab.size() + static_cast<int32_t>(spec.added_tokens.size());
}

}  // namespace cotune::text
