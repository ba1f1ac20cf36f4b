#include "track/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace cotune::track {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  const int64_t h = s / 3600, m = (s / 60) % 60, sec = s % 60;
  if (h > 0) return fmt::format("{}:{:02}:{:02}", h, m, sec);
  return fmt::format("{}:{:02}", m, sec);
}

std::string format_compact(double v) {
  if (!std::isfinite(v)) return "?";
  const double a = std::fabs(v);
  if (a < 1000) return fmt::format("{:.0f}", v);
  if (a < 1e6) return a < 1e4 ? fmt::format("{:.1f}k", v / 1e3) : fmt::format("{:.0f}k", v / 1e3);
  if (a < 1e9) return a < 1e7 ? fmt::format("{:.1f}M", v / 1e6) : fmt::format("{:.0f}M", v / 1e6);
  return fmt::format("{:.1f}G", v / 1e9);
}

namespace {

bool locale_is_utf8() {
  for (const char* var : {"LC_ALL", "LC_CTYPE", "LANG"}) {
    const char* v = std::getenv(var);
    if (!v || !*v) continue;  // the first variable that is set decides, as setlocale does
    std::string s(v);
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s.find("utf-8") != std::string::npos || s.find("utf8") != std::string::npos;
  }
  return false;
}

// Terminal columns a UTF-8 string takes (every code point one column: all we print are such).
int display_width(std::string_view s) {
  int n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

// Cuts a UTF-8 string to `cols` columns without splitting a code point.
std::string cut_to_width(const std::string& s, int cols) {
  int n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (n == cols) return s.substr(0, i);
      ++n;
    }
  }
  return s;
}

std::string fmt_loss(double v) { return std::isfinite(v) ? fmt::format("{:.4f}", v) : fmt::format("{}", v); }

}  // namespace

Progress::Progress(ProgressOptions options) : opt_(std::move(options)) {
  out_ = opt_.out ? opt_.out : stderr;
  mode_ = opt_.mode;
  if (mode_ == ProgressOptions::Mode::automatic) {
    const char* term = std::getenv("TERM");
    const bool dumb = term && std::strcmp(term, "dumb") == 0;
    mode_ = (isatty(fileno(out_)) && !dumb) ? ProgressOptions::Mode::bar : ProgressOptions::Mode::lines;
  }
  if (opt_.unicode && !locale_is_utf8()) opt_.unicode = false;
  if (opt_.log_every < 1) opt_.log_every = 1;
  start_s_ = now();
}

Progress::~Progress() { finish(); }

