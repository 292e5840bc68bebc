// `vsmmu iort patch` as firmware people run it: exit 0 when the patched table is written, 1 when it is
// refused (with the reason), 2 when it cannot run. CANWBS goes only where nesting_report does not refuse
// and the CCA allows a coherent path (arm-smmu-v3-iommufd.c, arm_vsmmu_init; DEN 0049 Tables 14-15); a
// wrong checksum alone is fixed with the patch (ACPI 6.5 5.2.6), and tables older than revision 7
// (DEN 0049 E.f) get a note since Linux reads the bit anyway (drivers/acpi/arm64/iort.c).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "acpi/files.hpp"
#include "acpi/iort.hpp"
#include "acpi/iort_nesting.hpp"
#include "cli_run.hpp"
#include "fixtures.hpp"

namespace vsmmu::acpi {
namespace {

using test::data;
using test::expect_in;
using test::vsmmu;

using namespace iort::layout;
using iort::MemoryAccess;
using test::Behind;

// Writes `table` to a fresh directory and runs `iort patch --canwbs` on it with `options`; OUT is dir/out.aml.
struct Patch {
  std::string dir;
  test::Run run;
  Result<test::Bytes> written() const { return read_file(dir + "/out.aml"); }
};
Patch patch(const test::Bytes& table, const std::string& options = "") {
  Patch p{test::temp_dir(), {}};
  EXPECT_TRUE(write_file(p.dir + "/in.aml", table));
  p.run = vsmmu("iort patch --canwbs " + options + " '" + p.dir + "/in.aml' -o '" + p.dir + "/out.aml'");
  return p;
}

std::string reason(const test::Bytes& table, std::size_t rc) {
  const auto nesting = iort::nesting_report(iort::parse(table).value().table);
  EXPECT_EQ(nesting.root_complexes.at(rc).verdict, iort::Nesting::refused);
  return nesting.root_complexes.at(rc).reason;
}

std::string refused_line(std::uint32_t node, const std::string& why) {
  return fmt::format("vsmmu iort patch: root complex 0 (segment 0, node {:#05x}) cannot take CANWBS: {}. --force sets "
                     "it anyway\n",
                     node, why);
}
std::string nesting_refused(const std::string& reason) {
  return "nesting is refused there whatever its flags: " + reason;
}
const std::string kCcaZero =
    "its CCA is 0 (not cache coherent): CANWBS says its accesses are coerced to Normal Write-Back, which needs a "
    "coherent path to memory (DEN 0049, memory access properties)";

TEST(CliPatch, AChecksumOfZeroIsFixedAndSaid) {
  auto t = test::qemu_virt_iort();
  t[kChecksum] = 0;
  const auto p = patch(t);
  ASSERT_EQ(p.run.status, 0) << p.run.out;
  expect_in(p.run.out, "root complex 0 (node 0x0a0): memory access flags 0x03 -> 0x07\n");
  expect_in(p.run.out, "note: checksum also fixed: 0x00 -> 0xa9; the firmware's table carried 0x00 where its bytes "
                       "called for 0xae (ACPI 6.5 5.2.6)\n");
  expect_in(p.run.out, "OEM revision 1 -> 2, checksum 0xa9\n");
  EXPECT_EQ(p.written().value(), test::read_golden("iort/qemu-virt-canwbs.dat"));
}

TEST(CliPatch, AChecksumBesideAnotherErrorIsRefused) {
  auto t = test::dangling_reference();
  const auto report = iort::parse(t).value();
  ASSERT_EQ(report.problems.size(), 1u);
  t[kChecksum] = 0;
  const auto p = patch(t);
  EXPECT_EQ(p.run.status, 1) << p.run.out;
  EXPECT_EQ(p.run.out, fmt::format("vsmmu iort patch: the table has 1 error besides its checksum, at offset "
                                   "{:#x}: {}. A patched copy would carry it into the kernel; fix the table first "
                                   "(`vsmmu iort check` lists it)\n",
                                   report.problems[0].offset, report.problems[0].message));
  EXPECT_FALSE(p.written());
}

TEST(CliPatch, ARootComplexBehindOnlyAnItsIsRefusedAndWrittenWithForce) {
  const auto t = test::platform({{Behind::its}});
  const auto refused = patch(t.table);
  EXPECT_EQ(refused.run.status, 1);
  EXPECT_EQ(refused.run.out, refused_line(t.rcs[0], nesting_refused(reason(t.table, 0))));
  EXPECT_FALSE(refused.written());

  const auto forced = patch(t.table, "--force");
  ASSERT_EQ(forced.run.status, 0) << forced.run.out;
  expect_in(forced.run.out, fmt::format("root complex 0 (node {:#05x}): memory access flags 0x01 -> 0x05 (forced)\n",
                                        t.rcs[0]));
  expect_in(forced.run.out, fmt::format("note: root complex 0 (segment 0, node {:#05x}): CANWBS forced, which is "
                                        "unsafe: {}\n",
                                        t.rcs[0], nesting_refused(reason(t.table, 0))));
  const auto written = forced.written().value();
  EXPECT_EQ(written[t.rcs[0] + kRcMemory + kMemFlags], MemoryAccess::kCoherency | MemoryAccess::kCanwbs);
}

TEST(CliPatch, ARootComplexBehindAnSmmuV2IsRefused) {
  const auto t = test::platform({{Behind::smmu_v2}});
  const auto p = patch(t.table, "--rc 0");
  EXPECT_EQ(p.run.status, 1);
  EXPECT_EQ(p.run.out, refused_line(t.rcs[0], nesting_refused(reason(t.table, 0))));
  expect_in(p.run.out, "SMMUv1/v2");
}

TEST(CliPatch, ARootComplexBehindAnSmmuV3WithoutCohaccIsRefused) {
  const auto t = test::platform({{Behind::smmu_v3_without_cohacc}});
  const auto p = patch(t.table);
  EXPECT_EQ(p.run.status, 1);
  EXPECT_EQ(p.run.out, refused_line(t.rcs[0], nesting_refused(reason(t.table, 0))));
  expect_in(p.run.out, "COHACC");
}

TEST(CliPatch, ARootComplexWithCcaZeroIsRefused) {
  const auto t = test::platform({{Behind::smmu_v3, 0}});
  const auto p = patch(t.table);
  EXPECT_EQ(p.run.status, 1);
  EXPECT_EQ(p.run.out, refused_line(t.rcs[0], kCcaZero));
}

TEST(CliPatch, WithoutRcTheSuitableOneIsPatchedAndTheOtherListedAsSkipped) {
  const auto t = test::platform({{Behind::smmu_v3}, {Behind::its}});
  const auto p = patch(t.table);
  ASSERT_EQ(p.run.status, 0) << p.run.out;
  EXPECT_EQ(p.run.out,
            fmt::format("root complex 0 (node {:#05x}): memory access flags 0x01 -> 0x05\n"
                        "note: root complex 1 (segment 1, node {:#05x}) skipped: {}; --force sets CANWBS there too\n"
                        "OEM revision 1 -> 2, checksum {:#04x}\n"
                        "wrote {}/out.aml: {} bytes\n",
                        t.rcs[0], t.rcs[1], nesting_refused(reason(t.table, 1)), p.written().value()[kChecksum], p.dir,
                        t.table.size()));
  const auto written = p.written().value();
  EXPECT_EQ(written[t.rcs[0] + kRcMemory + kMemFlags], MemoryAccess::kCoherency | MemoryAccess::kCanwbs);
  EXPECT_EQ(written[t.rcs[1] + kRcMemory + kMemFlags], MemoryAccess::kCoherency);
  const auto check = vsmmu("iort check '" + p.dir + "/out.aml'");
  EXPECT_EQ(check.status, 0) << check.out;  // valid, and root complex 0 now allows nesting by CANWBS

  // --rc 1 names the unsuitable one: refused, nothing written.
  const auto one = patch(t.table, "--rc 1");
  EXPECT_EQ(one.run.status, 1);
  expect_in(one.run.out, fmt::format("root complex 1 (segment 1, node {:#05x}) cannot take CANWBS", t.rcs[1]));
  EXPECT_FALSE(one.written());
}

TEST(CliPatch, ATableRevisionBeforeCanwbsIsNoted) {
  const auto p = patch(test::qemu_virt_iort());  // QEMU virt: IORT revision 5
  ASSERT_EQ(p.run.status, 0) << p.run.out;
  expect_in(p.run.out, "note: IORT revision 5 predates CANWBS (DEN 0049 E.f, revision 7): bit 2 of the memory access "
                       "flags is reserved there. Linux reads it at any revision (drivers/acpi/arm64/iort.c, "
                       "iort_pci_rc_supports_canwbs); other readers may not\n");
  const auto current = patch(test::platform({{Behind::smmu_v3}}).table);
  ASSERT_EQ(current.run.status, 0) << current.run.out;
  EXPECT_EQ(current.run.out.find("note:"), std::string::npos) << current.run.out;
}

TEST(CliPatch, CannotRunExitsTwo) {
  const std::string dir = test::temp_dir();
  const auto missing = vsmmu("iort patch --canwbs /nonexistent/IORT -o '" + dir + "/o.aml'");
  EXPECT_EQ(missing.status, 2);
  expect_in(missing.out, "cannot open /nonexistent/IORT");
  auto dsdt = test::qemu_virt_iort();
  dsdt[0] = 'D';
  EXPECT_EQ(patch(dsdt).run.status, 2);
  EXPECT_EQ(patch(test::qemu_virt_iort(), "--frob").run.status, 2);
  EXPECT_EQ(vsmmu("iort patch --canwbs --rc").status, 2);
  const auto help = vsmmu("iort patch --help");
  EXPECT_EQ(help.status, 0);
  expect_in(help.out, "exit status:\n  0  the patched table was written\n  1  refused");
  expect_in(help.out, "  2  could not run");
}

}  // namespace
}  // namespace vsmmu::acpi
