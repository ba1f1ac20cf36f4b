#include "infer/evaluate.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "base/error.h"
#include "base/fs.h"
#include "base/mmap.h"
#include "data/source.h"

namespace cotune::infer {

namespace fs = std::filesystem;

double HeldOutLoss::perplexity() const { return std::exp(mean()); }

HeldOutLoss held_out_loss(const model::Qwen2Model& model, const model::LoraWeights* lora,
                          const data::TokenizedDataset& ds, const std::vector<int64_t>& indices, data::LossMask mask,
                          int64_t max_tokens) {
  std::vector<int64_t> idx = indices;
  if (idx.empty())
    for (size_t i = 0; i < ds.size(); ++i) idx.push_back(static_cast<int64_t>(i));
  HeldOutLoss r;
  if (idx.empty()) return r;
  int64_t longest = 0;
  for (int64_t i : idx) {
    if (i < 0 || static_cast<size_t>(i) >= ds.size()) fail("held-out loss: sequence {} of a {}-sequence dataset", i, ds.size());
    longest = std::max(longest, ds.length(static_cast<size_t>(i)));
  }
  if (max_tokens <= 0) max_tokens = std::max<int64_t>(longest, 2048);
  if (longest > max_tokens) fail("held-out loss: a sequence of {} tokens exceeds the budget of {}", longest, max_tokens);
  model::RunnerOptions ro;
  ro.max_tokens = max_tokens;
  ro.training = false;
  // The runner takes a mutable pointer for its training path; a forward-only runner never writes the weights.
  model::Qwen2Runner runner(model, const_cast<model::LoraWeights*>(lora), ro);
  data::BatchOptions bo;
  bo.max_tokens = max_tokens;
  bo.packing = true;
  bo.mask = mask;
  bo.shuffle = false;
  std::vector<int64_t> group;
  int64_t group_tokens = 0;
  auto flush = [&] {
    if (group.empty()) return;
    data::Batch b = data::make_batch(ds, group, bo);
    model::PackedBatch pb;
    pb.input_ids = b.input_ids;
    pb.position_ids = b.position_ids;
    pb.targets = b.targets;
    pb.cu_seqlens = b.cu_seqlens;
    model::StepStats st = runner.forward_backward(pb, /*backward=*/false, 1.0f);
    r.loss_sum += st.loss_sum;
    r.tokens += st.counted;
    r.sequences += static_cast<int64_t>(group.size());
    group.clear();
    group_tokens = 0;
  };
  for (int64_t i : idx) {
    const int64_t len = ds.length(static_cast<size_t>(i));
    if (group_tokens + len > max_tokens) flush();
    group.push_back(i);
    group_tokens += len;
  }
  flush();
  return r;
}

namespace {
std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}
}  // namespace

bool prompt_opens_think(std::string_view prompt) {
  std::string_view t = trim(prompt);
  return t.size() >= 7 && t.substr(t.size() - 7) == "<think>";
}

ThinkSplit split_think(std::string_view text, bool opened_in_prompt) {
  ThinkSplit s;
  std::string_view t = trim(text);
  s.opened = opened_in_prompt;
  if (t.substr(0, 7) == "<think>") {
    s.opened = true;
    t.remove_prefix(7);
  }
  const size_t close = t.find("</think>");
  if (close != std::string_view::npos) {
    s.closed = true;
    s.opened = true;
    s.reasoning = std::string(trim(t.substr(0, close)));
    s.answer = std::string(trim(t.substr(close + 8)));
  } else if (s.opened) {
    s.reasoning = std::string(trim(t));
  } else {
    s.answer = std::string(trim(t));
  }
  return s;
}

std::vector<Question> read_questions(const std::string& data_path, const text::PromptTemplate& tpl,
                                     const data::Selection& selection, int64_t n, data::OnBadRecord policy) {
  if (tpl.prompt_fields().empty() && tpl.prompt_source().empty())
    fail("template {} has no prompt: questions need a template with a \"prompt\" text", tpl.name());
  std::vector<Question> out;
  if (n <= 0) return out;
  const std::vector<std::string>& fields = tpl.fields();
  int64_t first = 0, last = INT64_MAX;
  if (selection.needs_row_count()) {
    data::RecordSource counter(data_path, fields, data::OnBadRecord::skip);
    data::Record r;
    while (counter.next(r)) {}
    std::tie(first, last) = selection.resolve(counter.rows_read());
  } else {
    first = selection.begin;
    if (selection.end) last = *selection.end;
  }
  data::RecordSource src(data_path, fields, policy);
  src.set_row_range(first, last);
  data::Record rec;
  while (static_cast<int64_t>(out.size()) < n && src.next(rec)) {
    std::map<std::string, std::string> values;
    for (size_t i = 0; i < fields.size(); ++i) values[fields[i]] = rec.values[i];
    Question q;
    q.row = rec.row;
    q.prompt = tpl.format_prompt(values);
    q.question = tpl.prompt_fields().empty() ? q.prompt : values[tpl.prompt_fields().front()];
    for (const auto& f : fields)
      if (std::find(tpl.prompt_fields().begin(), tpl.prompt_fields().end(), f) == tpl.prompt_fields().end())
        q.reference.emplace_back(f, values[f]);
    out.push_back(std::move(q));
  }
  return out;
}

