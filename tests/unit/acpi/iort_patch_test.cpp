// Patching CANWBS into a host IORT for Linux's initrd ACPI table upgrade (drivers/acpi/tables.c:
// a replacement needs a valid checksum and a higher OEM revision) and the newc cpio it travels in.
#include <gtest/gtest.h>

#include <fstream>

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
  EXPECT_EQ(p->changes[0].offset, test::kQemuRc);
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

TEST(IortPatch, OnlyTheChosenRootComplex) {
  Builder b(TableIdentity{});
  const auto its = b.its_group(1, 0, ItsGroup{{0}});
  const IdMapping maps[] = {{0, 0xffff, 0, its, 0, 0}};
  RootComplex rc0, rc1;
  rc0.memory = rc1.memory = MemoryAccess{1, 0, 3};
  rc1.pci_segment = 1;
  const auto first = b.root_complex(4, 1, rc0, maps);
  const auto second = b.root_complex(4, 2, rc1, maps);
  const Bytes t = b.finish().value();
  auto p = set_canwbs(t, 1);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->table[first + kRcMemory + kMemFlags], 0x03);
  EXPECT_EQ(p->table[second + kRcMemory + kMemFlags], 0x07);
  auto all = set_canwbs(t, std::nullopt);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->changes.size(), 2u);
  auto none = set_canwbs(t, 2);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().err, ERANGE);
  EXPECT_NE(none.error().message.find("no root complex 2: the table has 2 (0-1)"), std::string::npos);
}

TEST(IortPatch, RefusesBrokenTablesTablesWithoutRootComplexesAndMaxedOemRevisions) {
  Bytes bad = test::qemu_virt_iort();
  bad[kChecksum] ^= 1;
  auto p = set_canwbs(bad, std::nullopt);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().err, EINVAL);
  EXPECT_NE(p.error().message.find("first at offset 0x9: bad checksum"), std::string::npos) << p.error().message;

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
