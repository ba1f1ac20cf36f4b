#include "track/stop_flag.h"

#include <unistd.h>

#include <cstring>

#include "base/error.h"

namespace cotune::track {
namespace {

// The live StopFlag, for the handler. Lock-free so that reading it in a signal handler is safe.
std::atomic<StopFlag*> g_active{nullptr};
static_assert(std::atomic<StopFlag*>::is_always_lock_free);
static_assert(std::atomic<int>::is_always_lock_free);

void write_stderr(const char* s) {
  // write(2) is async-signal-safe; stdio is not.
  ssize_t r = ::write(STDERR_FILENO, s, std::strlen(s));
  (void)r;
}

}  // namespace

StopFlag::StopFlag() {
  StopFlag* expected = nullptr;
  if (!g_active.compare_exchange_strong(expected, this))
    fail("StopFlag: another StopFlag is already installed (only one can own SIGINT)");
  struct sigaction sa {};
  sa.sa_handler = &StopFlag::on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a read() in the data loader continues rather than failing with EINTR
  sigaction(SIGINT, &sa, &old_int_);
  sigaction(SIGTERM, &sa, &old_term_);
}

StopFlag::~StopFlag() {
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
  g_active.store(nullptr);
}

void StopFlag::on_signal(int sig) {
  StopFlag* self = g_active.load();
  if (!self) return;
  const int n = self->signals_.fetch_add(1) + 1;
  if (n == 1) {
    write_stderr(sig == SIGTERM
                     ? "\ncotune: SIGTERM: stopping after this step and saving a checkpoint\n"
                     : "\ncotune: stopping after this step and saving a checkpoint (Ctrl-C again to quit now)\n");
  } else if (sig == SIGINT) {
    write_stderr("\ncotune: interrupted; exiting without a checkpoint\n");
    _exit(130);
  }
}

}  // namespace cotune::track
