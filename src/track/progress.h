// Live progress of a training run.
//
// On a terminal: one line redrawn in place (carriage return + erase-to-end-of-line, no scrolling),
// fitted to the terminal width, e.g.
//   train  42/60 [██████████████░░░░░░] 70% | loss 1.4321 | lr 1.20e-04 | gnorm 0.53 | 2.1k tok/s | mem 5.2/80 GiB | 0:41<0:18
// Elsewhere (CI logs, a file, TERM=dumb): plain lines every `log_every` steps and at the last step,
//   step 40/60 (67%) | loss 1.4321 | lr 1.20e-04 | grad_norm 0.530 | 2134 tok/s | elapsed 0:41 | eta 0:18
//
// Usage by the trainer:
//   cotune::track::ProgressOptions po;
//   po.total_steps = 60;
//   po.log_every = 10;                      // = logging_steps
//   cotune::track::Progress progress(po);
//   for (...) {
//     ... one optimizer step ...
//     cotune::track::StepStats st;
//     st.step = step; st.loss = loss; st.lr = lr; st.grad_norm = gn; st.tokens_per_s = tps;
//     if (on_gpu) st.gpu_mem_used_gib = used, st.gpu_mem_total_gib = total;
//     progress.update(st);
//     if (saved) progress.message("saved checkpoint-" + std::to_string(step));   // printed above the bar
//   }
//   progress.finish();
//
// Anything else written to the same stream while the bar is shown would be overwritten by the next
// redraw; route it through message().
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace cotune::track {

struct StepStats {
  int64_t step = 0;  // optimizer steps done (1-based: the step just finished)
  double loss = 0;
  double lr = 0;
  std::optional<double> grad_norm;
  std::optional<double> tokens_per_s;
  std::optional<double> eval_loss;        // the latest evaluation, shown until the next one
  std::optional<double> gpu_mem_used_gib;  // when training on a GPU
  std::optional<double> gpu_mem_total_gib;
};

struct ProgressOptions {
  int64_t total_steps = 0;
  int64_t log_every = 10;  // lines mode: print every N steps (and the first and the last)
  enum class Mode { automatic, bar, lines, off } mode = Mode::automatic;  // automatic: bar on a TTY
  std::FILE* out = nullptr;  // default stderr (stdout stays clean for machine-readable output)
  std::string label = "train";
  int width = 0;  // columns; 0: ask the terminal (TIOCGWINSZ), else $COLUMNS, else 100
  double min_redraw_s = 0.1;  // bar mode: redraw at most this often (the last step is always drawn)
  std::function<double()> clock;  // seconds; default a steady clock (tests inject a fake one)
  bool unicode = true;  // bar glyphs █░ when the locale is UTF-8; '#' and '.' otherwise
};

class Progress {
 public:
  explicit Progress(ProgressOptions options);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(const StepStats& stats);
  // A line printed above the bar (or as is in lines mode), e.g. "saved checkpoint-40".
  void message(std::string_view line);
  // Draws the final state and ends the bar's line. Idempotent; the destructor calls it.
  void finish();

  bool is_bar() const { return mode_ == ProgressOptions::Mode::bar; }

  // The text of one bar line / log line for `stats` after `elapsed_s` seconds with `steps_per_s` (the
  // observed rate, 0 when unknown), fitted to `width` columns. Public for tests.
  std::string bar_line(const StepStats& stats, double elapsed_s, double steps_per_s, int width) const;
  std::string log_line(const StepStats& stats, double elapsed_s, double steps_per_s) const;

 private:
  double now() const;
  int columns() const;
  void draw(bool force);

  ProgressOptions opt_;
  ProgressOptions::Mode mode_;
  std::FILE* out_;
  double start_s_ = 0;
  std::optional<int64_t> first_step_;  // steps before it (a resumed run) do not count toward the rate
  std::optional<StepStats> last_;
  double last_draw_s_ = -1e300;
  bool line_open_ = false;  // the bar is on screen, no newline after it yet
  bool finished_ = false;
};

// "1:02:03", "4:05", "0:07"; "?" for a negative or non-finite value.
std::string format_duration(double seconds);
// "912", "2.1k", "13.4k", "1.2M".
std::string format_compact(double value);

}  // namespace cotune::track
