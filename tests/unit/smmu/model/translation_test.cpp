// Translation of device DMA through every STE configuration, linear and 2-level tables, and SubstreamIDs
// (IHI 0070 3.2, 3.3, 3.4, 5.2, 5.4).
#include "tests/unit/smmu/model/model_fixture.hpp"

namespace vsmmu::smmu::model::test {
namespace {

constexpr std::uint32_t kSid = 0x10;
constexpr std::uint64_t kVa = 0x7f00'1234'0000ULL;

// IHI 0070 3.4.3: in a nested configuration the CD pointer and every stage-1 table address are IPAs that
// stage 2 translates, and the stage-1 output is an IPA too. The bytes land at the PA stage 2 picks.
TEST_F(ModelTest, NestedDmaLandsWhereBothStagesPoint) {
  start();
  nested_stream(kSid);
  ASSERT_TRUE(s1.map(kVa, kGuestData + 0x3000, 2 * 4096, MapAttributes{.allow_blocks = false}));
  DmaMaster dev(*smmu, kSid);
  const auto data = pattern(0x840, 1);  // crosses into the second page
  ASSERT_TRUE(dev.write(kVa + 0xfe0, data));
  EXPECT_EQ(read_pa(kGuestDataPa + 0x3fe0, data.size()), data);

  std::vector<std::byte> back(data.size());
  ASSERT_TRUE(dev.read(kVa + 0xfe0, back));
  EXPECT_EQ(back, data);
  const auto c = smmu->counters();
  EXPECT_EQ(c.walks, 2U + 1U);  // one per page, plus the stage-2 walk of the CD fetch
  EXPECT_EQ(c.tlb_misses, 2U);
  EXPECT_EQ(c.tlb_hits, 2U);    // the read hit both pages
  EXPECT_TRUE(events().empty());
}

// The nested TLB entry is tagged with the stage-1 ASID and the stage-2 VMID: a second stream with the same
// ASID in another VM translates through its own tables (IHI 0070 3.17.1).
TEST_F(ModelTest, SameAsidInAnotherVmDoesNotShareTlbEntries) {
  start();
  nested_stream(kSid);
  ASSERT_TRUE(s1.map(kVa, kGuestData, 4096, MapAttributes{}));
  // A second VM: same guest tables, same ASID, but a stage 2 that maps the data page elsewhere.
  TableBuilder other_s2{mem, host_pool, Stage::s2, Granule::k4K, 48};
  ASSERT_TRUE(other_s2.map(kGuestIpa, kGuestPa, 16 * kMiB, MapAttributes{.allow_blocks = false}));
  ASSERT_TRUE(other_s2.map(kGuestData, kGuestDataPa + 0x10000, 4096, MapAttributes{}));
  Ste ste = s1_ste(cd_table_ipa, true);
  ste.set(Ste::S2VMID, kVmid + 1).set(Ste::S2TTB, other_s2.root());
  ASSERT_TRUE(driver->write_ste(kSid + 1, ste));
  ASSERT_TRUE(driver->issue(cmd_cfgi_ste(kSid + 1)));

  ASSERT_TRUE(DmaMaster(*smmu, kSid).write64(kVa, 0x1111));
  ASSERT_TRUE(DmaMaster(*smmu, kSid + 1).write64(kVa, 0x2222));
  EXPECT_EQ(mem.read64(kGuestDataPa).value(), 0x1111U);
  EXPECT_EQ(mem.read64(kGuestDataPa + 0x10000).value(), 0x2222U);
}

TEST_F(ModelTest, StageOneOnlyOutputIsAPhysicalAddress) {
  start();
  TableBuilder tables{mem, host_pool, Stage::s1, Granule::k4K, 39};
  ASSERT_TRUE(tables.map(0x40'0000, kGuestDataPa, 2 * kMiB, MapAttributes{}));  // one 2 MiB block
  auto table = host_pool.allocate(64, 64);
  ASSERT_TRUE(table);
  ASSERT_TRUE(mem.write_record(*table, cd(tables)));
  ASSERT_TRUE(driver->write_ste(kSid, s1_ste(*table, false)));
  ASSERT_TRUE(driver->issue(cmd_cfgi_ste(kSid)));

  ASSERT_TRUE(DmaMaster(*smmu, kSid).write64(0x5f'fff8, 0xabcdef));
  EXPECT_EQ(mem.read64(kGuestDataPa + 0x1f'fff8).value(), 0xabcdefU);
  // The block is one TLB entry: another address inside it hits.
  ASSERT_TRUE(DmaMaster(*smmu, kSid).read64(0x40'0000));
  EXPECT_EQ(smmu->counters().tlb_hits, 1U);
}

TEST_F(ModelTest, StageTwoOnlyTranslatesTheIovaAsAnIpa) {
  start();
  map_guest_ram();
  ASSERT_TRUE(driver->write_ste(kSid, s2_ste()));
  ASSERT_TRUE(driver->issue(cmd_cfgi_ste(kSid)));
  ASSERT_TRUE(DmaMaster(*smmu, kSid).write64(kGuestData + 0x88, 77));
  EXPECT_EQ(mem.read64(kGuestDataPa + 0x88).value(), 77U);
}

// Config == bypass: the output is the input (IHI 0070 5.2 Config).
TEST_F(ModelTest, BypassStreamUsesTheIovaAsPa) {
  start();
  ASSERT_TRUE(driver->write_ste(kSid, Ste{}.set(Ste::V, true).set(Ste::Config, StreamConfig::bypass)));
  ASSERT_TRUE(driver->issue(cmd_cfgi_ste(kSid)));
  ASSERT_TRUE(DmaMaster(*smmu, kSid).write64(kGuestDataPa + 8, 5));
  EXPECT_EQ(mem.read64(kGuestDataPa + 8).value(), 5U);
}

// Config == abort terminates every transaction and records nothing (IHI 0070 5.2 Config).
TEST_F(ModelTest, AbortStreamTerminatesWithoutAnEvent) {
  start();
  ASSERT_TRUE(driver->write_ste(kSid, Ste{}.set(Ste::V, true).set(Ste::Config, StreamConfig::abort)));
  ASSERT_TRUE(driver->issue(cmd_cfgi_ste(kSid)));
  auto r = DmaMaster(*smmu, kSid).write64(kGuestDataPa, 5);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().outcome, DmaOutcome::aborted);
  EXPECT_FALSE(r.error().event);
  EXPECT_EQ(mem.read64(kGuestDataPa).value(), 0U);
  EXPECT_TRUE(events().empty());
}

// While SMMUEN == 0 transactions follow GBPA: bypass, or abort once software sets GBPA.ABORT through the
// Update handshake; neither records an event (IHI 0070 6.3.14).
TEST_F(ModelTest, DisabledSmmuFollowsGbpa) {
  ASSERT_TRUE(add_memory());
  auto m = SmmuModel::create(mem, ModelConfig::reference());
  ASSERT_TRUE(m);
  DmaMaster dev(**m, 3);
  ASSERT_TRUE(dev.write64(kGuestDataPa, 9));
  EXPECT_EQ(mem.read64(kGuestDataPa).value(), 9U);

  ASSERT_TRUE((*m)->write32(regs::GBPA.offset, Gbpa{}.set(Gbpa::ABORT, true).set(Gbpa::Update, true).value()));
  auto r = dev.write64(kGuestDataPa, 10);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().outcome, DmaOutcome::aborted);
  EXPECT_FALSE(r.error().event);
  EXPECT_EQ(mem.read64(kGuestDataPa).value(), 9U);
}

// IHI 0070 3.3.2: a 2-level stream table finds STEs through level-1 descriptors; StreamIDs whose
// descriptor has Span == 0 are invalid (C_BAD_STREAMID).
TEST_F(ModelTest, TwoLevelStreamTable) {
  start(ModelConfig::reference(), DriverOptions{.sid_bits = 16});
  map_guest_ram();
  for (std::uint32_t sid : {0x0005U, 0x1234U, 0xffffU}) {
    ASSERT_TRUE(driver->write_ste(sid, s2_ste()));
    ASSERT_TRUE(driver->issue(cmd_cfgi_ste(sid)));
    ASSERT_TRUE(DmaMaster(*smmu, sid).write64(kGuestData + sid * 8, sid));
    EXPECT_EQ(mem.read64(kGuestDataPa + sid * 8).value(), sid);
  }
  auto r = DmaMaster(*smmu, 0x0305).write64(kGuestData, 1);  // level-1 entry 3 was never filled
  ASSERT_FALSE(r);
  ASSERT_TRUE(r.error().event);
  EXPECT_EQ(r.error().event->get(Event::ID), EventId::C_BAD_STREAMID);
  EXPECT_EQ(r.error().event->get(Event::SID), 0x0305U);
}

// SubstreamIDs select CDs through a 2-level CD table with 4KB or 64KB leaf tables (IHI 0070 3.4.2, 5.3).
class TwoLevelCdTable : public ModelTest, public ::testing::WithParamInterface<CdTableFormat> {};

TEST_P(TwoLevelCdTable, EachSubstreamUsesItsOwnContext) {
  start();
  map_guest_ram();
  const CdTableFormat fmt = GetParam();
  const unsigned split = fmt == CdTableFormat::two_level_4k ? 6 : 10;
  const unsigned cdmax = 12;
  auto l1 = guest_pool.allocate(8ULL << (cdmax - split), 4096);
  ASSERT_TRUE(l1);
  const std::array<std::uint32_t, 2> ssids{3, 0xabc};  // different level-1 entries
  for (std::size_t i = 0; i < ssids.size(); ++i) {
    const std::uint32_t ssid = ssids[i];
    auto l2 = guest_pool.allocate(Cd::bytes << split, Cd::bytes << split);
    ASSERT_TRUE(l2);
    ASSERT_TRUE(
        guest.write_record(*l1 + (ssid >> split) * 8, CdTableL1{}.set(CdTableL1::V, true).set(CdTableL1::L2Ptr, *l2)));
    // Each substream has its own ASID and tables mapping the same VA to a different page.
    auto tables = std::make_unique<TableBuilder>(guest, guest_pool, Stage::s1, Granule::k4K, 48);
    ASSERT_TRUE(tables->map(kVa, kGuestData + i * 4096, 4096, MapAttributes{}));
    make_non_global(*tables, kVa);  // a global leaf would be shared by both ASIDs (IHI 0070 3.17.1)
    ASSERT_TRUE(guest.write_record(*l2 + (ssid & ((1U << split) - 1)) * Cd::bytes,
                                   cd(*tables, static_cast<std::uint16_t>(100 + i))));
  }
  ASSERT_TRUE(driver->write_ste(kSid, s1_ste(*l1, true, cdmax, fmt)));
  ASSERT_TRUE(driver->issue(cmd_cfgi_ste(kSid)));
  for (std::size_t i = 0; i < ssids.size(); ++i)
    ASSERT_TRUE(DmaMaster(*smmu, kSid, ssids[i]).write64(kVa + 8, 0x500 + i));
  EXPECT_EQ(mem.read64(kGuestDataPa + 8).value(), 0x500U);
  EXPECT_EQ(mem.read64(kGuestDataPa + 4096 + 8).value(), 0x501U);

  // A level-1 descriptor with V == 0 makes its SubstreamIDs unusable: C_BAD_SUBSTREAMID (IHI 0070 5.3).
  auto r = DmaMaster(*smmu, kSid, 0x7ff).write64(kVa, 1);
  ASSERT_FALSE(r);
  ASSERT_TRUE(r.error().event);
  EXPECT_EQ(r.error().event->get(Event::ID), EventId::C_BAD_SUBSTREAMID);
  EXPECT_EQ(r.error().event->get(Event::SSID), 0x7ffU);
}

INSTANTIATE_TEST_SUITE_P(LeafSizes, TwoLevelCdTable,
                         ::testing::Values(CdTableFormat::two_level_4k, CdTableFormat::two_level_64k));

// With substreams enabled, S1DSS decides what a transaction without a SubstreamID does (IHI 0070 5.2 S1DSS).
TEST_F(ModelTest, S1dssDecidesNonSubstreamTraffic) {
  start();
  map_guest_ram();
  ASSERT_TRUE(s1.map(kVa, kGuestData + 0x5000, 4096, MapAttributes{}));
  auto table = guest_pool.allocate(Cd::bytes * 4, 256);
  ASSERT_TRUE(table);
  ASSERT_TRUE(guest.write_record(*table, cd(s1)));  // CD 0
  ASSERT_TRUE(guest.write_record(*table + 64, cd(s1)));  // CD 1

  const auto no_ssid_write = [&](S1Dss dss, std::uint64_t iova) {
    EXPECT_TRUE(driver->write_ste(kSid, s1_ste(*table, true, 2, CdTableFormat::linear, dss)));
    EXPECT_TRUE(driver->issue(cmd_cfgi_ste(kSid)));
    return DmaMaster(*smmu, kSid).write64(iova, 0x77);
  };
  auto terminated = no_ssid_write(S1Dss::terminate, kVa);
  ASSERT_FALSE(terminated);
  EXPECT_EQ(terminated.error().event->get(Event::ID), EventId::F_STREAM_DISABLED);

  // Bypass: stage 1 is skipped, the IOVA goes to stage 2 as an IPA.
  ASSERT_TRUE(no_ssid_write(S1Dss::bypass, kGuestData + 0x100));
  EXPECT_EQ(mem.read64(kGuestDataPa + 0x100).value(), 0x77U);

  // Substream 0: CD 0 translates untagged traffic, and SubstreamID 0 itself is ILLEGAL.
  ASSERT_TRUE(no_ssid_write(S1Dss::substream0, kVa + 0x10));
  EXPECT_EQ(mem.read64(kGuestDataPa + 0x5010).value(), 0x77U);
  auto ssid0 = DmaMaster(*smmu, kSid, 0).write64(kVa, 1);
  ASSERT_FALSE(ssid0);
  EXPECT_EQ(ssid0.error().event->get(Event::ID), EventId::C_BAD_SUBSTREAMID);
  ASSERT_TRUE(DmaMaster(*smmu, kSid, 1).write64(kVa + 0x18, 0x78));
  EXPECT_EQ(mem.read64(kGuestDataPa + 0x5018).value(), 0x78U);
}

// A SubstreamID at or beyond 2^S1CDMax, or any SubstreamID when S1CDMax == 0 or stage 1 is off, is
// C_BAD_SUBSTREAMID (IHI 0070 5.2 S1CDMax, 3.9.2).
TEST_F(ModelTest, SubstreamIdOutsideTheCdTableIsBad) {
  start();
  map_guest_ram();
  ASSERT_TRUE(s1.init());
  auto table = guest_pool.allocate(Cd::bytes * 4, 256);
  ASSERT_TRUE(table);
  const auto expect_bad_substream = [&](std::uint32_t sid, std::uint32_t ssid) {
    auto r = DmaMaster(*smmu, sid, ssid).write64(kVa, 1);
    ASSERT_FALSE(r);
    ASSERT_TRUE(r.error().event);
    EXPECT_EQ(r.error().event->get(Event::ID), EventId::C_BAD_SUBSTREAMID);
    EXPECT_EQ(r.error().event->get(Event::SID), sid);
    EXPECT_EQ(r.error().event->get(Event::SSID), ssid);
  };
  ASSERT_TRUE(driver->write_ste(1, s1_ste(*table, true, 2)));  // 4 CDs
  ASSERT_TRUE(driver->write_ste(2, s1_ste(*table, true, 0)));  // substreams disabled
  ASSERT_TRUE(driver->write_ste(3, s2_ste()));                 // no stage 1
  ASSERT_TRUE(driver->issue(cmd_cfgi_all()));
  expect_bad_substream(1, 4);
  expect_bad_substream(2, 1);
  expect_bad_substream(3, 1);
}

// IHI 0070 5.2 S2FWB: effective only with stage 2 and where IDR3.FWB says the SMMU implements it.
TEST_F(ModelTest, EffectiveS2fwbNeedsStageTwoAndIdr3Fwb) {
  ModelConfig no_fwb = ModelConfig::reference();
  no_fwb.idr3.set(Idr3::FWB, false);
  for (bool implemented : {true, false}) {
    start(implemented ? ModelConfig::reference() : no_fwb);
    ASSERT_TRUE(s2.init());
    ASSERT_TRUE(driver->write_ste(1, s2_ste().set(Ste::S2FWB, true)));
    ASSERT_TRUE(driver->write_ste(2, s2_ste()));
    ASSERT_TRUE(
        driver->write_ste(3, Ste{}.set(Ste::V, true).set(Ste::Config, StreamConfig::bypass).set(Ste::S2FWB, true)));
    EXPECT_EQ(smmu->effective_s2fwb(1), implemented);
    EXPECT_EQ(smmu->effective_s2fwb(2), false);
    EXPECT_EQ(smmu->effective_s2fwb(3), false);
    EXPECT_EQ(smmu->effective_s2fwb(4), std::nullopt);  // V == 0: no usable STE
  }
}

// A DMA is translated page by page before any byte moves: a fault on a later page moves nothing, and the
// event names the faulting page's address.
TEST_F(ModelTest, RangeFaultingOnItsLastPageMovesNothing) {
  start();
  nested_stream(kSid);
  ASSERT_TRUE(s1.map(kVa, kGuestData, 2 * 4096, MapAttributes{.allow_blocks = false}));
  const auto data = pattern(3 * 4096, 9);
  auto r = DmaMaster(*smmu, kSid).write(kVa, data);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().iova, kVa + 2 * 4096);
  ASSERT_TRUE(r.error().event);
  EXPECT_EQ(r.error().event->get(Event::ID), EventId::F_TRANSLATION);
  EXPECT_EQ(r.error().event->get(Event::InputAddr), kVa + 2 * 4096);
  EXPECT_EQ(read_pa(kGuestDataPa, 2 * 4096), std::vector<std::byte>(2 * 4096));

  // The same for a read: the device's buffer is left as it was.
  std::vector<std::byte> buf(3 * 4096, std::byte{0xee});
  ASSERT_FALSE(DmaMaster(*smmu, kSid).read(kVa, buf));
  EXPECT_EQ(buf, std::vector<std::byte>(3 * 4096, std::byte{0xee}));
}

}  // namespace
}  // namespace vsmmu::smmu::model::test
