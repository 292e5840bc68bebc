// The CANWBS report: what Linux would decide for nesting devices behind each root complex.
// Kernel rule (arm-smmu-v3-iommufd.c arm_vsmmu_init): IOMMU_VIOMMU_ALLOC needs the root complex's
// CANWBS (iort_pci_rc_supports_canwbs) or the SMMU's S2FWB; iommufd binds only devices whose SMMU is
// coherent (IOMMU_CAP_CACHE_COHERENCY, from the IORT COHACC override on ACPI).
#include <gtest/gtest.h>

#include "acpi/iort_nesting.hpp"
#include "acpi/iort_patch.hpp"
#include "fixtures.hpp"

namespace vsmmu::acpi::iort {
namespace {

using test::Bytes;

NestingReport report_of(const Bytes& t) {
  auto r = parse(t);
  EXPECT_TRUE(r);
  return nesting_report(r->table);
}

TEST(IortNesting, QemuVirtHasNoCanwbsSoNestingHangsOnS2fwb) {
  const auto n = report_of(test::qemu_virt_iort());
  ASSERT_EQ(n.root_complexes.size(), 1u);
  const auto& rc = n.root_complexes[0];
  EXPECT_EQ(rc.offset, test::kQemuRc);
  EXPECT_EQ(rc.memory.flags, 0x03);
  EXPECT_TRUE(rc.memory.coherency());
  EXPECT_TRUE(rc.memory.attributes());
  EXPECT_FALSE(rc.memory.canwbs());
  ASSERT_EQ(rc.routes.size(), 1u);
  EXPECT_EQ(rc.routes[0].target, Route::Target::smmu_v3);
  EXPECT_EQ(rc.routes[0].target_offset, test::kQemuSmmu);
  EXPECT_EQ(rc.routes[0].rid_first, 0u);
  EXPECT_EQ(rc.routes[0].rid_last, 0xffffu);
  EXPECT_EQ(rc.routes[0].out_last, 0xffffu);
  EXPECT_TRUE(rc.routes[0].coherent_smmu);
  EXPECT_EQ(rc.verdict, Nesting::needs_s2fwb);
  EXPECT_NE(rc.reason.find("S2FWB"), std::string::npos) << rc.reason;
  EXPECT_NE(rc.reason.find("vsmmu probe"), std::string::npos) << rc.reason;
  EXPECT_FALSE(n.any_canwbs());
}

TEST(IortNesting, PatchedQemuTableAllowsNestingThroughCanwbs) {
  auto patched = set_canwbs(test::qemu_virt_iort(), std::nullopt);
  ASSERT_TRUE(patched);
  const auto n = report_of(patched->table);
  ASSERT_EQ(n.root_complexes.size(), 1u);
  EXPECT_EQ(n.root_complexes[0].verdict, Nesting::allowed_canwbs);
  EXPECT_NE(n.root_complexes[0].reason.find("IOMMU_FWSPEC_PCI_RC_CANWBS"), std::string::npos);
  EXPECT_TRUE(n.any_canwbs());
}

TEST(IortNesting, RootComplexStraightToTheItsIsRefused) {
  Builder b(TableIdentity{});
  const auto its = b.its_group(1, 0, ItsGroup{{0}});
  RootComplex rc;
  rc.memory = MemoryAccess{1, 0, 0x07};  // CANWBS does not help a device no SMMU translates
  const IdMapping maps[] = {{0, 0xffff, 0, its, 0, 0}};
  b.root_complex(4, 1, rc, maps);
  const auto n = report_of(b.finish().value());
  EXPECT_EQ(n.root_complexes[0].verdict, Nesting::refused);
  EXPECT_NE(n.root_complexes[0].reason.find("bypass every SMMU"), std::string::npos);
  EXPECT_FALSE(n.any_canwbs());
}

TEST(IortNesting, RootComplexBehindAnSmmuV2IsRefused) {
  Builder b(TableIdentity{});
  const auto its = b.its_group(1, 0, ItsGroup{{0}});
  Smmu v2;
  v2.span = 0x10000;
  const IdMapping to_its[] = {{0, 0xffff, 0, its, 0, 0}};
  const auto smmu = b.smmu(3, 1, v2, to_its);
  RootComplex rc;
  rc.memory = MemoryAccess{1, 0, 0x07};
  const IdMapping maps[] = {{0, 0xffff, 0, smmu, 0, 0}};
  b.root_complex(4, 2, rc, maps);
  const auto n = report_of(b.finish().value());
  EXPECT_EQ(n.root_complexes[0].verdict, Nesting::refused);
  EXPECT_NE(n.root_complexes[0].reason.find("SMMUv1/v2"), std::string::npos);
}

TEST(IortNesting, SmmuWithoutCohaccIsRefusedEvenWithCanwbs) {
  Bytes t = test::qemu_virt_iort();
  test::put(t, test::kQemuSmmu + layout::kSmmuV3Flags, 0, 4);
  test::put(t, test::kQemuRc + layout::kRcMemory + layout::kMemFlags, 0x07, 1);
  test::fix_checksum(t);
  const auto n = report_of(t);
  EXPECT_EQ(n.root_complexes[0].verdict, Nesting::refused);
  EXPECT_NE(n.root_complexes[0].reason.find("COHACC"), std::string::npos);
  EXPECT_FALSE(n.root_complexes[0].routes[0].coherent_smmu);
}

TEST(IortNesting, RootComplexWithoutMappingsIsRefused) {
  Builder b(TableIdentity{});
  b.root_complex(4, 0, RootComplex{}, {});
  const auto n = report_of(b.finish().value());
  EXPECT_EQ(n.root_complexes[0].verdict, Nesting::refused);
  EXPECT_NE(n.root_complexes[0].reason.find("no ID mappings"), std::string::npos);
}

TEST(IortNesting, PartlyBypassedRootComplexNamesTheLostRids) {
  auto g = test::guest_two_smmus();
  g.root_complexes[0].canwbs = true;
  const auto n = report_of(build_guest(g).value());
  const auto& rc = n.root_complexes[0];
  EXPECT_EQ(rc.verdict, Nesting::allowed_canwbs);
  // RIDs 0x100-0x1ff and 0x280-0xffff go straight to the ITS in the guest table.
  EXPECT_NE(rc.reason.find("RIDs 0x100-0x1ff (ITS group)"), std::string::npos) << rc.reason;
  EXPECT_NE(rc.reason.find("RIDs 0x280-0xffff (ITS group)"), std::string::npos) << rc.reason;
}

TEST(IortNesting, EveryRootComplexIsJudgedOnItsOwn) {
  // all_node_types: a root complex with CANWBS mapping RIDs to an SMMUv3 and to an SMMUv1/v2.
  const auto n = report_of(test::all_node_types());
  ASSERT_EQ(n.root_complexes.size(), 1u);
  EXPECT_EQ(n.root_complexes[0].verdict, Nesting::allowed_canwbs);
  EXPECT_NE(n.root_complexes[0].reason.find("RIDs 0x100-0x1ff (SMMUv1/v2)"), std::string::npos)
      << n.root_complexes[0].reason;
}

}  // namespace
}  // namespace vsmmu::acpi::iort
