// Not part of the build: kernel_header_compare_test compiles this file against a real Linux 7.x uAPI header tree
// (Debian's linux-libc-dev, fetched and unpacked by scripts/fetch-kernel-headers) and the project's own
// definitions. It compiles only if every struct size, every field's offset and size, every ioctl number and
// every shared constant agree; a static_assert message names what drifted.
#include <linux/iommufd.h>
#include <linux/version.h>
#include <linux/vfio.h>

#include <cstddef>

#include "host/host.hpp"
#include "host/kernel/iommufd_abi.hpp"

namespace kabi = vsmmu::host::kabi;
namespace uapi = vsmmu::host::uapi;

// The kernel's struct s is ::s, the project's kabi::s; a field the project renamed (the kernel's __reserved)
// is compared under both names.
#define VSMMU_SAME_SIZE(s) \
  static_assert(sizeof(::s) == sizeof(kabi::s), "sizeof(struct " #s ") differs from the kernel header")
#define VSMMU_SAME_FIELD_AS(s, kernel_field, field)                                            \
  static_assert(offsetof(::s, kernel_field) == offsetof(kabi::s, field),                       \
                "struct " #s ": " #kernel_field " is at another offset in the kernel header"); \
  static_assert(sizeof(::s::kernel_field) == sizeof(kabi::s::field),                           \
                "struct " #s ": " #kernel_field " has another size in the kernel header")
#define VSMMU_SAME_FIELD(s, f) VSMMU_SAME_FIELD_AS(s, f, f)
#define VSMMU_SAME_VALUE(ours, kernels)                                                  \
  static_assert(static_cast<unsigned long>(ours) == static_cast<unsigned long>(kernels), \
                #ours " differs from the kernel's " #kernels)

// ---- ioctl numbers ----
VSMMU_SAME_VALUE(kabi::kIommufdType, IOMMUFD_TYPE);
VSMMU_SAME_VALUE(kabi::kIommufdCmdBase, IOMMUFD_CMD_BASE);
VSMMU_SAME_VALUE(kabi::kVfioType, VFIO_TYPE);
VSMMU_SAME_VALUE(kabi::kVfioBase, VFIO_BASE);
VSMMU_SAME_VALUE(kabi::kIommuDestroy, IOMMU_DESTROY);
VSMMU_SAME_VALUE(kabi::kIommuIoasAlloc, IOMMU_IOAS_ALLOC);
VSMMU_SAME_VALUE(kabi::kIommuIoasIovaRanges, IOMMU_IOAS_IOVA_RANGES);
VSMMU_SAME_VALUE(kabi::kIommuIoasMap, IOMMU_IOAS_MAP);
VSMMU_SAME_VALUE(kabi::kIommuIoasUnmap, IOMMU_IOAS_UNMAP);
VSMMU_SAME_VALUE(kabi::kIommuOption, IOMMU_OPTION);
VSMMU_SAME_VALUE(kabi::kIommuHwptAlloc, IOMMU_HWPT_ALLOC);
VSMMU_SAME_VALUE(kabi::kIommuGetHwInfo, IOMMU_GET_HW_INFO);
VSMMU_SAME_VALUE(kabi::kIommuHwptSetDirtyTracking, IOMMU_HWPT_SET_DIRTY_TRACKING);
VSMMU_SAME_VALUE(kabi::kIommuHwptGetDirtyBitmap, IOMMU_HWPT_GET_DIRTY_BITMAP);
VSMMU_SAME_VALUE(kabi::kIommuHwptInvalidate, IOMMU_HWPT_INVALIDATE);
VSMMU_SAME_VALUE(kabi::kIommuFaultQueueAlloc, IOMMU_FAULT_QUEUE_ALLOC);
VSMMU_SAME_VALUE(kabi::kIommuIoasMapFile, IOMMU_IOAS_MAP_FILE);
VSMMU_SAME_VALUE(kabi::kIommuViommuAlloc, IOMMU_VIOMMU_ALLOC);
VSMMU_SAME_VALUE(kabi::kIommuVdeviceAlloc, IOMMU_VDEVICE_ALLOC);
VSMMU_SAME_VALUE(kabi::kIommuVeventqAlloc, IOMMU_VEVENTQ_ALLOC);
VSMMU_SAME_VALUE(kabi::kIommuHwQueueAlloc, IOMMU_HW_QUEUE_ALLOC);
VSMMU_SAME_VALUE(kabi::kVfioDeviceGetInfo, VFIO_DEVICE_GET_INFO);
VSMMU_SAME_VALUE(kabi::kVfioDeviceGetRegionInfo, VFIO_DEVICE_GET_REGION_INFO);
VSMMU_SAME_VALUE(kabi::kVfioDeviceBindIommufd, VFIO_DEVICE_BIND_IOMMUFD);
VSMMU_SAME_VALUE(kabi::kVfioDeviceAttachIommufdPt, VFIO_DEVICE_ATTACH_IOMMUFD_PT);
VSMMU_SAME_VALUE(kabi::kVfioDeviceDetachIommufdPt, VFIO_DEVICE_DETACH_IOMMUFD_PT);

// ---- constants shared with the layers above (host::uapi) ----
VSMMU_SAME_VALUE(uapi::kHwInfoTypeNone, IOMMU_HW_INFO_TYPE_NONE);
VSMMU_SAME_VALUE(uapi::kHwInfoTypeArmSmmuv3, IOMMU_HW_INFO_TYPE_ARM_SMMUV3);
VSMMU_SAME_VALUE(uapi::kHwptAllocNestParent, IOMMU_HWPT_ALLOC_NEST_PARENT);
VSMMU_SAME_VALUE(uapi::kHwptAllocDirtyTracking, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
VSMMU_SAME_VALUE(uapi::kHwptAllocFaultIdValid, IOMMU_HWPT_FAULT_ID_VALID);
VSMMU_SAME_VALUE(uapi::kHwptAllocPasid, IOMMU_HWPT_ALLOC_PASID);
VSMMU_SAME_VALUE(uapi::kHwptDataNone, IOMMU_HWPT_DATA_NONE);
VSMMU_SAME_VALUE(uapi::kHwptDataArmSmmuv3, IOMMU_HWPT_DATA_ARM_SMMUV3);
VSMMU_SAME_VALUE(uapi::kViommuTypeArmSmmuv3, IOMMU_VIOMMU_TYPE_ARM_SMMUV3);
VSMMU_SAME_VALUE(uapi::kInvalidateDataViommuArmSmmuv3, IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3);
VSMMU_SAME_VALUE(uapi::kVeventqTypeArmSmmuv3, IOMMU_VEVENTQ_TYPE_ARM_SMMUV3);
VSMMU_SAME_VALUE(uapi::kIoasMapFixedIova, IOMMU_IOAS_MAP_FIXED_IOVA);
VSMMU_SAME_VALUE(uapi::kIoasMapWriteable, IOMMU_IOAS_MAP_WRITEABLE);
VSMMU_SAME_VALUE(uapi::kIoasMapReadable, IOMMU_IOAS_MAP_READABLE);
VSMMU_SAME_VALUE(uapi::kDirtyBitmapNoClear, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR);
VSMMU_SAME_VALUE(uapi::kVeventqFlagLostEvents, IOMMU_VEVENTQ_FLAG_LOST_EVENTS);
VSMMU_SAME_VALUE(uapi::kCapDirtyTracking, IOMMU_HW_CAP_DIRTY_TRACKING);
VSMMU_SAME_VALUE(uapi::kCapPciPasidExec, IOMMU_HW_CAP_PCI_PASID_EXEC);
VSMMU_SAME_VALUE(uapi::kCapPciPasidPriv, IOMMU_HW_CAP_PCI_PASID_PRIV);
VSMMU_SAME_VALUE(uapi::kCapPciAtsNotSupported, IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);

// ---- constants the kernel backend alone uses ----
VSMMU_SAME_VALUE(kabi::kOptionRlimitMode, IOMMU_OPTION_RLIMIT_MODE);
VSMMU_SAME_VALUE(kabi::kOptionHugePages, IOMMU_OPTION_HUGE_PAGES);
VSMMU_SAME_VALUE(kabi::kOptionOpSet, IOMMU_OPTION_OP_SET);
VSMMU_SAME_VALUE(kabi::kOptionOpGet, IOMMU_OPTION_OP_GET);
VSMMU_SAME_VALUE(kabi::kHwInfoFlagInputType, IOMMU_HW_INFO_FLAG_INPUT_TYPE);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(7, 3, 0)  // an enumerator, so only the version tells whether it exists
VSMMU_SAME_VALUE(uapi::kHwInfoArmSmmuv3ErrataRepeatTlbiCfgi, IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI);
#endif
VSMMU_SAME_VALUE(kabi::kHwptDirtyTrackingEnable, IOMMU_HWPT_DIRTY_TRACKING_ENABLE);
VSMMU_SAME_VALUE(kabi::kPgfaultFlagsPasidValid, IOMMU_PGFAULT_FLAGS_PASID_VALID);
VSMMU_SAME_VALUE(kabi::kPgfaultFlagsLastPage, IOMMU_PGFAULT_FLAGS_LAST_PAGE);
VSMMU_SAME_VALUE(uapi::kPgfaultPermRead, IOMMU_PGFAULT_PERM_READ);
VSMMU_SAME_VALUE(uapi::kPgfaultPermWrite, IOMMU_PGFAULT_PERM_WRITE);
VSMMU_SAME_VALUE(uapi::kPgfaultPermExec, IOMMU_PGFAULT_PERM_EXEC);
VSMMU_SAME_VALUE(uapi::kPgfaultPermPriv, IOMMU_PGFAULT_PERM_PRIV);
VSMMU_SAME_VALUE(kabi::kPageResponseSuccess, IOMMUFD_PAGE_RESP_SUCCESS);
VSMMU_SAME_VALUE(kabi::kPageResponseInvalid, IOMMUFD_PAGE_RESP_INVALID);
VSMMU_SAME_VALUE(kabi::kVfioDeviceBindFlagToken, VFIO_DEVICE_BIND_FLAG_TOKEN);
VSMMU_SAME_VALUE(kabi::kVfioDeviceAttachPasid, VFIO_DEVICE_ATTACH_PASID);
VSMMU_SAME_VALUE(kabi::kVfioDeviceDetachPasid, VFIO_DEVICE_DETACH_PASID);
VSMMU_SAME_VALUE(kabi::kVfioDeviceFlagsReset, VFIO_DEVICE_FLAGS_RESET);
VSMMU_SAME_VALUE(kabi::kVfioDeviceFlagsPci, VFIO_DEVICE_FLAGS_PCI);
VSMMU_SAME_VALUE(kabi::kVfioRegionInfoFlagRead, VFIO_REGION_INFO_FLAG_READ);
VSMMU_SAME_VALUE(kabi::kVfioRegionInfoFlagWrite, VFIO_REGION_INFO_FLAG_WRITE);
VSMMU_SAME_VALUE(kabi::kVfioRegionInfoFlagMmap, VFIO_REGION_INFO_FLAG_MMAP);
VSMMU_SAME_VALUE(kabi::kVfioPciBar0RegionIndex, VFIO_PCI_BAR0_REGION_INDEX);
VSMMU_SAME_VALUE(kabi::kVfioPciConfigRegionIndex, VFIO_PCI_CONFIG_REGION_INDEX);

// ---- structs ----
VSMMU_SAME_SIZE(iommu_destroy);
VSMMU_SAME_FIELD(iommu_destroy, size);
VSMMU_SAME_FIELD(iommu_destroy, id);

VSMMU_SAME_SIZE(iommu_ioas_alloc);
VSMMU_SAME_FIELD(iommu_ioas_alloc, size);
VSMMU_SAME_FIELD(iommu_ioas_alloc, flags);
VSMMU_SAME_FIELD(iommu_ioas_alloc, out_ioas_id);

VSMMU_SAME_SIZE(iommu_iova_range);
VSMMU_SAME_FIELD(iommu_iova_range, start);
VSMMU_SAME_FIELD(iommu_iova_range, last);

VSMMU_SAME_SIZE(iommu_ioas_iova_ranges);
VSMMU_SAME_FIELD(iommu_ioas_iova_ranges, size);
VSMMU_SAME_FIELD(iommu_ioas_iova_ranges, ioas_id);
VSMMU_SAME_FIELD(iommu_ioas_iova_ranges, num_iovas);
VSMMU_SAME_FIELD_AS(iommu_ioas_iova_ranges, __reserved, reserved);
VSMMU_SAME_FIELD(iommu_ioas_iova_ranges, allowed_iovas);
VSMMU_SAME_FIELD(iommu_ioas_iova_ranges, out_iova_alignment);

VSMMU_SAME_SIZE(iommu_ioas_map);
VSMMU_SAME_FIELD(iommu_ioas_map, size);
VSMMU_SAME_FIELD(iommu_ioas_map, flags);
VSMMU_SAME_FIELD(iommu_ioas_map, ioas_id);
VSMMU_SAME_FIELD_AS(iommu_ioas_map, __reserved, reserved);
VSMMU_SAME_FIELD(iommu_ioas_map, user_va);
VSMMU_SAME_FIELD(iommu_ioas_map, length);
VSMMU_SAME_FIELD(iommu_ioas_map, iova);

VSMMU_SAME_SIZE(iommu_ioas_map_file);
VSMMU_SAME_FIELD(iommu_ioas_map_file, size);
VSMMU_SAME_FIELD(iommu_ioas_map_file, flags);
VSMMU_SAME_FIELD(iommu_ioas_map_file, ioas_id);
VSMMU_SAME_FIELD(iommu_ioas_map_file, fd);
VSMMU_SAME_FIELD(iommu_ioas_map_file, start);
VSMMU_SAME_FIELD(iommu_ioas_map_file, length);
VSMMU_SAME_FIELD(iommu_ioas_map_file, iova);

VSMMU_SAME_SIZE(iommu_ioas_unmap);
VSMMU_SAME_FIELD(iommu_ioas_unmap, size);
VSMMU_SAME_FIELD(iommu_ioas_unmap, ioas_id);
VSMMU_SAME_FIELD(iommu_ioas_unmap, iova);
VSMMU_SAME_FIELD(iommu_ioas_unmap, length);

VSMMU_SAME_SIZE(iommu_option);
VSMMU_SAME_FIELD(iommu_option, size);
VSMMU_SAME_FIELD(iommu_option, option_id);
VSMMU_SAME_FIELD(iommu_option, op);
VSMMU_SAME_FIELD_AS(iommu_option, __reserved, reserved);
VSMMU_SAME_FIELD(iommu_option, object_id);
VSMMU_SAME_FIELD(iommu_option, val64);

VSMMU_SAME_SIZE(iommu_hwpt_alloc);
VSMMU_SAME_FIELD(iommu_hwpt_alloc, size);
VSMMU_SAME_FIELD(iommu_hwpt_alloc, flags);
VSMMU_SAME_FIELD(iommu_hwpt_alloc, dev_id);
VSMMU_SAME_FIELD(iommu_hwpt_alloc, pt_id);
VSMMU_SAME_FIELD(iommu_hwpt_alloc, out_hwpt_id);
VSMMU_SAME_FIELD_AS(iommu_hwpt_alloc, __reserved, reserved);
VSMMU_SAME_FIELD(iommu_hwpt_alloc, data_type);
VSMMU_SAME_FIELD(iommu_hwpt_alloc, data_len);
VSMMU_SAME_FIELD(iommu_hwpt_alloc, data_uptr);
VSMMU_SAME_FIELD(iommu_hwpt_alloc, fault_id);
VSMMU_SAME_FIELD_AS(iommu_hwpt_alloc, __reserved2, reserved2);

VSMMU_SAME_SIZE(iommu_hwpt_arm_smmuv3);
VSMMU_SAME_FIELD(iommu_hwpt_arm_smmuv3, ste);

VSMMU_SAME_SIZE(iommu_hw_info);
VSMMU_SAME_FIELD(iommu_hw_info, size);
VSMMU_SAME_FIELD(iommu_hw_info, flags);
VSMMU_SAME_FIELD(iommu_hw_info, dev_id);
VSMMU_SAME_FIELD(iommu_hw_info, data_len);
VSMMU_SAME_FIELD(iommu_hw_info, data_uptr);
VSMMU_SAME_FIELD_AS(iommu_hw_info, in_data_type, data_type);
VSMMU_SAME_FIELD_AS(iommu_hw_info, out_data_type, data_type);
VSMMU_SAME_FIELD(iommu_hw_info, out_max_pasid_log2);
VSMMU_SAME_FIELD_AS(iommu_hw_info, __reserved, reserved);
VSMMU_SAME_FIELD(iommu_hw_info, out_capabilities);

VSMMU_SAME_SIZE(iommu_hw_info_arm_smmuv3);
VSMMU_SAME_FIELD(iommu_hw_info_arm_smmuv3, flags);
VSMMU_SAME_FIELD_AS(iommu_hw_info_arm_smmuv3, __reserved, reserved);
VSMMU_SAME_FIELD(iommu_hw_info_arm_smmuv3, idr);
VSMMU_SAME_FIELD(iommu_hw_info_arm_smmuv3, iidr);
VSMMU_SAME_FIELD(iommu_hw_info_arm_smmuv3, aidr);

VSMMU_SAME_SIZE(iommu_hwpt_set_dirty_tracking);
VSMMU_SAME_FIELD(iommu_hwpt_set_dirty_tracking, size);
VSMMU_SAME_FIELD(iommu_hwpt_set_dirty_tracking, flags);
VSMMU_SAME_FIELD(iommu_hwpt_set_dirty_tracking, hwpt_id);
VSMMU_SAME_FIELD_AS(iommu_hwpt_set_dirty_tracking, __reserved, reserved);

VSMMU_SAME_SIZE(iommu_hwpt_get_dirty_bitmap);
VSMMU_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, size);
VSMMU_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, hwpt_id);
VSMMU_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, flags);
VSMMU_SAME_FIELD_AS(iommu_hwpt_get_dirty_bitmap, __reserved, reserved);
VSMMU_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, iova);
VSMMU_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, length);
VSMMU_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, page_size);
VSMMU_SAME_FIELD(iommu_hwpt_get_dirty_bitmap, data);

