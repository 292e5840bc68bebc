// CD tables and stage-1 streams as Linux builds them (arm_smmu_alloc_cd_tables, arm_smmu_make_s1_cd,
// arm_smmu_make_cdtable_ste; IHI 0070 3.4.3, 5.2, 5.3, 5.4), translated by the model.
#include "testing/dma.hpp"
#include "tests/unit/smmu/driver/driver_fixture.hpp"

namespace vsmmu::smmu::driver::test {
namespace {

constexpr std::uint64_t kIova = 0x12'3456'7000;
constexpr std::uint16_t kAsid = 9;

class CdTableTest : public DriverTest {
 protected:
  void SetUp() override {
    DriverTest::SetUp();
    ASSERT_TRUE(s1.map(kIova, kData, 4096, MapAttributes{}));
  }
  TableBuilder s1{mem, pool, Stage::s1, Granule::k4K, 48};
};

// More than 1024 SSIDs with IDR0.CD2L: a level-1 table of descriptors and 64KB level-2 tables of 1024 CDs,
// each allocated when its first CD is written (S1Fmt 0b10).
TEST_F(CdTableTest, TwoLevelTableForManySubstreams) {
  start();
  auto ref = driver->create_cd_table(5, 16);
  ASSERT_TRUE(ref) << ref.error();
  EXPECT_EQ(ref->fmt, CdTableFormat::two_level_64k);
  EXPECT_EQ(ref->s1cdmax, 16U);
  EXPECT_EQ(driver->cd_table(5)->cd_address(0x1234).error().err, ENOENT);  // no level-2 table yet

  ASSERT_TRUE(driver->attach_stage1(5, 0x1234, kAsid, s1));
  const auto l1 = mem.read_record<CdTableL1>(ref->base + (0x1234 >> CdTable::kSplit64K) * CdTableL1::bytes).value();
  EXPECT_TRUE(l1.get(CdTableL1::V));
  EXPECT_EQ(driver->cd_table(5)->cd_address(0x1234).value(), l1.get(CdTableL1::L2Ptr) + 0x234 * Cd::bytes);
  EXPECT_EQ(driver->cd_table(5)->cd_address(0x1000 + 7).value(), l1.get(CdTableL1::L2Ptr) + 7 * Cd::bytes);
  EXPECT_EQ(driver->cd_table(5)->cd_address(0x2000).error().err, ENOENT);  // another level-2 table

  ASSERT_TRUE(testkit::DmaMaster(*smmu, 5, 0x1234).write64(kIova + 8, 0xabc));
  EXPECT_EQ(mem.read64(kData + 8).value(), 0xabcU);
  EXPECT_FALSE(testkit::DmaMaster(*smmu, 5, 0x2000).write64(kIova + 8, 1));  // no CD there
}

// S1Fmt 0b01: level-2 tables of 64 CDs (4KB), on request.
TEST_F(CdTableTest, TwoLevelTableWith4KLeafTables) {
  start();
  auto ref = driver->create_cd_table(6, 8, CdTableFormat::two_level_4k);
  ASSERT_TRUE(ref) << ref.error();
  ASSERT_TRUE(driver->attach_stage1(6, 0x45, kAsid, s1));
  const auto l1 = mem.read_record<CdTableL1>(ref->base + (0x45 >> CdTable::kSplit4K) * CdTableL1::bytes).value();
  EXPECT_EQ(driver->cd_table(6)->cd_address(0x45).value(), l1.get(CdTableL1::L2Ptr) + 0x05 * Cd::bytes);
  ASSERT_TRUE(testkit::DmaMaster(*smmu, 6, 0x45).write64(kIova, 0x45));
  EXPECT_EQ(mem.read64(kData).value(), 0x45U);
}

// Few SSIDs, or no IDR0.CD2L: a linear table (S1Fmt 0b00); a 2-level one cannot be had without CD2L.
TEST_F(CdTableTest, LinearTableForFewSubstreamsOrWithoutCd2l) {
  auto config = model::ModelConfig::reference();
  config.idr0.set(Idr0::CD2L, false);
  start(config);
  auto ref = driver->create_cd_table(5, 12);
  ASSERT_TRUE(ref) << ref.error();
  EXPECT_EQ(ref->fmt, CdTableFormat::linear);
  EXPECT_EQ(driver->cd_table(5)->cd_address(0x123).value(), ref->base + 0x123 * Cd::bytes);
  EXPECT_EQ(driver->create_cd_table(5, 16, CdTableFormat::two_level_64k).error().err, EOPNOTSUPP);
}

TEST_F(CdTableTest, RefusesSubstreamsBeyondTheLimits) {
  auto config = model::ModelConfig::reference();
  config.idr1.set(Idr1::SSIDSIZE, 4);
  start(config);
  EXPECT_EQ(driver->create_cd_table(5, 5).error().err, ERANGE);  // beyond IDR1.SSIDSIZE
  ASSERT_TRUE(driver->create_cd_table(5, 4));
  EXPECT_EQ(driver->attach_stage1(5, 16, kAsid, s1).error().err, ERANGE);  // beyond S1CDMax
}

// The records attach_stage1 writes, field by field as Linux writes them, and a DMA without a SubstreamID
// using CD 0 (S1DSS = SUBSTREAM0).
TEST_F(CdTableTest, Stage1StreamAsLinuxWritesIt) {
  start();
  ASSERT_TRUE(driver->attach_stage1(7, 0, kAsid, s1));
  const Ste ste = mem.read_record<Ste>(driver->ste_address(7).value()).value();
  EXPECT_EQ(ste.get(Ste::Config), StreamConfig::s1_translate);
  EXPECT_EQ(ste.get(Ste::S1Fmt), CdTableFormat::linear);
  EXPECT_EQ(ste.get(Ste::S1CDMax), 0U);
  EXPECT_EQ(ste.get(Ste::S1ContextPtr), driver->cd_table(7)->ref().base);
  EXPECT_EQ(ste.get(Ste::S1DSS), S1Dss::substream0);
  EXPECT_EQ(ste.get(Ste::S1CIR), Cacheability::wbra);
  EXPECT_EQ(ste.get(Ste::S1CSH), Shareability::inner);
  const Cd cd = driver->cd_table(7)->read(0).value();
  EXPECT_TRUE(cd.get(Cd::V) && cd.get(Cd::AA64) && cd.get(Cd::EPD1) && cd.get(Cd::R) && cd.get(Cd::A) && cd.get(Cd::ASET));
  EXPECT_EQ(cd.get(Cd::ASID), kAsid);
  EXPECT_EQ(cd.get(Cd::TTB0), s1.root());
  EXPECT_EQ(cd.get(Cd::T0SZ), 16U);
  EXPECT_EQ(cd.get(Cd::IPS), static_cast<std::uint64_t>(Oas::bits48));
  // CFGI_CD then CFGI_STE, then CMD_SYNC.
  const auto ops = spy->opcodes();
  ASSERT_GE(ops.size(), 3U);
  EXPECT_EQ(std::vector(ops.end() - 3, ops.end()), (std::vector{Opcode::CFGI_CD, Opcode::CFGI_STE, Opcode::CMD_SYNC}));
  ASSERT_TRUE(testkit::DmaMaster(*smmu, 7).write64(kIova, 7));
  EXPECT_EQ(mem.read64(kData).value(), 7U);
}

}  // namespace
}  // namespace vsmmu::smmu::driver::test
