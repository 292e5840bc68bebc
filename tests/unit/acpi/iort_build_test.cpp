// The guest IORT builder: node order and revisions (DEN 0049 E.d/E.e as edk2 and QEMU emit them), RID
// to vSID mappings, DeviceIDs that stay equal to RIDs, the SMMU's own MSI mapping, RMR nodes for the MSI
// window, CANWBS carried over from the host, and golden tables under tests/data/iort.
#include <gtest/gtest.h>

#include "acpi/iort.hpp"
#include "acpi/iort_build.hpp"
#include "acpi/iort_rmr.hpp"
#include "acpi/iort_patch.hpp"
#include "fixtures.hpp"

namespace vsmmu::acpi::iort {
namespace {

using test::Bytes;

void expect_refused_text(const GuestIort& g, const std::string& text) {
  auto t = build_guest(g);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find(text), std::string::npos) << t.error().message;
}

Report parsed(const Bytes& t) {
  auto r = parse(t);
  EXPECT_TRUE(r);
  for (const auto& p : r->problems) ADD_FAILURE() << to_string(p.severity) << " at " << p.offset << ": " << p.message;
  return *r;
}

TEST(IortBuild, GuestTableHasTheRevisionsLinuxAndIaslExpect) {
  const auto r = parsed(build_guest(test::guest_two_smmus()).value());
  EXPECT_EQ(r.table.header.revision, 5);  // E.d: Linux reads RMR nodes from revision 5 on (iort_find_rmrs)
  ASSERT_EQ(r.table.nodes.size(), 6u);    // ITS, 2 SMMUv3, root complex, 2 RMR
  const std::pair<NodeType, int> expected[] = {{NodeType::its_group, 1}, {NodeType::smmu_v3, 4}, {NodeType::smmu_v3, 4},
                                               {NodeType::root_complex, 4}, {NodeType::rmr, 3}, {NodeType::rmr, 3}};
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_TRUE(r.table.nodes[i].is(expected[i].first)) << i;
    EXPECT_EQ(r.table.nodes[i].revision, expected[i].second) << i;
    EXPECT_EQ(r.table.nodes[i].identifier, i);  // unique identifiers, in table order
  }
  // RMR nodes come last, after the SMMUs they name: every reference in the table points backwards.
  EXPECT_EQ(r.table.nodes[4].length + r.table.nodes[5].length + r.table.nodes[4].offset, r.table.header.length);
}

TEST(IortBuild, RevisionSixUsesSmmuV3RevisionFiveWithTheDeviceIdFlag) {
  auto g = test::guest_two_smmus();
  g.identity.revision = 6;
  const auto r = parsed(build_guest(g).value());
  EXPECT_EQ(r.table.nodes[1].revision, 5);
  EXPECT_EQ(r.table.nodes[1].as<SmmuV3>()->flags & SmmuV3::kDeviceIdValid, 0u);  // all lines wired
  EXPECT_NE(r.table.nodes[2].as<SmmuV3>()->flags & SmmuV3::kDeviceIdValid, 0u);  // PRI unwired: MSI DeviceID
}

TEST(IortBuild, RootComplexMapsRidsToVsidsAndTheRestToTheIts) {
  const auto r = parsed(build_guest(test::guest_two_smmus()).value());
  const auto& its = r.table.nodes[0];
  const auto& smmu0 = r.table.nodes[1];
  const auto& smmu1 = r.table.nodes[2];
  const auto& rc = r.table.nodes[3];
  const auto* data = rc.as<RootComplex>();
  EXPECT_EQ(data->memory, (MemoryAccess{1, 0, 0x03}));  // CCA, COHERENCY|ATTRIBUTES; no CANWBS unless asked
  EXPECT_EQ(data->memory_address_limit, 64);
  const std::vector<IdMapping> expected = {
      {0x0, 0xff, 0x0, smmu0.offset, 0, 0},         // behind vSMMU 0, vSID = RID
      {0x100, 0xff, 0x100, its.offset, 0, 0},       // no vSMMU: straight to the ITS
      {0x200, 0x7f, 0x1000, smmu1.offset, 0, 0},    // behind vSMMU 1 at vSID 0x1000
      {0x280, 0xfd7f, 0x280, its.offset, 0, 0},     // the rest of the 16-bit RID space
  };
  EXPECT_EQ(rc.mappings, expected);
}

