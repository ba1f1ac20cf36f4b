#include <gtest/gtest.h>

#include "base/rng.h"

namespace cotune {

TEST(Rng, PhiloxKnownAnswer) {
  // Random123's known-answer test for philox4x32-10 with counter = 0, key = 0.
  Philox4 r = philox4x32(0, 0, 0);
  EXPECT_EQ(r.v[0], 0x6627e8d5u);
  EXPECT_EQ(r.v[1], 0xe169c58du);
  EXPECT_EQ(r.v[2], 0xbc57ac4cu);
  EXPECT_EQ(r.v[3], 0x9b00dbd8u);
}

TEST(Rng, StreamIsReproducibleAndUniform) {
  Rng a(42), b(42);
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    float x = a.uniform();
    ASSERT_EQ(x, b.uniform());
    ASSERT_GE(x, 0.0f);
    ASSERT_LT(x, 1.0f);
    sum += x;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.01);
  Rng c(43);
  EXPECT_NE(Rng(42).next_u32(), c.next_u32());
}

}  // namespace cotune
