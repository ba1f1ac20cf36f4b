#include "kernels/tuning.h"

#include <fmt/format.h>

#include <charconv>
#include <vector>

#include "base/error.h"

namespace cotune::kernels {

namespace {

// Process configuration set once at a run's start (see tuning.h): like the logger's level, not per-object state.
Tuning& process_tuning() {
  static Tuning t;
  return t;
}

std::string split_text(int v) { return v < 0 ? "auto" : std::to_string(v); }

}  // namespace

std::string Tuning::describe() const {
  std::string split = attention_split_fwd < 0 && attention_split_dq < 0 && attention_split_dkdv <= 0
                          ? "auto"
                          : fmt::format("fwd {} dq {} dkdv {}", split_text(attention_split_fwd),
                                        split_text(attention_split_dq),
                                        attention_split_dkdv <= 0 ? "auto" : std::to_string(attention_split_dkdv));
  return fmt::format("attention {}, split {}, dS {}, ce {}, nf4 {}, decode NF4 {}",
                     attention == Attention::simple ? "simple" : "auto", split,
                     attention_keep_ds ? fmt::format("kept up to {} MiB", attention_ds_limit_mib) : "recomputed",
                     ce_kernel == Generation::v1 ? "v1" : "current", nf4_kernel == Generation::v1 ? "v1" : "current",
                     decode_nf4_wide ? "wide" : "split");
}

Tuning::Attention parse_attention_kernel(const std::string& s, const std::string& what) {
  if (s == "auto") return Tuning::Attention::automatic;
  if (s == "simple") return Tuning::Attention::simple;
  fail("{} must be auto or simple, got '{}'", what, s);
}

Tuning::Generation parse_kernel_generation(const std::string& s, const std::string& what) {
  if (s == "current") return Tuning::Generation::current;
  if (s == "v1") return Tuning::Generation::v1;
  fail("{} must be current or v1, got '{}'", what, s);
}

void parse_attention_split(const std::string& s, const std::string& what, Tuning& t) {
  t.attention_split_fwd = t.attention_split_dq = t.attention_split_dkdv = -1;
  if (s.empty() || s == "auto") return;
  std::vector<int> v;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    const std::string part = s.substr(pos, comma - pos);
    int x = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), x);
    if (part.empty() || ec != std::errc() || end != part.data() + part.size())
      fail("{} must be three integers \"fwd,dq,dkdv\" (negative: automatic) or auto, got '{}'", what, s);
    v.push_back(x);
    pos = comma + 1;
  }
  if (v.size() != 3) fail("{} must be three integers \"fwd,dq,dkdv\" (negative: automatic) or auto, got '{}'", what, s);
  t.attention_split_fwd = v[0];
  t.attention_split_dq = v[1];
  t.attention_split_dkdv = v[2];
}

const Tuning& tuning() { return process_tuning(); }

void set_tuning(const Tuning& t) {
  if (t.attention_ds_limit_mib < 0) fail("attention_ds_limit_mib must be >= 0, got {}", t.attention_ds_limit_mib);
  process_tuning() = t;
}

}  // namespace cotune::kernels
