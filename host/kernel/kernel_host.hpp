// The real backend of the host seam: iommufd ioctls on /dev/iommu and VFIO cdev ioctls on
// /dev/vfio/devices/vfioN, with the project's own ABI definitions (iommufd_abi.hpp). Every error names the
// ioctl (Error::where), keeps the kernel's errno, names the objects involved, and says what the errno means
// for that call on arm-smmu-v3 and what to do about it. See docs/host-kernel.md.
//
// Not thread-safe: one owner (a VirtualSmmu, the nesting probe, a tool) drives it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "host/handles.hpp"
#include "host/host.hpp"
#include "host/kernel/kernel_errors.hpp"

namespace vsmmu::host {

struct KernelHostOptions {
  std::string iommufd_path = "/dev/iommu";
  // Where bind_device() resolves a PCI BDF (<pci_devices>/<BDF>/vfio-dev/vfioN) and a bare "vfioN".
  std::string pci_devices_dir = "/sys/bus/pci/devices";
  std::string vfio_devices_dir = "/dev/vfio/devices";
  // Where device_location() follows a cdev's device number (<sysfs_char_dir>/MAJOR:MINOR/device).
  std::string sysfs_char_dir = "/sys/dev/char";
};

// VFIO_DEVICE_GET_REGION_INFO: where a region (BAR, config space) sits in the device fd.
struct VfioRegion {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;  // READ 1, WRITE 2, MMAP 4, CAPS 8
  std::uint64_t size = 0;
  std::uint64_t offset = 0;  // for pread/pwrite/mmap on device_fd()
};

// VFIO_DEVICE_GET_INFO.
struct VfioDeviceInfo {
  std::uint32_t flags = 0;  // RESET 1, PCI 2, ...
  std::uint32_t num_regions = 0;
  std::uint32_t num_irqs = 0;
};

class KernelHost final : public Host {
 public:
  // Opens the iommufd. Fails with the errno of open() and a message naming what is missing: the iommufd
  // module or CONFIG_IOMMUFD (ENOENT, ENXIO, ENODEV), or permission (EACCES, EPERM).
  static Result<std::unique_ptr<KernelHost>> open(const KernelHostOptions& options = {});

  std::string name() const override;

  // path_or_name: a cdev path (/dev/vfio/devices/vfioN), a bare "vfioN", or a PCI BDF ("0000:01:00.0" or
  // "01:00.0") resolved through sysfs.
  Result<DeviceId> bind_device(const std::string& path_or_name) override;
  // Takes ownership of fd; it is closed if binding fails.
  Result<DeviceId> bind_device_fd(int fd) override;
  Result<void> unbind_device(DeviceId dev) override;
  Result<HwInfo> get_hw_info(DeviceId dev) override;
  // From sysfs: the cdev's PCI device, the host bridge above it and its "iommu" link (the StreamID is not
  // in sysfs).
  DeviceLocation device_location(DeviceId dev) const override;
  // The group's /sys/kernel/iommu_groups/N/reserved_regions, found through the cdev's PCI device's
  // iommu_group link.
  Result<std::vector<ReservedRegion>> reserved_regions(DeviceId dev) const override;

  Result<ObjectId> ioas_alloc() override;
  Result<std::uint64_t> ioas_map(ObjectId ioas, void* user_va, std::uint64_t length, std::uint64_t iova,
                                 std::uint32_t flags) override;
  Result<std::uint64_t> ioas_map_file(ObjectId ioas, int fd, std::uint64_t start, std::uint64_t length,
                                      std::uint64_t iova, std::uint32_t flags) override;
  Result<std::uint64_t> ioas_unmap(ObjectId ioas, std::uint64_t iova, std::uint64_t length) override;
  Result<std::vector<IovaRange>> ioas_iova_ranges(ObjectId ioas) override;

