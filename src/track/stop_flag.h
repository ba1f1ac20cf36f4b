// Clean stop on Ctrl-C: the first SIGINT (or a SIGTERM, as a scheduler sends before preempting) asks
// the trainer to stop after the current step and write a checkpoint; a second SIGINT exits at once
// (exit status 130, the shell's convention for SIGINT), for a run that is stuck.
//
//   cotune::track::StopFlag stop;          // handlers installed here, previous ones restored on scope exit
//   for (step = ...; step <= max_steps; ++step) {
//     ... one optimizer step ...
//     if (stop.requested()) { save_checkpoint(step); break; }
//   }
//
// A signal handler cannot reach an object without a static pointer; the one static here is an atomic
// pointer to the live StopFlag (at most one at a time; a second one fails). The flag itself is a member.
#pragma once
#include <signal.h>

#include <atomic>

namespace cotune::track {

class StopFlag {
 public:
  // Installs the handlers for SIGINT and SIGTERM; fails if another StopFlag is alive.
  StopFlag();
  // Restores the handlers that were installed before.
  ~StopFlag();
  StopFlag(const StopFlag&) = delete;
  StopFlag& operator=(const StopFlag&) = delete;

  // True after the first signal (or request()).
  bool requested() const { return signals_.load(std::memory_order_relaxed) > 0; }
  // Number of stop requests so far.
  int count() const { return signals_.load(std::memory_order_relaxed); }
  // The same as a first Ctrl-C, for code that wants to stop the run (e.g. a NaN guard, a test).
  void request() { signals_.fetch_add(1, std::memory_order_relaxed); }

 private:
  static void on_signal(int sig);

  std::atomic<int> signals_{0};
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

}  // namespace cotune::track
