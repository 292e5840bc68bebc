// The planner: one HWPT_INVALIDATE per run of forwardable commands between CMD_SYNCs (docs/virtual-smmu.md,
// "Commands"), guest order kept around STE reinstalls, an illegal command stops the queue there (IHI 0070 4.1.3,
// 7.1).
#include <gtest/gtest.h>

#include <algorithm>
#include <span>

#include "invalidation/planner.hpp"
#include "command_helpers.hpp"

namespace vsmmu::invalidation {
namespace {

using namespace testing;

AdvertisedFeatures features() {
  AdvertisedFeatures f;
  f.ssid_bits = 5;
  f.ril = true;
  return f;
}

template <class T>
const T& step(const Plan& p, std::size_t i) {
  EXPECT_LT(i, p.steps.size());
  EXPECT_TRUE(std::holds_alternative<T>(p.steps.at(i))) << "step " << i << " holds index " << p.steps.at(i).index();
  return std::get<T>(p.steps.at(i));
}

TEST(Planner, ThousandVaInvalidationsWithASyncEvery32AreOneBatchPerSync) {
  std::vector<Command> cmds;
  for (unsigned i = 0; i < 1000; ++i) {
    cmds.push_back(tlbi_va(1, 0x100000 + i * 0x1000ULL));
    if (i % 32 == 31) cmds.push_back(sync());
  }
  cmds.push_back(sync());
  Plan p = plan(cmds, features());
  EXPECT_FALSE(p.stopped);
  EXPECT_EQ(p.stats.commands, cmds.size());
  EXPECT_EQ(p.stats.batches, 32U);  // 31 full batches + the tail of 8
  EXPECT_EQ(p.stats.forwarded, 1000U);
  EXPECT_EQ(step<ForwardBatch>(p, 0).entries.size(), 32U);
  EXPECT_EQ(step<SyncPoint>(p, 1).guest_index, 32U);
}

TEST(Planner, GuestIndexMapsEveryEntryBack) {
  std::vector<Command> cmds = {tlbi_va(1, 0x1000), sync(), tlbi_va(2, 0x2000), tlbi_va(3, 0x3000), sync()};
  Plan p = plan(cmds, features(), {}, 100);
  const auto& second = step<ForwardBatch>(p, 2);
  ASSERT_EQ(second.guest_index.size(), 2U);
  EXPECT_EQ(second.guest_index[0], 102U);
  EXPECT_EQ(second.guest_index[1], 103U);
  EXPECT_EQ(second.entries[1], cmds[3]);
}

TEST(Planner, SteReinstallKeepsGuestOrder) {
  // A CFGI_STE between invalidations splits the batch: what came before it is sent before the reinstall.
  std::vector<Command> cmds = {tlbi_asid(1), cfgi_ste(0x10), cfgi_cd(0x10, 0), sync()};
  Plan p = plan(cmds, features());
  ASSERT_EQ(p.steps.size(), 4U);
  EXPECT_EQ(step<ForwardBatch>(p, 0).guest_index[0], 0U);
  EXPECT_EQ(step<StreamReinstall>(p, 1).sids.first, 0x10U);
  EXPECT_EQ(step<ForwardBatch>(p, 2).guest_index[0], 2U);
  EXPECT_EQ(step<SyncPoint>(p, 3).guest_index, 3U);
}

TEST(Planner, IllegalCommandStopsThePlanWithEverythingBeforeItPlanned) {
  std::vector<Command> cmds = {tlbi_va(1, 0x1000), tlbi_va(1, 0x2000), cmd(Opcode::TLBI_S2_IPA), tlbi_all(), sync()};
  Plan p = plan(cmds, features());
  EXPECT_TRUE(p.stopped);
  EXPECT_EQ(p.stats.commands, 3U);  // nothing after the illegal command is consumed
  EXPECT_EQ(step<ForwardBatch>(p, 0).entries.size(), 2U);
  const auto& ill = step<IllegalCommand>(p, 1);
  EXPECT_EQ(ill.guest_index, 2U);
  EXPECT_NE(ill.reason.find("TLBI_S2_IPA"), std::string::npos) << ill.reason;
  EXPECT_EQ(p.steps.size(), 2U);
}

TEST(Planner, LaterAsidInvalidationNeverCoversAnEarlierVa) {
  // TLBI_NH_ASID spares global (nG = 0) entries; TLBI_NH_VA removes the global entries at VA as well
  // (IHI 0070 4.4.2.2, 4.4.2.3). Dropping the VA would leave a global translation of an unmapped page cached.
  std::vector<Command> cmds = {tlbi_va(1, 0x1000), tlbi_va(2, 0x1000), tlbi_va(1, 0x2000), tlbi_asid(1), sync()};
  Plan p = plan(cmds, features());
  const auto& b = step<ForwardBatch>(p, 0);
  ASSERT_EQ(b.entries.size(), 4U);
  EXPECT_TRUE(std::ranges::equal(b.entries, std::span(cmds).first(4)));
  EXPECT_EQ(p.stats.coalesced, 0U);
}

TEST(Planner, LaterAllCoversEarlierAsidAndVaAlike) {
  // TLBI_NH_ALL removes every stage-1 entry of the VMID, global ones included (IHI 0070 4.4.2.1).
  std::vector<Command> cmds = {tlbi_va(1, 0x1000), tlbi_asid(1), tlbi_all(), sync()};
  Plan p = plan(cmds, features());
  const auto& b = step<ForwardBatch>(p, 0);
  ASSERT_EQ(b.entries.size(), 1U);
  EXPECT_EQ(b.guest_index[0], 2U);
}

TEST(Planner, OnlyExactDuplicatesOfVaFormsMerge) {
  // Leaf, TTL and range forms name different scopes (IHI 0070 4.4.1): none covers another.
  const Command leaf = tlbi_va(1, 0x1000);
  const Command walk = Command(leaf).set(Command::Leaf, false);
  const Command ttl = Command(leaf).set(Command::TTL, 3);
  const Command range = Command(leaf).set(Command::NUM, 3);
  std::vector<Command> cmds = {walk, ttl, range, leaf, leaf, sync()};
  Plan p = plan(cmds, features());
  const auto& b = step<ForwardBatch>(p, 0);
  ASSERT_EQ(b.entries.size(), 4U);
  EXPECT_EQ(b.guest_index[3], 4U);  // the last of the two identical ones
  EXPECT_EQ(p.stats.coalesced, 1U);
}

TEST(Planner, EarlierWideInvalidationDoesNotCoverLaterNarrowOnes) {
  // Entries re-cached after the ALL executes are only removed by the later VA.
  std::vector<Command> cmds = {tlbi_all(), tlbi_va(1, 0x1000), sync()};
  Plan p = plan(cmds, features());
  EXPECT_EQ(step<ForwardBatch>(p, 0).entries.size(), 2U);
  EXPECT_EQ(p.stats.coalesced, 0U);
}

TEST(Planner, LaterAllCoversEveryNonHypervisorTlbInvalidation) {
  std::vector<Command> cmds = {tlbi_va(1, 0x1000), tlbi_vaa(0x3000), tlbi_asid(4), cfgi_cd(0x10, 0), tlbi_all(), sync()};
  Plan p = plan(cmds, features());
  const auto& b = step<ForwardBatch>(p, 0);
  ASSERT_EQ(b.entries.size(), 2U);  // the CFGI_CD is configuration, not TLB: it stays
  EXPECT_EQ(b.entries[0].get(Command::Opcode), Opcode::CFGI_CD);
  EXPECT_EQ(b.entries[1].get(Command::Opcode), Opcode::TLBI_NH_ALL);
}

TEST(Planner, CdAllCoversEarlierCdInvalidationsOfThatStream) {
  std::vector<Command> cmds = {cfgi_cd(0x10, 1), cfgi_cd(0x11, 1), cfgi_cd(0x10, 2), cfgi_cd_all(0x10), sync()};
  Plan p = plan(cmds, features());
  const auto& b = step<ForwardBatch>(p, 0);
  ASSERT_EQ(b.entries.size(), 2U);
  EXPECT_EQ(b.guest_index[0], 1U);
  EXPECT_EQ(b.guest_index[1], 3U);
}

TEST(Planner, DuplicatesCollapseToTheLastOccurrence) {
  std::vector<Command> cmds = {tlbi_va(1, 0x1000), tlbi_va(1, 0x1000), tlbi_va(1, 0x1000), sync()};
  Plan p = plan(cmds, features());
  const auto& b = step<ForwardBatch>(p, 0);
  ASSERT_EQ(b.entries.size(), 1U);
  EXPECT_EQ(b.guest_index[0], 2U);
}

TEST(Planner, CoalescingNeverCrossesASync) {
  std::vector<Command> cmds = {tlbi_va(1, 0x1000), sync(), tlbi_asid(1), sync()};
  Plan p = plan(cmds, features());
  EXPECT_EQ(p.stats.coalesced, 0U);
  EXPECT_EQ(p.stats.forwarded, 2U);
}

TEST(Planner, BatchLimitSplitsLongRuns) {
  std::vector<Command> cmds;
  for (unsigned i = 0; i < 10; ++i) cmds.push_back(tlbi_va(1, 0x1000ULL * (i + 1)));
  Plan p = plan(cmds, features(), PlanOptions{.max_batch_entries = 4, .coalesce = true});
  EXPECT_EQ(p.stats.batches, 3U);
  EXPECT_EQ(step<ForwardBatch>(p, 2).entries.size(), 2U);
}

TEST(Planner, WithoutCoalescingEveryForwardableCommandIsSent) {
  std::vector<Command> cmds = {tlbi_va(1, 0x1000), tlbi_asid(1), sync()};
  Plan p = plan(cmds, features(), PlanOptions{.max_batch_entries = 0, .coalesce = false});
  EXPECT_EQ(p.stats.forwarded, 2U);
}

TEST(Planner, PrefetchesAreConsumedWithoutHostWork) {
  std::vector<Command> cmds = {cmd(Opcode::PREFETCH_CONFIG).set(Command::SID, 1), sync()};
  Plan p = plan(cmds, features());
  EXPECT_EQ(p.stats.commands, 2U);
  ASSERT_EQ(p.steps.size(), 1U);
  EXPECT_EQ(step<SyncPoint>(p, 0).guest_index, 1U);
}

TEST(Planner, ManyStreamsInOneBatchEachCoverTheirOwnCds) {
  // More ASIDs, streams and commands than the coalescing sets start with: they grow within the batch.
  std::vector<Command> cmds;
  for (std::uint16_t a = 1; a <= 100; ++a) cmds.push_back(tlbi_va(a, 0x1000));
  for (std::uint32_t sid = 1; sid <= 100; ++sid) cmds.push_back(cfgi_cd(sid, 1));
  for (std::uint16_t a = 1; a <= 100; a += 2) cmds.push_back(tlbi_asid(a));
  for (std::uint32_t sid = 2; sid <= 100; sid += 2) cmds.push_back(cfgi_cd_all(sid));
  for (std::uint16_t a = 1; a <= 100; a += 4) cmds.push_back(tlbi_va(a, 0x1000));  // repeats of 25 VAs
  cmds.push_back(sync());
  Plan p = plan(cmds, features());
  const auto& b = step<ForwardBatch>(p, 0);
  // 75 VAs not repeated later, the odd streams' 50 CDs, 50 ASIDs, 50 CD_ALLs, the 25 repeated VAs
  ASSERT_EQ(b.entries.size(), 250U);
  EXPECT_EQ(p.stats.coalesced, 75U);
  EXPECT_EQ(b.entries[0], cmds[1]);   // VA of ASID 1 is repeated at the end: the first kept is ASID 2's
  EXPECT_EQ(b.guest_index[75], 100U);  // CD of stream 1
  EXPECT_EQ(b.guest_index[125], 200U); // the first ASID
}

TEST(Planner, AReusedPlannerGivesTheSamePlansAsFreshOnes) {
  std::vector<Command> first, second;
  for (unsigned i = 0; i < 300; ++i) first.push_back(tlbi_va(1, 0x1000ULL * (i % 200)));
  first.push_back(sync());
  second = {tlbi_va(1, 0x1000), cfgi_ste(0x10), tlbi_va(1, 0x1000), tlbi_asid(1), sync()};
  Planner reused;
  for (const auto* cmds : {&first, &second, &first}) {
    const Plan& got = reused.plan(*cmds, features(), {}, 7);
    const Plan want = plan(*cmds, features(), {}, 7);
    ASSERT_EQ(got.steps.size(), want.steps.size());
    EXPECT_EQ(got.stats.forwarded, want.stats.forwarded);
    EXPECT_EQ(got.stats.coalesced, want.stats.coalesced);
    for (std::size_t i = 0; i < got.steps.size(); ++i) {
      ASSERT_EQ(got.steps[i].index(), want.steps[i].index());
      if (const auto* g = std::get_if<ForwardBatch>(&got.steps[i])) {
        const auto& w = std::get<ForwardBatch>(want.steps[i]);
        EXPECT_TRUE(std::ranges::equal(g->entries, w.entries));
        EXPECT_TRUE(std::ranges::equal(g->guest_index, w.guest_index));
      }
    }
  }
  EXPECT_EQ(reused.plan(first, features()).stats.coalesced, 100U);
}

}  // namespace
}  // namespace vsmmu::invalidation
