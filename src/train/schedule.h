// Learning-rate schedules, as transformers defines them (optimization.py), as pure functions of the step.
// No dependency on the rest of train/ (tests/quant/ compiles this file alone).
//
// Step convention (LambdaLR): `k` is the number of optimizer steps already taken, so the first optimizer
// step uses lr(0), the second lr(1), ... With warmup, lr(0) is 0 (transformers' warmup starts from zero)
// and the learning rate reaches base_lr at k == warmup_steps.
//
//   linear                k < W: k / max(1, W);  else max(0, (T - k) / max(1, T - W))
//   cosine                k < W: k / max(1, W);  else p = (k - W) / max(1, T - W),
//                         f = 0.5 * (1 + cos(pi * num_cycles * 2 * p)), max(0, f * (1 - min_lr_rate) + min_lr_rate)
//   constant              1 (no warmup, whatever W says: transformers' get_constant_schedule)
//   constant_with_warmup  k < W: k / max(1, W);  else 1
// lr = base_lr * factor, all in double as Python computes it (tests: equal to transformers' values).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace cotune::train {

enum class ScheduleKind : uint8_t { linear, cosine, constant, constant_with_warmup };

// "linear", "cosine", "constant", "constant_with_warmup" (transformers' SchedulerType names); throws Error
// naming the value and the accepted names otherwise.
ScheduleKind parse_schedule(const std::string& s);
std::string_view schedule_name(ScheduleKind k);

struct Schedule {
  ScheduleKind kind = ScheduleKind::linear;
  double base_lr = 2e-4;
  int64_t warmup_steps = 0;  // W, already resolved (resolve_warmup)
  int64_t total_steps = 0;   // T: optimizer steps in the run
  double num_cycles = 0.5;   // cosine: half a cosine from base_lr down to 0
  double min_lr_rate = 0.0;  // cosine: floor as a fraction of base_lr (transformers' cosine_with_min_lr)

  // LambdaLR's multiplier at step k >= 0 (steps past T keep the formula: linear and cosine stay at 0).
  double factor(int64_t k) const;
  // base_lr * factor(k): the learning rate of the (k+1)-th optimizer step.
  double lr(int64_t k) const { return base_lr * factor(k); }
};

// Warmup steps as transformers resolves them: warmup_steps when > 0, else ceil(total_steps * warmup_ratio)
// (TrainingArguments.get_warmup_steps; transformers 5 takes a value < 1 in warmup_steps as that ratio,
// which resolve_warmup_value handles).
int64_t resolve_warmup(int64_t warmup_steps, double warmup_ratio, int64_t total_steps);
// transformers 5 get_warmup_steps(total): int(w) if w >= 1 else ceil(total * w).
int64_t resolve_warmup_value(double warmup, int64_t total_steps);

}  // namespace cotune::train
