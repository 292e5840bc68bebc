// The TLB and configuration cache keep what they cached until software invalidates it with the command
// the architecture names (IHI 0070 4.3 configuration invalidation, 4.4 TLB invalidation, 16.2): a missing
// invalidation leaves a stale translation, the right one removes it, a wrong one does not.
#include "tests/unit/smmu/model/model_fixture.hpp"

namespace vsmmu::smmu::model::test {
namespace {

constexpr std::uint32_t kSid = 0x21;
constexpr std::uint64_t kVa = 0x10'0000'0000ULL;
constexpr std::uint64_t kPage = 4096;

class CacheTest : public ModelTest {
 protected:
  void SetUp() override {
    start(config());
    nested_stream(kSid);
  }
  virtual ModelConfig config() const { return ModelConfig::reference(); }
  // Maps `pages` pages at kVa to data pages from `first_page`, non-global as Linux maps them.
  void map(std::uint64_t va, std::uint64_t first_page, std::uint64_t pages = 1) {
    ASSERT_TRUE(s1.map(va, kGuestData + first_page * kPage, pages * kPage, MapAttributes{.allow_blocks = false}));
    for (std::uint64_t i = 0; i < pages; ++i) make_non_global(s1, va + i * kPage);
  }
  std::expected<void, DmaFault> write(std::uint64_t va, std::uint64_t value) {
    return DmaMaster(*smmu, kSid).write64(va, value);
  }
  // The value the DMA put in data page `page`.
  std::uint64_t in_page(std::uint64_t page) const { return mem.read64(kGuestDataPa + page * kPage).value(); }
  void issue(std::initializer_list<Command> cmds) {
    auto r = driver->issue(std::span(cmds.begin(), cmds.size()));
    ASSERT_TRUE(r) << r.error().to_string();
  }
  static void expect_fault(const std::expected<void, DmaFault>& r, EventId id) {
    ASSERT_FALSE(r);
    ASSERT_TRUE(r.error().event);
    EXPECT_EQ(r.error().event->get(Event::ID), id);
  }
  // TLBI_NH_VA with the range fields of IHI 0070 4.4.1.1.
  static Command range_tlbi(std::uint64_t va, unsigned num, unsigned scale, unsigned ttl = 0) {
    return cmd_tlbi_nh_va(kVmid, kAsid, va)
        .set(Command::TG, tlbi_tg_from_granule(Granule::k4K))
        .set(Command::NUM, num)
        .set(Command::SCALE, scale)
        .set(Command::TTL, ttl);
  }
};

// IHI 0070 4.4.2.3 TLBI_NH_VA: after an unmap the cached translation keeps working until invalidated.
TEST_F(CacheTest, UnmappedPageStaysTranslatedUntilTlbiNhVa) {
  map(kVa, 0);
  ASSERT_TRUE(write(kVa, 1));
  ASSERT_TRUE(s1.unmap(kVa, kPage));
  ASSERT_TRUE(write(kVa, 2));  // stale hit
  EXPECT_EQ(in_page(0), 2U);
  issue({cmd_tlbi_nh_va(kVmid, kAsid, kVa)});
  expect_fault(write(kVa, 3), EventId::F_TRANSLATION);
  EXPECT_EQ(in_page(0), 2U);
  EXPECT_EQ(smmu->counters().tlb_invalidated, 1U);
}

// TLBI_NH_VA for another ASID or another VMID leaves the entry (IHI 0070 4.4.2.3).
TEST_F(CacheTest, TlbiForAnotherAsidOrVmidLeavesTheEntry) {
  map(kVa, 0);
  ASSERT_TRUE(write(kVa, 1));
  ASSERT_TRUE(s1.unmap(kVa, kPage));
  issue({cmd_tlbi_nh_va(kVmid, kAsid + 1, kVa), cmd_tlbi_nh_va(kVmid + 1, kAsid, kVa),
         cmd_tlbi_nh_va(kVmid, kAsid, kVa + kPage), cmd_tlbi_s2_ipa(kVmid, kGuestData)});
  ASSERT_TRUE(write(kVa, 2));
  EXPECT_EQ(in_page(0), 2U);
}

// IHI 0070 4.4.2.2 TLBI_NH_ASID removes every entry of the ASID (in the VMID): a remapped page moves.
TEST_F(CacheTest, RemapTakesEffectAfterTlbiNhAsid) {
  map(kVa, 0);
  map(kVa + kPage, 1);
  ASSERT_TRUE(write(kVa, 1));
  ASSERT_TRUE(write(kVa + kPage, 1));
  ASSERT_TRUE(s1.unmap(kVa, 2 * kPage));
  map(kVa, 2);
  map(kVa + kPage, 3);
  ASSERT_TRUE(write(kVa, 5));
  EXPECT_EQ(in_page(0), 5U);  // stale
  issue({cmd_tlbi_nh_asid(kVmid, kAsid)});
  ASSERT_TRUE(write(kVa, 6));
  ASSERT_TRUE(write(kVa + kPage, 7));
  EXPECT_EQ(in_page(0), 5U);
  EXPECT_EQ(in_page(2), 6U);
  EXPECT_EQ(in_page(3), 7U);
}

// A global stage-1 entry (nG == 0) belongs to no ASID: TLBI_NH_ASID leaves it, TLBI_NH_VA by address and
// TLBI_NH_ALL remove it (IHI 0070 3.17.1, 4.4.2.1-4.4.2.3).
TEST_F(CacheTest, GlobalEntrySurvivesTlbiNhAsidButNotTlbiNhVa) {
  ASSERT_TRUE(s1.map(kVa, kGuestData, kPage, MapAttributes{.global = true}));  // nG=0
  ASSERT_TRUE(write(kVa, 1));
  ASSERT_TRUE(s1.unmap(kVa, kPage));
  issue({cmd_tlbi_nh_asid(kVmid, kAsid)});
  ASSERT_TRUE(write(kVa, 2));
  EXPECT_EQ(in_page(0), 2U);
  issue({cmd_tlbi_nh_va(kVmid, kAsid + 9, kVa)});  // any ASID: global entries match by address
  expect_fault(write(kVa, 3), EventId::F_TRANSLATION);
}

// TLBI_NH_VAA removes the address's entries of every ASID in the VMID (IHI 0070 4.4.2.4).
TEST_F(CacheTest, TlbiNhVaaCoversEveryAsid) {
  map(kVa, 0);
  map(kVa + kPage, 1);
  ASSERT_TRUE(write(kVa, 1));
  ASSERT_TRUE(write(kVa + kPage, 1));
  ASSERT_TRUE(s1.unmap(kVa, 2 * kPage));
  issue({Command{}.set(Command::Opcode, Opcode::TLBI_NH_VAA).set(Command::VMID, kVmid).set(Command::Address, kVa)});
  expect_fault(write(kVa, 2), EventId::F_TRANSLATION);
  ASSERT_TRUE(write(kVa + kPage, 2));  // another address
}

// TLBI_NH_ALL removes every stage-1 entry of the VMID and nothing of another VM (IHI 0070 4.4.2.1).
TEST_F(CacheTest, TlbiNhAllIsScopedToItsVmid) {
  map(kVa, 0);
  ASSERT_TRUE(write(kVa, 1));
  ASSERT_TRUE(s1.unmap(kVa, kPage));
  const auto nh_all = [](std::uint16_t vmid) {
    return Command{}.set(Command::Opcode, Opcode::TLBI_NH_ALL).set(Command::VMID, vmid);
  };
  issue({nh_all(kVmid + 1)});
  ASSERT_TRUE(write(kVa, 2));
  issue({nh_all(kVmid)});
  expect_fault(write(kVa, 3), EventId::F_TRANSLATION);
}

// IHI 0070 4.4.3.2 TLBI_S12_VMALL: a stage-2 change reaches nested streams only after it.
TEST_F(CacheTest, StageTwoChangeTakesEffectAfterTlbiS12Vmall) {
  map(kVa, 0);
  ASSERT_TRUE(write(kVa, 1));
  // The hypervisor moves the guest page to another PA.
  ASSERT_TRUE(s2.unmap(kGuestData, kPage));
  ASSERT_TRUE(s2.map(kGuestData, kGuestDataPa + 0x80000, kPage, MapAttributes{}));
  ASSERT_TRUE(write(kVa, 2));
  EXPECT_EQ(in_page(0), 2U);  // stale combined entry
  // TLBI_S2_IPA alone does not reach a combined stage 1+2 entry (IHI 0070 4.4.3.1).
  issue({cmd_tlbi_s2_ipa(kVmid, kGuestData)});
  ASSERT_TRUE(write(kVa, 3));
  EXPECT_EQ(in_page(0), 3U);
  issue({cmd_tlbi_s12_vmall(kVmid + 1)});  // another VM's
  ASSERT_TRUE(write(kVa, 4));
  EXPECT_EQ(in_page(0), 4U);
  issue({cmd_tlbi_s12_vmall(kVmid)});
  ASSERT_TRUE(write(kVa, 5));
  EXPECT_EQ(in_page(0), 4U);
  EXPECT_EQ(mem.read64(kGuestDataPa + 0x80000).value(), 5U);
}

// For a stage-2-only stream TLBI_S2_IPA is the invalidation by address (IHI 0070 4.4.3.1).
TEST_F(CacheTest, TlbiS2IpaInvalidatesStageTwoOnlyEntries) {
  ASSERT_TRUE(driver->write_ste(kSid + 1, s2_ste()));
  issue({cmd_cfgi_ste(kSid + 1)});
  DmaMaster dev(*smmu, kSid + 1);
  ASSERT_TRUE(dev.write64(kGuestData, 1));
  ASSERT_TRUE(s2.unmap(kGuestData, kPage));
  ASSERT_TRUE(dev.write64(kGuestData, 2));
  EXPECT_EQ(in_page(0), 2U);
  issue({cmd_tlbi_nh_asid(kVmid, 0), cmd_tlbi_s2_ipa(kVmid, kGuestData + kPage)});  // the wrong ones
  ASSERT_TRUE(dev.write64(kGuestData, 3));
  issue({cmd_tlbi_s2_ipa(kVmid, kGuestData)});
  auto r = dev.write64(kGuestData, 4);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().event->get(Event::ID), EventId::F_TRANSLATION);
  EXPECT_TRUE(r.error().event->get(Event::S2));
  EXPECT_EQ(in_page(0), 3U);
}

TEST_F(CacheTest, TlbiNsnhAllRemovesEverything) {
  map(kVa, 0);
  ASSERT_TRUE(write(kVa, 1));
  ASSERT_TRUE(s1.unmap(kVa, kPage));
  issue({cmd_tlbi_nsnh_all()});
  expect_fault(write(kVa, 2), EventId::F_TRANSLATION);
  EXPECT_EQ(smmu->tlb_entries(), 0U);
}

// IHI 0070 4.4.1.1: with IDR3.RIL a TLBI by address covers (NUM+1) * 2^SCALE granules of TG from Address,
// and no more.
TEST_F(CacheTest, RangeInvalidationCoversExactlyItsRange) {
  map(kVa, 0, 16);
  for (std::uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(write(kVa + i * kPage, 1));
  ASSERT_TRUE(s1.unmap(kVa, 16 * kPage));
  // Pages 4..11: NUM = 1, SCALE = 2 -> 2 * 4 = 8 granules.
  issue({range_tlbi(kVa + 4 * kPage, 1, 2)});
  for (std::uint64_t i = 0; i < 16; ++i) {
    const bool invalidated = i >= 4 && i < 12;
    EXPECT_EQ(write(kVa + i * kPage, 2).has_value(), !invalidated) << "page " << i;
  }
  EXPECT_EQ(smmu->counters().tlb_invalidated, 8U);
}

class CacheTestWithoutRil : public CacheTest {
  ModelConfig config() const override {
    ModelConfig c = ModelConfig::reference();
    c.idr3.set(Idr3::RIL, false);
    return c;
  }
};

// Without IDR3.RIL, NUM and SCALE are RES0 (IHI 0070 4.4.1.1) and this SMMU detects non-zero RES0 fields
// (4.1.5): the range form is CERROR_ILL and invalidates nothing - the answer the vSMMU gives a guest too (both
// judge commands with smmu/command_legality).
TEST_F(CacheTestWithoutRil, RangeFieldsAreRes0AndTheCommandIsIllegal) {
  map(kVa, 0, 4);
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(write(kVa + i * kPage, 1));
  ASSERT_TRUE(s1.unmap(kVa, 4 * kPage));
  const Command ranged = range_tlbi(kVa, 3, 0);
  EXPECT_FALSE(driver->issue(std::span(&ranged, 1)));
  auto err = driver->command_error();
  ASSERT_TRUE(err && err->has_value());
  EXPECT_EQ((*err)->cerror, Cerror::ill);
  for (std::uint64_t i = 0; i < 4; ++i) EXPECT_TRUE(write(kVa + i * kPage, 2)) << "page " << i;
}

// TTL names the level of the leaves to invalidate; a leaf at another level need not go, and here does not
// (IHI 0070 4.4.1.1): a driver passing a wrong hint keeps its stale entry.
TEST_F(CacheTest, TtlHintForAnotherLevelLeavesTheEntry) {
  map(kVa, 0);
  ASSERT_TRUE(write(kVa, 1));
  ASSERT_TRUE(s1.unmap(kVa, kPage));
  issue({range_tlbi(kVa, 0, 0, 2)});  // level 2: the page is a level-3 leaf
  ASSERT_TRUE(write(kVa, 2));
  // TG names the granule the same way: 16KB entries only (IHI 0070 4.4.1.1).
  issue({range_tlbi(kVa, 3, 0, 0).set(Command::TG, tlbi_tg_from_granule(Granule::k16K))});
  ASSERT_TRUE(write(kVa, 2));
  issue({range_tlbi(kVa, 0, 0, 3)});
  expect_fault(write(kVa, 3), EventId::F_TRANSLATION);
}

// IHI 0070 4.3.1 CFGI_STE: a rewritten STE is used only after its invalidation.
TEST_F(CacheTest, ChangedSteIsStaleUntilCfgiSte) {
  map(kVa, 0);
  ASSERT_TRUE(write(kVa, 1));
  ASSERT_TRUE(driver->write_ste(kSid, Ste{}.set(Ste::V, true).set(Ste::Config, StreamConfig::abort)));
  ASSERT_TRUE(write(kVa, 2));
  EXPECT_EQ(in_page(0), 2U);
  issue({cmd_cfgi_ste(kSid + 1)});  // another stream's
  ASSERT_TRUE(write(kVa, 3));
  issue({cmd_cfgi_ste(kSid)});
  auto r = write(kVa, 4);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().outcome, DmaOutcome::aborted);
  EXPECT_EQ(in_page(0), 3U);
}

// CFGI_STE_RANGE invalidates the 2^(Range+1) StreamIDs around SID (IHI 0070 4.3.2).
TEST_F(CacheTest, CfgiSteRangeCoversItsAlignedBlock) {
  map(kVa, 0);
  ASSERT_TRUE(write(kVa, 1));
  ASSERT_TRUE(driver->write_ste(kSid, Ste{}.set(Ste::V, true).set(Ste::Config, StreamConfig::abort)));
  // kSid is 0x21: Range 0 at SID 0x22 covers 0x22-0x23 and misses it; Range 2 at 0x27 covers 0x20-0x27.
  issue({Command{}.set(Command::Opcode, Opcode::CFGI_STE_RANGE).set(Command::SID, 0x22).set(Command::Range, 0)});
  ASSERT_TRUE(write(kVa, 2));
  issue({Command{}.set(Command::Opcode, Opcode::CFGI_STE_RANGE).set(Command::SID, 0x27).set(Command::Range, 2)});
  EXPECT_FALSE(write(kVa, 3));
}

// IHI 0070 4.3.3 CFGI_CD: a rewritten CD (new tables, new ASID) is used only after its invalidation; a CD
// made invalid keeps translating until then too.
TEST_F(CacheTest, ChangedCdIsStaleUntilCfgiCd) {
  map(kVa, 0);
  ASSERT_TRUE(write(kVa, 1));
  TableBuilder other{guest, guest_pool, Stage::s1, Granule::k4K, 48};
  ASSERT_TRUE(other.map(kVa, kGuestData + 5 * kPage, kPage, MapAttributes{}));
  ASSERT_TRUE(guest.write_record(cd_table_ipa, cd(other, kAsid + 1)));
  ASSERT_TRUE(write(kVa, 2));
  EXPECT_EQ(in_page(0), 2U);
  issue({cmd_cfgi_cd(kSid, 1), cmd_cfgi_cd(kSid + 1, 0)});  // other substream, other stream
  ASSERT_TRUE(write(kVa, 3));
  EXPECT_EQ(in_page(0), 3U);
  issue({cmd_cfgi_cd(kSid, 0)});
  ASSERT_TRUE(write(kVa, 4));
  EXPECT_EQ(in_page(5), 4U);

  ASSERT_TRUE(guest.write_record(cd_table_ipa, Cd{}));  // V = 0
  ASSERT_TRUE(write(kVa, 5));
  issue({Command{}.set(Command::Opcode, Opcode::CFGI_CD_ALL).set(Command::SID, kSid)});
  auto r = write(kVa, 6);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().event->get(Event::ID), EventId::C_BAD_CD);
  EXPECT_EQ(in_page(5), 5U);
}

// CFGI_STE also drops the CDs found through the STE: they were located by it (IHI 0070 4.3.1).
TEST_F(CacheTest, CfgiSteAlsoDropsTheStreamsCds) {
  map(kVa, 0);
  ASSERT_TRUE(write(kVa, 1));
  ASSERT_TRUE(guest.write_record(cd_table_ipa, Cd{}));
  issue({cmd_cfgi_ste(kSid)});
  auto r = write(kVa, 2);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().event->get(Event::ID), EventId::C_BAD_CD);
}

// An invalid STE is not cached: fixing it needs no invalidation to be seen (the SMMU may only cache
// structures it could use, IHI 0070 16.2).
TEST_F(CacheTest, InvalidSteIsNotCached) {
  map(kVa, 0);
  ASSERT_TRUE(driver->write_ste(kSid + 2, Ste{}));
  EXPECT_FALSE(DmaMaster(*smmu, kSid + 2).write64(kVa, 1));
  ASSERT_TRUE(driver->write_ste(kSid + 2, s1_ste(cd_table_ipa, true)));
  EXPECT_TRUE(DmaMaster(*smmu, kSid + 2).write64(kVa, 1));
}

}  // namespace
}  // namespace vsmmu::smmu::model::test
