// The IORT node model: every node type decodes to the fields the builder wrote (DEN 0049 E.f tables
// 12-23), memory access properties decode bit by bit (Tables 14-16), and valid tables carry no problems.
#include <gtest/gtest.h>

#include "acpi/iort.hpp"
#include "fixtures.hpp"

namespace vsmmu::acpi::iort {
namespace {

using test::Bytes;

TEST(IortParse, QemuVirtLayoutDecodesWithoutProblems) {
  const Bytes t = test::qemu_virt_iort();
  auto r = parse(t);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->problems.empty()) << r->problems.front().message;
  const auto& h = r->table.header;
  EXPECT_EQ(h.signature, "IORT");
  EXPECT_EQ(h.length, test::kQemuSize);
  EXPECT_EQ(h.revision, 5);
  EXPECT_EQ(h.oem_id, "BOCHS ");
  EXPECT_EQ(h.oem_table_id, "BXPC    ");
  EXPECT_EQ(h.node_count, 3u);
  EXPECT_EQ(h.node_offset, 48u);
  ASSERT_EQ(r->table.nodes.size(), 3u);
  EXPECT_EQ(r->table.nodes[0].offset, test::kQemuIts);
  EXPECT_EQ(r->table.nodes[1].offset, test::kQemuSmmu);
  EXPECT_EQ(r->table.nodes[2].offset, test::kQemuRc);

