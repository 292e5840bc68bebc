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
  // The host's MSI window (arm-smmu-v3's IOMMU_RESV_SW_MSI), reserved in the IOAS once the device is attached.
  EXPECT_EQ(nic0["msi_window"]["base"], "0x8000000");
  EXPECT_EQ(nic0["msi_window"]["last"], "0x80fffff");
  EXPECT_EQ(nic0["msi_window"]["size"], "0x100000");
  expect_in(nic0["msi_window"]["check"], "reserved in the IOAS");
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
  // What every wish on auto gives each physical SMMU: smmu1's 44-bit OAS becomes the guest's IPA size.
  const auto& auto1 = j["smmus"][1]["auto"];
  EXPECT_EQ(auto1["oas_bits"]["value"], 44);
  EXPECT_EQ(auto1["ipa_bits"]["value"], 44);
  EXPECT_EQ(j["smmus"][1]["guest_ipa_bits"], 44);
  EXPECT_EQ(auto1["ssid_bits"]["value"], 8);
  EXPECT_EQ(auto1["ril"]["value"], false);
  EXPECT_EQ(auto1["ats"]["value"], false);
  EXPECT_EQ(auto1["stall"]["value"], false);
  EXPECT_EQ(auto1["msi"]["value"], false);
  expect_in(auto1["oas_bits"]["why"], "the physical SMMU's");
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

// The simulated QEMU SMMUv3 says what `vsmmu probe` said in the e2e guest on the real one (tests/e2e: e2e_probe_canwbs,
// e2e_probe_no_canwbs): edu nests on the CANWBS root complex; without CANWBS IOMMU_VIOMMU_ALLOC is refused for the
// missing S2FWB and CANWBS; the same features, the same steps, and, with every wish on auto, a guest whose IPA
// size is the SMMU's 44-bit OAS.
TEST(ProbeCli, SimQemuVirtSaysWhatTheRealKernelSaid) {
  const auto r = vsmmu("probe --host sim --hardware qemu-virt");
  EXPECT_EQ(r.status, 1) << r.out;
  expect_in(r.out, "edu (0000:00:01.0, root complex pcie0, SMMU smmuv3, StreamID 0x8)\n  nesting: possible\n");
  expect_in(r.out, "  physical SMMU: stage 1+2, no S2FWB, no HTTU, RIL, no ATS, SIDSIZE 16, SSIDSIZE 0, OAS 44, "
                   "granules 4K 16K 64K\n  done: bind, GET_HW_INFO, ARM SMMUv3, IOAS, NEST_PARENT HWPT, attach to "
                   "NEST_PARENT, vIOMMU, vDEVICE, nested HWPT (abort), attach to nested HWPT\n");
  expect_in(r.out, "  nesting: not possible: edu-nocanwbs is behind SMMU smmuv3 without S2FWB (IDR3.FWB = 0) and root "
                   "complex pcie1 without CANWBS");
  expect_in(r.out, "to test, override the table: `vsmmu iort patch --canwbs`");
  expect_in(r.out, "  done: bind, GET_HW_INFO, ARM SMMUv3, IOAS, NEST_PARENT HWPT, attach to NEST_PARENT\n  refused: vIOMMU: "
                   "IOMMU_VIOMMU_ALLOC");
  expect_in(r.out, "nested dirty tracking (NEST_PARENT|DIRTY_TRACKING): no: the SMMU has no HTTU dirty state");
  expect_in(r.out, "  OAS auto -> 44 bits: the physical SMMU's\n  IPA auto -> 44 bits: the OAS\n"
                   "  SSIDSIZE auto -> 0 bits: the physical SMMU's\n  RIL auto -> on: the physical SMMU's\n"
                   "  ATS auto -> off: the physical SMMU has no ATS\n"
                   "  stalls auto -> off: the physical SMMU terminates faulting transactions\n  MSI auto -> off: on only "
                   "for a VMM that delivers the vSMMU's MSIs");
  expect_in(r.out, "  guest ID registers (every wish auto): IDR0 ");
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
