// Patching CANWBS into a host IORT for Linux's initrd ACPI table upgrade (drivers/acpi/tables.c:
// a replacement needs a valid checksum and a higher OEM revision) and the newc cpio it travels in.
// CANWBS goes only where it can matter and be true: not on root complexes nesting_report refuses
// (arm-smmu-v3-iommufd.c: a vIOMMU needs a coherent SMMUv3 behind the device) nor on CCA 0 ones.
#include <gtest/gtest.h>

#include <fstream>

#include <fmt/format.h>

#include "acpi/bytes.hpp"
#include "acpi/cpio.hpp"
#include "acpi/files.hpp"
#include "acpi/iort_nesting.hpp"
#include "acpi/iort_patch.hpp"
#include "fixtures.hpp"

namespace vsmmu::acpi::iort {
namespace {

using test::Bytes;
using namespace layout;

TEST(IortPatch, QemuVirtGetsCanwbsOemRevisionPlusOneAndAValidChecksum) {
  const Bytes before = test::qemu_virt_iort();
  auto p = set_canwbs(before, std::nullopt);
  ASSERT_TRUE(p) << p.error().to_string();
  const Bytes& after = p->table;
  ASSERT_EQ(after.size(), before.size());
  EXPECT_EQ(before[test::kQemuRc + kRcMemory + kMemFlags], 0x03);
  EXPECT_EQ(after[test::kQemuRc + kRcMemory + kMemFlags], 0x07);  // DEN 0049 Table 15: CANWBS is bit 2
  EXPECT_EQ(byte_sum(after), 0);                                  // ACPI 6.5 5.2.6
  EXPECT_EQ(ByteView(after).u32(kOemRevision), ByteView(before).u32(kOemRevision) + 1);
  EXPECT_EQ(p->oem_revision_before, 1u);
  EXPECT_EQ(p->oem_revision_after, 2u);
  ASSERT_EQ(p->changes.size(), 1u);
  EXPECT_EQ(p->changes[0].rc.offset, test::kQemuRc);
  EXPECT_EQ(p->changes[0].before, 0x03);
  EXPECT_EQ(p->changes[0].after, 0x07);
  // Nothing else moved: the only bytes that differ are the flags, the OEM revision and the checksum.
  for (std::size_t i = 0; i < before.size(); ++i) {
    const bool expected_change = i == kChecksum || i == kOemRevision || i == test::kQemuRc + kRcMemory + kMemFlags;
    if (!expected_change) {
      EXPECT_EQ(before[i], after[i]) << "byte " << i;
    }
  }
  auto r = parse(after);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->problems.empty());
}

// The one error of a table with one error besides maybe its checksum.
Problem only_error(const Bytes& t) {
  const auto report = parse(t).value();
  EXPECT_EQ(report.count(Severity::error), 1u);
  for (const auto& problem : report.problems)
    if (problem.severity == Severity::error && problem.check != Check::checksum) return problem;
  ADD_FAILURE() << "no error besides the checksum";
  return {};
}

TEST(IortPatch, RefusesBrokenTablesTablesWithoutRootComplexesAndMaxedOemRevisions) {
  const Bytes bad = test::dangling_reference();
  auto p = set_canwbs(bad, std::nullopt);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().err, EINVAL);
  EXPECT_EQ(p.error().where, "iort.patch");
  const Problem error = only_error(bad);
  EXPECT_EQ(error.check, Check::output_reference);
  EXPECT_EQ(p.error().message, fmt::format("the table has 1 error, at offset {:#x}: {}. A patched copy "
                                           "would carry it into the kernel; fix the table first (`vsmmu iort "
                                           "check` lists it)",
                                           error.offset, error.message));

  Builder b(TableIdentity{});
  b.its_group(1, 0, ItsGroup{{0}});
  auto no_rc = set_canwbs(b.finish().value(), std::nullopt);
  ASSERT_FALSE(no_rc);
  EXPECT_EQ(no_rc.error().err, ENOENT);

