// `cotune download REPO [--repo-type model|dataset] [--revision R] [--include GLOB]... [--token T]`: fetches a
// Hub repo into the Hugging Face cache (the layout huggingface_hub writes, so Python tools share it) and prints
// the snapshot folder. A model gets what cotune needs (weights, index, configs, tokenizer) unless --include or
// --all says more; a dataset gets every file (use --include to narrow it).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "hub/client.h"
#include "hub/download.h"

namespace cotune::cli {
namespace {

struct DownloadCliOptions {
  std::string repo, repo_type = "model", revision = "main", token;
  std::vector<std::string> include;
  bool all = false;
};

void run_download(const DownloadCliOptions& o) {
  std::string repo_id = o.repo, revision = o.revision;
  if (auto at = repo_id.find('@'); at != std::string::npos) revision = repo_id.substr(at + 1), repo_id.resize(at);
  const hub::RepoType type = o.repo_type == "dataset" ? hub::RepoType::dataset : hub::RepoType::model;
  hub::HubSettings s = hub::HubSettings::from_env(hub::process_env(), o.token.empty() ? std::nullopt : std::optional(o.token));
  if (s.offline) fail("HF_HUB_OFFLINE is set: `cotune download` needs the network; unset HF_HUB_OFFLINE");
  hub::HubClient client(s);
  hub::DownloadOptions d;
  d.revision = revision;
  d.include = o.include;
  if (d.include.empty() && type == hub::RepoType::model && !o.all) d.include = hub::default_model_patterns();
  const hub::DownloadResult r = hub::download_snapshot(client, repo_id, type, d);
  std::fprintf(stderr, "%s %s at %s (commit %s): %d file(s) downloaded, %.1f MB\n", hub::repo_type_word(type),
               repo_id.c_str(), revision.c_str(), r.resolved.commit.c_str(), r.files_downloaded,
               static_cast<double>(r.bytes_downloaded) / 1e6);
  std::printf("%s\n", r.resolved.path.c_str());
}

void setup_download(CLI::App& app) {
  auto o = std::make_shared<DownloadCliOptions>();
  app.add_option("repo", o->repo, "org/name (or org/name@revision)")->required();
  app.add_option("--repo-type", o->repo_type, "model or dataset")->check(CLI::IsMember({"model", "dataset"}));
  app.add_option("--revision", o->revision, "Branch, tag or commit (default main)");
  app.add_option("--include", o->include,
                 "Only files matching these globs ('*' crosses folders; 'dir/' = everything under dir). A model's "
                 "default: *.safetensors, the index, config.json, generation_config.json and tokenizer files")
      ->expected(1, -1);
  app.add_flag("--all", o->all, "Every file of a model repo (not only what cotune needs)");
  app.add_option("--token", o->token,
                 "Hub token (default: $HF_TOKEN, else the file `huggingface-cli login` writes, $HF_HOME/token)");
  app.footer(
      "Honours HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_TOKEN and HF_HUB_OFFLINE like huggingface_hub. Interrupted\n"
      "downloads resume where they stopped; the snapshot folder is printed on stdout.");
  app.callback([o] { run_download(*o); });
}

}  // namespace

COTUNE_COMMAND(download, "download", "Download a model or dataset from the Hugging Face Hub into the shared HF cache", 3,
               setup_download);

}  // namespace cotune::cli