TEST(IortBuild, SmmuMapsVsidsBackToRidsAsItsDeviceIds) {
  // The DeviceID a device's MSIs carry stays its RID, as without a vSMMU, so the VMM's MSI routing
  // does not depend on the vSID it chose.
  const auto r = parsed(build_guest(test::guest_two_smmus()).value());
  const auto its = r.table.nodes[0].offset;
  EXPECT_EQ(r.table.nodes[1].mappings, (std::vector<IdMapping>{{0x0, 0xff, 0x0, its, 0, 0}}));
  const auto* s1 = r.table.nodes[2].as<SmmuV3>();
  EXPECT_EQ(s1->pri_gsiv, 0u);
  // vSMMU 1 has no PRI GSIV, so Linux takes its MSI DeviceID from id_mapping_index (a single mapping).
  ASSERT_EQ(s1->id_mapping_index, 1u);
  EXPECT_EQ(r.table.nodes[2].mappings,
            (std::vector<IdMapping>{{0x1000, 0x7f, 0x200, its, 0, 0}, {0, 0, 0x10001, its, IdMapping::kSingleMapping, 0}}));
}

TEST(IortBuild, RmrNodesReserveTheMsiWindowForEachVsmmusVsids) {
  const auto r = parsed(build_guest(test::guest_two_smmus()).value());
  const auto& rmr0 = r.table.nodes[4];
  const auto& rmr1 = r.table.nodes[5];
  // MSI_IOVA_BASE / MSI_IOVA_LENGTH of the host's arm-smmu-v3 driver; flags 0: no remapping, device memory.
  EXPECT_EQ(*rmr0.as<Rmr>(), (Rmr{0, {{0x8000000, 0x100000}}}));
  EXPECT_EQ(rmr0.mappings, (std::vector<IdMapping>{{0x0, 0xff, 0x0, r.table.nodes[1].offset, 0, 0}}));
  EXPECT_EQ(rmr1.mappings, (std::vector<IdMapping>{{0x1000, 0x7f, 0x1000, r.table.nodes[2].offset, 0, 0}}));
}

// drivers/acpi/arm64/iort.c iort_node_get_rmr_info / iort_rmr_has_dev: an RMR applies to a StreamID of the SMMU
// its ID mapping names, so a guest reading the table keeps the window 1:1 only for its own vSMMU's vSIDs.
TEST(IortBuild, RmrRegionsApplyToTheVsidsOfTheirOwnVsmmuOnly) {
  const auto r = parsed(build_guest(test::guest_two_smmus()).value());
  const auto smmu0 = r.table.nodes[1].offset, smmu1 = r.table.nodes[2].offset;
  const auto window = std::vector<RmrRegion>{{{0x8000000, 0x100000}, false, r.table.nodes[4].offset}};
  auto ranges = [](const std::vector<RmrRegion>& v) {
    std::vector<std::pair<RmrRange, std::uint32_t>> out;
    for (const auto& x : v) out.emplace_back(x.range, x.node_offset);
    return out;
  };
  EXPECT_EQ(ranges(rmr_regions(r.table, smmu0, 0x10)), ranges(window));
  EXPECT_FALSE(rmr_regions(r.table, smmu0, 0x10)[0].remap_permitted);
  EXPECT_TRUE(rmr_regions(r.table, smmu0, 0x1000).empty()) << "vSID 0x1000 is vSMMU 1's";
  EXPECT_TRUE(rmr_regions(r.table, smmu1, 0x10).empty());
  ASSERT_EQ(rmr_regions(r.table, smmu1, 0x107f).size(), 1u);
  EXPECT_EQ(rmr_regions(r.table, smmu1, 0x107f)[0].node_offset, r.table.nodes[5].offset);
  EXPECT_TRUE(rmr_regions(r.table, smmu1, 0x1080).empty()) << "past the vSMMU's vSIDs";
  auto g = test::guest_two_smmus();
  g.msi_rmr = false;
  const auto none = parsed(build_guest(g).value());
  EXPECT_TRUE(rmr_regions(none.table, none.table.nodes[1].offset, 0x10).empty());
}

// Devices behind physical SMMUs whose drivers reserve different windows: every RMR node lists each window
// (DEN 0049 Table 23: an RMR node has as many memory range descriptors as it needs).
TEST(IortBuild, RmrNodesListEveryWindowOfTheHost) {
  auto g = test::guest_two_smmus();
  g.msi_windows = {{0x8000000, 0x100000}, {0x9000000, 0x10000}};
  const auto r = parsed(build_guest(g).value());
  EXPECT_EQ(*r.table.nodes[4].as<Rmr>(), (Rmr{0, {{0x8000000, 0x100000}, {0x9000000, 0x10000}}}));
  EXPECT_EQ(*r.table.nodes[5].as<Rmr>(), (Rmr{0, {{0x8000000, 0x100000}, {0x9000000, 0x10000}}}));
}

