// The guest's ID registers come from the physical SMMU's (GET_HW_INFO) and the VMM's wishes; the fields a VMM may
// rely on are those include/uapi/linux/iommufd.h lists for struct iommu_hw_info_arm_smmuv3; incompatibilities are
// refused one by one, as QEMU's hw/arm/smmuv3-accel.c does.
#include <gtest/gtest.h>

#include "nesting/id_registers.hpp"

namespace vsmmu::nesting {
namespace {

using namespace smmu;

// The registers QEMU 11.1's emulated SMMUv3 reported through GET_HW_INFO on Linux 7.2.12 (docs/e2e.md, "What QEMU's
// SMMUv3 and the kernel showed").
host::HwInfo qemu_smmu() {
  host::HwInfo hw;
  hw.type = host::uapi::kHwInfoTypeArmSmmuv3;
  hw.idr = {0x0d44101b, 0x02730010, 0, 0x00001414, 0, 0x00000074};
  hw.aidr = 1;
  hw.capabilities = host::uapi::kCapPciAtsNotSupported;
  return hw;
}

VsmmuWishes wishes(unsigned ipa_bits) {
  VsmmuWishes w;
  w.ipa_bits = ipa_bits;
  return w;
}

TEST(IdRegisters, AutoWishesGiveAStageOneVsmmuShapedByTheHost) {
  auto g = derive_id_registers(qemu_smmu(), wishes(40), "vsmmu0");
  ASSERT_TRUE(g) << g.error();
  EXPECT_TRUE(g->idr0.get(Idr0::S1P));
  EXPECT_FALSE(g->idr0.get(Idr0::S2P));  // the host owns stage 2
  EXPECT_EQ(g->idr0.get(Idr0::HTTU), Httu::none);  // no HTTU for nesting (uapi iommufd.h)
  EXPECT_FALSE(g->idr0.get(Idr0::BTM));
  EXPECT_TRUE(g->idr0.get(Idr0::COHACC));
  EXPECT_EQ(g->idr0.get(Idr0::ST_LEVEL), StLevel::two_level);  // host 0x0d44101b: ST_LEVEL=1
  EXPECT_EQ(g->idr1.get(Idr1::SIDSIZE), 16U);  // host SIDSIZE=16 (idr1=0x02730010)
  EXPECT_EQ(g->idr1.get(Idr1::SSIDSIZE), 0U);  // auto: no PASIDs unless asked
  EXPECT_TRUE(g->idr3.get(Idr3::RIL));         // host idr3=0x1414: RIL=1, BBML=2
  EXPECT_EQ(g->idr3.get(Idr3::BBML), 2U);
  EXPECT_FALSE(g->idr3.get(Idr3::FWB));
  EXPECT_EQ(g->idr5.get(Idr5::OAS), Oas::bits40);  // smallest OAS covering the guest's 40-bit IPA
  EXPECT_TRUE(g->idr5.get(Idr5::GRAN4K));          // host idr5=0x74: GRAN4K, GRAN16K, GRAN64K, OAS=44
  EXPECT_TRUE(g->idr5.get(Idr5::GRAN64K));
  EXPECT_FALSE(g->idr0.get(Idr0::ATS));            // PCI_ATS_NOT_SUPPORTED
}

// IDR0.MSI is the vSMMU's own: its MSIs are written by the vSMMU into guest RAM or handed to the VMM, not the
// physical SMMU's (this host has IDR0.MSI = 0). Off unless asked, since only a VMM that delivers them can offer it;
// when asked, given with COHACC, which Linux needs besides MSI to poll CMD_SYNC completions in memory
// (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c, arm_smmu_device_hw_probe: ARM_SMMU_OPT_MSIPOLL). pinned() keeps it
// for a migration's destination.
TEST(IdRegisters, MsiIsGivenOnlyWhenAskedAndAlwaysWithCohacc) {
  ASSERT_FALSE(host::HwInfo(qemu_smmu()).id_registers().idr0.get(Idr0::MSI));
  auto plain = derive_id_registers(qemu_smmu(), wishes(40), "vsmmu0");
  ASSERT_TRUE(plain) << plain.error();
  EXPECT_FALSE(plain->idr0.get(Idr0::MSI));
  VsmmuWishes w = wishes(40);
  w.msi = true;
  auto msi = derive_id_registers(qemu_smmu(), w, "vsmmu0");
  ASSERT_TRUE(msi) << msi.error();
  EXPECT_TRUE(msi->idr0.get(Idr0::MSI));
  EXPECT_TRUE(msi->idr0.get(Idr0::COHACC));
  EXPECT_EQ(msi->idr0.value() & ~mask_of<0>(Idr0::MSI), plain->idr0.value()) << "MSI changes nothing else";
  EXPECT_EQ(pinned(w, *msi).msi, std::optional<bool>(true));
  EXPECT_EQ(pinned(wishes(40), *plain).msi, std::optional<bool>(false));
}

TEST(IdRegisters, EachIncompatibilityIsNamed) {
  VsmmuWishes w = wishes(48);
  w.oas_bits = 48;          // host OAS 44
  w.ssid_bits = 20;         // host SSIDSIZE 0
  w.st_level = StLevel::linear;  // host two-level: must be equal
  w.ats = true;             // host says ATS not supported
  auto g = derive_id_registers(qemu_smmu(), w, "vsmmu0");
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().err, EINVAL);
  const std::string& m = g.error().message;
  for (const char* part : {"vsmmu0", "OAS 48 asked, the physical SMMU has 44", "SSIDSIZE 20 asked", "ST_LEVEL 0 asked",
                           "must be equal", "ATS 1 asked"})
    EXPECT_NE(m.find(part), std::string::npos) << part << " missing from: " << m;
}

TEST(IdRegisters, GuestIpaBeyondHostOasIsRefused) {
  auto g = derive_id_registers(qemu_smmu(), wishes(48), "vsmmu0");
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().message.find("cannot reach the guest's 48-bit"), std::string::npos) << g.error();
}

