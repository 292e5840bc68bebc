// The nesting probe on the simulated host's profiles: its verdicts follow the kernel's rules for IOMMU_VIOMMU_ALLOC
// and IOMMU_HWPT_ALLOC (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c; docs/kernel-rules.md), it decodes the
// ID registers as IHI 0070 6.3 defines them, and it leaves nothing behind, even when a call fails midway (the
// iommufd selftests' fail_nth).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "host/sim/sim_host.hpp"
#include "nesting/nesting_probe.hpp"

namespace vsmmu::nesting {
namespace {

using host::sim::SimHost;

std::unique_ptr<SimHost> make_host(std::string_view kernel, host::sim::HardwareProfile hardware) {
  auto k = host::sim::embedded_kernel_profile(kernel);
  EXPECT_TRUE(k) << k.error();
  if (!k) return nullptr;
  auto h = SimHost::create(std::move(*k), std::move(hardware));
  EXPECT_TRUE(h) << h.error();
  return h ? std::move(*h) : nullptr;
}

std::unique_ptr<SimHost> make_host(std::string_view kernel = "upstream", std::string_view hardware = "default") {
  auto hw = host::sim::embedded_hardware_profile(hardware);
  EXPECT_TRUE(hw) << hw.error();
  return hw ? make_host(kernel, std::move(*hw)) : nullptr;
}

std::vector<std::string> all_devices(const SimHost& h) {
  std::vector<std::string> names;
  for (const auto& d : h.hardware_profile().devices) names.push_back(d.name);
  return names;
}

const DeviceReport& device(const ProbeReport& r, std::string_view name) {
  auto it = std::find_if(r.devices.begin(), r.devices.end(), [&](const DeviceReport& d) { return d.device == name; });
  EXPECT_NE(it, r.devices.end()) << name;
  return *it;
}

void expect_in(const std::string& text, std::string_view what) {
  EXPECT_NE(text.find(what), std::string::npos) << "missing '" << what << "' in: " << text;
}

// The probe destroys what it made and unbinds: the simulated kernel is back to nothing.
void expect_nothing_left(const SimHost& h) { EXPECT_EQ(h.stats().held(), ""); }

// Default profile: nic0/nic1 behind an SMMU with S2FWB, gpu0 behind one without S2FWB but on a CANWBS root
// complex: VIOMMU_ALLOC needs S2FWB or CANWBS (arm_smmu_get_viommu_size), so all three nest; nvme0 has neither.
TEST(NestingProbe, DefaultProfileNestsWhereS2fwbOrCanwbsAllowsIt) {
  auto h = make_host();
  ASSERT_TRUE(h);
  const auto r = probe(*h, all_devices(*h));
  EXPECT_EQ(r.host, "sim upstream/default");
  ASSERT_EQ(r.devices.size(), 4U);
  for (const char* name : {"nic0", "nic1", "gpu0"}) {
    const auto& d = device(r, name);
    EXPECT_EQ(d.verdict, NestingVerdict::possible) << name << ": " << d.reason;
    EXPECT_TRUE(d.reason.empty());
    std::vector<std::string> steps;
    for (const auto& s : d.steps) {
      EXPECT_FALSE(s.error) << name << ": " << s.name;
      steps.push_back(s.name);
    }
    EXPECT_EQ(steps, (std::vector<std::string>{"bind", "GET_HW_INFO", "ARM SMMUv3", "IOAS", "NEST_PARENT HWPT",
                                               "attach to NEST_PARENT", "vIOMMU", "vDEVICE", "nested HWPT (abort)",
                                               "attach to nested HWPT"}))
        << name;
  }
  EXPECT_EQ(r.possible(), 3U);
  EXPECT_FALSE(r.all_possible());
  expect_nothing_left(*h);
}

// The probe reads each device's MSI window from the host (the group's reserved_regions; here the profile's SMMU)
// and, once the device is attached to a nest parent, finds it reserved in the IOAS (IOMMU_IOAS_IOVA_RANGES).
TEST(NestingProbe, ReportsEachDevicesMsiWindowCheckedAgainstTheIoas) {
  auto hw = host::sim::embedded_hardware_profile("default");
  ASSERT_TRUE(hw);
  hw->smmus[1].msi_window = host::IovaRange{0x9000000, 0x900ffff};  // smmu1: gpu0 and nvme0
  auto h = make_host("upstream", std::move(*hw));
  ASSERT_TRUE(h);
  const auto r = probe(*h, all_devices(*h));
  EXPECT_EQ(device(r, "nic0").msi_window, host::kArmSmmuV3SwMsi);
  EXPECT_EQ(device(r, "nic0").msi_window_check, "reserved in the IOAS (IOMMU_IOAS_IOVA_RANGES)");
  EXPECT_EQ(device(r, "gpu0").msi_window, (host::IovaRange{0x9000000, 0x900ffff}));
  EXPECT_EQ(device(r, "gpu0").msi_window_check, "reserved in the IOAS (IOMMU_IOAS_IOVA_RANGES)");
  EXPECT_FALSE(device(r, "gpu0").msi_window_error);
  expect_nothing_left(*h);
}

TEST(NestingProbe, NeitherS2fwbNorCanwbsIsRefusedNamingDeviceRootComplexAndWhatIsMissing) {
  auto h = make_host();
  ASSERT_TRUE(h);
  const auto d = probe_device(*h, "nvme0");
  EXPECT_EQ(d.verdict, NestingVerdict::not_possible);
  ASSERT_FALSE(d.steps.empty());
  EXPECT_EQ(d.steps.back().name, "vIOMMU");
  ASSERT_TRUE(d.steps.back().error);
  EXPECT_EQ(d.steps.back().error->err, EOPNOTSUPP);
  expect_in(d.reason, "nvme0");
  expect_in(d.reason, "root complex pcie2 without CANWBS");
  expect_in(d.reason, "SMMU smmu1 without S2FWB (IDR3.FWB = 0)");
  expect_in(d.advice, "CANWBS");
  expect_in(d.advice, "vsmmu iort patch --canwbs");
  EXPECT_EQ(d.location.pci_address, "0002:03:00.0");
  EXPECT_EQ(d.location.root_complex, "pcie2");
  EXPECT_EQ(d.location.smmu, "smmu1");
  expect_nothing_left(*h);
}

// A host written for the case: one SMMU without S2FWB, its only root complex without CANWBS.
TEST(NestingProbe, AHostWithoutS2fwbAndCanwbsCannotNestAnyDevice) {
  auto hw = host::sim::parse_hardware_profile(R"({
    "kind": "hardware", "name": "no-coherency",
    "smmus": [ { "name": "smmu0", "s2fwb": false } ],
    "root_complexes": [ { "name": "pcie0", "smmu": "smmu0", "canwbs": false } ],
    "devices": [ { "name": "dev0", "bdf": "00:01.0", "root_complex": "pcie0" },
                 { "name": "dev1", "bdf": "00:02.0", "root_complex": "pcie0" } ]
  })", "test:no-coherency");
  ASSERT_TRUE(hw) << hw.error();
  auto h = make_host("upstream", std::move(*hw));
  ASSERT_TRUE(h);
  const auto r = probe(*h, {"dev0", "dev1"});
  EXPECT_EQ(r.possible(), 0U);
  for (const auto& d : r.devices) {
    EXPECT_EQ(d.verdict, NestingVerdict::not_possible);
    expect_in(d.reason, "without S2FWB");
    expect_in(d.reason, "root complex pcie0 without CANWBS");
  }
  ASSERT_EQ(r.smmus.size(), 1U);
  ASSERT_FALSE(r.smmus[0].guest);
  expect_in(r.smmus[0].guest.error().message, "no device behind smmu0 can nest");
  expect_nothing_left(*h);
}

// arm_smmu_device_iidr_probe: MMU-600 before r2p0 (erratum 1209401) loses FEAT_NESTING, so NEST_PARENT is
// refused (EOPNOTSUPP) although IDR0 reports both stages.
TEST(NestingProbe, NestingErratumIsNamed) {
  auto h = make_host("upstream", "mmu-600-r1p0");
  ASSERT_TRUE(h);
  const auto d = probe_device(*h, "nic0");
  EXPECT_EQ(d.verdict, NestingVerdict::not_possible);
  EXPECT_EQ(d.steps.back().name, "NEST_PARENT HWPT");
  expect_in(d.reason, "erratum 1209401");
  ASSERT_TRUE(d.nested_dirty);
  EXPECT_FALSE(d.nested_dirty->available);
  expect_in(d.nested_dirty->detail, "cannot be a nesting parent");
  expect_nothing_left(*h);
}

// IHI 0070 6.3.1/6.3.2/6.3.4/6.3.6: the fields as the default profile's SMMUs set them.
TEST(NestingProbe, DecodesThePhysicalIdRegisters) {
  auto h = make_host();
  ASSERT_TRUE(h);
  const auto nic = probe_device(*h, "nic0");
  const auto gpu = probe_device(*h, "gpu0");
  ASSERT_TRUE(nic.features && gpu.features);
  const auto& a = nic.features->id;
  EXPECT_TRUE(a.s1p && a.s2p && a.fwb && a.ril && a.ats && a.cohacc);
  EXPECT_EQ(a.httu, smmu::Httu::access_dirty);
  EXPECT_EQ(a.sidsize, 16U);
  EXPECT_EQ(a.ssidsize, 20U);
  EXPECT_EQ(a.oas_bits(), 48U);
  EXPECT_TRUE(a.gran4k && a.gran16k && a.gran64k);
  EXPECT_EQ(a.arch_minor_rev, 2U);
  const auto& b = gpu.features->id;
  EXPECT_FALSE(b.fwb || b.ril || b.ats || b.gran16k);
  EXPECT_EQ(b.httu, smmu::Httu::none);
  EXPECT_EQ(b.ssidsize, 8U);
  EXPECT_EQ(b.oas_bits(), 44U);
  EXPECT_EQ(b.arch_minor_rev, 1U);
  expect_in(nic.features->summary(), "stage 1+2, S2FWB, HTTU dirty, RIL, ATS, SIDSIZE 16, SSIDSIZE 20, OAS 48, granules 4K 16K 64K");
}

// iommu_hw_info_arm_smmuv3.flags bit 0 (Linux 7.3): TLBI/CFGI + CMD_SYNC must be issued twice. The simulated
// SMMUs do not have the erratum, so the decoding is checked on a hand-made hw_info.
TEST(NestingProbe, DecodesTheRepeatTlbiCfgiErratumFlagAndRefusesOtherIommus) {
  host::HwInfo hw;
  hw.type = host::uapi::kHwInfoTypeArmSmmuv3;
  hw.flags = host::uapi::kHwInfoArmSmmuv3ErrataRepeatTlbiCfgi;
  auto f = decode_features(hw);
  ASSERT_TRUE(f) << f.error();
  EXPECT_TRUE(f->errata_repeat_tlbi_cfgi);
  expect_in(f->summary(), "erratum: TLBI/CFGI + CMD_SYNC issued twice");
  hw.flags = 0;
  EXPECT_FALSE(decode_features(hw)->errata_repeat_tlbi_cfgi);
  hw.type = host::uapi::kHwInfoTypeNone;
  auto none = decode_features(hw);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().err, EOPNOTSUPP);
}

