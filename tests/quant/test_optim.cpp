// Optimizer steps, gradient clipping and schedules against goldens (tools/make_optim_golden.py):
// torch.optim.AdamW (foreach=False, the CPU path), torch.nn.utils.clip_grad_norm_, bitsandbytes 0.50.2
// AdamW8bit on the CPU (its CPU backend runs the 8-bit blockwise update in PyTorch ops and requantizes
// the state with the native LUT quantizer, hence QuantRounding::bnb_cpu_lut here), and transformers'
// schedule functions.
#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"
#include "golden.h"
#include "kernels/optim.h"
#include "train/schedule.h"

namespace cotune {
namespace {

using testing::GoldenFile;

nlohmann::json manifest() { return testing::read_json(testing::golden_dir() + "/optim/manifest.json"); }
// The manifest's list `key`, by value: a range-for over manifest()["key"] would iterate a destroyed
// temporary. An empty or missing list fails the test instead of passing vacuously.
nlohmann::json cases(const std::string& key) {
  nlohmann::json list = manifest()[key];
  EXPECT_TRUE(list.is_array() && !list.empty()) << "manifest has no cases under \"" << key << "\"";
  return list;
}

// Largest |got - want| / (|want| + floor) over the arrays; the floor keeps values that are ~0 from
// dominating (an absolute error of 1e-6 * floor is accepted there).
double max_rel_error(const std::vector<float>& got, const std::vector<float>& want, double floor = 1e-6) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    double e = std::fabs(static_cast<double>(got[i]) - want[i]) / (std::fabs(static_cast<double>(want[i])) + floor);
    worst = std::max(worst, e);
  }
  return worst;
}

// Parameters after an update: the error is measured against |want| + lr, because an fp32 rounding of
// the update (size ~lr) is an absolute error of ~lr * 6e-8, which is a large relative error in a parameter
// that the update has just moved through zero (bnb's step-1 output has such values, e.g. -1.0e-5).
double max_param_error(const std::vector<float>& got, const std::vector<float>& want, double lr) {
  return max_rel_error(got, want, lr);
}

double fraction_equal(const std::vector<float>& a, const std::vector<float>& b) {
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  return a.empty() ? 1.0 : static_cast<double>(same) / static_cast<double>(a.size());
}

TEST(AdamW, MatchesTorch) {
  COTUNE_OPEN_GOLDEN(g, "optim", "optim_golden.safetensors");
  for (const auto& c : cases("adamw")) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const auto lrs = c["lrs"].get<std::vector<double>>();
    struct P {
      std::string key;
      std::vector<float> p, m, v;
      double wd;
    };
    std::vector<P> ps;
    for (const char* k : {"a", "b", "c"}) {
      P p{k, g[name + "." + k + ".init"].f32(), {}, {}, c["weight_decay"][k].get<double>()};
      p.m.assign(p.p.size(), 0.f);
      p.v.assign(p.p.size(), 0.f);
      ps.push_back(std::move(p));
    }
    ASSERT_EQ(lrs.size(), 6u);
    int compared = 0;
    for (size_t s = 1; s <= lrs.size(); ++s) {
      for (auto& p : ps) {
        auto grad = g[name + "." + p.key + ".grad" + std::to_string(s)].f32();
        kernels::AdamWHyper h;
        h.lr = lrs[s - 1];
        h.beta1 = c["betas"][0];
        h.beta2 = c["betas"][1];
        h.eps = c["eps"];
        h.weight_decay = p.wd;
        h.step = static_cast<int64_t>(s);
        kernels::cpu::adamw_step(p.p.data(), grad.data(), p.m.data(), p.v.data(), static_cast<int64_t>(p.p.size()), h);
        const std::string want = name + "." + p.key + ".param" + std::to_string(s);
        if (g.has(want)) {
          auto w = g[want].f32();
          EXPECT_LE(max_param_error(p.p, w, h.lr), 1e-6) << want;
          ++compared;
          if (s == lrs.size())
            std::printf("%s: %.4f of params bitwise equal to torch\n", want.c_str(), fraction_equal(p.p, w));
        }
      }
    }
    EXPECT_EQ(compared, 6 + 2);  // "a" after every step, "b" and "c" after the last
    for (auto& p : ps) {
      EXPECT_LE(max_rel_error(p.m, g[name + "." + p.key + ".exp_avg"].f32(), 1e-9), 1e-6) << p.key << " exp_avg";
      EXPECT_LE(max_rel_error(p.v, g[name + "." + p.key + ".exp_avg_sq"].f32(), 1e-12), 1e-6) << p.key << " exp_avg_sq";
    }
  }
}