  Bytes maxed = test::qemu_virt_iort();
  test::put(maxed, kOemRevision, 0xffffffff, 4);
  test::fix_checksum(maxed);
  auto full = set_canwbs(maxed, std::nullopt);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().err, EOVERFLOW);

  Bytes dsdt = test::qemu_virt_iort();
  dsdt[0] = 'D';
  auto not_iort = set_canwbs(dsdt, std::nullopt);
  ASSERT_FALSE(not_iort);
  EXPECT_EQ(not_iort.error().where, "iort.parse");
}

// Several firmware blobs ship checksum 0 and leave it to be filled in at boot; Linux only warns
// (drivers/acpi/tables.c), and the patch rewrites the checksum anyway (ACPI 6.5 5.2.6), so it goes ahead
// and says what it fixed: QEMU virt's table sums to 0 with 0xae there, the patched one with 0xa9.
TEST(IortPatch, AChecksumOfZeroIsFixedWithThePatchAndSaidSo) {
  Bytes zero = test::qemu_virt_iort();
  zero[kChecksum] = 0;
  auto p = set_canwbs(zero, std::nullopt);
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->table, test::read_golden("iort/qemu-virt-canwbs.dat"));
  ASSERT_TRUE(p->checksum_fixed);
  EXPECT_EQ(p->checksum_fixed->shipped, 0x00);
  EXPECT_EQ(p->checksum_fixed->due, 0xae);
  EXPECT_EQ(p->checksum_fixed->written, 0xa9);
  ASSERT_FALSE(p->notes.empty());
  EXPECT_EQ(p->notes[0], "checksum also fixed: 0x00 -> 0xa9; the firmware's table carried 0x00 where its bytes called "
                         "for 0xae (ACPI 6.5 5.2.6)");
  // A right checksum says nothing about it.
  auto right = set_canwbs(test::qemu_virt_iort(), std::nullopt);
  ASSERT_TRUE(right);
  EXPECT_FALSE(right->checksum_fixed);
  for (const auto& n : right->notes) EXPECT_FALSE(n.starts_with("checksum")) << n;
}

TEST(IortPatch, AChecksumBesideAnotherErrorIsStillRefused) {
  Bytes bad = test::dangling_reference();
  const Problem error = only_error(bad);
  bad[kChecksum] = 0;
  auto p = set_canwbs(bad, std::nullopt);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().err, EINVAL);
  EXPECT_EQ(p.error().message, fmt::format("the table has 1 error besides its checksum, at offset {:#x}: "
                                           "{}. A patched copy would carry it into the kernel; fix the table first "
                                           "(`vsmmu iort check` lists it)",
                                           error.offset, error.message));
}

std::uint8_t flags_of(const Bytes& table, std::uint32_t rc) { return table[rc + kRcMemory + kMemFlags]; }

// The reason nesting_report gives for root complex `index` (one definition of what can nest).
std::string verdict_reason(const Bytes& table, std::size_t index) {
  const auto rc = nesting_report(parse(table).value().table).root_complexes.at(index);
  EXPECT_EQ(rc.verdict, Nesting::refused);
  return rc.reason;
}

TEST(IortPatch, OnlyTheChosenRootComplex) {
  const auto p = test::platform({{test::Behind::smmu_v3}, {test::Behind::smmu_v3}});
  auto one = set_canwbs(p.table, 1);
  ASSERT_TRUE(one) << one.error();
  EXPECT_EQ(flags_of(one->table, p.rcs[0]), MemoryAccess::kCoherency);
  EXPECT_EQ(flags_of(one->table, p.rcs[1]), MemoryAccess::kCoherency | MemoryAccess::kCanwbs);
  auto all = set_canwbs(p.table, std::nullopt);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->changes.size(), 2u);
  auto none = set_canwbs(p.table, 2);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().err, ERANGE);
  EXPECT_EQ(none.error().message, "there is no root complex 2: the table has 2 (0-1)");
}

// What set_canwbs says about the lone root complex of `p`, which nesting_report refuses for a reason
// naming `what`.
std::string refusal_by_verdict(const test::Platform& p, std::string_view what) {
  const std::string reason = verdict_reason(p.table, 0);
  EXPECT_NE(reason.find(what), std::string::npos) << reason;
  return fmt::format("root complex 0 (segment 0, node {:#05x}) cannot take CANWBS: nesting is refused there "
                     "whatever its flags: {}. --force sets it anyway",
                     p.rcs[0], reason);
}

