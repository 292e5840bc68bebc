// The iommufd object rules on the simulated host, each test naming the kernel rule it checks
// (drivers/iommu/iommufd/{main,ioas,io_pagetable,hw_pagetable,viommu,device}.c; docs/kernel-rules.md;
// tools/testing/selftests/iommu/iommufd.c).
#include <fcntl.h>
#include <sys/mman.h>

#include "tests/sim/host/sim_fixture.hpp"

namespace vsmmu::host::sim::test {
namespace {

using smmu::StreamConfig;

class SimObjects : public ::testing::Test {
 protected:
  void SetUp() override {
    host = make_host();
    ASSERT_TRUE(host);
  }
  ObjectId paging(DeviceId dev, ObjectId ioas, std::uint32_t flags = 0) {
    return must(host->hwpt_alloc(paging_request(dev, ioas, flags)));
  }
  // nic0 bound, an IOAS with 2 MiB of anonymous memory at IOVA 0x4000'0000, a nest parent and a vIOMMU.
  struct Base {
    DeviceId dev = 0;
    ObjectId ioas = 0, parent = 0, viommu = 0;
  };
  Base base(const char* device = "nic0") {
    Base b;
    b.dev = must(host->bind_device(device));
    b.ioas = must(host->ioas_alloc());
    EXPECT_TRUE(host->ioas_map(b.ioas, buffer.data(), buffer.size(), 0x4000'0000, kMapRW));
    b.parent = paging(b.dev, b.ioas, uapi::kHwptAllocNestParent);
    b.viommu = must(host->viommu_alloc(b.dev, b.parent, uapi::kViommuTypeArmSmmuv3));
    return b;
  }
  int nested_err(DeviceId dev, ObjectId pt, std::span<const std::byte> data, std::uint32_t type = uapi::kHwptDataArmSmmuv3,
                 std::uint32_t flags = 0) {
    HwptAllocRequest r = nested_request(dev, pt, data);
    r.data_type = type;
    r.flags = flags;
    return err_of(host->hwpt_alloc(r));
  }

  std::unique_ptr<SimHost> host;
  MappedRegion memory = must(MappedRegion::anonymous(2 << 20, "test memory"));  // page-aligned
  std::span<std::byte> buffer = memory.bytes();
};

// xa_alloc(&ictx->objects, ..., XA_FLAGS_ALLOC1): ids are the lowest free index from 1, devices included.
TEST_F(SimObjects, IdsAreTheLowestFreeFromOneAndDevicesTakeIdsToo) {
  EXPECT_EQ(must(host->bind_device("nic0")), 1U);
  EXPECT_EQ(must(host->ioas_alloc()), 2U);
  EXPECT_EQ(must(host->ioas_alloc()), 3U);
  ASSERT_TRUE(host->destroy(2));
  EXPECT_EQ(must(host->ioas_alloc()), 2U);
  EXPECT_EQ(must(host->ioas_alloc()), 4U);
}

// iommufd_destroy: an unknown id is ENOENT; a bound device is held by its driver (EBUSY).
TEST_F(SimObjects, DestroyUnknownIsEnoentAndBoundDeviceIsEbusy) {
  EXPECT_EQ(err_of(host->destroy(99)), ENOENT);
  const auto dev = must(host->bind_device("nic0"));
  EXPECT_EQ(err_of(host->destroy(dev)), EBUSY);
  ASSERT_TRUE(host->unbind_device(dev));
  EXPECT_EQ(err_of(host->destroy(dev)), ENOENT);
}

// VFIO cdev bind: an unknown device is ENOENT; a cdev path or BDF names the same device; a second bind of a
// bound device is EINVAL (vfio_df_open: the cdev path allows one open); an fd is not a VFIO cdev here.
TEST_F(SimObjects, BindRules) {
  auto missing = host->bind_device("nope0");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().err, ENOENT);
  EXPECT_NE(missing.error().message.find("nic0"), std::string::npos) << "the message lists the devices there are";
  const auto dev = must(host->bind_device("0000:01:00.0"));
  EXPECT_EQ(err_of(host->bind_device("/dev/vfio/devices/nic0")), EINVAL);
  ASSERT_TRUE(host->unbind_device(dev));
  EXPECT_TRUE(host->bind_device("/dev/vfio/devices/nic0"));
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(err_of(host->bind_device_fd(fd)), ENOTTY);
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1) << "bind_device_fd takes ownership of the fd and closes it";
}

// io_pagetable.c: map flag rules, fixed IOVA overlap (EEXIST), whole-area unmap (ENOENT on a cut), unmap of
// nothing succeeds with 0 bytes, and unmap-all (iova 0, length U64_MAX) returns what was mapped.
TEST_F(SimObjects, IoasMapAndUnmapRules) {
  const auto ioas = must(host->ioas_alloc());
  void* p = buffer.data();
  EXPECT_EQ(err_of(host->ioas_map(ioas, p, 0x1000, 0x10000, kMapRW | (1U << 3))), EOPNOTSUPP);
  EXPECT_EQ(err_of(host->ioas_map(ioas, p, 0x1000, 0x10000, uapi::kIoasMapFixedIova)), EINVAL);
  EXPECT_EQ(err_of(host->ioas_map(ioas, p, 0x1000, ~0ULL, kMapRW)), EOVERFLOW);
  EXPECT_EQ(err_of(host->ioas_map(ioas, p, 0, 0x10000, kMapRW)), EINVAL);
  EXPECT_EQ(err_of(host->ioas_map(77, p, 0x1000, 0x10000, kMapRW)), ENOENT);
  ASSERT_TRUE(host->ioas_map(ioas, p, 0x2000, 0x10000, kMapRW));
  EXPECT_EQ(err_of(host->ioas_map(ioas, p, 0x1000, 0x11000, kMapRW)), EEXIST);
  ASSERT_TRUE(host->ioas_map(ioas, p, 0x1000, 0x20000, kMapRW));
  // Unmapping must cover whole areas.
  EXPECT_EQ(err_of(host->ioas_unmap(ioas, 0x10000, 0x1000)), ENOENT);
  EXPECT_EQ(err_of(host->ioas_unmap(ioas, 0x10000, 0)), EINVAL);
  EXPECT_EQ(must(host->ioas_unmap(ioas, 0x50000, 0x1000)), 0U);
  EXPECT_EQ(must(host->ioas_unmap(ioas, 0x10000, 0x2000)), 0x2000U);
  EXPECT_EQ(must(host->ioas_unmap(ioas, 0, ~0ULL)), 0x1000U);
  EXPECT_EQ(host->stats().pinned_bytes, 0U);
}

// iopt_alloc_iova: without FIXED_IOVA the kernel picks a free IOVA, never 0, aligned like the memory.
TEST_F(SimObjects, IoasChoosesAnAlignedNonZeroIova) {
  const auto ioas = must(host->ioas_alloc());
  auto* p = static_cast<std::byte*>(::mmap(nullptr, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  auto* aligned = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(p) + (2 << 20) - 1) & ~std::uintptr_t((2 << 20) - 1));
  const auto a = must(host->ioas_map(ioas, aligned, 2 << 20, 0, kMapRW & ~uapi::kIoasMapFixedIova));
  EXPECT_NE(a, 0U);
  EXPECT_EQ(a % (2 << 20), 0U);
  const auto b = must(host->ioas_map(ioas, aligned, 0x1000, 0, kMapRW & ~uapi::kIoasMapFixedIova));
  EXPECT_TRUE(b + 0x1000 <= a || b >= a + (2 << 20)) << "the second mapping must not overlap the first";
  ASSERT_TRUE(host->ioas_unmap(ioas, 0, ~0ULL));
  ::munmap(p, 4 << 20);
}

// IOMMU_IOAS_MAP_FILE takes a memfd (memfd_pin_folios): a bad fd is EBADF, a non-memfd EINVAL, a range past
// its end EINVAL, a WRITEABLE map of a read-only fd EPERM.
TEST_F(SimObjects, MapFileRules) {
  const auto ioas = must(host->ioas_alloc());
  GuestRam ram(1 << 20);
  EXPECT_EQ(err_of(host->ioas_map_file(ioas, -1, 0, 0x1000, 0x1000, kMapRW)), EBADF);
  const int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  EXPECT_EQ(err_of(host->ioas_map_file(ioas, devnull, 0, 0x1000, 0x1000, kMapRW)), EINVAL);
  ::close(devnull);
  EXPECT_EQ(err_of(host->ioas_map_file(ioas, ram.fd.get(), 0, 2 << 20, 0x1000, kMapRW)), EINVAL);
  const int ro = ::open(fmt::format("/proc/self/fd/{}", ram.fd.get()).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(ro, 0);
  EXPECT_EQ(err_of(host->ioas_map_file(ioas, ro, 0, 0x1000, 0x1000, kMapRW)), EPERM);
  EXPECT_TRUE(host->ioas_map_file(ioas, ro, 0, 0x1000, 0x1000, uapi::kIoasMapFixedIova | uapi::kIoasMapReadable));
  ::close(ro);
  EXPECT_TRUE(host->ioas_map_file(ioas, ram.fd.get(), 0x1000, 0x3000, 0x10000, kMapRW));
  EXPECT_EQ(host->stats().pinned_bytes, 0x4000U);
}

// IOMMU_IOAS_IOVA_RANGES: everything until a domain exists; then its aperture (the SMMU's 48-bit input) and,
// with a device attached, the SMMU's software MSI window are reserved (iopt_table_add_domain,
// iopt_table_enforce_dev_resv_regions); mapping into a reserved range is EINVAL, reserving over a mapping
// EADDRINUSE.
TEST_F(SimObjects, IovaRangesFollowDomainsAndAttachedDevices) {
  const auto dev = must(host->bind_device("nic0"));
  const auto ioas = must(host->ioas_alloc());
  auto r = must(host->ioas_iova_ranges(ioas));
  ASSERT_EQ(r.size(), 1U);
  EXPECT_EQ(r[0].start, 0U);
  EXPECT_EQ(r[0].last, ~0ULL);
  const auto hwpt = paging(dev, ioas);
  r = must(host->ioas_iova_ranges(ioas));
  ASSERT_EQ(r.size(), 1U);
  EXPECT_EQ(r[0].last, (1ULL << 48) - 1);
  ASSERT_TRUE(host->attach(dev, hwpt));
  r = must(host->ioas_iova_ranges(ioas));
  ASSERT_EQ(r.size(), 2U);
  EXPECT_EQ(r[0].last, 0x7ff'ffffU);
  EXPECT_EQ(r[1].start, 0x810'0000U);
  EXPECT_EQ(err_of(host->ioas_map(ioas, buffer.data(), 0x1000, 0x800'0000, kMapRW)), EINVAL);
  EXPECT_EQ(err_of(host->ioas_map(ioas, buffer.data(), 0x1000, 1ULL << 48, kMapRW)), EINVAL);
  ASSERT_TRUE(host->detach(dev));
  ASSERT_TRUE(host->ioas_map(ioas, buffer.data(), 0x1000, 0x800'0000, kMapRW));
  EXPECT_EQ(err_of(host->attach(dev, hwpt)), EADDRINUSE);
  // With a domain, IOVA and length are in IOMMU pages.
  EXPECT_EQ(err_of(host->ioas_map(ioas, buffer.data(), 0x800, 0x100'0000, kMapRW)), EINVAL);
}

// The device's reserved regions (the group's reserved_regions in sysfs on a kernel host): its SMMU's software
// MSI window, bound or attached, the same range IOAS_IOVA_RANGES cuts out once it is attached
// (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c arm_smmu_get_resv_regions, MSI_IOVA_BASE/LENGTH).
TEST_F(SimObjects, ReservedRegionsNameTheSoftwareMsiWindowTheIoasReserves) {
  const auto dev = must(host->bind_device("nic0"));
  const auto regions = must(host->reserved_regions(dev));
  ASSERT_EQ(regions.size(), 1U);
  EXPECT_EQ(regions[0].type, ReservedRegionType::msi);
  const auto window = msi_window(regions);
  ASSERT_TRUE(window);
  EXPECT_EQ(*window, kArmSmmuV3SwMsi);
  const auto ioas = must(host->ioas_alloc());
  ASSERT_TRUE(host->attach(dev, paging(dev, ioas)));
  const auto r = must(host->ioas_iova_ranges(ioas));
  ASSERT_EQ(r.size(), 2U);
  EXPECT_EQ(r[0].last + 1, window->start);
  EXPECT_EQ(r[1].start, window->last + 1);
  EXPECT_EQ(err_of(host->reserved_regions(dev + 100)), ENOENT);
}

// iova_alignment is 1 until a domain exists; a domain needs every mapping in whole IOMMU pages, so a
// mapping of memory that starts mid-page keeps a paging HWPT from being built (iopt_check_iova_alignment:
// EADDRINUSE).
TEST_F(SimObjects, UnalignedMappingBlocksTheFirstDomain) {
  const auto dev = must(host->bind_device("nic0"));
  const auto ioas = must(host->ioas_alloc());
  ASSERT_TRUE(host->ioas_map(ioas, buffer.data() + 0x10, 0x1000, 0x10010, kMapRW));
  EXPECT_EQ(err_of(host->hwpt_alloc(paging_request(dev, ioas, 0))), EADDRINUSE);
  ASSERT_TRUE(host->ioas_unmap(ioas, 0, ~0ULL));
  EXPECT_TRUE(host->hwpt_alloc(paging_request(dev, ioas, 0)));
}

// User memory is pinned when a domain is filled (iopt_fill_domain / pfn_reader_user_pin): memory gone from
// the process by then is EFAULT, at IOAS_MAP with a domain or at HWPT_ALLOC without one.
TEST_F(SimObjects, UserMemoryMustBeMappedWhenADomainPinsIt) {
  const auto dev = must(host->bind_device("nic0"));
  const auto ioas = must(host->ioas_alloc());
  auto* p = static_cast<std::byte*>(::mmap(nullptr, 0x2000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  ASSERT_TRUE(host->ioas_map(ioas, p, 0x2000, 0x10000, kMapRW));
  // PROT_NONE rather than munmap: the kernel cannot pin it either, and the range cannot be reused meanwhile.
  ASSERT_EQ(::mprotect(p, 0x2000, PROT_NONE), 0);
  EXPECT_EQ(err_of(host->hwpt_alloc(paging_request(dev, ioas, 0))), EFAULT);
  ASSERT_TRUE(host->ioas_unmap(ioas, 0, ~0ULL));
  ASSERT_TRUE(host->hwpt_alloc(paging_request(dev, ioas, 0)));
  EXPECT_EQ(err_of(host->ioas_map(ioas, p, 0x2000, 0x10000, kMapRW)), EFAULT);
  ::munmap(p, 0x2000);
}

// IOMMU_GET_HW_INFO: the ARM SMMUv3 payload is the physical SMMU's raw registers; data_len 0 reports the size,
// a larger buffer is zero-filled past 40 bytes, a smaller one gets what fits (iommufd selftest
// "info_hw_info" with buffer sizes 0, exact, larger, smaller).
TEST_F(SimObjects, HwInfoBufferSizes) {
  const auto dev = must(host->bind_device("nic0"));
  const auto& smmu0 = host->hardware_profile().smmus[0].config;
  std::vector<std::byte> buf(64, std::byte{0xcc});
  auto r = must(host->get_hw_info_ioctl(dev, std::span(buf).first(0)));
  EXPECT_EQ(r.data_len, 40U);
  EXPECT_EQ(r.type, uapi::kHwInfoTypeArmSmmuv3);
  EXPECT_EQ(buf[0], std::byte{0xcc}) << "nothing is written with data_len 0";
  r = must(host->get_hw_info_ioctl(dev, buf));
  EXPECT_EQ(r.data_len, 40U);
  std::uint32_t idr0 = 0;
  std::memcpy(&idr0, buf.data() + 8, 4);
  EXPECT_EQ(idr0, smmu0.idr0.value());
  for (std::size_t i = 40; i < 64; ++i) EXPECT_EQ(buf[i], std::byte{0}) << "byte " << i << " past the structure";
  std::vector<std::byte> small(12, std::byte{0xcc});
  r = must(host->get_hw_info_ioctl(dev, small));
  EXPECT_EQ(r.data_len, 40U);
  std::memcpy(&idr0, small.data() + 8, 4);
  EXPECT_EQ(idr0, smmu0.idr0.value()) << "what fits is copied";
  auto info = must(host->get_hw_info(dev));
  EXPECT_EQ(info.idr[3], smmu0.idr3.value());
  EXPECT_EQ(info.iidr, smmu0.iidr.value());
  EXPECT_EQ(err_of(host->get_hw_info(42)), ENOENT);
}

// out_capabilities: DIRTY_TRACKING where the SMMU has HTTU dirty state and coherent walks
// (arm_smmu_dbm_capable), PCI_ATS_NOT_SUPPORTED where ATS cannot be used, PASID width and flags from the
// device, capped by the SMMU's SSIDSIZE.
TEST_F(SimObjects, HwInfoCapabilities) {
  auto nic0 = must(host->get_hw_info(must(host->bind_device("nic0"))));
  EXPECT_TRUE(nic0.capabilities & uapi::kCapDirtyTracking);
  EXPECT_FALSE(nic0.capabilities & uapi::kCapPciAtsNotSupported);
  EXPECT_EQ(nic0.max_pasid_log2, 16U);
  auto nic1 = must(host->get_hw_info(must(host->bind_device("nic1"))));
  EXPECT_TRUE(nic1.capabilities & uapi::kCapPciAtsNotSupported);
  auto gpu0 = must(host->get_hw_info(must(host->bind_device("gpu0"))));
  EXPECT_FALSE(gpu0.capabilities & uapi::kCapDirtyTracking) << "smmu1 has no HTTU";
  EXPECT_EQ(gpu0.max_pasid_log2, 8U) << "the device's 20 bits capped by smmu1's 8-bit SSIDs";
  EXPECT_TRUE(gpu0.capabilities & uapi::kCapPciPasidExec);
}

// Paging HWPT flags on arm-smmu-v3 (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c, arm_smmu_domain_alloc_paging_flags:
// 0, NEST_PARENT, DIRTY_TRACKING, PASID, DIRTY|PASID; NEST_PARENT|DIRTY_TRACKING EOPNOTSUPP; DIRTY_TRACKING needs
// FEAT_HD and coherency; driver data refused).
TEST_F(SimObjects, PagingFlagsMatrixUpstream) {
  const auto nic0 = must(host->bind_device("nic0"));
  const auto gpu0 = must(host->bind_device("gpu0"));
  const auto ioas = must(host->ioas_alloc());
  auto alloc = [&](DeviceId d, std::uint32_t flags) { return err_of(host->hwpt_alloc(paging_request(d, ioas, flags))); };
  EXPECT_EQ(alloc(nic0, 0), 0);
  EXPECT_EQ(alloc(nic0, uapi::kHwptAllocNestParent), 0);
  EXPECT_EQ(alloc(nic0, uapi::kHwptAllocDirtyTracking), 0);
  EXPECT_EQ(alloc(nic0, uapi::kHwptAllocPasid), 0);
  EXPECT_EQ(alloc(nic0, uapi::kHwptAllocDirtyTracking | uapi::kHwptAllocPasid), 0);
  EXPECT_EQ(alloc(nic0, uapi::kHwptAllocNestParent | uapi::kHwptAllocDirtyTracking), EOPNOTSUPP);
  EXPECT_EQ(alloc(nic0, uapi::kHwptAllocNestParent | uapi::kHwptAllocPasid), EOPNOTSUPP);
  EXPECT_EQ(alloc(nic0, 1U << 7), EOPNOTSUPP);
  EXPECT_EQ(alloc(gpu0, uapi::kHwptAllocDirtyTracking), EOPNOTSUPP) << "smmu1 has no HTTU dirty state";
  EXPECT_EQ(alloc(99, 0), ENOENT);
  HwptAllocRequest with_data = paging_request(nic0, ioas, 0);
  const std::array<std::byte, 16> data{};
  with_data.data_type = uapi::kHwptDataArmSmmuv3;
  with_data.data = data;
  EXPECT_EQ(err_of(host->hwpt_alloc(with_data)), EOPNOTSUPP);
  with_data.data_type = uapi::kHwptDataNone;
  EXPECT_EQ(err_of(host->hwpt_alloc(with_data)), EINVAL) << "DATA_NONE with a data_len";
  // A fault queue named by FAULT_ID_VALID must exist (iommufd_get_fault).
  HwptAllocRequest with_fault = paging_request(nic0, ioas, 0);
  with_fault.fault_id = 1234;
  EXPECT_EQ(err_of(host->hwpt_alloc(with_fault)), ENOENT);
}

// The forward-looking profile accepts NEST_PARENT|DIRTY_TRACKING where the SMMU can track dirty state.
TEST(SimObjectsProfiles, NestedDirtyAcceptsNestParentWithDirtyTracking) {
  auto host = make_host("nested-dirty");
  ASSERT_TRUE(host);
  const auto ioas = must(host->ioas_alloc());
  const auto flags = uapi::kHwptAllocNestParent | uapi::kHwptAllocDirtyTracking;
  EXPECT_TRUE(host->hwpt_alloc(paging_request(must(host->bind_device("nic0")), ioas, flags)));
  auto gpu = host->hwpt_alloc(paging_request(must(host->bind_device("gpu0")), ioas, flags));
  ASSERT_FALSE(gpu);
  EXPECT_EQ(gpu.error().err, EOPNOTSUPP);
  EXPECT_NE(gpu.error().message.find("HTTU"), std::string::npos) << gpu.error();
}

// arm_smmu_device_iidr_probe: MMU-600 before r2 (erratum 1209401) loses nesting, so NEST_PARENT and
// VIOMMU_ALLOC are EOPNOTSUPP although IDR0 has both stages.
TEST(SimObjectsProfiles, Mmu600ErratumClearsNesting) {
  auto host = make_host("upstream", "mmu-600-r1p0");
  ASSERT_TRUE(host);
  const auto dev = must(host->bind_device("nic0"));
  const auto ioas = must(host->ioas_alloc());
  auto r = host->hwpt_alloc(paging_request(dev, ioas, uapi::kHwptAllocNestParent));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EOPNOTSUPP);
  EXPECT_NE(r.error().message.find("1209401"), std::string::npos) << r.error();
  EXPECT_TRUE(host->hwpt_alloc(paging_request(dev, ioas, 0))) << "plain paging still works";
}

// Nested HWPT allocation (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c, arm_vsmmu_alloc_domain_nested and
// arm_smmu_validate_vste; checked on 7.2.12, docs/kernel-rules.md) and the selftest's nested-alloc matrix.
TEST_F(SimObjects, NestedAllocMatrix) {
  auto b = base();
  const auto abort = vste_config(StreamConfig::abort);
  const auto bypass_bytes = vste_config(StreamConfig::bypass);
  EXPECT_EQ(nested_err(99, b.viommu, abort), ENOENT) << "bad dev";
  EXPECT_EQ(nested_err(b.dev, b.dev, abort), EINVAL) << "pt_id is a device";
  EXPECT_EQ(nested_err(b.dev, 99, abort), EINVAL) << "pt_id names nothing";
  EXPECT_EQ(nested_err(b.dev, b.viommu, abort, uapi::kHwptDataNone), EINVAL) << "DATA_NONE with a data_len";
  EXPECT_EQ(nested_err(b.dev, b.viommu, {}, uapi::kHwptDataArmSmmuv3), EINVAL) << "a type with data_len 0";
  EXPECT_EQ(nested_err(b.dev, b.viommu, {}, uapi::kHwptDataNone), EOPNOTSUPP) << "no data at all on a vIOMMU";
  EXPECT_EQ(nested_err(b.dev, b.viommu, abort, 1), EINVAL) << "VTD_S1 data on an ARM vIOMMU";
  EXPECT_EQ(nested_err(b.dev, b.viommu, abort, 0x99), EINVAL) << "unknown data type";
  std::array<std::byte, 24> long_data{};
  std::memcpy(long_data.data(), abort.data(), 16);
  for (std::size_t len : {8U, 15U, 24U})
    EXPECT_EQ(nested_err(b.dev, b.viommu, std::span(long_data).first(len)), EINVAL) << "data_len " << len;
  EXPECT_EQ(nested_err(b.dev, b.viommu, std::span<const std::byte>(static_cast<const std::byte*>(nullptr), 16)), EFAULT)
      << "NULL data_uptr";
  EXPECT_EQ(nested_err(b.dev, b.viommu, abort, uapi::kHwptDataArmSmmuv3, uapi::kHwptAllocNestParent), EOPNOTSUPP)
      << "allocation flags on a nested HWPT";
  EXPECT_EQ(nested_err(b.dev, b.ioas, abort), EOPNOTSUPP) << "pt_id the IOAS with ARM data";
  EXPECT_EQ(nested_err(b.dev, b.parent, abort), EOPNOTSUPP) << "pt_id a paging HWPT";
  const auto nested = must(host->hwpt_alloc(nested_request(b.dev, b.viommu, bypass_bytes)));
  EXPECT_EQ(nested_err(b.dev, nested, abort), EINVAL) << "nested on nested";
  const auto vdev = must(host->vdevice_alloc(b.viommu, b.dev, 1));
  EXPECT_EQ(nested_err(b.dev, vdev, abort), EINVAL) << "pt_id a vDEVICE";
  // The parent is busy while the vIOMMU uses it.
  EXPECT_EQ(err_of(host->destroy(b.parent)), EBUSY);
}

// arm_smmu_validate_vste: V=0 is abort whatever else is set; bits outside the allowed masks, Config S2 or
// nested or reserved, EATS 2 or 3 are EIO; fields inside the masks are not checked further.
TEST_F(SimObjects, VsteChecks) {
  auto b = base();
  auto with = [](auto edit) {
    smmu::Ste s;
    s.set(smmu::Ste::V, true).set(smmu::Ste::Config, StreamConfig::s1_translate);
    edit(s);
    return GuestStage1::words(s);
  };
  EXPECT_EQ(nested_err(b.dev, b.viommu, with([](smmu::Ste& s) { s.set(smmu::Ste::S2VMID, 1); })), 0)
      << "word 2 is not passed in: the payload is words 0 and 1";
  EXPECT_EQ(nested_err(b.dev, b.viommu, with([](smmu::Ste& s) { s.set(smmu::Ste::MEV, true); })), EIO);
  EXPECT_EQ(nested_err(b.dev, b.viommu, with([](smmu::Ste& s) { s.set(smmu::Ste::S2FWB, true); })), EIO);
  EXPECT_EQ(nested_err(b.dev, b.viommu, with([](smmu::Ste& s) { s.set(smmu::Ste::STRW, smmu::Strw::el2); })), EIO);
  EXPECT_EQ(nested_err(b.dev, b.viommu, with([](smmu::Ste& s) { s.dw[0] |= 1ULL << 56; })), EIO) << "word 0 bit 56";
  for (auto cfg : {StreamConfig::s2_translate, StreamConfig::nested, StreamConfig::reserved1, StreamConfig::reserved3})
    EXPECT_EQ(nested_err(b.dev, b.viommu, vste_config(cfg)), EIO) << "Config " << static_cast<int>(cfg);
  EXPECT_EQ(nested_err(b.dev, b.viommu, with([](smmu::Ste& s) { s.set(smmu::Ste::EATS, smmu::Eats::s1chk); })), EIO);
  EXPECT_EQ(nested_err(b.dev, b.viommu, with([](smmu::Ste& s) { s.set(smmu::Ste::EATS, smmu::Eats::reserved); })), EIO);
  EXPECT_EQ(nested_err(b.dev, b.viommu, with([](smmu::Ste& s) { s.set(smmu::Ste::EATS, smmu::Eats::translate); })), 0);
  // V=0: both words are zeroed, anything else set is ignored.
  smmu::Ste garbage;
  garbage.dw[0] = ~1ULL;
  garbage.dw[1] = ~0ULL;
  EXPECT_EQ(nested_err(b.dev, b.viommu, GuestStage1::words(garbage)), 0);
  EXPECT_EQ(nested_err(b.dev, b.viommu, with([](smmu::Ste& s) {
              s.set(smmu::Ste::S1DSS, smmu::S1Dss::reserved).set(smmu::Ste::S1Fmt, smmu::CdTableFormat::reserved)
                  .set(smmu::Ste::S1CDMax, 31).set(smmu::Ste::S1ContextPtr, 0);
            })), 0) << "fields inside the masks are the guest's business";
}

// The vIOMMU matrix (iommufd selftest "viommu"): hwpt 0 ENOENT, a non-parent EINVAL, type DEFAULT and
// unknown types EOPNOTSUPP, a device on another SMMU than the parent EINVAL.
TEST_F(SimObjects, ViommuAllocMatrix) {
  const auto dev = must(host->bind_device("nic0"));
  const auto gpu = must(host->bind_device("gpu0"));
  const auto ioas = must(host->ioas_alloc());
  const auto plain = paging(dev, ioas);
  const auto parent = paging(dev, ioas, uapi::kHwptAllocNestParent);
  EXPECT_EQ(err_of(host->viommu_alloc(dev, 0, uapi::kViommuTypeArmSmmuv3)), ENOENT);
  EXPECT_EQ(err_of(host->viommu_alloc(dev, ioas, uapi::kViommuTypeArmSmmuv3)), ENOENT) << "an IOAS is not a paging HWPT";
  EXPECT_EQ(err_of(host->viommu_alloc(dev, plain, uapi::kViommuTypeArmSmmuv3)), EINVAL);
  EXPECT_EQ(err_of(host->viommu_alloc(dev, parent, 0)), EOPNOTSUPP);
  EXPECT_EQ(err_of(host->viommu_alloc(dev, parent, 2)), EOPNOTSUPP) << "TEGRA241_CMDQV without the extension";
  EXPECT_EQ(err_of(host->viommu_alloc(77, parent, uapi::kViommuTypeArmSmmuv3)), ENOENT);
  EXPECT_EQ(err_of(host->viommu_alloc(gpu, parent, uapi::kViommuTypeArmSmmuv3)), EINVAL) << "parent on another SMMU";
  EXPECT_TRUE(host->viommu_alloc(dev, parent, uapi::kViommuTypeArmSmmuv3));
}

// drivers/iommu/iommufd/eventq.c iommufd_veventq_alloc: veventq_depth must be 1..VEVENTQ_MAX_DEPTH (1 << 19),
// else EINVAL, checked before the vIOMMU is looked up. A guest event queue of the architecture's largest size
// (IHI 0070 6.3.2: EVENTQS at most 19) fits.
TEST_F(SimObjects, VeventqDepthIsBoundedByTheKernel) {
  auto b = base();
  EXPECT_EQ(err_of(host->veventq_alloc(b.viommu, uapi::kVeventqTypeArmSmmuv3, (1U << 19) + 1)), EINVAL);
  EXPECT_EQ(err_of(host->veventq_alloc(999, uapi::kVeventqTypeArmSmmuv3, (1U << 19) + 1)), EINVAL)
      << "the depth is checked before the vIOMMU";
  EXPECT_EQ(err_of(host->veventq_alloc(b.viommu, uapi::kVeventqTypeArmSmmuv3, ~0U)), EINVAL);
  auto q = host->veventq_alloc(b.viommu, uapi::kVeventqTypeArmSmmuv3, 1U << 19);
  ASSERT_TRUE(q) << q.error();
  QueueObject owned(*host, q->id, q->fd);
}

// vDEVICE: one per device (EEXIST), one per vSID in a vIOMMU (EEXIST), same SMMU (EINVAL); vEVENTQ: one per
// type (EEXIST), depth 0 EINVAL, type DEFAULT EOPNOTSUPP; a vIOMMU with any of them is busy (EBUSY); a
// vEVENTQ whose fd is open is busy (EBUSY).
TEST_F(SimObjects, VdeviceAndVeventqRules) {
  auto b = base();
  const auto nic1 = must(host->bind_device("nic1"));
  const auto gpu = must(host->bind_device("gpu0"));
  const auto vd = must(host->vdevice_alloc(b.viommu, b.dev, 0x10));
  EXPECT_EQ(err_of(host->vdevice_alloc(b.viommu, b.dev, 0x11)), EEXIST);
  EXPECT_EQ(err_of(host->vdevice_alloc(b.viommu, nic1, 0x10)), EEXIST);
  EXPECT_EQ(err_of(host->vdevice_alloc(b.viommu, gpu, 0x12)), EINVAL);
  EXPECT_EQ(err_of(host->vdevice_alloc(999, nic1, 0x12)), ENOENT);
  EXPECT_TRUE(host->vdevice_alloc(b.viommu, nic1, 1ULL << 40)) << "a 64-bit virt_id is accepted (iommufd/viommu.c)";
  EXPECT_EQ(err_of(host->veventq_alloc(b.viommu, 0, 8)), EOPNOTSUPP);
  EXPECT_EQ(err_of(host->veventq_alloc(b.viommu, uapi::kVeventqTypeArmSmmuv3, 0)), EINVAL);
  EXPECT_EQ(err_of(host->veventq_alloc(999, uapi::kVeventqTypeArmSmmuv3, 8)), ENOENT);
  auto q = must(host->veventq_alloc(b.viommu, uapi::kVeventqTypeArmSmmuv3, 8));
  EXPECT_EQ(err_of(host->veventq_alloc(b.viommu, uapi::kVeventqTypeArmSmmuv3, 8)), EEXIST);
  EXPECT_EQ(err_of(host->destroy(b.viommu)), EBUSY);
  EXPECT_EQ(err_of(host->destroy(q.id)), EBUSY) << "its fd is open";
  ::close(q.fd);
  EXPECT_TRUE(host->destroy(q.id));
  EXPECT_EQ(err_of(host->destroy(b.viommu)), EBUSY) << "vDEVICEs remain";
  ASSERT_TRUE(host->destroy(vd));
  EXPECT_TRUE(host->vdevice_alloc(b.viommu, b.dev, 0x10)) << "the vSID and the device are free again";
}

// A fault queue is busy while its fd is open or a HWPT reports to it.
TEST_F(SimObjects, FaultQueueRules) {
  const auto dev = must(host->bind_device("nic0"));
  const auto ioas = must(host->ioas_alloc());
  auto fq = must(host->fault_queue_alloc());
  HwptAllocRequest r = paging_request(dev, ioas, 0);
  r.fault_id = fq.id;
  const auto hwpt = must(host->hwpt_alloc(r));
  EXPECT_EQ(err_of(host->destroy(fq.id)), EBUSY);
  ::close(fq.fd);
  EXPECT_EQ(err_of(host->destroy(fq.id)), EBUSY) << "HWPT " << hwpt << " reports to it";
  ASSERT_TRUE(host->destroy(hwpt));
  EXPECT_TRUE(host->destroy(fq.id));
}

// Attach (arm_smmu_attach_prepare_vmaster, iommufd_device_change_pt): a translating nested HWPT needs a
// vDEVICE (ENOENT); abort, bypass and V=0 attach without one (the GBPA case, checked on 7.2.12); a vIOMMU id
// is EINVAL, nothing ENOENT; the physical STE follows: abort, the parent's S2 only, nested.
TEST_F(SimObjects, NestedAttachRulesAndPhysicalStes) {
  auto b = base();
  GuestRam ram(16 << 20);
  GuestStage1 guest(ram);
  const auto s1 = must(host->hwpt_alloc(nested_request(b.dev, b.viommu, guest.vste())));
  const auto abort = must(host->hwpt_alloc(nested_request(b.dev, b.viommu, vste_config(StreamConfig::abort))));
  const auto bypass = must(host->hwpt_alloc(nested_request(b.dev, b.viommu, vste_config(StreamConfig::bypass))));
  const auto invalid = must(host->hwpt_alloc(nested_request(b.dev, b.viommu, vste_config(StreamConfig::bypass, false))));
  EXPECT_EQ(err_of(host->attach(b.dev, s1)), ENOENT);
  EXPECT_EQ(err_of(host->attach(b.dev, b.viommu)), EINVAL);
  EXPECT_EQ(err_of(host->attach(b.dev, 999)), ENOENT);
  ASSERT_TRUE(host->attach(b.dev, bypass));
  EXPECT_EQ(must(host->physical_ste("nic0")).get(smmu::Ste::Config), StreamConfig::s2_translate);
  ASSERT_TRUE(host->attach(b.dev, abort));  // an atomic replace
  EXPECT_EQ(must(host->physical_ste("nic0")).get(smmu::Ste::Config), StreamConfig::abort);
  ASSERT_TRUE(host->attach(b.dev, invalid));
  EXPECT_EQ(must(host->physical_ste("nic0")).get(smmu::Ste::Config), StreamConfig::abort) << "V=0 is abort";
  EXPECT_EQ(err_of(host->destroy(invalid)), EBUSY) << "attached";
  ASSERT_TRUE(host->vdevice_alloc(b.viommu, b.dev, 5));
  ASSERT_TRUE(host->attach(b.dev, s1));
  auto ste = must(host->physical_ste("nic0"));
  EXPECT_EQ(ste.get(smmu::Ste::Config), StreamConfig::nested);
  EXPECT_TRUE(ste.get(smmu::Ste::MEV));
  EXPECT_NE(ste.get(smmu::Ste::S2VMID), 0U);
  ASSERT_TRUE(host->detach(b.dev));
  EXPECT_EQ(must(host->physical_ste("nic0")).get(smmu::Ste::Config), StreamConfig::abort);
  EXPECT_TRUE(host->detach(b.dev)) << "detaching a detached device is fine";
}

// Before ~6.19 the kernel wanted a vDEVICE for every nested attach: a kernel profile can say so.
TEST(SimObjectsProfiles, OlderKernelNeedsVdeviceForBypass) {
  auto k = must(parse_kernel_profile(R"({"kind": "kernel", "name": "6.15", "nested_attach_without_vdevice": false})", "t"));
  auto host = must(SimHost::create(k, must(embedded_hardware_profile("default"))));
  const auto dev = must(host->bind_device("nic0"));
  const auto ioas = must(host->ioas_alloc());
  const auto parent = must(host->hwpt_alloc(paging_request(dev, ioas, uapi::kHwptAllocNestParent)));
  const auto viommu = must(host->viommu_alloc(dev, parent, uapi::kViommuTypeArmSmmuv3));
  const auto bypass = must(host->hwpt_alloc(nested_request(dev, viommu, vste_config(StreamConfig::bypass))));
  EXPECT_EQ(err_of(host->attach(dev, bypass)), ENOENT);
}

// Attaching to an IOAS uses an automatic paging HWPT: an object of its own, shared by devices of the same
// SMMU, busy while attached, gone with the last detach (iommufd_device_auto_get_domain).
TEST_F(SimObjects, AutoDomainLifetime) {
  const auto a = must(host->bind_device("nic0"));
  const auto b2 = must(host->bind_device("nic1"));
  const auto g = must(host->bind_device("gpu0"));
  const auto ioas = must(host->ioas_alloc());
  ASSERT_TRUE(host->ioas_map(ioas, buffer.data(), buffer.size(), 0x4000'0000, kMapRW));
  const auto before = host->stats().objects;
  ASSERT_TRUE(host->attach(a, ioas));
  EXPECT_EQ(host->stats().objects, before + 1);
  ASSERT_TRUE(host->attach(b2, ioas));
  EXPECT_EQ(host->stats().objects, before + 1) << "nic1 shares nic0's auto domain (same SMMU)";
  ASSERT_TRUE(host->attach(g, ioas));
  EXPECT_EQ(host->stats().objects, before + 2) << "gpu0 is behind another SMMU";
  EXPECT_EQ(err_of(host->destroy(ioas)), EBUSY);
  ASSERT_TRUE(host->detach(a));
  ASSERT_TRUE(host->detach(b2));
  ASSERT_TRUE(host->detach(g));
  EXPECT_EQ(host->stats().objects, before);
  EXPECT_EQ(host->stats().domains, 0U);
  EXPECT_TRUE(host->destroy(ioas));
}

// Attaching to a paging HWPT of another SMMU is EINVAL (arm_smmu_attach_dev); a paging HWPT is busy while a
// device is attached.
TEST_F(SimObjects, PagingAttachRules) {
  const auto nic = must(host->bind_device("nic0"));
  const auto gpu = must(host->bind_device("gpu0"));
  const auto ioas = must(host->ioas_alloc());
  const auto hwpt = paging(nic, ioas);
  EXPECT_EQ(err_of(host->attach(gpu, hwpt)), EINVAL);
  ASSERT_TRUE(host->attach(nic, hwpt));
  EXPECT_EQ(must(host->physical_ste("nic0")).get(smmu::Ste::Config), StreamConfig::s2_translate);
  EXPECT_EQ(err_of(host->destroy(hwpt)), EBUSY);
  EXPECT_EQ(err_of(host->destroy(ioas)), EBUSY);
  ASSERT_TRUE(host->unbind_device(nic)) << "unbinding detaches";
  EXPECT_EQ(must(host->physical_ste("nic0")).get(smmu::Ste::Config), StreamConfig::abort);
  EXPECT_TRUE(host->destroy(hwpt));
  EXPECT_TRUE(host->destroy(ioas));
}

// Closing the cdev destroys the device's vDEVICE (from 6.17): its id is gone, the vSID is free.
TEST_F(SimObjects, UnbindDestroysTheVdevice) {
  auto b = base();
  const auto vd = must(host->vdevice_alloc(b.viommu, b.dev, 0x33));
  ASSERT_TRUE(host->unbind_device(b.dev));
  EXPECT_EQ(err_of(host->destroy(vd)), ENOENT);
  const auto again = must(host->bind_device("nic0"));
  EXPECT_TRUE(host->vdevice_alloc(b.viommu, again, 0x33));
}

}  // namespace
}  // namespace vsmmu::host::sim::test
