#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>

#include "temp_dir.h"
#include "track/report.h"
#include "track/svg_chart.h"

namespace cotune::track {
namespace {
namespace fs = std::filesystem;

size_t count_of(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t i = s.find(what); i != std::string::npos; i = s.find(what, i + 1)) ++n;
  return n;
}

// A "nan" or "inf" printed as a number (a coordinate that escaped the finite checks).
bool has_non_finite(const std::string& svg) {
  static const std::regex re(R"((^|[^a-z])-?(nan|inf)([^a-z]|$))", std::regex::icase);
  return std::regex_search(svg, re);
}

History sample_history(int steps, bool with_eval) {
  History h;
  for (int s = 1; s <= steps; ++s) {
    const double lr = s <= 5 ? 2e-4 * (s - 1) / 5 : 2e-4 * (steps - s) / (steps - 5);
    h.add(s, {{"loss", 2.5 * std::exp(-0.02 * s) + 0.05 * std::sin(s)}, {"lr", lr}, {"grad_norm", 0.4 + 0.1 * std::cos(s)},
              {"tokens", 1000}, {"elapsed_s", 2.0 * s}, {"epoch", s / 40.0}});
    if (with_eval && s % 10 == 0) h.add(s, {{"eval_loss", 2.6 * std::exp(-0.018 * s)}});
  }
  return h;
}

TEST(Chart, NiceTicks) {
  const auto unit = nice_ticks(0, 1, 5);
  const std::vector<double> expected_unit = {0, 0.2, 0.4, 0.6, 0.8, 1.0};
  ASSERT_EQ(unit.size(), expected_unit.size());
  for (size_t i = 0; i < unit.size(); ++i) EXPECT_NEAR(unit[i], expected_unit[i], 1e-12);
  EXPECT_EQ(nice_ticks(1, 60, 8), (std::vector<double>{10, 20, 30, 40, 50, 60}));
  const auto lr = nice_ticks(0, 2e-4, 5);
  ASSERT_EQ(lr.size(), 5u);
  EXPECT_DOUBLE_EQ(lr[1], 5e-5);
  EXPECT_EQ(nice_ticks(3, 3, 5).size(), 1u);  // degenerate range: no endless loop
}

TEST(Chart, TickLabels) {
  EXPECT_EQ(tick_label(0, 5e-5), "0");
  EXPECT_EQ(tick_label(5e-5, 5e-5), "5e-5");
  EXPECT_EQ(tick_label(1.5e-4, 5e-5), "1.5e-4");
  EXPECT_EQ(tick_label(2e-4, 5e-5), "2e-4");
  EXPECT_EQ(tick_label(1.25, 0.05), "1.25");
  EXPECT_EQ(tick_label(1.5, 0.5), "1.5");
  EXPECT_EQ(tick_label(40, 10), "40");
  EXPECT_EQ(tick_label(20000, 5000), "20k");
}

// Issue 14: a loss that barely moves (11.9400 .. 11.9420) got five ticks all reading "1.194e1".
TEST(Chart, TickLabelsDistinctOnASmallRange) {
  for (const auto& [lo, hi] : std::vector<std::pair<double, double>>{{11.94, 11.942}, {11.9401, 11.94012},
                                                                      {0.5, 0.50001}, {2e-4, 2.00001e-4}, {1e8, 1e8 + 3}}) {
    const auto ticks = nice_ticks(lo, hi, 5);
    ASSERT_GE(ticks.size(), 2u) << lo;
    const double step = ticks[1] - ticks[0];
    std::vector<std::string> labels;
    for (double v : ticks) labels.push_back(tick_label(v, step));
    for (size_t i = 1; i < labels.size(); ++i) EXPECT_NE(labels[i], labels[i - 1]) << lo << ": " << labels[i];
  }
  EXPECT_EQ(tick_label(11.9405, 0.0005), "11.9405");
  // The whole chart: its y labels differ too.
  LineChart c;
  c.title = "Loss";
  c.series.push_back({.label = "loss", .points = {{1, 11.9401}, {2, 11.9405}, {3, 11.9412}}});
  const std::string svg = render_svg(c);
  EXPECT_EQ(svg.find("1.194e1"), std::string::npos);
  EXPECT_NE(svg.find("11.94"), std::string::npos);
}

TEST(Chart, EmaSmoothing) {
  const auto s = ema_smooth({1, 1, 1}, 0.9);
  for (double v : s) EXPECT_NEAR(v, 1.0, 1e-12);  // debiased: a constant stays constant
  const auto t = ema_smooth({0, 10}, 0.5);
  EXPECT_NEAR(t[1], (0.25 * 0 + 0.5 * 10) / 0.75, 1e-12);
}

TEST(Chart, SvgHasAxesSeriesAndLegend) {
  LineChart c;
  c.title = "Loss <train>";
  c.x_label = "step";
  c.y_label = "loss";
  c.series.push_back({.label = "train", .points = {{1, 2.0}, {2, 1.5}, {3, NAN}, {4, 1.2}, {5, 1.1}}});
  c.series.push_back({.label = "eval", .points = {{2, 1.7}, {4, 1.4}}, .color = "#ea580c", .markers = true});
  const std::string svg = render_svg(c);
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("Loss &lt;train&gt;"), std::string::npos);  // escaped
  EXPECT_EQ(svg.find("<train>"), std::string::npos);
  // The NaN splits the train line into two paths (1-2 and 4-5); the eval line is one more.
  EXPECT_EQ(count_of(svg, "<path d=\"M"), 3u);
  EXPECT_EQ(count_of(svg, "<circle"), 2u + 1u);  // two eval markers + one in the legend
  EXPECT_NE(svg.find(">step</text>"), std::string::npos);
  EXPECT_NE(svg.find("rotate(-90"), std::string::npos);  // the y label
  EXPECT_FALSE(has_non_finite(svg));
}