// arm-smmu-v3-iommufd.c: only an SMMUv3 translates for a vIOMMU; RIDs that go straight to the ITS have no
// stage 2 at all, so CANWBS there claims something that changes nothing.
TEST(IortPatch, ARootComplexBehindOnlyAnItsIsRefusedUnlessForced) {
  const auto p = test::platform({{test::Behind::its}});
  const std::string reason = verdict_reason(p.table, 0);
  auto refused = set_canwbs(p.table, std::nullopt);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().err, EOPNOTSUPP);
  EXPECT_EQ(refused.error().where, "iort.patch");
  EXPECT_EQ(refused.error().message, refusal_by_verdict(p, "ITS"));
  EXPECT_EQ(set_canwbs(p.table, 0).error().message, refused.error().message);

  auto forced = set_canwbs(p.table, std::nullopt, IfUnsafe::force);
  ASSERT_TRUE(forced) << forced.error();
  EXPECT_EQ(flags_of(forced->table, p.rcs[0]), MemoryAccess::kCoherency | MemoryAccess::kCanwbs);
  ASSERT_EQ(forced->changes.size(), 1u);
  EXPECT_EQ(forced->changes[0].forced, "nesting is refused there whatever its flags: " + reason);
  EXPECT_EQ(forced->notes, std::vector<std::string>{fmt::format(
                               "root complex 0 (segment 0, node {:#05x}): CANWBS forced, which is unsafe: nesting is "
                               "refused there whatever its flags: {}",
                               p.rcs[0], reason)});
  EXPECT_TRUE(parse(forced->table).value().valid());
}

// The arm-smmu (v1/v2) driver has no iommufd vIOMMU.
TEST(IortPatch, ARootComplexBehindAnSmmuV2IsRefused) {
  const auto p = test::platform({{test::Behind::smmu_v2}});
  auto refused = set_canwbs(p.table, 0);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().err, EOPNOTSUPP);
  EXPECT_EQ(refused.error().message, refusal_by_verdict(p, "SMMUv1/v2"));
}

// An SMMUv3 without COHACC: Linux treats it as not coherent and iommufd binds no device behind it
// (IOMMU_CAP_CACHE_COHERENCY), CANWBS or not.
TEST(IortPatch, ARootComplexBehindAnSmmuV3WithoutCohaccIsRefused) {
  const auto p = test::platform({{test::Behind::smmu_v3_without_cohacc}});
  auto refused = set_canwbs(p.table, std::nullopt);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().err, EOPNOTSUPP);
  EXPECT_EQ(refused.error().message, refusal_by_verdict(p, "COHACC"));
}

// DEN 0049 Table 14: CCA 0 says the root complex's accesses are not cache coherent; CANWBS (Normal
// Write-Back, Table 15) would claim the opposite.
TEST(IortPatch, ARootComplexWithCcaZeroIsRefused) {
  const auto p = test::platform({{test::Behind::smmu_v3, 0}});
  auto refused = set_canwbs(p.table, std::nullopt);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().err, EOPNOTSUPP);
  EXPECT_EQ(refused.error().message,
            fmt::format("root complex 0 (segment 0, node {:#05x}) cannot take CANWBS: its CCA is 0 (not cache "
                        "coherent): CANWBS says its accesses are coerced to Normal Write-Back, which needs a coherent "
                        "path to memory (DEN 0049, memory access properties). --force sets it anyway",
                        p.rcs[0]));
}

