#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>

#include "track/progress.h"

namespace cotune::track {
namespace {

// Captures what Progress writes through a memory FILE.
struct Capture {
  char* buf = nullptr;
  size_t size = 0;
  std::FILE* f = open_memstream(&buf, &size);
  ~Capture() {
    if (f) std::fclose(f);
    std::free(buf);
  }
  std::string text() {
    std::fflush(f);
    return std::string(buf, size);
  }
};

// A clock the test moves by hand.
struct FakeClock {
  double t = 100.0;
};

int columns_of(const std::string& s) {
  int n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

TEST(Progress, Formatting) {
  EXPECT_EQ(format_duration(7.2), "0:07");
  EXPECT_EQ(format_duration(245), "4:05");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_compact(912), "912");
  EXPECT_EQ(format_compact(2134), "2.1k");
  EXPECT_EQ(format_compact(13400), "13k");
  EXPECT_EQ(format_compact(1.25e6), "1.2M");
}

TEST(Progress, LinesModeEveryNSteps) {
  Capture cap;
  FakeClock clock;
  {
    Progress p({.total_steps = 25, .log_every = 10, .mode = ProgressOptions::Mode::lines, .out = cap.f,
                .clock = [&] { return clock.t; }});
    for (int s = 1; s <= 25; ++s) {
      clock.t += 2.0;  // 2 s a step
      p.update({.step = s, .loss = 3.0 - 0.05 * s, .lr = 2e-4, .grad_norm = 0.5, .tokens_per_s = 1000});
    }
  }
  const std::string out = cap.text();
  // Step 1 (the first), 10, 20 and the last (25): four lines, no carriage returns.
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 4) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos);
  EXPECT_NE(out.find("step 1/25 (4%) | loss 2.9500 | lr 2.00e-04 | grad_norm 0.500 | 1000 tok/s"), std::string::npos)
      << out;
  // At step 10, 20 s elapsed at 2 s a step: 15 steps to go -> 30 s.
  EXPECT_NE(out.find("step 10/25 (40%) | loss 2.5000"), std::string::npos) << out;
  EXPECT_NE(out.find("elapsed 0:20 | eta 0:30"), std::string::npos) << out;
  EXPECT_NE(out.find("step 25/25 (100%)"), std::string::npos) << out;
}

TEST(Progress, LinesModePrintsLastStepOfAnEarlyStop) {
  Capture cap;
  {
    Progress p({.total_steps = 100, .log_every = 10, .mode = ProgressOptions::Mode::lines, .out = cap.f});
    for (int s = 1; s <= 13; ++s) p.update({.step = s, .loss = 1, .lr = 1e-4});
  }
  const std::string out = cap.text();
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 3) << out;  // 1, 10, and 13 at finish()
  EXPECT_NE(out.find("step 13/100"), std::string::npos) << out;
}

TEST(Progress, BarRedrawsInPlace) {
  Capture cap;
  FakeClock clock;
  {
    Progress p({.total_steps = 4, .mode = ProgressOptions::Mode::bar, .out = cap.f, .width = 120,
                .min_redraw_s = 0, .clock = [&] { return clock.t; }, .unicode = false});
    EXPECT_TRUE(p.is_bar());
    for (int s = 1; s <= 4; ++s) {
      clock.t += 1;
      p.update({.step = s, .loss = 1.0, .lr = 1e-4});
      if (s == 2) p.message("saved checkpoint-2");
    }
    const std::string mid = cap.text();
    // One newline so far: the message's. The bar itself never scrolls.
    EXPECT_EQ(std::count(mid.begin(), mid.end(), '\n'), 1) << mid;
    EXPECT_NE(mid.find("\r\x1b[Ksaved checkpoint-2\n"), std::string::npos);
  }
  const std::string out = cap.text();
  EXPECT_EQ(out.back(), '\n');  // finish() ends the line
  EXPECT_NE(out.find("train 4/4 [##############################] 100%"), std::string::npos) << out;
}

TEST(Progress, BarThrottlesRedraws) {
  Capture cap;
  FakeClock clock;
  Progress p({.total_steps = 1000, .mode = ProgressOptions::Mode::bar, .out = cap.f, .width = 100,
              .min_redraw_s = 0.5, .clock = [&] { return clock.t; }});
  for (int s = 1; s <= 100; ++s) {
    clock.t += 0.01;  // 100 steps in one second: two or three redraws, not 100
    p.update({.step = s, .loss = 1.0, .lr = 1e-4});
  }
  const std::string out = cap.text();
  const auto draws = std::count(out.begin(), out.end(), '\r');
  EXPECT_GE(draws, 2);
  EXPECT_LE(draws, 4);
}

TEST(Progress, BarLineFitsTheWidth) {
  Progress p({.total_steps = 60, .mode = ProgressOptions::Mode::off});
  const StepStats st{.step = 42, .loss = 1.4321, .lr = 1.2e-4, .grad_norm = 0.53, .tokens_per_s = 2134,
                     .eval_loss = 1.5, .gpu_mem_used_gib = 5.2, .gpu_mem_total_gib = 80};
  const std::string wide = p.bar_line(st, 41, 1.0, 200);
  for (const char* part : {"train 42/60", "70%", "loss 1.4321", "lr 1.20e-04", "gnorm 0.53", "eval 1.5000",
                           "2.1k tok/s", "mem 5.2/80 GiB", "0:41<0:18"})
    EXPECT_NE(wide.find(part), std::string::npos) << part << " missing in: " << wide;
  for (int width : {200, 120, 100, 80, 60, 40}) {
    const std::string line = p.bar_line(st, 41, 1.0, width);
    EXPECT_LT(columns_of(line), width) << line;
    // The essentials survive narrow terminals; the least important fields go first.
    EXPECT_NE(line.find("42/60"), std::string::npos) << line;
    if (width >= 60) {
      EXPECT_NE(line.find("loss 1.4321"), std::string::npos) << width << ": " << line;
    }
  }
  const std::string narrow = p.bar_line(st, 41, 1.0, 80);
  EXPECT_EQ(narrow.find("mem "), std::string::npos) << narrow;  // dropped before loss / time
  EXPECT_NE(narrow.find("0:41<0:18"), std::string::npos) << narrow;
  // Unknown length: no bar total, no ETA.
  Progress open_ended({.total_steps = 0, .mode = ProgressOptions::Mode::off});
  const std::string oe = open_ended.bar_line(st, 41, 1.0, 120);
  EXPECT_EQ(oe.rfind("train 42 ", 0), 0u) << oe;
  EXPECT_NE(oe.find("0:41<?"), std::string::npos) << oe;
  // Unknown rate: the ETA is "?".
  EXPECT_NE(p.bar_line(st, 0, 0, 200).find("<?"), std::string::npos);
}

TEST(Progress, OffModeIsSilentButMessagesPrint) {
  Capture cap;
  {
    Progress p({.total_steps = 3, .mode = ProgressOptions::Mode::off, .out = cap.f});
    p.update({.step = 1, .loss = 1, .lr = 1});
    p.message("hello");
  }
  EXPECT_EQ(cap.text(), "hello\n");
}

TEST(Progress, AutomaticIsLinesWhenNotATty) {
  Capture cap;  // a memory stream is not a terminal
  Progress p({.total_steps = 3, .out = cap.f});
  EXPECT_FALSE(p.is_bar());
}

}  // namespace
}  // namespace cotune::track
