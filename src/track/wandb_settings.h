// Weights & Biases settings, resolved the way the official client resolves them: the run's own options
// (recipe keys / flags) first, then the environment the client reads, then its defaults. This file and
// wandb_settings.cpp are the only places cotune reads WANDB_* variables and ~/.netrc.
//
//   WANDB_API_KEY   the key; else the password of `machine <api host>` in $NETRC or ~/.netrc (`wandb login`
//                   writes it there)
//   WANDB_BASE_URL  server (default https://api.wandb.ai)
//   WANDB_PROJECT, WANDB_ENTITY, WANDB_MODE (online | offline | disabled; dryrun = offline, run = online)
//   WANDB_DIR       folder that holds wandb/ (default: the run's output folder)
//   WANDB_RUN_ID    the run's id (default: a new random one, or the output folder's last run with --resume)
//   WANDB_RESUME    allow | must | never | auto (default: allow with --resume, else a new run)
//   WANDB_NAME, WANDB_NOTES, WANDB_TAGS (comma-separated) when the recipe does not set them
#pragma once
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace cotune::track::wandb {

enum class Mode { online, offline, disabled };

// What the caller (cli) knows: recipe keys, the run's config and where its outputs go.
struct WandbOptions {
  std::string project, entity, run_name, notes;
  std::string mode;  // "online", "offline", "disabled" or "" (WANDB_MODE, else online)
  std::vector<std::string> tags;
  nlohmann::json config = nlohmann::json::object();  // the run's config: key -> value
  std::filesystem::path output_dir;                    // default home of wandb/
  bool resume = false;  // the training run resumes: continue the W&B run of this output folder

  // Timing and bounds. Defaults are the client's order of magnitude; tests shorten them.
  double stream_interval_s = 2.0;   // batch history / console / summary into one file_stream POST this often
  double stats_interval_s = 15.0;   // system metrics sample period (the issue asks 10-30 s)
  double request_timeout_s = 30.0;  // one HTTP request, connect included
  double retry_initial_s = 1.0;     // back-off after a failed request: doubles up to retry_max_s
  double retry_max_s = 30.0;
  double finish_timeout_s = 60.0;  // at close: how long to keep trying to upload what is left
  size_t max_pending_lines = 200000;  // lines held for upload; past it the run is left to `wandb sync`
  bool system_metrics = true;

  // The environment (default: getenv) and where "wandb: ..." lines go (default: stderr). For tests.
  std::function<std::optional<std::string>(const std::string&)> getenv;
  std::function<void(const std::string&)> print;
};

struct Settings {
  Mode mode = Mode::online;
  std::string base_url;    // no trailing slash
  std::string app_url;     // where runs are shown (https://wandb.ai for the public server)
  std::string api_key;     // empty unless online; never printed
  std::string key_source;  // "WANDB_API_KEY" or the netrc file's path, for messages
  std::string project, entity, display_name, notes;
  std::vector<std::string> tags;
  std::string run_id;      // empty: make one
  std::string resume;      // "", "allow", "must", "never", "auto"
  std::filesystem::path wandb_dir;  // <WANDB_DIR or output>/wandb
};

// Resolves `options` with the environment; an unknown mode or WANDB_RESUME value fails naming it.
// Does not check the key (that needs the server).
Settings resolve_settings(const WandbOptions& options);

// The password of `machine <host>` in a netrc file (the format `wandb login` writes), if any.
std::optional<std::string> netrc_password(const std::filesystem::path& netrc, std::string_view host);

// "https://api.wandb.ai" -> "api.wandb.ai"; "http://127.0.0.1:8080/" -> "127.0.0.1" (netrc keys by host).
std::string url_host(std::string_view url);

// A new run id as the client makes them: 8 characters of [a-z0-9].
std::string new_run_id();

}  // namespace cotune::track::wandb
