#include "train/checkpoint.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "base/error.h"
#include "base/fs.h"
#include "base/json_error.h"
#include "base/mmap.h"

namespace cotune::train {

namespace fs = std::filesystem;

namespace {
// The step of a `checkpoint-N` folder, or -1 for other names. N must fit in int64 (a name like
// checkpoint-99999999999999999999 is an error naming the folder, not a std::stoll exception).
int64_t checkpoint_step(const fs::path& p) {
  const std::string n = p.filename().string();
  if (n.rfind("checkpoint-", 0) != 0) return -1;
  const std::string num = n.substr(11);
  if (num.empty() || !std::all_of(num.begin(), num.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
  int64_t step = 0;
  for (char c : num)
    if (__builtin_mul_overflow(step, 10, &step) || __builtin_add_overflow(step, c - '0', &step))
      fail("{}: the step number in this checkpoint folder's name does not fit in 64 bits; rename or remove it",
           p.string());
  return step;
}

}  // namespace

std::string checkpoint_dir(const std::string& out, int64_t step) {
  return (fs::path(out) / ("checkpoint-" + std::to_string(step))).string();
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& out) {
  std::vector<std::pair<int64_t, std::string>> v;
  std::error_code ec;
  if (!fs::is_directory(out, ec)) return v;
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const int64_t s = checkpoint_step(e.path());
    if (s >= 0 && e.is_directory() && fs::exists(e.path() / "trainer_state.json")) v.emplace_back(s, e.path().string());
  }
  std::sort(v.begin(), v.end());
  return v;
}

void remove_stale_checkpoint_temps(const std::string& out, const std::function<void(const std::string&)>& message) {
  std::error_code ec;
  if (!fs::is_directory(out, ec)) return;
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("checkpoint-", 0) != 0) continue;
    size_t at = n.find(".tmp-");
    if (at == std::string::npos) at = n.find(".old-");
    if (at == std::string::npos) continue;
    const std::string pid = n.substr(at + 5);
    if (pid.empty() || pid.size() > 9 || !std::all_of(pid.begin(), pid.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    const pid_t p = static_cast<pid_t>(std::stol(pid));
    if (p == ::getpid() || ::kill(p, 0) == 0 || errno == EPERM) continue;  // still alive: not ours to remove
    stale.push_back(e.path());
  }
  for (const auto& p : stale) {
    fs::remove_all(p, ec);
    if (!ec) message("removed " + p.string() + ", left by an interrupted run");
  }
}

std::optional<std::string> latest_checkpoint(const std::string& output_dir) {
  auto v = list_checkpoints(output_dir);
  if (v.empty()) return std::nullopt;
  return v.back().second;
}

std::optional<int64_t> latest_checkpoint_step(const std::string& output_dir) {
  auto v = list_checkpoints(output_dir);
  if (v.empty()) return std::nullopt;
  return v.back().first;
}

void prune_checkpoints(const std::string& output_dir, int64_t limit, const std::vector<std::string>& keep) {
  std::error_code ec;
  auto all = list_checkpoints(output_dir);
  int64_t excess = static_cast<int64_t>(all.size()) - limit;
  for (const auto& [s, path] : all) {
    if (excess <= 0) break;
    if (std::find(keep.begin(), keep.end(), path) != keep.end()) continue;
    fs::remove_all(path, ec);
    --excess;
  }
}

// "lr: 0.0002 -> 0.001, seed: 1 -> 2": the settings of `now` that differ from `saved` (keys of either).
std::string fingerprint_diff(const nlohmann::json& saved, const nlohmann::json& now) {
  std::string out;
  auto add = [&](const std::string& k, const std::string& a, const std::string& b) {
    out += fmt::format("{}{}: {} -> {}", out.empty() ? "" : ", ", k, a, b);
  };
  if (!saved.is_object()) return "the checkpoint's fingerprint is not an object";
  for (const auto& [k, v] : now.items()) {
    auto it = saved.find(k);
    if (it == saved.end()) add(k, "(absent)", v.dump());
    else if (*it != v) add(k, it->dump(), v.dump());
  }
  for (const auto& [k, v] : saved.items())
    if (!now.contains(k)) add(k, v.dump(), "(absent)");
  return out;
}

CheckpointState read_trainer_state(const std::string& file) {
  const std::string text = read_file(file);
  nlohmann::json st;
  try {
    st = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    fail("{}: not valid JSON: {}", file, json_syntax_error(text));
  }
  if (!st.is_object()) fail("{}: expected a JSON object", file);
  auto get = [&](const char* key, auto is_type, const char* expected) -> const nlohmann::json& {
    auto it = st.find(key);
    if (it == st.end()) fail("{}: missing field \"{}\"", file, key);
    if (!is_type(*it)) fail("{}: field \"{}\" must be {}, found {}", file, key, expected, it->dump());
    return *it;
  };
  const auto is_int = [](const nlohmann::json& j) { return j.is_number_integer(); };
  const auto is_num = [](const nlohmann::json& j) { return j.is_number(); };
  const auto is_str = [](const nlohmann::json& j) { return j.is_string(); };
  CheckpointState s;
  s.fingerprint = get("fingerprint", [](const nlohmann::json& j) { return j.is_object(); }, "an object");
  s.iterator = get("iterator", is_str, "a string").get<std::string>();
  s.global_step = get("global_step", is_int, "an integer").get<int64_t>();
  if (s.global_step < 0) fail("{}: field \"global_step\" is negative ({})", file, s.global_step);
  if (st.contains("elapsed_s")) s.elapsed_s = get("elapsed_s", is_num, "a number").get<double>();
  if (st.contains("best_eval_loss")) {
    s.best_eval_step = get("best_eval_step", is_int, "an integer").get<int64_t>();
    s.best_eval_loss = get("best_eval_loss", is_num, "a number").get<double>();
    if (st.contains("best_checkpoint")) s.best_checkpoint = get("best_checkpoint", is_str, "a string").get<std::string>();
  }
  return s;
}


void write_trainer_state(const std::string& file, const CheckpointState& s) {
  nlohmann::json st = {{"global_step", s.global_step},
                       {"total_steps", s.total_steps},
                       {"epoch", s.epoch},
                       {"iterator", s.iterator},
                       {"elapsed_s", s.elapsed_s},
                       {"fingerprint", s.fingerprint}};
  if (s.best_eval_step) {
    st["best_eval_loss"] = s.best_eval_loss;
    st["best_eval_step"] = *s.best_eval_step;
    st["best_checkpoint"] = s.best_checkpoint;
  }
  write_file_atomic(file, st.dump(2) + "\n");
}

}  // namespace cotune::train
