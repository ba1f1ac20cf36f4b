// `cotune train`, stage 5: everything the run writes after training — the adapter, the "after" answers, the merged
// and GGUF exports, the report and W&B summary, the Hub upload — and the exit status (cli/cmd_train.h).
#include <cstdio>
#include <filesystem>

#include "base/error.h"
#include "base/log.h"
#include "cli/cmd_train.h"
#include "cli/command.h"
#include "cli/hub_push.h"
#include "export/gguf_export.h"
#include "export/merge.h"
#include "export/peft_export.h"
#include "track/report.h"

namespace cotune::cli {

namespace fs = std::filesystem;

void finish_train(TrainCommand& cmd, const TrainSetup& setup, const TrainData& data, TrainModel& tm, TrainRun& run) {
  TrainConfig& c = cmd.cfg;
  const std::string& model_dir = setup.model_dir;
  const Device device = setup.device;
  const text::Tokenizer& tok = setup.tokenizer;
  const data::Split& split = data.split;
  const DataChoice& data_choice = data.choice;
  model::Qwen2Model& model = tm.model;
  model::LoraWeights& lora = *tm.lora;
  const infer::GenerationOptions& gen_opts = tm.generation;
  infer::ComparisonReport& samples = tm.samples;
  const train::TrainOptions& to = run.options;
  const std::optional<int64_t>& resume_step = run.resume_step;
  track::MetricsHub& hub = run.metrics;
  const train::TrainResult& res = run.result;
  const std::string adapter_dir = (fs::path(to.output_dir) / "adapter").string();
  exporting::save_peft_adapter(adapter_dir, lora, {c.model, to.tokenizer_dir});
  log::info("adapter written to {}", adapter_dir);

  if (c.sample_questions > 0 && !res.stopped_early) {  // the guide's step 7
    infer::Generator gen(model, &lora);
    log::info("answering {} questions after training", samples.questions.size());
    samples.after = infer::answer_questions(gen, tok, samples.questions, gen_opts);
    samples.adapter = adapter_dir;
    samples.training_output = to.output_dir;
    const std::string sdir = (fs::path(to.output_dir) / "samples").string();
    infer::write_comparison_report(sdir, samples);
    log::info("before/after answers: {}/report.html", sdir);
    track::Table table;  // the W&B "samples" table, one row a question
    table.columns = {"question", "before", "after"};
    for (size_t i = 0; i < samples.questions.size(); ++i)
      table.rows.push_back({samples.questions[i].question, i < samples.before.size() ? samples.before[i].text : "",
                            i < samples.after.size() ? samples.after[i].text : ""});
    hub.log_table(res.steps_done, "samples", table);
  }
  if (c.save_merged && !res.stopped_early) {
    const std::string merged = (fs::path(to.output_dir) / "merged").string();
    exporting::MergeResult mr = exporting::merge_lora(model_dir, adapter_dir, merged);
    for (const auto& n : mr.notes) log::info("{}", n);
    log::info("merged 16-bit model written to {} ({} shard(s))", merged, mr.shards.size());
  }
  if (!c.export_gguf.empty() && !res.stopped_early) {
    exporting::GgufExportOptions go;
    go.model_dir = model_dir;
    go.adapter_dir = adapter_dir;
    go.types.clear();
    for (const auto& t : c.export_gguf) go.types.push_back(exporting::parse_gguf_file_type(t));
    go.output = (fs::path(to.output_dir) / "gguf").string() + "/";
    go.file_stem = fs::path(to.output_dir).filename().string();
    for (const auto& r : exporting::export_gguf(go))
      log::info("GGUF written: {} ({:.1f} MB), Ollama: {}", r.path, static_cast<double>(r.bytes) / 1e6, r.modelfile);
  }

  const std::string since_resume = resume_step ? fmt::format(" (since the resume at step {})", *resume_step) : "";
  track::ReportInput ri;
  ri.subtitle = c.model + " → " + to.output_dir;
  ri.status = res.stopped_early ? fmt::format("stopped at step {} (continue with --resume)", res.steps_done) : "completed";
  ri.total_steps = res.total_steps;
  ri.settings = c.settings_table();
  ri.facts = {{"device", std::string(device_name(device))},
              {"sequences", fmt::format("{} train, {} validation", split.train.size(), split.validation.size())},
              // res counts this process's steps only; after a resume, say so (the totals above cover the run).
              {"input tokens", fmt::format("{}{}", res.input_tokens, since_resume)},
              {"trained tokens", fmt::format("{}{}", res.counted_tokens, since_resume)},
              {"LoRA parameters", fmt::format("{}", lora.parameter_count())},
              {"adapter", adapter_dir}};
  track::ReportFiles rf = track::write_report(to.output_dir, hub.history(), ri);
  // transformers' end-of-training figures, for the W&B summary (train/train_runtime, ...).
  const track::RunTotals totals = track::compute_totals(hub.history(), ri);
  track::Scalars final_figures = {{"train_runtime", res.seconds},
                                  {"train_tokens_per_second", totals.tokens_per_s},
                                  {"total_tokens", static_cast<double>(res.input_tokens)},
                                  {"global_step", static_cast<double>(res.steps_done)}};
  if (const auto& losses = hub.history().series("loss"); !losses.empty()) {  // the mean, as transformers reports
    double sum = 0;
    for (const auto& p : losses) sum += p.value;
    final_figures["train_loss"] = sum / static_cast<double>(losses.size());
  }
  hub.log_summary(final_figures);
  if (res.stopped_early) hub.set_exit_code(130);
  hub.close();
  std::fprintf(stderr, "%s\n", track::summary_table(hub.history(), ri, rf.index_html).c_str());
  if (!c.push_to_hub.empty() && !res.stopped_early) {  // the guide's last step, after every output is on disk
    TrainPush tp;
    tp.repo_id = c.push_to_hub;
    tp.private_repo = c.hub_private;
    tp.base_model = c.model;
    tp.dataset = data_choice.repo_id;
    tp.output_dir = to.output_dir;
    tp.recipe_path = cmd.recipe;
    tp.report = rf;
    tp.samples = &samples;
    tp.facts = ri.facts;
    tp.facts.insert(tp.facts.begin(), {"steps", fmt::format("{}", res.steps_done)});
    if (auto loss = hub.history().last("loss")) tp.facts.insert(tp.facts.begin() + 1, {"final loss", fmt::format("{:.4f}", *loss)});
    push_training_outputs(tp);
  }
  // A run stopped by Ctrl-C has written its checkpoint and outputs; the exit status says it did not finish
  // (130, the shell's convention for SIGINT), so scripts do not go on to merge or upload a partial run.
  if (res.stopped_early) throw CLI::RuntimeError(130);
}

}  // namespace cotune::cli
