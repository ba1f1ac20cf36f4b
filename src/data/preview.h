// Human-readable rendering of formatted, tokenized records for `cotune data preview`: the tokens the loss does not
// train on are marked, dim on a terminal or inside [[ ]] otherwise.
#pragma once
#include <string>

#include "data/batch.h"
#include "data/dataset.h"
#include "text/tokenizer.h"

namespace cotune::data {

struct PreviewStyle {
  bool ansi = false;            // dim the masked text (terminal); else wrap it in [[ ]]
  int64_t max_chars = 0;        // cut each shown segment to this many bytes (0 = no limit), marked with " …"
};

// Sequence `i` of `ds` decoded, with the untrained tokens marked, after a one-line header giving its row, token
// counts and whether it was truncated.
std::string render_preview(const text::Tokenizer& tok, const TokenizedDataset& ds, size_t i, LossMask mask,
                           const PreviewStyle& style);

}  // namespace cotune::data
