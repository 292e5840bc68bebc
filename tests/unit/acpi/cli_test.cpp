// `vsmmu iort` and `vsmmu dt` as an operator runs them: exit codes (0 valid with CANWBS, 1 problems or
// no CANWBS, 2 unusable input), what they print, their JSON, and that the files they write are
// byte-for-byte the golden tables the library tests pin.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "acpi/cpio.hpp"
#include "acpi/files.hpp"
#include "fixtures.hpp"

namespace vsmmu::acpi {
namespace {

using nlohmann::json;

std::string data(const std::string& name) { return std::string(VSMMU_TEST_DATA) + "/" + name; }

test::Run vsmmu(const std::string& args) { return test::run(std::string("'") + VSMMU_BIN + "' " + args); }

void expect_in(const std::string& out, const std::string& what) {
  EXPECT_NE(out.find(what), std::string::npos) << "missing '" << what << "' in:\n" << out;
}

TEST(Cli, CheckOnQemuVirtSaysNoCanwbsAndExitsOne) {
  const auto r = vsmmu("iort check '" + data("iort/qemu-virt.dat") + "'");
  EXPECT_EQ(r.status, 1) << r.out;
  expect_in(r.out, "no problems");
  expect_in(r.out, "root complex 0 (segment 0, node 0x0a0): COHERENCY=1 ATTRIBUTES=1 CANWBS=0");
  expect_in(r.out, "RIDs 0x0-0xffff -> SMMUv3 at 0x048, stream IDs 0x0-0xffff");
  expect_in(r.out, "verdict: only if the SMMU has S2FWB");
  expect_in(r.out, "run `vsmmu probe` on this host");
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
  EXPECT_EQ(j["root_complexes"][0]["verdict"], "allowed_canwbs");
  EXPECT_EQ(j["root_complexes"][0]["memory"]["flags"], 7);
  EXPECT_EQ(j["header"]["oem_revision"], 2);
}

TEST(Cli, ProblemsExitOneAndAreListedWithTheirOffset) {
  const std::string dir = test::temp_dir();
  auto t = test::qemu_virt_iort();
  t[iort::layout::kChecksum] ^= 1;
  ASSERT_TRUE(write_file(dir + "/bad.dat", t));
  const auto r = vsmmu("iort check '" + dir + "/bad.dat'");
  EXPECT_EQ(r.status, 1) << r.out;
  expect_in(r.out, "1 errors, 0 warnings:");
  expect_in(r.out, "error   at 0x009 [checksum] bad checksum");
  const auto j = vsmmu("iort check --json '" + dir + "/bad.dat'");
  EXPECT_EQ(j.status, 1);
  EXPECT_EQ(json::parse(j.out)["problems"][0]["check"], "checksum");
}

TEST(Cli, UnreadableOrNotAnIortExitsTwo) {
  const auto missing = vsmmu("iort check /nonexistent/IORT");
  EXPECT_EQ(missing.status, 2);
  expect_in(missing.out, "cannot open /nonexistent/IORT: No such file or directory");
  const auto dtb = vsmmu("iort check '" + data("dt/vsmmu-new-tree.dtb") + "'");
  EXPECT_EQ(dtb.status, 2);
  expect_in(dtb.out, "not an IORT");
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

}  // namespace
}  // namespace vsmmu::acpi
