// Learning-rate schedules of transformers; see schedule.h. Each formula is written in the order of
// transformers/optimization.py so the doubles come out identical to Python's.
#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "base/error.h"

namespace cotune::train {

ScheduleKind parse_schedule(const std::string& s) {
  if (s == "linear") return ScheduleKind::linear;
  if (s == "cosine") return ScheduleKind::cosine;
  if (s == "constant") return ScheduleKind::constant;
  if (s == "constant_with_warmup") return ScheduleKind::constant_with_warmup;
  fail("lr_scheduler '{}' is not supported: use linear, cosine, constant or constant_with_warmup", s);
}

std::string_view schedule_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::linear: return "linear";
    case ScheduleKind::cosine: return "cosine";
    case ScheduleKind::constant: return "constant";
    case ScheduleKind::constant_with_warmup: return "constant_with_warmup";
  }
  return "?";
}

double Schedule::factor(int64_t k) const {
  COTUNE_CHECK(k >= 0, "schedule: step {} is negative", k);
  if (kind == ScheduleKind::constant) return 1.0;
  if (k < warmup_steps) {
    // float(current_step) / float(max(1, num_warmup_steps))
    return static_cast<double>(k) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  }
  switch (kind) {
    case ScheduleKind::linear:
      // max(0.0, float(T - k) / float(max(1, T - W)))
      return std::max(0.0, static_cast<double>(total_steps - k) /
                               static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps)));
    case ScheduleKind::cosine: {
      const double progress = static_cast<double>(k - warmup_steps) /
                              static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
      double f = 0.5 * (1.0 + std::cos(std::numbers::pi * num_cycles * 2.0 * progress));
      f = f * (1 - min_lr_rate) + min_lr_rate;
      return std::max(0.0, f);
    }
    case ScheduleKind::constant_with_warmup:
    case ScheduleKind::constant:
      return 1.0;
  }
  return 1.0;
}

int64_t resolve_warmup(int64_t warmup_steps, double warmup_ratio, int64_t total_steps) {
  if (warmup_steps > 0) return warmup_steps;
  if (warmup_ratio > 0) return static_cast<int64_t>(std::ceil(static_cast<double>(total_steps) * warmup_ratio));
  return 0;
}

int64_t resolve_warmup_value(double warmup, int64_t total_steps) {
  if (warmup < 0) fail("warmup {} is negative (a step count >= 1 or a ratio in [0, 1))", warmup);
  if (warmup >= 1) return static_cast<int64_t>(warmup);
  return static_cast<int64_t>(std::ceil(static_cast<double>(total_steps) * warmup));
}

}  // namespace cotune::train
