// Philox4x32-10 counter-based RNG: the same (seed, offset) gives the same numbers on CPU and GPU, so
// dropout masks and shuffles are reproducible across devices and across a resume.
#pragma once
#include <cstdint>

#include "base/half.h"

namespace cotune {

struct Philox4 {
  uint32_t v[4];
};

// One Philox4x32-10 block: 4 random 32-bit words for counter `ctr` under key `seed`.
COTUNE_HD inline Philox4 philox4x32(uint64_t seed, uint64_t ctr_lo, uint64_t ctr_hi = 0) {
  uint32_t c0 = static_cast<uint32_t>(ctr_lo), c1 = static_cast<uint32_t>(ctr_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(ctr_hi), c3 = static_cast<uint32_t>(ctr_hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform float in [0, 1) from 24 random bits.
COTUNE_HD inline float uniform01(uint32_t bits) { return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f); }

// A sequential stream over Philox blocks; its whole state is (seed, counter), so it checkpoints as two integers.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0, uint64_t counter = 0) : seed_(seed), counter_(counter) {}
  uint32_t next_u32() {
    if (idx_ == 4) {
      block_ = philox4x32(seed_, counter_++);
      idx_ = 0;
    }
    return block_.v[idx_++];
  }
  uint64_t next_u64() { return (static_cast<uint64_t>(next_u32()) << 32) | next_u32(); }
  float uniform() { return uniform01(next_u32()); }  // [0, 1)
  // Uniform integer in [0, n) without modulo bias.
  uint64_t below(uint64_t n) {
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = next_u64();
    while (x >= limit);
    return x % n;
  }
  float normal();  // standard normal (Box-Muller)
  uint64_t seed() const { return seed_; }
  // State to save in a checkpoint: the next block's counter, with the unread words of the current block dropped.
  uint64_t counter() const { return counter_; }

 private:
  uint64_t seed_, counter_;
  Philox4 block_{};
  int idx_ = 4;
};

}  // namespace cotune
