// Inputs a hostile or broken driver can give the SMMU, and the architectural answer to each (IHI 0070 3.3,
// 5.1-5.4, 6.3.24-6.3.26, 7.3): no hang, no crash, no access outside what the structures name.
#include "tests/unit/smmu/model/model_fixture.hpp"

namespace vsmmu::smmu::model::test {
namespace {

constexpr std::uint64_t kVa = 0x2000'0000ULL;

std::optional<EventId> fault_id(const std::expected<void, DmaFault>& r) {
  if (r || !r.error().event) return std::nullopt;
  return r.error().event->get(Event::ID);
}

Ste bypass_ste() { return Ste{}.set(Ste::V, true).set(Ste::Config, StreamConfig::bypass); }

// A level-1 descriptor whose level-2 table is the level-1 table itself: the SMMU reads level-1 descriptors
// as an STE, finds it invalid (C_BAD_STE), and is done: two levels, no loop (IHI 0070 3.3.2).
TEST_F(ModelTest, SelfReferencingTwoLevelStreamTable) {
  start(ModelConfig::reference(), DriverOptions{.sid_bits = 16});
  const std::uint64_t l1 = driver->strtab_base();
  ASSERT_TRUE(mem.write_record(l1 + 8, StreamTableL1{}.set(StreamTableL1::Span, 8).set(StreamTableL1::L2Ptr, l1)));
  EXPECT_EQ(fault_id(DmaMaster(*smmu, 0x0100).write64(kVa, 1)), EventId::C_BAD_STE);
}

// A level-1 CD descriptor pointing at its own table: CDs are read from level-1 descriptors and are ILLEGAL
// (AA64 = 0): C_BAD_CD (IHI 0070 3.4.2).
TEST_F(ModelTest, SelfReferencingTwoLevelCdTable) {
  start();
  auto l1 = host_pool.allocate(4096, 4096);
  ASSERT_TRUE(l1);
  ASSERT_TRUE(mem.write_record(*l1, CdTableL1{}.set(CdTableL1::V, true).set(CdTableL1::L2Ptr, *l1)));
  ASSERT_TRUE(driver->write_ste(1, s1_ste(*l1, false, 8, CdTableFormat::two_level_4k)));
  EXPECT_EQ(fault_id(DmaMaster(*smmu, 1, 5).write64(kVa, 1)), EventId::C_BAD_CD);
}

// STRTAB_BASE_CFG.LOG2SIZE beyond IDR1.SIDSIZE acts as SIDSIZE (IHI 0070 6.3.25): a hostile 63 neither
// overflows nor opens StreamIDs the SMMU does not have, and the table is aligned to its effective size.
TEST_F(ModelTest, HugeLog2sizeIsBoundedBySidsize) {
  start();
  const std::uint64_t bytes = Ste::bytes << 16;
  auto table = host_pool.allocate(bytes, bytes);
  ASSERT_TRUE(table);
  ASSERT_TRUE(mem.write_record(*table + 0xffff * Ste::bytes, bypass_ste()));
  Cr0 cr0 = Cr0::of(smmu->read32(regs::CR0.offset).value());
  ASSERT_TRUE(smmu->write32(regs::CR0.offset, Cr0{cr0}.set(Cr0::SMMUEN, false).value()));
  ASSERT_TRUE(smmu->write64(regs::STRTAB_BASE.offset, StrtabBase{}.set(StrtabBase::ADDR, *table + 0x40).value()));
  ASSERT_TRUE(smmu->write32(regs::STRTAB_BASE_CFG.offset, StrtabBaseCfg{}.set(StrtabBaseCfg::LOG2SIZE, 63).value()));
  ASSERT_TRUE(smmu->write32(regs::CR0.offset, cr0.value()));
  ASSERT_TRUE(driver->issue(cmd_cfgi_all()));
  EXPECT_TRUE(DmaMaster(*smmu, 0xffff).write64(kGuestDataPa, 1));
  EXPECT_EQ(fault_id(DmaMaster(*smmu, 0x1'0000).write64(kGuestDataPa, 1)), EventId::C_BAD_STREAMID);
  EXPECT_EQ(fault_id(DmaMaster(*smmu, 0xffff'ffff).write64(kGuestDataPa, 1)), EventId::C_BAD_STREAMID);
}

// A StreamID beyond the table's LOG2SIZE is C_BAD_STREAMID and nothing is fetched for it (IHI 0070 3.3.1).
TEST_F(ModelTest, StreamIdBeyondTheLinearTable) {
  start();  // 256 STEs
  const auto fetches = smmu->counters().ste_fetches;
  EXPECT_EQ(fault_id(DmaMaster(*smmu, 0x100).write64(kVa, 1)), EventId::C_BAD_STREAMID);
  EXPECT_EQ(smmu->counters().ste_fetches, fetches);
}

// Span values above SPLIT + 1 are reserved: the model treats the descriptor as invalid (IHI 0070 5.1).
TEST_F(ModelTest, ReservedSpanIsAnInvalidStreamId) {
  start(ModelConfig::reference(), DriverOptions{.sid_bits = 16});
  ASSERT_TRUE(driver->write_ste(0x0201, bypass_ste()));
  ASSERT_TRUE(driver->issue(cmd_cfgi_all()));
  ASSERT_TRUE(DmaMaster(*smmu, 0x0201).write64(kGuestDataPa, 1));
  auto l1 = mem.read_record<StreamTableL1>(driver->strtab_base() + 2 * 8);
  ASSERT_TRUE(l1);
  ASSERT_TRUE(mem.write_record(driver->strtab_base() + 2 * 8, l1->set(StreamTableL1::Span, SmmuDriver::kStrtabSplit + 2)));
  ASSERT_TRUE(driver->issue(cmd_cfgi_ste(0x0201, false)));
  EXPECT_EQ(fault_id(DmaMaster(*smmu, 0x0201).write64(kGuestDataPa, 1)), EventId::C_BAD_STREAMID);
}

// Without IDR0.ST_LEVEL a 2-level FMT has no meaning; the model reads the table as linear.
TEST_F(ModelTest, TwoLevelFormatWithoutStLevelIsLinear) {
  ModelConfig linear_only = ModelConfig::reference();
  linear_only.idr0.set(Idr0::ST_LEVEL, StLevel::linear);
  start(linear_only);
  ASSERT_TRUE(driver->write_ste(9, bypass_ste()));
  Cr0 cr0 = Cr0::of(smmu->read32(regs::CR0.offset).value());
  ASSERT_TRUE(smmu->write32(regs::CR0.offset, Cr0{cr0}.set(Cr0::SMMUEN, false).value()));
  auto cfg = StrtabBaseCfg::of(smmu->read32(regs::STRTAB_BASE_CFG.offset).value());
  ASSERT_TRUE(
      smmu->write32(regs::STRTAB_BASE_CFG.offset, cfg.set(StrtabBaseCfg::FMT, StreamTableFormat::two_level).value()));
  ASSERT_TRUE(smmu->write32(regs::CR0.offset, cr0.value()));
  EXPECT_TRUE(DmaMaster(*smmu, 9).write64(kGuestDataPa, 1));
}

// Pointers with bits below the structure's alignment are used aligned down: the stream table to its size
// (IHI 0070 6.3.24), a queue to its size (6.3.26), a 64KB level-2 CD table to 64KB (5.3).
TEST_F(ModelTest, MisalignedPointersAreAlignedDown) {
  start();
  ASSERT_TRUE(driver->write_ste(3, bypass_ste()));
  Cr0 cr0 = Cr0::of(smmu->read32(regs::CR0.offset).value());
  ASSERT_TRUE(smmu->write32(regs::CR0.offset, Cr0{}.value()));
  ASSERT_TRUE(smmu->write64(regs::STRTAB_BASE.offset,
                            StrtabBase{}.set(StrtabBase::ADDR, driver->strtab_base() + 0x1040).value()));
  auto cmdq = QueueBase::of(smmu->read64(regs::CMDQ_BASE.offset).value());
  ASSERT_TRUE(smmu->write64(regs::CMDQ_BASE.offset, cmdq.set(QueueBase::ADDR, driver->cmdq_base() + 0x20).value()));
  ASSERT_TRUE(smmu->write32(regs::CR0.offset, cr0.value()));
  ASSERT_TRUE(driver->issue(cmd_cfgi_all()));  // the driver writes at the aligned base
  EXPECT_TRUE(DmaMaster(*smmu, 3).write64(kGuestDataPa, 1));

  // A 64KB level-2 CD table named with L2Ptr bits [15:12] set.
  TableBuilder tables{mem, host_pool, Stage::s1, Granule::k4K, 48};
  ASSERT_TRUE(tables.map(kVa, kGuestDataPa, 4096, MapAttributes{}));
  auto l1 = host_pool.allocate(4096, 4096);
  auto l2 = host_pool.allocate(64 * kKiB, 64 * kKiB);
  ASSERT_TRUE(l1 && l2);
  ASSERT_TRUE(mem.write_record(*l1, CdTableL1{}.set(CdTableL1::V, true).set(CdTableL1::L2Ptr, *l2 + 0x3000)));
  ASSERT_TRUE(mem.write_record(*l2 + 5 * Cd::bytes, cd(tables)));
  ASSERT_TRUE(driver->write_ste(4, s1_ste(*l1, false, 10, CdTableFormat::two_level_64k)));
  EXPECT_TRUE(DmaMaster(*smmu, 4, 5).write64(kVa, 2));
  EXPECT_EQ(mem.read64(kGuestDataPa).value(), 2U);
}

// Reserved STE.Config values are ILLEGAL: C_BAD_STE (IHI 0070 5.2 Config).
class ReservedConfig : public ModelTest, public ::testing::WithParamInterface<StreamConfig> {};

TEST_P(ReservedConfig, IsBadSte) {
  start();
  ASSERT_TRUE(driver->write_ste(2, Ste{}.set(Ste::V, true).set(Ste::Config, GetParam())));
  EXPECT_EQ(fault_id(DmaMaster(*smmu, 2).write64(kGuestDataPa, 1)), EventId::C_BAD_STE);
  EXPECT_EQ(mem.read64(kGuestDataPa).value(), 0U);
}

INSTANTIATE_TEST_SUITE_P(Values, ReservedConfig,
                         ::testing::Values(StreamConfig::reserved1, StreamConfig::reserved2, StreamConfig::reserved3));

// STE fields the SMMU cannot honour make the STE ILLEGAL (IHI 0070 5.2 "STE validity").
struct BadSteCase {
  const char* name;
  Ste (*mutate)(Ste);
};
class IllegalSte : public ModelTest, public ::testing::WithParamInterface<BadSteCase> {
 protected:
  // A nested STE the SMMU accepts; its empty CD table then gives C_BAD_CD.
  std::optional<EventId> fault_with(Ste (*mutate)(Ste)) {
    ModelConfig config = ModelConfig::reference();
    config.idr0.set(Idr0::CD2L, false);
    config.idr1.set(Idr1::SSIDSIZE, 8);
    start(config);
    map_guest_ram();
    auto table = guest_pool.allocate(4096, 4096);
    EXPECT_TRUE(table);
    EXPECT_TRUE(driver->write_ste(2, mutate(s1_ste(table.value_or(0), true, 4))));
    return fault_id(DmaMaster(*smmu, 2, 1).write64(kVa, 1));
  }
};

TEST_F(IllegalSte, UnchangedSteIsLegal) {
  EXPECT_EQ(fault_with([](Ste s) { return s; }), EventId::C_BAD_CD);
}

TEST_P(IllegalSte, IsBadSte) { EXPECT_EQ(fault_with(GetParam().mutate), EventId::C_BAD_STE); }

INSTANTIATE_TEST_SUITE_P(
    Fields, IllegalSte,
    ::testing::Values(
        BadSteCase{"S1CDMaxAboveSsidsize", [](Ste s) { return s.set(Ste::S1CDMax, 9); }},
        BadSteCase{"ReservedS1Fmt", [](Ste s) { return s.set(Ste::S1Fmt, CdTableFormat::reserved); }},
        BadSteCase{"TwoLevelCdWithoutCd2l", [](Ste s) { return s.set(Ste::S1Fmt, CdTableFormat::two_level_4k); }},
        BadSteCase{"ReservedS1dss", [](Ste s) { return s.set(Ste::S1DSS, S1Dss::reserved); }},
        BadSteCase{"AArch32StageTwo", [](Ste s) { return s.set(Ste::S2AA64, false); }},
        BadSteCase{"ReservedS2tg", [](Ste s) { return s.set(Ste::S2TG, 3); }},
        BadSteCase{"S2t0szTooSmall", [](Ste s) { return s.set(Ste::S2T0SZ, 8); }},
        BadSteCase{
            "StageOnePointerAboveOas",
            [](Ste s) { return s.set(Ste::Config, StreamConfig::s1_translate).set(Ste::S1ContextPtr, 1ULL << 49); }}),
    [](const auto& p) { return std::string(p.param.name); });

// A DMA whose range would wrap the 64-bit address space is no bus transaction: refused, no event.
TEST_F(ModelTest, RangeWrappingTheAddressSpaceIsRefused) {
  start();
  std::array<std::byte, 16> buf{};
  auto r = DmaMaster(*smmu, 1).write(~0ULL - 7, buf);
  ASSERT_FALSE(r);
  EXPECT_FALSE(r.error().event);
  EXPECT_EQ(smmu->counters().translations, 0U);
}

// A DMA whose translation points at no memory is a bus error after translation: nothing moves and the SMMU
// records nothing (the interconnect, not the SMMU, aborts it).
TEST_F(ModelTest, OutputWithoutMemoryIsABusError) {
  start();
  ASSERT_TRUE(driver->write_ste(5, bypass_ste()));
  std::array<std::byte, 8192> buf{};
  auto r = DmaMaster(*smmu, 5).write(kGuestPa + kGuestSize - 4096, buf);  // runs off the end of guest RAM
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().outcome, DmaOutcome::bus_error);
  EXPECT_FALSE(r.error().event);
}

}  // namespace
}  // namespace vsmmu::smmu::model::test
