// The host seam: everything above it (VirtualSmmu, the nesting probe, the tools) talks to the host's IOMMU through
// this interface, unchanged whether a real kernel (kernel/: iommufd + VFIO cdev ioctls) or the simulated
// host (sim/: the kernel's rules over smmu/model) is underneath. It is shaped like the iommufd uAPI: objects
// with ids, requests with the kernel's fields, the kernel's errnos in every error.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "host/fault_records.hpp"
#include "host/reserved_regions.hpp"
#include "smmu/registers.hpp"

namespace vsmmu::host {

using ObjectId = std::uint32_t;   // an iommufd object: IOAS, HWPT, vIOMMU, vDEVICE, vEVENTQ, fault queue
using DeviceId = std::uint32_t;   // dev_id returned by VFIO_DEVICE_BIND_IOMMUFD (also an iommufd object id)

// uAPI values (include/uapi/linux/iommufd.h); kept here so both backends and the layers above share them.
namespace uapi {
inline constexpr std::uint32_t kHwInfoTypeNone = 0;
inline constexpr std::uint32_t kHwInfoTypeArmSmmuv3 = 2;
// hw_info flags (Linux 7.3): erratum T264-SMMU-3, userspace must issue each TLBI/CFGI + SYNC twice.
inline constexpr std::uint32_t kHwInfoArmSmmuv3ErrataRepeatTlbiCfgi = 1U << 0;
inline constexpr std::uint32_t kHwptAllocNestParent = 1U << 0;
inline constexpr std::uint32_t kHwptAllocDirtyTracking = 1U << 1;
inline constexpr std::uint32_t kHwptAllocFaultIdValid = 1U << 2;
inline constexpr std::uint32_t kHwptAllocPasid = 1U << 3;
inline constexpr std::uint32_t kHwptDataNone = 0;
inline constexpr std::uint32_t kHwptDataArmSmmuv3 = 2;
inline constexpr std::uint32_t kViommuTypeArmSmmuv3 = 1;
inline constexpr std::uint32_t kInvalidateDataViommuArmSmmuv3 = 1;
inline constexpr std::uint32_t kVeventqTypeArmSmmuv3 = 1;
inline constexpr std::uint32_t kIoasMapFixedIova = 1U << 0;
inline constexpr std::uint32_t kIoasMapWriteable = 1U << 1;
inline constexpr std::uint32_t kIoasMapReadable = 1U << 2;
inline constexpr std::uint32_t kDirtyBitmapNoClear = 1U << 0;
inline constexpr std::uint32_t kVeventqFlagLostEvents = 1U << 0;
inline constexpr std::uint64_t kCapDirtyTracking = 1ULL << 0;
inline constexpr std::uint64_t kCapPciPasidExec = 1ULL << 1;
inline constexpr std::uint64_t kCapPciPasidPriv = 1ULL << 2;
inline constexpr std::uint64_t kCapPciAtsNotSupported = 1ULL << 3;
}  // namespace uapi

// IOMMU_GET_HW_INFO with the ARM SMMUv3 payload (struct iommu_hw_info_arm_smmuv3).
struct HwInfo {
  std::uint32_t type = uapi::kHwInfoTypeNone;
  std::uint32_t flags = 0;
  std::array<std::uint32_t, 6> idr{};  // raw IDR0..IDR5 of the physical SMMU
  std::uint32_t iidr = 0;
  std::uint32_t aidr = 0;
  std::uint8_t max_pasid_log2 = 0;
  std::uint64_t capabilities = 0;      // out_capabilities

