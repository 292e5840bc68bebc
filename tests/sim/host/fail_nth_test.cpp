// Fault injection along a full setup, as the iommufd selftests' fail_nth does: the n-th host call fails
// (ENOMEM, before any side effect) for every n, the RAII handles (host/handles.hpp) unwind what the
// earlier calls made, and afterwards the simulated kernel holds no object, no mapping, no stage-2 table and
// no translating STE, and the device's DMA is blocked.
#include "base/try.hpp"
#include "tests/sim/host/sim_fixture.hpp"

namespace vsmmu::host::sim::test {
namespace {

constexpr std::uint64_t kVa = 0x9000'0000;

// The setup a VMM does, stopping at the first failure; the handles in `s` own what was made.
Result<void> try_setup(SimHost& host, GuestRam& ram, std::span<const std::byte> vste, NestedSetup& s) {
  VSMMU_TRY_ASSIGN(auto dev, host.bind_device("nic0"));
  s.dev = BoundDevice(host, dev);
  VSMMU_TRY_ASSIGN(auto ioas, host.ioas_alloc());
  s.ioas = HostObject(host, ioas);
  if (auto r = host.ioas_map_file(ioas, ram.fd.get(), 0, ram.size, GuestRam::kBase, kMapRW); !r)
    return std::unexpected(r.error());
  VSMMU_TRY_ASSIGN(auto parent, host.hwpt_alloc(paging_request(dev, ioas, uapi::kHwptAllocNestParent)));
  s.parent = HostObject(host, parent);
  VSMMU_TRY_ASSIGN(auto viommu, host.viommu_alloc(dev, parent, uapi::kViommuTypeArmSmmuv3));
  s.viommu = HostObject(host, viommu);
  VSMMU_TRY_ASSIGN(auto vdev, host.vdevice_alloc(viommu, dev, NestedSetup::kVsid));
  s.vdevice = HostObject(host, vdev);
  VSMMU_TRY_ASSIGN(auto q, host.veventq_alloc(viommu, uapi::kVeventqTypeArmSmmuv3, 8));
  s.veventq = QueueObject(host, q.id, q.fd);
  VSMMU_TRY_ASSIGN(auto nested, host.hwpt_alloc(nested_request(dev, viommu, vste)));
  s.nested = HostObject(host, nested);
  VSMMU_TRY(host.attach(dev, nested));
  s.attachment = Attachment(host, dev);
  return {};
}

TEST(SimFailNth, EveryCallAlongAFullSetupFailsCleanly) {
  auto host = make_host();
  ASSERT_TRUE(host);
  GuestRam ram(16 << 20);
  GuestStage1 guest(ram);
  guest.map(kVa, GuestRam::kBase, 0x1000);
  const auto vste = guest.vste();
  const auto baseline = host->stats();
  ASSERT_EQ(baseline.objects, 0U);

  const std::vector<std::string> calls{"VFIO_DEVICE_BIND_IOMMUFD", "IOMMU_IOAS_ALLOC", "IOMMU_IOAS_MAP_FILE",
                                       "IOMMU_HWPT_ALLOC", "IOMMU_VIOMMU_ALLOC", "IOMMU_VDEVICE_ALLOC",
                                       "IOMMU_VEVENTQ_ALLOC", "IOMMU_HWPT_ALLOC", "VFIO_DEVICE_ATTACH_IOMMUFD_PT"};
  std::vector<std::string> failed;
  for (unsigned n = 1; n <= calls.size() + 1; ++n) {
    host->set_fail_nth(n);
    Result<void> r;
    {
      NestedSetup s;
      r = try_setup(*host, ram, vste, s);
      if (r) {
        // Past the last call nothing was injected, and the setup works end to end.
        EXPECT_FALSE(host->fail_nth_fired());
        const std::array<std::byte, 8> data{std::byte{0x77}};
        EXPECT_TRUE(must(host->dma_write("nic0.dma", kVa, data)).ok());
        EXPECT_EQ(*ram.at(GuestRam::kBase), std::byte{0x77});
        *ram.at(GuestRam::kBase) = std::byte{0};
      } else {
        EXPECT_TRUE(host->fail_nth_fired()) << "n = " << n << ": " << r.error();
        EXPECT_EQ(r.error().err, ENOMEM) << r.error();
        EXPECT_NE(r.error().message.find("injected"), std::string::npos);
        failed.push_back(r.error().where);
      }
    }  // the handles destroy, detach and unbind here, children first
    const auto st = host->stats();
    EXPECT_EQ(st.held(), "") << "n = " << n;
    EXPECT_EQ(st.host_regions, baseline.host_regions) << "n = " << n << ": memory left placed";
    // Nothing stays mapped: the device is blocked again (abort STE: no data moves, no event).
    const std::array<std::byte, 8> data{std::byte{0x55}};
    EXPECT_FALSE(must(host->dma_write("nic0.dma", kVa, data)).ok());
    EXPECT_EQ(*ram.at(GuestRam::kBase), std::byte{0});
    if (r) break;
  }
  EXPECT_EQ(failed, calls) << "each call of the setup was made to fail once, in order";
}

// Teardown calls cannot fail by injection (they do not allocate in the kernel either): a pending injection
// passes over them and hits the next allocating call.
TEST(SimFailNth, TeardownIsNeverInjected) {
  auto host = make_host();
  ASSERT_TRUE(host);
  const auto ioas = must(host->ioas_alloc());
  host->set_fail_nth(1);
  EXPECT_TRUE(host->ioas_unmap(ioas, 0, ~0ULL));
  EXPECT_TRUE(host->destroy(ioas));
  EXPECT_FALSE(host->fail_nth_fired());
  auto r = host->ioas_alloc();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, ENOMEM);
  EXPECT_EQ(host->stats().objects, 0U);
  EXPECT_TRUE(host->ioas_alloc()) << "one failure only";
}

}  // namespace
}  // namespace vsmmu::host::sim::test