VSMMU_SAME_SIZE(iommu_hwpt_invalidate);
VSMMU_SAME_FIELD(iommu_hwpt_invalidate, size);
VSMMU_SAME_FIELD(iommu_hwpt_invalidate, hwpt_id);
VSMMU_SAME_FIELD(iommu_hwpt_invalidate, data_uptr);
VSMMU_SAME_FIELD(iommu_hwpt_invalidate, data_type);
VSMMU_SAME_FIELD(iommu_hwpt_invalidate, entry_len);
VSMMU_SAME_FIELD(iommu_hwpt_invalidate, entry_num);
VSMMU_SAME_FIELD_AS(iommu_hwpt_invalidate, __reserved, reserved);

VSMMU_SAME_SIZE(iommu_viommu_arm_smmuv3_invalidate);
VSMMU_SAME_FIELD(iommu_viommu_arm_smmuv3_invalidate, cmd);

VSMMU_SAME_SIZE(iommu_hwpt_pgfault);
VSMMU_SAME_FIELD(iommu_hwpt_pgfault, flags);
VSMMU_SAME_FIELD(iommu_hwpt_pgfault, dev_id);
VSMMU_SAME_FIELD(iommu_hwpt_pgfault, pasid);
VSMMU_SAME_FIELD(iommu_hwpt_pgfault, grpid);
VSMMU_SAME_FIELD(iommu_hwpt_pgfault, perm);
VSMMU_SAME_FIELD_AS(iommu_hwpt_pgfault, __reserved, reserved);
VSMMU_SAME_FIELD(iommu_hwpt_pgfault, addr);
VSMMU_SAME_FIELD(iommu_hwpt_pgfault, length);
VSMMU_SAME_FIELD(iommu_hwpt_pgfault, cookie);

