#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fs.h"
#include "base/json_error.h"
#include "base/mmap.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"
#include "train/schedule.h"

namespace cotune::train {

namespace fs = std::filesystem;

namespace {

model::PackedBatch to_packed(const data::Batch& b) {
  model::PackedBatch p;
  p.input_ids = b.input_ids;
  p.position_ids = b.position_ids;
  p.targets = b.targets;
  p.cu_seqlens = b.cu_seqlens;
  return p;
}

// Dropout masks of (step, micro-batch) are a pure function of the seed, so a resumed run draws the same.
uint64_t dropout_seed(uint64_t seed, int64_t step, int64_t micro) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 0xD1B54A32D192ED03ull +
               static_cast<uint64_t>(micro) + 1;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  return x ^ (x >> 33);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The settings that must agree between a run and the checkpoint it resumes from.
nlohmann::json fingerprint(const TrainOptions& o, const TrainInputs& in) {
  const auto& lc = in.lora->config();
  return {{"optim", o.optim},        {"lr", o.lr},
          {"lr_scheduler", o.lr_scheduler}, {"weight_decay", o.weight_decay},
          {"grad_accum", o.grad_accum},     {"seed", o.seed},
          {"lora_r", lc.r},                 {"lora_alpha", lc.alpha},
          {"train_sequences", in.train_indices.size()}, {"max_tokens", in.batch.max_tokens},
          {"packing", in.batch.packing},    {"loss_mask", std::string(data::to_string(in.batch.mask))}};
}

}  // namespace

int64_t planned_steps(const TrainOptions& opt, int64_t batches_per_epoch) {
  if (opt.grad_accum <= 0) fail("grad_accum must be >= 1, got {}", opt.grad_accum);
  if (opt.max_steps > 0) return opt.max_steps;
  if (!(opt.num_epochs > 0)) fail("set max_steps > 0 or num_epochs > 0");
  const double micro = std::ceil(opt.num_epochs * static_cast<double>(batches_per_epoch));
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(micro / static_cast<double>(opt.grad_accum))));
}

namespace {
// Evaluation over one unshuffled pass of the given sequences with an existing runner (no allocation).
EvalRecord evaluate_with(model::Qwen2Runner& runner, const data::TokenizedDataset& ds,
                         const std::vector<int64_t>& indices, const data::BatchOptions& batch) {
  EvalRecord r;
  if (indices.empty()) return r;
  data::BatchOptions bo = batch;
  bo.shuffle = false;
  data::BatchIterator it(ds, indices, bo);
  const int64_t n = it.batches_in_epoch();
  double loss = 0;
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    model::StepStats st = runner.forward_backward(to_packed(it.next()), false, 1.0f);
    loss += st.loss_sum;
    correct += st.correct;
    r.tokens += st.counted;
  }
  if (r.tokens > 0) {
    r.loss = loss / static_cast<double>(r.tokens);
    r.mean_token_accuracy = static_cast<double>(correct) / static_cast<double>(r.tokens);
  }
  return r;
}
}  // namespace

EvalRecord evaluate(const model::Qwen2Model& model, model::LoraWeights* lora, const data::TokenizedDataset& ds,
                    const std::vector<int64_t>& indices, const data::BatchOptions& batch,
                    const model::RunnerOptions& runner_opts) {
  if (indices.empty()) return {};
  model::RunnerOptions ro = runner_opts;
  ro.training = false;
  model::Qwen2Runner runner(model, lora, ro);
  return evaluate_with(runner, ds, indices, batch);
}

