// `cotune push DIR REPO [--private] [--revision BRANCH] [--commit-message M] [--repo-type] [--token T]`: uploads a
// folder (an adapter, a merged model, a dataset) to the Hub as one commit; only files that changed are sent.
// A folder without README.md gets a model card (YAML metadata + usage) from its adapter_config.json / config.json.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <simdjson.h>

#include "cli/command.h"
#include "hub/client.h"
#include "hub/model_card.h"
#include "hub/upload.h"

namespace cotune::cli {
namespace {
namespace fs = std::filesystem;

struct PushCliOptions {
  std::string dir, repo, revision = "main", message = "Upload with cotune", repo_type = "model", token;
  bool private_repo = false;
};

// base_model_name_or_path of an adapter folder ("" when absent).
std::string adapter_base(const fs::path& dir) {
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  std::string_view base;
  if (p.load((dir / "adapter_config.json").string()).get(doc) || doc["base_model_name_or_path"].get_string().get(base))
    return "";
  return std::string(base);
}

void run_push(const PushCliOptions& o) {
  const hub::RepoType type = o.repo_type == "dataset" ? hub::RepoType::dataset : hub::RepoType::model;
  hub::HubSettings s = hub::HubSettings::from_env(hub::process_env(), o.token.empty() ? std::nullopt : std::optional(o.token));
  hub::HubClient client(s);
  hub::PushOptions p;
  p.type = type;
  p.revision = o.revision;
  p.private_repo = o.private_repo;
  p.commit_message = o.message;
  const fs::path dir = o.dir;
  if (type == hub::RepoType::model && !fs::exists(dir / "README.md")) {
    hub::ModelCardInfo card;
    card.repo_id = o.repo;
    card.is_adapter = fs::exists(dir / "adapter_config.json");
    card.base_model = card.is_adapter ? adapter_base(dir) : "";
    p.contents["README.md"] = hub::model_card(card);
  }
  const hub::PushResult r = hub::push_folder(client, o.dir, o.repo, p);
  if (r.commit.empty()) {
    std::printf("%s: nothing changed (%d files up to date)\n", r.repo_url.c_str(), r.unchanged);
  } else {
    std::printf("%s: commit %s (%d file(s), %d LFS upload(s), %d unchanged)\n", r.repo_url.c_str(), r.commit.c_str(),
                r.files_committed, r.lfs_uploaded, r.unchanged);
  }
}

void setup_push(CLI::App& app) {
  auto o = std::make_shared<PushCliOptions>();
  app.add_option("dir", o->dir, "Folder to upload (e.g. runs/x/adapter or runs/x/merged)")->required()->check(CLI::ExistingDirectory);
  app.add_option("repo", o->repo, "Target repo org/name (created when missing)")->required();
  app.add_flag("--private", o->private_repo, "Create the repo private");
  app.add_option("--revision", o->revision, "Branch to commit to (created from main when missing)");
  app.add_option("--commit-message", o->message, "Commit message");
  app.add_option("--repo-type", o->repo_type, "model or dataset")->check(CLI::IsMember({"model", "dataset"}));
  app.add_option("--token", o->token, "Hub write token (default: $HF_TOKEN, else $HF_HOME/token)");
  app.footer("Honours HF_ENDPOINT and HF_TOKEN like huggingface_hub. Large files go through Git LFS (multipart when\n"
             "the Hub asks for it); files the repo already has byte for byte are not sent again.");
  app.callback([o] { run_push(*o); });
}

}  // namespace

COTUNE_COMMAND(push, "push", "Upload a folder (adapter, merged model) to the Hugging Face Hub as one commit", 65,
               setup_push);

}  // namespace cotune::cli