VSMMU_SAME_SIZE(iommu_hwpt_page_response);
VSMMU_SAME_FIELD(iommu_hwpt_page_response, cookie);
VSMMU_SAME_FIELD(iommu_hwpt_page_response, code);

VSMMU_SAME_SIZE(iommu_fault_alloc);
VSMMU_SAME_FIELD(iommu_fault_alloc, size);
VSMMU_SAME_FIELD(iommu_fault_alloc, flags);
VSMMU_SAME_FIELD(iommu_fault_alloc, out_fault_id);
VSMMU_SAME_FIELD(iommu_fault_alloc, out_fault_fd);

VSMMU_SAME_SIZE(iommu_viommu_alloc);
VSMMU_SAME_FIELD(iommu_viommu_alloc, size);
VSMMU_SAME_FIELD(iommu_viommu_alloc, flags);
VSMMU_SAME_FIELD(iommu_viommu_alloc, type);
VSMMU_SAME_FIELD(iommu_viommu_alloc, dev_id);
VSMMU_SAME_FIELD(iommu_viommu_alloc, hwpt_id);
VSMMU_SAME_FIELD(iommu_viommu_alloc, out_viommu_id);
VSMMU_SAME_FIELD(iommu_viommu_alloc, data_len);
VSMMU_SAME_FIELD_AS(iommu_viommu_alloc, __reserved, reserved);
VSMMU_SAME_FIELD(iommu_viommu_alloc, data_uptr);