// Devices are grouped by the SMMU the host names, and each group gets the vSMMU's ID registers
// derive_id_registers computes with every wish on auto: stage 1 only, SIDSIZE capped at 16, the host's granules,
// and the host's OAS as the guest's IPA size (smmu1's 44 bits, which a 48-bit default once refused).
TEST(NestingProbe, GroupsBySmmuWithTheGuestIdRegisters) {
  auto h = make_host();
  ASSERT_TRUE(h);
  const auto r = probe(*h, all_devices(*h));
  ASSERT_EQ(r.smmus.size(), 2U);
  const auto& s0 = r.smmus[0];
  EXPECT_EQ(s0.name, "smmu0");
  EXPECT_TRUE(s0.named_by_host);
  EXPECT_EQ(s0.devices, (std::vector<std::size_t>{0, 1}));
  ASSERT_TRUE(s0.guest) << s0.guest.error();
  EXPECT_TRUE(s0.guest->idr0.get(smmu::Idr0::S1P));
  EXPECT_FALSE(s0.guest->idr0.get(smmu::Idr0::S2P));
  EXPECT_EQ(s0.guest->idr1.get(smmu::Idr1::SIDSIZE), 16U);
  EXPECT_TRUE(s0.guest->idr5.get(smmu::Idr5::GRAN16K));
  EXPECT_FALSE(s0.guest->idr3.get(smmu::Idr3::FWB));

  const auto& s1 = r.smmus[1];
  EXPECT_EQ(s1.name, "smmu1");
  EXPECT_EQ(s1.devices, (std::vector<std::size_t>{2, 3}));
  ASSERT_TRUE(s1.guest) << s1.guest.error();
  EXPECT_EQ(s1.guest->idr5.get(smmu::Idr5::OAS), smmu::Oas::bits44);
}

