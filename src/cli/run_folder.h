// The output folder of `cotune train` belongs to one run. A folder that holds another run's outputs is
// continued only with --resume and replaced only with --overwrite-output (HF's overwrite_output_dir), which
// removes what cotune wrote there and nothing else; otherwise the run is refused, so checkpoints and metrics
// of two runs never mix.
#pragma once
#include <string>
#include <vector>

namespace cotune::cli {

// The entries of `dir` that a cotune training run writes (checkpoint-N/, metrics.jsonl, adapter/, tb/, wandb/,
// report/, samples/, merged/, leftovers of interrupted writes), sorted; empty when there are none.
std::vector<std::string> run_outputs_in(const std::string& dir);

// Makes `dir` ready for a run: creates it when absent; throws Error naming the folder and what it holds when
// it holds another run and neither `resume` nor `overwrite` is given; with `overwrite`, removes exactly
// run_outputs_in(dir). A path that exists and is not a folder is an error.
void claim_run_folder(const std::string& dir, bool resume, bool overwrite);

}  // namespace cotune::cli
