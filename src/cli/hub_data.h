// Training data from a file, a local folder or a Hub dataset repo, chosen as load_dataset chooses it: the
// dataset card's configs (--data-config), the split of the selection ("train[0:500]"), an explicit file
// (--data-files), or the Hub's Parquet conversion (refs/convert/parquet) when the repo has no data files of its
// own. Hub files are downloaded into the Hugging Face cache (only the chosen ones), unless HF_HUB_OFFLINE=1.
// Orchestration only: the rules live in data/dataset_config.h, the protocol in hub/.
#pragma once
#include <optional>
#include <string>

#include "data/dataset.h"

namespace cotune::cli {

struct DataChoice {
  std::string data_path;    // a file, or a folder of links to the chosen files (several files of one split)
  std::string description;  // for logs: "org/name, config zh, split train: medical_o1_sft_Chinese.json"
  std::string repo_id;      // the Hub dataset ("" for local data)
  std::string config;       // the config used ("" when none)
  std::string revision, commit;  // of the Hub dataset (refs/convert/parquet for a conversion)
};

// `selection.split` names the split; on return it is "train" (the chosen files are that split).
DataChoice resolve_data(const std::string& data, const std::string& data_config, const std::string& data_files,
                        data::Selection& selection, const std::optional<std::string>& token = {});

}  // namespace cotune::cli
