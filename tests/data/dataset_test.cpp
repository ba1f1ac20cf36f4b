// The SFT pipeline on the real DeepSeek-R1-Distill tokenizer and medical-o1 fixtures: exact token ids against
// Hugging Face `tokenizers` (tools/make_data_golden.py), prompt boundaries, truncation, the token cache,
// statistics, preview, and tokenizing a multi-megabyte file in bounded memory.
#include "data/dataset.h"

#include <gtest/gtest.h>

#include <cstring>

#include <chrono>
#include <nlohmann/json.hpp>

#include "base/mmap.h"
#include "common/test_paths.h"
#include "data/batch.h"
#include "data/preview.h"
#include "data_test_util.h"

namespace cotune::data {
namespace {

using testing::error_of;
using testing::TempDir;

const std::string kTokDir = "/deepseek-r1-distill-qwen-1.5b";

// Loading tokenizer.json takes about a second; the tests share one (read-only) instance.
const text::Tokenizer& shared_tokenizer(const std::string& fx) {
  static const text::Tokenizer tok = text::Tokenizer::load(fx + kTokDir);
  return tok;
}

#define LOAD_TOKENIZER(tok, fx) \
  COTUNE_REQUIRE_FIXTURES(fx);  \
  const text::Tokenizer& tok = shared_tokenizer(fx)

nlohmann::json golden() {
  return nlohmann::json::parse(read_file(cotune::testing::golden_dir() + "/data/medical_o1_token_ids.json"));
}

TEST(DataGolden, FormattedFixtureRecordsMatchHfTokenIds) {
  LOAD_TOKENIZER(tok, fx);
  auto g = golden();
  ASSERT_EQ(g["records"].size(), 11u);
  EXPECT_EQ(g["tokenizer_sha256"].get<std::string>(), tok.content_hash()) << "golden made from another tokenizer.json";
  for (const auto& r : g["records"]) {
    auto tpl = text::PromptTemplate::builtin(r["template"].get<std::string>());
    RecordSource src(fx + "/" + r["file"].get<std::string>(), tpl.fields(), OnBadRecord::error);
    int64_t index = r["index"];
    src.set_row_range(index, index + 1);
    Record rec;
    ASSERT_TRUE(src.next(rec));
    EncodedExample ex = encode_example(tpl, tok, rec.values);
    const std::string where = r["file"].get<std::string>() + " #" + std::to_string(index);
    EXPECT_EQ(ex.ids, r["ids"].get<std::vector<int32_t>>()) << where;
    EXPECT_EQ(ex.prompt_tokens, r["prompt_tokens"].get<int32_t>()) << where;
    EXPECT_EQ(ex.ids.front(), 151646) << "BOS from the post-processor";
    EXPECT_EQ(ex.ids.back(), 151643) << "EOS text appended";
    // The generation API: the inference prompt encodes to exactly the prompt tokens of the training text.
    std::string prompt = tpl.format_prompt(std::map<std::string, std::string>{{"Question", rec.values[0]}});
    EXPECT_EQ(prompt, ex.text.substr(0, ex.prompt_bytes));
    auto pids = tok.encode(prompt, true);
    EXPECT_EQ(pids, r["prompt_ids"].get<std::vector<int32_t>>()) << where;
    EXPECT_TRUE(std::equal(pids.begin(), pids.end(), ex.ids.begin())) << where;
  }
}

// NFC in the tokenizer composes "e" + U+0301 into "é": byte offsets of tokens no longer match the formatted text,
// and the prompt boundary must still be found.
TEST(DataGolden, PromptBoundarySurvivesNormalization) {
  LOAD_TOKENIZER(tok, fx);
  auto tpl = text::PromptTemplate::builtin("medical-o1-en");
  std::vector<std::string> v = {"Cafe\u0301 owner with re\u0301sume\u0301 fever?", "a b c: thinking about fe\u0301ver.",
                                "Rest."};
  EncodedExample ex = encode_example(tpl, tok, v);
  std::string prompt = tpl.format_prompt(std::map<std::string, std::string>{{"Question", v[0]}});
  auto pids = tok.encode(prompt, true);
  EXPECT_EQ(ex.prompt_tokens, static_cast<int32_t>(pids.size()));
  EXPECT_TRUE(std::equal(pids.begin(), pids.end(), ex.ids.begin()));
  EXPECT_EQ(ex.ids[ex.prompt_tokens - 1], 198);  // "\n" after <think>
  // The case is real: the tokens spell the composed text, not the formatted bytes.
  std::string decoded = tok.decode(std::span<const int32_t>(ex.ids).subspan(1, ex.prompt_tokens - 1), false);
  EXPECT_NE(decoded, prompt);
  EXPECT_NE(decoded.find("Café"), std::string::npos) << decoded;
  std::vector<std::string> plain = {"Cafe owner with resume fever?", "Thinking about fever.", "Rest."};
  EncodedExample ex2 = encode_example(tpl, tok, plain);
  EXPECT_EQ(ex2.prompt_tokens, static_cast<int32_t>(tok.encode(tpl.format_prompt(std::map<std::string, std::string>{
                                                                      {"Question", plain[0]}}),
                                                                  true)
                                                        .size()));
}

TEST(DataGolden, ResponseMaskTrainsReasoningAnswerAndEos) {
  LOAD_TOKENIZER(tok, fx);
  DataOptions opt;
  opt.data_path = fx + "/medical-o1/medical_o1_sft_en_first10.json";
  opt.use_cache = false;
  auto tpl = text::PromptTemplate::builtin("medical-o1-en");
  TokenizedDataset ds = build_dataset(opt, tpl, tok);
  auto g = golden();
  ASSERT_EQ(ds.size(), 10u);
  BatchOptions bo;
  bo.packing = true;
  bo.max_tokens = 8192;
  Batch b = make_batch(ds, {0, 1}, bo);
  const auto& r0 = g["records"][0];
  const int64_t n0 = static_cast<int64_t>(r0["ids"].size()), p0 = r0["prompt_tokens"];
  // Targets of sequence 0: positions p0-1 .. n0-2 predict tokens p0 .. n0-1; the last is EOS.
  for (int64_t t = 0; t < n0; ++t) {
    bool trained = t >= p0 - 1 && t < n0 - 1;
    EXPECT_EQ(b.targets[t] != kIgnoreIndex, trained) << t;
  }
  EXPECT_EQ(b.targets[n0 - 2], 151643);
  EXPECT_EQ(b.targets[p0 - 1], r0["ids"][p0].get<int32_t>());  // first reasoning token after "<think>\n"
  EXPECT_EQ(b.targets[n0 - 1], kIgnoreIndex);                  // no target across the boundary
  EXPECT_EQ(b.position_ids[n0], 0);
  const int64_t n1 = static_cast<int64_t>(g["records"][1]["ids"].size());
  EXPECT_EQ(b.num_targets, (n0 - p0) + (n1 - g["records"][1]["prompt_tokens"].get<int64_t>()));
}

TEST(DataPipeline, TruncationSelectionAndStats) {
  LOAD_TOKENIZER(tok, fx);
  auto tpl = text::PromptTemplate::builtin("medical-o1-en");
  auto g = golden();
  DataOptions opt;
  opt.data_path = fx + "/medical-o1/medical_o1_sft_en_first10.json";
  opt.use_cache = false;
  opt.max_seq_length = 600;
  TokenizedDataset ds = build_dataset(opt, tpl, tok);
  int64_t expect_trunc = 0, expect_tokens = 0, expect_prompt = 0;
  std::vector<int32_t> lens;
  for (int i = 0; i < 10; ++i) {
    const auto& r = g["records"][i];
    int64_t n = r["ids"].size();
    expect_trunc += n > 600;
    expect_tokens += std::min<int64_t>(n, 600);
    expect_prompt += r["prompt_tokens"].get<int64_t>();
    lens.push_back(static_cast<int32_t>(n));
    EXPECT_EQ(ds.length(i), std::min<int64_t>(n, 600));
    EXPECT_EQ(ds.full_lengths[i], n);
    auto seq = ds.sequence(i);
    EXPECT_TRUE(std::equal(seq.begin(), seq.end(), r["ids"].begin()));
  }
  EXPECT_EQ(ds.truncated, expect_trunc);
  EXPECT_GT(ds.truncated, 0);
  DatasetStats s = compute_stats(ds);
  EXPECT_EQ(s.records, 10);
  EXPECT_EQ(s.tokens, expect_tokens);
  EXPECT_EQ(s.truncated, expect_trunc);
  EXPECT_EQ(s.min_length, *std::min_element(lens.begin(), lens.end()));
  EXPECT_EQ(s.max_length, *std::max_element(lens.begin(), lens.end()));
  std::sort(lens.begin(), lens.end());
  EXPECT_EQ(s.p50_length, lens[4]);  // nearest rank: ceil(0.5 * 10) = 5th
  EXPECT_EQ(s.p95_length, lens[9]);
  EXPECT_NEAR(s.response_fraction, 1.0 - double(expect_prompt) / double(expect_tokens), 1e-9);
  auto j = nlohmann::json::parse(s.to_json());
  EXPECT_EQ(j["truncated"], expect_trunc);
  EXPECT_TRUE(j.contains("response_token_fraction"));

  opt.selection = parse_selection("train[2:5]");
  ds = build_dataset(opt, tpl, tok);
  EXPECT_EQ(ds.rows, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(ds.rows_read, 3);
  opt.selection = parse_selection("train[50:]");
  EXPECT_NE(error_of([&] { build_dataset(opt, tpl, tok); }).find("no usable records"), std::string::npos);
}

TEST(DataPipeline, TemplateFieldMissingFromDataIsNamed) {
  LOAD_TOKENIZER(tok, fx);
  DataOptions opt;
  opt.data_path = fx + "/medical-o1/medical_o1_sft_en_first10.json";
  opt.use_cache = false;
  auto tpl = text::PromptTemplate::parse("qa", "Q: {Question}\nA: {Answer}", "Q: {Question}\nA: ");
  std::string e = error_of([&] { build_dataset(opt, tpl, tok); });
  EXPECT_NE(e.find("medical_o1_sft_en_first10.json:2 (byte 4): record 0: missing field 'Answer'"), std::string::npos)
      << e;
}

TEST(DataCache, SecondRunLoadsTheCache) {
  LOAD_TOKENIZER(tok, fx);
  TempDir d;
  auto tpl = text::PromptTemplate::builtin("medical-o1-en");
  DataOptions opt;
  opt.data_path = d.file("data.json", read_file(fx + "/medical-o1/medical_o1_sft_en_first10.json"));
  opt.cache_dir = d.sub("cache");
  TokenizedDataset a = build_dataset(opt, tpl, tok);
  EXPECT_FALSE(a.from_cache);
  auto t0 = std::chrono::steady_clock::now();
  TokenizedDataset b = build_dataset(opt, tpl, tok);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(b.from_cache);
  std::printf("[ measure  ] cached load of 10 records: %.1f ms\n", ms);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.offsets, b.offsets);
  EXPECT_EQ(a.prompt_lengths, b.prompt_lengths);
  EXPECT_EQ(a.full_lengths, b.full_lengths);
  EXPECT_EQ(a.rows, b.rows);
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(opt.cache_dir)) {
    ++files;
    EXPECT_EQ(e.path().extension(), ".tokens") << "no temp files left behind: " << e.path();
  }
  EXPECT_EQ(files, 1);