double Progress::now() const {
  if (opt_.clock) return opt_.clock();
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

int Progress::columns() const {
  if (opt_.width > 0) return opt_.width;
  winsize ws{};
  if (ioctl(fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS"); c && std::atoi(c) > 0) return std::atoi(c);
  return 100;
}

std::string Progress::bar_line(const StepStats& st, double elapsed_s, double steps_per_s, int width) const {
  const int64_t total = opt_.total_steps;
  const double frac = total > 0 ? std::clamp(static_cast<double>(st.step) / static_cast<double>(total), 0.0, 1.0) : 0.0;
  const double eta = (steps_per_s > 0 && total > 0) ? static_cast<double>(total - st.step) / steps_per_s : -1;

  // Fields in the order shown, each with a priority: when the terminal is narrow the least important go
  // first (higher number = dropped earlier). The counter, loss and time are always kept.
  struct Field {
    std::string text;
    int drop_order;
  };
  std::vector<Field> fields;
  fields.push_back({"loss " + fmt_loss(st.loss), 0});
  fields.push_back({fmt::format("lr {:.2e}", st.lr), 3});
  if (st.grad_norm) fields.push_back({fmt::format("gnorm {:.2f}", *st.grad_norm), 5});
  if (st.eval_loss) fields.push_back({"eval " + fmt_loss(*st.eval_loss), 4});
  if (st.tokens_per_s) fields.push_back({format_compact(*st.tokens_per_s) + " tok/s", 2});
  if (st.gpu_mem_used_gib) {
    std::string m = st.gpu_mem_total_gib ? fmt::format("mem {:.1f}/{:.0f} GiB", *st.gpu_mem_used_gib, *st.gpu_mem_total_gib)
                                         : fmt::format("mem {:.1f} GiB", *st.gpu_mem_used_gib);
    fields.push_back({m, 6});
  }
  fields.push_back({format_duration(elapsed_s) + "<" + (eta >= 0 ? format_duration(eta) : "?"), 1});

  const std::string head = total > 0 ? fmt::format("{} {}/{}", opt_.label, st.step, total)
                                     : fmt::format("{} {}", opt_.label, st.step);  // length unknown
  const std::string pct = fmt::format("{:3.0f}%", 100.0 * frac);
  const int usable = std::max(width - 1, 20);  // never the last column: some terminals wrap there

  auto tail_text = [&]() {
    std::string t;
    for (const auto& f : fields) t += " | " + f.text;
    return t;
  };
  constexpr int kMinBar = 10, kMaxBar = 30;
  // Drop fields until head + bar(min) + pct + tail fits.
  while (true) {
    const int fixed = display_width(head) + 3 /* " [" "]" */ + 1 + display_width(pct) + display_width(tail_text());
    if (fixed + kMinBar <= usable) break;
    auto worst = std::max_element(fields.begin(), fields.end(),
                                  [](const Field& a, const Field& b) { return a.drop_order < b.drop_order; });
    if (worst == fields.end() || worst->drop_order <= 1) break;
    fields.erase(worst);
  }
  const std::string tail = tail_text();
  const int fixed = display_width(head) + 3 + 1 + display_width(pct) + display_width(tail);
  const int bar_w = std::min(kMaxBar, usable - fixed);
  std::string line = head;
  if (bar_w >= kMinBar) {
    std::string bar;
    if (opt_.unicode) {
      // Eighth blocks give a smooth bar: full cells, one partial cell, then light shade.
      static constexpr const char* kPartial[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
      const int eighths = static_cast<int>(std::floor(frac * bar_w * 8));
      const int full = eighths / 8;
      for (int i = 0; i < full; ++i) bar += "█";
      int used = full;
      if (full < bar_w && eighths % 8) {
        bar += kPartial[eighths % 8];
        ++used;
      }
      for (int i = used; i < bar_w; ++i) bar += "░";
    } else {
      const int full = static_cast<int>(std::floor(frac * bar_w));
      bar = std::string(full, '#') + std::string(bar_w - full, '.');
    }
    line += " [" + bar + "]";
  }
  line += " " + pct + tail;
  return cut_to_width(line, usable);
}

std::string Progress::log_line(const StepStats& st, double elapsed_s, double steps_per_s) const {
  const int64_t total = opt_.total_steps;
  std::string s = total > 0 ? fmt::format("step {}/{} ({:.0f}%)", st.step, total, 100.0 * st.step / total)
                            : fmt::format("step {}", st.step);
  s += " | loss " + fmt_loss(st.loss);
  s += fmt::format(" | lr {:.2e}", st.lr);
  if (st.grad_norm) s += fmt::format(" | grad_norm {:.3f}", *st.grad_norm);
  if (st.eval_loss) s += " | eval_loss " + fmt_loss(*st.eval_loss);
  if (st.tokens_per_s) s += fmt::format(" | {:.0f} tok/s", *st.tokens_per_s);
  if (st.gpu_mem_used_gib) {
    s += st.gpu_mem_total_gib ? fmt::format(" | mem {:.1f}/{:.0f} GiB", *st.gpu_mem_used_gib, *st.gpu_mem_total_gib)
                              : fmt::format(" | mem {:.1f} GiB", *st.gpu_mem_used_gib);
  }
  s += " | elapsed " + format_duration(elapsed_s);
  if (steps_per_s > 0 && total > 0) s += " | eta " + format_duration((total - st.step) / steps_per_s);
  return s;
}

void Progress::update(const StepStats& stats) {
  if (finished_) return;
  if (!first_step_) first_step_ = stats.step;
  const bool is_first = stats.step == *first_step_;
  last_ = stats;
  if (mode_ == ProgressOptions::Mode::bar) {
    draw(stats.step >= opt_.total_steps);
  } else if (mode_ == ProgressOptions::Mode::lines) {
    if (is_first || stats.step % opt_.log_every == 0 || stats.step == opt_.total_steps) draw(true);
  }
}

void Progress::draw(bool force) {
  if (!last_ || mode_ == ProgressOptions::Mode::off) return;
  const double t = now();
  if (mode_ == ProgressOptions::Mode::bar && !force && t - last_draw_s_ < opt_.min_redraw_s) return;
  last_draw_s_ = t;
  const double elapsed = t - start_s_;
  // Steps since this Progress started (a resumed run starts mid-way): from just before the first step.
  const double done = static_cast<double>(last_->step - *first_step_ + 1);
  const double rate = elapsed > 0 ? done / elapsed : 0;
  if (mode_ == ProgressOptions::Mode::bar) {
    const std::string line = bar_line(*last_, elapsed, rate, columns());
    std::fprintf(out_, "\r%s\x1b[K", line.c_str());
    line_open_ = true;
  } else {
    std::fprintf(out_, "%s\n", log_line(*last_, elapsed, rate).c_str());
  }
  std::fflush(out_);
}

void Progress::message(std::string_view line) {
  if (line_open_) std::fputs("\r\x1b[K", out_);
  std::fprintf(out_, "%.*s\n", static_cast<int>(line.size()), line.data());
  line_open_ = false;
  if (mode_ == ProgressOptions::Mode::bar) draw(true);
  std::fflush(out_);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (mode_ == ProgressOptions::Mode::bar && last_) {
    draw(true);
    std::fputc('\n', out_);
    line_open_ = false;
  } else if (mode_ == ProgressOptions::Mode::lines && last_) {
    // The last step was printed unless the run stopped early between two logging steps.
    const int64_t s = last_->step;
    if (!(s == *first_step_ || s % opt_.log_every == 0 || s == opt_.total_steps)) draw(true);
  }
  std::fflush(out_);
}

}  // namespace cotune::track
