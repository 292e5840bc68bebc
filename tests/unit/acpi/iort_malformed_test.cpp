// Every malformed shape gives its own precise problem - which rule, at which byte, with the numbers
// that prove it - and no shape makes the parser read outside the bytes it was given (run under the
// asan preset: ASan aborts on any stray read).
#include <gtest/gtest.h>

#include "acpi/iort.hpp"
#include "fixtures.hpp"

namespace vsmmu::acpi::iort {
namespace {

using test::Bytes;
using namespace layout;

// The problems of a table, which must parse as an IORT.
std::vector<Problem> problems(const Bytes& t) {
  auto r = parse(t);
  EXPECT_TRUE(r) << r.error().to_string();
  return r ? r->problems : std::vector<Problem>{};
}

// Asserts that `t` has exactly one error, of `check` at `offset`, whose message contains `text`.
void expect_only_error(const Bytes& t, Check check, std::uint64_t offset, const std::string& text) {
  const auto ps = problems(t);
  std::vector<Problem> errors;
  for (const auto& p : ps)
    if (p.severity == Severity::error) errors.push_back(p);
  ASSERT_EQ(errors.size(), 1u) << "expected one " << to_string(check) << " error, got " << errors.size()
                               << (errors.empty() ? "" : ": " + errors[0].message);
  EXPECT_EQ(errors[0].check, check) << errors[0].message;
  EXPECT_EQ(errors[0].offset, offset) << errors[0].message;
  EXPECT_NE(errors[0].message.find(text), std::string::npos) << errors[0].message;
}

// ACPI 6.5 5.2.6: a table starts with a 36-byte header; DEN 0049 Table 2 adds 12 more bytes.
TEST(IortMalformed, TruncatedAcpiHeader) {
  Bytes t = test::qemu_virt_iort();
  t.resize(20);
  expect_only_error(t, Check::acpi_header, 20, "inside the 36-byte ACPI header");
}

TEST(IortMalformed, TruncatedIortHeader) {
  Bytes t = test::qemu_virt_iort();
  t.resize(40);
  expect_only_error(t, Check::acpi_header, 40, "inside the 48-byte IORT header");
}

// ACPI 6.5 5.2.6: all bytes of the table, checksum included, sum to zero.
TEST(IortMalformed, BadChecksumNamesTheRightValue) {
  Bytes t = test::qemu_virt_iort();
  const std::uint8_t good = t[kChecksum];
  t[kChecksum] = static_cast<std::uint8_t>(good + 1);
  expect_only_error(t, Check::checksum, kChecksum, fmt::format("should be {:#04x}", good));
}

TEST(IortMalformed, TruncatedTableIsReportedAgainstItsDeclaredLength) {
  Bytes t = test::qemu_virt_iort();
  t.resize(test::kQemuRc + 20);  // the root complex node is cut
  const auto ps = problems(t);
  ASSERT_GE(ps.size(), 1u);
  EXPECT_EQ(ps[0].check, Check::table_length);
  EXPECT_EQ(ps[0].offset, kLength);
  EXPECT_NE(ps[0].message.find("216 (0xd8) bytes but only 180"), std::string::npos) << ps[0].message;
  // The cut node is then reported as running past what is there.
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[1].check, Check::node_length);
  EXPECT_EQ(ps[1].offset, test::kQemuRc + kNodeLength);
}

TEST(IortMalformed, NodePastTheEnd) {
  Bytes t = test::qemu_virt_iort();
  test::put(t, test::kQemuRc + kNodeLength, 0x40, 2);  // 56 -> 64 bytes: 8 past the table
  test::fix_checksum(t);
  expect_only_error(t, Check::node_length, test::kQemuRc + kNodeLength,
                    "would end at 0xe0, past the end of the table at 0xd8");
}

TEST(IortMalformed, ZeroLengthNode) {
  Bytes t = test::qemu_virt_iort();
  test::put(t, test::kQemuSmmu + kNodeLength, 0, 2);
  test::fix_checksum(t);
  expect_only_error(t, Check::node_length, test::kQemuSmmu + kNodeLength, "(a zero-length node)");
}

TEST(IortMalformed, NodeTooShortForItsRevision) {
  Bytes t = test::qemu_virt_iort();
  // An SMMUv3 node of revision 2 on needs 68 bytes (DEN 0049 Table 19); cut this revision 4 node to
  // 64 bytes without mappings and end the table there.
  test::put(t, test::kQemuSmmu + kNodeMappingCount, 0, 4);
  test::put(t, test::kQemuSmmu + kNodeLength, 64, 2);
  test::put(t, kNodeCount, 2, 4);  // drop the root complex: it would now start mid-node
  t.resize(test::kQemuSmmu + 64);
  test::put(t, kLength, t.size(), 4);
  test::fix_checksum(t);
  expect_only_error(t, Check::node_length, test::kQemuSmmu + kNodeLength, "too short for its fields, which need 68");
}

TEST(IortMalformed, MappingToAMissingNode) {
  Bytes t = test::qemu_virt_iort();
  const std::size_t ref = test::kQemuRc + kRcSizeRev1 + kMapOutputReference;
  test::put(t, ref, test::kQemuSmmu + 4, 4);  // into the middle of the SMMU node
  test::fix_checksum(t);
  expect_only_error(t, Check::output_reference, ref, "0x4c, which is not the start of any node (nodes start at 0x30, 0x48, 0xa0)");
}

TEST(IortMalformed, MappingToTheWrongKindOfNode) {
  Bytes t = test::qemu_virt_iort();
  const std::size_t ref = test::kQemuSmmu + kSmmuV3SizeRev2 + kMapOutputReference;
  test::put(t, ref, test::kQemuRc, 4);  // SMMU -> root complex
  test::fix_checksum(t);
  expect_only_error(t, Check::output_reference, ref, "can only go to an ITS group");
}

TEST(IortMalformed, NullOutputReference) {
  Bytes t = test::qemu_virt_iort();
  const std::size_t ref = test::kQemuRc + kRcSizeRev1 + kMapOutputReference;
  test::put(t, ref, 0, 4);
  test::fix_checksum(t);
  expect_only_error(t, Check::output_reference, ref, "NULL parent reference");
}

TEST(IortMalformed, HugeNodeCount) {
  Bytes t = test::qemu_virt_iort();
  test::put(t, kNodeCount, 0xffffffff, 4);
  test::fix_checksum(t);
  expect_only_error(t, Check::node_array, kNodeCount, "node count is 4294967295 but the table ends after node 3");
}

TEST(IortMalformed, HugeMappingCount) {
  Bytes t = test::qemu_virt_iort();
  test::put(t, test::kQemuRc + kNodeMappingCount, 0x80000000, 4);
  test::fix_checksum(t);
  expect_only_error(t, Check::id_mapping, test::kQemuRc + kNodeMappingCount,
                    "2147483648 ID mappings (42949672960 bytes from +0x24)");
}

TEST(IortMalformed, HugeItsCount) {
  Bytes t = test::qemu_virt_iort();
  test::put(t, test::kQemuIts + kItsCount, 0x40000001, 4);
  test::fix_checksum(t);
  expect_only_error(t, Check::node_fields, test::kQemuIts + kItsCount, "claims 1073741825 ITS identifiers");
}

TEST(IortMalformed, NodeArrayOffsetInsideTheHeader) {
  Bytes t = test::qemu_virt_iort();
  test::put(t, kNodeOffset, 0x20, 4);
  test::fix_checksum(t);
  expect_only_error(t, Check::node_array, kNodeOffset, "points inside the 48-byte IORT header");
}

TEST(IortMalformed, UnknownNodeType) {
  Bytes t = test::qemu_virt_iort();
  test::put(t, test::kQemuIts + kNodeType, 7, 1);
  test::fix_checksum(t);
  // The root complex still maps to the SMMU, whose mapping to the (now unknown) node is wrong too.
  const auto ps = problems(t);
  ASSERT_GE(ps.size(), 1u);
  EXPECT_EQ(ps[0].check, Check::node_type);
  EXPECT_EQ(ps[0].offset, test::kQemuIts);
  EXPECT_NE(ps[0].message.find("type 7, which DEN 0049 E.f does not define"), std::string::npos);
}

// DEN 0049 Table 4 / Linux iort_id_map: two mappings of one node must not claim the same input ID.
TEST(IortMalformed, OverlappingInputRanges) {
  Builder b(TableIdentity{});
  const auto its = b.its_group(1, 0, ItsGroup{{0}});
  RootComplex rc;
  rc.memory = MemoryAccess{1, 0, 3};
  const IdMapping maps[] = {{0x0, 0xff, 0, its, 0, 0}, {0x80, 0xff, 0x1000, its, 0, 0}};
  b.root_complex(4, 1, rc, maps);
  const Bytes t = b.finish().value();
  const std::size_t second = 0x48 + kRcSizeRev4 + kIdMappingSize;
  expect_only_error(t, Check::overlapping_input, second + kMapInputBase, "both claim input IDs 0x80-0xff");
}

TEST(IortMalformed, CountStoredInsteadOfCountMinusOneIsAWarning) {
  // 0x100 IDs at 0 written as id_count 0x100 (instead of 0xff) touches the next range's first ID:
  // the off-by-one Linux works around (iort_id_map, -EAGAIN).
  Builder b(TableIdentity{});
  const auto its = b.its_group(1, 0, ItsGroup{{0}});
  RootComplex rc;
  const IdMapping maps[] = {{0x0, 0x100, 0, its, 0, 0}, {0x100, 0xff, 0x100, its, 0, 0}};
  b.root_complex(4, 1, rc, maps);
  const auto ps = problems(b.finish().value());
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0].severity, Severity::warning);
  EXPECT_EQ(ps[0].check, Check::overlapping_input);
  EXPECT_NE(ps[0].message.find("count minus one"), std::string::npos);
}