  // Every key ingredient changes the key.
  const std::string k0 = cache_key(opt, tpl, tok);
  DataOptions o2 = opt;
  o2.max_seq_length = 1024;
  EXPECT_NE(cache_key(o2, tpl, tok), k0);
  o2 = opt;
  o2.selection = parse_selection("train[0:5]");
  EXPECT_NE(cache_key(o2, tpl, tok), k0);
  EXPECT_NE(cache_key(opt, text::PromptTemplate::builtin("medical-o1-zh"), tok), k0);
  d.file("data.json", read_file(fx + "/medical-o1/medical_o1_sft_en_first10.json") + "\n");
  EXPECT_NE(cache_key(opt, tpl, tok), k0);
  TokenizedDataset c = build_dataset(opt, tpl, tok);
  EXPECT_FALSE(c.from_cache);

  // A damaged cache file is ignored and rebuilt.
  std::string path = opt.cache_dir + "/" + cache_key(opt, tpl, tok) + ".tokens";
  std::string bytes = read_file(path);
  write_file_atomic(path, bytes.substr(0, bytes.size() / 2));
  EXPECT_FALSE(load_token_cache(path).has_value());
  TokenizedDataset e = build_dataset(opt, tpl, tok);
  EXPECT_FALSE(e.from_cache);
  EXPECT_EQ(e.tokens, a.tokens);
  EXPECT_TRUE(build_dataset(opt, tpl, tok).from_cache);

