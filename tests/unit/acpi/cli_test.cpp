// `vsmmu iort` and `vsmmu dt` as an operator runs them: exit codes (iort check: acpi/nesting_status.hpp, 0
// possible, 1 needs S2FWB, 3 impossible, 4 malformed, 2 could not run), what they print, their JSON, and that
// the files they write are byte-for-byte the golden tables the library tests pin.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "acpi/cpio.hpp"
#include "acpi/files.hpp"
#include "acpi/nesting_status.hpp"
#include "cli_run.hpp"
#include "fixtures.hpp"

namespace vsmmu::acpi {
namespace {

using test::data;
using test::expect_in;
using test::vsmmu;

using nlohmann::json;

TEST(Cli, CheckOnQemuVirtSaysNoCanwbsAndExitsOne) {
  const auto r = vsmmu("iort check '" + data("iort/qemu-virt.dat") + "'");
  EXPECT_EQ(r.status, 1) << r.out;
  expect_in(r.out, "0 errors, 1 warning:");
  expect_in(r.out, "warning at 0x0b7 [canwbs_revision] root complex 0 (segment 0, node 0x0a0): no CANWBS");
  expect_in(r.out, "root complex 0 (segment 0, node 0x0a0): CCA=1 CPM=1 DACS=1 CANWBS=0 (flags 0x03)");
  expect_in(r.out, "map 0: RIDs 0x0-0xffff -> SMMUv3 at 0x9050000 (node 0x048), stream IDs 0x0-0xffff");
  expect_in(r.out, "verdict: only if the SMMU has S2FWB");
  expect_in(r.out, "result: needs S2FWB: nesting depends on the SMMU's S2FWB (IDR3.FWB), which the IORT cannot show "
                   "(run `vsmmu probe` on this host), for root complex 0 (segment 0, node 0x0a0)");
  expect_in(r.out, "`vsmmu iort patch --canwbs " + data("iort/qemu-virt.dat") + " -o iort.cpio --cpio`");
}

// A table whose only root complex bypasses the SMMU: nesting is impossible (3), and no patch is offered.
TEST(Cli, CheckOnAnImpossibleHostExitsThreeWithoutSuggestingAPatch) {
  const std::string dir = test::temp_dir();
  iort::Builder b(iort::TableIdentity{7});
  const auto its = b.its_group(1, 0, iort::ItsGroup{{0}});
  const iort::IdMapping maps[] = {{0, 0xffff, 0, its, 0, 0}};
  b.root_complex(4, 1, iort::RootComplex{}, maps);
  ASSERT_TRUE(write_file(dir + "/its.dat", b.finish().value()));
  const auto r = vsmmu("iort check '" + dir + "/its.dat'");
  EXPECT_EQ(r.status, 3) << r.out;
  expect_in(r.out, "result: impossible: no device reaches a coherent SMMUv3");
  EXPECT_EQ(r.out.find("iort patch"), std::string::npos) << r.out;
  const auto j = vsmmu("iort check --json '" + dir + "/its.dat'");
  EXPECT_EQ(j.status, 3);
  EXPECT_EQ(json::parse(j.out)["status"], json({{"name", "impossible"}, {"exit_code", 3}}));
}

TEST(Cli, PatchThenCheckExitsZero) {
  const std::string dir = test::temp_dir();
  const auto p = vsmmu("iort patch --canwbs '" + data("iort/qemu-virt.dat") + "' -o '" + dir + "/p.aml'");
  ASSERT_EQ(p.status, 0) << p.out;
  expect_in(p.out, "root complex 0 (node 0x0a0): memory access flags 0x03 -> 0x07");
  expect_in(p.out, "OEM revision 1 -> 2");
  EXPECT_EQ(read_file(dir + "/p.aml").value(), test::read_golden("iort/qemu-virt-canwbs.dat"));
  const auto c = vsmmu("iort check '" + dir + "/p.aml'");
  EXPECT_EQ(c.status, 0) << c.out;
  expect_in(c.out, "verdict: allowed (CANWBS)");
}

TEST(Cli, PatchWritesTheTableUpgradeCpio) {
  const std::string dir = test::temp_dir();
  const auto p = vsmmu("iort patch --canwbs --rc 0 '" + data("iort/qemu-virt.dat") + "' -o '" + dir + "/o.cpio' --cpio");
  ASSERT_EQ(p.status, 0) << p.out;
  const auto golden = test::read_golden("iort/qemu-virt-canwbs.dat");
  EXPECT_EQ(read_file(dir + "/o.cpio").value(), cpio::newc(cpio::acpi_override("IORT", golden)));
}

TEST(Cli, CheckJson) {
  const auto r = vsmmu("iort check --json '" + data("iort/qemu-virt-canwbs.dat") + "'");
  EXPECT_EQ(r.status, 0) << r.out;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["valid"], true);
  EXPECT_EQ(j["any_canwbs"], true);
  EXPECT_EQ(j["status"]["name"], "possible");
  EXPECT_EQ(j["status"]["exit_code"], 0);
  EXPECT_EQ(j["summary"], "possible: root complex 0 (segment 0, node 0x0a0) carries CANWBS, so Linux allows nesting "
                          "there whatever the SMMU's S2FWB");
  EXPECT_EQ(j["root_complexes"][0]["verdict"], "allowed_canwbs");
  EXPECT_EQ(j["root_complexes"][0]["memory"]["flags"], 7);
  EXPECT_EQ(j["header"]["oem_revision"], 2);
}

TEST(Cli, ErrorsExitFourAndAreListedWithTheirOffset) {
  const std::string dir = test::temp_dir();
  auto t = test::qemu_virt_iort();
  t[iort::layout::kChecksum] ^= 1;
  ASSERT_TRUE(write_file(dir + "/bad.dat", t));
  const auto r = vsmmu("iort check '" + dir + "/bad.dat'");
  EXPECT_EQ(r.status, 4) << r.out;
  expect_in(r.out, "1 error, 1 warning:");
  expect_in(r.out, "result: malformed: the table's only error is its checksum");
  expect_in(r.out, "error   at 0x009 [checksum] bad checksum");
  const auto j = vsmmu("iort check --json '" + dir + "/bad.dat'");
  EXPECT_EQ(j.status, 4);
  EXPECT_EQ(json::parse(j.out)["problems"][0]["check"], "checksum");
  // A header declaring more bytes than the file holds is malformed too.
  auto cut = test::qemu_virt_iort();
  cut.resize(cut.size() - 8);
  ASSERT_TRUE(write_file(dir + "/cut.dat", cut));
  const auto c = vsmmu("iort check '" + dir + "/cut.dat'");
  EXPECT_EQ(c.status, 4) << c.out;
  expect_in(c.out, "[table_length] the header declares 216 (0xd8) bytes but only 208 (0xd0) are present");
}

// An unreadable file or bad usage: the command could not run (2). Bytes that are not an IORT: malformed (4).
TEST(Cli, UnreadableExitsTwoNotAnIortExitsFour) {
  const auto missing = vsmmu("iort check /nonexistent/IORT");
  EXPECT_EQ(missing.status, 2);
  expect_in(missing.out, "cannot open /nonexistent/IORT: No such file or directory");
  const auto dtb = vsmmu("iort check '" + data("dt/vsmmu-new-tree.dtb") + "'");
  EXPECT_EQ(dtb.status, 4);
  expect_in(dtb.out, "not an IORT");
  const auto tiny = vsmmu("iort check /dev/null");
  EXPECT_EQ(tiny.status, 4) << tiny.out;
  expect_in(tiny.out, "even the 4-byte signature is missing");
  // A script reading --json gets a report for them too: status malformed, the one error.
  const auto dtb_json = vsmmu("iort check --json '" + data("dt/vsmmu-new-tree.dtb") + "'");
  EXPECT_EQ(dtb_json.status, 4);
  const json j = json::parse(dtb_json.out);
  EXPECT_EQ(j["status"]["name"], "malformed");
  EXPECT_EQ(j["status"]["exit_code"], 4);
  EXPECT_EQ(j["valid"], false);
  ASSERT_EQ(j["problems"].size(), 1U);
  EXPECT_NE(j["problems"][0]["message"].get<std::string>().find("not an IORT"), std::string::npos);
  EXPECT_NE(j["summary"].get<std::string>().find("malformed"), std::string::npos) << j["summary"];
  EXPECT_EQ(vsmmu("iort patch --canwbs '" + data("dt/vsmmu-new-tree.dtb") + "' -o /dev/null").status, 2);
  EXPECT_EQ(vsmmu("iort check --bogus").status, 2);
  EXPECT_EQ(vsmmu("iort patch '" + data("iort/qemu-virt.dat") + "' -o /dev/null").status, 2);  // no --canwbs
  EXPECT_EQ(vsmmu("iort").status, 2);
  EXPECT_EQ(vsmmu("iort frobnicate").status, 2);
}

TEST(Cli, GenWritesTheGoldenGuestTable) {
  const std::string dir = test::temp_dir();
  const auto r = vsmmu("iort gen --smmu base=0x9050000,event=106,pri=107,gerr=108,sync=109 "
                       "--smmu base=0x9070000,event=110,gerr=112,sync=113 --map rid=0,count=0x100 "
                       "--map rid=0x200,count=0x80,vsid=0x1000,smmu=1 -o '" + dir + "/g.aml'");
  ASSERT_EQ(r.status, 0) << r.out;
  expect_in(r.out, "6 nodes (2 vSMMUs, 1 root complexes)");
  EXPECT_EQ(read_file(dir + "/g.aml").value(), test::read_golden("iort/guest-two-smmus.dat"));
}

TEST(Cli, GenCarriesCanwbsFromTheHost) {
  const std::string dir = test::temp_dir();
  const auto with = vsmmu("iort gen --smmu base=0x9050000,event=106,pri=107,gerr=108,sync=109 --host-iort '" +
                          data("iort/qemu-virt-canwbs.dat") + "' -o '" + dir + "/a.aml'");
  ASSERT_EQ(with.status, 0) << with.out;
  expect_in(with.out, "root complex 0 has CANWBS");
  EXPECT_EQ(vsmmu("iort check '" + dir + "/a.aml'").status, 0);
  const auto without = vsmmu("iort gen --smmu base=0x9050000,event=106,pri=107,gerr=108,sync=109 --host-iort '" +
                             data("iort/qemu-virt.dat") + "' -o '" + dir + "/b.aml'");
  ASSERT_EQ(without.status, 0) << without.out;
  expect_in(without.out, "root complex 0 lacks CANWBS");
  EXPECT_EQ(vsmmu("iort check '" + dir + "/b.aml'").status, 1);
  EXPECT_EQ(vsmmu("iort gen --frob -o '" + dir + "/c.aml'").status, 2);
  const auto bad = vsmmu("iort gen --smmu base=0x9050000,evnt=106 -o '" + dir + "/c.aml'");
  EXPECT_EQ(bad.status, 2);
  expect_in(bad.out, "unknown key 'evnt'");
}

// docs/interrupts.md: the RMR nodes reserve the window the host reports (default the embedded simulated host,
// whose arm-smmu-v3 window is MSI_IOVA_BASE/LENGTH), or the one given; a host that cannot say is refused with
// the way out.
TEST(Cli, GenTakesTheMsiWindowFromTheHostOrTheCommandLine) {
  const std::string dir = test::temp_dir();
  const std::string smmu = "iort gen --smmu base=0x9050000,event=106,pri=107,gerr=108,sync=109 ";
  const auto from_sim = vsmmu(smmu + "-o '" + dir + "/s.aml'");
  ASSERT_EQ(from_sim.status, 0) << from_sim.out;
  expect_in(from_sim.out, "host MSI window: 0x8000000-0x80fffff");
  expect_in(vsmmu("iort check '" + dir + "/s.aml'").out, "ranges [0x8000000, +0x100000)");
  const auto given = vsmmu(smmu + "--msi-window 0x9000000,0x10000,0x8000000,0x100000 -o '" + dir + "/g.aml'");
  ASSERT_EQ(given.status, 0) << given.out;
  EXPECT_EQ(given.out.find("host MSI window"), std::string::npos) << given.out;
  expect_in(vsmmu("iort check '" + dir + "/g.aml'").out, "ranges [0x8000000, +0x100000) [0x9000000, +0x10000)");
  const auto one_device = vsmmu(smmu + "--host sim --device gpu0 -o '" + dir + "/d.aml'");
  EXPECT_EQ(one_device.status, 0) << one_device.out;
  const auto no_device = vsmmu(smmu + "--host sim --device nosuch -o '" + dir + "/n.aml'");
  EXPECT_EQ(no_device.status, 2);
  expect_in(no_device.out, "nosuch");
  expect_in(no_device.out, "pass --msi-window BASE,SIZE");
  EXPECT_EQ(vsmmu(smmu + "--msi-window 0x8000000 -o '" + dir + "/o.aml'").status, 2);  // BASE without SIZE
  struct stat st {};
  if (::stat("/dev/iommu", &st) != 0) {
    const auto kernel = vsmmu(smmu + "--host kernel -o '" + dir + "/k.aml'");
    EXPECT_EQ(kernel.status, 2);
    expect_in(kernel.out, "no /dev/iommu");
    expect_in(kernel.out, "pass --msi-window BASE,SIZE");
    const auto dt = vsmmu("dt gen --smmu base=0x9050000,eventq=106 --host kernel -o '" + dir + "/k.dtb'");
    EXPECT_EQ(dt.status, 2);
    expect_in(dt.out, "pass --msi-window BASE,SIZE");
  }
  const auto dt = vsmmu("dt gen --smmu base=0x9050000,eventq=106 --msi-window 0x9000000,0x10000 -o '" + dir + "/w.dtb'");
  ASSERT_EQ(dt.status, 0) << dt.out;
  expect_in(dt.out, "1 reserved MSI window");
}

TEST(Cli, EveryCommandHasHelpWithAnExample) {
  for (const char* cmd : {"iort check", "iort gen", "iort patch", "dt gen", "dt check"}) {
    const auto r = vsmmu(std::string(cmd) + " --help");
    EXPECT_EQ(r.status, 0) << cmd;
    expect_in(r.out, std::string("usage: vsmmu ") + cmd);
    expect_in(r.out, "example:");
  }
  for (const char* cmd : {"iort --help", "dt --help"}) EXPECT_EQ(vsmmu(cmd).status, 0) << cmd;
}

// The exit statuses iort check documents are the ones acpi/nesting_status.hpp defines.
TEST(Cli, CheckHelpListsTheHostNestingStatuses) {
  const auto r = vsmmu("iort check --help");
  expect_in(r.out, exit_status_help());
}

}  // namespace
}  // namespace vsmmu::acpi
