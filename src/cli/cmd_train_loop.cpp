// `cotune train`, stage 4: the metrics hub (sinks of report_to, W&B), the progress line, Ctrl-C, and train::train
// over the data with the model and adapter of the stages before (cli/cmd_train.h).
#include <optional>

#include "base/error.h"
#include "base/log.h"
#include "cli/cmd_train.h"
#include "kernels/device_memory.h"
#include "track/progress.h"
#include "track/stop_flag.h"

namespace cotune::cli {

namespace fs = std::filesystem;

TrainRun run_train_loop(TrainCommand& cmd, const TrainSetup& setup, TrainData& data, TrainModel& tm) {
  TrainConfig& c = cmd.cfg;
  const std::string& tokenizer_dir = setup.tokenizer_dir;
  const Device device = setup.device;
  model::Qwen2Model& model = tm.model;
  data::TokenizedDataset& ds = data.dataset;
  const data::Split& split = data.split;
  const data::BatchOptions& bo = data.batch;
  const std::vector<std::string>& sink_names = data.sink_names;
  std::unique_ptr<track::WandbSink>& wandb_sink = data.wandb_sink;
  track::WandbSink* wandb = data.wandb;
  train::TrainOptions to = c.train_options();
  to.base_model_name_or_path = c.model;
  to.tokenizer_dir = tokenizer_dir;
  fs::create_directories(to.output_dir);
  std::optional<int64_t> resume_step;
  if (to.resume) resume_step = train::latest_checkpoint_step(to.output_dir);
  track::MetricsHub hub = track::MetricsHub::open(sink_names, to.output_dir, resume_step);
  if (wandb_sink) hub.add_sink(std::move(wandb_sink));

  train::TrainInputs in;
  in.model = &model;
  in.lora = tm.lora.get();
  in.dataset = &ds;
  in.train_indices = split.train;
  in.validation_indices = split.validation;
  in.batch = bo;
  in.runner.max_tokens = bo.max_tokens;
  in.runner.gradient_checkpointing = c.gradient_checkpointing;
  c.tuning.apply(in.runner);
  in.metrics = &hub;

  data::BatchIterator probe(ds, split.train, bo);
  const int64_t total = train::planned_steps(to, probe.batches_in_epoch());
  track::ProgressOptions po;
  po.total_steps = total;
  po.log_every = to.logging_steps;
  track::Progress progress(po);
  track::StopFlag stop;
  std::optional<double> last_eval;
  train::TrainHooks hooks;
  hooks.on_step = [&](const train::StepRecord& r) {
    track::StepStats s;
    s.step = r.step;
    s.loss = r.loss;
    s.lr = r.lr;
    s.grad_norm = r.grad_norm;
    s.tokens_per_s = r.tokens_per_s;
    s.eval_loss = last_eval;
    if (device == Device::cuda) {
      const kernels::DeviceMemory mem = kernels::device_memory(device);
      s.gpu_mem_used_gib = static_cast<double>(mem.total_bytes - mem.free_bytes) / 1073741824.0;
      s.gpu_mem_total_gib = static_cast<double>(mem.total_bytes) / 1073741824.0;
    }
    progress.update(s);
    if (wandb && (r.step % to.logging_steps == 0 || r.step == total))  // the progress line, for the run's console
      wandb->log_console(fmt::format("step {}/{} | loss {:.4f} | lr {:.2e} | grad_norm {:.3f} | {:.0f} tok/s", r.step,
                                     total, r.loss, r.lr, r.grad_norm, r.tokens_per_s));
  };
  hooks.on_eval = [&](const train::EvalRecord& e) {
    last_eval = e.loss;
    const std::string line = fmt::format("step {}: eval_loss {:.4f}, eval_mean_token_accuracy {:.3f}", e.step, e.loss,
                                         e.mean_token_accuracy);
    progress.message(line);
    if (wandb) wandb->log_console(line);
  };
  hooks.on_message = [&](const std::string& m) {
    progress.message(m);
    if (wandb) wandb->log_console(m);
  };
  hooks.should_stop = [&] { return stop.requested(); };

  train::TrainResult res = train::train(in, to, hooks);
  progress.finish();

  return TrainRun{std::move(to), resume_step, std::move(hub), std::move(res)};
}

}  // namespace cotune::cli
