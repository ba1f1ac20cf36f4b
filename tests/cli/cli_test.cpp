// The command-line layer: one vocabulary (aliases of TRL / Unsloth / PEFT, did-you-mean), strict values with
// the key and range named, one data file at a time, and runs that would train on nothing refused.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/file_kind.h"
#include "cli/aliases.h"
#include "cli/data_choice.h"
#include "cli/did_you_mean.h"
#include "cli/recipe.h"
#include "cli/train_config.h"
#include "data/truncation.h"
#include "formats/peft_adapter.h"

namespace cotune::cli {
namespace {
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "cotune-cli-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  fs::path write(const std::string& name, const std::string& text) const {
    const fs::path p = path_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The message of the Error `f` throws ("" when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR_HAS(stmt, ...)                                       \
  do {                                                                    \
    const std::string msg_ = error_of([&] { stmt; });                     \
    ASSERT_FALSE(msg_.empty()) << #stmt " did not fail";                  \
    for (const char* part : {__VA_ARGS__})                                \
      EXPECT_NE(msg_.find(part), std::string::npos) << "'" << part << "' not in: " << msg_; \
  } while (0)

TEST(DidYouMean, EditDistance) {
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("trian", "train"), 1u);  // a swap of neighbours costs 1
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
}

TEST(DidYouMean, Closest) {
  const std::vector<std::string> keys{"lr", "learning_rate", "lora_r", "lora_alpha", "max_steps"};
  EXPECT_EQ(closest("lerning_rate", keys), std::vector<std::string>{"learning_rate"});
  EXPECT_EQ(closest("lora-alpah", keys), std::vector<std::string>{"lora_alpha"});  // '-' reads as '_'
  EXPECT_EQ(closest("max_step", keys).front(), "max_steps");
  EXPECT_TRUE(closest("zzzzzzzz", keys).empty());
  EXPECT_EQ(did_you_mean("trian", {"train", "eval"}), " (did you mean 'train'?)");
  EXPECT_EQ(did_you_mean("stat", {"stats", "preview"}, "--"), " (did you mean '--stats'?)");
  EXPECT_EQ(did_you_mean("qqq", {"train"}), "");
}

TEST(Aliases, KeysValuesBooleans) {
  EXPECT_EQ(aliases_of("lr"), std::vector<std::string>{"learning_rate"});
  const auto model = aliases_of("model");
  EXPECT_NE(std::find(model.begin(), model.end(), "model_name"), model.end());
  EXPECT_EQ(canonical_value("optim", "adamw_8bit"), "adamw8bit");
  EXPECT_EQ(canonical_value("optim", "adamw_torch"), "adamw");
  EXPECT_EQ(canonical_value("optim", "sgd"), "sgd");
  EXPECT_TRUE(parse_bool("gradient_checkpointing", "unsloth", "x"));
  EXPECT_FALSE(parse_bool("packing", "off", "x"));
  EXPECT_ERROR_HAS(parse_bool("bf16", "maybe", "--bf16"), "--bf16", "maybe", "true or false");
}

// A `cotune train` command line (without the program and subcommand names) and a recipe, applied.
struct Parsed {
  CLI::App app;
  TrainConfig cfg;
  RecipeBinder binder{app};
  Parsed() { cfg.bind(binder); }
  void run(std::vector<std::string> args, const std::string& recipe = "") {
    std::reverse(args.begin(), args.end());
    app.parse(args);
    binder.apply(recipe);
    cfg.validate(&binder);
  }
};

TEST(Recipe, TrlAndUnslothSpellings) {
  TempDir d;
  const auto recipe = d.write("r.toml",
                              "learning_rate = 1e-4\nper_device_train_batch_size = 2\ngradient_accumulation_steps = 4\n"
                              "num_train_epochs = 3\nr = 8\nlora_alpha = 16\nmax_seq_length = 512\n"
                              "lr_scheduler_type = \"cosine\"\noptim = \"adamw_8bit\"\noutput_dir = \"out\"\n"
                              "use_gradient_checkpointing = \"unsloth\"\nrandom_state = 7\nbf16 = true\nfp16 = false\n"
                              "warmup_steps = 5\nweight_decay = 0.01\nlogging_steps = 1\nmax_grad_norm = 0.3\n");
  Parsed p;
  p.run({}, recipe.string());
  EXPECT_DOUBLE_EQ(p.cfg.lr, 1e-4);
  EXPECT_EQ(p.cfg.batch_size, 2);
  EXPECT_EQ(p.cfg.grad_accum, 4);
  EXPECT_DOUBLE_EQ(p.cfg.num_epochs, 3);
  EXPECT_EQ(p.cfg.lora_r, 8);
  EXPECT_EQ(p.cfg.lr_scheduler, "cosine");
  EXPECT_EQ(p.cfg.optim, "adamw8bit");
  EXPECT_EQ(p.cfg.output, "out");
  EXPECT_TRUE(p.cfg.gradient_checkpointing);
  EXPECT_EQ(p.cfg.seed, 7u);
  EXPECT_EQ(p.binder.where("lr"), recipe.string() + ":1: key 'learning_rate'");
}

TEST(Recipe, FlagAliasesAndShortNames) {
  Parsed p;
  p.run({"--learning-rate", "3e-4", "--per-device-train-batch-size", "3", "-m", "M", "-o", "O", "--r", "4"});
  EXPECT_DOUBLE_EQ(p.cfg.lr, 3e-4);
  EXPECT_EQ(p.cfg.batch_size, 3);
  EXPECT_EQ(p.cfg.model, "M");
  EXPECT_EQ(p.cfg.output, "O");
  EXPECT_EQ(p.cfg.lora_r, 4);
  EXPECT_EQ(p.binder.where("lr"), "--learning-rate");
  Parsed switches;  // a bare boolean flag means true, as eval's and generate's switches
  switches.run({"--load-in-4bit", "--packing", "false", "--gradient-checkpointing", "off", "--max-tokens-per-batch", "4096"});
  EXPECT_TRUE(switches.cfg.load_in_4bit);
  EXPECT_FALSE(switches.cfg.packing);
  EXPECT_FALSE(switches.cfg.gradient_checkpointing);
  Parsed twice;
  EXPECT_ERROR_HAS(twice.run({"--lr", "1", "--learning-rate", "2"}), "--lr", "--learning-rate", "same setting");
}

TEST(Recipe, UnknownKeySuggestsTheClosest) {
  TempDir d;
  Parsed p;
  EXPECT_ERROR_HAS(p.run({}, d.write("r.toml", "lerning_rate = 1\n").string()), "r.toml", "unknown recipe key 'lerning_rate'",
                   "did you mean 'learning_rate'");
  Parsed q;
  EXPECT_ERROR_HAS(q.run({}, d.write("s.toml", "lr = 1\nlearning_rate = 2\n").string()), "s.toml:2", "already set");
}

TEST(Recipe, BadValuesNameTheKeyAndRange) {
  TempDir d;
  struct Case {
    std::string toml;
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases = {
      {"lora_alpha = -16\n", {"r.toml:1: key 'lora_alpha'", "> 0"}},
      {"warmup_steps = -1\n", {"key 'warmup_steps'", "[0, "}},
      {"weight_decay = -0.1\n", {"key 'weight_decay'", "[0, "}},
      {"max_grad_norm = -1.0\n", {"key 'max_grad_norm'"}},
      {"save_steps = -5\n", {"key 'save_steps'"}},
      {"lr = nan\n", {"key 'lr'", "finite"}},
      {"lr = inf\n", {"key 'lr'", "finite"}},
      {"adam_beta1 = 1.0\n", {"key 'adam_beta1'", "[0, 1)"}},
      {"adam_beta2 = -0.5\n", {"key 'adam_beta2'", "[0, 1)"}},
      {"adam_epsilon = 0.0\n", {"key 'adam_epsilon'", "> 0"}},
      {"bf16 = \"maybe\"\n", {"key 'bf16'", "true or false"}},
      {"packing = 3\n", {"key 'packing'", "true or false"}},
      {"grad_accum = 4294967297\n", {"key 'grad_accum'", "[1, 65536]"}},
      {"lora_r = 4294967312\n", {"key 'lora_r'", "does not fit"}},
      {"r = 100000\n", {"key 'r'", "[1, 65536]"}},
      {"seed = -1\n", {"key 'seed'", "non-negative"}},
      {"batch_size = 4611686018427387904\n", {"key 'batch_size'", "[1, "}},
      {"max_seq_length = 4611686018427387904\n", {"key 'max_seq_length'", "[2, 16777216]"}},
      {"batch_size = 1048576\nmax_seq_length = 16777216\n", {"batch_size", "2147483647 tokens"}},
      {"max_steps = -5\n", {"key 'max_steps'", "[0, "}},
      {"optim = \"adamw_9bit\"\n", {"key 'optim'", "did you mean"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.toml);
    Parsed p;
    const std::string msg = error_of([&] { p.run({}, d.write("r.toml", c.toml).string()); });
    ASSERT_FALSE(msg.empty());
    for (const auto& part : c.expect) EXPECT_NE(msg.find(part), std::string::npos) << msg;
  }
}

TEST(Recipe, BadFlagValuesNameTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--max-steps", "-5"}, "--max-steps: must be in [0, "},
      {{"--seed", "-1"}, "--seed: expected a non-negative integer"},
      {{"--seed", "99999999999999999999999"}, "--seed: 99999999999999999999999 does not fit"},
      {{"--lr", "nan"}, "--lr: expected a finite number"},
      {{"--learning_rate", "1e400"}, "expected a"},
      {{"--lora-r", "4294967312"}, "--lora-r: 4294967312 does not fit"},
      {{"--grad-accum", "4294967297"}, "--grad-accum: must be in [1, 65536]"},
      {{"--bf16", "maybe"}, "--bf16: expected a boolean"},
      {{"--batch-size", "x"}, "--batch-size: expected an integer"},
  };
  for (const auto& [args, expect] : cases) {
    SCOPED_TRACE(expect);
    Parsed p;
    std::vector<std::string> a = args;
    for (auto& s : a)  // main() reads '_' in a flag's name as '-'
      if (s.starts_with("--")) std::replace(s.begin(), s.end(), '_', '-');
    const std::string msg = error_of([&] { p.run(a); });
    EXPECT_NE(msg.find(expect), std::string::npos) << msg;
  }
}

TEST(DataChoice, SeveralFilesNeedDataFiles) {
  TempDir d;
  d.write("ds/en.json", "[]");
  d.write("ds/data/zh.jsonl", "");
  d.write("ds/README.md", "");
  d.write("ds/.cache/x.json", "");
  const std::string ds = (d.path() / "ds").string();
  EXPECT_EQ(data_files_in(ds), (std::vector<std::string>{"data/zh.jsonl", "en.json"}));
  EXPECT_ERROR_HAS(resolve_data_path(ds, ""), "holds 2 data files", "data/zh.jsonl, en.json", "--data-files",
                   "--data-config");
  EXPECT_EQ(resolve_data_path(ds, "en.json"), (d.path() / "ds" / "en.json").string());
  EXPECT_ERROR_HAS(resolve_data_path(ds, "en.jsonl"), "does not exist", "did you mean 'en.json'");
  d.write("one/only.jsonl", "");
  EXPECT_EQ(resolve_data_path((d.path() / "one").string(), ""), (d.path() / "one" / "only.jsonl").string());
  const std::string file = (d.path() / "ds" / "en.json").string();
  EXPECT_EQ(resolve_data_path(file, ""), file);
  EXPECT_ERROR_HAS(resolve_data_path(file, "x.json"), "needs --data to be a folder");
}

TEST(FileKind, UnsupportedInputsAreNamed) {
  TempDir d;
  const auto parquet = d.write("train.parquet", std::string("PAR1\x15\x04", 6));
  const auto gguf = d.write("m.gguf", "GGUF\x03");
  const auto bin = d.write("m/pytorch_model.bin", std::string("PK\x03\x04", 4));
  const auto pickle = d.write("old/pytorch_model.bin", std::string("\x80\x02}q", 4));
  const auto json = d.write("ok.json", "[]");
  EXPECT_EQ(base::sniff_file_kind(parquet.string()), base::FileKind::parquet);
  EXPECT_FALSE(base::unsupported_input(parquet.string()));  // src/data reads Parquet
  EXPECT_NE(base::unsupported_input(gguf.string())->find("GGUF"), std::string::npos);
  EXPECT_NE(base::unsupported_input(bin.string())->find("convert to safetensors"), std::string::npos);
  EXPECT_NE(base::unsupported_input(pickle.string())->find("pytorch_model.bin (pickle)"), std::string::npos);
  EXPECT_FALSE(base::unsupported_input(json.string()));
  EXPECT_TRUE(base::unsupported_in_folder((d.path() / "m").string()));
}

TEST(PeftAdapterConfig, RankIsNotNarrowed) {
  TempDir d;
  const auto dir = d.path() / "a";
  d.write("a/adapter_config.json",
          R"({"peft_type": "LORA", "r": 4294967312, "lora_alpha": 16, "target_modules": ["q_proj"]})");
  EXPECT_ERROR_HAS(formats::load_peft_adapter_config(dir.string()), "adapter_config.json", "rank must be in [1, 65536]",
                   "4294967312");
  d.write("a/adapter_config.json", R"({"peft_type": "LORA", "r": 8, "lora_alpha": -16, "target_modules": ["q_proj"]})");
  EXPECT_ERROR_HAS(formats::load_peft_adapter_config(dir.string()), "lora_alpha");
}

}  // namespace
}  // namespace cotune::cli

namespace cotune::data {
namespace {

// Three sequences of a max_seq_length-8 dataset: whole (len 6, prompt 3), cut in the response (full 12,
// prompt 4), cut inside the prompt (full 20, prompt 10 -> clamped to 8).
TokenizedDataset three_sequences() {
  TokenizedDataset ds;
  ds.max_seq_length = 8;
  std::vector<int32_t> ids(20, 5);
  ds.append({ids.data(), 6}, 3);
  ds.append({ids.data(), 12}, 4);
  ds.append({ids.data(), 20}, 10);
  return ds;
}

TEST(Truncation, CountsWhatTheMaskLoses) {
  const TokenizedDataset ds = three_sequences();
  ASSERT_EQ(ds.truncated, 2);
  const TruncationReport all = truncation_report(ds, {}, LossMask::all);
  EXPECT_EQ(all.trained_targets, 5 + 7 + 7);
  EXPECT_EQ(all.no_trained_tokens, 0);
  const TruncationReport resp = truncation_report(ds, {}, LossMask::response);
  EXPECT_EQ(resp.truncated, 2);
  EXPECT_EQ(resp.trained_targets, (6 - 3) + (8 - 4) + 0);
  EXPECT_EQ(resp.no_trained_tokens, 1);
  EXPECT_EQ(resp.keep_all_length, 20);
  const std::string text = resp.describe("max_seq_length");
  EXPECT_NE(text.find("2 of 3 sequences were cut to max_seq_length 8"), std::string::npos) << text;
  EXPECT_NE(text.find("1 of them left with no trained token"), std::string::npos) << text;
  EXPECT_NE(text.find("max_seq_length 20 keeps every sequence whole"), std::string::npos) << text;
  // Only the sequence cut inside its prompt: nothing to train on.
  EXPECT_EQ(truncation_report(ds, {2}, LossMask::response).trained_targets, 0);
}

TEST(Truncation, MatchesTheBatchTargets) {
  const TokenizedDataset ds = three_sequences();
  for (LossMask m : {LossMask::all, LossMask::response})
    for (size_t i = 0; i < ds.size(); ++i) {
      std::vector<int32_t> t(static_cast<size_t>(ds.length(i)));
      sequence_targets(ds.sequence(i), ds.prompt_lengths[i], m, t.data());
      const auto counted = std::count_if(t.begin(), t.end(), [](int32_t v) { return v != kIgnoreIndex; });
      EXPECT_EQ(counted, trained_targets(ds.length(i), ds.prompt_lengths[i], m));
    }
}

}  // namespace
}  // namespace cotune::data