TEST(AdamW, RejectsBadInput) {
  std::vector<float> p(4), g(4), m(4), v(3);
  kernels::AdamWHyper h;
  EXPECT_THROW(kernels::adamw_step(Tensor(p.data(), DType::f32, {4}), Tensor(g.data(), DType::f32, {4}),
                                   Tensor(m.data(), DType::f32, {4}), Tensor(v.data(), DType::f32, {3}), h),
               Error);
  h.step = 0;
  EXPECT_THROW(kernels::cpu::adamw_step(p.data(), g.data(), m.data(), m.data(), 4, h), Error);
}

struct Bnb8State {
  std::vector<float> p;
  std::vector<uint8_t> q1, q2;
  std::vector<float> absmax1, absmax2;
};

TEST(AdamW8bit, MatchesBitsandbytesCpu) {
  COTUNE_OPEN_GOLDEN(g, "optim", "optim_golden.safetensors");
  const auto m = manifest()["adamw8bit"];
  const auto lrs = m["lrs"].get<std::vector<double>>();
  EXPECT_EQ(m["min_8bit_size"].get<int64_t>(), kernels::kMin8bitSize);
  auto hyper = [&](size_t s) {
    kernels::AdamWHyper h;
    h.lr = lrs[s - 1];
    h.beta1 = m["betas"][0];
    h.beta2 = m["betas"][1];
    h.eps = m["eps"];
    h.weight_decay = m["weight_decay"];
    h.step = static_cast<int64_t>(s);
    return h;
  };
  const std::string big = "adamw8bit.big.";
  const int64_t n = 64 * 80, nb = kernels::num_blocks(n, 256);

  // (1) One step at a time from bnb's own previous state: state codes and absmax equal bnb's exactly,
  //     params up to an fp32 rounding of the update (~99% bitwise equal, the rest 1 ulp of the update).
  for (size_t s = 1; s <= lrs.size(); ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    Bnb8State st;
    const std::string prev = std::to_string(s - 1);
    st.p = s == 1 ? g[big + "init"].f32() : g[big + "param" + prev].f32();
    st.q1 = s == 1 ? std::vector<uint8_t>(n, 0) : g[big + "state1_" + prev].bytes;
    st.q2 = s == 1 ? std::vector<uint8_t>(n, 0) : g[big + "state2_" + prev].bytes;
    st.absmax1 = s == 1 ? std::vector<float>(nb, 0.f) : g[big + "absmax1_" + prev].f32();
    st.absmax2 = s == 1 ? std::vector<float>(nb, 0.f) : g[big + "absmax2_" + prev].f32();
    auto grad = g[big + "grad" + std::to_string(s)].f32();
    kernels::cpu::adamw8bit_step(st.p.data(), grad.data(), st.q1.data(), st.absmax1.data(), st.q2.data(),
                                 st.absmax2.data(), n, hyper(s), kernels::QuantRounding::bnb_cpu_lut);
    const std::string cur = std::to_string(s);
    EXPECT_LE(max_param_error(st.p, g[big + "param" + cur].f32(), lrs[s - 1]), 1e-6);
    std::printf("step %zu: %.4f of params bitwise equal to bnb\n", s,
                fraction_equal(st.p, g[big + "param" + cur].f32()));
    EXPECT_EQ(st.absmax1, g[big + "absmax1_" + cur].f32());
    EXPECT_EQ(st.absmax2, g[big + "absmax2_" + cur].f32());
    EXPECT_EQ(st.q1, g[big + "state1_" + cur].bytes) << "first-moment codes";
    EXPECT_EQ(st.q2, g[big + "state2_" + cur].bytes) << "second-moment codes";
  }

  // (2) All steps chained from the initial parameters, as a run would.
  Bnb8State st{g[big + "init"].f32(), std::vector<uint8_t>(n, 0), std::vector<uint8_t>(n, 0),
               std::vector<float>(nb, 0.f), std::vector<float>(nb, 0.f)};
  auto small_p = g["adamw8bit.small.init"].f32();
  std::vector<float> small_m(small_p.size()), small_v(small_p.size());  // zero-initialised
  for (size_t s = 1; s <= lrs.size(); ++s) {
    SCOPED_TRACE("chained step " + std::to_string(s));
    auto grad = g[big + "grad" + std::to_string(s)].f32();
    kernels::cpu::adamw8bit_step(st.p.data(), grad.data(), st.q1.data(), st.absmax1.data(), st.q2.data(),
                                 st.absmax2.data(), n, hyper(s), kernels::QuantRounding::bnb_cpu_lut);
    const std::string cur = std::to_string(s);
    EXPECT_LE(max_param_error(st.p, g[big + "param" + cur].f32(), lrs[s - 1]), 1e-6);
    EXPECT_EQ(st.q1, g[big + "state1_" + cur].bytes);
    EXPECT_EQ(st.q2, g[big + "state2_" + cur].bytes);

    // The 300-element tensor is below min_8bit_size: fp32 state, bnb's 32-bit update formula.
    auto sg = g["adamw8bit.small.grad" + cur].f32();
    kernels::cpu::adamw_bnb32_step(small_p.data(), sg.data(), small_m.data(), small_v.data(),
                                   static_cast<int64_t>(small_p.size()), hyper(s));
    EXPECT_LE(max_param_error(small_p, g["adamw8bit.small.param" + cur].f32(), lrs[s - 1]), 1e-6);
    EXPECT_LE(max_rel_error(small_m, g["adamw8bit.small.state1_" + cur].f32(), 1e-9), 1e-6);
    EXPECT_LE(max_rel_error(small_v, g["adamw8bit.small.state2_" + cur].f32(), 1e-12), 1e-6);
  }
}

