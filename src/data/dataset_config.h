// Dataset configs and splits as `datasets.load_dataset(repo, name, split=...)` finds them, for a Hub dataset repo
// or a local folder alike: the dataset card (README.md) front matter's `configs:` section
//
//   configs:
//   - config_name: en
//     data_files: medical_o1_sft.json                  # a string or a list: the "train" split
//   - config_name: zh
//     data_files:
//     - split: train
//       path: medical_o1_sft_Chinese.json              # a string or a list of globs
//     default: true
//
// else the layout of the Hub's Parquet conversion (branch refs/convert/parquet: {config}/{split}/NNNN.parquet,
// or {config}/partial-{split}/...), else a single data file. Several data files with no config chosen (or no
// configs to choose from) is an error that lists the choices; files are never silently concatenated.
//
//   auto configs = parse_dataset_card(readme_text, "README.md of org/name");
//   DataFileChoice c = choose_data_files(configs, repo_files, "zh", "train", "org/name");
//   c.files  // repo-relative paths of the zh config's train split
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace cotune::data {

struct SplitFiles {
  std::string split;                  // "train", "test", ...
  std::vector<std::string> patterns;  // paths or globs, relative to the repo root
};

struct DatasetConfig {
  std::string name;
  std::vector<SplitFiles> data_files;
  bool is_default = false;
};

// The `configs:` list of a dataset card (the YAML between the leading `---` lines). No front matter or no
// `configs:` key: an empty list. Malformed YAML or entries throw naming `where` and the entry.
std::vector<DatasetConfig> parse_dataset_card(std::string_view readme, const std::string& where);

// Configs implied by the Parquet conversion layout ({config}/{split}/*.parquet), or empty when the files do not
// follow it.
std::vector<DatasetConfig> configs_from_parquet_layout(const std::vector<std::string>& repo_files);

// Files with a data extension (.json .jsonl .csv .parquet, compressed variants too), README and dot-files left out.
bool is_data_file(const std::string& path);

struct DataFileChoice {
  std::string config;              // "" when the repo has no configs
  std::string split;
  std::vector<std::string> files;  // repo-relative, sorted
};

// Picks the files of `config_name` ("" = not chosen) and `split` among `repo_files` (repo-relative paths).
// `where` names the dataset in messages.
DataFileChoice choose_data_files(const std::vector<DatasetConfig>& configs, const std::vector<std::string>& repo_files,
                                 const std::string& config_name, const std::string& split, const std::string& where);

// datasets' data_files pattern rule: '*' stays inside one folder, '**' crosses folders.
bool data_files_match(const std::string& pattern, const std::string& path);

// Every file under `dir`, repo-relative ('/' separated), sorted; .git and .cache skipped.
std::vector<std::string> list_folder_files(const std::string& dir);

}  // namespace cotune::data
