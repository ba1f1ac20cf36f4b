#include "track/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "base/error.h"
#include "track/svg_chart.h"

namespace cotune::track {
namespace fs = std::filesystem;

std::string format_elapsed(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) return fmt::format("{:.1f}s", s);
  const auto t = static_cast<int64_t>(std::llround(s));
  if (t < 3600) return fmt::format("{}m {:02}s", t / 60, t % 60);
  return fmt::format("{}h {:02}m {:02}s", t / 3600, (t / 60) % 60, t % 60);
}

std::string format_thousands(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return n < 0 ? "-" + out : out;
}

RunTotals compute_totals(const History& h, const ReportInput& in) {
  RunTotals t;
  for (const auto& k : h.keys())
    for (const auto& p : h.series(k)) t.steps = std::max(t.steps, p.step);
  double tokens = 0;
  for (const auto& p : h.series("tokens"))
    if (std::isfinite(p.value)) tokens += p.value;
  t.tokens = static_cast<int64_t>(std::llround(tokens));
  if (in.elapsed_s) {
    t.elapsed_s = *in.elapsed_s;
  } else {
    // elapsed_s restarts with each resumed run: the time is the sum of each run's last value (a value below its
    // predecessor starts a new run), so the throughput divides all tokens by all the time that trained them.
    double previous = -1, segment = 0;
    for (const auto& p : h.series("elapsed_s")) {
      if (!std::isfinite(p.value)) continue;
      if (p.value < previous) t.elapsed_s += segment;
      segment = p.value;
      previous = p.value;
    }
    t.elapsed_s += segment;
  }
  if (t.elapsed_s > 0 && t.tokens > 0) {
    t.tokens_per_s = tokens / t.elapsed_s;
  } else if (h.has("tokens_per_s")) {  // no time logged: the mean of the per-step rates
    double sum = 0;
    for (const auto& p : h.series("tokens_per_s")) sum += p.value;
    t.tokens_per_s = sum / static_cast<double>(h.series("tokens_per_s").size());
  }
  const auto& loss = h.series("loss");
  for (const auto& p : loss)
    if (std::isfinite(p.value)) {
      if (!t.first_loss) t.first_loss = p.value;
      t.final_loss = p.value;
    }
  for (const auto& p : h.series("eval_loss")) {
    if (!std::isfinite(p.value)) continue;
    t.final_eval_loss = p.value;
    if (!t.best_eval_loss || p.value < *t.best_eval_loss) t.best_eval_loss = p.value, t.best_eval_step = p.step;
  }
  return t;
}