TEST(AdamW8bit, NearestRoundingTracksFp32Adam) {
  // Not a bnb comparison: 8-bit state with nearest rounding must stay close to fp32 AdamW over many steps
  // (the point of 8-bit Adam). Gaussian gradients, 8192 parameters, 50 steps.
  const int64_t n = 8192, nb = kernels::num_blocks(n, 256);
  std::vector<float> p32(n), p8(n), m(n, 0.f), v(n, 0.f), absmax1(nb, 0.f), absmax2(nb, 0.f), grad(n);
  std::vector<uint8_t> q1(n, 0), q2(n, 0);
  uint32_t x = 12345;
  auto uniform = [&] { x = x * 1664525u + 1013904223u; return (static_cast<float>(x >> 8) + 0.5f) / 16777216.0f; };
  for (int64_t i = 0; i < n; ++i) p32[i] = p8[i] = 0.1f * (uniform() - 0.5f);
  const std::vector<float> p0 = p32;
  for (int64_t s = 1; s <= 50; ++s) {
    for (auto& gi : grad) gi = 0.01f * (uniform() + uniform() + uniform() - 1.5f);
    kernels::AdamWHyper h;
    h.lr = 1e-3;
    h.weight_decay = 0.01;
    h.step = s;
    kernels::cpu::adamw_step(p32.data(), grad.data(), m.data(), v.data(), n, h);
    kernels::cpu::adamw8bit_step(p8.data(), grad.data(), q1.data(), absmax1.data(), q2.data(), absmax2.data(), n, h,
                                 kernels::QuantRounding::nearest);
  }
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    num += std::pow(static_cast<double>(p8[i]) - p32[i], 2);
    den += std::pow(static_cast<double>(p32[i]) - p0[i], 2);
  }
  const double rel = std::sqrt(num / den);  // difference relative to the distance travelled
  std::printf("8-bit vs fp32 AdamW after 50 steps: |p8 - p32| / |p32 - p0| = %.4f\n", rel);
  EXPECT_LT(rel, 0.05);
}