std::vector<GenerationOutput> answer_questions(Generator& gen, const text::Tokenizer& tok,
                                               const std::vector<Question>& questions, const GenerationOptions& opts,
                                               const StreamCallback& on_text) {
  std::vector<std::string> prompts;
  for (const auto& q : questions) prompts.push_back(q.prompt);
  if (prompts.empty()) return {};
  return gen.generate_text(tok, prompts, opts, on_text);
}

// ---- report -----------------------------------------------------------------------------------------------

namespace {

nlohmann::ordered_json loss_json(const std::optional<HeldOutLoss>& l) {
  if (!l) return nullptr;
  nlohmann::ordered_json j;
  j["loss"] = l->mean();
  j["perplexity"] = l->perplexity();
  j["tokens"] = l->tokens;
  j["sequences"] = l->sequences;
  return j;
}

nlohmann::ordered_json output_json(const GenerationOutput& o, bool opened) {
  ThinkSplit s = split_think(o.text, opened);
  nlohmann::ordered_json j;
  j["text"] = o.text;
  j["reasoning"] = s.reasoning;
  j["answer"] = s.answer;
  j["think_closed"] = s.closed;
  j["finish_reason"] = o.finish_reason;
  j["new_tokens"] = o.ids.size();
  j["tokens_per_s"] = o.tokens_per_s;
  return j;
}

std::string read_text_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path loss_svg_of(const ComparisonReport& r) {
  if (r.training_output.empty()) return {};
  fs::path p = fs::path(r.training_output) / "report" / "loss.svg";
  return fs::exists(p) ? p : fs::path();
}

std::string fmt_loss(const std::optional<HeldOutLoss>& l) {
  return l ? fmt::format("{:.4f}", l->mean()) : std::string("–");
}
std::string fmt_ppl(const std::optional<HeldOutLoss>& l) {
  return l ? fmt::format("{:.2f}", l->perplexity()) : std::string("–");
}

std::string sampling_line(const GenerationOptions& g) {
  const auto& s = g.sampling;
  if (!s.do_sample)
    return fmt::format("greedy, max_new_tokens {}, repetition_penalty {}", g.max_new_tokens, s.repetition_penalty);
  return fmt::format("sampling: temperature {}, top_p {}, top_k {}, repetition_penalty {}, seed {}, max_new_tokens {}",
                     s.temperature, s.top_p, s.top_k, s.repetition_penalty, s.seed, g.max_new_tokens);
}

// Markdown block quote of multi-line text.
std::string quote(std::string_view text) {
  if (trim(text).empty()) return "> *(empty)*\n";
  std::string out = "> ";
  for (char c : text) {
    out += c;
    if (c == '\n') out += "> ";
  }
  return out + "\n";
}

}  // namespace

