#include "cli/hub_push.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>

#include "base/error.h"
#include "base/log.h"
#include "hub/client.h"
#include "hub/model_card.h"
#include "hub/upload.h"

namespace cotune::cli {
namespace fs = std::filesystem;

void push_training_outputs(const TrainPush& p) {
  hub::HubClient client(hub::HubSettings::from_env());
  hub::ModelCardInfo card;
  card.base_model = p.base_model;
  if (!p.dataset.empty()) card.datasets = {p.dataset};
  card.facts = p.facts;
  if (!p.recipe_path.empty()) {
    std::ifstream in(p.recipe_path);
    card.recipe_toml.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::map<std::string, std::string> figures;  // path in repo -> local file
  for (const auto& f : {std::optional<fs::path>(p.report.loss_svg), std::optional<fs::path>(p.report.lr_svg), p.report.grad_norm_svg})
    if (f && fs::exists(*f)) figures["figures/" + f->filename().string()] = f->string();
  for (const auto& [repo_path, local] : figures) card.figures.push_back(repo_path);
  if (p.samples)
    for (size_t i = 0; i < p.samples->questions.size() && i < p.samples->before.size() && i < p.samples->after.size(); ++i)
      card.samples.push_back({p.samples->questions[i].question, p.samples->before[i].text, p.samples->after[i].text});

  struct Target {
    std::string dir, repo;
    bool adapter;
  };
  std::vector<Target> targets{{(fs::path(p.output_dir) / "adapter").string(), p.repo_id, true}};
  const fs::path merged = fs::path(p.output_dir) / "merged";
  if (fs::exists(merged / "config.json")) targets.push_back({merged.string(), p.repo_id + "-merged", false});

  for (const auto& t : targets) {
    card.repo_id = t.repo;
    card.is_adapter = t.adapter;
    hub::PushOptions o;
    o.private_repo = p.private_repo;
    o.commit_message = t.adapter ? "cotune: LoRA adapter" : "cotune: merged model";
    o.extra_files = figures;
    o.contents["README.md"] = hub::model_card(card);
    try {
      const hub::PushResult r = hub::push_folder(client, t.dir, t.repo, o);
      log::info("pushed {} to {}{}", t.adapter ? "the adapter" : "the merged model", r.repo_url,
                r.commit.empty() ? " (nothing changed)" : " (commit " + r.commit + ")");
    } catch (const Error& e) {
      fail("training finished and its outputs are in {}, but pushing {} to {} failed: {}\n  retry with: cotune push {} {}",
           p.output_dir, t.dir, t.repo, e.what(), t.dir, t.repo);
    }
  }
}

}  // namespace cotune::cli
