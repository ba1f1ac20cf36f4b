#include "track/wandb_settings.h"

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "base/error.h"

namespace cotune::track::wandb {
namespace fs = std::filesystem;

namespace {

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (auto t = trim(item); !t.empty()) out.push_back(t);
  return out;
}

}  // namespace

std::string url_host(std::string_view url) {
  if (auto p = url.find("://"); p != std::string_view::npos) url.remove_prefix(p + 3);
  if (auto p = url.find_first_of("/?#"); p != std::string_view::npos) url = url.substr(0, p);
  if (auto p = url.rfind('@'); p != std::string_view::npos) url.remove_prefix(p + 1);
  if (!url.empty() && url.front() == '[') return std::string(url.substr(0, url.find(']') + 1));
  if (auto p = url.find(':'); p != std::string_view::npos) url = url.substr(0, p);
  return std::string(url);
}

std::optional<std::string> netrc_password(const fs::path& netrc, std::string_view host) {
  std::ifstream in(netrc);
  if (!in) return std::nullopt;
  // Tokens separated by whitespace: machine NAME [login L] [password P] ...; `default` matches any host.
  std::vector<std::string> tok;
  for (std::string t; in >> t;) tok.push_back(t);
  bool in_entry = false;
  std::optional<std::string> fallback;
  bool in_default = false;
  for (size_t i = 0; i < tok.size(); ++i) {
    if (tok[i] == "machine" && i + 1 < tok.size()) {
      in_entry = tok[++i] == host;
      in_default = false;
    } else if (tok[i] == "default") {
      in_entry = false;
      in_default = true;
    } else if (tok[i] == "password" && i + 1 < tok.size()) {
      const std::string& pw = tok[++i];
      if (in_entry) return pw;
      if (in_default && !fallback) fallback = pw;
    } else if ((tok[i] == "login" || tok[i] == "account") && i + 1 < tok.size()) {
      ++i;
    }
  }
  return fallback;
}

std::string new_run_id() {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd());
  std::uniform_int_distribution<int> pick(0, 35);
  std::string id;
  for (int i = 0; i < 8; ++i) id.push_back(kAlphabet[pick(gen)]);
  return id;
}

Settings resolve_settings(const WandbOptions& o) {
  auto env = [&](const std::string& name) -> std::string {
    std::optional<std::string> v;
    if (o.getenv) {
      v = o.getenv(name);
    } else if (const char* c = std::getenv(name.c_str())) {
      v = std::string(c);
    }
    return v ? trim(*v) : std::string();
  };
  Settings s;

  std::string mode = !o.mode.empty() ? o.mode : env("WANDB_MODE");
  const char* mode_from = !o.mode.empty() ? "wandb_mode" : "WANDB_MODE";
  if (mode.empty() || mode == "online" || mode == "run") {
    s.mode = Mode::online;
  } else if (mode == "offline" || mode == "dryrun") {
    s.mode = Mode::offline;
  } else if (mode == "disabled") {
    s.mode = Mode::disabled;
  } else {
    fail("{} = \"{}\": expected online, offline or disabled", mode_from, mode);
  }

  s.base_url = env("WANDB_BASE_URL");
  if (s.base_url.empty()) s.base_url = "https://api.wandb.ai";
  while (!s.base_url.empty() && s.base_url.back() == '/') s.base_url.pop_back();
  const std::string host = url_host(s.base_url);
  // The public server's API lives on api.wandb.ai and its pages on wandb.ai; a private server serves both.
  s.app_url = host == "api.wandb.ai" ? "https://wandb.ai" : s.base_url;

  s.project = !o.project.empty() ? o.project : env("WANDB_PROJECT");
  if (s.project.empty()) s.project = "cotune";
  s.entity = !o.entity.empty() ? o.entity : env("WANDB_ENTITY");
  s.display_name = !o.run_name.empty() ? o.run_name : env("WANDB_NAME");
  s.notes = !o.notes.empty() ? o.notes : env("WANDB_NOTES");
  s.tags = !o.tags.empty() ? o.tags : split_commas(env("WANDB_TAGS"));
  s.run_id = env("WANDB_RUN_ID");
  s.resume = env("WANDB_RESUME");
  if (s.resume == "true") s.resume = "allow";  // the client's boolean form
  if (s.resume == "false") s.resume.clear();
  if (!s.resume.empty() && s.resume != "allow" && s.resume != "must" && s.resume != "never" && s.resume != "auto")
    fail("WANDB_RESUME = \"{}\": expected allow, must, never or auto", s.resume);
  if (s.resume.empty() && o.resume) s.resume = "allow";

  const std::string dir = env("WANDB_DIR");
  s.wandb_dir = (dir.empty() ? o.output_dir : fs::path(dir)) / "wandb";

  if (s.mode == Mode::online) {
    s.api_key = env("WANDB_API_KEY");
    if (!s.api_key.empty()) {
      s.key_source = "WANDB_API_KEY";
    } else {
      fs::path netrc = env("NETRC");
      if (netrc.empty()) {
        const std::string home = env("HOME");
        if (!home.empty()) netrc = fs::path(home) / ".netrc";
      }
      if (!netrc.empty())
        if (auto pw = netrc_password(netrc, host)) {
          s.api_key = *pw;
          s.key_source = netrc.string();
        }
    }
  }
  return s;
}

}  // namespace cotune::track::wandb