const AutoValue& auto_value(const SmmuGroup& g, const std::string& field) {
  for (const auto& a : g.auto_values)
    if (a.field == field) return a;
  static const AutoValue none{"missing", 0, "missing"};
  ADD_FAILURE() << field << " missing from " << g.name << "'s auto values";
  return none;
}

// What "auto" gives on each physical SMMU of the default profile (host/sim/profiles/hardware/default.json), with
// the reason, as `vsmmu probe` prints it: smmu0 (48-bit OAS, 20 SubstreamID bits, RIL, ATS but nic1 without it)
// and smmu1 (44 bits, 8 SubstreamID bits, no RIL, no ATS). The values are those of the group's guest registers.
TEST(NestingProbe, EachSmmuSaysWhatAutoGives) {
  auto h = make_host();
  ASSERT_TRUE(h);
  const auto r = probe(*h, all_devices(*h));
  ASSERT_EQ(r.smmus.size(), 2U);
  const auto& s0 = r.smmus[0];
  ASSERT_TRUE(s0.guest) << s0.guest.error();
  ASSERT_EQ(s0.auto_values.size(), 7U);
  EXPECT_EQ(auto_value(s0, "oas_bits").value, 48U);
  EXPECT_EQ(auto_value(s0, "ipa_bits").value, 48U);
  EXPECT_EQ(auto_value(s0, "ssid_bits").value, s0.guest->idr1.get(smmu::Idr1::SSIDSIZE));
  EXPECT_EQ(auto_value(s0, "ssid_bits").value, s0.features.id.cd2l ? 20U : kMaxLinearSsidBits);
  EXPECT_EQ(auto_value(s0, "ril").value, 1U);
  EXPECT_EQ(auto_value(s0, "ats").value, 0U);
  expect_in(auto_value(s0, "ats").why, "IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED");
  EXPECT_EQ(auto_value(s0, "stall").value, 0U);
  EXPECT_EQ(auto_value(s0, "msi").value, 0U);
  expect_in(auto_value(s0, "msi").why, "delivers the vSMMU's MSIs");

  const auto& s1 = r.smmus[1];
  ASSERT_TRUE(s1.guest) << s1.guest.error();
  EXPECT_EQ(auto_value(s1, "oas_bits").value, 44U);
  EXPECT_EQ(auto_value(s1, "ipa_bits").value, 44U);
  EXPECT_EQ(auto_value(s1, "ssid_bits").value, 8U);
  EXPECT_EQ(auto_value(s1, "ril").value, 0U);
  EXPECT_EQ(auto_value(s1, "ats").value, 0U);
  expect_in(auto_value(s1, "ats").why, "no ATS");
}

