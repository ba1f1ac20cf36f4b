// kernels::Tuning: defaults (the production behaviour), the textual forms of flags / recipe keys, ScopedTuning.
#include <gtest/gtest.h>

#include "base/error.h"
#include "kernels/tuning.h"

namespace cotune::kernels {
namespace {

TEST(Tuning, DefaultsAreTheProductionChoices) {
  const Tuning t;
  EXPECT_EQ(t.attention, Tuning::Attention::automatic);
  EXPECT_EQ(t.attention_split_fwd, -1);
  EXPECT_EQ(t.attention_split_dq, -1);
  EXPECT_EQ(t.attention_split_dkdv, -1);
  EXPECT_TRUE(t.attention_keep_ds);
  EXPECT_EQ(t.attention_ds_limit_mib, 128);
  EXPECT_EQ(t.ce_kernel, Tuning::Generation::current);
  EXPECT_EQ(t.nf4_kernel, Tuning::Generation::current);
  EXPECT_FALSE(t.decode_nf4_wide);
  EXPECT_EQ(tuning(), t);
  EXPECT_EQ(t.describe(), "attention auto, split auto, dS kept up to 128 MiB, ce current, nf4 current, decode NF4 split");
}

TEST(Tuning, ParsesChoicesAndNamesTheKeyOnErrors) {
  EXPECT_EQ(parse_attention_kernel("simple", "k"), Tuning::Attention::simple);
  EXPECT_EQ(parse_kernel_generation("v1", "k"), Tuning::Generation::v1);
  try {
    parse_kernel_generation("v2", "ce_kernel");
    FAIL() << "v2 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ce_kernel must be current or v1, got 'v2'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_attention_kernel("flash", "attention_kernel"), Error);

  Tuning t;
  parse_attention_split("0,8,-1", "attention_split", t);
  EXPECT_EQ(t.attention_split_fwd, 0);
  EXPECT_EQ(t.attention_split_dq, 8);
  EXPECT_EQ(t.attention_split_dkdv, -1);
  EXPECT_EQ(t.describe().substr(0, 46), "attention auto, split fwd 0 dq 8 dkdv auto, dS");
  parse_attention_split("auto", "attention_split", t);
  EXPECT_EQ(t, Tuning{});
  for (const char* bad : {"1,2", "1,2,3,4", "a,b,c", "1,,3", "1, 2,3"}) {
    try {
      parse_attention_split(bad, "attention_split", t);
      FAIL() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("attention_split must be three integers"), std::string::npos) << e.what();
    }
  }
}

TEST(Tuning, ScopedTuningRestoresThePrevious) {
  Tuning simple;
  simple.attention = Tuning::Attention::simple;
  {
    ScopedTuning scope(simple);
    EXPECT_EQ(tuning().attention, Tuning::Attention::simple);
  }
  EXPECT_EQ(tuning(), Tuning{});
  Tuning bad;
  bad.attention_ds_limit_mib = -1;
  EXPECT_THROW(set_tuning(bad), Error);
  EXPECT_EQ(tuning(), Tuning{});
}

}  // namespace
}  // namespace cotune::kernels
