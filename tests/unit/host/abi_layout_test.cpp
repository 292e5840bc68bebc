// The project's iommufd / VFIO ABI definitions (host/kernel/iommufd_abi.hpp) against what can be checked
// without a 7.x kernel header: the ioctl encoding against the C library's own _IO/_IOR/_IOW macros
// (asm-generic/ioctl.h of this machine's linux-libc-dev), the ioctl table, and the request structs' defaults.
// Every size and offset is also pinned by static_asserts in the header itself, and compared with a real
// Linux 7.x header by kernel_header_compare_test.
#include <gtest/gtest.h>
#include <sys/ioctl.h>

#include <array>
#include <cstring>
#include <set>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "host/kernel/iommufd_abi.hpp"

namespace vsmmu::host::kabi {
namespace {

// The literal numbers of include/uapi/linux/iommufd.h and vfio.h, as the C library encodes them.
static_assert(kVfioDeviceBindIommufd == _IO(';', 100 + 18));
static_assert(kIommuDestroy == _IO(';', 0x80));
static_assert(kIommuHwQueueAlloc == _IO(';', 0x94));

TEST(IommufdAbi, EveryIoctlNumberIsTheCLibrarysIoEncoding) {
  // iommufd and VFIO ioctls are _IO(';', nr): no direction and no size bits (include/uapi/linux/iommufd.h).
  for (const auto& d : kIoctls) {
    const unsigned nr = static_cast<unsigned>(d.number & 0xff);
    EXPECT_EQ(d.number, static_cast<unsigned long>(_IO(';', nr))) << d.name;
    EXPECT_EQ(d.number >> 8, static_cast<unsigned long>(';')) << d.name << ": type byte";
  }
}

using Bytes24 = std::array<char, 24>;
using BytesMax = std::array<char, 0x3fff>;  // the largest size the 14-bit field holds

TEST(IommufdAbi, TheEncodingHelperMatchesTheCLibraryInEveryDirection) {
  // asm-generic/ioctl.h: _IOC_READ 2, _IOC_WRITE 1; size in bits 16..29.
  EXPECT_EQ(ioc(2, 'x', 7, 24), static_cast<unsigned long>(_IOR('x', 7, Bytes24)));
  EXPECT_EQ(ioc(1, 'x', 7, 8), static_cast<unsigned long>(_IOW('x', 7, std::uint64_t)));
  EXPECT_EQ(ioc(3, ';', 0xff, 0x3fff), static_cast<unsigned long>(_IOWR(';', 0xff, BytesMax)));
}

TEST(IommufdAbi, IoctlTableHasUniqueNamesAndNumbersInTheirRanges) {
  std::set<std::string_view> names;
  std::set<unsigned long> numbers;
  for (const auto& d : kIoctls) {
    EXPECT_TRUE(names.insert(d.name).second) << d.name;
    EXPECT_TRUE(numbers.insert(d.number).second) << d.name;
    const unsigned long nr = d.number & 0xff;
    if (d.name.starts_with("IOMMU_")) {
      // IOMMUFD_CMD_BASE 0x80 .. IOMMUFD_CMD_HW_QUEUE_ALLOC 0x94
      EXPECT_GE(nr, kIommufdCmdBase) << d.name;
      EXPECT_LE(nr, 0x94U) << d.name;
    } else {
      EXPECT_TRUE(d.name.starts_with("VFIO_DEVICE_")) << d.name;
      EXPECT_GE(nr, kVfioBase) << d.name;  // VFIO_BASE 100; stays below iommufd's 0x80 = 128
      EXPECT_LT(nr, kIommufdCmdBase) << d.name;
    }
    EXPECT_FALSE(d.since.empty()) << d.name;
  }
  EXPECT_EQ(names.size(), 22U);  // the 17 iommufd ioctls of the reference table + 5 VFIO device ioctls
}

// The kernel rejects non-zero bytes it does not understand (E2BIG) and reserved fields that are not zero
// (EOPNOTSUPP), so a default request must be its own size followed by zeros, except fd fields, which start
// invalid (-1) rather than naming stdin.
template <class T>
void expect_size_then_zeros(std::vector<std::pair<std::size_t, std::size_t>> minus_one = {}) {
  const T t{};
  std::array<std::byte, sizeof(T)> b;
  std::memcpy(b.data(), &t, sizeof(T));
  std::uint32_t size = 0;
  std::memcpy(&size, b.data(), 4);
  EXPECT_EQ(size, sizeof(T));
  for (std::size_t i = 4; i < sizeof(T); ++i) {
    bool is_fd = false;
    for (auto [off, len] : minus_one) is_fd |= i >= off && i < off + len;
    EXPECT_EQ(std::to_integer<unsigned>(b[i]), is_fd ? 0xffU : 0U)
        << "byte " << i << " of a " << sizeof(T) << "-byte request";
  }
}

TEST(IommufdAbi, DefaultRequestsCarryTheirSizeAndZeroes) {
  expect_size_then_zeros<iommu_destroy>();
  expect_size_then_zeros<iommu_ioas_alloc>();
  expect_size_then_zeros<iommu_ioas_iova_ranges>();
  expect_size_then_zeros<iommu_ioas_map>();
  expect_size_then_zeros<iommu_ioas_map_file>({{offsetof(iommu_ioas_map_file, fd), 4}});
  expect_size_then_zeros<iommu_ioas_unmap>();
  expect_size_then_zeros<iommu_option>();
  expect_size_then_zeros<iommu_hwpt_alloc>();
  expect_size_then_zeros<iommu_hw_info>();
  expect_size_then_zeros<iommu_hwpt_set_dirty_tracking>();
  expect_size_then_zeros<iommu_hwpt_get_dirty_bitmap>();
  expect_size_then_zeros<iommu_hwpt_invalidate>();
  expect_size_then_zeros<iommu_fault_alloc>();
  expect_size_then_zeros<iommu_viommu_alloc>();
  expect_size_then_zeros<iommu_vdevice_alloc>();
  expect_size_then_zeros<iommu_veventq_alloc>();
  expect_size_then_zeros<iommu_hw_queue_alloc>();
  expect_size_then_zeros<vfio_device_bind_iommufd>({{offsetof(vfio_device_bind_iommufd, iommufd), 4}});
  expect_size_then_zeros<vfio_device_attach_iommufd_pt>();
  expect_size_then_zeros<vfio_device_detach_iommufd_pt>();
  expect_size_then_zeros<vfio_device_info>();
  expect_size_then_zeros<vfio_region_info>();
}

TEST(IommufdAbi, ArmPayloadsAreTheArchitecturesWords) {
  // IHI 0070: an STE is 64 bytes of which the vSTE passes words 0-1, a command 16 bytes, an event 32 bytes.
  EXPECT_EQ(sizeof(iommu_hwpt_arm_smmuv3), 16U);
  EXPECT_EQ(sizeof(iommu_viommu_arm_smmuv3_invalidate), 16U);
  EXPECT_EQ(sizeof(iommufd_vevent_header) + sizeof(iommu_vevent_arm_smmuv3), 40U);
  // The words are passed as-is, little-endian, in order: word 0 first.
  iommu_hwpt_arm_smmuv3 ste{};
  ste.ste[0] = 0x0102030405060708ULL;
  std::array<std::uint8_t, 16> raw{};
  std::memcpy(raw.data(), &ste, sizeof ste);
  EXPECT_EQ(raw[0], 0x08);
  EXPECT_EQ(raw[7], 0x01);
  EXPECT_EQ(raw[8], 0x00);
}

}  // namespace
}  // namespace vsmmu::host::kabi