// IOMMU_HWPT_ALLOC: DIRTY_TRACKING needs HTTU dirty state (IDR0.HTTU = 2) and coherent walks;
// NEST_PARENT|DIRTY_TRACKING is EOPNOTSUPP upstream and accepted by the forward-looking "nested-dirty" kernel.
TEST(NestingProbe, DirtyTrackingDependsOnHttuAndNestedDirtyOnTheKernel) {
  auto upstream = make_host("upstream");
  auto forward = make_host("nested-dirty");
  ASSERT_TRUE(upstream && forward);
  const auto up = probe_device(*upstream, "nic0");
  const auto fw = probe_device(*forward, "nic0");
  ASSERT_TRUE(up.dirty && up.nested_dirty && fw.dirty && fw.nested_dirty);
  EXPECT_TRUE(up.dirty->available);
  EXPECT_TRUE(fw.dirty->available);
  EXPECT_FALSE(up.nested_dirty->available);
  expect_in(up.nested_dirty->detail, "this kernel has no nested dirty tracking");
  EXPECT_TRUE(fw.nested_dirty->available) << fw.nested_dirty->detail;

  const auto gpu = probe_device(*upstream, "gpu0");  // smmu1: no HTTU
  ASSERT_TRUE(gpu.dirty && gpu.nested_dirty);
  EXPECT_EQ(gpu.verdict, NestingVerdict::possible);
  EXPECT_FALSE(gpu.dirty->available);
  expect_in(gpu.dirty->detail, "no HTTU dirty state");
  EXPECT_FALSE(gpu.nested_dirty->available);
  expect_in(gpu.nested_dirty->detail, "no HTTU dirty state");
  expect_nothing_left(*upstream);
  expect_nothing_left(*forward);
}