namespace {

ChartSeries make_series(std::string label, std::vector<std::pair<double, double>> points, std::string color,
                        double line_width) {
  ChartSeries s;
  s.label = std::move(label);
  s.points = std::move(points);
  s.color = std::move(color);
  s.line_width = line_width;
  return s;
}

std::vector<std::pair<double, double>> points_of(const History& h, std::string_view key) {
  std::vector<std::pair<double, double>> out;
  for (const auto& p : h.series(key)) out.emplace_back(static_cast<double>(p.step), p.value);
  return out;
}

std::string fmt_opt(const std::optional<double>& v, const char* f = "{:.4f}") {
  return v ? fmt::format(fmt::runtime(f), *v) : std::string("–");
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

void write_file_atomically(const fs::path& path, const std::string& content) {
  fs::path tmp = path;
  tmp += ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("cannot write {}: {}", tmp.string(), std::strerror(errno));
  const bool ok = std::fwrite(content.data(), 1, content.size(), f) == content.size();
  if (std::fclose(f) != 0 || !ok) fail("cannot write {}: {}", tmp.string(), std::strerror(errno));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail("cannot rename {} to {}: {}", tmp.string(), path.string(), ec.message());
}

// Metric names as people say them.
std::string pretty_key(const std::string& k) {
  static const std::pair<const char*, const char*> kNames[] = {
      {"loss", "train loss"}, {"lr", "learning rate"}, {"grad_norm", "grad norm"}, {"tokens", "tokens / step"},
      {"mean_token_accuracy", "token accuracy"}, {"tokens_per_s", "tokens / s"}, {"elapsed_s", "elapsed (s)"},
      {"eval_loss", "eval loss"}, {"eval_mean_token_accuracy", "eval token accuracy"}, {"epoch", "epoch"}};
  for (const auto& [a, b] : kNames)
    if (k == a) return b;
  return k;
}

std::string value_text(const std::string& key, double v) {
  if (!std::isfinite(v)) return fmt::format("{}", v);
  if (key == "lr" || std::fabs(v) < 1e-3) return v == 0 ? "0" : fmt::format("{:.3e}", v);
  if (v == std::floor(v) && std::fabs(v) < 1e15) return format_thousands(static_cast<int64_t>(v));
  return fmt::format("{:.4f}", v);
}

constexpr const char* kCss = R"CSS(
:root { --fg:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#f3f4f6; --card:#ffffff; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 40px; }
header { margin-bottom: 20px; }
h1 { font-size: 24px; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 15px; margin: 0 0 12px; color: #374151; font-weight: 600; }
.sub { color: var(--muted); }
.badge { display:inline-block; padding: 1px 10px; border-radius: 999px; font-size: 12px; font-weight: 600;
  background:#dcfce7; color:#166534; margin-right: 8px; vertical-align: 2px; }
.badge.stopped { background:#fef3c7; color:#92400e; }
.cards { display:grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 12px; margin-bottom: 16px; }
.card { background: var(--card); border-radius: 10px; padding: 14px 16px;
  box-shadow: 0 1px 2px rgba(0,0,0,.06), 0 1px 8px rgba(0,0,0,.04); }
.stat .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.stat .value { font-size: 22px; font-weight: 650; margin-top: 2px; font-variant-numeric: tabular-nums; }
.stat .note { color: var(--muted); font-size: 12px; }
.panel { margin-bottom: 16px; }
.grid2 { display:grid; grid-template-columns: 1fr 1fr; gap: 16px; margin-bottom: 16px; }
@media (max-width: 820px) { .grid2 { grid-template-columns: 1fr; } }
.grid2 .panel { margin-bottom: 0; }
svg { width: 100%; height: auto; display: block; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
td, th { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 500; width: 40%; }
td.mono, td code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px;
  overflow-wrap: anywhere; }
tr:last-child td, tr:last-child th { border-bottom: none; }
footer { color: var(--muted); font-size: 12px; margin-top: 20px; }
footer a { color: var(--accent); }
)CSS";

std::string stat_card(const std::string& label, const std::string& value, const std::string& note = "") {
  return fmt::format(
      "<div class=\"card stat\"><div class=\"label\">{}</div><div class=\"value\">{}</div>"
      "<div class=\"note\">{}</div></div>\n",
      xml_escape(label), xml_escape(value), note.empty() ? "&nbsp;" : xml_escape(note));
}

std::string kv_table(const std::vector<std::pair<std::string, std::string>>& rows) {
  std::string o = "<table>\n";
  for (const auto& [k, v] : rows)
    o += fmt::format("<tr><th>{}</th><td class=\"mono\">{}</td></tr>\n", xml_escape(k), xml_escape(v));
  return o + "</table>\n";
}

}  // namespace

std::string loss_chart_svg(const History& h) {
  LineChart c;
  c.title = "Loss";
  c.x_label = "optimizer step";
  c.y_label = "loss";
  c.width = 1000;  // drawn at about its own size in the report's full-width panel
  c.height = 380;
  auto train = points_of(h, "loss");
  if (train.size() >= 10) {
    // Raw loss faint underneath, a TensorBoard-style smoothed line on top: the trend is what people read.
    std::vector<double> ys;
    for (const auto& p : train) ys.push_back(p.second);
    const double w = train.size() < 50 ? 0.5 : train.size() < 500 ? 0.8 : 0.95;
    const auto sm = ema_smooth(ys, w);
    auto smoothed = train;
    for (size_t i = 0; i < sm.size(); ++i) smoothed[i].second = sm[i];
    c.series.push_back(make_series("train loss", train, "#93c5fd", 1.3));
    c.series.push_back(make_series("train loss (smoothed)", smoothed, "#2563eb", 2.4));
  } else {
    c.series.push_back(make_series("train loss", train, "#2563eb", 2.2));
    c.series.back().markers = train.size() < 10;  // a few points: show where they are
  }
  if (h.has("eval_loss")) {
    c.series.push_back(make_series("eval loss", points_of(h, "eval_loss"), "#ea580c", 2.0));
    c.series.back().dashed = true;
    c.series.back().markers = true;
  }
  return render_svg(c);
}

std::string lr_chart_svg(const History& h) {
  LineChart c;
  c.title = "Learning rate";
  c.x_label = "optimizer step";
  c.y_label = "learning rate";
  c.y_includes_zero = true;
  c.width = 500;  // half-width panels: a small viewBox keeps the text readable when scaled
  c.height = 300;
  c.series.push_back(make_series("", points_of(h, "lr"), "#059669", 2.2));
  c.series.back().fill = true;
  return render_svg(c);
}

std::string grad_norm_chart_svg(const History& h) {
  LineChart c;
  c.title = "Gradient norm (before clipping)";
  c.x_label = "optimizer step";
  c.y_label = "grad norm";
  c.y_includes_zero = true;
  c.width = 500;
  c.height = 300;
  c.series.push_back(make_series("", points_of(h, "grad_norm"), "#7c3aed", 1.8));
  return render_svg(c);
}

std::string report_html(const History& h, const ReportInput& in) {
  const RunTotals t = compute_totals(h, in);
  const bool stopped = in.status != "completed";
  std::string o;
  o += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  o += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  o += fmt::format("<title>{}</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n", xml_escape(in.title), kCss);

  o += "<header>\n";
  o += fmt::format("<h1>{}</h1>\n", xml_escape(in.title));
  o += fmt::format("<div class=\"sub\"><span class=\"badge{}\">{}</span>{}{}{}</div>\n", stopped ? " stopped" : "",
                   xml_escape(in.status), xml_escape(in.subtitle), in.subtitle.empty() ? "" : " · ",
                   xml_escape(in.generated_at.empty() ? utc_now() : in.generated_at));
  o += "</header>\n";

  // Headline numbers.
  o += "<section class=\"cards\">\n";
  const std::string steps = in.total_steps ? fmt::format("{} / {}", t.steps, *in.total_steps) : std::to_string(t.steps);
  o += stat_card("steps", steps, h.last("epoch") ? fmt::format("epoch {:.2f}", *h.last("epoch")) : "");
  o += stat_card("final train loss", fmt_opt(t.final_loss),
                 t.first_loss ? fmt::format("from {:.4f}", *t.first_loss) : "");
  if (t.best_eval_loss)
    o += stat_card("best eval loss", fmt_opt(t.best_eval_loss), fmt::format("at step {}", t.best_eval_step));
  o += stat_card("tokens trained", format_thousands(t.tokens), "counted predictions");
  o += stat_card("throughput", t.tokens_per_s > 0 ? fmt::format("{} tok/s", format_thousands(std::llround(t.tokens_per_s))) : "–");
  o += stat_card("time", t.elapsed_s > 0 ? format_elapsed(t.elapsed_s) : "–");
  o += "</section>\n";

  o += "<section class=\"card panel\">\n" + loss_chart_svg(h) + "</section>\n";
  if (h.has("grad_norm")) {
    o += "<div class=\"grid2\">\n";
    o += "<section class=\"card panel\">\n" + lr_chart_svg(h) + "</section>\n";
    o += "<section class=\"card panel\">\n" + grad_norm_chart_svg(h) + "</section>\n";
    o += "</div>\n";
  } else {
    o += "<section class=\"card panel\">\n" + lr_chart_svg(h) + "</section>\n";
  }

  // Settings beside the summary and the last logged values.
  std::vector<std::pair<std::string, std::string>> summary = {
      {"status", in.status},
      {"steps", steps},
      {"tokens trained", format_thousands(t.tokens)},
      {"throughput", t.tokens_per_s > 0 ? fmt::format("{:.1f} tokens/s", t.tokens_per_s) : "–"},
      {"time taken", t.elapsed_s > 0 ? format_elapsed(t.elapsed_s) : "–"},
  };
  if (t.final_eval_loss) summary.push_back({"final eval loss", fmt_opt(t.final_eval_loss)});
  for (const auto& f : in.facts) summary.push_back(f);
  std::vector<std::pair<std::string, std::string>> last_values;
  // The numbers people look for first, then anything else alphabetically.
  std::vector<std::string> keys = {"loss", "eval_loss", "mean_token_accuracy", "eval_mean_token_accuracy", "lr",
                                   "grad_norm", "tokens", "tokens_per_s", "epoch", "elapsed_s"};
  std::erase_if(keys, [&](const std::string& k) { return !h.has(k); });
  for (const auto& k : h.keys())
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  for (const auto& k : keys) {
    const auto& s = h.series(k);
    last_values.push_back({pretty_key(k), fmt::format("{}  (step {})", value_text(k, s.back().value), s.back().step)});
  }

  o += "<div class=\"grid2\">\n";
  o += "<section class=\"card panel\"><h2>Settings</h2>\n" +
       (in.settings.empty() ? std::string("<p class=\"sub\">none recorded</p>\n") : kv_table(in.settings)) + "</section>\n";
  o += "<section class=\"card panel\"><h2>Summary</h2>\n" + kv_table(summary);
  if (!last_values.empty()) o += "<h2 style=\"margin-top:16px\">Last logged values</h2>\n" + kv_table(last_values);
  o += "</section>\n</div>\n";

  o += "<footer>Written by cotune. Plots: <a href=\"loss.svg\">loss.svg</a> · <a href=\"lr.svg\">lr.svg</a>";
  if (h.has("grad_norm")) o += " · <a href=\"grad_norm.svg\">grad_norm.svg</a>";
  o += " · every step: <code>../metrics.jsonl</code>; TensorBoard: <code>tensorboard --logdir ../tb</code></footer>\n";
  o += "</main>\n</body>\n</html>\n";
  return o;
}

ReportFiles write_report(const fs::path& output_dir, const History& h, const ReportInput& in) {
  ReportFiles f;
  f.dir = output_dir / "report";
  std::error_code ec;
  fs::create_directories(f.dir, ec);
  if (ec) fail("cannot create report directory {}: {}", f.dir.string(), ec.message());
  f.loss_svg = f.dir / "loss.svg";
  f.lr_svg = f.dir / "lr.svg";
  f.index_html = f.dir / "index.html";
  write_file_atomically(f.loss_svg, loss_chart_svg(h));
  write_file_atomically(f.lr_svg, lr_chart_svg(h));
  if (h.has("grad_norm")) {
    f.grad_norm_svg = f.dir / "grad_norm.svg";
    write_file_atomically(*f.grad_norm_svg, grad_norm_chart_svg(h));
  }
  write_file_atomically(f.index_html, report_html(h, in));
  return f;
}

std::string summary_table(const History& h, const ReportInput& in, const fs::path& report_path) {
  const RunTotals t = compute_totals(h, in);
  std::vector<std::pair<std::string, std::string>> rows;
  rows.push_back({"status", in.status});
  rows.push_back({"steps", in.total_steps ? fmt::format("{} / {}", t.steps, *in.total_steps) : std::to_string(t.steps)});
  if (t.final_loss) rows.push_back({"train loss", fmt::format("{:.4f} -> {:.4f}", *t.first_loss, *t.final_loss)});
  if (t.best_eval_loss)
    rows.push_back({"eval loss", fmt::format("{:.4f} (best, step {}); last {:.4f}", *t.best_eval_loss, t.best_eval_step,
                                             *t.final_eval_loss)});
  rows.push_back({"tokens", format_thousands(t.tokens)});
  if (t.tokens_per_s > 0) rows.push_back({"throughput", fmt::format("{:.1f} tokens/s", t.tokens_per_s)});
  if (t.elapsed_s > 0) rows.push_back({"time", format_elapsed(t.elapsed_s)});
  for (const auto& f : in.facts) rows.push_back(f);
  if (!report_path.empty()) rows.push_back({"report", report_path.string()});
  size_t kw = 0;
  for (const auto& r : rows) kw = std::max(kw, r.first.size());
  std::string o = "-- run summary " + std::string(36, '-') + "\n";
  for (const auto& [k, v] : rows) o += fmt::format("  {:<{}}  {}\n", k, kw, v);
  return o;
}

}  // namespace cotune::track