std::string html_escape(std::string_view s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string report_json(const ComparisonReport& r) {
  nlohmann::ordered_json j;
  j["title"] = r.title;
  j["model"] = r.model;
  j["adapter"] = r.adapter.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.adapter);
  j["data"] = r.data;
  j["template"] = r.template_name;
  j["held_out"]["before"] = loss_json(r.loss_before);
  j["held_out"]["after"] = loss_json(r.loss_after);
  j["generation"] = sampling_line(r.generation);
  j["samples"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < r.questions.size(); ++i) {
    const Question& q = r.questions[i];
    const bool opened = prompt_opens_think(q.prompt);
    nlohmann::ordered_json s;
    s["row"] = q.row;
    s["question"] = q.question;
    s["prompt"] = q.prompt;
    for (const auto& [k, v] : q.reference) s["reference"][k] = v;
    s["before"] = i < r.before.size() ? output_json(r.before[i], opened) : nlohmann::ordered_json(nullptr);
    s["after"] = i < r.after.size() ? output_json(r.after[i], opened) : nlohmann::ordered_json(nullptr);
    j["samples"].push_back(s);
  }
  fs::path svg = loss_svg_of(r);
  j["loss_curve"] = svg.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(svg.string());
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

std::string report_markdown(const ComparisonReport& r, const std::string& out_dir) {
  std::string md = "# " + r.title + "\n\n";
  md += "- model: `" + r.model + "`\n";
  if (!r.adapter.empty()) md += "- adapter: `" + r.adapter + "`\n";
  if (!r.data.empty()) md += "- data: `" + r.data + "`\n";
  if (!r.template_name.empty()) md += "- template: `" + r.template_name + "`\n";
  md += "- generation: " + sampling_line(r.generation) + "\n\n";
  if (r.loss_before || r.loss_after) {
    md += "## Held-out loss\n\n| | loss | perplexity | tokens |\n|---|---:|---:|---:|\n";
    if (r.loss_before)
      md += fmt::format("| before (base) | {} | {} | {} |\n", fmt_loss(r.loss_before), fmt_ppl(r.loss_before), r.loss_before->tokens);
    if (r.loss_after)
      md += fmt::format("| after (base + adapter) | {} | {} | {} |\n", fmt_loss(r.loss_after), fmt_ppl(r.loss_after), r.loss_after->tokens);
    md += "\n";
  }
  fs::path svg = loss_svg_of(r);
  if (!svg.empty()) {
    std::error_code ec;
    fs::path rel = fs::relative(svg, out_dir, ec);
    md += "## Training curves\n\n![training loss](" + (ec || rel.empty() ? svg.string() : rel.string()) + ")\n\n";
  }
  if (!r.questions.empty()) md += "## Answers\n\n";
  for (size_t i = 0; i < r.questions.size(); ++i) {
    const Question& q = r.questions[i];
    const bool opened = prompt_opens_think(q.prompt);
    md += fmt::format("### Question {} (row {})\n\n", i + 1, q.row) + quote(q.question) + "\n";
    auto side = [&](const char* label, const std::vector<GenerationOutput>& outs) {
      if (i >= outs.size()) return;
      ThinkSplit s = split_think(outs[i].text, opened);
      md += fmt::format("#### {}\n\n", label);
      if (s.opened) md += "<details><summary>Reasoning</summary>\n\n" + quote(s.reasoning) + "\n</details>\n\n";
      md += "**Answer**" + std::string(s.closed || !s.opened ? "" : " *(reasoning did not finish)*") + "\n\n" +
            quote(s.answer) + "\n";
      md += fmt::format("*{} tokens, {}, {:.1f} tokens/s*\n\n", outs[i].ids.size(), outs[i].finish_reason,
                        outs[i].tokens_per_s);
    };
    side("Before (base)", r.before);
    side("After (base + adapter)", r.after);
    for (const auto& [k, v] : q.reference)
      md += "<details><summary>Reference: " + k + "</summary>\n\n" + quote(v) + "\n</details>\n\n";
  }
  return md;
}

std::string report_html(const ComparisonReport& r) {
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + html_escape(r.title) +
                  "</title>\n<style>\n"
                  "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}\n"
                  "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right}\n"
                  "th:first-child,td:first-child{text-align:left}\n"
                  ".q{background:#f4f6f8;padding:.6em 1em;border-left:4px solid #4a7bd0;white-space:pre-wrap}\n"
                  ".pair{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1em;margin:.8em 0 2em}\n"
                  "@media (max-width:820px){.pair{grid-template-columns:minmax(0,1fr)}}\n"
                  ".side{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;overflow-wrap:anywhere}\n"
                  ".side h4{margin:.2em 0 .5em}.think{color:#555;background:#fafafa;white-space:pre-wrap;"
                  "font-size:.92em;border-left:3px solid #bbb;padding:.3em .8em}\n"
                  ".answer{white-space:pre-wrap}.meta{color:#888;font-size:.85em}\n"
                  "details summary{cursor:pointer;color:#456}.ref{white-space:pre-wrap;color:#333;overflow-wrap:anywhere}\n"
                  ".curve svg{max-width:100%;height:auto}\n"
                  "</style></head><body>\n";
  h += "<h1>" + html_escape(r.title) + "</h1>\n<ul>\n<li>model: <code>" + html_escape(r.model) + "</code></li>\n";
  if (!r.adapter.empty()) h += "<li>adapter: <code>" + html_escape(r.adapter) + "</code></li>\n";
  if (!r.data.empty()) h += "<li>data: <code>" + html_escape(r.data) + "</code></li>\n";
  if (!r.template_name.empty()) h += "<li>template: <code>" + html_escape(r.template_name) + "</code></li>\n";
  h += "<li>generation: " + html_escape(sampling_line(r.generation)) + "</li>\n</ul>\n";
  if (r.loss_before || r.loss_after) {
    h += "<h2>Held-out loss</h2>\n<table><tr><th></th><th>loss</th><th>perplexity</th><th>tokens</th></tr>\n";
    if (r.loss_before)
      h += fmt::format("<tr><td>before (base)</td><td>{}</td><td>{}</td><td>{}</td></tr>\n", fmt_loss(r.loss_before),
                       fmt_ppl(r.loss_before), r.loss_before->tokens);
    if (r.loss_after)
      h += fmt::format("<tr><td>after (base + adapter)</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                       fmt_loss(r.loss_after), fmt_ppl(r.loss_after), r.loss_after->tokens);
    h += "</table>\n";
  }
  fs::path svg = loss_svg_of(r);
  if (!svg.empty()) {
    std::string s = read_text_file(svg);
    if (s.rfind("<?xml", 0) == 0) s.erase(0, s.find("?>") + 2);
    h += "<h2>Training curves</h2>\n<div class=\"curve\">" + s + "</div>\n";
  }
  if (!r.questions.empty()) h += "<h2>Answers</h2>\n";
  for (size_t i = 0; i < r.questions.size(); ++i) {
    const Question& q = r.questions[i];
    const bool opened = prompt_opens_think(q.prompt);
    h += fmt::format("<h3>Question {} <span class=\"meta\">(row {})</span></h3>\n", i + 1, q.row);
    h += "<div class=\"q\">" + html_escape(q.question) + "</div>\n<div class=\"pair\">\n";
    auto side = [&](const char* label, const std::vector<GenerationOutput>& outs) {
      h += "<div class=\"side\"><h4>" + std::string(label) + "</h4>\n";
      if (i >= outs.size()) {
        h += "<p class=\"meta\">not sampled</p></div>\n";
        return;
      }
      ThinkSplit s = split_think(outs[i].text, opened);
      if (s.opened)
        h += std::string(s.answer.empty() ? "<details open>" : "<details>") + "<summary>Reasoning (" + std::to_string(s.reasoning.size()) + " bytes)" +
             (s.closed ? "" : " — did not finish") + "</summary><div class=\"think\">" + html_escape(s.reasoning) +
             "</div></details>\n";
      h += "<div class=\"answer\">" + (s.answer.empty() ? std::string("<span class=\"meta\">(no answer)</span>") : html_escape(s.answer)) + "</div>\n";
      h += fmt::format("<p class=\"meta\">{} tokens · {} · {:.1f} tokens/s</p></div>\n", outs[i].ids.size(),
                       html_escape(outs[i].finish_reason), outs[i].tokens_per_s);
    };
    side("Before (base)", r.before);
    side("After (base + adapter)", r.after);
    h += "</div>\n";
    for (const auto& [k, v] : q.reference)
      h += "<details><summary>Reference: " + html_escape(k) + "</summary><div class=\"ref\">" + html_escape(v) +
           "</div></details>\n";
  }
  h += "<footer class=\"meta\">Written by " + html_escape(r.written_by) + ".</footer>\n</body></html>\n";
  return h;
}

const OutputFolderKind kComparisonReportFolder{"a cotune eval report (eval.json, report.md, report.html)",
                                               {"eval.json", "report.md", "report.html"}};

void write_comparison_report(const std::string& out_dir, const ComparisonReport& r) {
  require_replaceable_directory(out_dir, kComparisonReportFolder);
  if (fs::path(out_dir).has_parent_path()) {
    std::error_code ec;
    fs::create_directories(fs::path(out_dir).parent_path(), ec);
    if (ec) fail("{}: cannot create the parent folder: {}", out_dir, ec.message());
  }
  // Written whole into a temp folder and moved into place, like every output folder.
  const std::string tmp = fresh_temp_dir_for(out_dir);
  try {
    write_file_atomic((fs::path(tmp) / "eval.json").string(), report_json(r));
    write_file_atomic((fs::path(tmp) / "report.md").string(), report_markdown(r, out_dir));
    write_file_atomic((fs::path(tmp) / "report.html").string(), report_html(r));
    replace_directory(tmp, out_dir, kComparisonReportFolder);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace cotune::infer