TrainResult train(const TrainInputs& in, const TrainOptions& opt, const TrainHooks& hooks) {
  if (!in.model || !in.lora || !in.dataset) fail("train: model, LoRA weights and dataset are required");
  if (in.train_indices.empty()) fail("train: the training split is empty");
  if (opt.grad_accum <= 0) fail("grad_accum must be >= 1, got {}", opt.grad_accum);
  if (opt.logging_steps <= 0) fail("logging_steps must be >= 1, got {}", opt.logging_steps);
  auto message = [&](const std::string& m) {
    if (hooks.on_message) hooks.on_message(m);
  };
  const auto t_start = std::chrono::steady_clock::now();

  data::BatchIterator it(*in.dataset, in.train_indices, in.batch);
  const int64_t batches_per_epoch = it.batches_in_epoch();
  TrainResult res;
  res.total_steps = planned_steps(opt, batches_per_epoch);
  Schedule sched{parse_schedule(opt.lr_scheduler), opt.lr,
                 resolve_warmup(opt.warmup_steps, opt.warmup_ratio, res.total_steps), res.total_steps};
  OptimConfig oc;
  oc.kind = parse_optim(opt.optim);
  oc.beta1 = opt.adam_beta1;
  oc.beta2 = opt.adam_beta2;
  oc.eps = opt.adam_epsilon;
  oc.weight_decay = opt.weight_decay;
  Optimizer optim(oc, in.lora->params());
  model::Qwen2Runner runner(*in.model, in.lora, in.runner);
  message("memory plan: " + runner.plan().str() + fmt::format(", optimizer state {:.3f} GiB",
                                                             static_cast<double>(optim.state_bytes()) / 1073741824.0));
  std::error_code ec;
  fs::create_directories(opt.output_dir, ec);
  if (ec) fail("cannot create output folder {}: {}", opt.output_dir, ec.message());
  const nlohmann::json fp = fingerprint(opt, in);
  remove_stale_checkpoint_temps(opt.output_dir, message);

  // ---- resume --------------------------------------------------------------------------------------
  int64_t start = 0;
  double elapsed_before = 0;  // training time of the runs before a resume: elapsed_s continues from it
  if (opt.resume) {
    auto ck = latest_checkpoint(opt.output_dir);
    if (!ck) fail("--resume: no checkpoint-N folder with trainer_state.json in {}", opt.output_dir);
    with_context("resuming from " + *ck, [&] {
      const CheckpointState st = read_trainer_state(*ck + "/trainer_state.json");
      if (st.fingerprint != fp)
        fail("the run's settings differ from the checkpoint's ({}); resume with the same settings, or train into "
             "another --output",
             fingerprint_diff(st.fingerprint, fp));
      in.lora->load_peft_weights(*ck);
      optim.load(*ck + "/optimizer.safetensors");
      it.restore(data::IteratorState::from_json(st.iterator));
      start = st.global_step;
      elapsed_before = st.elapsed_s;
      if (st.best_eval_step) {
        res.best_eval = EvalRecord{*st.best_eval_step, st.best_eval_loss, 0, 0};
        res.best_checkpoint = st.best_checkpoint;
      }
      return 0;
    });
    message(fmt::format("resumed from {} at step {}", *ck, start));
  }

  auto save_checkpoint = [&](int64_t step) {
    const std::string dir = checkpoint_dir(opt.output_dir, step);
    const std::string tmp = fresh_temp_dir_for(dir);
    // save_peft refuses non-finite weights: an update that diverged (a NaN learning rate, an overflow in
    // the optimizer) is caught here, and the last good checkpoint named is one whose weights are finite.
    try {
      in.lora->save_peft(tmp, opt.base_model_name_or_path);
    } catch (const Error& e) {
      fs::remove_all(tmp, ec);
      fail("step {}: {}; stopping. The last good checkpoint is {}", step, e.what(),
           res.last_checkpoint.empty() ? std::string("none") : res.last_checkpoint);
    }
    copy_tokenizer_files(opt.tokenizer_dir, tmp);
    optim.save(tmp + "/optimizer.safetensors");
    CheckpointState st;
    st.global_step = step;
    st.total_steps = res.total_steps;
    st.epoch = static_cast<double>(it.state().batches_served) / static_cast<double>(batches_per_epoch);
    st.iterator = it.state().to_json();
    st.elapsed_s = elapsed_before + seconds_since(t_start);
    st.fingerprint = fp;
    if (res.best_eval) {
      st.best_eval_step = res.best_eval->step;
      st.best_eval_loss = res.best_eval->loss;
      st.best_checkpoint = res.best_checkpoint;
    }
    write_trainer_state(tmp + "/trainer_state.json", st);
    replace_directory(tmp, dir, kCheckpointFolder);
    res.last_checkpoint = dir;
    message("saved " + dir);
    // save_total_limit: drop the oldest, but never the newest nor the best.
    if (opt.save_total_limit > 0) prune_checkpoints(opt.output_dir, opt.save_total_limit, {dir, res.best_checkpoint});
  };

  // ---- the loop ------------------------------------------------------------------------------------
  for (int64_t step = start + 1; step <= res.total_steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<data::Batch> micro;
    int64_t n_items = 0;
    for (int64_t m = 0; m < opt.grad_accum; ++m) {
      micro.push_back(it.next());
      n_items += micro.back().num_targets;
    }
    const float grad_scale = 1.0f / static_cast<float>(std::max<int64_t>(1, n_items));
    in.lora->zero_grads();
    double loss_sum = 0;
    int64_t correct = 0, input_tokens = 0;
    for (size_t m = 0; m < micro.size(); ++m) {
      model::StepStats s = runner.forward_backward(to_packed(micro[m]), true, grad_scale,
                                                   dropout_seed(opt.seed, step, static_cast<int64_t>(m)));
      loss_sum += s.loss_sum;
      correct += s.correct;
      input_tokens += micro[m].num_tokens;
    }
    StepRecord r;
    r.step = step;
    r.loss = n_items > 0 ? loss_sum / static_cast<double>(n_items) : 0.0;
    if (!std::isfinite(r.loss))
      fail("step {}: the loss is {} (not finite); stopping. The last good checkpoint is {}", step, r.loss,
           res.last_checkpoint.empty() ? std::string("none") : res.last_checkpoint);
    r.grad_norm = optim.clip_grad_norm(opt.max_grad_norm);
    if (!std::isfinite(r.grad_norm))
      fail("step {}: the gradient norm is {} (not finite); stopping without applying the update. The last good "
           "checkpoint is {}", step, r.grad_norm, res.last_checkpoint.empty() ? std::string("none") : res.last_checkpoint);
    r.lr = sched.lr(step - 1);
    optim.step(r.lr);
    const double dt = seconds_since(t0);
    r.tokens = n_items;
    r.input_tokens = input_tokens;
    r.mean_token_accuracy = n_items > 0 ? static_cast<double>(correct) / static_cast<double>(n_items) : 0.0;
    r.tokens_per_s = dt > 0 ? static_cast<double>(input_tokens) / dt : 0.0;
    r.elapsed_s = elapsed_before + seconds_since(t_start);
    r.epoch = static_cast<double>(it.state().batches_served) / static_cast<double>(batches_per_epoch);
    res.steps_done = step;
    res.input_tokens += input_tokens;
    res.counted_tokens += n_items;
    if (in.metrics)
      in.metrics->log(step, {{"epoch", r.epoch},
                             {"loss", r.loss},
                             {"lr", r.lr},
                             {"grad_norm", r.grad_norm},
                             {"tokens", static_cast<double>(r.tokens)},
                             {"mean_token_accuracy", r.mean_token_accuracy},
                             {"tokens_per_s", r.tokens_per_s},
                             {"elapsed_s", r.elapsed_s}});
    if (hooks.on_step) hooks.on_step(r);

    const bool last = step == res.total_steps;
    if (opt.eval_steps > 0 && !in.validation_indices.empty() && (step % opt.eval_steps == 0 || last)) {
      EvalRecord e = evaluate_with(runner, *in.dataset, in.validation_indices, in.batch);  // reuses the buffers
      e.step = step;
      if (in.metrics)
        in.metrics->log(step, {{"eval_loss", e.loss}, {"eval_mean_token_accuracy", e.mean_token_accuracy}});
      if (hooks.on_eval) hooks.on_eval(e);
      if (!res.best_eval || e.loss < res.best_eval->loss) {
        res.best_eval = e;
        res.best_checkpoint = checkpoint_dir(opt.output_dir, step);
        // The best model's weights must be on disk to be restored at the end.
        if (opt.load_best_model_at_end && !(opt.save_steps > 0 && step % opt.save_steps == 0) && !last)
          save_checkpoint(step);
      }
    }
    const bool stop = hooks.should_stop && hooks.should_stop();
    if (last || stop || (opt.save_steps > 0 && step % opt.save_steps == 0)) save_checkpoint(step);
    if (stop && !last) {
      res.stopped_early = true;
      message(fmt::format("stopped at step {} of {}; continue with --resume", step, res.total_steps));
      break;
    }
  }
  if (opt.load_best_model_at_end && res.best_eval && !res.best_checkpoint.empty() &&
      res.best_checkpoint != res.last_checkpoint && fs::exists(res.best_checkpoint)) {
    in.lora->load_peft_weights(res.best_checkpoint);
    message(fmt::format("loaded the best model (eval_loss {:.4f} at step {}) from {}", res.best_eval->loss,
                        res.best_eval->step, res.best_checkpoint));
  }
  if (in.metrics) in.metrics->flush();
  res.seconds = seconds_since(t_start);
  return res;
}

}  // namespace cotune::train