  // idr, iidr and aidr as the SMMU's ID registers (IDR2 and IDR4 too, as reported), for smmu::IdFeatures.
  smmu::IdRegisters id_registers() const;
};

// Where a bound device sits, as far as the host knows (the simulated host: its profile; the kernel: sysfs).
// Empty fields are unknown. Used to name things in messages and to group devices by physical SMMU.
struct DeviceLocation {
  std::string pci_address;               // "0000:01:00.0"
  std::string root_complex;              // sim: the profile's name; kernel: the host bridge ("pci0000:00")
  std::string smmu;                      // sim: the profile's name; kernel: the IOMMU's sysfs name
  std::optional<std::uint32_t> stream_id;  // the physical StreamID
};

// IOMMU_HWPT_ALLOC, as the kernel takes it (data is the driver-specific payload, e.g. the 16-byte vSTE).
struct HwptAllocRequest {
  std::uint32_t flags = 0;
  DeviceId dev_id = 0;
  ObjectId pt_id = 0;          // IOAS, NEST_PARENT HWPT, or vIOMMU (nested)
  std::uint32_t data_type = uapi::kHwptDataNone;
  std::span<const std::byte> data;
  std::optional<ObjectId> fault_id;  // sets FAULT_ID_VALID
};

// A paging HWPT on an IOAS (no driver data): a nest parent with kHwptAllocNestParent.
inline HwptAllocRequest paging_request(DeviceId dev, ObjectId ioas, std::uint32_t flags) {
  HwptAllocRequest r;
  r.flags = flags;
  r.dev_id = dev;
  r.pt_id = ioas;
  return r;
}

// A nested HWPT on a vIOMMU from a guest's vSTE (IOMMU_HWPT_DATA_ARM_SMMUV3, 16 bytes).
inline HwptAllocRequest nested_request(DeviceId dev, ObjectId viommu, std::span<const std::byte> vste) {
  HwptAllocRequest r;
  r.dev_id = dev;
  r.pt_id = viommu;
  r.data_type = uapi::kHwptDataArmSmmuv3;
  r.data = vste;
  return r;
}

// Limits the kernel enforces on values the seam carries.
namespace limits {
// drivers/iommu/iommufd/eventq.c iommufd_veventq_alloc: veventq_depth 0 or above VEVENTQ_MAX_DEPTH (1 << 19,
// "fits all existing HWs": an SMMUv3 event queue has at most 2^19 entries, IHI 0070 6.3.2 IDR1.EVENTQS) is
// EINVAL.
inline constexpr std::uint32_t kVeventqMaxDepth = 1U << 19;
// drivers/iommu/iommufd/hw_pagetable.c iommufd_hwpt_invalidate: with entries, entry_num above
// IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX (1 << 19) is EINVAL, as are a NULL data_uptr, entry_len 0 and entry_len
// above PAGE_SIZE, all before the target is looked up (Linux 7.3).
inline constexpr std::uint32_t kInvalidateMaxEntries = 1U << 19;
inline constexpr std::uint32_t kInvalidateMaxEntryLen = 4096;  // PAGE_SIZE with arm64's 4 KiB pages
// drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c arm_vsmmu_cache_invalidate then copies the entries into
// one kmalloc of entry_num x 16 bytes, which kmalloc refuses above KMALLOC_MAX_SIZE (4 MiB: 4 KiB pages,
// MAX_PAGE_ORDER 10): entry_num above this is ENOMEM, after the target checks and before any entry is read.
inline constexpr std::uint32_t kInvalidateMaxAllocatableEntries = (4U << 20) / 16;
}  // namespace limits

// IOMMU_HWPT_INVALIDATE: entry_num entries of entry_len bytes each.
struct InvalidateRequest {
  ObjectId id = 0;             // the vIOMMU on ARM
  std::uint32_t data_type = uapi::kInvalidateDataViommuArmSmmuv3;
  std::uint32_t entry_len = 16;
  std::uint32_t entry_num = 0;
  // entry_len * entry_num bytes. Empty stands for a NULL data_uptr (to probe the kernel's checks: EINVAL with
  // entries). A non-empty span shorter than that is refused by both backends before anything else with EFAULT
  // (invalidate_data_error): the kernel would read past the caller's buffer, and a buffer it cannot read is
  // EFAULT to it (copy_from_user in iommu_copy_struct_from_full_user_array).
  std::span<const std::byte> data;
};

// The kernel writes back how many entries it handled, on success and on failure.
struct InvalidateOutcome {
  std::uint32_t handled = 0;
  std::optional<Error> error;
};

// The seam's own check of an invalidation's data, the first one both backends make (see
// InvalidateRequest::data): a non-empty span shorter than entry_len * entry_num.
std::optional<Error> invalidate_data_error(const InvalidateRequest& req);

struct VeventqInfo {
  ObjectId id = 0;
  int fd = -1;                 // pollable (POLLIN while records are queued); read it with Host::read_veventq
};

struct FaultQueueInfo {
  ObjectId id = 0;
  int fd = -1;
};

class Host {
 public:
  virtual ~Host() = default;
  Host() = default;
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  // A short name for messages: "kernel /dev/iommu" or "sim <profile>".
  virtual std::string name() const = 0;

  // Devices: a VFIO cdev path (/dev/vfio/devices/vfioN) or, for the sim host, a device name from its profile.
  virtual Result<DeviceId> bind_device(const std::string& path_or_name) = 0;
  virtual Result<DeviceId> bind_device_fd(int fd) = 0;  // takes ownership of fd
  virtual Result<void> unbind_device(DeviceId dev) = 0;  // closes the cdev; the device then blocks DMA
  virtual Result<HwInfo> get_hw_info(DeviceId dev) = 0;
  // PCI address, root complex, physical SMMU and StreamID of a bound device, when the host knows them.
  // Not an ioctl: a backend that cannot tell leaves it empty, hence the default.
  virtual DeviceLocation device_location(DeviceId /*dev*/) const { return {}; }
  // The reserved IOVA regions of a bound device's iommu group (host/reserved_regions.hpp), among them its
  // software MSI window (msi_window()). The kernel: sysfs (reserved_regions of the group); the sim host: its
  // SMMU's window from the hardware profile. Not an ioctl: a backend that cannot tell returns none.
  virtual Result<std::vector<ReservedRegion>> reserved_regions(DeviceId /*dev*/) const {
    return std::vector<ReservedRegion>{};
  }