TEST(IortPatch, WithoutRcTheSuitableRootComplexesArePatchedAndTheOthersListed) {
  const auto p = test::platform({{test::Behind::smmu_v3}, {test::Behind::its}, {test::Behind::smmu_v3, 0}});
  auto patched = set_canwbs(p.table, std::nullopt);
  ASSERT_TRUE(patched) << patched.error();
  EXPECT_EQ(flags_of(patched->table, p.rcs[0]), MemoryAccess::kCoherency | MemoryAccess::kCanwbs);
  EXPECT_EQ(flags_of(patched->table, p.rcs[1]), flags_of(p.table, p.rcs[1]));
  EXPECT_EQ(flags_of(patched->table, p.rcs[2]), flags_of(p.table, p.rcs[2]));
  ASSERT_EQ(patched->changes.size(), 1u);
  EXPECT_EQ(patched->changes[0].rc.index, 0u);
  EXPECT_FALSE(patched->changes[0].forced);
  ASSERT_EQ(patched->skipped.size(), 2u);
  EXPECT_EQ(patched->skipped[0].rc.index, 1u);
  EXPECT_EQ(patched->skipped[1].rc.index, 2u);
  EXPECT_EQ(patched->notes,
            (std::vector<std::string>{
                fmt::format("root complex 1 (segment 1, node {:#05x}) skipped: nesting is refused there whatever its "
                            "flags: {}; --force sets CANWBS there too",
                            p.rcs[1], verdict_reason(p.table, 1)),
                fmt::format("root complex 2 (segment 2, node {:#05x}) skipped: its CCA is 0 (not cache coherent): "
                            "CANWBS says its accesses are coerced to Normal Write-Back, which needs a coherent path to "
                            "memory (DEN 0049, memory access properties); --force sets CANWBS there too",
                            p.rcs[2])}));
  auto again = parse(patched->table).value();
  EXPECT_TRUE(again.problems.empty());
  const auto nesting = nesting_report(again.table);
  EXPECT_EQ(nesting.root_complexes[0].verdict, Nesting::allowed_canwbs);

  // --rc picks one: a suitable one alone, an unsuitable one refused.
  auto only_first = set_canwbs(p.table, 0);
  ASSERT_TRUE(only_first);
  EXPECT_TRUE(only_first->skipped.empty());
  EXPECT_TRUE(only_first->notes.empty());
  auto second = set_canwbs(p.table, 1);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().err, EOPNOTSUPP);

  // --force sets all three and names the two it forced.
  auto forced = set_canwbs(p.table, std::nullopt, IfUnsafe::force);
  ASSERT_TRUE(forced);
  ASSERT_EQ(forced->changes.size(), 3u);
  EXPECT_FALSE(forced->changes[0].forced);
  EXPECT_TRUE(forced->changes[1].forced);
  EXPECT_TRUE(forced->changes[2].forced);
  EXPECT_TRUE(forced->skipped.empty());
}

TEST(IortPatch, NoSuitableRootComplexRefusesNamingEach) {
  const auto p = test::platform({{test::Behind::its}, {test::Behind::smmu_v3, 0}});
  auto refused = set_canwbs(p.table, std::nullopt);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().err, EOPNOTSUPP);
  EXPECT_EQ(refused.error().message,
            fmt::format("no root complex can take CANWBS: root complex 0 (segment 0, node {:#05x}): nesting is "
                        "refused there whatever its flags: {}; root complex 1 (segment 1, node {:#05x}): its CCA is 0 "
                        "(not cache coherent): CANWBS says its accesses are coerced to Normal Write-Back, which needs "
                        "a coherent path to memory (DEN 0049, memory access properties). --force sets it anyway",
                        p.rcs[0], verdict_reason(p.table, 0), p.rcs[1]));
}

// DEN 0049 E.f (IORT revision 7) defines CANWBS; before, bit 2 is reserved. Linux reads the bit at any
// revision (drivers/acpi/arm64/iort.c, iort_pci_rc_supports_canwbs), so the patch goes ahead and says so.
TEST(IortPatch, ATableRevisionBeforeCanwbsIsNotedNotRefused) {
  const auto old = test::platform({{test::Behind::smmu_v3}}, 5);
  auto p = set_canwbs(old.table, std::nullopt);
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->table_revision, 5);
  EXPECT_EQ(p->notes, std::vector<std::string>{
                          "IORT revision 5 predates CANWBS (DEN 0049 E.f, revision 7): bit 2 of the memory access "
                          "flags is reserved there. Linux reads it at any revision (drivers/acpi/arm64/iort.c, "
                          "iort_pci_rc_supports_canwbs); other readers may not"});
  EXPECT_EQ(flags_of(p->table, old.rcs[0]), MemoryAccess::kCoherency | MemoryAccess::kCanwbs);
  auto current = set_canwbs(test::platform({{test::Behind::smmu_v3}}).table, std::nullopt);
  ASSERT_TRUE(current);
  EXPECT_TRUE(current->notes.empty());
}