TEST(IortMalformed, SingleMappingOnAnSmmuV2) {
  Builder b(TableIdentity{});
  const auto its = b.its_group(1, 0, ItsGroup{{0}});
  Smmu v2;
  v2.span = 0x10000;
  const IdMapping maps[] = {{0, 0, 5, its, IdMapping::kSingleMapping, 0}};
  b.smmu(3, 1, v2, maps);
  const Bytes t = b.finish().value();
  const std::size_t map = 0x48 + kSmmuSize + kSmmuGlobalIrqSize;
  expect_only_error(t, Check::single_mapping, map + kMapFlags, "Linux ignores it for an SMMUv1/v2");
}

TEST(IortMalformed, SmmuMsiIndexPastTheMappings) {
  // With a line not wired as a GSIV, Linux takes the SMMU's MSI DeviceID from id_mapping_index.
  Bytes t = test::qemu_virt_iort();
  test::put(t, test::kQemuSmmu + kSmmuV3PriGsiv, 0, 4);
  test::put(t, test::kQemuSmmu + kSmmuV3IdMappingIndex, 3, 4);
  test::fix_checksum(t);
  expect_only_error(t, Check::smmu_msi, test::kQemuSmmu + kSmmuV3IdMappingIndex, "ID mapping index overflows");
}