  // IOAS
  virtual Result<ObjectId> ioas_alloc() = 0;
  // Maps user memory at iova (FIXED_IOVA) or where the kernel chooses; returns the iova used.
  virtual Result<std::uint64_t> ioas_map(ObjectId ioas, void* user_va, std::uint64_t length, std::uint64_t iova,
                                         std::uint32_t flags) = 0;
  virtual Result<std::uint64_t> ioas_map_file(ObjectId ioas, int fd, std::uint64_t start, std::uint64_t length,
                                              std::uint64_t iova, std::uint32_t flags) = 0;
  // Returns the number of bytes unmapped.
  virtual Result<std::uint64_t> ioas_unmap(ObjectId ioas, std::uint64_t iova, std::uint64_t length) = 0;
  virtual Result<std::vector<IovaRange>> ioas_iova_ranges(ObjectId ioas) = 0;

  // HWPT
  virtual Result<ObjectId> hwpt_alloc(const HwptAllocRequest& req) = 0;
  // VFIO_DEVICE_ATTACH_IOMMUFD_PT: attaching while attached is an atomic replace.
  virtual Result<void> attach(DeviceId dev, ObjectId pt_id) = 0;
  virtual Result<void> detach(DeviceId dev) = 0;
  virtual Result<void> set_dirty_tracking(ObjectId hwpt, bool enable) = 0;
  // bitmap holds one bit per page_size page of [iova, iova+length); the pointer may be unaligned.
  virtual Result<void> get_dirty_bitmap(ObjectId hwpt, std::uint64_t iova, std::uint64_t length,
                                        std::uint64_t page_size, std::byte* bitmap, std::uint32_t flags) = 0;

  // vIOMMU and friends
  virtual Result<ObjectId> viommu_alloc(DeviceId dev, ObjectId parent_hwpt, std::uint32_t type) = 0;
  virtual Result<ObjectId> vdevice_alloc(ObjectId viommu, DeviceId dev, std::uint64_t virt_id) = 0;
  virtual Result<VeventqInfo> veventq_alloc(ObjectId viommu, std::uint32_t type, std::uint32_t depth) = 0;
  virtual Result<FaultQueueInfo> fault_queue_alloc() = 0;
  virtual InvalidateOutcome hwpt_invalidate(const InvalidateRequest& req) = 0;
  // read(2) of a vEVENTQ fd (as veventq_alloc returned it) with the kernel's answers
  // (drivers/iommu/iommufd/eventq.c iommufd_veventq_fops_read): as many whole records as fit in buf, oldest
  // first, each {u32 flags; u32 sequence;} + the type's payload, or the 8-byte header alone with
  // IOMMU_VEVENTQ_FLAG_LOST_EVENTS; 0 when the queue is empty (it never blocks and never says EAGAIN: poll the
  // fd to wait); EINVAL when buf is shorter than a header, or than the first queued record (which stays
  // queued). Returns the bytes written to buf. An fd that is not open is EBADF.
  virtual Result<std::size_t> read_veventq(int fd, std::span<std::byte> buf) = 0;
  // read(2) of a fault queue fd (as fault_queue_alloc returned it) with the kernel's answers
  // (drivers/iommu/iommufd/eventq.c iommufd_fault_fops_read): whole struct iommu_hwpt_pgfault records
  // (host/fault_records.hpp, 40 bytes), whole fault groups only, oldest first; every fault of a group carries
  // the group's cookie; 0 when nothing is queued (it never blocks: poll the fd, POLLIN while faults wait).
  // ESPIPE when buf.size() is not a multiple of the record size. Returns the bytes written to buf.
  virtual Result<std::size_t> read_fault_queue(int fd, std::span<std::byte> buf) = 0;
  // write(2) of struct iommu_hwpt_page_response records to a fault queue fd (iommufd_fault_fops_write): each
  // answers the delivered group with that cookie once (SUCCESS: the device retries; INVALID: it aborts).
  // ESPIPE when the size is not a multiple of the record size, EINVAL for a cookie no delivered group has (the
  // responses before it were applied). Returns the bytes consumed.
  virtual Result<std::size_t> write_fault_queue(int fd, std::span<const std::byte> responses) = 0;
  // Whether a bound device can stall its transactions on a fault (arm-smmu-v3's master->stall_enabled: the
  // firmware's dma-can-stall with IDR0.STALL_MODEL allowing stalls, or STALL_MODEL "forced"): only then can a
  // nested HWPT with a fault queue report its faults (arm-smmu-v3 has no PRI-based I/O page faults).
  // Not an ioctl: a backend that cannot tell says no.
  virtual Result<bool> device_can_stall(DeviceId /*dev*/) const { return false; }

  virtual Result<void> destroy(ObjectId id) = 0;
};

}  // namespace vsmmu::host
