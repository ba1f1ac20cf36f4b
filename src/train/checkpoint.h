// Training checkpoints on disk: OUTPUT/checkpoint-N folders holding the adapter (PEFT), the tokenizer files,
// optimizer.safetensors and trainer_state.json (the step, the data iterator, the run's fingerprint, the best
// evaluation so far). Written under a temp name and renamed into place (base/fs.h); listed, pruned and read back
// here, every problem an Error naming the file and field. The trainer (train/trainer.h) decides when.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cotune::train {

// OUTPUT/checkpoint-<step>.
std::string checkpoint_dir(const std::string& output_dir, int64_t step);
// (step, folder) of every OUTPUT/checkpoint-N folder that holds a trainer_state.json, by step. A step number that
// does not fit in 64 bits is an error naming the folder.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& output_dir);
// The newest OUTPUT/checkpoint-N folder, if any.
std::optional<std::string> latest_checkpoint(const std::string& output_dir);
// Its step N, if any.
std::optional<int64_t> latest_checkpoint_step(const std::string& output_dir);
// Removes the oldest checkpoints beyond `limit`, never those in `keep` (the newest, the best).
void prune_checkpoints(const std::string& output_dir, int64_t limit, const std::vector<std::string>& keep);
// A checkpoint folder being written is `checkpoint-N.tmp-PID` (and one being replaced `checkpoint-N.old-PID`,
// base/fs.h); a run killed meanwhile leaves it behind. Removes those whose process is gone, saying so.
void remove_stale_checkpoint_temps(const std::string& output_dir,
                                   const std::function<void(const std::string&)>& message);

// trainer_state.json.
struct CheckpointState {
  int64_t global_step = 0;
  int64_t total_steps = 0;
  double epoch = 0;
  std::string iterator;          // data::IteratorState::to_json()
  double elapsed_s = 0;          // training time up to this checkpoint (absent in older checkpoints: 0)
  nlohmann::json fingerprint;    // the settings a resumed run must share (object)
  std::optional<int64_t> best_eval_step;  // with best_eval_loss and best_checkpoint, when an evaluation ran
  double best_eval_loss = 0;
  std::string best_checkpoint;
};
CheckpointState read_trainer_state(const std::string& file);
void write_trainer_state(const std::string& file, const CheckpointState& state);  // atomic
// "lr: 0.0002 -> 0.001, seed: 1 -> 2": the settings of `now` that differ from `saved` (keys of either).
std::string fingerprint_diff(const nlohmann::json& saved, const nlohmann::json& now);

}  // namespace cotune::train
