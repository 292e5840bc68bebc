// The vSMMU's outstanding stalls: a StreamID and STAG name one stalled transaction (IHI 0070 3.12.2), each
// answered once (CMD_RESUME 4.7.2, CMD_STALL_TERM 4.7.3), and at most IDR5.STALL_MAX of them outstanding.
#include "nesting/stall_table.hpp"

#include <gtest/gtest.h>

#include <set>

namespace vsmmu::nesting {
namespace {

TEST(StallTable, StagsAreUniqueAmongAStreamsOutstandingStalls) {
  StallTable t(512);
  std::set<std::uint16_t> stags;
  for (std::uint32_t cookie = 0; cookie < 300; ++cookie) {
    auto stag = t.add(0x10, cookie);
    ASSERT_TRUE(stag);
    EXPECT_TRUE(stags.insert(*stag).second) << "STAG " << *stag << " given twice";
  }
  EXPECT_EQ(t.outstanding(), 300U);
}

// 2^16 STAGs go round: a STAG still outstanding for the stream is never given again.
TEST(StallTable, AWrappedStagSkipsOutstandingOnes) {
  StallTable t(4);
  const auto kept = t.add(1, 100);
  ASSERT_TRUE(kept);
  for (std::uint32_t i = 0; i < 70000; ++i) {
    auto stag = t.add(1, i);
    ASSERT_TRUE(stag);
    ASSERT_NE(*stag, *kept);
    ASSERT_TRUE(t.take(1, *stag));
  }
  EXPECT_EQ(t.take(1, *kept), 100U);
}

TEST(StallTable, AStallIsAnsweredOnce) {
  StallTable t;
  const auto stag = t.add(7, 42);
  ASSERT_TRUE(stag);
  EXPECT_FALSE(t.take(8, *stag)) << "another stream's STAG";
  EXPECT_EQ(t.take(7, *stag), 42U);
  EXPECT_FALSE(t.take(7, *stag)) << "a second CMD_RESUME names no stalled transaction";
  EXPECT_EQ(t.outstanding(), 0U);
}

TEST(StallTable, BoundedByStallMax) {
  StallTable t(2);
  EXPECT_TRUE(t.add(1, 1));
  EXPECT_TRUE(t.add(2, 2));
  EXPECT_FALSE(t.add(1, 3));
  EXPECT_EQ(t.outstanding(), 2U);
}

TEST(StallTable, StallTermTakesEveryStallOfTheStreamOnly) {
  StallTable t;
  (void)t.add(1, 10);
  (void)t.add(2, 20);
  (void)t.add(1, 11);
  const auto taken = t.take_stream(1);
  ASSERT_EQ(taken.size(), 2U);
  EXPECT_FALSE(t.has_stream(1));
  EXPECT_TRUE(t.has_stream(2));
  const auto rest = t.take_all();
  ASSERT_EQ(rest.size(), 1U);
  EXPECT_EQ(rest[0].second, 20U);
  EXPECT_EQ(t.outstanding(), 0U);
}

}  // namespace
}  // namespace vsmmu::nesting
