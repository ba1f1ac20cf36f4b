#include <gtest/gtest.h>

#include <signal.h>

#include "base/error.h"
#include "track/stop_flag.h"

namespace cotune::track {
namespace {

TEST(StopFlag, FirstSigintSetsTheFlag) {
  StopFlag stop;
  EXPECT_FALSE(stop.requested());
  ASSERT_EQ(raise(SIGINT), 0);  // delivered synchronously to this thread
  EXPECT_TRUE(stop.requested());
  EXPECT_EQ(stop.count(), 1);
}

TEST(StopFlag, SigtermSetsTheFlagAndNeverExits) {
  StopFlag stop;
  raise(SIGTERM);
  raise(SIGTERM);
  EXPECT_EQ(stop.count(), 2);
}

TEST(StopFlag, RequestAndOnlyOneAtATime) {
  StopFlag stop;
  stop.request();
  EXPECT_TRUE(stop.requested());
  EXPECT_THROW(StopFlag second, Error);
}

TEST(StopFlag, RestoresThePreviousHandler) {
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  struct sigaction before {};
  sigaction(SIGINT, &ign, &before);
  { StopFlag stop; }
  struct sigaction now {};
  sigaction(SIGINT, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_IGN);
  sigaction(SIGINT, &before, nullptr);
  StopFlag again;  // a new one can be made once the old one is gone
  EXPECT_FALSE(again.requested());
}

TEST(StopFlagDeathTest, SecondSigintExitsAt130) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        StopFlag stop;
        raise(SIGINT);
        raise(SIGINT);
        std::exit(0);  // not reached
      },
      ::testing::ExitedWithCode(130), "exiting without a checkpoint");
}

}  // namespace
}  // namespace cotune::track