TEST(IortMalformed, SmmuMsiMappingMustBeSingle) {
  Bytes t = test::qemu_virt_iort();
  test::put(t, test::kQemuSmmu + kSmmuV3PriGsiv, 0, 4);  // index 0 now names the range mapping to the ITS
  test::fix_checksum(t);
  expect_only_error(t, Check::smmu_msi, test::kQemuSmmu + kSmmuV3SizeRev2, "Invalid MSI mapping");
}

TEST(IortMalformed, UnterminatedNamedComponentName) {
  Builder b(TableIdentity{});
  NamedComponent nc;
  nc.device_name = "\\_SB_.DEV0";
  b.named_component(4, 0, nc, {});
  Bytes t = b.finish().value();
  // Overwrite the NUL and the padding after the name.
  for (std::size_t i = 0x30 + kNcName + nc.device_name.size(); i < t.size(); ++i) t[i] = 'X';
  test::fix_checksum(t);
  expect_only_error(t, Check::node_fields, 0x30 + kNcName, "has no terminating NUL before +0x28 (the end of the node)");
}

TEST(IortMalformed, RmrWithoutDescriptors) {
  Builder b(TableIdentity{});
  const auto its = b.its_group(1, 0, ItsGroup{{0}});
  SmmuV3 s;
  s.flags = SmmuV3::kCohaccOverride;
  s.event_gsiv = s.pri_gsiv = s.gerr_gsiv = s.sync_gsiv = 40;
  const IdMapping to_its[] = {{0, 0xff, 0, its, 0, 0}};
  const auto smmu = b.smmu_v3(4, 1, s, to_its);
  const IdMapping to_smmu[] = {{0, 0xf, 0, smmu, 0, 0}};
  const auto rmr = b.rmr(3, 2, Rmr{0, {}}, to_smmu);
  const Bytes t = b.finish().value();
  expect_only_error(t, Check::rmr, rmr + kRmrCount, "Linux skips an RMR node without descriptors");
}