  const auto* smmu = r->table.nodes[1].as<SmmuV3>();
  ASSERT_NE(smmu, nullptr);
  EXPECT_EQ(smmu->base, 0x9050000u);
  EXPECT_TRUE(smmu->cohacc());
  EXPECT_EQ(smmu->event_gsiv, 106u);
  EXPECT_EQ(smmu->sync_gsiv, 109u);
  const auto* rc = r->table.nodes[2].as<RootComplex>();
  ASSERT_NE(rc, nullptr);
  EXPECT_EQ(rc->memory.flags, 0x03);
  EXPECT_EQ(rc->memory_address_limit, 64);
  EXPECT_FALSE(rc->pasid_capabilities);  // revision 3 predates the PASID capabilities field
  // DEN 0049 Table 4: "Number of IDs" is the count minus one; 0xffff covers all 0x10000 RIDs.
  ASSERT_EQ(r->table.nodes[2].mappings.size(), 1u);
  EXPECT_EQ(r->table.nodes[2].mappings[0].count(), 0x10000u);
  EXPECT_EQ(r->table.nodes[2].mappings[0].output_reference, test::kQemuSmmu);
}

// DEN 0049 Table 16: CPM is bit 0 (coherent path to memory), DACS bit 1 (device attributes cacheable and inner
// shareable), CANWBS bit 2; the names are the spec's.
TEST(IortParse, MemoryAccessFlagsDecodeBitByBit) {
  MemoryAccess m{1, 0, 0x03};
  EXPECT_TRUE(m.cca());
  EXPECT_TRUE(m.coherency());
  EXPECT_TRUE(m.attributes());
  EXPECT_FALSE(m.canwbs());
  m.flags = 0x04;
  EXPECT_FALSE(m.coherency());
  EXPECT_FALSE(m.attributes());
  EXPECT_TRUE(m.canwbs());
  EXPECT_EQ(memory_flags_names(0x03), "CPM|DACS");
  EXPECT_EQ(memory_flags_names(0x07), "CPM|DACS|CANWBS");
  EXPECT_EQ(memory_flags_names(0x00), "none");
  EXPECT_EQ(memory_flags_names(0x84), "CANWBS|0x80");
}

TEST(IortParse, EveryNodeTypeDecodesToWhatWasBuilt) {
  const Bytes t = test::all_node_types();
  auto r = parse(t);
  ASSERT_TRUE(r);
  for (const auto& p : r->problems) ADD_FAILURE() << p.offset << " " << p.message;
  ASSERT_EQ(r->table.nodes.size(), 7u);
  const auto& n = r->table.nodes;
  EXPECT_EQ(n[0].as<ItsGroup>()->its_ids, (std::vector<std::uint32_t>{0, 1}));

  const auto* v2 = n[1].as<Smmu>();
  ASSERT_NE(v2, nullptr);
  EXPECT_EQ(v2->base, 0x2b400000u);
  EXPECT_EQ(v2->model, 3u);
  EXPECT_EQ(v2->nsg_irpt, (SmmuInterrupt{40, 1}));
  EXPECT_EQ(v2->nsg_cfg_irpt, (SmmuInterrupt{41, 1}));
  EXPECT_EQ(v2->context_interrupts, (std::vector<SmmuInterrupt>{{42, 1}, {43, 1}}));
  EXPECT_EQ(v2->pmu_interrupts, (std::vector<SmmuInterrupt>{{44, 0}}));

  const auto* v3 = n[2].as<SmmuV3>();
  ASSERT_NE(v3, nullptr);
  EXPECT_EQ(n[2].revision, 5);
  EXPECT_EQ(v3->httu(), 1u);
  EXPECT_EQ(v3->id_mapping_index, 1u);
  EXPECT_TRUE(n[2].mappings[1].single());

  const auto* nc = n[3].as<NamedComponent>();
  ASSERT_NE(nc, nullptr);
  EXPECT_EQ(nc->device_name, "\\_SB_.PCI0.DMA0");
  EXPECT_EQ(nc->memory_address_limit, 48);
  EXPECT_EQ(nc->memory.flags, MemoryAccess::kCoherency);
  // The name is padded so the ID mapping array starts 4-byte aligned.
  EXPECT_EQ(n[3].mapping_offset % 4, 0u);

  const auto* rc = n[4].as<RootComplex>();
  ASSERT_NE(rc, nullptr);
  EXPECT_TRUE(rc->memory.canwbs());
  EXPECT_EQ(rc->ats_attribute, RootComplex::kAtsSupported);
  EXPECT_EQ(rc->pasid_capabilities, 20);
  EXPECT_EQ(rc->flags, 0u);  // revision 4: the 40-byte layout with node flags
  EXPECT_EQ(n[4].mapping_offset, layout::kRcSizeRev4);

  const auto* pmcg = n[5].as<Pmcg>();
  ASSERT_NE(pmcg, nullptr);
  EXPECT_EQ(pmcg->node_reference, n[2].offset);
  EXPECT_EQ(pmcg->page1_base, 0x9110000u);

  const auto* rmr = n[6].as<Rmr>();
  ASSERT_NE(rmr, nullptr);
  EXPECT_EQ(rmr->ranges, (std::vector<RmrRange>{{0x80000000, 0x10000}, {0x80100000, 0x20000}}));
  EXPECT_EQ(n[6].mappings[0].output_base, 0x40u);
}

TEST(IortParse, ParseThenRebuildGivesTheSameBytes) {
  // Parsing, rebuilding from the model and parsing again gives identical bytes: nothing is dropped.
  const Bytes t = test::all_node_types();
  auto r = parse(t);
  ASSERT_TRUE(r);
  Builder b(TableIdentity{r->table.header.revision, r->table.header.oem_id, r->table.header.oem_table_id,
                          r->table.header.oem_revision, r->table.header.creator_id, r->table.header.creator_revision});
  for (const auto& n : r->table.nodes) {
    if (const auto* d = n.as<ItsGroup>()) b.its_group(n.revision, n.identifier, *d);
    if (const auto* d = n.as<Smmu>()) b.smmu(n.revision, n.identifier, *d, n.mappings);
    if (const auto* d = n.as<SmmuV3>()) b.smmu_v3(n.revision, n.identifier, *d, n.mappings);
    if (const auto* d = n.as<NamedComponent>()) b.named_component(n.revision, n.identifier, *d, n.mappings);
    if (const auto* d = n.as<RootComplex>()) b.root_complex(n.revision, n.identifier, *d, n.mappings);
    if (const auto* d = n.as<Pmcg>()) b.pmcg(n.revision, n.identifier, *d, n.mappings);
    if (const auto* d = n.as<Rmr>()) b.rmr(n.revision, n.identifier, *d, n.mappings);
  }
  EXPECT_EQ(b.finish().value(), t);
}

TEST(IortParse, OlderRevisionsUseTheirShorterLayouts) {
  // Root complex revision 0 ends after the segment number (32 bytes); SMMUv3 revision 0 after the SYNC
  // GSIV (60 bytes); PMCG revision 0 has no page 1 base (32 bytes).
  Builder b(TableIdentity{0, "OLD   ", "OLDTABLE", 1, "TEST", 1});
  const auto its = b.its_group(0, 0, ItsGroup{{0}});
  SmmuV3 s;
  s.base = 0x1000000;
  s.flags = SmmuV3::kCohaccOverride;
  s.event_gsiv = s.pri_gsiv = s.gerr_gsiv = s.sync_gsiv = 50;
  const IdMapping to_its[] = {{0, 0xffff, 0, its, 0, 0}};
  const auto smmu = b.smmu_v3(0, 0, s, to_its);
  RootComplex rc;
  rc.memory = MemoryAccess{1, 0, 3};
  const IdMapping to_smmu[] = {{0, 0xffff, 0, smmu, 0, 0}};
  b.root_complex(0, 0, rc, to_smmu);
  b.pmcg(0, 0, Pmcg{0x2000000, 60, smmu, {}}, {});
  const Bytes t = b.finish().value();
  auto r = parse(t);
  ASSERT_TRUE(r);
  for (const auto& p : r->problems) ADD_FAILURE() << p.message;
  EXPECT_EQ(r->table.nodes[1].mapping_offset, layout::kSmmuV3SizeRev0);
  EXPECT_FALSE(r->table.nodes[1].as<SmmuV3>()->id_mapping_index);
  EXPECT_EQ(r->table.nodes[2].mapping_offset, layout::kRcSizeRev0);
  EXPECT_FALSE(r->table.nodes[2].as<RootComplex>()->memory_address_limit);
  EXPECT_EQ(r->table.nodes[3].length, layout::kPmcgSizeRev0);
  EXPECT_FALSE(r->table.nodes[3].as<Pmcg>()->page1_base);
}

TEST(IortParse, OnlyNonIortBytesAreRefused) {
  Bytes dsdt = test::qemu_virt_iort();
  dsdt[0] = 'D';
  auto r = parse(dsdt);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EINVAL);
  EXPECT_NE(r.error().message.find("\"DORT\""), std::string::npos) << r.error().message;
  EXPECT_FALSE(parse(Bytes{'I', 'O', 'R'}));
  EXPECT_TRUE(parse(Bytes{'I', 'O', 'R', 'T'}));  // an IORT, though a broken one
}

}  // namespace
}  // namespace vsmmu::acpi::iort