VSMMU_SAME_SIZE(iommu_vdevice_alloc);
VSMMU_SAME_FIELD(iommu_vdevice_alloc, size);
VSMMU_SAME_FIELD(iommu_vdevice_alloc, viommu_id);
VSMMU_SAME_FIELD(iommu_vdevice_alloc, dev_id);
VSMMU_SAME_FIELD(iommu_vdevice_alloc, out_vdevice_id);
VSMMU_SAME_FIELD(iommu_vdevice_alloc, virt_id);

VSMMU_SAME_SIZE(iommu_veventq_alloc);
VSMMU_SAME_FIELD(iommu_veventq_alloc, size);
VSMMU_SAME_FIELD(iommu_veventq_alloc, flags);
VSMMU_SAME_FIELD(iommu_veventq_alloc, viommu_id);
VSMMU_SAME_FIELD(iommu_veventq_alloc, type);
VSMMU_SAME_FIELD(iommu_veventq_alloc, veventq_depth);
VSMMU_SAME_FIELD(iommu_veventq_alloc, out_veventq_id);
VSMMU_SAME_FIELD(iommu_veventq_alloc, out_veventq_fd);
VSMMU_SAME_FIELD_AS(iommu_veventq_alloc, __reserved, reserved);

VSMMU_SAME_SIZE(iommu_hw_queue_alloc);
VSMMU_SAME_FIELD(iommu_hw_queue_alloc, size);
VSMMU_SAME_FIELD(iommu_hw_queue_alloc, flags);
VSMMU_SAME_FIELD(iommu_hw_queue_alloc, viommu_id);
VSMMU_SAME_FIELD(iommu_hw_queue_alloc, type);
VSMMU_SAME_FIELD(iommu_hw_queue_alloc, index);
VSMMU_SAME_FIELD(iommu_hw_queue_alloc, out_hw_queue_id);
VSMMU_SAME_FIELD(iommu_hw_queue_alloc, nesting_parent_iova);
VSMMU_SAME_FIELD(iommu_hw_queue_alloc, length);

