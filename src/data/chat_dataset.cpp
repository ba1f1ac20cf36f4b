// build_dataset over DatasetFormat: conversational and plain record formats, with assistant masks.
#include <fmt/format.h>

#include <chrono>
#include <climits>

#include "base/error.h"
#include "base/log.h"
#include "data/chat_data.h"

namespace cotune::data {
namespace {

// Row range of the selection (percentages need one pass to count rows). Through RecordSource, so every reader it
// has (JSON, JSON Lines, and whatever joins it) counts the same rows.
std::pair<int64_t, int64_t> selected_rows(const DataOptions& opt) {
  if (opt.selection.needs_row_count()) {
    RecordSource src(opt.data_path, {}, OnBadRecord::skip);
    Record r;
    while (src.next(r)) {
    }
    return opt.selection.resolve(src.rows_read());
  }
  if (opt.selection.is_all()) return {0, INT64_MAX};
  return {opt.selection.begin, opt.selection.end.value_or(INT64_MAX)};
}

std::string fingerprint(RecordFormat format, const text::ChatTemplate* chat) {
  std::string f = fmt::format("records-v1|{}", to_string(format));
  if (chat) {
    f.append("|chat|").append(chat->source());
    for (const char* k : {"bos_token", "eos_token", "unk_token", "pad_token"}) f.append("|").append(chat->special_token(k));
  }
  return f;
}

}  // namespace

RecordFormat resolve_record_format(const DataOptions& opt, RecordFormat requested) {
  if (requested != RecordFormat::automatic) return requested;
  RecordSource src(opt.data_path, {}, opt.on_bad_record);
  Record r;
  if (src.next(r)) return with_context(r.location.describe(), [&] { return detect_record_format(r.json); });
  fail("{}: no records to detect the data format from", opt.data_path);
}

TokenizedDataset build_dataset(const DataOptions& opt, const DatasetFormat& format, const text::Tokenizer& tok) {
  if (opt.max_seq_length < 2) fail("max_seq_length must be at least 2, got {}", opt.max_seq_length);
  const RecordFormat rf = resolve_record_format(opt, format.format);
  if (!format.chat_template && format.prompt_template &&
      (rf == RecordFormat::medical_o1 || format.prompt_template_for_all))
    return build_dataset(opt, *format.prompt_template, tok);
  if (!format.chat_template && (rf == RecordFormat::messages || rf == RecordFormat::sharegpt ||
                                rf == RecordFormat::medical_o1))
    fail("{}: {} records need a chat template: give --template chat (the model's tokenizer_config.json template){}",
         opt.data_path, to_string(rf), rf == RecordFormat::medical_o1 ? " or a prompt template" : "");
  log::info("data: {} records{}{}", to_string(rf), format.format == RecordFormat::automatic ? " (first record)" : "",
            format.chat_template ? ", through the model's chat template" : "");

  const auto t0 = std::chrono::steady_clock::now();
  std::string cache_path;
  if (opt.use_cache) {
    const std::string dir = opt.cache_dir.empty() ? default_cache_dir() : opt.cache_dir;
    cache_path = dir + "/" + cache_key(opt, fingerprint(format.format, format.chat_template), tok) + ".tokens";
    if (auto ds = load_token_cache(cache_path)) {
      log::info("data: {} sequences from the token cache {}", ds->size(), cache_path);
      return std::move(*ds);
    }
  }

  TokenizedDataset ds;
  ds.max_seq_length = opt.max_seq_length;
  const auto [first, last] = selected_rows(opt);
  RecordSource src(opt.data_path, {}, opt.on_bad_record);
  src.set_row_range(first, last);
  const std::string eos = tok.eos_token();
  int64_t bad = 0;
  std::vector<TrainingText> texts;
  std::vector<int64_t> rows;
  const auto flush = [&] {
    if (texts.empty()) return;
    // Chat texts carry their own BOS; plain ones get the post-processor's (as the prompt-template path).
    std::vector<std::string> with, without;
    std::vector<size_t> where(texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      auto& v = texts[i].add_special ? with : without;
      where[i] = v.size();
      v.push_back(texts[i].text);
    }
    const auto ids_with = tok.encode_batch(with, true);
    const auto ids_without = tok.encode_batch(without, false);
    for (size_t i = 0; i < texts.size(); ++i) {
      const auto& ids = texts[i].add_special ? ids_with[where[i]] : ids_without[where[i]];
      const auto mask = spans_to_token_mask(tok, ids, texts[i].text, texts[i].add_special, texts[i].trained_spans);
      int32_t first_trained = static_cast<int32_t>(ids.size());
      for (size_t j = 0; j < mask.size(); ++j)
        if (mask[j]) {
          first_trained = static_cast<int32_t>(j);
          break;
        }
      ds.append(ids, first_trained, mask);
      ds.rows.push_back(rows[i]);
    }
    texts.clear();
    rows.clear();
  };
  Record rec;
  while (src.next(rec)) {
    try {
      // --data-format auto detects each record's format, so a file may mix them (messages and ShareGPT, say).
      Example ex = parse_example(rec.json, format.format);
      texts.push_back(format.chat_template ? render_chat_for_training(*format.chat_template, ex.messages)
                                           : render_plain_for_training(ex, eos));
      rows.push_back(rec.row);
    } catch (const Error& e) {
      if (opt.on_bad_record == OnBadRecord::error)
        fail("{}: {} (pass --on-bad-record skip to skip bad records)", rec.location.describe(), e.what());
      if (bad < 10) log::warn("skipping {}: {}", rec.location.describe(), e.what());
      ++bad;
    }
    if (texts.size() >= opt.encode_chunk) flush();
  }
  flush();
  ds.rows_read = src.rows_read();
  ds.skipped = src.skipped() + bad;
  if (bad > 0) log::warn("skipped {} record(s) that do not fit the {} format", bad, to_string(format.format));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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

}  // namespace cotune::data