TEST(Chart, EmptyAndSinglePoint) {
  LineChart c;
  c.title = "Empty";
  EXPECT_NE(render_svg(c).find("no data"), std::string::npos);
  c.series.push_back({.label = "one", .points = {{5, 1.0}}});
  const std::string svg = render_svg(c);
  EXPECT_FALSE(has_non_finite(svg));
  EXPECT_NE(svg.find("<circle"), std::string::npos);  // a lone point is drawn as a dot
}

TEST(Report, Totals) {
  const History h = sample_history(60, true);
  const RunTotals t = compute_totals(h, {});
  EXPECT_EQ(t.steps, 60);
  EXPECT_EQ(t.tokens, 60000);
  EXPECT_DOUBLE_EQ(t.elapsed_s, 120);
  EXPECT_DOUBLE_EQ(t.tokens_per_s, 500);
  ASSERT_TRUE(t.best_eval_loss.has_value());
  EXPECT_EQ(t.best_eval_step, 60);
  ReportInput in;
  in.elapsed_s = 60;
  EXPECT_DOUBLE_EQ(compute_totals(h, in).tokens_per_s, 1000);
}

// Issue 14: after a resume the history holds the first run's steps (tokens and elapsed_s up to the checkpoint)
// and the resumed run's. Throughput divides all tokens by all the time, whether elapsed_s restarted at 0 (older
// metrics files) or continued from the checkpoint (the trainer now stores it in trainer_state.json).
TEST(Report, ThroughputAfterResume) {
  History restarted, continued;
  for (int s = 1; s <= 60; ++s) {
    const double t = s <= 30 ? 2.0 * s : 2.0 * (s - 30);  // 30 steps in 60 s, resumed: 30 steps in 60 s
    restarted.add(s, {{"tokens", 1000}, {"elapsed_s", t}});
    continued.add(s, {{"tokens", 1000}, {"elapsed_s", 2.0 * s}});
  }
  for (const History* h : {&restarted, &continued}) {
    const RunTotals t = compute_totals(*h, {});
    EXPECT_EQ(t.tokens, 60000);
    EXPECT_DOUBLE_EQ(t.elapsed_s, 120);
    EXPECT_DOUBLE_EQ(t.tokens_per_s, 500);
  }
}