VSMMU_SAME_SIZE(iommufd_vevent_header);
VSMMU_SAME_FIELD(iommufd_vevent_header, flags);
VSMMU_SAME_FIELD(iommufd_vevent_header, sequence);

VSMMU_SAME_SIZE(iommu_vevent_arm_smmuv3);
VSMMU_SAME_FIELD(iommu_vevent_arm_smmuv3, evt);

VSMMU_SAME_SIZE(vfio_device_bind_iommufd);
VSMMU_SAME_FIELD(vfio_device_bind_iommufd, argsz);
VSMMU_SAME_FIELD(vfio_device_bind_iommufd, flags);
VSMMU_SAME_FIELD(vfio_device_bind_iommufd, iommufd);
VSMMU_SAME_FIELD(vfio_device_bind_iommufd, out_devid);
VSMMU_SAME_FIELD(vfio_device_bind_iommufd, token_uuid_ptr);

VSMMU_SAME_SIZE(vfio_device_attach_iommufd_pt);
VSMMU_SAME_FIELD(vfio_device_attach_iommufd_pt, argsz);
VSMMU_SAME_FIELD(vfio_device_attach_iommufd_pt, flags);
VSMMU_SAME_FIELD(vfio_device_attach_iommufd_pt, pt_id);
VSMMU_SAME_FIELD(vfio_device_attach_iommufd_pt, pasid);

