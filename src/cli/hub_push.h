// The end of `cotune train` with push_to_hub: the adapter (with a model card: metadata, recipe, loss curve
// figures, before/after answers) to REPO, the merged model (when saved) to REPO-merged. Runs after every output
// is on disk; a failure says how to retry with `cotune push` and leaves the run's files as they are.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "infer/evaluate.h"
#include "track/report.h"

namespace cotune::cli {

struct TrainPush {
  std::string repo_id;
  bool private_repo = false;
  std::string base_model, dataset;  // dataset: the Hub repo ("" for local data)
  std::string output_dir, recipe_path;
  track::ReportFiles report;
  const infer::ComparisonReport* samples = nullptr;
  std::vector<std::pair<std::string, std::string>> facts;
};

void push_training_outputs(const TrainPush& p);

}  // namespace cotune::cli
