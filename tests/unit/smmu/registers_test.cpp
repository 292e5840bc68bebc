// The register file (IHI 0070 6): offsets, layouts, and queue index arithmetic.
#include <gtest/gtest.h>

#include "smmu/registers.hpp"

namespace vsmmu::smmu {
namespace {

// IHI 0070 6.3.x "Accessible at offset ... from SMMUv3_PAGE_0/1" and each register's width.
TEST(RegisterMap, OffsetsAndWidthsFollowIhi0070_6_3) {
  struct Row {
    RegisterInfo reg;
    std::uint32_t offset;
    unsigned width;
  };
  const Row rows[] = {
      {regs::IDR0, 0x00, 32},           {regs::IDR1, 0x04, 32},           {regs::IDR2, 0x08, 32},
      {regs::IDR3, 0x0C, 32},           {regs::IDR4, 0x10, 32},           {regs::IDR5, 0x14, 32},
      {regs::IIDR, 0x18, 32},           {regs::AIDR, 0x1C, 32},           {regs::CR0, 0x20, 32},
      {regs::CR0ACK, 0x24, 32},         {regs::CR1, 0x28, 32},            {regs::CR2, 0x2C, 32},
      {regs::STATUSR, 0x40, 32},        {regs::GBPA, 0x44, 32},           {regs::AGBPA, 0x48, 32},
      {regs::IRQ_CTRL, 0x50, 32},       {regs::IRQ_CTRLACK, 0x54, 32},    {regs::GERROR, 0x60, 32},
      {regs::GERRORN, 0x64, 32},        {regs::GERROR_IRQ_CFG0, 0x68, 64}, {regs::GERROR_IRQ_CFG1, 0x70, 32},
      {regs::GERROR_IRQ_CFG2, 0x74, 32}, {regs::STRTAB_BASE, 0x80, 64},   {regs::STRTAB_BASE_CFG, 0x88, 32},
      {regs::CMDQ_BASE, 0x90, 64},      {regs::CMDQ_PROD, 0x98, 32},      {regs::CMDQ_CONS, 0x9C, 32},
      {regs::EVENTQ_BASE, 0xA0, 64},    {regs::EVENTQ_IRQ_CFG0, 0xB0, 64}, {regs::EVENTQ_IRQ_CFG1, 0xB8, 32},
      {regs::EVENTQ_IRQ_CFG2, 0xBC, 32}, {regs::PRIQ_BASE, 0xC0, 64},     {regs::PRIQ_IRQ_CFG0, 0xD0, 64},
      {regs::PRIQ_IRQ_CFG1, 0xD8, 32},  {regs::PRIQ_IRQ_CFG2, 0xDC, 32},  {regs::GATOS_CTRL, 0x100, 32},
      {regs::GATOS_SID, 0x108, 64},     {regs::GATOS_ADDR, 0x110, 64},    {regs::GATOS_PAR, 0x118, 64},
      // Page 1, 64KB above page 0 (IHI 0070 6.3.95-98).
      {regs::EVENTQ_PROD, 0x100A8, 32}, {regs::EVENTQ_CONS, 0x100AC, 32}, {regs::PRIQ_PROD, 0x100C8, 32},
      {regs::PRIQ_CONS, 0x100CC, 32},
  };
  EXPECT_EQ(all_registers().size(), std::size(rows));
  for (const auto& r : rows) {
    SCOPED_TRACE(r.reg.name);
    EXPECT_EQ(r.reg.offset, r.offset);
    EXPECT_EQ(r.reg.width, r.width);
    EXPECT_EQ(r.reg.page, r.offset >= kPage1Offset ? RegisterPage::page1 : RegisterPage::page0);
    auto found = register_info(r.offset);
    ASSERT_TRUE(found);
    EXPECT_EQ(found->name, r.reg.name);
  }
}

TEST(RegisterMap, LookupFindsEitherHalfOfA64BitRegisterAndNothingInHoles) {
  EXPECT_EQ(register_info(0x84)->name, "STRTAB_BASE");  // upper word, as a 32-bit access sees it
  EXPECT_EQ(register_info(0x6C)->name, "GERROR_IRQ_CFG0");
  EXPECT_FALSE(register_info(0x8C));   // after STRTAB_BASE_CFG
  EXPECT_FALSE(register_info(0xA8));   // EVENTQ_PROD lives in page 1, not page 0
  EXPECT_FALSE(register_info(0x30));
  EXPECT_FALSE(register_info(0x10000));
  EXPECT_FALSE(register_info(0xFFFFFFFFU));
}

// The ID registers a QEMU virt SMMUv3 reported to the Linux driver, decoded field by field (IHI 0070 6.3.1).
TEST(IdRegisters, DecodeQemuIdr0) {
  const auto idr0 = Idr0::of(0x0d44101b);
  EXPECT_TRUE(idr0.get(Idr0::S2P));
  EXPECT_TRUE(idr0.get(Idr0::S1P));
  EXPECT_EQ(idr0.get(Idr0::TTF), Ttf::aarch64);
  EXPECT_TRUE(idr0.get(Idr0::COHACC));
  EXPECT_FALSE(idr0.get(Idr0::BTM));
  EXPECT_EQ(idr0.get(Idr0::HTTU), Httu::none);
  EXPECT_FALSE(idr0.get(Idr0::ATS));
  EXPECT_TRUE(idr0.get(Idr0::ASID16));
  EXPECT_FALSE(idr0.get(Idr0::MSI));
  EXPECT_FALSE(idr0.get(Idr0::PRI));
  EXPECT_TRUE(idr0.get(Idr0::VMID16));
  EXPECT_FALSE(idr0.get(Idr0::CD2L));
  EXPECT_EQ(idr0.get(Idr0::TTENDIAN), TtEndian::little);
  EXPECT_EQ(idr0.get(Idr0::STALL_MODEL), StallModel::terminate);
  EXPECT_TRUE(idr0.get(Idr0::TERM_MODEL));
  EXPECT_EQ(idr0.get(Idr0::ST_LEVEL), StLevel::two_level);
  EXPECT_EQ(idr0.value(), 0x0d44101bU);
}

// IHI 0070 6.3.2: 16-bit StreamIDs, no substreams, 2^19-entry command and event queues.
TEST(IdRegisters, DecodeQemuIdr1) {
  const auto idr1 = Idr1::of(0x02730010);
  EXPECT_EQ(idr1.get(Idr1::SIDSIZE), 16U);
  EXPECT_EQ(idr1.get(Idr1::SSIDSIZE), 0U);
  EXPECT_EQ(idr1.get(Idr1::PRIQS), 0U);
  EXPECT_EQ(idr1.get(Idr1::EVENTQS), 19U);
  EXPECT_EQ(idr1.get(Idr1::CMDQS), 19U);
  EXPECT_FALSE(idr1.get(Idr1::TABLES_PRESET));
  EXPECT_FALSE(idr1.get(Idr1::QUEUES_PRESET));
}

// IHI 0070 6.3.4: range invalidation and BBM level 2, no S2FWB.
TEST(IdRegisters, DecodeQemuIdr3) {
  const auto idr3 = Idr3::of(0x00001414);
  EXPECT_TRUE(idr3.get(Idr3::RIL));
  EXPECT_EQ(idr3.get(Idr3::BBML), 2U);
  EXPECT_FALSE(idr3.get(Idr3::FWB));
  EXPECT_TRUE(idr3.get(Idr3::HAD));
  EXPECT_TRUE(idr3.get(Idr3::XNX));
  EXPECT_FALSE(idr3.get(Idr3::MPAM));
  EXPECT_FALSE(idr3.get(Idr3::DPT));
}

// IHI 0070 6.3.6: 44-bit OAS, all three granules.
TEST(IdRegisters, DecodeQemuIdr5) {
  const auto idr5 = Idr5::of(0x00000074);
  EXPECT_EQ(idr5.get(Idr5::OAS), Oas::bits44);
  EXPECT_EQ(idr5.oas_bits(), 44U);
  EXPECT_TRUE(idr5.get(Idr5::GRAN4K));
  EXPECT_TRUE(idr5.get(Idr5::GRAN16K));
  EXPECT_TRUE(idr5.get(Idr5::GRAN64K));
  EXPECT_EQ(idr5.get(Idr5::VAX), Vax::va48);
  EXPECT_EQ(idr5.get(Idr5::STALL_MAX), 0U);
}

// IHI 0070 6.3.6 OAS encodings, shared by CD.IPS and STE.S2PS.
TEST(IdRegisters, OasEncodingsMapToAddressSizes) {
  const unsigned bits[] = {32, 36, 40, 42, 44, 48, 52, 56};
  for (unsigned e = 0; e < 8; ++e) {
    EXPECT_EQ(address_bits(static_cast<Oas>(e)), bits[e]);
    EXPECT_EQ(oas_for_bits(bits[e]), static_cast<Oas>(e));
  }
  EXPECT_FALSE(oas_for_bits(39));
  EXPECT_FALSE(oas_for_bits(64));
}

// IHI 0070 6.3.8: AIDR 0x02 is SMMUv3.2.
TEST(IdRegisters, AidrMinorRevisionIsTheV3Point) {
  const auto aidr = Aidr::of(0x02);
  EXPECT_EQ(aidr.get(Aidr::ArchMajorRev), 0U);
  EXPECT_EQ(aidr.get(Aidr::ArchMinorRev), 2U);
}

// IHI 0070 6.3.9: SMMUEN 0, PRIQEN 1, EVENTQEN 2, CMDQEN 3, ATSCHK 4, VMW[8:6].
TEST(ControlRegisters, Cr0BitsFollowIhi0070_6_3_9) {
  const auto cr0 = Cr0{}.set(Cr0::SMMUEN, true).set(Cr0::EVENTQEN, true).set(Cr0::CMDQEN, true).set(Cr0::VMW, 7);
  EXPECT_EQ(cr0.value(), 0x1CDU);
  EXPECT_FALSE(cr0.get(Cr0::PRIQEN));
}

// IHI 0070 6.3.14: GBPA.ABORT is bit 20 and Update bit 31; QEMU resets GBPA to 0x1000 (SHCFG use incoming).
TEST(ControlRegisters, GbpaFields) {
  const auto gbpa = Gbpa::of(0x8010'1000);
  EXPECT_TRUE(gbpa.get(Gbpa::Update));
  EXPECT_TRUE(gbpa.get(Gbpa::ABORT));
  EXPECT_EQ(gbpa.get(Gbpa::SHCFG), 1U);
}

// IHI 0070 6.3.19/20 and 7.5: an error is active while GERROR and GERRORN differ in its bit.
TEST(ControlRegisters, GerrorActiveErrorsAreThoseNotAcknowledged) {
  EXPECT_EQ(Gerror{}.set(Gerror::CMDQ_ERR, true).value(), 0x001U);
  EXPECT_EQ(Gerror{}.set(Gerror::EVTQ_ABT_ERR, true).value(), 0x004U);
  EXPECT_EQ(Gerror{}.set(Gerror::PRIQ_ABT_ERR, true).value(), 0x008U);
  EXPECT_EQ(Gerror{}.set(Gerror::MSI_CMDQ_ABT_ERR, true).value(), 0x010U);
  EXPECT_EQ(Gerror{}.set(Gerror::MSI_EVTQ_ABT_ERR, true).value(), 0x020U);
  EXPECT_EQ(Gerror{}.set(Gerror::MSI_PRIQ_ABT_ERR, true).value(), 0x040U);
  EXPECT_EQ(Gerror{}.set(Gerror::MSI_GERROR_ABT_ERR, true).value(), 0x080U);
  EXPECT_EQ(Gerror{}.set(Gerror::SFM_ERR, true).value(), 0x100U);
  // Linux's GERROR_ERR_MASK (0x1fd) plus DPT_ERR, which GERRORN can acknowledge too.
  EXPECT_EQ(Gerror::kErrorMask, 0x5FDU);
  // CMDQ_ERR raised and acknowledged, SFM_ERR raised and not; bit 1 is not an error bit.
  const auto active = Gerror::active(Gerror::of(0x103), Gerror::of(0x001));
  EXPECT_EQ(active.value(), 0x100U);
  EXPECT_TRUE(active.get(Gerror::SFM_ERR));
  EXPECT_FALSE(active.get(Gerror::CMDQ_ERR));
}

// IHI 0070 6.3.24/25: STRTAB_BASE RA[62], ADDR[51:6]; STRTAB_BASE_CFG LOG2SIZE[5:0], SPLIT[10:6], FMT[17:16].
TEST(StreamTableRegisters, FieldsFollowIhi0070_6_3_24) {
  const auto base = StrtabBase{}.set(StrtabBase::RA, true).set(StrtabBase::ADDR, 0x4000'0000);
  EXPECT_EQ(base.value(), 0x4000'0000'4000'0000ULL);
  EXPECT_FALSE(StrtabBase::ADDR.fits(0x4000'0020));  // 64-byte alignment
  const auto cfg = StrtabBaseCfg{}
                       .set(StrtabBaseCfg::FMT, StreamTableFormat::two_level)
                       .set(StrtabBaseCfg::SPLIT, 8)
                       .set(StrtabBaseCfg::LOG2SIZE, 16);
  EXPECT_EQ(cfg.value(), 0x0001'0210U);
}

// IHI 0070 6.3.26: queue base RA/WA[62], ADDR[51:5], LOG2SIZE[4:0].
TEST(QueueRegisters, QueueBaseFollowsIhi0070_6_3_26) {
  const auto q = QueueBase{}.set(QueueBase::RA, true).set(QueueBase::ADDR, 0x8'0000).set(QueueBase::LOG2SIZE, 8);
  EXPECT_EQ(q.value(), 0x4000'0000'0008'0008ULL);
  EXPECT_TRUE(q.get(QueueBase::WA));  // the same bit, named for the queues the SMMU writes
  EXPECT_FALSE(QueueBase::ADDR.fits(0x8'0010));
}

// IHI 0070 6.3.28, 7.1: CMDQ_CONS.ERR[30:24] holds the CERROR code; the index keeps its bits.
TEST(QueueRegisters, CmdqConsErrorCodes) {
  EXPECT_EQ(QueueCons{}.set(QueueCons::RD, 5).set(QueueCons::ERR, Cerror::ill).value(), 0x0100'0005U);
  EXPECT_EQ(QueueCons{}.set(QueueCons::ERR, Cerror::abt).value(), 0x0200'0000U);
  EXPECT_EQ(QueueCons{}.set(QueueCons::ERR, Cerror::atc_inv_sync).value(), 0x0300'0000U);
  EXPECT_EQ(QueueCons::of(0x8000'0003).get(QueueCons::OVACKFLG), true);
  EXPECT_EQ(QueueProd::of(0x8000'0003).get(QueueProd::OVFLG), true);
  EXPECT_EQ(QueueProd::of(0x8000'0003).get(QueueProd::WR), 3U);
}

// IHI 0070 3.5.1, 6.3.27: WR/RD are an index in [LOG2SIZE-1:0] and a wrap bit at [LOG2SIZE]; the queue
// is empty when both match and full when only the wrap bits differ.
TEST(QueueIndexArithmetic, IndexAndWrapSplitAtLog2size) {
  const QueueIndex q{3};  // 8 entries
  EXPECT_EQ(q.entries(), 8U);
  EXPECT_EQ(q.index(0xF), 7U);
  EXPECT_TRUE(q.wrap(0x8));
  EXPECT_FALSE(q.wrap(0x7));
  EXPECT_EQ(q.advance(7), 8U);          // index 0, wrap set
  EXPECT_EQ(q.advance(0xF), 0U);        // index 0, wrap clear again
  EXPECT_EQ(q.advance(6, 5), 0xBU);     // 6 + 5 = 11: wrap, index 3
  EXPECT_TRUE(q.empty(0x5, 0x5));
  EXPECT_FALSE(q.full(0x5, 0x5));
  EXPECT_TRUE(q.full(0xD, 0x5));
  EXPECT_FALSE(q.empty(0xD, 0x5));
  EXPECT_EQ(q.count(0xD, 0x5), 8U);
  EXPECT_EQ(q.count(0x2, 0xE), 4U);     // prod wrapped back to 0 while cons is in the wrapped half
  EXPECT_EQ(q.count(0x5, 0x5), 0U);
  // Bits above the wrap bit (CONS.ERR, OVFLG) play no part once the field is extracted.
  EXPECT_EQ(q.index(QueueCons::of(0x0100'0005).get(QueueCons::RD)), 5U);
}

TEST(QueueIndexArithmetic, OneEntryQueueHasOnlyAWrapBit) {
  const QueueIndex q{0};
  EXPECT_EQ(q.entries(), 1U);
  EXPECT_EQ(q.index(1), 0U);
  EXPECT_TRUE(q.wrap(1));
  EXPECT_EQ(q.advance(0), 1U);
  EXPECT_EQ(q.advance(1), 0U);
  EXPECT_TRUE(q.full(1, 0));
  EXPECT_TRUE(q.empty(1, 1));
}

TEST(QueueIndexArithmetic, LargestQueueUsesAllTwentyBits) {
  const QueueIndex q{19};
  EXPECT_EQ(q.mask(), QueueProd::WR.mask);
  EXPECT_EQ(q.advance(0x7FFFF), 0x80000U);
  EXPECT_EQ(q.advance(0xFFFFF), 0U);
}

// IHI 0070 6.3.21-23: MSI address[51:2], payload, and write attributes.
TEST(IrqConfig, MsiConfigurationFields) {
  EXPECT_EQ(IrqCfg0{}.set(IrqCfg0::ADDR, 0x0800'0040).value(), 0x0800'0040ULL);
  EXPECT_FALSE(IrqCfg0::ADDR.fits(0x0800'0041));
  EXPECT_EQ(IrqCfg1{}.set(IrqCfg1::DATA, 0xdead'beef).value(), 0xdead'beefU);
  EXPECT_EQ(IrqCfg2{}.set(IrqCfg2::SH, Shareability::inner).set(IrqCfg2::MemAttr, 0xF).value(), 0x3FU);
}

}  // namespace
}  // namespace vsmmu::smmu
