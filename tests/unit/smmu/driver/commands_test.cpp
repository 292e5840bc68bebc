// Command builders: each writes only the fields its opcode defines (IHI 0070 4.1.2: RES0 elsewhere), and
// ranged invalidation as Linux's __arm_smmu_tlb_inv_range splits it (IHI 0070 4.4.1.1).
#include <gtest/gtest.h>

#include "smmu/driver/commands.hpp"

namespace vsmmu::smmu::driver::test {
namespace {

TEST(Commands, EveryBuilderWritesOnlyDefinedFields) {
  const Command all[] = {
      cmd_sync(SyncCs::irq),        cmd_prefetch_config(1, 2, true), cmd_cfgi_ste(3), cmd_cfgi_ste_range(0x40, 3),
      cmd_cfgi_all(),               cmd_cfgi_cd(3, 4),               cmd_cfgi_cd_all(3), cmd_tlbi_nh_all(1),
      cmd_tlbi_nh_asid(1, 2),       cmd_tlbi_nh_va(1, 2, 0x1000),    cmd_tlbi_nh_vaa(1, 0x2000), cmd_tlbi_el2_all(),
      cmd_tlbi_s12_vmall(1),        cmd_tlbi_s2_ipa(1, 0x3000),      cmd_tlbi_nsnh_all(), cmd_atc_inv(3, 0x4000, 2, 5),
  };
  for (const auto& c : all) EXPECT_FALSE(res0_violation(c)) << opcode_name(c.get(Command::Opcode));
}

TEST(Commands, CfgiAllIsCfgiSteRangeOf31) {
  EXPECT_EQ(cmd_cfgi_all().get(Command::Opcode), Opcode::CFGI_STE_RANGE);
  EXPECT_EQ(cmd_cfgi_all().get(Command::Range), 31U);
}

TEST(Commands, AtcInvNamesTheSubstreamOnlyWhenGiven) {
  EXPECT_FALSE(cmd_atc_inv(3, 0, 52).get(Command::SSV));
  const Command c = cmd_atc_inv(3, 0x5000, 1, 7);
  EXPECT_TRUE(c.get(Command::SSV));
  EXPECT_EQ(c.get(Command::SSID), 7U);
  EXPECT_EQ(c.get(Command::Size), 1U);
}

// Without RIL: one command per leaf, no TG/TTL hint.
TEST(TlbiRange, OneCommandPerLeafWithoutRil) {
  const auto cmds = tlbi_range(cmd_tlbi_nh_va(0, 3, 0), 0x10000, 3 * 4096, 4096, Granule::k4K, false);
  ASSERT_EQ(cmds.size(), 3U);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(cmds[i].get(Command::Address), 0x10000 + i * 4096);
    EXPECT_EQ(cmds[i].get(Command::TG), 0U);
    EXPECT_EQ(cmds[i].get(Command::ASID), 3U);
  }
}

// With RIL: (NUM+1) << SCALE pages per command; 33 pages are 1 page then 32 (SCALE 5); TTL 3 for pages.
TEST(TlbiRange, RangesOfPowerOfTwoChunksWithRil) {
  const auto cmds = tlbi_range(cmd_tlbi_nh_va(0, 3, 0), 0x10000, 33 * 4096, 4096, Granule::k4K, true);
  ASSERT_EQ(cmds.size(), 2U);
  EXPECT_EQ(cmds[0].get(Command::SCALE), 0U);
  EXPECT_EQ(cmds[0].get(Command::NUM), 0U);
  EXPECT_EQ(cmds[1].get(Command::Address), 0x11000U);
  EXPECT_EQ(cmds[1].get(Command::SCALE), 5U);
  EXPECT_EQ(cmds[1].get(Command::NUM), 0U);
  for (const auto& c : cmds) {
    EXPECT_EQ(c.get(Command::TG), 1U);  // 4KB
    EXPECT_EQ(c.get(Command::TTL), 3U);
    EXPECT_FALSE(res0_violation(c));
  }
}

// TTL names the level of the leaves: 2MB blocks of a 4KB-granule table are level 2.
TEST(TlbiRange, TtlForBlockLeaves) {
  const auto cmds = tlbi_range(cmd_tlbi_nh_va(0, 3, 0), 0x20'0000, 2 << 20, 2 << 20, Granule::k4K, true);
  ASSERT_EQ(cmds.size(), 1U);
  EXPECT_EQ(cmds[0].get(Command::TTL), 2U);
  EXPECT_EQ(cmds[0].get(Command::SCALE), 9U);
}

// A non-leaf range has no TTL; Linux rounds a one-page count up to two so NUM and SCALE are not both 0.
TEST(TlbiRange, NonLeafHasNoTtlAndNoSinglePageRange) {
  const auto cmds = tlbi_range(cmd_tlbi_s2_ipa(5, 0, false), 0x40'0000, 4096, 4096, Granule::k4K, true);
  ASSERT_EQ(cmds.size(), 1U);
  EXPECT_EQ(cmds[0].get(Command::TTL), 0U);
  EXPECT_EQ(cmds[0].get(Command::NUM), 0U);  // one chunk of 2^1 pages
  EXPECT_EQ(cmds[0].get(Command::SCALE), 1U);
  EXPECT_EQ(cmds[0].get(Command::IPA), 0x40'0000U);  // TLBI_S2_IPA names an IPA
  EXPECT_EQ(cmds[0].get(Command::VMID), 5U);
}

}  // namespace
}  // namespace vsmmu::smmu::driver::test
