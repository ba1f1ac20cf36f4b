// Line charts as standalone SVG (the report's plots; no plotting library, readable in any browser).
//
//   cotune::track::LineChart c;
//   c.title = "Loss"; c.x_label = "step"; c.y_label = "loss";
//   cotune::track::ChartSeries s;
//   s.label = "train"; s.points = {{1, 2.3}, {2, 2.1}}; s.color = "#2563eb";
//   c.series.push_back(s);
//   std::string svg = cotune::track::render_svg(c);
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cotune::track {

struct ChartSeries {
  std::string label;                              // legend text; empty: not in the legend
  std::vector<std::pair<double, double>> points;  // (x, y); a non-finite y breaks the line
  std::string color = "#2563eb";
  double line_width = 2.0;   // 0: no line
  double opacity = 1.0;
  bool dashed = false;
  bool markers = false;      // a dot at every point (evaluations)
  bool fill = false;         // shade the area under the line (to the bottom of the plot)
};

struct LineChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  int width = 760;
  int height = 340;
  bool y_includes_zero = false;  // learning rates: show the warmup from 0
  std::vector<ChartSeries> series;
};

std::string render_svg(const LineChart& chart);

// Round tick values covering [lo, hi] (about `target` of them, steps of 1, 2 or 5 times a power of ten).
std::vector<double> nice_ticks(double lo, double hi, int target);
// A tick label: "0", "0.5", "1.25", "2e-4", "1.5e-5", "12k".
std::string tick_label(double value, double tick_step);

// Exponential moving average (TensorBoard-style smoothing with debiasing), same length as `ys`.
std::vector<double> ema_smooth(const std::vector<double>& ys, double weight);

// Escapes &, <, >, " and ' for XML / HTML text and attributes.
std::string xml_escape(std::string_view s);

}  // namespace cotune::track