TEST(IortBuild, NoItsNoRmrOptions) {
  auto g = test::guest_two_smmus();
  g.its_ids.clear();
  g.msi_rmr = false;
  expect_refused_text(g, "without an ITS there is none to give");
  g.smmus[1].pri_gsiv = 111;
  const auto r = parsed(build_guest(g).value());
  ASSERT_EQ(r.table.nodes.size(), 3u);
  EXPECT_TRUE(r.table.nodes[0].mappings.empty());
  EXPECT_EQ(r.table.nodes[2].mappings.size(), 2u);  // only the vSMMU ranges; nothing to bypass to
}

TEST(IortBuild, CanwbsIsCarriedOverFromTheHostRootComplex) {
  auto host = parse(test::qemu_virt_iort()).value();
  EXPECT_FALSE(host_canwbs(host.table, std::nullopt).value());
  auto patched = parse(set_canwbs(test::qemu_virt_iort(), std::nullopt)->table).value();
  EXPECT_TRUE(host_canwbs(patched.table, std::nullopt).value());
  EXPECT_TRUE(host_canwbs(patched.table, 0).value());
  auto missing = host_canwbs(patched.table, 1);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().err, ERANGE);

  auto g = test::guest_two_smmus();
  g.root_complexes[0].canwbs = host_canwbs(patched.table, std::nullopt).value();
  const auto r = parsed(build_guest(g).value());
  EXPECT_EQ(r.table.nodes[3].as<RootComplex>()->memory.flags, 0x07);
}

TEST(IortBuild, RefusesSpecsItCannotDescribe) {
  const auto expect_refused = expect_refused_text;
  auto g = test::guest_two_smmus();
  g.root_complexes[0].maps[1].rid_base = 0x80;  // overlaps map 0
  expect_refused(g, "both claim RIDs from 0x80");
  g = test::guest_two_smmus();
  g.root_complexes[0].maps[0].count = 0x10001;
  expect_refused(g, "requester IDs are 16 bits");
  g = test::guest_two_smmus();
  g.root_complexes[0].maps[1].smmu = 5;
  expect_refused(g, "names vSMMU 5, but there are 2");
  g = test::guest_two_smmus();
  g.root_complexes[0].maps[1].smmu = 0;
  g.root_complexes[0].maps[1].vsid_base = 0x80;  // same vSMMU, vSIDs 0x80-0xff twice
  expect_refused(g, "share vSIDs from 0x80");
  g = test::guest_two_smmus();
  g.identity.revision = 3;
  expect_refused(g, "use 5 (DEN 0049 E.d) or 6");
  g = test::guest_two_smmus();
  g.msi_windows = {{0x8001000, 0x100000}};
  expect_refused(g, "64 KiB aligned");
  g = test::guest_two_smmus();
  g.msi_windows.clear();  // no default: the host says where its doorbell is mapped
  expect_refused(g, "need the host's MSI window");
  g = test::guest_two_smmus();
  g.smmus.clear();
  expect_refused(g, "at least one vSMMU");
}

TEST(IortBuild, NodeLengthOverflowIsRefused) {
  Builder b(TableIdentity{});
  std::vector<IdMapping> maps(3300, IdMapping{0, 0, 0, 0x30, 0, 0});  // 3300 * 20 bytes > 65535
  b.root_complex(4, 0, RootComplex{}, maps);
  auto t = b.finish();
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().err, E2BIG);
}

// Golden tables (tests/data/iort): the builder's bytes are pinned so a layout change is a reviewed
// change; iort_iasl_test checks the same bytes field by field against iasl.
TEST(IortGolden, QemuVirt) { test::expect_golden("iort/qemu-virt.dat", test::qemu_virt_iort()); }
TEST(IortGolden, QemuVirtWithCanwbs) {
  test::expect_golden("iort/qemu-virt-canwbs.dat", set_canwbs(test::qemu_virt_iort(), std::nullopt)->table);
}
TEST(IortGolden, GuestTwoSmmus) {
  test::expect_golden("iort/guest-two-smmus.dat", build_guest(test::guest_two_smmus()).value());
}
TEST(IortGolden, AllNodeTypes) { test::expect_golden("iort/all-node-types.dat", test::all_node_types()); }

}  // namespace
}  // namespace vsmmu::acpi::iort
