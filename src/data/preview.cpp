#include "data/preview.h"

#include <fmt/format.h>

#include <vector>

namespace cotune::data {

std::string render_preview(const text::Tokenizer& tok, const TokenizedDataset& ds, size_t i, LossMask mask,
                           const PreviewStyle& style) {
  auto ids = ds.sequence(i);
  std::vector<int32_t> targets(ids.size());
  std::span<const uint8_t> assistant;
  if (!ds.assistant_mask.empty()) assistant = {ds.assistant_mask.data() + ds.offsets[i], ids.size()};
  sequence_targets(ids, ds.prompt_lengths[i], mask, targets.data(), assistant);
  // Token j is trained when position j-1 predicts it; the first token never is.
  auto trained = [&](size_t j) { return j > 0 && targets[j - 1] != kIgnoreIndex; };
  int64_t n_trained = 0;
  for (int32_t t : targets) n_trained += t != kIgnoreIndex;

  std::string out = fmt::format("=== sequence {} (source row {}): {} tokens, {} prompt, {} trained (mask {}){} ===\n", i,
                                ds.rows[i], ids.size(), ds.prompt_lengths[i], n_trained, to_string(mask),
                                ds.full_lengths[i] > static_cast<int32_t>(ids.size())
                                    ? fmt::format(", TRUNCATED from {}", ds.full_lengths[i])
                                    : "");
  size_t j = 0;
  while (j < ids.size()) {
    size_t k = j;
    const bool on = trained(j);
    while (k < ids.size() && trained(k) == on) ++k;
    std::string text = tok.decode(ids.subspan(j, k - j), false);
    if (style.max_chars > 0 && static_cast<int64_t>(text.size()) > style.max_chars) {
      size_t cut = static_cast<size_t>(style.max_chars);
      while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // whole UTF-8 characters
      text = text.substr(0, cut) + " …";
    }
    if (on) out += text;
    else if (style.ansi) out += "\x1b[2m" + text + "\x1b[0m";
    else out += "[[" + text + "]]";
    j = k;
  }
  out += '\n';
  return out;
}

}  // namespace cotune::data