TEST(NestingProbe, AnUnknownDeviceIsNotPossibleAndSaysWhy) {
  auto h = make_host();
  ASSERT_TRUE(h);
  const auto d = probe_device(*h, "nosuch0");
  EXPECT_EQ(d.verdict, NestingVerdict::not_possible);
  ASSERT_EQ(d.steps.size(), 1U);
  EXPECT_EQ(d.steps[0].name, "bind");
  expect_in(d.reason, "bind (VFIO_DEVICE_BIND_IOMMUFD) failed");
  expect_nothing_left(*h);
}

// fail_nth as the iommufd selftests use it: the n-th allocating call fails with ENOMEM before any side effect.
// Whichever it is, the probe says it could not tell (never "not possible": ENOMEM is not a property of the
// host), and the RAII handles leave the simulated kernel empty.
TEST(NestingProbe, AFailureAnywhereIsReportedAndLeavesNothing) {
  auto h = make_host();
  ASSERT_TRUE(h);
  unsigned n = 1;
  for (; n < 64; ++n) {
    h->set_fail_nth(n);
    const auto d = probe_device(*h, "nic0");
    const bool fired = h->fail_nth_fired();
    h->set_fail_nth(0);
    expect_nothing_left(*h);
    if (!fired) {
      EXPECT_EQ(d.verdict, NestingVerdict::possible) << d.reason;
      break;
    }
    const bool in_steps = d.verdict == NestingVerdict::unknown;
    const bool in_dirty = (d.dirty && d.dirty->detail.find("ENOMEM") != std::string::npos) ||
                          (d.nested_dirty && d.nested_dirty->detail.find("ENOMEM") != std::string::npos);
    EXPECT_TRUE(in_steps != in_dirty) << "call " << n << ": " << to_string(d.verdict) << " " << d.reason;
    if (in_steps) {
      expect_in(d.advice, "run the probe again");
      EXPECT_EQ(std::count_if(d.steps.begin(), d.steps.end(), [](const ProbeStep& s) { return s.error.has_value(); }), 1);
      EXPECT_EQ(d.steps.back().error->err, ENOMEM);
    } else {
      EXPECT_EQ(d.verdict, NestingVerdict::possible);
      expect_in(d.dirty->available ? d.nested_dirty->detail : d.dirty->detail, "could not tell");
    }
  }
  // bind, GET_HW_INFO, IOAS, NEST_PARENT, two dirty HWPTs, attach, vIOMMU, vDEVICE, nested HWPT, attach.
  EXPECT_EQ(n, 12U);
}

}  // namespace
}  // namespace vsmmu::nesting