VSMMU_SAME_SIZE(vfio_device_detach_iommufd_pt);
VSMMU_SAME_FIELD(vfio_device_detach_iommufd_pt, argsz);
VSMMU_SAME_FIELD(vfio_device_detach_iommufd_pt, flags);
VSMMU_SAME_FIELD(vfio_device_detach_iommufd_pt, pasid);

VSMMU_SAME_SIZE(vfio_device_info);
VSMMU_SAME_FIELD(vfio_device_info, argsz);
VSMMU_SAME_FIELD(vfio_device_info, flags);
VSMMU_SAME_FIELD(vfio_device_info, num_regions);
VSMMU_SAME_FIELD(vfio_device_info, num_irqs);
VSMMU_SAME_FIELD(vfio_device_info, cap_offset);
VSMMU_SAME_FIELD(vfio_device_info, pad);

VSMMU_SAME_SIZE(vfio_region_info);
VSMMU_SAME_FIELD(vfio_region_info, argsz);
VSMMU_SAME_FIELD(vfio_region_info, flags);
VSMMU_SAME_FIELD(vfio_region_info, index);
VSMMU_SAME_FIELD(vfio_region_info, cap_offset);
VSMMU_SAME_FIELD(vfio_region_info, size);
VSMMU_SAME_FIELD(vfio_region_info, offset);

int main() { return 0; }