// Patching a root complex that already has CANWBS changes nothing in it, and says so: the table is still
// written with a higher OEM revision (what an override needs), so the operator should know nothing was gained.
TEST(IortPatch, ARootComplexThatAlreadyHasCanwbsIsSaidUnchanged) {
  auto once = set_canwbs(test::qemu_virt_iort(), std::nullopt);
  ASSERT_TRUE(once) << once.error();
  EXPECT_TRUE(once->notes.size() == 1) << "only the revision note: " << once->notes.size();
  auto twice = set_canwbs(once->table, std::nullopt);
  ASSERT_TRUE(twice) << twice.error();
  ASSERT_EQ(twice->changes.size(), 1u);
  EXPECT_EQ(twice->changes[0].before, twice->changes[0].after);
  EXPECT_EQ(twice->notes.back(), "root complex 0 (segment 0, node 0x0a0) already had CANWBS: unchanged (the table is "
                                 "still rewritten with a higher OEM revision)");
}

// The newc format (cpio(5), "New ASCII Format"): "070701", 13 eight-digit hex fields, the name with
// its NUL padded to 4 bytes, the data padded to 4 bytes; the archive ends with TRAILER!!!.
TEST(Cpio, NewcHeaderFieldsAndPadding) {
  const cpio::Entry e{"a/IORT.aml", 0100644, {1, 2, 3, 4, 5}};
  const Bytes a = cpio::newc(std::span(&e, 1));
  const std::string s(a.begin(), a.end());
  EXPECT_EQ(s.substr(0, 6), "070701");
  EXPECT_EQ(s.substr(6, 8), "00000001");    // ino
  EXPECT_EQ(s.substr(14, 8), "000081A4");   // mode 0100644
  EXPECT_EQ(s.substr(54, 8), "00000005");   // filesize
  EXPECT_EQ(s.substr(94, 8), "0000000B");   // namesize with the NUL
  EXPECT_EQ(s.substr(110, 11), std::string("a/IORT.aml\0", 11));
  // 110 + 11 = 121, padded to 124; then 5 data bytes padded to 132.
  EXPECT_EQ(a[124], 1);
  EXPECT_EQ(a[128], 5);
  EXPECT_EQ(s.substr(132, 6), "070701");
  EXPECT_NE(s.find("TRAILER!!!"), std::string::npos);
  EXPECT_EQ(a.size() % 512, 0u);
}

TEST(Cpio, TableUpgradeArchiveExtractsWithGnuCpio) {
  if (!test::tool_present(VSMMU_CPIO, "cpio", "cpio")) return;
  auto p = set_canwbs(test::qemu_virt_iort(), std::nullopt);
  ASSERT_TRUE(p);
  const Bytes archive = cpio::newc(cpio::acpi_override("IORT", p->table));
  const std::string dir = test::temp_dir();
  ASSERT_TRUE(write_file(dir + "/override.cpio", archive));
  const auto listing = test::run(std::string("cd '") + dir + "' && '" + VSMMU_CPIO + "' -it --quiet < override.cpio");
  ASSERT_EQ(listing.status, 0) << listing.out;
  EXPECT_EQ(listing.out, "kernel\nkernel/firmware\nkernel/firmware/acpi\nkernel/firmware/acpi/IORT.aml\n");
  const auto extract =
      test::run(std::string("cd '") + dir + "' && '" + VSMMU_CPIO + "' -id --quiet < override.cpio");
  ASSERT_EQ(extract.status, 0) << extract.out;
  auto extracted = read_file(dir + "/kernel/firmware/acpi/IORT.aml");
  ASSERT_TRUE(extracted);
  EXPECT_EQ(*extracted, p->table);
}

}  // namespace
}  // namespace vsmmu::acpi::iort
