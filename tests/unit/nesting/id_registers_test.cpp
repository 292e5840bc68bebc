// The guest's ID registers come from the physical SMMU's (GET_HW_INFO) and the VMM's wishes; the fields a VMM may
// rely on are those include/uapi/linux/iommufd.h lists for struct iommu_hw_info_arm_smmuv3; incompatibilities are
// refused one by one, as QEMU's hw/arm/smmuv3-accel.c does.
#include <gtest/gtest.h>

#include "nesting/id_registers.hpp"
#include "smmu/id_features.hpp"

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
  EXPECT_EQ(g->idr1.get(Idr1::SSIDSIZE), 0U);  // auto: the host's, and QEMU's SMMU has no substreams
  EXPECT_TRUE(g->idr3.get(Idr3::RIL));         // host idr3=0x1414: RIL=1, BBML=2
  EXPECT_EQ(g->idr3.get(Idr3::BBML), 2U);
  EXPECT_FALSE(g->idr3.get(Idr3::FWB));
  EXPECT_EQ(g->idr5.get(Idr5::OAS), Oas::bits40);  // smallest OAS covering the guest's 40-bit IPA
  EXPECT_TRUE(g->idr5.get(Idr5::GRAN4K));          // host idr5=0x74: GRAN4K, GRAN16K, GRAN64K, OAS=44
  EXPECT_TRUE(g->idr5.get(Idr5::GRAN64K));
  EXPECT_FALSE(g->idr0.get(Idr0::ATS));            // PCI_ATS_NOT_SUPPORTED
}

// IDR0.MSI is the vSMMU's own: its MSIs are written by the vSMMU into guest RAM or handed to the VMM, not the
// physical SMMU's (this host has IDR0.MSI = 0). Off unless asked or the VMM delivers MSIs (MsiAuto... below);
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

// A VMM that states its IPA size still learns, in one line, that the host's stage 2 cannot cover it.
TEST(IdRegisters, StatedIpaBeyondHostOasIsRefusedWithThePreciseLine) {
  auto g = derive_id_registers(qemu_smmu(), wishes(48), "vsmmu0");
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().err, EINVAL);
  EXPECT_NE(g.error().message.find("vsmmu0: the physical SMMU cannot provide what the VMM asked: IPA 48 bits asked, "
                                   "the physical SMMU's OAS is 44 bits"),
            std::string::npos)
      << g.error();
  auto ok = derive_id_registers(qemu_smmu(), wishes(41), "vsmmu0");
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(ok->idr5.get(Idr5::OAS), Oas::bits42) << "the smallest architectural OAS covering 41 bits";
  VsmmuWishes both = wishes(44);
  both.oas_bits = 40;
  auto short_oas = derive_id_registers(qemu_smmu(), both, "vsmmu0");
  ASSERT_FALSE(short_oas);
  EXPECT_NE(short_oas.error().message.find("OAS 40 bits cannot reach the guest's 44-bit physical address space"),
            std::string::npos)
      << short_oas.error();
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


// ---- "auto", the default of every wish (VsmmuWishes): the host's value capped by what the vSMMU supports.

host::HwInfo with_idr(host::HwInfo hw, unsigned n, std::uint32_t value) {
  hw.idr[n] = value;
  return hw;
}
std::uint32_t idr0_of(const host::HwInfo& hw, auto field, auto value) {
  return static_cast<std::uint32_t>(Idr0::of(hw.idr[0]).set(field, value).dw[0]);
}

// A 48-bit-OAS SMMU with ATS, 2-level CD tables, 16 SubstreamID bits and stalls (like a server SMMU, e.g.
// HiSilicon's behind its ZIP/SEC accelerators).
host::HwInfo server_smmu() {
  host::HwInfo hw = qemu_smmu();
  hw.capabilities = 0;
  hw.idr[0] = idr0_of(hw, Idr0::ATS, true);
  hw.idr[0] = idr0_of(hw, Idr0::CD2L, true);
  hw.idr[0] = idr0_of(hw, Idr0::STALL_MODEL, StallModel::stall_and_terminate);
  hw.idr[1] = static_cast<std::uint32_t>(Idr1::of(hw.idr[1]).set(Idr1::SSIDSIZE, 16U).dw[0]);
  hw.idr[5] = static_cast<std::uint32_t>(Idr5::of(hw.idr[5]).set(Idr5::OAS, Oas::bits48).dw[0]);
  return hw;
}

// Today's complaint: on a 44-bit SMMU the VMM had to know to ask for 40 bits. With nothing asked the guest gets
// the host's 44 bits, and its IPA is those 44 bits.
TEST(IdRegistersAuto, A44BitSmmuGivesA44BitGuestWithoutBeingAsked) {
  ASSERT_EQ(IdFeatures::of(qemu_smmu().id_registers()).oas_bits(), 44U);
  auto g = derive_id_registers(qemu_smmu(), VsmmuWishes{}, "vsmmu0");
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(g->idr5.get(Idr5::OAS), Oas::bits44);
  auto server = derive_id_registers(server_smmu(), VsmmuWishes{}, "vsmmu0");
  ASSERT_TRUE(server) << server.error();
  EXPECT_EQ(server->idr5.get(Idr5::OAS), Oas::bits48);
}

