// The ID register decoder (smmu/id_features.hpp): every field read from the bits IHI 0070 6.3.1-6.3.8 give it,
// checked with raw register values written from the spec's bit positions rather than from the Field
// definitions, so a wrong Field would show here.
#include <gtest/gtest.h>

#include <cstdint>
#include <span>

#include "smmu/id_features.hpp"

namespace vsmmu::smmu {
namespace {

IdFeatures decode(std::uint32_t idr0, std::uint32_t idr1 = 0, std::uint32_t idr3 = 0, std::uint32_t idr5 = 0,
                  std::uint32_t iidr = 0, std::uint32_t aidr = 0) {
  IdRegisters ids;
  ids.idr0 = Idr0::of(idr0);
  ids.idr1 = Idr1::of(idr1);
  ids.idr3 = Idr3::of(idr3);
  ids.idr5 = Idr5::of(idr5);
  ids.iidr = Iidr::of(iidr);
  ids.aidr = Aidr::of(aidr);
  return IdFeatures::of(ids);
}

struct OneBit {
  const char* name;
  unsigned bit;
  bool IdFeatures::*field;
};

// Each flag alone: set where the spec puts it, and no other flag with it.
void expect_single_bits(std::span<const OneBit> rows, IdFeatures (*with_bit)(unsigned)) {
  const std::size_t n = rows.size();
  for (std::size_t i = 0; i < n; ++i) {
    SCOPED_TRACE(rows[i].name);
    const IdFeatures f = with_bit(rows[i].bit);
    for (std::size_t j = 0; j < n; ++j) EXPECT_EQ(f.*rows[j].field, i == j) << rows[j].name;
  }
}

// IHI 0070 6.3.1 IDR0: S2P [0], S1P [1], COHACC [4], Hyp [9], ATS [10], ASID16 [12], MSI [13], PRI [16],
// VMID16 [18], CD2L [19], TERM_MODEL [26].
TEST(IdFeatures, Idr0FlagsAtTheirBits) {
  static const OneBit rows[] = {
      {"S2P", 0, &IdFeatures::s2p},       {"S1P", 1, &IdFeatures::s1p},       {"COHACC", 4, &IdFeatures::cohacc},
      {"Hyp", 9, &IdFeatures::hyp},       {"ATS", 10, &IdFeatures::ats},      {"ASID16", 12, &IdFeatures::asid16},
      {"MSI", 13, &IdFeatures::msi},      {"PRI", 16, &IdFeatures::pri},      {"VMID16", 18, &IdFeatures::vmid16},
      {"CD2L", 19, &IdFeatures::cd2l},    {"TERM_MODEL", 26, &IdFeatures::term_model},
  };
  expect_single_bits(rows, [](unsigned bit) { return decode(1U << bit); });
}

// IHI 0070 6.3.1 IDR0: TTF [3:2], HTTU [7:6], TTENDIAN [22:21], STALL_MODEL [25:24], ST_LEVEL [28:27].
TEST(IdFeatures, Idr0MultiBitFields) {
  EXPECT_EQ(decode(0b10U << 2).ttf, Ttf::aarch64);
  EXPECT_EQ(decode(0b11U << 2).ttf, Ttf::aarch32_aarch64);
  EXPECT_EQ(decode(0b01U << 2).ttf, Ttf::aarch32);
  EXPECT_EQ(decode(0b01U << 6).httu, Httu::access);
  EXPECT_EQ(decode(0b10U << 6).httu, Httu::access_dirty);
  EXPECT_EQ(decode(0b11U << 6).httu, Httu::access_dirty_table);
  EXPECT_EQ(decode(0).ttendian, TtEndian::mixed);
  EXPECT_EQ(decode(0b10U << 21).ttendian, TtEndian::little);
  EXPECT_EQ(decode(0b11U << 21).ttendian, TtEndian::big);
  EXPECT_EQ(decode(0).stall_model, StallModel::stall_and_terminate);
  EXPECT_EQ(decode(0b01U << 24).stall_model, StallModel::terminate);
  EXPECT_EQ(decode(0b10U << 24).stall_model, StallModel::stall_forced);
  EXPECT_EQ(decode(0).st_level, StLevel::linear);
  EXPECT_EQ(decode(0b01U << 27).st_level, StLevel::two_level);
  // Neighbouring fields stay out of each other's way.
  const IdFeatures all = decode(0xffffffffU);
  EXPECT_EQ(all.ttf, Ttf::aarch32_aarch64);
  EXPECT_EQ(all.httu, Httu::access_dirty_table);
  EXPECT_EQ(all.ttendian, TtEndian::big);
  EXPECT_EQ(all.stall_model, StallModel::reserved);
  EXPECT_EQ(all.st_level, StLevel::reserved3);
}

// IHI 0070 6.3.2 IDR1: SIDSIZE [5:0], SSIDSIZE [10:6], EVENTQS [20:16], CMDQS [25:21], ATTR_TYPES_OVR [27],
// REL [28], QUEUES_PRESET [29], TABLES_PRESET [30].
TEST(IdFeatures, Idr1SizesAndPresets) {
  const IdFeatures f = decode(0, 32U | 20U << 6 | 0x1fU << 11 | 19U << 16 | 8U << 21);
  EXPECT_EQ(f.sidsize, 32U);
  EXPECT_EQ(f.ssidsize, 20U);
  EXPECT_EQ(f.eventqs, 19U) << "PRIQS [15:11] does not leak into EVENTQS";
  EXPECT_EQ(f.cmdqs, 8U);
  EXPECT_FALSE(f.attr_types_ovr || f.rel || f.queues_preset || f.tables_preset);

  static const OneBit rows[] = {{"ATTR_TYPES_OVR", 27, &IdFeatures::attr_types_ovr}, {"REL", 28, &IdFeatures::rel},
                                {"QUEUES_PRESET", 29, &IdFeatures::queues_preset},
                                {"TABLES_PRESET", 30, &IdFeatures::tables_preset}};
  expect_single_bits(rows, [](unsigned bit) { return decode(0, 1U << bit); });
}

// IHI 0070 6.3.4 IDR3: FWB [8], RIL [10], BBML [12:11].
TEST(IdFeatures, Idr3FwbRilBbml) {
  EXPECT_TRUE(decode(0, 0, 1U << 8).fwb);
  EXPECT_FALSE(decode(0, 0, 1U << 8).ril);
  EXPECT_TRUE(decode(0, 0, 1U << 10).ril);
  EXPECT_FALSE(decode(0, 0, 1U << 10).fwb);
  EXPECT_EQ(decode(0, 0, 0b10U << 11).bbml, 2U);
  EXPECT_EQ(decode(0, 0, 0b01U << 11).bbml, 1U);
  EXPECT_FALSE(decode(0, 0, 0b11U << 11).ril) << "BBML is above RIL";
}

// IHI 0070 6.3.6 IDR5: OAS [2:0] (32, 36, 40, 42, 44, 48, 52 bits; 0b111 56 bits from SMMUv3.4), GRAN4K [4],
// GRAN16K [5], GRAN64K [6], VAX [11:10].
TEST(IdFeatures, Idr5OutputSizeGranulesAndVax) {
  const unsigned bits[] = {32, 36, 40, 42, 44, 48, 52, 56};
  for (unsigned e = 0; e < 8; ++e) {
    const IdFeatures f = decode(0, 0, 0, e);
    EXPECT_EQ(static_cast<unsigned>(f.oas), e);
    EXPECT_EQ(f.oas_bits(), bits[e]) << "OAS encoding " << e;
  }
  const IdFeatures g4 = decode(0, 0, 0, 1U << 4), g16 = decode(0, 0, 0, 1U << 5), g64 = decode(0, 0, 0, 1U << 6);
  EXPECT_TRUE(g4.gran4k && !g4.gran16k && !g4.gran64k);
  EXPECT_TRUE(!g16.gran4k && g16.gran16k && !g16.gran64k);
  EXPECT_TRUE(!g64.gran4k && !g64.gran16k && g64.gran64k);
  EXPECT_TRUE(g16.granule(Granule::k16K));
  EXPECT_FALSE(g16.granule(Granule::k4K));
  EXPECT_FALSE(g16.granule(Granule::k64K));
  EXPECT_EQ(decode(0, 0, 0, 0b01U << 10).vax, Vax::va52);
  EXPECT_EQ(decode(0, 0, 0, 0b10U << 10).vax, Vax::va56);
}

// IHI 0070 6.3.7 IIDR: Implementer [11:0], Revision [15:12], Variant [19:16], ProductID [31:20]; 6.3.8 AIDR:
// ArchMinorRev [3:0], ArchMajorRev [7:4]. Arm's MMU-700 r1p1 (JEP106 0x43b, product 0x487) on SMMUv3.2.
TEST(IdFeatures, IidrAndAidr) {
  const IdFeatures f = decode(0, 0, 0, 0, 0x4871143bU, 0x02U);
  EXPECT_EQ(f.implementer, 0x43bU);
  EXPECT_EQ(f.revision, 1U);
  EXPECT_EQ(f.variant, 1U);
  EXPECT_EQ(f.product_id, 0x487U);
  EXPECT_EQ(f.arch_major_rev, 0U);
  EXPECT_EQ(f.arch_minor_rev, 2U);
  EXPECT_EQ(decode(0, 0, 0, 0, 0, 0x13U).arch_major_rev, 1U);
}

// The derived readings: ASID/VMID widths (IDR0.ASID16, VMID16), HTTU levels, AArch64 tables (IDR0.TTF), 2-level
// stream tables (IDR0.ST_LEVEL).
TEST(IdFeatures, DerivedReadings) {
  const IdFeatures none = decode(0);
  EXPECT_EQ(none.asid_bits(), 8U);
  EXPECT_EQ(none.vmid_bits(), 8U);
  EXPECT_FALSE(none.httu_access());
  EXPECT_FALSE(none.httu_dirty());
  EXPECT_FALSE(none.aarch64_tables());
  EXPECT_FALSE(none.two_level_stream_table());
  const IdFeatures wide = decode(1U << 12 | 1U << 18);
  EXPECT_EQ(wide.asid_bits(), 16U);
  EXPECT_EQ(wide.vmid_bits(), 16U);
  EXPECT_TRUE(decode(0b01U << 6).httu_access());
  EXPECT_FALSE(decode(0b01U << 6).httu_dirty());
  EXPECT_TRUE(decode(0b10U << 6).httu_dirty());
  EXPECT_TRUE(decode(0b11U << 6).httu_dirty());
  EXPECT_TRUE(decode(0b10U << 2).aarch64_tables());
  EXPECT_TRUE(decode(0b11U << 2).aarch64_tables());
  EXPECT_FALSE(decode(0b01U << 2).aarch64_tables()) << "AArch32 tables only";
  EXPECT_TRUE(decode(0b01U << 27).two_level_stream_table());
}

// QEMU's emulated SMMUv3 as IOMMU_GET_HW_INFO reported it in the e2e guest (tests/unit/host/kernel_host_test.cpp):
// IDR0 0x0d44101b, IDR1 0x02730010, IDR3 0x00001414, IDR5 0x74.
TEST(IdFeatures, QemuVirtSmmu) {
  const IdFeatures f = decode(0x0d44101bU, 0x02730010U, 0x00001414U, 0x74U);
  EXPECT_TRUE(f.s1p);
  EXPECT_TRUE(f.s2p);
  EXPECT_EQ(f.ttf, Ttf::aarch64);
  EXPECT_TRUE(f.cohacc);
  EXPECT_EQ(f.httu, Httu::none);
  EXPECT_FALSE(f.ats);
  EXPECT_TRUE(f.asid16);
  EXPECT_TRUE(f.vmid16);
  EXPECT_FALSE(f.cd2l);
  EXPECT_EQ(f.ttendian, TtEndian::little);
  EXPECT_EQ(f.stall_model, StallModel::terminate);
  EXPECT_TRUE(f.term_model);
  EXPECT_EQ(f.st_level, StLevel::two_level);
  EXPECT_EQ(f.sidsize, 16U);
  EXPECT_EQ(f.ssidsize, 0U);
  EXPECT_EQ(f.eventqs, 19U);
  EXPECT_EQ(f.cmdqs, 19U);
  EXPECT_FALSE(f.fwb);
  EXPECT_TRUE(f.ril);
  EXPECT_EQ(f.bbml, 2U);
  EXPECT_EQ(f.oas_bits(), 44U);
  EXPECT_TRUE(f.gran4k && f.gran16k && f.gran64k);
}

}  // namespace
}  // namespace vsmmu::smmu
