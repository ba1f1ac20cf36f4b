#include "cli/did_you_mean.h"

#include <algorithm>
#include <cctype>

namespace cotune::cli {
namespace {

std::string fold(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (c == '_') c = '-';
  }
  return out;
}

}  // namespace

size_t edit_distance(std::string_view a, std::string_view b) {
  // d[i][j] = distance between a[0, i) and b[0, j); three rows suffice for the transposition rule.
  const size_t n = a.size(), m = b.size();
  std::vector<size_t> prev2(m + 1), prev(m + 1), cur(m + 1);
  for (size_t j = 0; j <= m; ++j) prev[j] = j;
  for (size_t i = 1; i <= n; ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) cur[j] = std::min(cur[j], prev2[j - 2] + 1);
    }
    std::swap(prev2, prev);
    std::swap(prev, cur);
  }
  return prev[m];
}

std::vector<std::string> closest(std::string_view word, const std::vector<std::string>& candidates, size_t limit) {
  const std::string w = fold(word);
  if (w.empty()) return {};
  const size_t max_distance = std::max<size_t>(2, w.size() / 3);
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& c : candidates) {
    const std::string fc = fold(c);
    size_t d = edit_distance(w, fc);
    if (d > max_distance && w.size() >= 3 && fc.starts_with(w)) d = max_distance;  // an abbreviation
    if (d <= max_distance && d < std::max(w.size(), fc.size()))
      if (std::none_of(scored.begin(), scored.end(), [&](const auto& s) { return s.second == c; }))
        scored.emplace_back(d, c);
  }
  std::stable_sort(scored.begin(), scored.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<std::string> out;
  for (const auto& [d, c] : scored) {
    if (out.size() == limit) break;
    out.push_back(c);
  }
  return out;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates, std::string_view prefix) {
  const auto best = closest(word, candidates);
  if (best.empty()) return "";
  std::string s = " (did you mean ";
  for (size_t i = 0; i < best.size(); ++i) {
    if (i > 0) s += i + 1 == best.size() ? " or " : ", ";
    s.append("'").append(prefix).append(best[i]).append("'");
  }
  return s + "?)";
}

}  // namespace cotune::cli