TEST(Report, WritesFilesAndHtml) {
  testing::TempDir dir;
  ReportInput in;
  in.title = "demo <run>";
  in.settings = {{"model", "org/name"}, {"lora_r", "16"}, {"learning_rate", "2e-4"}};
  in.facts = {{"device", "cpu"}};
  in.total_steps = 60;
  in.generated_at = "2026-01-01 00:00 UTC";
  const History h = sample_history(60, true);
  const ReportFiles f = write_report(dir.path(), h, in);
  for (const auto& p : {f.index_html, f.loss_svg, f.lr_svg}) EXPECT_TRUE(fs::is_regular_file(p)) << p;
  ASSERT_TRUE(f.grad_norm_svg.has_value());
  EXPECT_TRUE(fs::is_regular_file(*f.grad_norm_svg));
  for (const auto& e : fs::directory_iterator(f.dir)) EXPECT_NE(e.path().extension(), ".tmp") << e.path();

  std::ifstream in_html(f.index_html);
  const std::string html((std::istreambuf_iterator<char>(in_html)), std::istreambuf_iterator<char>());
  EXPECT_NE(html.find("<title>demo &lt;run&gt;</title>"), std::string::npos);
  EXPECT_NE(html.find("lora_r"), std::string::npos);
  EXPECT_NE(html.find("60 / 60"), std::string::npos);
  EXPECT_NE(html.find("60,000"), std::string::npos);   // tokens
  EXPECT_NE(html.find("500 tok/s"), std::string::npos);
  EXPECT_NE(html.find("2m 00s"), std::string::npos);   // time taken
  EXPECT_NE(html.find("eval loss"), std::string::npos);
  // Self-contained: the plots are inline and nothing is fetched from elsewhere.
  EXPECT_EQ(count_of(html, "<svg "), 3u);
  EXPECT_EQ(html.find("http://www.w3.org/2000/svg") != std::string::npos, true);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  // Distinct clip ids for the inline plots.
  std::regex clip(R"(clipPath id="([^"]+)\")");
  std::set<std::string> ids;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), clip); it != std::sregex_iterator(); ++it)
    ids.insert((*it)[1]);
  EXPECT_EQ(ids.size(), 3u);
}

TEST(Report, SummaryTable) {
  ReportInput in;
  in.total_steps = 60;
  in.status = "stopped at step 30 (Ctrl-C)";
  const std::string t = summary_table(sample_history(30, false), in, "out/report/index.html");
  EXPECT_NE(t.find("steps       30 / 60"), std::string::npos) << t;
  EXPECT_NE(t.find("stopped at step 30"), std::string::npos) << t;
  EXPECT_NE(t.find("tokens      30,000"), std::string::npos) << t;
  EXPECT_NE(t.find("throughput  500.0 tokens/s"), std::string::npos) << t;
  EXPECT_NE(t.find("report      out/report/index.html"), std::string::npos) << t;
  EXPECT_EQ(t.find("eval loss"), std::string::npos) << t;  // none logged
}

TEST(Report, Formatting) {
  EXPECT_EQ(format_elapsed(7.3), "7.3s");
  EXPECT_EQ(format_elapsed(245), "4m 05s");
  EXPECT_EQ(format_elapsed(3723), "1h 02m 03s");
  EXPECT_EQ(format_thousands(1234567), "1,234,567");
  EXPECT_EQ(format_thousands(999), "999");
  EXPECT_EQ(format_thousands(-1000), "-1,000");
}

}  // namespace
}  // namespace cotune::track
