// Dataset configs and splits as load_dataset reads them: the card's `configs:` forms, the Parquet conversion
// layout, the choice rules (one config, a default, an error listing the configs; never concatenation).
#include <gtest/gtest.h>

#include <functional>

#include "base/error.h"
#include "data/dataset_config.h"

namespace cotune::data {
namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected cotune::Error";
  return "";
}

// The front matter of FreedomIntelligence/medical-o1-reasoning-SFT's card (its configs section).
const char* kMedicalCard = R"(---
license: apache-2.0
task_categories:
- question-answering
language:
- en
- zh
configs:
- config_name: en
  data_files: medical_o1_sft.json
- config_name: zh
  data_files: medical_o1_sft_Chinese.json
- config_name: en_mix
  data_files:
  - split: train
    path: medical_o1_sft_mix.json
- config_name: zh_mix
  data_files:
  - split: train
    path: medical_o1_sft_mix_Chinese.json
---
# Introduction
)";

const std::vector<std::string> kMedicalFiles{".gitattributes", "README.md", "medical_o1_sft.json",
                                             "medical_o1_sft_Chinese.json", "medical_o1_sft_mix.json",
                                             "medical_o1_sft_mix_Chinese.json"};

TEST(DatasetConfig, ParsesTheMedicalCard) {
  const auto configs = parse_dataset_card(kMedicalCard, "README.md");
  ASSERT_EQ(configs.size(), 4u);
  EXPECT_EQ(configs[1].name, "zh");
  ASSERT_EQ(configs[1].data_files.size(), 1u);
  EXPECT_EQ(configs[1].data_files[0].split, "train");
  EXPECT_EQ(configs[1].data_files[0].patterns, std::vector<std::string>{"medical_o1_sft_Chinese.json"});
  EXPECT_EQ(configs[3].data_files[0].patterns, std::vector<std::string>{"medical_o1_sft_mix_Chinese.json"});

  const DataFileChoice zh = choose_data_files(configs, kMedicalFiles, "zh", "train", "org/med");
  EXPECT_EQ(zh.config, "zh");
  EXPECT_EQ(zh.files, std::vector<std::string>{"medical_o1_sft_Chinese.json"});

  // No config chosen among four: an error that lists them.
  const std::string m = error_of([&] { choose_data_files(configs, kMedicalFiles, "", "train", "org/med"); });
  EXPECT_NE(m.find("4 configs and none was chosen"), std::string::npos) << m;
  EXPECT_NE(m.find("--data-config"), std::string::npos) << m;
  EXPECT_NE(m.find("en, zh, en_mix, zh_mix"), std::string::npos) << m;
  EXPECT_NE(error_of([&] { choose_data_files(configs, kMedicalFiles, "fr", "train", "org/med"); }).find("no config \"fr\""),
            std::string::npos);
  EXPECT_NE(error_of([&] { choose_data_files(configs, kMedicalFiles, "zh", "test", "org/med"); }).find("no split \"test\""),
            std::string::npos);
}

TEST(DatasetConfig, SplitsGlobsDefaultsAndMapForm) {
  const char* card = R"(---
configs:
- config_name: main
  default: true
  data_files:
  - split: train
    path: "data/train-*.parquet"
  - split: test
    path: ["data/test-00000.parquet"]
- config_name: other
  data_files: {train: "other/**/*.jsonl"}
---
)";
  const auto configs = parse_dataset_card(card, "card");
  const std::vector<std::string> files{"data/train-00000.parquet", "data/train-00001.parquet", "data/test-00000.parquet",
                                       "data/sub/train-x.parquet", "other/a/b/x.jsonl"};
  const DataFileChoice train = choose_data_files(configs, files, "", "train", "d");  // the default config
  EXPECT_EQ(train.config, "main");
  EXPECT_EQ(train.files, (std::vector<std::string>{"data/train-00000.parquet", "data/train-00001.parquet"}));
  EXPECT_EQ(choose_data_files(configs, files, "", "test", "d").files, std::vector<std::string>{"data/test-00000.parquet"});
  EXPECT_EQ(choose_data_files(configs, files, "other", "train", "d").files, std::vector<std::string>{"other/a/b/x.jsonl"});
}

TEST(DatasetConfig, NoConfigsOneFileOrAnError) {
  EXPECT_TRUE(parse_dataset_card("# no front matter", "card").empty());
  EXPECT_TRUE(parse_dataset_card("---\nlicense: mit\n---\n", "card").empty());
  EXPECT_EQ(choose_data_files({}, {"README.md", "train.jsonl"}, "", "train", "d").files,
            std::vector<std::string>{"train.jsonl"});
  const std::string m = error_of([] { choose_data_files({}, {"a.json", "b.json"}, "", "train", "org/d"); });
  EXPECT_NE(m.find("2 data files and no config chosen"), std::string::npos) << m;
  EXPECT_NE(m.find("a.json, b.json"), std::string::npos) << m;
  EXPECT_NE(error_of([] { choose_data_files({}, {"a.json"}, "zh", "train", "org/d"); }).find("defines no `configs:`"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_dataset_card("---\nconfigs: [\n---\n", "card"); }).find("malformed YAML"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_dataset_card("---\nconfigs:\n- config_name: x\n---\n", "card"); }).find("no data_files"),
            std::string::npos);
}

TEST(DatasetConfig, ParquetConversionLayout) {
  const std::vector<std::string> files{"zh/train/0000.parquet", "zh/train/0001.parquet", "en/partial-train/0000.parquet",
                                       ".gitattributes"};
  const auto configs = configs_from_parquet_layout(files);
  ASSERT_EQ(configs.size(), 2u);
  EXPECT_EQ(configs[0].name, "en");
  EXPECT_EQ(configs[0].data_files[0].split, "train");
  EXPECT_EQ(choose_data_files(configs, files, "zh", "train", "d").files,
            (std::vector<std::string>{"zh/train/0000.parquet", "zh/train/0001.parquet"}));
  EXPECT_TRUE(configs_from_parquet_layout({"data/x/y/z.parquet"}).empty());
}

}  // namespace
}  // namespace cotune::data
