// The CANWBS report: what Linux would decide for nesting devices behind each root complex and named
// component, the warnings about what it makes of the mappings, and the one status and summary line
// `vsmmu iort check` gives for the host.
// Kernel rule (arm-smmu-v3-iommufd.c arm_vsmmu_init): IOMMU_VIOMMU_ALLOC needs the root complex's
// CANWBS (iort_pci_rc_supports_canwbs) or the SMMU's S2FWB; iommufd binds only devices whose SMMU is
// coherent (IOMMU_CAP_CACHE_COHERENCY, from the IORT COHACC override on ACPI).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "acpi/iort_nesting.hpp"
#include "acpi/json.hpp"
#include "acpi/iort_patch.hpp"
#include "fixtures.hpp"

namespace vsmmu::acpi::iort {
namespace {

using test::Bytes;
using namespace layout;

NestingReport report_of(const Bytes& t) {
  auto r = parse(t);
  EXPECT_TRUE(r);
  return nesting_report(r->table);
}

// What `vsmmu iort check` concludes about a table.
struct Checked {
  Report report;
  NestingReport nesting;
  HostNesting status = HostNesting::malformed;
  std::string summary;
};

Checked check(const Bytes& t) {
  auto r = parse(t);
  EXPECT_TRUE(r);
  Checked c{r ? *r : Report{}, {}, HostNesting::malformed, {}};
  c.nesting = nesting_report(c.report.table);
  c.status = host_status(c.report, c.nesting);
  c.summary = nesting_summary(c.report, c.nesting, "t.dat");
  return c;
}

// Asserts that the nesting report has exactly one warning, of `check` at `offset`, containing `text`.
void expect_only_warning(const Checked& c, Check check, std::uint64_t offset, const std::string& text) {
  ASSERT_EQ(c.nesting.problems.size(), 1u);
  const auto& p = c.nesting.problems[0];
  EXPECT_EQ(p.severity, Severity::warning);
  EXPECT_EQ(p.check, check) << p.message;
  EXPECT_EQ(p.offset, offset) << p.message;
  EXPECT_NE(p.message.find(text), std::string::npos) << p.message;
}

void expect_no_warning(const Checked& c) {
  EXPECT_TRUE(c.nesting.problems.empty()) << c.nesting.problems[0].message;
  EXPECT_EQ(c.report.count(Severity::warning), 0u);
}

// A host table shaped like QEMU virt's, at `revision`: an ITS group at 0x30, an SMMUv3 at 0x048 (base
// 0x9050000, COHACC unless told otherwise), then whatever the test adds.
struct Host {
  Builder b;
  std::uint32_t its = 0, smmu = 0;
  explicit Host(bool cohacc = true, std::uint8_t revision = 5) : b(TableIdentity{revision}) {
    its = b.its_group(1, 0, ItsGroup{{0}});
    SmmuV3 v3 = test::qemu_virt_smmu();
    if (!cohacc) v3.flags &= ~SmmuV3::kCohaccOverride;
    const IdMapping to_its[] = {{0, 0xffff, 0, its, 0, 0}};
    smmu = b.smmu_v3(4, 1, v3, to_its);
  }
  std::uint32_t rc(std::uint32_t segment, std::uint8_t flags, std::span<const IdMapping> maps) {
    RootComplex r;
    r.memory = MemoryAccess{1, 0, flags};
    r.pci_segment = segment;
    r.memory_address_limit = 64;
    return b.root_complex(4, 10 + segment, r, maps);
  }
  Bytes finish() const { return b.finish().value(); }
};

constexpr std::uint8_t kNoCanwbs = MemoryAccess::kCoherency | MemoryAccess::kAttributes;
constexpr std::uint8_t kWithCanwbs = kNoCanwbs | MemoryAccess::kCanwbs;
constexpr std::uint32_t kRc = 0xa0;  // the first root complex Host adds; its mappings start at kRc + 40

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
  EXPECT_NE(rc.reason.find("RIDs 0x100-0x1ff (ITS group (node 0x030))"), std::string::npos) << rc.reason;
  EXPECT_NE(rc.reason.find("RIDs 0x280-0xffff (ITS group (node 0x030))"), std::string::npos) << rc.reason;
}

TEST(IortNesting, EveryRootComplexIsJudgedOnItsOwn) {
  // all_node_types: a root complex with CANWBS mapping RIDs to an SMMUv3 and to an SMMUv1/v2.
  const auto n = report_of(test::all_node_types());
  ASSERT_EQ(n.root_complexes.size(), 1u);
  EXPECT_EQ(n.root_complexes[0].verdict, Nesting::allowed_canwbs);
  EXPECT_NE(n.root_complexes[0].reason.find("RIDs 0x100-0x1ff (SMMUv1/v2 at 0x2b400000 (node 0x04c))"), std::string::npos)
      << n.root_complexes[0].reason;
}


// --- one test per table shape: status, the exact summary line, the warnings ---

TEST(IortHostStatus, QemuVirtNeedsS2fwbAndMayBePatched) {
  const auto c = check(test::qemu_virt_iort());
  EXPECT_EQ(c.status, HostNesting::needs_s2fwb);
  EXPECT_EQ(c.summary, "needs S2FWB: nesting depends on the SMMU's S2FWB (IDR3.FWB), which the IORT cannot show (run `vsmmu "
            "probe` on this host), for root complex 0 (segment 0, node 0x0a0): it reaches SMMUv3 at 0x9050000 "
            "(node 0x048) without CANWBS; if the hardware guarantees CANWBS for root complex 0, `vsmmu iort "
            "patch --canwbs t.dat -o iort.cpio --cpio` makes Linux allow nesting there without S2FWB");
  expect_only_warning(c, Check::canwbs_revision, test::kQemuRc + kRcMemory + kMemFlags,
                      "root complex 0 (segment 0, node 0x0a0): no CANWBS, but the table's revision 5 predates DEN 0049 "
                      "E.f (revision 7) which defines it");
}

TEST(IortHostStatus, PatchedQemuVirtIsPossibleButReliesOnLinuxIgnoringTheRevision) {
  const auto c = check(set_canwbs(test::qemu_virt_iort(), std::nullopt)->table);
  EXPECT_EQ(c.status, HostNesting::possible);
  EXPECT_EQ(c.summary, "possible: root complex 0 (segment 0, node 0x0a0) carries CANWBS, so Linux allows nesting there "
            "whatever the SMMU's S2FWB");
  expect_only_warning(c, Check::canwbs_revision, test::kQemuRc + kRcMemory + kMemFlags,
                      "CANWBS is set in a table of revision 5, older than DEN 0049 E.f (revision 7)");
}

// DEN 0049 E.f defines CANWBS: a revision 7 table says what it means, no warning.
TEST(IortHostStatus, CanwbsInARevisionSevenTableIsPossibleWithoutWarning) {
  Host h(true, MemoryAccess::kCanwbsTableRevision);
  const IdMapping maps[] = {{0, 0xffff, 0, h.smmu, 0, 0}};
  h.rc(0, kWithCanwbs, maps);
  const auto c = check(h.finish());
  EXPECT_EQ(c.status, HostNesting::possible);
  expect_no_warning(c);
  EXPECT_EQ(c.summary, "possible: root complex 0 (segment 0, node 0x0a0) carries CANWBS, so Linux allows nesting there "
            "whatever the SMMU's S2FWB");
}

TEST(IortHostStatus, OnlyStraightToTheItsIsImpossibleAndNoPatchIsSuggested) {
  Host h(true, 7);
  const IdMapping maps[] = {{0, 0xffff, 0, h.its, 0, 0}};
  h.rc(0, kWithCanwbs, maps);
  const auto c = check(h.finish());
  EXPECT_EQ(c.status, HostNesting::impossible);
  EXPECT_EQ(c.summary, "impossible: no device reaches a coherent SMMUv3, so neither CANWBS nor S2FWB can allow nesting "
            "- root complex 0 (segment 0, node 0x0a0): it has CANWBS, but its IDs go straight to the ITS: its "
            "devices bypass every SMMU, so there is no stage 2 to nest under");
  EXPECT_EQ(c.summary.find("iort patch"), std::string::npos);
  expect_no_warning(c);
}

TEST(IortHostStatus, BehindAnSmmuV2IsImpossibleAndNamesItsBase) {
  Builder b(TableIdentity{7});
  const auto its = b.its_group(1, 0, ItsGroup{{0}});
  Smmu v2;
  v2.base = 0x2b400000;
  v2.span = 0x10000;
  const IdMapping to_its[] = {{0, 0xffff, 0, its, 0, 0}};
  const auto smmu = b.smmu(3, 1, v2, to_its);
  RootComplex rc;
  rc.memory = MemoryAccess{1, 0, kNoCanwbs};
  const IdMapping maps[] = {{0, 0xffff, 0, smmu, 0, 0}};
  b.root_complex(4, 2, rc, maps);
  const auto c = check(b.finish().value());
  EXPECT_EQ(c.status, HostNesting::impossible);
  EXPECT_EQ(c.summary, "impossible: no device reaches a coherent SMMUv3, so neither CANWBS nor S2FWB can allow nesting "
            "- root complex 0 (segment 0, node 0x0a8): its IDs go to SMMUv1/v2 at 0x2b400000 (node 0x048), an "
            "SMMUv1/v2 (arm-smmu driver) without iommufd vIOMMU support; nesting needs an SMMUv3");
  EXPECT_TRUE(c.nesting.problems.empty());
}

TEST(IortHostStatus, CanwbsBehindANonCoherentSmmuSaysSo) {
  Host h(false, 7);
  const IdMapping maps[] = {{0, 0xffff, 0, h.smmu, 0, 0}};
  h.rc(0, kWithCanwbs, maps);
  const auto c = check(h.finish());
  EXPECT_EQ(c.status, HostNesting::impossible);
  EXPECT_EQ(c.summary, "impossible: no device reaches a coherent SMMUv3, so neither CANWBS nor S2FWB can allow nesting "
            "- root complex 0 (segment 0, node 0x0a0): it has CANWBS, but SMMUv3 at 0x9050000 (node 0x048) lacks "
            "the COHACC override flag: Linux treats it as not cache coherent and VFIO refuses its devices "
            "(no IOMMU_CAP_CACHE_COHERENCY, drivers/vfio/vfio_main.c)");
  EXPECT_EQ(c.summary.find("iort patch"), std::string::npos);
  expect_no_warning(c);
}

TEST(IortHostStatus, NoRootComplexAndNoNamedComponentIsImpossible) {
  Host h(true, 7);
  const auto c = check(h.finish());
  EXPECT_EQ(c.status, HostNesting::impossible);
  EXPECT_EQ(c.summary, "impossible: the table describes no PCI root complex and no named component, so no device sits behind "
            "an SMMU (CANWBS cannot change that)");
  expect_no_warning(c);
}

TEST(IortHostStatus, RootComplexWithoutMappingsIsImpossible) {
  Host h(true, 7);
  h.rc(0, kNoCanwbs, {});
  const auto c = check(h.finish());
  EXPECT_EQ(c.status, HostNesting::impossible);
  EXPECT_EQ(c.summary, "impossible: no device reaches a coherent SMMUv3, so neither CANWBS nor S2FWB can allow nesting "
            "- root complex 0 (segment 0, node 0x0a0): it has no ID mappings: its devices reach no SMMU");
  expect_no_warning(c);
}

// drivers/acpi/arm64/iort.c, iort_pci_iommu_init: Linux matches the device's 16-bit requester ID (the alias
// pci_for_each_dma_alias gives), so a mapping wholly above 0xffff never applies and does not count.
TEST(IortHostStatus, MappingAboveSixteenBitsNeverAppliesAndDoesNotCount) {
  Host h(true, 7);
  const IdMapping maps[] = {{0, 0xffff, 0, h.its, 0, 0}, {0x10000, 0xffff, 0, h.smmu, 0, 0}};
  h.rc(0, kWithCanwbs, maps);
  const auto c = check(h.finish());
  EXPECT_TRUE(c.report.valid());
  const auto& rc = c.nesting.root_complexes[0];
  EXPECT_FALSE(rc.routes[1].applies);
  // --json says why too: "not_applying" on the routes that never apply, only there.
  const auto j = nlohmann::json::parse(iort_json("t.dat", c.report, c.nesting));
  EXPECT_EQ(j["root_complexes"][0]["routes"][1]["applies"], false);
  EXPECT_EQ(j["root_complexes"][0]["routes"][1]["not_applying"], rc.routes[1].not_applying);
  EXPECT_FALSE(j["root_complexes"][0]["routes"][0].contains("not_applying"));
  EXPECT_EQ(rc.verdict, Nesting::refused);
  EXPECT_NE(rc.reason.find("not counted: mapping 1 (RIDs 0x10000-0x1ffff -> SMMUv3 at 0x9050000 (node 0x048)): it "
                           "takes only RIDs above 0xffff, which Linux never matches"),
            std::string::npos)
      << rc.reason;
  EXPECT_EQ(c.status, HostNesting::impossible);
  EXPECT_EQ(c.summary, "impossible: no device reaches a coherent SMMUv3, so neither CANWBS nor S2FWB can allow nesting "
            "- root complex 0 (segment 0, node 0x0a0): it has CANWBS, but its IDs go straight to the ITS: its "
            "devices bypass every SMMU, so there is no stage 2 to nest under (mapping 1 to SMMUv3 at 0x9050000 "
            "(node 0x048) never applies: it takes only RIDs above 0xffff, which Linux never matches (16-bit requester IDs))");
  expect_only_warning(c, Check::requester_id, kRc + 40 + 20 + kMapInputBase,
                      "root complex 0 (segment 0, node 0x0a0): mapping 1 (at 0x0dc) takes RIDs 0x10000-0x1ffff, all "
                      "above 0xffff");
}

TEST(IortHostStatus, MappingStraddlingSixteenBitsLosesItsUpperPart) {
  Host h(true, 7);
  const IdMapping maps[] = {{0x8000, 0xffff, 0x8000, h.smmu, 0, 0}};
  h.rc(0, kNoCanwbs, maps);
  const auto c = check(h.finish());
  EXPECT_EQ(c.nesting.root_complexes[0].verdict, Nesting::needs_s2fwb);
  EXPECT_EQ(c.status, HostNesting::needs_s2fwb);
  EXPECT_EQ(c.summary, "needs S2FWB: nesting depends on the SMMU's S2FWB (IDR3.FWB), which the IORT cannot show (run `vsmmu "
            "probe` on this host), for root complex 0 (segment 0, node 0x0a0): it reaches SMMUv3 at 0x9050000 "
            "(node 0x048) without CANWBS; if the hardware guarantees CANWBS for root complex 0, `vsmmu iort "
            "patch --canwbs t.dat -o iort.cpio --cpio` makes Linux allow nesting there without S2FWB");
  expect_only_warning(c, Check::requester_id, kRc + 40 + kMapIdCount,
                      "mapping 0 (at 0x0c8) takes RIDs 0x8000-0x17fff, past 0xffff: Linux matches 16-bit requester "
                      "IDs only (iort_pci_iommu_init), so its part 0x10000-0x17fff never applies");
}

// drivers/acpi/arm64/iort.c, iort_id_map: a single mapping gives every input ID its output base; arm-smmu-v3
// keeps one device per stream ID (arm_smmu_insert_master), so only the first device probed gets the SMMU.
TEST(IortHostStatus, SingleMappingGivesOnlyOneDeviceTheSmmu) {
  Host h(true, 7);
  const IdMapping maps[] = {{0, 0, 0x42, h.smmu, IdMapping::kSingleMapping, 0}};
  h.rc(0, kNoCanwbs, maps);
  const auto c = check(h.finish());
  EXPECT_EQ(c.status, HostNesting::needs_s2fwb);
  EXPECT_EQ(c.summary, "needs S2FWB: nesting depends on the SMMU's S2FWB (IDR3.FWB), which the IORT cannot show (run `vsmmu "
            "probe` on this host), for root complex 0 (segment 0, node 0x0a0): it reaches SMMUv3 at 0x9050000 "
            "(node 0x048) without CANWBS; if the hardware guarantees CANWBS for root complex 0, `vsmmu iort "
            "patch --canwbs t.dat -o iort.cpio --cpio` makes Linux allow nesting there without S2FWB");
  expect_only_warning(c, Check::shared_stream_id, kRc + 40 + kMapFlags,
                      "root complex 0 (segment 0, node 0x0a0): mapping 0 (at 0x0c8) is a single mapping: every "
                      "requester ID becomes stream ID 0x42 at SMMUv3 at 0x9050000 (node 0x048), so the SMMU cannot "
                      "tell its devices apart; arm-smmu-v3 keeps one device per stream ID (arm_smmu_insert_master "
                      "refuses a second device whose stream ID is taken), so only the first device probed gets an "
                      "IOMMU - one device behind it at most can be nested");
}

// drivers/acpi/arm64/iort.c, iort_node_map_id: the first mapping iort_id_map accepts wins, and a single
// mapping accepts every RID - a range mapping after it is never reached, whatever it points at.
TEST(IortHostStatus, MappingAfterASingleMappingNeverApplies) {
  Host h(true, 7);
  const IdMapping maps[] = {{0, 0, 0x7, h.its, IdMapping::kSingleMapping, 0}, {0, 0xffff, 0, h.smmu, 0, 0}};
  h.rc(0, kWithCanwbs, maps);
  const auto c = check(h.finish());
  EXPECT_TRUE(c.report.valid());
  const auto& rc = c.nesting.root_complexes[0];
  EXPECT_FALSE(rc.routes[1].applies);
  EXPECT_EQ(rc.verdict, Nesting::refused);
  EXPECT_EQ(c.status, HostNesting::impossible);
  EXPECT_EQ(c.summary, "impossible: no device reaches a coherent SMMUv3, so neither CANWBS nor S2FWB can allow nesting "
            "- root complex 0 (segment 0, node 0x0a0): it has CANWBS, but its IDs go straight to the ITS: its "
            "devices bypass every SMMU, so there is no stage 2 to nest under (mapping 1 to SMMUv3 at 0x9050000 "
            "(node 0x048) never applies: it follows single mapping 0, which already takes every RID "
            "(iort_node_map_id uses the first mapping that matches))");
  ASSERT_EQ(c.nesting.problems.size(), 2u);
  EXPECT_EQ(c.nesting.problems[0].check, Check::shared_stream_id);
  EXPECT_EQ(c.nesting.problems[1].check, Check::unreachable_mapping);
  EXPECT_EQ(c.nesting.problems[1].offset, kRc + 40 + 20);
  EXPECT_EQ(c.nesting.problems[1].message,
            "root complex 0 (segment 0, node 0x0a0): mapping 1 (at 0x0dc) comes after single mapping 0, which already "
            "takes every RID (iort_node_map_id uses the first mapping that matches): it never applies, and the "
            "devices meant for SMMUv3 at 0x9050000 (node 0x048) go where mapping 0 sends them");
}

// CANWBS on a root complex with CCA 0 would claim coherent Write-Back accesses without a coherent path:
// `iort patch` refuses it (canwbs_cannot_help), so the summary does not suggest it.
TEST(IortHostStatus, NoPatchIsSuggestedForARootComplexWithCcaZero) {
  Host h(true, 7);
  const IdMapping to_smmu[] = {{0, 0xffff, 0, h.smmu, 0, 0}};
  RootComplex r;
  r.memory = MemoryAccess{0, 0, 0};
  r.memory_address_limit = 64;
  h.b.root_complex(4, 10, r, to_smmu);
  const auto c = check(h.finish());
  ASSERT_EQ(c.nesting.root_complexes.size(), 1u);
  EXPECT_EQ(c.nesting.root_complexes[0].verdict, Nesting::needs_s2fwb);
  EXPECT_TRUE(canwbs_cannot_help(c.nesting.root_complexes[0]));
  EXPECT_EQ(c.status, HostNesting::needs_s2fwb);
  EXPECT_EQ(c.summary, "needs S2FWB: nesting depends on the SMMU's S2FWB (IDR3.FWB), which the IORT cannot show (run `vsmmu "
            "probe` on this host), for root complex 0 (segment 0, node 0x0a0): it reaches SMMUv3 at 0x9050000 "
            "(node 0x048) without CANWBS");
}

// drivers/acpi/arm64/iort.c, iort_scan_node: the first root complex of the segment wins.
TEST(IortHostStatus, SecondRootComplexOfASegmentIsShadowedAndDoesNotCount) {
  Host h(true, 7);
  const IdMapping to_its[] = {{0, 0xffff, 0, h.its, 0, 0}};
  h.rc(0, kNoCanwbs, to_its);
  const IdMapping to_smmu[] = {{0, 0xffff, 0, h.smmu, 0, 0}};
  RootComplex second;
  second.memory = MemoryAccess{1, 0, kWithCanwbs};
  const auto at = h.b.root_complex(4, 3, second, to_smmu);
  const auto c = check(h.finish());
  EXPECT_TRUE(c.report.valid());
  ASSERT_EQ(c.nesting.root_complexes.size(), 2u);
  EXPECT_EQ(c.nesting.root_complexes[1].shadowed_by, 0u);
  EXPECT_EQ(c.nesting.root_complexes[1].verdict, Nesting::refused);
  EXPECT_EQ(c.status, HostNesting::impossible);
  EXPECT_EQ(c.summary, "impossible: no device reaches a coherent SMMUv3, so neither CANWBS nor S2FWB can allow nesting "
            "- root complex 0 (segment 0, node 0x0a0): its IDs go straight to the ITS: its devices bypass every "
            "SMMU, so there is no stage 2 to nest under; root complex 1 (segment 0, node 0x0dc): shadowed by "
            "root complex 0 (node 0x0a0), the first of segment 0");
  expect_only_warning(c, Check::shared_segment, at + kRcSegment,
                      "root complex 1 (segment 0, node 0x0dc) has the PCI segment of root complex 0 (node 0x0a0)");
}

TEST(IortHostStatus, PatchIsSuggestedOnlyForTheRootComplexItWouldChange) {
  Host h(true, 7);
  const IdMapping to_smmu[] = {{0, 0xffff, 0, h.smmu, 0, 0}};
  h.rc(0, kNoCanwbs, to_smmu);
  const IdMapping to_its[] = {{0, 0xffff, 0, h.its, 0, 0}};
  h.rc(1, kNoCanwbs, to_its);
  const auto c = check(h.finish());
  EXPECT_EQ(c.status, HostNesting::needs_s2fwb);
  EXPECT_EQ(c.summary, "needs S2FWB: nesting depends on the SMMU's S2FWB (IDR3.FWB), which the IORT cannot show (run `vsmmu "
            "probe` on this host), for root complex 0 (segment 0, node 0x0a0): it reaches SMMUv3 at 0x9050000 "
            "(node 0x048) without CANWBS; if the hardware guarantees CANWBS for root complex 0, `vsmmu iort "
            "patch --canwbs --rc 0 t.dat -o iort.cpio --cpio` makes Linux allow nesting there without S2FWB; "
            "refused: root complex 1 (segment 1, node 0x0dc): its IDs go straight to the ITS: its devices bypass "
            "every SMMU, so there is no stage 2 to nest under");
  expect_no_warning(c);
}

// Linux reads CANWBS only from root complexes (iort_pci_rc_supports_canwbs): a platform device behind a
// coherent SMMUv3 can at best nest with S2FWB, and no patch helps it.
TEST(IortHostStatus, NamedComponentBehindACoherentSmmuNeedsS2fwbAndWarnsOfCcaZero) {
  Host h(true, 7);
  NamedComponent nc;
  nc.memory = MemoryAccess{0, 0, MemoryAccess::kCanwbs};
  nc.device_name = "\\_SB_.DMA0";
  const IdMapping maps[] = {{0, 0xff, 0x100, h.smmu, 0, 0}};
  h.b.named_component(4, 5, nc, maps);
  const auto c = check(h.finish());
  ASSERT_EQ(c.nesting.named_components.size(), 1u);
  const auto& n = c.nesting.named_components[0];
  EXPECT_EQ(n.device_name, "\\_SB_.DMA0");
  EXPECT_EQ(n.verdict, Nesting::needs_s2fwb);
  EXPECT_NE(n.reason.find("warning: CCA=0"), std::string::npos) << n.reason;
  EXPECT_NE(n.reason.find("its CANWBS flag has no effect"), std::string::npos) << n.reason;
  // drivers/acpi/arm64/iort.c: iort_nc_iommu_map takes a platform device's stream IDs from its leading single
  // mappings only; ranges serve devices with an input ID of their own (iort_nc_iommu_map_id, fsl-mc).
  EXPECT_NE(n.reason.find("mapping 0 maps a range of IDs: Linux uses those only for devices that bring their own "
                          "input ID (a bus such as fsl-mc, iort_nc_iommu_map_id)"),
            std::string::npos)
      << n.reason;
  EXPECT_EQ(c.status, HostNesting::needs_s2fwb);
  EXPECT_EQ(c.summary, "needs S2FWB: nesting depends on the SMMU's S2FWB (IDR3.FWB), which the IORT cannot show (run `vsmmu "
            "probe` on this host), for named component \"\\_SB_.DMA0\" (node 0x0a0): it reaches SMMUv3 at 0x9050000 "
            "(node 0x048), and a named component cannot carry CANWBS for Linux");
  EXPECT_EQ(c.summary.find("iort patch"), std::string::npos);
  expect_no_warning(c);
}

TEST(IortHostStatus, NamedComponentBehindANonCoherentSmmuIsRefused) {
  Host h(false, 7);
  NamedComponent nc;
  nc.memory = MemoryAccess{1, 0, MemoryAccess::kCoherency};
  nc.device_name = "\\_SB_.DMA0";
  const IdMapping maps[] = {{0, 0xff, 0x100, h.smmu, 0, 0}};
  h.b.named_component(4, 5, nc, maps);
  const auto c = check(h.finish());
  EXPECT_EQ(c.nesting.named_components[0].verdict, Nesting::refused);
  EXPECT_EQ(c.status, HostNesting::impossible);
  EXPECT_EQ(c.summary, "impossible: no device reaches a coherent SMMUv3, so neither CANWBS nor S2FWB can allow nesting "
            "- named component \"\\_SB_.DMA0\" (node 0x0a0): SMMUv3 at 0x9050000 (node 0x048) lacks the COHACC "
            "override flag: Linux treats it as not cache coherent and VFIO refuses its devices (no "
            "IOMMU_CAP_CACHE_COHERENCY, drivers/vfio/vfio_main.c)");
  expect_no_warning(c);
}

// Any error makes the table malformed, whatever else it says: a bad checksum, a declared length past the end.
TEST(IortHostStatus, AnyErrorIsMalformed) {
  auto t = set_canwbs(test::qemu_virt_iort(), std::nullopt)->table;
  t[kChecksum] ^= 1;
  const auto bad_sum = check(t);
  EXPECT_EQ(bad_sum.status, HostNesting::malformed);
  EXPECT_EQ(bad_sum.summary, "malformed: the table's only error is its checksum; Linux warns and uses it anyway, so the "
                             "verdicts above hold, but firmware should fix it and a table override must carry the right "
                             "one (the problem above gives it)");
  auto cut = test::qemu_virt_iort();
  test::put(cut, kLength, cut.size() + 4, 4);
  test::fix_checksum(cut);
  const auto truncated = check(cut);
  EXPECT_EQ(truncated.status, HostNesting::malformed);
  EXPECT_EQ(truncated.summary, "malformed: the table has 1 error; fix it first (Linux may misroute or ignore what it "
                               "touches, so no verdict can be trusted)");
  EXPECT_EQ(exit_code(HostNesting::malformed), 4);
}

}  // namespace
}  // namespace vsmmu::acpi::iort