  Result<ObjectId> hwpt_alloc(const HwptAllocRequest& req) override;
  Result<void> attach(DeviceId dev, ObjectId pt_id) override;
  Result<void> detach(DeviceId dev) override;
  Result<void> set_dirty_tracking(ObjectId hwpt, bool enable) override;
  Result<void> get_dirty_bitmap(ObjectId hwpt, std::uint64_t iova, std::uint64_t length, std::uint64_t page_size,
                                std::byte* bitmap, std::uint32_t flags) override;

  Result<ObjectId> viommu_alloc(DeviceId dev, ObjectId parent_hwpt, std::uint32_t type) override;
  Result<ObjectId> vdevice_alloc(ObjectId viommu, DeviceId dev, std::uint64_t virt_id) override;
  // The returned fd belongs to the caller (wrap it in a QueueObject); the kernel opened it O_CLOEXEC.
  Result<VeventqInfo> veventq_alloc(ObjectId viommu, std::uint32_t type, std::uint32_t depth) override;
  Result<FaultQueueInfo> fault_queue_alloc() override;
  InvalidateOutcome hwpt_invalidate(const InvalidateRequest& req) override;
  // read(2) on the fd: the kernel's own rules.
  Result<std::size_t> read_veventq(int fd, std::span<std::byte> buf) override;
  Result<std::size_t> read_fault_queue(int fd, std::span<std::byte> buf) override;
  Result<std::size_t> write_fault_queue(int fd, std::span<const std::byte> responses) override;
  // master->stall_enabled: IDR0.STALL_MODEL forced, or "stall" and the device's DT dma-can-stall in sysfs.
  Result<bool> device_can_stall(DeviceId dev) const override;

  Result<void> destroy(ObjectId id) override;

  // Kernel-only extras, not part of the seam.
  // IOMMU_OPTION: RLIMIT_MODE (global, object 0) or HUGE_PAGES (per IOAS).
  Result<std::uint64_t> option_get(std::uint32_t option_id, ObjectId object);
  Result<void> option_set(std::uint32_t option_id, ObjectId object, std::uint64_t value);
  // The bound device's cdev fd (borrowed), for region access by a test DMA engine.
  Result<int> device_fd(DeviceId dev) const;
  Result<VfioDeviceInfo> device_info(DeviceId dev);
  Result<VfioRegion> region_info(DeviceId dev, std::uint32_t index);
  // The same on a cdev fd the caller holds: a dup of one it handed to bind_device_fd (VFIO allows region
  // access only once the open file is bound). `what` names the device in the error.
  Result<VfioRegion> region_info_of(int device_fd, std::uint32_t index, std::string_view what) const;
  const std::string& kernel_release() const { return release_; }
  // Every VFIO cdev (<vfio_devices_dir>/vfioN), sorted by N; empty when there are none or no such directory.
  static std::vector<std::string> vfio_devices(const KernelHostOptions& options = {});

 private:
  struct Device {
    UniqueFd fd;
    std::string label;  // what the caller named it: path, BDF or "fd N"
  };

  KernelHost(UniqueFd iommufd, KernelHostOptions options, std::string release);
  Result<DeviceId> bind_fd(UniqueFd fd, std::string label);
  Result<const Device*> find_device(DeviceId dev, const char* where) const;
  Result<std::string> resolve_device_path(const std::string& path_or_name) const;
  // The cdev's device in sysfs (/sys/devices/pci0000:00/.../0000:01:00.0), or nullopt.
  std::optional<std::filesystem::path> sysfs_device(DeviceId dev) const;
  // ioctl on the iommufd, retried on EINTR; returns 0 or the errno.
  int iommufd_ioctl(unsigned long request, void* arg) const;

  // Declared first so that the devices (which hold references into it) are closed before it.
  UniqueFd iommufd_;
  KernelHostOptions options_;
  std::string release_;  // uname -r, for "needs Linux >= X" messages
  std::map<DeviceId, Device> devices_;
};

}  // namespace vsmmu::host