TEST(ClipGradNorm, MatchesTorch) {
  COTUNE_OPEN_GOLDEN(g, "optim", "optim_golden.safetensors");
  for (const auto& c : cases("clip")) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const int count = c["count"];
    std::vector<std::vector<float>> grads;
    for (int i = 0; i < count; ++i) grads.push_back(g[name + ".grad" + std::to_string(i)].f32());
    std::vector<Tensor> ts;
    for (auto& v : grads) ts.emplace_back(v.data(), DType::f32, Shape{static_cast<int64_t>(v.size())});
    const float want_total = g[name + ".total_norm"].f32()[0];
    EXPECT_NEAR(kernels::global_grad_norm(ts), want_total, 1e-6 * want_total);
    const float total = kernels::clip_grad_norm(ts, c["max_norm"].get<double>());
    EXPECT_NEAR(total, want_total, 1e-6 * want_total);
    for (int i = 0; i < count; ++i)
      EXPECT_LE(max_rel_error(grads[static_cast<size_t>(i)], g[name + ".clipped" + std::to_string(i)].f32(), 1e-9),
                1e-6)
          << "grad " << i;
  }
  // Coefficient edge cases: no clipping below max_norm, NaN propagates, inf zeroes.
  EXPECT_EQ(kernels::clip_coefficient(0.5f, 1.0), 1.0f);
  EXPECT_TRUE(std::isnan(kernels::clip_coefficient(NAN, 1.0)));
  EXPECT_EQ(kernels::clip_coefficient(INFINITY, 1.0), 0.0f);
}

TEST(Schedule, MatchesTransformers) {
  COTUNE_REQUIRE_GOLDEN_FILE("optim", "manifest.json");
  const auto m = manifest();
  if (!m.contains("schedules")) GTEST_SKIP() << "no schedule goldens in tests/golden/optim/manifest.json";
  for (const auto& c : m["schedules"]) {
    train::Schedule s;
    s.kind = train::parse_schedule(c["kind"].get<std::string>());
    s.base_lr = c["base_lr"];
    s.total_steps = c["total_steps"];
    s.warmup_steps = c["warmup_steps"];
    SCOPED_TRACE(c["kind"].get<std::string>() + " T=" + std::to_string(s.total_steps) +
                 " W=" + std::to_string(s.warmup_steps));
    const auto lrs = c["lrs"].get<std::vector<double>>();
    for (size_t k = 0; k < lrs.size(); ++k) EXPECT_EQ(s.lr(static_cast<int64_t>(k)), lrs[k]) << "step " << k;
  }
}

TEST(Schedule, WarmupResolution) {
  COTUNE_REQUIRE_GOLDEN_FILE("optim", "manifest.json");
  for (const auto& c : cases("warmup_resolution")) {
    const double w = c["warmup"];
    const int64_t total = c["total_steps"];
    EXPECT_EQ(train::resolve_warmup_value(w, total), c["warmup_steps"].get<int64_t>()) << w << " of " << total;
    // The two-field form (warmup_steps, warmup_ratio) of older transformers gives the same counts.
    if (w < 1) EXPECT_EQ(train::resolve_warmup(0, w, total), c["warmup_steps"].get<int64_t>());
    else EXPECT_EQ(train::resolve_warmup(static_cast<int64_t>(w), 0.3, total), c["warmup_steps"].get<int64_t>());
  }
}

TEST(Schedule, Basics) {
  train::Schedule s{train::ScheduleKind::linear, 1e-3, 10, 110};
  EXPECT_EQ(s.lr(0), 0.0);           // the first optimizer step of a warmup has lr 0
  EXPECT_EQ(s.lr(10), 1e-3);         // peak at the end of warmup
  EXPECT_EQ(s.lr(110), 0.0);         // 0 at the end
  EXPECT_EQ(s.lr(500), 0.0);         // and after
  EXPECT_THROW(train::parse_schedule("polynomial"), Error);
  EXPECT_EQ(train::schedule_name(train::parse_schedule("constant_with_warmup")), "constant_with_warmup");
  EXPECT_THROW(train::resolve_warmup_value(-1, 10), Error);
}

}  // namespace
}  // namespace cotune
