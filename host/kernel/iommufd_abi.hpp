// The project's own definitions of the iommufd and VFIO-cdev uAPI (include/uapi/linux/iommufd.h and vfio.h),
// because bookworm's linux-libc-dev (6.1) has none of the nesting uAPI. Written from those headers
// (docs/kernel-rules.md, "Encoding"); every size and offset is pinned below, and
// tests/unit/host/kernel_header_compare_test.cpp compares all of them with a real 7.x kernel header.
//
// Struct and field names are the kernel's (so both can be grepped side by side); the kernel's reserved
// fields are `reserved`/`reserved2` here, since C++ reserves identifiers with a double underscore. Every
// struct starts with its `size`/`argsz` already set to its own size and every other field zero, which is
// what the kernel wants for fields the caller leaves alone.
// Constants that the layers above also need live in host/host.hpp (host::uapi); this header adds
// only what the kernel backend alone needs.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "host/fault_records.hpp"

namespace vsmmu::host::kabi {

// The ARM payloads (vSTE, commands, events) are passed as the kernel's __le64 words unchanged.
static_assert(std::endian::native == std::endian::little, "the ARM payloads are little-endian __le64 words");

// ---- ioctl number encoding (include/uapi/asm-generic/ioctl.h) ----
// nr [7:0], type [15:8], size [29:16], dir [31:30]; _IO() means dir NONE and size 0. arm64, x86, riscv and
// loongarch use this layout; powerpc, mips, sparc and alpha encode dir NONE as 1, so every number below would
// be wrong there.
#if defined(__powerpc__) || defined(__mips__) || defined(__sparc__) || defined(__alpha__)
#error "iommufd_abi.hpp encodes ioctl numbers with the asm-generic _IOC layout; this architecture differs"
#endif
inline constexpr unsigned kIocNrShift = 0;
inline constexpr unsigned kIocTypeShift = 8;
inline constexpr unsigned kIocSizeShift = 16;
inline constexpr unsigned kIocDirShift = 30;
inline constexpr unsigned kIocDirNone = 0;

constexpr unsigned long ioc(unsigned dir, unsigned type, unsigned nr, unsigned size) {
  return (static_cast<unsigned long>(dir) << kIocDirShift) | (static_cast<unsigned long>(size) << kIocSizeShift) |
         (static_cast<unsigned long>(type) << kIocTypeShift) | (static_cast<unsigned long>(nr) << kIocNrShift);
}
// iommufd and VFIO pass the struct size in the struct itself, so every one of their ioctls is a plain _IO.
constexpr unsigned long io(unsigned type, unsigned nr) { return ioc(kIocDirNone, type, nr, 0); }

inline constexpr unsigned kIommufdType = ';';
inline constexpr unsigned kIommufdCmdBase = 0x80;
inline constexpr unsigned kVfioType = ';';  // VFIO and iommufd share the type byte; VFIO numbers start at 100
inline constexpr unsigned kVfioBase = 100;

inline constexpr unsigned long kIommuDestroy = io(kIommufdType, kIommufdCmdBase + 0x00);
inline constexpr unsigned long kIommuIoasAlloc = io(kIommufdType, kIommufdCmdBase + 0x01);
inline constexpr unsigned long kIommuIoasIovaRanges = io(kIommufdType, kIommufdCmdBase + 0x04);
inline constexpr unsigned long kIommuIoasMap = io(kIommufdType, kIommufdCmdBase + 0x05);
inline constexpr unsigned long kIommuIoasUnmap = io(kIommufdType, kIommufdCmdBase + 0x06);
inline constexpr unsigned long kIommuOption = io(kIommufdType, kIommufdCmdBase + 0x07);
inline constexpr unsigned long kIommuHwptAlloc = io(kIommufdType, kIommufdCmdBase + 0x09);
inline constexpr unsigned long kIommuGetHwInfo = io(kIommufdType, kIommufdCmdBase + 0x0a);
inline constexpr unsigned long kIommuHwptSetDirtyTracking = io(kIommufdType, kIommufdCmdBase + 0x0b);
inline constexpr unsigned long kIommuHwptGetDirtyBitmap = io(kIommufdType, kIommufdCmdBase + 0x0c);
inline constexpr unsigned long kIommuHwptInvalidate = io(kIommufdType, kIommufdCmdBase + 0x0d);
inline constexpr unsigned long kIommuFaultQueueAlloc = io(kIommufdType, kIommufdCmdBase + 0x0e);
inline constexpr unsigned long kIommuIoasMapFile = io(kIommufdType, kIommufdCmdBase + 0x0f);
inline constexpr unsigned long kIommuViommuAlloc = io(kIommufdType, kIommufdCmdBase + 0x10);
inline constexpr unsigned long kIommuVdeviceAlloc = io(kIommufdType, kIommufdCmdBase + 0x11);
inline constexpr unsigned long kIommuVeventqAlloc = io(kIommufdType, kIommufdCmdBase + 0x13);
inline constexpr unsigned long kIommuHwQueueAlloc = io(kIommufdType, kIommufdCmdBase + 0x14);

inline constexpr unsigned long kVfioDeviceGetInfo = io(kVfioType, kVfioBase + 7);
inline constexpr unsigned long kVfioDeviceGetRegionInfo = io(kVfioType, kVfioBase + 8);
inline constexpr unsigned long kVfioDeviceBindIommufd = io(kVfioType, kVfioBase + 18);
inline constexpr unsigned long kVfioDeviceAttachIommufdPt = io(kVfioType, kVfioBase + 19);
inline constexpr unsigned long kVfioDeviceDetachIommufdPt = io(kVfioType, kVfioBase + 20);

// The literal ioctl numbers of include/uapi/linux/iommufd.h and vfio.h: the encoding above must reproduce them.
static_assert(kIommuDestroy == 0x3B80);
static_assert(kIommuIoasAlloc == 0x3B81);
static_assert(kIommuIoasIovaRanges == 0x3B84);
static_assert(kIommuIoasMap == 0x3B85);
static_assert(kIommuIoasUnmap == 0x3B86);
static_assert(kIommuOption == 0x3B87);
static_assert(kIommuHwptAlloc == 0x3B89);
static_assert(kIommuGetHwInfo == 0x3B8A);
static_assert(kIommuHwptSetDirtyTracking == 0x3B8B);
static_assert(kIommuHwptGetDirtyBitmap == 0x3B8C);
static_assert(kIommuHwptInvalidate == 0x3B8D);
static_assert(kIommuFaultQueueAlloc == 0x3B8E);
static_assert(kIommuIoasMapFile == 0x3B8F);
static_assert(kIommuViommuAlloc == 0x3B90);
static_assert(kIommuVdeviceAlloc == 0x3B91);
static_assert(kIommuVeventqAlloc == 0x3B93);
static_assert(kIommuHwQueueAlloc == 0x3B94);
static_assert(kVfioDeviceGetInfo == 0x3B6B);
static_assert(kVfioDeviceGetRegionInfo == 0x3B6C);
static_assert(kVfioDeviceBindIommufd == 0x3B76);
static_assert(kVfioDeviceAttachIommufdPt == 0x3B77);
static_assert(kVfioDeviceDetachIommufdPt == 0x3B78);

// Every ioctl the backend issues, with the Linux release that added it, so that ENOTTY (the kernel does not
// know the number) can tell the operator which kernel is needed.
struct IoctlDesc {
  std::string_view name;
  unsigned long number;
  std::string_view since;  // first Linux release with this ioctl
};
inline constexpr std::array kIoctls{
    IoctlDesc{"IOMMU_DESTROY", kIommuDestroy, "6.2"},
    IoctlDesc{"IOMMU_IOAS_ALLOC", kIommuIoasAlloc, "6.2"},
    IoctlDesc{"IOMMU_IOAS_IOVA_RANGES", kIommuIoasIovaRanges, "6.2"},
    IoctlDesc{"IOMMU_IOAS_MAP", kIommuIoasMap, "6.2"},
    IoctlDesc{"IOMMU_IOAS_UNMAP", kIommuIoasUnmap, "6.2"},
    IoctlDesc{"IOMMU_OPTION", kIommuOption, "6.2"},
    IoctlDesc{"IOMMU_HWPT_ALLOC", kIommuHwptAlloc, "6.6"},
    IoctlDesc{"IOMMU_GET_HW_INFO", kIommuGetHwInfo, "6.6"},
    IoctlDesc{"IOMMU_HWPT_SET_DIRTY_TRACKING", kIommuHwptSetDirtyTracking, "6.7"},
    IoctlDesc{"IOMMU_HWPT_GET_DIRTY_BITMAP", kIommuHwptGetDirtyBitmap, "6.7"},
    IoctlDesc{"IOMMU_HWPT_INVALIDATE", kIommuHwptInvalidate, "6.8"},
    IoctlDesc{"IOMMU_FAULT_QUEUE_ALLOC", kIommuFaultQueueAlloc, "6.11"},
    IoctlDesc{"IOMMU_IOAS_MAP_FILE", kIommuIoasMapFile, "6.13"},
    IoctlDesc{"IOMMU_VIOMMU_ALLOC", kIommuViommuAlloc, "6.13"},
    IoctlDesc{"IOMMU_VDEVICE_ALLOC", kIommuVdeviceAlloc, "6.13"},
    IoctlDesc{"IOMMU_VEVENTQ_ALLOC", kIommuVeventqAlloc, "6.15"},
    IoctlDesc{"IOMMU_HW_QUEUE_ALLOC", kIommuHwQueueAlloc, "6.17"},
    IoctlDesc{"VFIO_DEVICE_GET_INFO", kVfioDeviceGetInfo, "3.6"},
    IoctlDesc{"VFIO_DEVICE_GET_REGION_INFO", kVfioDeviceGetRegionInfo, "3.6"},
    IoctlDesc{"VFIO_DEVICE_BIND_IOMMUFD", kVfioDeviceBindIommufd, "6.6"},
    IoctlDesc{"VFIO_DEVICE_ATTACH_IOMMUFD_PT", kVfioDeviceAttachIommufdPt, "6.6"},
    IoctlDesc{"VFIO_DEVICE_DETACH_IOMMUFD_PT", kVfioDeviceDetachIommufdPt, "6.6"},
};

// ---- constants the kernel backend alone needs (the shared ones are host::uapi) ----
inline constexpr std::uint32_t kOptionRlimitMode = 0;    // global: 0 per-user, 1 per-process accounting
inline constexpr std::uint32_t kOptionHugePages = 1;     // per IOAS: 1 (default) combine contiguous pages
inline constexpr std::uint16_t kOptionOpSet = 0;
inline constexpr std::uint16_t kOptionOpGet = 1;
inline constexpr std::uint32_t kHwInfoFlagInputType = 1U << 0;   // 6.17+: in_data_type selects the type
inline constexpr std::uint32_t kHwptDirtyTrackingEnable = 1U << 0;
using uapi::kPageResponseInvalid;
using uapi::kPageResponseSuccess;
using uapi::kPgfaultFlagsLastPage;
using uapi::kPgfaultFlagsPasidValid;
inline constexpr std::uint32_t kVfioDeviceBindFlagToken = 1U << 0;
inline constexpr std::uint32_t kVfioDeviceAttachPasid = 1U << 0;
inline constexpr std::uint32_t kVfioDeviceDetachPasid = 1U << 0;
inline constexpr std::uint32_t kVfioDeviceFlagsReset = 1U << 0;
inline constexpr std::uint32_t kVfioDeviceFlagsPci = 1U << 1;
inline constexpr std::uint32_t kVfioRegionInfoFlagRead = 1U << 0;
inline constexpr std::uint32_t kVfioRegionInfoFlagWrite = 1U << 1;
inline constexpr std::uint32_t kVfioRegionInfoFlagMmap = 1U << 2;
inline constexpr std::uint32_t kVfioPciBar0RegionIndex = 0;
inline constexpr std::uint32_t kVfioPciConfigRegionIndex = 7;

// ---- iommufd structs ----
struct iommu_destroy {
  std::uint32_t size = sizeof(iommu_destroy);
  std::uint32_t id = 0;
};
static_assert(sizeof(iommu_destroy) == 8);
static_assert(offsetof(iommu_destroy, size) == 0);
static_assert(offsetof(iommu_destroy, id) == 4);

struct iommu_ioas_alloc {
  std::uint32_t size = sizeof(iommu_ioas_alloc);
  std::uint32_t flags = 0;
  std::uint32_t out_ioas_id = 0;
};
static_assert(sizeof(iommu_ioas_alloc) == 12);
static_assert(offsetof(iommu_ioas_alloc, size) == 0);
static_assert(offsetof(iommu_ioas_alloc, flags) == 4);
static_assert(offsetof(iommu_ioas_alloc, out_ioas_id) == 8);

struct iommu_iova_range {
  alignas(8) std::uint64_t start = 0;
  alignas(8) std::uint64_t last = 0;  // inclusive
};
static_assert(sizeof(iommu_iova_range) == 16);
static_assert(offsetof(iommu_iova_range, start) == 0);
static_assert(offsetof(iommu_iova_range, last) == 8);

struct iommu_ioas_iova_ranges {
  std::uint32_t size = sizeof(iommu_ioas_iova_ranges);
  std::uint32_t ioas_id = 0;
  std::uint32_t num_iovas = 0;  // in: capacity of allowed_iovas; out: ranges the IOAS has (EMSGSIZE if more)
  std::uint32_t reserved = 0;
  alignas(8) std::uint64_t allowed_iovas = 0;  // user pointer to iommu_iova_range[num_iovas]
  alignas(8) std::uint64_t out_iova_alignment = 0;
};
static_assert(sizeof(iommu_ioas_iova_ranges) == 32);
static_assert(offsetof(iommu_ioas_iova_ranges, size) == 0);
static_assert(offsetof(iommu_ioas_iova_ranges, ioas_id) == 4);
static_assert(offsetof(iommu_ioas_iova_ranges, num_iovas) == 8);
static_assert(offsetof(iommu_ioas_iova_ranges, reserved) == 12);
static_assert(offsetof(iommu_ioas_iova_ranges, allowed_iovas) == 16);
static_assert(offsetof(iommu_ioas_iova_ranges, out_iova_alignment) == 24);

struct iommu_ioas_map {
  std::uint32_t size = sizeof(iommu_ioas_map);
  std::uint32_t flags = 0;
  std::uint32_t ioas_id = 0;
  std::uint32_t reserved = 0;
  alignas(8) std::uint64_t user_va = 0;
  alignas(8) std::uint64_t length = 0;
  alignas(8) std::uint64_t iova = 0;  // in with FIXED_IOVA; out: where the kernel placed it
};
static_assert(sizeof(iommu_ioas_map) == 40);
static_assert(offsetof(iommu_ioas_map, size) == 0);
static_assert(offsetof(iommu_ioas_map, flags) == 4);
static_assert(offsetof(iommu_ioas_map, ioas_id) == 8);
static_assert(offsetof(iommu_ioas_map, reserved) == 12);
static_assert(offsetof(iommu_ioas_map, user_va) == 16);
static_assert(offsetof(iommu_ioas_map, length) == 24);
static_assert(offsetof(iommu_ioas_map, iova) == 32);

struct iommu_ioas_map_file {
  std::uint32_t size = sizeof(iommu_ioas_map_file);
  std::uint32_t flags = 0;
  std::uint32_t ioas_id = 0;
  std::int32_t fd = -1;
  alignas(8) std::uint64_t start = 0;  // offset in the file
  alignas(8) std::uint64_t length = 0;
  alignas(8) std::uint64_t iova = 0;
};
static_assert(sizeof(iommu_ioas_map_file) == 40);
static_assert(offsetof(iommu_ioas_map_file, size) == 0);
static_assert(offsetof(iommu_ioas_map_file, flags) == 4);
static_assert(offsetof(iommu_ioas_map_file, ioas_id) == 8);
static_assert(offsetof(iommu_ioas_map_file, fd) == 12);
static_assert(offsetof(iommu_ioas_map_file, start) == 16);
static_assert(offsetof(iommu_ioas_map_file, length) == 24);
static_assert(offsetof(iommu_ioas_map_file, iova) == 32);

struct iommu_ioas_unmap {
  std::uint32_t size = sizeof(iommu_ioas_unmap);
  std::uint32_t ioas_id = 0;
  alignas(8) std::uint64_t iova = 0;
  alignas(8) std::uint64_t length = 0;  // in: range; out: bytes unmapped
};
static_assert(sizeof(iommu_ioas_unmap) == 24);
static_assert(offsetof(iommu_ioas_unmap, size) == 0);
static_assert(offsetof(iommu_ioas_unmap, ioas_id) == 4);
static_assert(offsetof(iommu_ioas_unmap, iova) == 8);
static_assert(offsetof(iommu_ioas_unmap, length) == 16);

struct iommu_option {
  std::uint32_t size = sizeof(iommu_option);
  std::uint32_t option_id = 0;
  std::uint16_t op = 0;
  std::uint16_t reserved = 0;
  std::uint32_t object_id = 0;
  alignas(8) std::uint64_t val64 = 0;
};
static_assert(sizeof(iommu_option) == 24);
static_assert(offsetof(iommu_option, size) == 0);
static_assert(offsetof(iommu_option, option_id) == 4);
static_assert(offsetof(iommu_option, op) == 8);
static_assert(offsetof(iommu_option, reserved) == 10);
static_assert(offsetof(iommu_option, object_id) == 12);
static_assert(offsetof(iommu_option, val64) == 16);

struct iommu_hwpt_alloc {
  std::uint32_t size = sizeof(iommu_hwpt_alloc);
  std::uint32_t flags = 0;
  std::uint32_t dev_id = 0;
  std::uint32_t pt_id = 0;
  std::uint32_t out_hwpt_id = 0;
  std::uint32_t reserved = 0;
  std::uint32_t data_type = 0;
  std::uint32_t data_len = 0;
  alignas(8) std::uint64_t data_uptr = 0;
  std::uint32_t fault_id = 0;  // read only with IOMMU_HWPT_FAULT_ID_VALID
  std::uint32_t reserved2 = 0;
};
static_assert(sizeof(iommu_hwpt_alloc) == 48);
static_assert(offsetof(iommu_hwpt_alloc, size) == 0);
static_assert(offsetof(iommu_hwpt_alloc, flags) == 4);
static_assert(offsetof(iommu_hwpt_alloc, dev_id) == 8);
static_assert(offsetof(iommu_hwpt_alloc, pt_id) == 12);
static_assert(offsetof(iommu_hwpt_alloc, out_hwpt_id) == 16);
static_assert(offsetof(iommu_hwpt_alloc, reserved) == 20);
static_assert(offsetof(iommu_hwpt_alloc, data_type) == 24);
static_assert(offsetof(iommu_hwpt_alloc, data_len) == 28);
static_assert(offsetof(iommu_hwpt_alloc, data_uptr) == 32);
static_assert(offsetof(iommu_hwpt_alloc, fault_id) == 40);
static_assert(offsetof(iommu_hwpt_alloc, reserved2) == 44);

// The nested HWPT payload for IOMMU_HWPT_DATA_ARM_SMMUV3: the guest's STE words 0 and 1.
struct iommu_hwpt_arm_smmuv3 {
  std::array<std::uint64_t, 2> ste{};
};
static_assert(sizeof(iommu_hwpt_arm_smmuv3) == 16);
static_assert(offsetof(iommu_hwpt_arm_smmuv3, ste) == 0);

struct iommu_hw_info {
  std::uint32_t size = sizeof(iommu_hw_info);
  std::uint32_t flags = 0;
  std::uint32_t dev_id = 0;
  std::uint32_t data_len = 0;  // in: buffer size; out: the size of the kernel's payload
  alignas(8) std::uint64_t data_uptr = 0;
  std::uint32_t data_type = 0;  // the kernel's union { in_data_type (with INPUT_TYPE); out_data_type; }
  std::uint8_t out_max_pasid_log2 = 0;
  std::array<std::uint8_t, 3> reserved{};
  alignas(8) std::uint64_t out_capabilities = 0;
};
static_assert(sizeof(iommu_hw_info) == 40);
static_assert(offsetof(iommu_hw_info, size) == 0);
static_assert(offsetof(iommu_hw_info, flags) == 4);
static_assert(offsetof(iommu_hw_info, dev_id) == 8);
static_assert(offsetof(iommu_hw_info, data_len) == 12);
static_assert(offsetof(iommu_hw_info, data_uptr) == 16);
static_assert(offsetof(iommu_hw_info, data_type) == 24);
static_assert(offsetof(iommu_hw_info, out_max_pasid_log2) == 28);
static_assert(offsetof(iommu_hw_info, reserved) == 29);
static_assert(offsetof(iommu_hw_info, out_capabilities) == 32);

struct iommu_hw_info_arm_smmuv3 {
  std::uint32_t flags = 0;
  std::uint32_t reserved = 0;
  std::array<std::uint32_t, 6> idr{};  // raw SMMU_IDR0..5
  std::uint32_t iidr = 0;
  std::uint32_t aidr = 0;
};
static_assert(sizeof(iommu_hw_info_arm_smmuv3) == 40);
static_assert(offsetof(iommu_hw_info_arm_smmuv3, flags) == 0);
static_assert(offsetof(iommu_hw_info_arm_smmuv3, reserved) == 4);
static_assert(offsetof(iommu_hw_info_arm_smmuv3, idr) == 8);
static_assert(offsetof(iommu_hw_info_arm_smmuv3, iidr) == 32);
static_assert(offsetof(iommu_hw_info_arm_smmuv3, aidr) == 36);

struct iommu_hwpt_set_dirty_tracking {
  std::uint32_t size = sizeof(iommu_hwpt_set_dirty_tracking);
  std::uint32_t flags = 0;
  std::uint32_t hwpt_id = 0;
  std::uint32_t reserved = 0;
};
static_assert(sizeof(iommu_hwpt_set_dirty_tracking) == 16);
static_assert(offsetof(iommu_hwpt_set_dirty_tracking, size) == 0);
static_assert(offsetof(iommu_hwpt_set_dirty_tracking, flags) == 4);
static_assert(offsetof(iommu_hwpt_set_dirty_tracking, hwpt_id) == 8);
static_assert(offsetof(iommu_hwpt_set_dirty_tracking, reserved) == 12);

struct iommu_hwpt_get_dirty_bitmap {
  std::uint32_t size = sizeof(iommu_hwpt_get_dirty_bitmap);
  std::uint32_t hwpt_id = 0;
  std::uint32_t flags = 0;
  std::uint32_t reserved = 0;
  alignas(8) std::uint64_t iova = 0;
  alignas(8) std::uint64_t length = 0;
  alignas(8) std::uint64_t page_size = 0;
  alignas(8) std::uint64_t data = 0;  // user pointer to the bitmap
};
static_assert(sizeof(iommu_hwpt_get_dirty_bitmap) == 48);
static_assert(offsetof(iommu_hwpt_get_dirty_bitmap, size) == 0);
static_assert(offsetof(iommu_hwpt_get_dirty_bitmap, hwpt_id) == 4);
static_assert(offsetof(iommu_hwpt_get_dirty_bitmap, flags) == 8);
static_assert(offsetof(iommu_hwpt_get_dirty_bitmap, reserved) == 12);
static_assert(offsetof(iommu_hwpt_get_dirty_bitmap, iova) == 16);
static_assert(offsetof(iommu_hwpt_get_dirty_bitmap, length) == 24);
static_assert(offsetof(iommu_hwpt_get_dirty_bitmap, page_size) == 32);
static_assert(offsetof(iommu_hwpt_get_dirty_bitmap, data) == 40);

struct iommu_hwpt_invalidate {
  std::uint32_t size = sizeof(iommu_hwpt_invalidate);
  std::uint32_t hwpt_id = 0;
  alignas(8) std::uint64_t data_uptr = 0;
  std::uint32_t data_type = 0;
  std::uint32_t entry_len = 0;
  std::uint32_t entry_num = 0;  // in: entries; out: entries handled (also on failure)
  std::uint32_t reserved = 0;
};
static_assert(sizeof(iommu_hwpt_invalidate) == 32);
static_assert(offsetof(iommu_hwpt_invalidate, size) == 0);
static_assert(offsetof(iommu_hwpt_invalidate, hwpt_id) == 4);
static_assert(offsetof(iommu_hwpt_invalidate, data_uptr) == 8);
static_assert(offsetof(iommu_hwpt_invalidate, data_type) == 16);
static_assert(offsetof(iommu_hwpt_invalidate, entry_len) == 20);
static_assert(offsetof(iommu_hwpt_invalidate, entry_num) == 24);
static_assert(offsetof(iommu_hwpt_invalidate, reserved) == 28);

// One guest command for IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3.
struct iommu_viommu_arm_smmuv3_invalidate {
  std::array<std::uint64_t, 2> cmd{};
};
static_assert(sizeof(iommu_viommu_arm_smmuv3_invalidate) == 16);
static_assert(offsetof(iommu_viommu_arm_smmuv3_invalidate, cmd) == 0);

// The fault queue's records are shared with the sim host and the vSMMU: host/fault_records.hpp.
using uapi::iommu_hwpt_page_response;
using uapi::iommu_hwpt_pgfault;

struct iommu_fault_alloc {
  std::uint32_t size = sizeof(iommu_fault_alloc);
  std::uint32_t flags = 0;
  std::uint32_t out_fault_id = 0;
  std::uint32_t out_fault_fd = 0;
};
static_assert(sizeof(iommu_fault_alloc) == 16);
static_assert(offsetof(iommu_fault_alloc, size) == 0);
static_assert(offsetof(iommu_fault_alloc, flags) == 4);
static_assert(offsetof(iommu_fault_alloc, out_fault_id) == 8);
static_assert(offsetof(iommu_fault_alloc, out_fault_fd) == 12);

struct iommu_viommu_alloc {
  std::uint32_t size = sizeof(iommu_viommu_alloc);
  std::uint32_t flags = 0;
  std::uint32_t type = 0;
  std::uint32_t dev_id = 0;
  std::uint32_t hwpt_id = 0;  // the NEST_PARENT HWPT
  std::uint32_t out_viommu_id = 0;
  std::uint32_t data_len = 0;  // driver data (Tegra241 CMDQV); none for plain ARM SMMUv3
  std::uint32_t reserved = 0;
  alignas(8) std::uint64_t data_uptr = 0;
};
static_assert(sizeof(iommu_viommu_alloc) == 40);
static_assert(offsetof(iommu_viommu_alloc, size) == 0);
static_assert(offsetof(iommu_viommu_alloc, flags) == 4);
static_assert(offsetof(iommu_viommu_alloc, type) == 8);
static_assert(offsetof(iommu_viommu_alloc, dev_id) == 12);
static_assert(offsetof(iommu_viommu_alloc, hwpt_id) == 16);
static_assert(offsetof(iommu_viommu_alloc, out_viommu_id) == 20);
static_assert(offsetof(iommu_viommu_alloc, data_len) == 24);
static_assert(offsetof(iommu_viommu_alloc, reserved) == 28);
static_assert(offsetof(iommu_viommu_alloc, data_uptr) == 32);

struct iommu_vdevice_alloc {
  std::uint32_t size = sizeof(iommu_vdevice_alloc);
  std::uint32_t viommu_id = 0;
  std::uint32_t dev_id = 0;
  std::uint32_t out_vdevice_id = 0;
  alignas(8) std::uint64_t virt_id = 0;  // the vSID on ARM
};
static_assert(sizeof(iommu_vdevice_alloc) == 24);
static_assert(offsetof(iommu_vdevice_alloc, size) == 0);
static_assert(offsetof(iommu_vdevice_alloc, viommu_id) == 4);
static_assert(offsetof(iommu_vdevice_alloc, dev_id) == 8);
static_assert(offsetof(iommu_vdevice_alloc, out_vdevice_id) == 12);
static_assert(offsetof(iommu_vdevice_alloc, virt_id) == 16);

struct iommu_veventq_alloc {
  std::uint32_t size = sizeof(iommu_veventq_alloc);
  std::uint32_t flags = 0;
  std::uint32_t viommu_id = 0;
  std::uint32_t type = 0;
  std::uint32_t veventq_depth = 0;
  std::uint32_t out_veventq_id = 0;
  std::uint32_t out_veventq_fd = 0;
  std::uint32_t reserved = 0;
};
static_assert(sizeof(iommu_veventq_alloc) == 32);
static_assert(offsetof(iommu_veventq_alloc, size) == 0);
static_assert(offsetof(iommu_veventq_alloc, flags) == 4);
static_assert(offsetof(iommu_veventq_alloc, viommu_id) == 8);
static_assert(offsetof(iommu_veventq_alloc, type) == 12);
static_assert(offsetof(iommu_veventq_alloc, veventq_depth) == 16);
static_assert(offsetof(iommu_veventq_alloc, out_veventq_id) == 20);
static_assert(offsetof(iommu_veventq_alloc, out_veventq_fd) == 24);
static_assert(offsetof(iommu_veventq_alloc, reserved) == 28);

// Tegra241 CMDQV only; defined so the ABI comparison covers it, not used by the ARM SMMUv3 path.
struct iommu_hw_queue_alloc {
  std::uint32_t size = sizeof(iommu_hw_queue_alloc);
  std::uint32_t flags = 0;
  std::uint32_t viommu_id = 0;
  std::uint32_t type = 0;
  std::uint32_t index = 0;
  std::uint32_t out_hw_queue_id = 0;
  alignas(8) std::uint64_t nesting_parent_iova = 0;
  alignas(8) std::uint64_t length = 0;
};
static_assert(sizeof(iommu_hw_queue_alloc) == 40);
static_assert(offsetof(iommu_hw_queue_alloc, size) == 0);
static_assert(offsetof(iommu_hw_queue_alloc, flags) == 4);
static_assert(offsetof(iommu_hw_queue_alloc, viommu_id) == 8);
static_assert(offsetof(iommu_hw_queue_alloc, type) == 12);
static_assert(offsetof(iommu_hw_queue_alloc, index) == 16);
static_assert(offsetof(iommu_hw_queue_alloc, out_hw_queue_id) == 20);
static_assert(offsetof(iommu_hw_queue_alloc, nesting_parent_iova) == 24);
static_assert(offsetof(iommu_hw_queue_alloc, length) == 32);

// vEVENTQ records: this header, then (unless flags has LOST_EVENTS) the type's payload.
struct iommufd_vevent_header {
  std::uint32_t flags = 0;
  std::uint32_t sequence = 0;  // 0..INT_MAX, then 0 again
};
static_assert(sizeof(iommufd_vevent_header) == 8);
static_assert(offsetof(iommufd_vevent_header, flags) == 0);
static_assert(offsetof(iommufd_vevent_header, sequence) == 4);

// The payload of an IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 record: the 32-byte SMMU event, SID replaced by the vSID.
struct iommu_vevent_arm_smmuv3 {
  std::array<std::uint64_t, 4> evt{};
};
static_assert(sizeof(iommu_vevent_arm_smmuv3) == 32);
static_assert(offsetof(iommu_vevent_arm_smmuv3, evt) == 0);

// ---- VFIO device cdev structs ----
struct vfio_device_bind_iommufd {
  std::uint32_t argsz = sizeof(vfio_device_bind_iommufd);
  std::uint32_t flags = 0;
  std::int32_t iommufd = -1;
  std::uint32_t out_devid = 0;
  alignas(8) std::uint64_t token_uuid_ptr = 0;  // read only with VFIO_DEVICE_BIND_FLAG_TOKEN
};
static_assert(sizeof(vfio_device_bind_iommufd) == 24);
static_assert(offsetof(vfio_device_bind_iommufd, argsz) == 0);
static_assert(offsetof(vfio_device_bind_iommufd, flags) == 4);
static_assert(offsetof(vfio_device_bind_iommufd, iommufd) == 8);
static_assert(offsetof(vfio_device_bind_iommufd, out_devid) == 12);
static_assert(offsetof(vfio_device_bind_iommufd, token_uuid_ptr) == 16);

struct vfio_device_attach_iommufd_pt {
  std::uint32_t argsz = sizeof(vfio_device_attach_iommufd_pt);
  std::uint32_t flags = 0;
  std::uint32_t pt_id = 0;  // in: IOAS or HWPT; out: the HWPT actually attached
  std::uint32_t pasid = 0;  // read only with VFIO_DEVICE_ATTACH_PASID
};
static_assert(sizeof(vfio_device_attach_iommufd_pt) == 16);
static_assert(offsetof(vfio_device_attach_iommufd_pt, argsz) == 0);
static_assert(offsetof(vfio_device_attach_iommufd_pt, flags) == 4);
static_assert(offsetof(vfio_device_attach_iommufd_pt, pt_id) == 8);
static_assert(offsetof(vfio_device_attach_iommufd_pt, pasid) == 12);

struct vfio_device_detach_iommufd_pt {
  std::uint32_t argsz = sizeof(vfio_device_detach_iommufd_pt);
  std::uint32_t flags = 0;
  std::uint32_t pasid = 0;
};
static_assert(sizeof(vfio_device_detach_iommufd_pt) == 12);
static_assert(offsetof(vfio_device_detach_iommufd_pt, argsz) == 0);
static_assert(offsetof(vfio_device_detach_iommufd_pt, flags) == 4);
static_assert(offsetof(vfio_device_detach_iommufd_pt, pasid) == 8);

struct vfio_device_info {
  std::uint32_t argsz = sizeof(vfio_device_info);
  std::uint32_t flags = 0;
  std::uint32_t num_regions = 0;
  std::uint32_t num_irqs = 0;
  std::uint32_t cap_offset = 0;
  std::uint32_t pad = 0;
};
static_assert(sizeof(vfio_device_info) == 24);
static_assert(offsetof(vfio_device_info, argsz) == 0);
static_assert(offsetof(vfio_device_info, flags) == 4);
static_assert(offsetof(vfio_device_info, num_regions) == 8);
static_assert(offsetof(vfio_device_info, num_irqs) == 12);
static_assert(offsetof(vfio_device_info, cap_offset) == 16);
static_assert(offsetof(vfio_device_info, pad) == 20);

struct vfio_region_info {
  std::uint32_t argsz = sizeof(vfio_region_info);
  std::uint32_t flags = 0;
  std::uint32_t index = 0;
  std::uint32_t cap_offset = 0;
  alignas(8) std::uint64_t size = 0;
  alignas(8) std::uint64_t offset = 0;  // of the region within the device fd (pread/pwrite/mmap)
};
static_assert(sizeof(vfio_region_info) == 32);
static_assert(offsetof(vfio_region_info, argsz) == 0);
static_assert(offsetof(vfio_region_info, flags) == 4);
static_assert(offsetof(vfio_region_info, index) == 8);
static_assert(offsetof(vfio_region_info, cap_offset) == 12);
static_assert(offsetof(vfio_region_info, size) == 16);
static_assert(offsetof(vfio_region_info, offset) == 24);

}  // namespace vsmmu::host::kabi
