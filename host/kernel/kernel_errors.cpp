#include "host/kernel/kernel_errors.hpp"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "host/kernel/iommufd_abi.hpp"
#include "smmu/id_features.hpp"

namespace vsmmu::host {

using namespace ioctl_names;

namespace {

std::string_view since_release(std::string_view where) {
  for (const auto& d : kabi::kIoctls)
    if (d.name == where) return d.since;
  return "?";
}

bool is_vfio_ioctl(std::string_view where) { return where.starts_with("VFIO_"); }

// What err means for this ioctl on arm-smmu-v3; empty when only the generic meaning applies.
std::string specific_meaning(std::string_view where, int err, std::uint32_t flags, std::uint32_t data_type) {
  using namespace uapi;
  if (where == kDestroy) {
    if (err == ENOENT) return "no such object (already destroyed, or never allocated on this iommufd)";
    if (err == EBUSY)
      return "the object is still in use: close a vEVENTQ's or fault queue's fd first; destroy nested HWPTs, "
             "vDEVICEs and vEVENTQs before their vIOMMU, the vIOMMU before its nest parent, and detach devices "
             "before destroying the HWPT they use";
  } else if (where == kIoasMap || where == kMapFile) {
    if (err == ENOENT) return "no such IOAS";
    if (err == EEXIST) return "the IOVA range overlaps an existing mapping (FIXED_IOVA never replaces one)";
    if (err == ENOSPC) return "no free IOVA range of that length inside the IOAS's allowed ranges";
    if (err == EINVAL)
      return "iova and length must be aligned to the IOAS's IOVA alignment, length non-zero, and the range "
             "inside the allowed IOVA ranges (IOMMU_IOAS_IOVA_RANGES)";
    if (err == ENOMEM)
      return "out of memory, or pinning these pages exceeds RLIMIT_MEMLOCK (raise it with ulimit -l, or run as "
             "root)";
    if (err == EFAULT) return "the user memory is not mapped (or not writable for a WRITEABLE mapping)";
    if (where == kMapFile && err == EBADF) return "fd is not an open file";
    if (where == kMapFile && err == EOPNOTSUPP)
      return "the file must be a memfd (shmem or hugetlbfs) and the flags known to this kernel";
  } else if (where == kIoasUnmap) {
    if (err == ENOENT) return "nothing is mapped in that range, or no such IOAS";
    if (err == EINVAL)
      return "the range must cover whole mappings (splitting one is refused); iova 0 with length U64_MAX unmaps "
             "everything";
    if (err == EBUSY) return "a kernel access (an emulated device's pin) still uses the range";
  } else if (where == kIovaRanges) {
    if (err == ENOENT) return "no such IOAS";
  } else if (where == kOption) {
    if (err == EPERM) return "IOMMU_OPTION_RLIMIT_MODE needs CAP_SYS_RESOURCE";
    if (err == ENOENT) return "no such IOAS (IOMMU_OPTION_HUGE_PAGES is per IOAS)";
    if (err == EOPNOTSUPP) return "unknown option or op";
    if (err == EINVAL) return "the value is out of range, or object_id must be 0 for a global option";
  } else if (where == kHwptAlloc) {
    const bool nested = data_type != kHwptDataNone;
    const bool parent_dirty =
        (flags & (kHwptAllocNestParent | kHwptAllocDirtyTracking)) == (kHwptAllocNestParent | kHwptAllocDirtyTracking);
    if (err == EOPNOTSUPP) {
      if (parent_dirty)
        return "this kernel has no nested dirty tracking: the arm-smmu-v3 driver refuses NEST_PARENT together "
               "with DIRTY_TRACKING";
      if (flags & kHwptAllocDirtyTracking)
        return "the SMMU cannot track dirty pages: DIRTY_TRACKING needs hardware dirty-state updates "
               "(IDR0.HTTU=2, FEAT_HD) and coherent table walks: see `vsmmu probe`";
      if (nested)
        return "a nested HWPT takes no alloc flags and its pt_id must be a vIOMMU, not an IOAS or a paging "
               "HWPT; data_type must be one the driver knows (IOMMU_HWPT_DATA_ARM_SMMUV3)";
      if (flags & kHwptAllocNestParent) return "the SMMU cannot be a nest parent: it needs stage 2 (IDR0.S2P)";
      return "a flag or data type this kernel or IOMMU driver does not support";
    }
    if (err == EINVAL) {
      if (nested)
        return "a nested HWPT needs exactly 16 bytes of IOMMU_HWPT_DATA_ARM_SMMUV3 (the vSTE) and a pt_id "
               "that is a vIOMMU of this device's SMMU (not a vDEVICE, a nested HWPT or nothing)";
      return "a paging HWPT needs an IOAS as pt_id, data_type NONE with no data, and a flag combination the "
             "driver accepts";
    }
    if (err == EIO)
      return "the kernel refused the vSTE: a bit outside the allowed STE0/STE1 masks, a Config other than "
             "abort, bypass or stage-1 translate, or EATS 2/3";
    if (err == ENOENT) return "the device is not bound to this iommufd, or pt_id or fault_id does not exist";
    if (err == EFAULT) return "the vSTE data pointer is not readable";
  } else if (where == kGetHwInfo) {
    if (err == ENOENT) return "the device is not bound to this iommufd";
    if (err == EOPNOTSUPP) return "the device's IOMMU driver reports no hardware information";
  } else if (where == kSetDirty) {
    if (err == ENOENT) return "no such HWPT";
    if (err == EINVAL || err == EOPNOTSUPP) return "the HWPT was not allocated with DIRTY_TRACKING";
  } else if (where == kGetDirty) {
    if (err == ENOENT) return "no such HWPT";
    if (err == EINVAL)
      return "iova and length must be aligned to page_size (a power of two no smaller than the IOMMU's page), "
             "the range mapped, and the HWPT allocated with DIRTY_TRACKING";
    if (err == EOPNOTSUPP) return "the HWPT was not allocated with DIRTY_TRACKING or NO_CLEAR is unknown";
    if (err == EFAULT) return "the bitmap pointer is not writable for the whole range";
  } else if (where == kInvalidate) {
    if (err == EOPNOTSUPP)
      return "ARM SMMUv3 invalidates only through the vIOMMU: target the vIOMMU id, not the nested HWPT";
    if (err == EINVAL)
      return fmt::format("the target must be a vIOMMU (not the nest parent or an IOAS), entry_num 1..{} "
                         "(arm-smmu-v3 rejects an empty array), entry_len 1..{}, data_type "
                         "IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 and data non-NULL",
                         limits::kInvalidateMaxEntries, limits::kInvalidateMaxEntryLen);
    if (err == EIO)
      return "the driver refused a command: only TLBI_NSNH_ALL, TLBI_NH_ALL/ASID/VA/VAA, ATC_INV, CFGI_CD and "
             "CFGI_CD_ALL are forwarded, and a SID must be a vSID with a vDEVICE; CMD_SYNC, CFGI_STE and "
             "S2/EL2 TLBIs are the VMM's job";
    if (err == E2BIG) return "an entry has non-zero bytes past the 16 the driver understands";
    if (err == ENOENT) return "no such vIOMMU";
    if (err == EFAULT) return "the command array is not readable";
    if (err == ENOMEM)
      return fmt::format("the driver copies the whole array into one allocation: at most {} entries "
                         "(arm_vsmmu_cache_invalidate), or the kernel is out of memory",
                         limits::kInvalidateMaxAllocatableEntries);
  } else if (where == kFaultAlloc) {
    if (err == EOPNOTSUPP) return "flags must be 0";
    if (err == EMFILE) return "this process has no free file descriptor for the queue";
  } else if (where == kViommuAlloc) {
    if (err == EOPNOTSUPP)
      return "the SMMU lacks nesting, or the device's root complex has no CANWBS and the SMMU no S2FWB: see "
             "`vsmmu probe`";
    if (err == EINVAL) return "hwpt_id must be a NEST_PARENT HWPT allocated for a device on the same SMMU";
    if (err == ENOENT) return "the device is not bound to this iommufd, or no such HWPT";
  } else if (where == kVdeviceAlloc) {
    if (err == EEXIST) return "the device already has a vDEVICE on this vIOMMU, or the vSID is taken";
    if (err == EINVAL) return "the device is behind a different physical SMMU than the vIOMMU";
    if (err == ENOENT) return "no such vIOMMU, or the device is not bound to this iommufd";
  } else if (where == kVeventqAlloc) {
    if (err == EEXIST) return "the vIOMMU already has a vEVENTQ of this type (one per type)";
    if (err == EINVAL) return fmt::format("the depth must be 1..{} (VEVENTQ_MAX_DEPTH)", limits::kVeventqMaxDepth);
    if (err == EOPNOTSUPP) return "the type must be IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 (DEFAULT is refused), flags 0";
    if (err == ENOENT) return "no such vIOMMU";
    if (err == EMFILE) return "this process has no free file descriptor for the queue";
  } else if (where == kBind) {
    if (err == EINVAL) return "the cdev is already bound, or the device was opened through the legacy VFIO group";
    if (err == EBUSY)
      return "the device's VFIO group is in use by a legacy /dev/vfio/<group> user: close that user first";
    if (err == EPERM)
      return "the platform cannot isolate the device's MSIs (no interrupt remapping or MSI isolation); iommufd "
             "refuses unless its allow_unsafe_interrupts parameter is set";
    if (err == ENODEV) return "the device is being removed from VFIO, or is not behind an IOMMU";
    if (err == EBADF || err == EBADFD) return "the iommufd handed over is not an iommufd";
    if (err == ENOTTY)
      return "this fd is not a VFIO device cdev, or the kernel lacks CONFIG_VFIO_DEVICE_CDEV (Linux >= 6.6)";
  } else if (where == kAttach) {
    if (err == ENOENT)
      return "pt_id does not exist, or it is a translating nested HWPT and the device has no vDEVICE on its "
             "vIOMMU yet (IOMMU_VDEVICE_ALLOC first)";
    if (err == EINVAL)
      return "pt_id must be an IOAS or a HWPT (not a vIOMMU or vDEVICE) allocated for this device's SMMU";
    if (err == EOPNOTSUPP) return "the HWPT cannot be attached to this device (PASID or domain type unsupported)";
  } else if (where == kDetach) {
    if (err == EINVAL) return "unknown detach flags";
  } else if (where == kRegionInfo) {
    if (err == EINVAL) return "no region with that index";
  }
  return {};
}

std::string generic_meaning(std::string_view where, int err, std::string_view release) {
  switch (err) {
    case ENOTTY:
      return fmt::format("this kernel has no {} (added in Linux {}; running {}), or the fd is not {}", where,
                         since_release(where), release, is_vfio_ioctl(where) ? "a VFIO device cdev" : "an iommufd");
    case E2BIG:
      return fmt::format(
          "the kernel does not know a non-zero field of the request: it predates the struct vsmmu "
          "sends (running {})",
          release);
    case EOPNOTSUPP:
      return "the kernel or IOMMU driver does not support a flag, type or value in the request";
    case EINVAL:
      return "the kernel rejected a field of the request";
    case ENOENT:
      return "an object id in the request does not exist";
    case ENOMEM:
      return "the kernel ran out of memory";
    case EFAULT:
      return "a user pointer in the request is not valid memory";
    case EOVERFLOW:
      return "an address or length overflowed";
    case EPERM:
    case EACCES:
      return "permission denied";
    case EMFILE:
    case ENFILE:
      return "too many open files (raise RLIMIT_NOFILE)";
    default:
      return std::strerror(err);
  }
}

}  // namespace

namespace kernel_errors {

std::string open_iommufd(const std::string& path, int err) {
  switch (err) {
    case ENOENT:
      return fmt::format(
          "no {}: the kernel lacks CONFIG_IOMMUFD or the iommufd module is not loaded "
          "(modprobe iommufd)",
          path);
    case ENXIO:
    case ENODEV:
      return fmt::format(
          "{} exists but no driver answers it: the iommufd module is not loaded (modprobe iommufd) "
          "or was built without CONFIG_IOMMUFD",
          path);
    case EACCES:
    case EPERM:
      return fmt::format(
          "permission denied on {}: run as root or give the user access (e.g. a udev rule "
          "KERNEL==\"iommu\", GROUP=\"kvm\", MODE=\"0660\")",
          path);
    default:
      return fmt::format("cannot open {}: {}", path, std::strerror(err));
  }
}

std::string viommu_unsupported(const HwInfo* info) {
  // arm-smmu-v3-iommufd.c, arm_smmu_get_viommu_size(): FEAT_NESTING (stage 1 and stage 2), then S2FWB on the
  // SMMU or CANWBS on the master's root complex (IORT memory access flags), else no vIOMMU.
  if (info == nullptr || info->type != uapi::kHwInfoTypeArmSmmuv3)
    return "the kernel refuses a vIOMMU and reports no SMMUv3 hardware information for the device: it lacks "
           "CONFIG_ARM_SMMU_V3_IOMMUFD, or the device is not behind an SMMUv3";
  const auto ids = smmu::IdFeatures::of(info->id_registers());
  if (!ids.s1p || !ids.s2p)
    return fmt::format("the SMMU cannot nest: nesting needs stage 1 and stage 2 (IDR0.S1P={:d}, IDR0.S2P={:d})",
                       ids.s1p, ids.s2p);
  if (!ids.fwb)
    return "the SMMU has no S2FWB (IDR3.FWB=0), so Linux allows a guest-owned stage 1 only when the device's PCI "
           "root complex has CANWBS in the ACPI IORT, and it has not (a device-tree boot never has it): check the "
           "table with `vsmmu iort check`; to test with CANWBS, `vsmmu iort patch --canwbs IORT.dat -o "
           "iort.cpio --cpio` builds an initrd table override";
  return "the SMMU has stage 1, stage 2 and S2FWB, so the kernel refused for another reason: a kernel without "
         "CONFIG_ARM_SMMU_V3_IOMMUFD, or an SMMU erratum or option that rules out nesting (see the kernel log)";
}

std::string open_cdev(const std::string& path, int err) {
  switch (err) {
    case ENOENT:
      return fmt::format("no such cdev {}: is the device bound to vfio-pci and CONFIG_VFIO_DEVICE_CDEV=y?", path);
    case EACCES:
    case EPERM:
      return fmt::format(
          "permission denied on {}: run as root or give the user access to the device's VFIO cdev "
          "(and to /dev/iommu)",
          path);
    case ENXIO:
    case ENODEV:
      return fmt::format("{}: the VFIO device is gone (unbound from vfio-pci, or being removed)", path);
    case EBUSY:
      return fmt::format("{}: the device is in use by another VFIO user", path);
    default:
      return fmt::format("cannot open {}: {}", path, std::strerror(err));
  }
}

std::string ioctl_failed(std::string_view where, int err, std::string_view what, std::string_view release,
                         std::uint32_t flags, std::uint32_t data_type) {
  std::string meaning = specific_meaning(where, err, flags, data_type);
  if (meaning.empty()) meaning = generic_meaning(where, err, release);
  return fmt::format("{}: {}", what, meaning);
}

}  // namespace kernel_errors

}  // namespace vsmmu::host
