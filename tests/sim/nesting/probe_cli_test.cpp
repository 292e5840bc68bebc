// `vsmmu probe` as an operator runs it: exit codes (0 every device can nest, 1 some cannot, 2 nothing to
// probe), the verdict lines, the JSON, and on this machine's kernel (no /dev/iommu) the hint to load iommufd.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fixtures.hpp"

namespace vsmmu::nesting {
namespace {

using nlohmann::json;

acpi::test::Run vsmmu(const std::string& args) { return acpi::test::run(std::string("'") + VSMMU_BIN + "' " + args); }

void expect_in(const std::string& out, const std::string& what) {
  EXPECT_NE(out.find(what), std::string::npos) << "missing '" << what << "' in:\n" << out;
}

const json& device(const json& report, const std::string& name) {
  for (const auto& d : report["devices"])
    if (d["device"] == name) return d;
  ADD_FAILURE() << "no device " << name;
  static const json none;
  return none;
}

// The default simulated host: nvme0 has neither S2FWB nor CANWBS (IOMMU_VIOMMU_ALLOC EOPNOTSUPP), so not every
// device can nest: exit 1.
TEST(ProbeCli, SimJsonReportsEveryDeviceOfTheProfile) {
  const auto r = vsmmu("probe --host sim --json");
  ASSERT_EQ(r.status, 1) << r.out;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["host"], "sim upstream/default");
  EXPECT_EQ(j["devices"].size(), 4U);
  EXPECT_EQ(j["possible"], 3);
  EXPECT_EQ(j["all_possible"], false);
  const auto& nic0 = device(j, "nic0");
  EXPECT_EQ(nic0["verdict"], "possible");
  EXPECT_EQ(nic0["location"]["pci_address"], "0000:01:00.0");
  EXPECT_EQ(nic0["features"]["s2fwb"], true);
  EXPECT_EQ(nic0["features"]["httu"], "dirty");
  EXPECT_EQ(nic0["features"]["errata_repeat_tlbi_cfgi"], false);
  EXPECT_EQ(nic0["hw_info"]["type"], 2);
  EXPECT_EQ(nic0["dirty_tracking"]["available"], true);
  EXPECT_EQ(nic0["nested_dirty_tracking"]["available"], false);
  const auto& nvme0 = device(j, "nvme0");
  EXPECT_EQ(nvme0["verdict"], "not_possible");
  expect_in(nvme0["reason"], "root complex pcie2 without CANWBS");
  expect_in(nvme0["advice"], "vsmmu iort patch --canwbs");
  EXPECT_EQ(nvme0["steps"].back()["step"], "vIOMMU");
  EXPECT_EQ(nvme0["steps"].back()["error"]["errno"], EOPNOTSUPP);
  ASSERT_EQ(j["smmus"].size(), 2U);
  EXPECT_EQ(j["smmus"][0]["name"], "smmu0");
  EXPECT_EQ(j["smmus"][0]["devices"], json({"nic0", "nic1"}));
  EXPECT_EQ(j["smmus"][0]["guest_id_registers"]["idr"].size(), 6U);
}

TEST(ProbeCli, SimTextVerdictsAndProfiles) {
  const auto r = vsmmu("probe --host sim nic0 nvme0");
  EXPECT_EQ(r.status, 1) << r.out;
  expect_in(r.out, "nic0 (0000:01:00.0, root complex pcie0, SMMU smmu0, StreamID 0x100)\n  nesting: possible\n");
  expect_in(r.out, "  nesting: not possible: nvme0 is behind SMMU smmu1 without S2FWB");
  expect_in(r.out, "  what to do: firmware whose IORT sets CANWBS");
  expect_in(r.out, "nested dirty tracking (NEST_PARENT|DIRTY_TRACKING): no: this kernel has no nested dirty tracking");
  expect_in(r.out, "summary: 1 of 2 devices can nest");

  const auto minimal = vsmmu("probe --host sim --hardware minimal");
  EXPECT_EQ(minimal.status, 0) << minimal.out;
  expect_in(minimal.out, "  nesting: possible\n");

  const auto forward = vsmmu("probe --host sim:nested-dirty nic0");
  EXPECT_EQ(forward.status, 0) << forward.out;
  expect_in(forward.out, "nested dirty tracking (NEST_PARENT|DIRTY_TRACKING): yes");
}

TEST(ProbeCli, UsageErrorsExitTwoAndHelpHasAnExample) {
  EXPECT_EQ(vsmmu("probe --hardware minimal").status, 2);  // --hardware without --host sim
  EXPECT_EQ(vsmmu("probe --host xen").status, 2);
  EXPECT_EQ(vsmmu("probe --host sim:nosuch").status, 2);
  EXPECT_EQ(vsmmu("probe --bogus").status, 2);
  const auto help = vsmmu("probe --help");
  EXPECT_EQ(help.status, 0);
  expect_in(help.out, "usage: vsmmu probe");
  expect_in(help.out, "example:");
  expect_in(vsmmu("--help").out, "probe");
}

// KernelHost::open on a machine without /dev/iommu: ENOENT, with what is missing (CONFIG_IOMMUFD, modprobe).
TEST(ProbeCli, KernelHostWithoutDevIommuExitsTwoWithTheHint) {
  struct stat st {};
  if (::stat("/dev/iommu", &st) == 0) GTEST_SKIP() << "this machine has /dev/iommu; the case needs a host without it";
  for (const char* args : {"probe", "probe --host kernel --json 0000:01:00.0"}) {
    const auto r = vsmmu(args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.out;
    expect_in(r.out, "no /dev/iommu");
    expect_in(r.out, "modprobe iommufd");
    expect_in(r.out, "--host sim");
  }
}

}  // namespace
}  // namespace vsmmu::nesting
