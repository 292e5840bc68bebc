// The S2FWB/CANWBS rule of IOMMU_VIOMMU_ALLOC (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c,
// arm_smmu_get_viommu_size; docs/kernel-rules.md, "vIOMMU allocation"): VFIO does no cache maintenance, so a vIOMMU
// needs the device to be coherent for any attribute (CANWBS on its root complex in the host IORT) or stage 2 to
// force write-back (IDR3.FWB). Refused with neither, accepted with either; the refusal names the device, its root
// complex and what is missing.
#include "base/try.hpp"
#include "tests/sim/host/sim_fixture.hpp"

namespace vsmmu::host::sim::test {
namespace {

// One SMMU, one root complex, one device; S2FWB and CANWBS as given.
std::unique_ptr<SimHost> host_with(bool s2fwb, bool canwbs) {
  const std::string json = fmt::format(R"({{
    "kind": "hardware", "name": "fwb{}-canwbs{}",
    "smmus": [{{"name": "smmu7", "s2fwb": {}}}],
    "root_complexes": [{{"name": "rc9", "smmu": "smmu7", "canwbs": {}}}],
    "devices": [{{"name": "dev3", "bdf": "00:03.0", "root_complex": "rc9"}}]
  }})", s2fwb, canwbs, s2fwb, canwbs);
  auto hw = parse_hardware_profile(json, "inline");
  EXPECT_TRUE(hw) << hw.error();
  return must(SimHost::create(must(embedded_kernel_profile("upstream")), std::move(*hw)));
}

Result<ObjectId> viommu_for(SimHost& host, const char* device) {
  VSMMU_TRY_ASSIGN(auto dev, host.bind_device(device));
  const auto ioas = must(host.ioas_alloc());
  VSMMU_TRY_ASSIGN(auto parent, host.hwpt_alloc(paging_request(dev, ioas, uapi::kHwptAllocNestParent)));
  return host.viommu_alloc(dev, parent, uapi::kViommuTypeArmSmmuv3);
}

TEST(SimCoherency, RefusedWithNeitherAcceptedWithEither) {
  for (bool fwb : {false, true}) {
    for (bool canwbs : {false, true}) {
      auto host = host_with(fwb, canwbs);
      ASSERT_TRUE(host);
      auto v = viommu_for(*host, "dev3");
      if (fwb || canwbs) {
        EXPECT_TRUE(v) << "S2FWB " << fwb << ", CANWBS " << canwbs << ": " << v.error();
        continue;
      }
      ASSERT_FALSE(v);
      EXPECT_EQ(v.error().err, EOPNOTSUPP);
      EXPECT_EQ(v.error().where, "IOMMU_VIOMMU_ALLOC");
      for (const char* word : {"dev3", "00:03.0", "rc9", "smmu7", "S2FWB", "CANWBS"})
        EXPECT_NE(v.error().message.find(word), std::string::npos) << "missing \"" << word << "\" in " << v.error();
    }
  }
}

// The default profile: nic0 has S2FWB (smmu0) without CANWBS, gpu0 CANWBS (pcie1) without S2FWB, nvme0 neither.
TEST(SimCoherency, DefaultProfileDevices) {
  auto host = make_host();
  ASSERT_TRUE(host);
  EXPECT_TRUE(viommu_for(*host, "nic0"));
  EXPECT_TRUE(viommu_for(*host, "gpu0"));
  auto nvme = viommu_for(*host, "nvme0");
  ASSERT_FALSE(nvme);
  EXPECT_EQ(nvme.error().err, EOPNOTSUPP);
  EXPECT_NE(nvme.error().message.find("pcie2"), std::string::npos) << nvme.error();
}

// With S2FWB the physical STE of a nest parent's devices forces write-back at stage 2 (STE.S2FWB); without it
// (gpu0, coherent through CANWBS) the bit stays clear.
TEST(SimCoherency, PhysicalSteSetsS2fwbWhereTheSmmuHasIt) {
  for (auto [device, fwb] : {std::pair{"nic0", true}, std::pair{"gpu0", false}}) {
    auto host = make_host();
    ASSERT_TRUE(host);
    const auto dev = must(host->bind_device(device));
    const auto ioas = must(host->ioas_alloc());
    const auto parent = must(host->hwpt_alloc(paging_request(dev, ioas, uapi::kHwptAllocNestParent)));
    const auto viommu = must(host->viommu_alloc(dev, parent, uapi::kViommuTypeArmSmmuv3));
    const auto bypass = must(host->hwpt_alloc(nested_request(dev, viommu, vste_config(smmu::StreamConfig::bypass))));
    ASSERT_TRUE(host->attach(dev, bypass));
    const auto ste = must(host->physical_ste(device));
    EXPECT_EQ(ste.get(smmu::Ste::Config), smmu::StreamConfig::s2_translate);
    EXPECT_EQ(ste.get(smmu::Ste::S2FWB), fwb) << device;
  }
}

// An MMU-700 gets the CMDQ_FORCE_SYNC workaround (erratum 2812531), which vIOMMU invalidation does not
// handle: VIOMMU_ALLOC is EOPNOTSUPP even on a revision that keeps nesting (r1p1).
TEST(SimCoherency, ForceSyncErratumRefusesVIommu) {
  auto hw = parse_hardware_profile(R"({
    "kind": "hardware", "name": "mmu700",
    "smmus": [{"name": "smmu0", "model": "mmu-700", "variant": 1, "revision": 1, "s2fwb": true}],
    "root_complexes": [{"name": "rc0", "smmu": "smmu0", "canwbs": true}],
    "devices": [{"name": "dev0", "bdf": "00:01.0", "root_complex": "rc0"}]
  })", "inline");
  ASSERT_TRUE(hw) << hw.error();
  auto host = must(SimHost::create(must(embedded_kernel_profile("upstream")), std::move(*hw)));
  auto v = viommu_for(*host, "dev0");
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().err, EOPNOTSUPP);
  EXPECT_NE(v.error().message.find("2812531"), std::string::npos) << v.error();
}

}  // namespace
}  // namespace vsmmu::host::sim::test
