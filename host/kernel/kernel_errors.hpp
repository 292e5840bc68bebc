// What an iommufd or VFIO ioctl's errno means on arm-smmu-v3, for the kernel host's error messages
// (host/kernel/kernel_host.cpp): the call's own meaning where the kernel gives the errno one (drivers/iommu/
// iommufd/*.c, drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c), else the generic one. Exposed so that
// tests can check the ones this machine cannot provoke (EACCES as root, ...).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "host/host.hpp"

namespace vsmmu::host {

// The ioctls' names, as Error::where carries them.
namespace ioctl_names {
inline constexpr std::string_view kDestroy = "IOMMU_DESTROY";
inline constexpr std::string_view kIoasAlloc = "IOMMU_IOAS_ALLOC";
inline constexpr std::string_view kIovaRanges = "IOMMU_IOAS_IOVA_RANGES";
inline constexpr std::string_view kIoasMap = "IOMMU_IOAS_MAP";
inline constexpr std::string_view kIoasUnmap = "IOMMU_IOAS_UNMAP";
inline constexpr std::string_view kOption = "IOMMU_OPTION";
inline constexpr std::string_view kHwptAlloc = "IOMMU_HWPT_ALLOC";
inline constexpr std::string_view kGetHwInfo = "IOMMU_GET_HW_INFO";
inline constexpr std::string_view kSetDirty = "IOMMU_HWPT_SET_DIRTY_TRACKING";
inline constexpr std::string_view kGetDirty = "IOMMU_HWPT_GET_DIRTY_BITMAP";
inline constexpr std::string_view kInvalidate = "IOMMU_HWPT_INVALIDATE";
inline constexpr std::string_view kFaultAlloc = "IOMMU_FAULT_QUEUE_ALLOC";
inline constexpr std::string_view kMapFile = "IOMMU_IOAS_MAP_FILE";
inline constexpr std::string_view kViommuAlloc = "IOMMU_VIOMMU_ALLOC";
inline constexpr std::string_view kVdeviceAlloc = "IOMMU_VDEVICE_ALLOC";
inline constexpr std::string_view kVeventqAlloc = "IOMMU_VEVENTQ_ALLOC";
inline constexpr std::string_view kBind = "VFIO_DEVICE_BIND_IOMMUFD";
inline constexpr std::string_view kAttach = "VFIO_DEVICE_ATTACH_IOMMUFD_PT";
inline constexpr std::string_view kDetach = "VFIO_DEVICE_DETACH_IOMMUFD_PT";
inline constexpr std::string_view kDeviceInfo = "VFIO_DEVICE_GET_INFO";
inline constexpr std::string_view kRegionInfo = "VFIO_DEVICE_GET_REGION_INFO";
}  // namespace ioctl_names

namespace kernel_errors {
std::string open_iommufd(const std::string& path, int err);
std::string open_cdev(const std::string& path, int err);
// "<what>: <meaning>": the meaning of err for the ioctl `where` (whose flags and data_type change it, e.g. for
// IOMMU_HWPT_ALLOC), after what the call was about (`what`, with object ids); release is named for ENOTTY.
std::string ioctl_failed(std::string_view where, int err, std::string_view what, std::string_view release,
                         std::uint32_t flags = 0, std::uint32_t data_type = 0);
// Why IOMMU_VIOMMU_ALLOC(ARM_SMMUV3) failed EOPNOTSUPP, read from the SMMU's IDRs (GET_HW_INFO of the same
// device; nullptr when that failed too): no nesting (IDR0.S1P/S2P), or no S2FWB (IDR3.FWB) and so the root
// complex needs CANWBS in the IORT, or neither (then the kernel's configuration or an SMMU erratum).
std::string viommu_unsupported(const HwInfo* info);
}  // namespace kernel_errors

}  // namespace vsmmu::host
