#include "track/svg_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

namespace cotune::track {

std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

namespace {

double nice_step(double range, int target) {
  const double raw = range / std::max(target, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double f = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  return f * mag;
}

std::string strip_zeros(std::string s) {
  if (s.find('.') == std::string::npos) return s;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi) || hi <= lo) return {lo};
  const double step = nice_step(hi - lo, target);
  std::vector<double> out;
  const double first = std::ceil(lo / step - 1e-9) * step;
  for (int i = 0;; ++i) {
    double v = first + i * step;
    if (v > hi + step * 1e-9) break;
    if (std::fabs(v) < step * 1e-9) v = 0;  // no "-0" or "1e-17" at zero
    out.push_back(v);
  }
  return out;
}

std::string tick_label(double v, double step) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  // Enough decimals to resolve the step (a nice step is 1, 2 or 5 x 10^k), so neighbouring labels always
  // differ: a loss axis spanning 11.9400 .. 11.9420 reads 11.9400, 11.9405, ... (not 1.194e1 five times).
  const int step_exp = static_cast<int>(std::floor(std::log10(step) + 1e-9));
  if (a >= 1e7 || (step < 1e-3 && a < 1)) {
    const int e = static_cast<int>(std::floor(std::log10(a) + 1e-9));
    const int decimals = std::clamp(e - step_exp, 0, 12);
    std::string m = strip_zeros(fmt::format("{:.{}f}", v / std::pow(10.0, e), decimals));
    return fmt::format("{}e{}", m, e);
  }
  if (a >= 1e4 && step >= 1000) {
    const int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step / 1000) + 1e-9)));
    return strip_zeros(fmt::format("{:.{}f}", v / 1000, decimals)) + "k";
  }
  return fmt::format("{:.{}f}", v, std::clamp(-step_exp, 0, 12));
}

std::vector<double> ema_smooth(const std::vector<double>& ys, double weight) {
  std::vector<double> out(ys.size());
  double last = 0;
  int n = 0;
  for (size_t i = 0; i < ys.size(); ++i) {
    if (!std::isfinite(ys[i])) {
      out[i] = ys[i];
      continue;
    }
    last = last * weight + (1 - weight) * ys[i];
    ++n;
    const double debias = 1 - std::pow(weight, n);
    out[i] = debias > 0 ? last / debias : ys[i];
  }
  return out;
}