  // Issue 14 item 11: counts that would wrap the size check (t = 2^62 makes 4t wrap to 0) or offsets out of
  // order are a damaged cache, never an allocation from the count.
  bytes = read_file(path);
  std::string wrapped = bytes;
  uint64_t t = 0;
  std::memcpy(&t, wrapped.data() + 24, 8);
  t += uint64_t{1} << 62;
  std::memcpy(wrapped.data() + 24, &t, 8);
  write_file_atomic(path, wrapped);
  EXPECT_FALSE(load_token_cache(path).has_value());
  std::string unordered = bytes;
  const size_t offsets_at = 8 + 8 + 16 + 32 + static_cast<size_t>(a.tokens.size()) * 4;
  const int64_t big = static_cast<int64_t>(a.tokens.size()) + 5;
  std::memcpy(unordered.data() + offsets_at + 8, &big, 8);  // offsets[1] beyond the end
  write_file_atomic(path, unordered);
  EXPECT_FALSE(load_token_cache(path).has_value());
}

TEST(DataPreview, MarksUntrainedText) {
  LOAD_TOKENIZER(tok, fx);
  DataOptions opt;
  opt.data_path = fx + "/medical-o1/medical_o1_sft_Chinese_first1.json";
  opt.use_cache = false;
  auto ds = build_dataset(opt, text::PromptTemplate::builtin("medical-o1-zh"), tok);
  std::string plain = render_preview(tok, ds, 0, LossMask::response, PreviewStyle{});
  EXPECT_NE(plain.find("[[<｜begin▁of▁sentence｜>以下是描述任务的指令"), std::string::npos) << plain;
  EXPECT_NE(plain.find("### Response:\n<think>\n]]这个小孩子"), std::string::npos) << plain;
  EXPECT_NE(plain.find("<｜end▁of▁sentence｜>\n"), std::string::npos);
  EXPECT_NE(plain.find("724 tokens, 139 prompt, 585 trained"), std::string::npos) << plain.substr(0, 200);
  std::string all = render_preview(tok, ds, 0, LossMask::all, PreviewStyle{});
  EXPECT_NE(all.find("[[<｜begin▁of▁sentence｜>]]以下是"), std::string::npos) << all.substr(0, 300);
  PreviewStyle ansi;
  ansi.ansi = true;
  EXPECT_NE(render_preview(tok, ds, 0, LossMask::response, ansi).find("\x1b[2m<｜begin"), std::string::npos);
}

// The demo dataset for the CPU recipe is valid, in the medical-o1 schema, and short.
TEST(DemoDataset, LoadsWithTheEnglishTemplate) {
  LOAD_TOKENIZER(tok, fx);
  DataOptions opt;
  opt.data_path = cotune::testing::source_dir() + "/recipes/data/demo_medical.jsonl";
  opt.use_cache = false;
  auto ds = build_dataset(opt, text::PromptTemplate::builtin("medical-o1-en"), tok);
  EXPECT_GE(ds.size(), 40u);
  EXPECT_LE(ds.size(), 80u);
  EXPECT_EQ(ds.skipped, 0);
  DatasetStats s = compute_stats(ds);
  EXPECT_LE(s.max_length, 256) << "demo records should stay short for CPU training";
  std::printf("[ measure  ] demo dataset: %lld records, %lld tokens, length %lld..%lld, response fraction %.3f\n",
              static_cast<long long>(s.records), static_cast<long long>(s.tokens),
              static_cast<long long>(s.min_length), static_cast<long long>(s.max_length), s.response_fraction);
}

// Tokenizing a few megabytes of JSON Lines keeps memory near the size of the tokens, not of the file.
TEST(DataPipeline, TokenizesMegabytesInBoundedMemory) {
  LOAD_TOKENIZER(tok, fx);
  TempDir d;
  const std::string path = d.sub("big.jsonl");
  const int64_t target = int64_t{8} << 20;
  int64_t written = 0, records = 0;
  {
    std::ofstream out(path, std::ios::binary);
    while (written < target) {
      nlohmann::json r = {{"Question", "What is the likely diagnosis for patient " + std::to_string(records) + "?"},
                          {"Complex_CoT", std::string(40, 'a') + " The patient shows fever, cough and fatigue. " +
                                              "这名患者发烧、咳嗽。 Let me think about it step by step, case " +
                                              std::to_string(records * 7919 % 10007) + "."},
                          {"Response", "Most likely a viral infection; answer " + std::to_string(records) + "."}};
      std::string line = r.dump() + "\n";
      line.insert(line.size() - 2, std::string(", \"pad\": \"") + std::string(300, ' ') + "\"");  // unused field
      out << line;
      written += static_cast<int64_t>(line.size());
      ++records;
    }
  }
  auto tpl = text::PromptTemplate::builtin("medical-o1-en");
  DataOptions opt;
  opt.data_path = path;
  opt.use_cache = false;
  const bool reset = testing::reset_peak_rss();
  const int64_t before = testing::peak_rss_kib();
  auto t0 = std::chrono::steady_clock::now();
  TokenizedDataset ds = build_dataset(opt, tpl, tok);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t delta_mib = (testing::peak_rss_kib() - before) / 1024;
  EXPECT_EQ(static_cast<int64_t>(ds.size()), records);
  const int64_t token_mib = static_cast<int64_t>(ds.tokens.size() * 4 + ds.size() * 28) >> 20;
  std::printf("[ measure  ] %.1f MB JSONL, %lld records -> %zu tokens in %.2f s (%.1f MB/s); peak RSS delta %lld MiB, "
              "token arrays %lld MiB (peak reset: %s)\n",
              double(written) / 1e6, static_cast<long long>(records), ds.tokens.size(), secs,
              double(written) / 1e6 / secs, static_cast<long long>(delta_mib), static_cast<long long>(token_mib),
              reset ? "yes" : "no");
  if (testing::kSanitized) GTEST_SKIP() << "memory budget not checked under AddressSanitizer (shadow memory)";
  EXPECT_LT(delta_mib, 2 * token_mib + 32) << "far below 10x the file size";
}

}  // namespace
}  // namespace cotune::data