// OAS auto stops at 48 bits (kMaxAutoOasBits): a 52-bit SMMU gives 48 unless the VMM states 52.
TEST(IdRegistersAuto, OasAutoStopsAt48ButA52BitSmmuHonoursA52BitWish) {
  const host::HwInfo hw = with_idr(server_smmu(), 5, static_cast<std::uint32_t>(
                                       Idr5::of(server_smmu().idr[5]).set(Idr5::OAS, Oas::bits52).dw[0]));
  auto g = derive_id_registers(hw, VsmmuWishes{}, "v");
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(g->idr5.get(Idr5::OAS), Oas::bits48);
  VsmmuWishes w;
  w.oas_bits = 52;
  auto big = derive_id_registers(hw, w, "v");
  ASSERT_TRUE(big) << big.error();
  EXPECT_EQ(big->idr5.get(Idr5::OAS), Oas::bits52);
  w.oas_bits = std::nullopt;
  w.ipa_bits = 52;
  auto ipa = derive_id_registers(hw, w, "v");
  ASSERT_TRUE(ipa) << ipa.error();
  EXPECT_EQ(ipa->idr5.get(Idr5::OAS), Oas::bits52);
}

// SSIDSIZE auto is the host's (as QEMU's smmuv3-accel "auto" takes the host's IDR1.SSIDSIZE), capped at 10 bits
// without 2-level CD tables; a stated size above the host's is refused with its line.
TEST(IdRegistersAuto, SsidsizeAutoIsTheHostsCappedWithoutTwoLevelCdTables) {
  auto g = derive_id_registers(server_smmu(), VsmmuWishes{}, "v");
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(g->idr1.get(Idr1::SSIDSIZE), 16U);
  const host::HwInfo linear = with_idr(server_smmu(), 0, idr0_of(server_smmu(), Idr0::CD2L, false));
  auto l = derive_id_registers(linear, VsmmuWishes{}, "v");
  ASSERT_TRUE(l) << l.error();
  EXPECT_EQ(l->idr1.get(Idr1::SSIDSIZE), kMaxLinearSsidBits);
  VsmmuWishes w;
  w.ssid_bits = 16;
  auto refused = derive_id_registers(linear, w, "v");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("SSIDSIZE 16 asked without 2-level CD tables (IDR0.CD2L=0)"), std::string::npos)
      << refused.error();
  w.ssid_bits = 20;
  auto above = derive_id_registers(server_smmu(), w, "v");
  ASSERT_FALSE(above);
  EXPECT_NE(above.error().message.find("SSIDSIZE 20 asked, the physical SMMU has 16"), std::string::npos) << above.error();
  w.ssid_bits = 0;
  auto none = derive_id_registers(server_smmu(), w, "v");
  ASSERT_TRUE(none) << none.error();
  EXPECT_EQ(none->idr1.get(Idr1::SSIDSIZE), 0U) << "a VMM may still turn PASIDs off";
}

// ATS auto is the SMMU's IDR0.ATS, off for a device the kernel flags IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED
// (include/uapi/linux/iommufd.h). Stated ATS is refused only by an SMMU without it: the flag is the device's, and
// the kernel does not enable ATS for such a device whatever the guest's EATS (arm_smmu_attach_prepare), so it
// may sit behind a vSMMU that offers ATS to its other devices.
TEST(IdRegistersAuto, AtsAutoFollowsTheSmmuAndTheDevice) {
  auto on = derive_id_registers(server_smmu(), VsmmuWishes{}, "v");
  ASSERT_TRUE(on) << on.error();
  EXPECT_TRUE(on->idr0.get(Idr0::ATS));
  host::HwInfo flagged = server_smmu();
  flagged.capabilities = host::uapi::kCapPciAtsNotSupported;
  auto off = derive_id_registers(flagged, VsmmuWishes{}, "v");
  ASSERT_TRUE(off) << off.error();
  EXPECT_FALSE(off->idr0.get(Idr0::ATS));
  VsmmuWishes w;
  w.ats = true;
  auto stated = derive_id_registers(flagged, w, "v");
  ASSERT_TRUE(stated) << stated.error();
  EXPECT_TRUE(stated->idr0.get(Idr0::ATS));
  const host::HwInfo no_ats = with_idr(server_smmu(), 0, idr0_of(server_smmu(), Idr0::ATS, false));
  auto none = derive_id_registers(no_ats, VsmmuWishes{}, "v");
  ASSERT_TRUE(none) << none.error();
  EXPECT_FALSE(none->idr0.get(Idr0::ATS));
  auto refused_smmu = derive_id_registers(no_ats, w, "v");
  ASSERT_FALSE(refused_smmu);
  EXPECT_NE(refused_smmu.error().message.find("ATS 1 asked, the physical SMMU has 0 (IDR0.ATS)"), std::string::npos)
      << refused_smmu.error();
}