std::string render_svg(const LineChart& c) {
  // Data bounds over every finite point.
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : c.series)
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  const bool empty = !std::isfinite(x0);
  if (empty) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (c.y_includes_zero) y0 = std::min(y0, 0.0), y1 = std::max(y1, 0.0);
  if (x1 <= x0) x0 -= 1, x1 += 1;
  if (y1 <= y0) {
    const double pad = y0 != 0 ? std::fabs(y0) * 0.1 : 1.0;
    y0 -= pad, y1 += pad;
  }
  // Widen the y range to whole ticks, with a little headroom so lines do not touch the frame.
  const double y_pad = (y1 - y0) * 0.04;
  const double ylo = (c.y_includes_zero && y0 >= 0) ? y0 : y0 - y_pad;
  const std::vector<double> yt_raw = nice_ticks(ylo, y1 + y_pad, 5);
  const double ystep = yt_raw.size() > 1 ? yt_raw[1] - yt_raw[0] : (y1 - y0);
  y0 = std::min(y0, std::floor(ylo / ystep + 1e-9) * ystep);
  y1 = std::max(y1, std::ceil((y1 + y_pad) / ystep - 1e-9) * ystep);
  const std::vector<double> yt = nice_ticks(y0, y1, 5);
  std::vector<double> xt = nice_ticks(x0, x1, 8);
  const double xstep_raw = xt.size() > 1 ? xt[1] - xt[0] : 1;
  if (xstep_raw < 1) xt = nice_ticks(x0, x1, static_cast<int>(x1 - x0));  // integer steps only
  const double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1;

  size_t label_chars = 1;
  for (double v : yt) label_chars = std::max(label_chars, tick_label(v, ystep).size());
  const double ml = 34 + 7.0 * static_cast<double>(label_chars), mr = 18, mt = 44, mb = 46;
  const double W = c.width, H = c.height, pw = W - ml - mr, ph = H - mt - mb;
  auto px = [&](double x) { return ml + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return mt + (1 - (y - y0) / (y1 - y0)) * ph; };

  std::string o;
  o += fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" "
      "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif\" "
      "font-size=\"12\" role=\"img\" aria-label=\"{}\">\n",
      W, H, W, H, xml_escape(c.title));
  o += fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>\n", W, H);
  o += fmt::format("<text x=\"{}\" y=\"24\" font-size=\"15\" font-weight=\"600\" fill=\"#111827\">{}</text>\n", ml,
                   xml_escape(c.title));

  // Grid and tick labels.
  o += "<g stroke=\"#e5e7eb\" stroke-width=\"1\">\n";
  for (double v : yt) o += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", ml, py(v), ml + pw, py(v));
  for (double v : xt) o += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", px(v), mt, px(v), mt + ph);
  o += "</g>\n";
  o += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"#9ca3af\"/>\n",
                   ml, mt, pw, ph);
  o += "<g fill=\"#4b5563\">\n";
  for (double v : yt)
    o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>\n",
                     ml - 6, py(v), tick_label(v, ystep));
  for (double v : xt)
    o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", px(v), mt + ph + 16,
                     tick_label(v, xstep));
  o += "</g>\n";
  o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#374151\">{}</text>\n", ml + pw / 2,
                   H - 8, xml_escape(c.x_label));
  o += fmt::format(
      "<text x=\"14\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#374151\" transform=\"rotate(-90 14 {:.1f})\">{}</text>\n",
      mt + ph / 2, mt + ph / 2, xml_escape(c.y_label));
  if (empty)
    o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#9ca3af\">no data</text>\n",
                     ml + pw / 2, mt + ph / 2);

  // Series, clipped to the plot area.
  // The clip id is unique per chart title: several charts inlined in one HTML page share an id space.
  std::string clip_id = "clip-";
  for (char ch : c.title)
    if (std::isalnum(static_cast<unsigned char>(ch))) clip_id.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
  o += fmt::format("<clipPath id=\"{}\"><rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\"/></clipPath>\n",
                   clip_id, ml - 6, mt - 6, pw + 12, ph + 12);  // room for markers on the frame
  o += fmt::format("<g clip-path=\"url(#{})\">\n", clip_id);
  for (const auto& s : c.series) {
    // Runs of finite points; a NaN (a diverged step) leaves a gap.
    std::vector<std::vector<std::pair<double, double>>> runs(1);
    for (const auto& [x, y] : s.points) {
      if (std::isfinite(x) && std::isfinite(y)) runs.back().push_back({px(x), py(y)});
      else if (!runs.back().empty()) runs.emplace_back();
    }
    for (const auto& run : runs) {
      if (run.empty()) continue;
      std::string d;
      for (size_t i = 0; i < run.size(); ++i) d += fmt::format("{}{:.1f},{:.1f}", i ? " L" : "M", run[i].first, run[i].second);
      if (s.fill && run.size() > 1)
        o += fmt::format("<path d=\"{} L{:.1f},{:.1f} L{:.1f},{:.1f} Z\" fill=\"{}\" fill-opacity=\"0.12\" stroke=\"none\"/>\n",
                         d, run.back().first, mt + ph, run.front().first, mt + ph, s.color);
      if (s.line_width > 0 && run.size() > 1)
        o += fmt::format(
            "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" stroke-opacity=\"{}\" "
            "stroke-linejoin=\"round\" stroke-linecap=\"round\"{}/>\n",
            d, s.color, s.line_width, s.opacity, s.dashed ? " stroke-dasharray=\"6 4\"" : "");
    }
    if (s.markers || (s.line_width > 0 && s.points.size() == 1)) {
      for (const auto& [x, y] : s.points) {
        if (!std::isfinite(x) || !std::isfinite(y)) continue;
        o += fmt::format(
            "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\" stroke=\"#ffffff\" stroke-width=\"1.5\">"
            "<title>{} step {}: {:.4g}</title></circle>\n",
            px(x), py(y), s.color, xml_escape(s.label), x, y);
      }
    }
  }
  o += "</g>\n";

  // Legend, top right inside the plot.
  std::vector<const ChartSeries*> legend;
  for (const auto& s : c.series)
    if (!s.label.empty()) legend.push_back(&s);
  if (!legend.empty()) {
    size_t chars = 0;
    for (const auto* s : legend) chars = std::max(chars, s->label.size());
    const double lw = 40 + 6.6 * static_cast<double>(chars), lh = 8 + 18.0 * static_cast<double>(legend.size());
    const double lx = ml + pw - lw - 8, ly = mt + 8;
    o += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" rx=\"4\" fill=\"#ffffff\" fill-opacity=\"0.9\" "
        "stroke=\"#e5e7eb\"/>\n",
        lx, ly, lw, lh);
    for (size_t i = 0; i < legend.size(); ++i) {
      const auto& s = *legend[i];
      const double yy = ly + 13 + 18.0 * static_cast<double>(i);
      if (s.line_width > 0)
        o += fmt::format(
            "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"{}\" "
            "stroke-opacity=\"{}\"{}/>\n",
            lx + 8, yy, lx + 30, yy, s.color, std::max(s.line_width, 1.5), s.opacity,
            s.dashed ? " stroke-dasharray=\"6 4\"" : "");
      if (s.markers) o += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\"/>\n", lx + 19, yy, s.color);
      o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" dominant-baseline=\"middle\" fill=\"#374151\">{}</text>\n", lx + 36,
                       yy, xml_escape(s.label));
    }
  }
  o += "</svg>\n";
  return o;
}

}  // namespace cotune::track