TEST(IdRegisters, HostWithoutStageTwoCannotNest) {
  host::HwInfo hw = qemu_smmu();
  hw.idr[0] = Idr0::of(hw.idr[0]).set(Idr0::S2P, false).dw[0] & 0xffffffffU;
  auto g = derive_id_registers(hw, wishes(40), "vsmmu0");
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().err, EOPNOTSUPP);
  EXPECT_NE(g.error().message.find("stage 2"), std::string::npos) << g.error();
}

TEST(IdRegisters, NonArmIommuIsRefused) {
  host::HwInfo hw = qemu_smmu();
  hw.type = 1;  // IOMMU_HW_INFO_TYPE_INTEL_VTD
  EXPECT_EQ(derive_id_registers(hw, {}, "vsmmu0").error().err, EOPNOTSUPP);
}

TEST(IdRegisters, EndiannessMustBeOneTheHostWalks) {
  host::HwInfo hw = qemu_smmu();  // QEMU reports TTENDIAN=2 (little); make it mixed first
  hw.idr[0] = Idr0::of(hw.idr[0]).set(Idr0::TTENDIAN, TtEndian::mixed).dw[0] & 0xffffffffU;
  VsmmuWishes w = wishes(40);
  w.tt_endian = TtEndian::big;
  EXPECT_TRUE(derive_id_registers(hw, w, "v"));
  hw.idr[0] = Idr0::of(hw.idr[0]).set(Idr0::TTENDIAN, TtEndian::little).dw[0] & 0xffffffffU;
  EXPECT_FALSE(derive_id_registers(hw, w, "v"));  // a little-endian-only SMMU cannot walk big-endian tables
  w.tt_endian = TtEndian::mixed;
  EXPECT_FALSE(derive_id_registers(hw, w, "v"));  // nor promise mixed
  w.tt_endian = std::nullopt;
  auto g = derive_id_registers(hw, w, "v");
  ASSERT_TRUE(g);
  EXPECT_EQ(g->idr0.get(Idr0::TTENDIAN), TtEndian::little);
}

TEST(IdRegisters, RilCanBeTurnedOffButNotOn) {
  host::HwInfo hw = qemu_smmu();
  VsmmuWishes w = wishes(40);
  w.ril = false;
  auto g = derive_id_registers(hw, w, "v");
  ASSERT_TRUE(g);
  EXPECT_FALSE(g->idr3.get(Idr3::RIL));
  hw.idr[3] = 0;
  w.ril = true;
  EXPECT_FALSE(derive_id_registers(hw, w, "v"));
}

TEST(IdRegisters, QueueSizesAreCappedAtTheArchitecturalMaximum) {
  VsmmuWishes w = wishes(40);
  w.cmdq_log2 = 25;
  auto g = derive_id_registers(qemu_smmu(), w, "v");
  ASSERT_TRUE(g);
  EXPECT_EQ(g->idr1.get(Idr1::CMDQS), 19U);  // IHI 0070 6.3.2
}

}  // namespace
}  // namespace vsmmu::nesting