TEST(IdRegistersAuto, RilAutoIsTheHosts) {
  auto with = derive_id_registers(qemu_smmu(), VsmmuWishes{}, "v");
  ASSERT_TRUE(with) << with.error();
  EXPECT_TRUE(with->idr3.get(Idr3::RIL));
  const host::HwInfo no_ril = with_idr(qemu_smmu(), 3, static_cast<std::uint32_t>(
                                           Idr3::of(qemu_smmu().idr[3]).set(Idr3::RIL, false).dw[0]));
  auto without = derive_id_registers(no_ril, VsmmuWishes{}, "v");
  ASSERT_TRUE(without) << without.error();
  EXPECT_FALSE(without->idr3.get(Idr3::RIL));
}

// MSI auto gives IDR0.MSI exactly to a VMM that delivers the vSMMU's MSIs: a guest whose firmware gives the SMMU an
// MSI parent aims its interrupts at the interrupt controller, dead unless someone delivers them.
TEST(IdRegistersAuto, MsiAutoIsOnOnlyForAVmmThatDeliversMsis) {
  VsmmuWishes w;
  auto silent = derive_id_registers(qemu_smmu(), w, "v");
  ASSERT_TRUE(silent) << silent.error();
  EXPECT_FALSE(silent->idr0.get(Idr0::MSI));
  w.msi_delivery = true;
  auto delivering = derive_id_registers(qemu_smmu(), w, "v");
  ASSERT_TRUE(delivering) << delivering.error();
  EXPECT_TRUE(delivering->idr0.get(Idr0::MSI)) << "on although the physical SMMU has IDR0.MSI = 0";
  w.msi = false;
  auto declined = derive_id_registers(qemu_smmu(), w, "v");
  ASSERT_TRUE(declined) << declined.error();
  EXPECT_FALSE(declined->idr0.get(Idr0::MSI)) << "a stated wish wins over auto";
}

// Stalls on auto follow the host's STALL_MODEL (kAutoStall); a host without fault queues is VirtualSmmu::create's to handle.
TEST(IdRegistersAuto, StallAutoFollowsTheHostAndAStatedWishNeedsAStallingSmmu) {
  auto g = derive_id_registers(server_smmu(), VsmmuWishes{}, "v");
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(g->idr0.get(Idr0::STALL_MODEL), kAutoStall ? StallModel::stall_and_terminate : StallModel::terminate);
  VsmmuWishes w;
  w.stall = true;
  auto stalls = derive_id_registers(server_smmu(), w, "v");
  ASSERT_TRUE(stalls) << stalls.error();
  EXPECT_EQ(stalls->idr0.get(Idr0::STALL_MODEL), StallModel::stall_and_terminate);
  auto refused = derive_id_registers(qemu_smmu(), w, "v");  // QEMU's SMMU terminates
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("stalls asked, the physical SMMU terminates faulting transactions"),
            std::string::npos)
      << refused.error();
}

// Migration: pinned() turns every auto into what the guest saw, so the destination reproduces the registers
// exactly, and a destination SMMU with more (a 48-bit OAS, more SubstreamID bits) still gives the same ones.
TEST(IdRegistersAuto, PinnedReproducesWhatAutoGaveExactly) {
  for (const host::HwInfo& source : {qemu_smmu(), server_smmu()}) {
    for (bool delivery : {false, true}) {
      VsmmuWishes w;
      w.msi_delivery = delivery;
      auto g = derive_id_registers(source, w, "source");
      ASSERT_TRUE(g) << g.error();
      auto again = derive_id_registers(source, pinned(w, *g), "source again");
      ASSERT_TRUE(again) << again.error();
      EXPECT_EQ(first_difference(*g, *again), std::nullopt);
      VsmmuWishes quiet = pinned(w, *g);
      quiet.msi_delivery = !delivery;  // a destination VMM that differs: the pinned MSI still decides
      auto dest = derive_id_registers(source, quiet, "destination");
      ASSERT_TRUE(dest) << dest.error();
      EXPECT_EQ(first_difference(*g, *dest), std::nullopt);
    }
  }
  host::HwInfo bigger = server_smmu();
  bigger.idr[1] = static_cast<std::uint32_t>(Idr1::of(bigger.idr[1]).set(Idr1::SSIDSIZE, 20U).dw[0]);
  auto g = derive_id_registers(server_smmu(), VsmmuWishes{}, "source");
  ASSERT_TRUE(g) << g.error();
  auto dest = derive_id_registers(bigger, pinned(VsmmuWishes{}, *g), "destination");
  ASSERT_TRUE(dest) << dest.error();
  EXPECT_EQ(first_difference(*g, *dest), std::nullopt);
  auto fresh = derive_id_registers(bigger, VsmmuWishes{}, "fresh");
  ASSERT_TRUE(fresh) << fresh.error();
  EXPECT_NE(first_difference(*g, *fresh), std::nullopt) << "auto on the bigger SMMU alone would give it more";
}

}  // namespace
}  // namespace vsmmu::nesting
