// "did you mean ..." for mistyped subcommands, flags and recipe keys: the candidates closest to what was typed
// by edit distance (Levenshtein with adjacent transpositions, case- and '-'/'_'-insensitive).
//
//   closest("lerning_rate", {"lr", "learning_rate", "lora_r"})   -> {"learning_rate"}
//   did_you_mean("trian", {"train", "eval"})                     -> " (did you mean 'train'?)"
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace cotune::cli {

// Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours cost 1.
size_t edit_distance(std::string_view a, std::string_view b);

// Candidates within max(2, |word| / 3) edits of `word` (after lower-casing and reading '_' as '-'), best first,
// at most `limit`. A candidate that starts with `word` (a prefix of 3+ characters) also counts.
std::vector<std::string> closest(std::string_view word, const std::vector<std::string>& candidates, size_t limit = 3);

// " (did you mean 'a' or 'b'?)" -- or "" when nothing is close. `prefix` is put before each candidate ("--").
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates,
                         std::string_view prefix = "");

}  // namespace cotune::cli