TEST(IortMalformed, RmrRangesLinuxWarnsAbout) {
  Builder b(TableIdentity{});
  const auto its = b.its_group(1, 0, ItsGroup{{0}});
  SmmuV3 s;
  s.event_gsiv = s.pri_gsiv = s.gerr_gsiv = s.sync_gsiv = 40;
  const IdMapping to_its[] = {{0, 0xff, 0, its, 0, 0}};
  const auto smmu = b.smmu_v3(4, 1, s, to_its);
  const IdMapping to_smmu[] = {{0, 0xf, 0, smmu, 0, 0}};
  b.rmr(3, 2, Rmr{0, {{0x8001000, 0x1000}, {0x9000000, 0}, {0x8000000, 0x100000}}}, to_smmu);
  auto r = parse(b.finish().value());
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->valid());
  std::vector<std::string> seen;
  for (const auto& p : r->problems) seen.push_back(p.message);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_NE(seen[0].find("not 64 KiB aligned"), std::string::npos) << seen[0];
  EXPECT_NE(seen[1].find("has length 0"), std::string::npos) << seen[1];
  EXPECT_NE(seen[2].find("memory ranges 0 and 2 overlap"), std::string::npos) << seen[2];
}

TEST(IortMalformed, RmrNodesBelowRevisionFiveAreIgnoredByLinux) {
  Bytes t = test::all_node_types();
  test::put(t, kRevision, 3, 1);
  test::fix_checksum(t);
  const auto ps = problems(t);
  ASSERT_EQ(ps.size(), 1u) << ps[0].message << " / " << ps[1].message;
  EXPECT_EQ(ps[0].severity, Severity::warning);
  EXPECT_EQ(ps[0].check, Check::table_revision);
  EXPECT_NE(ps[0].message.find("1 RMR nodes but revision 3"), std::string::npos) << ps[0].message;
}

// Two root complexes of one segment are legal bytes: Linux uses the first (iort_scan_node). The nesting report
// warns and shadows the second (IortHostStatus.SecondRootComplexOfASegmentIsShadowedAndDoesNotCount).
TEST(IortMalformed, TwoRootComplexesOnOneSegmentAreNoTableError) {
  Builder b(TableIdentity{});
  const auto its = b.its_group(1, 0, ItsGroup{{0}});
  const IdMapping maps[] = {{0, 0xffff, 0, its, 0, 0}};
  b.root_complex(4, 1, RootComplex{}, maps);
  b.root_complex(4, 2, RootComplex{}, maps);
  EXPECT_TRUE(problems(b.finish().value()).empty());
}

TEST(IortMalformed, MappingArrayInsideTheNodeFields) {
  Bytes t = test::qemu_virt_iort();
  test::put(t, test::kQemuRc + kNodeMappingOffset, 0x10, 4);
  test::fix_checksum(t);
  expect_only_error(t, Check::id_mapping, test::kQemuRc + kNodeMappingOffset,
                    "offset +0x10 lies inside the node's own fields, which end at +0x24");
}

// Whatever the damage, the parser reads only the bytes it was given: every prefix of every valid
// table and every single-byte corruption of it is parsed (ASan/UBSan in the asan preset catch any
// stray read or overflow), and a damaged table is never reported clean unless its bytes say so.
TEST(IortMalformed, EveryTruncationAndByteFlipStaysInBounds) {
  for (const Bytes& good : {test::qemu_virt_iort(), test::all_node_types()}) {
    for (std::size_t len = 0; len < good.size(); ++len) {
      const Bytes cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
      auto r = parse(cut);
      if (len >= 4) {
        ASSERT_TRUE(r);
        EXPECT_FALSE(r->valid()) << "a table cut to " << len << " bytes was accepted";
      }
    }
    for (std::size_t i = 0; i < good.size(); ++i) {
      for (std::uint8_t x : {std::uint8_t{0x01}, std::uint8_t{0x80}, std::uint8_t{0xff}}) {
        Bytes bad = good;
        bad[i] ^= x;
        auto r = parse(bad);
        if (i >= 4) {
          ASSERT_TRUE(r);
          // The checksum covers every byte, so a single flip is always caught at least there.
          EXPECT_FALSE(r->valid()) << "flipping byte " << i << " went unnoticed";
        }
      }
    }
  }
}

}  // namespace
}  // namespace vsmmu::acpi::iort
