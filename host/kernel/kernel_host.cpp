#include "host/kernel/kernel_host.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <utility>

#include "base/try.hpp"
#include "host/bdf.hpp"
#include "host/kernel/iommufd_abi.hpp"
#include "host/kernel/kernel_errors.hpp"
#include "base/log.hpp"
#include "smmu/registers.hpp"

namespace vsmmu::host {

namespace fs = std::filesystem;
using namespace ioctl_names;

namespace {

std::uint64_t uptr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// ioctl, retried when a signal interrupted it; 0 or the errno.
int xioctl(int fd, unsigned long request, void* arg) {
  for (;;) {
    if (::ioctl(fd, request, arg) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

// One ioctl as the error messages need it: its name, and the request fields that change what an errno means.
struct Call {
  std::string_view where;
  std::uint32_t flags = 0;
  std::uint32_t data_type = 0;
};

template <class... Args>
std::unexpected<Error> ioctl_error(const Call& c, int err, std::string_view release, fmt::format_string<Args...> f,
                                   Args&&... args) {
  return fail(err, std::string(c.where), "{}",
              kernel_errors::ioctl_failed(c.where, err, fmt::format(f, std::forward<Args>(args)...), release, c.flags,
                                          c.data_type));
}

bool is_vfio_name(std::string_view s) {
  return s.size() > 4 && s.starts_with("vfio") &&
         std::all_of(s.begin() + 4, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}


}  // namespace


KernelHost::KernelHost(UniqueFd iommufd, KernelHostOptions options, std::string release)
    : iommufd_(std::move(iommufd)), options_(std::move(options)), release_(std::move(release)) {}

Result<std::unique_ptr<KernelHost>> KernelHost::open(const KernelHostOptions& options) {
  UniqueFd fd(::open(options.iommufd_path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    return fail(err, "open", "{}", kernel_errors::open_iommufd(options.iommufd_path, err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISCHR(st.st_mode))
    return fail(ENOTTY, "open", "{} is not a character device, so it cannot be the iommufd (/dev/iommu)",
                options.iommufd_path);
  struct utsname u {};
  std::string release = ::uname(&u) == 0 ? std::string(u.release) : std::string("unknown");
  log::info("host.kernel", "opened {} (Linux {})", options.iommufd_path, release);
  return std::unique_ptr<KernelHost>(new KernelHost(std::move(fd), options, std::move(release)));
}

std::string KernelHost::name() const { return fmt::format("kernel {}", options_.iommufd_path); }

int KernelHost::iommufd_ioctl(unsigned long request, void* arg) const { return xioctl(iommufd_.get(), request, arg); }

Result<const KernelHost::Device*> KernelHost::find_device(DeviceId dev, const char* where) const {
  auto it = devices_.find(dev);
  if (it == devices_.end())
    return fail(ENOENT, where, "device {} is not bound through this host (bind_device first)", dev);
  return &it->second;
}

// ---- devices ----

Result<std::string> KernelHost::resolve_device_path(const std::string& path_or_name) const {
  if (path_or_name.starts_with('/')) return path_or_name;
  if (is_vfio_name(path_or_name)) return (fs::path(options_.vfio_devices_dir) / path_or_name).string();
  const auto parsed = parse_bdf(path_or_name);
  if (!parsed)
    return fail(EINVAL, "bind",
                "'{}' is neither a VFIO cdev path (/dev/vfio/devices/vfioN), a cdev name (vfioN) "
                "nor a PCI address (0000:01:00.0)",
                path_or_name);
  const std::string bdf = parsed->bdf.to_string();  // sysfs's name: lower-case, with the domain (0 if not given)
  const fs::path dev_dir = fs::path(options_.pci_devices_dir) / bdf;
  std::error_code ec;
  if (!fs::exists(dev_dir, ec))
    return fail(ENOENT, "bind", "no PCI device {} ({} does not exist)", bdf, dev_dir.string());
  const fs::path vfio_dev = dev_dir / "vfio-dev";
  if (fs::is_directory(vfio_dev, ec)) {
    for (fs::directory_iterator it(vfio_dev, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string n = it->path().filename().string();
      if (is_vfio_name(n)) return (fs::path(options_.vfio_devices_dir) / n).string();
    }
  }
  std::string driver = "no driver";
  if (auto target = fs::read_symlink(dev_dir / "driver", ec); !ec)
    driver = fmt::format("driver '{}'", target.filename().string());
  return fail(ENOENT, "bind",
              "PCI device {} has no VFIO cdev ({} has no vfioN; the device is bound to {}): bind it "
              "to vfio-pci (echo vfio-pci > {}/driver_override; echo {} > /sys/bus/pci/drivers_probe) on a kernel "
              "with CONFIG_VFIO_DEVICE_CDEV=y",
              bdf, vfio_dev.string(), driver, dev_dir.string(), bdf);
}

Result<DeviceId> KernelHost::bind_device(const std::string& path_or_name) {
  VSMMU_TRY_ASSIGN(auto path, resolve_device_path(path_or_name));
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    return fail(err, "open", "{}", kernel_errors::open_cdev(path, err));
  }
  std::string label = path == path_or_name ? path : fmt::format("{} ({})", path_or_name, path);
  return bind_fd(std::move(fd), std::move(label));
}

Result<DeviceId> KernelHost::bind_device_fd(int fd) {
  UniqueFd owned(fd);
  if (!owned) return fail(EBADF, std::string(kBind), "binding fd {}: not a file descriptor", fd);
  return bind_fd(std::move(owned), fmt::format("fd {}", fd));
}

Result<DeviceId> KernelHost::bind_fd(UniqueFd fd, std::string label) {
  kabi::vfio_device_bind_iommufd bind{.iommufd = iommufd_.get()};
  if (int err = xioctl(fd.get(), kabi::kVfioDeviceBindIommufd, &bind))
    return ioctl_error({kBind}, err, release_, "binding {} to {}", label, options_.iommufd_path);
  const DeviceId id = bind.out_devid;
  if (devices_.contains(id))
    return fail(EEXIST, std::string(kBind), "binding {}: the kernel returned dev_id {}, which {} already holds", label,
                id, devices_.at(id).label);
  log::info("host.kernel", "bound {} as device {}", label, id);
  devices_.emplace(id, Device{std::move(fd), std::move(label)});
  return id;
}

Result<void> KernelHost::unbind_device(DeviceId dev) {
  auto it = devices_.find(dev);
  if (it == devices_.end()) return fail(ENOENT, "unbind", "device {} is not bound through this host", dev);
  log::info("host.kernel", "unbinding device {} ({})", dev, it->second.label);
  devices_.erase(it);  // closing the cdev unbinds it; the device then blocks DMA
  return {};
}

std::optional<std::filesystem::path> KernelHost::sysfs_device(DeviceId dev) const {
  auto it = devices_.find(dev);
  struct stat st {};
  if (it == devices_.end() || ::fstat(it->second.fd.get(), &st) != 0 || !S_ISCHR(st.st_mode)) return std::nullopt;
  std::error_code ec;
  // /sys/dev/char/M:m/device resolves to /sys/devices/pci0000:00/.../0000:01:00.0 for a vfio-pci device.
  const fs::path pci = fs::canonical(
      fs::path(options_.sysfs_char_dir) / fmt::format("{}:{}", major(st.st_rdev), minor(st.st_rdev)) / "device", ec);
  if (ec) return std::nullopt;
  return pci;
}

DeviceLocation KernelHost::device_location(DeviceId dev) const {
  DeviceLocation loc;
  const auto pci = sysfs_device(dev);
  if (!pci) return loc;
  std::error_code ec;
  if (parse_bdf(pci->filename().string())) loc.pci_address = pci->filename().string();
  for (const auto& part : *pci)
    if (part.string().starts_with("pci")) {
      loc.root_complex = part.string();
      break;
    }
  if (auto iommu = fs::read_symlink(*pci / "iommu", ec); !ec) loc.smmu = iommu.filename().string();
  return loc;
}

// The group's reserved_regions file (drivers/iommu/iommu.c iommu_group_show_resv_regions): every region the
// IOMMU driver and the firmware (IORT RMR, DT reserved-memory) reserve for the group's devices, the software
// MSI window among them, whether or not the device is attached anywhere. IOMMU_IOAS_IOVA_RANGES gives the
// other view: the IOVA an IOAS still allows, with the windows of the devices attached to it cut out; it only
// shows the window once a device is attached (iopt_table_enforce_dev_resv_regions), and does not say which
// hole is which. The vSMMU checks one against the other once its first device is attached (VirtualSmmu).
Result<std::vector<ReservedRegion>> KernelHost::reserved_regions(DeviceId dev) const {
  VSMMU_TRY_ASSIGN(auto d, find_device(dev, "reserved_regions"));
  const auto pci = sysfs_device(dev);
  if (!pci)
    return fail(ENODEV, "reserved_regions",
                "device {} ({}): its cdev has no device in {} (is sysfs mounted?); pass the MSI window by hand", dev,
                d->label, options_.sysfs_char_dir);
  std::error_code ec;
  const fs::path group = fs::canonical(*pci / "iommu_group", ec);
  if (ec)
    return fail(ENODEV, "reserved_regions", "device {} ({}): {} has no iommu_group link: it is not behind an IOMMU",
                dev, d->label, pci->string());
  const fs::path file = group / "reserved_regions";
  std::ifstream in(file);
  if (!in)
    return fail(errno ? errno : EIO, "reserved_regions", "device {} ({}): cannot read {}: {}", dev, d->label,
                file.string(), std::strerror(errno));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_reserved_regions(text, file.string());
}

std::vector<std::string> KernelHost::vfio_devices(const KernelHostOptions& options) {
  std::vector<std::pair<unsigned long, std::string>> found;
  std::error_code ec;
  for (fs::directory_iterator it(options.vfio_devices_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (is_vfio_name(n)) found.emplace_back(std::stoul(n.substr(4)), it->path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& f : found) paths.push_back(std::move(f.second));
  return paths;
}

Result<HwInfo> KernelHost::get_hw_info(DeviceId dev) {
  kabi::iommu_hw_info_arm_smmuv3 arm{};
  kabi::iommu_hw_info req{.dev_id = dev, .data_len = sizeof arm, .data_uptr = uptr(&arm)};
  if (int err = iommufd_ioctl(kabi::kIommuGetHwInfo, &req))
    return ioctl_error({kGetHwInfo}, err, release_, "hardware info of device {}", dev);
  HwInfo info;
  info.type = req.data_type;
  info.max_pasid_log2 = req.out_max_pasid_log2;
  info.capabilities = req.out_capabilities;
  // Only an ARM SMMUv3 payload has this layout; another IOMMU's bytes are left uninterpreted.
  if (req.data_type == uapi::kHwInfoTypeArmSmmuv3) {
    info.flags = arm.flags;
    info.idr = arm.idr;
    info.iidr = arm.iidr;
    info.aidr = arm.aidr;
  }
  return info;
}

// ---- IOAS ----

Result<ObjectId> KernelHost::ioas_alloc() {
  kabi::iommu_ioas_alloc req{};
  if (int err = iommufd_ioctl(kabi::kIommuIoasAlloc, &req))
    return ioctl_error({kIoasAlloc}, err, release_, "allocating an IOAS");
  return req.out_ioas_id;
}

Result<std::uint64_t> KernelHost::ioas_map(ObjectId ioas, void* user_va, std::uint64_t length, std::uint64_t iova,
                                           std::uint32_t flags) {
  kabi::iommu_ioas_map req{.flags = flags, .ioas_id = ioas, .user_va = uptr(user_va), .length = length, .iova = iova};
  if (int err = iommufd_ioctl(kabi::kIommuIoasMap, &req))
    return ioctl_error({kIoasMap, flags, 0}, err, release_,
                       "mapping {:#x} bytes at user address {} to IOVA {:#x} "
                       "(flags {:#x}) in IOAS {}",
                       length, user_va, iova, flags, ioas);
  return req.iova;
}

Result<std::uint64_t> KernelHost::ioas_map_file(ObjectId ioas, int fd, std::uint64_t start, std::uint64_t length,
                                                std::uint64_t iova, std::uint32_t flags) {
  kabi::iommu_ioas_map_file req{
      .flags = flags, .ioas_id = ioas, .fd = fd, .start = start, .length = length, .iova = iova};
  if (int err = iommufd_ioctl(kabi::kIommuIoasMapFile, &req))
    return ioctl_error({kMapFile, flags, 0}, err, release_,
                       "mapping {:#x} bytes of fd {} at offset {:#x} to IOVA {:#x} "
                       "(flags {:#x}) in IOAS {}",
                       length, fd, start, iova, flags, ioas);
  return req.iova;
}

Result<std::uint64_t> KernelHost::ioas_unmap(ObjectId ioas, std::uint64_t iova, std::uint64_t length) {
  kabi::iommu_ioas_unmap req{.ioas_id = ioas, .iova = iova, .length = length};
  if (int err = iommufd_ioctl(kabi::kIommuIoasUnmap, &req))
    return ioctl_error({kIoasUnmap}, err, release_, "unmapping {:#x} bytes at IOVA {:#x} from IOAS {}", length, iova,
                       ioas);
  return req.length;
}

Result<std::vector<IovaRange>> KernelHost::ioas_iova_ranges(ObjectId ioas) {
  std::vector<kabi::iommu_iova_range> ranges(4);
  // The ranges can change between two calls (a device attached meanwhile); a few rounds always settle.
  for (int round = 0; round < 8; ++round) {
    kabi::iommu_ioas_iova_ranges req{
        .ioas_id = ioas, .num_iovas = static_cast<std::uint32_t>(ranges.size()), .allowed_iovas = uptr(ranges.data())};
    const int err = iommufd_ioctl(kabi::kIommuIoasIovaRanges, &req);
    if (err == EMSGSIZE) {
      ranges.resize(req.num_iovas);
      continue;
    }
    if (err) return ioctl_error({kIovaRanges}, err, release_, "reading the IOVA ranges of IOAS {}", ioas);
    std::vector<IovaRange> out;
    out.reserve(req.num_iovas);
    for (std::uint32_t i = 0; i < req.num_iovas && i < ranges.size(); ++i)
      out.push_back(IovaRange{ranges[i].start, ranges[i].last});
    return out;
  }
  return fail(EAGAIN, std::string(kIovaRanges), "the IOVA ranges of IOAS {} kept changing between calls", ioas);
}

// ---- HWPT ----

Result<ObjectId> KernelHost::hwpt_alloc(const HwptAllocRequest& r) {
  if (r.data.size() > std::numeric_limits<std::uint32_t>::max())
    return fail(EINVAL, std::string(kHwptAlloc), "HWPT data of {} bytes does not fit data_len", r.data.size());
  std::uint32_t flags = r.flags;
  if (r.fault_id) flags |= uapi::kHwptAllocFaultIdValid;
  kabi::iommu_hwpt_alloc req{.flags = flags,
                             .dev_id = r.dev_id,
                             .pt_id = r.pt_id,
                             .data_type = r.data_type,
                             .data_len = static_cast<std::uint32_t>(r.data.size()),
                             .data_uptr = r.data.empty() ? 0 : uptr(r.data.data()),
                             .fault_id = r.fault_id.value_or(0)};
  if (int err = iommufd_ioctl(kabi::kIommuHwptAlloc, &req))
    return ioctl_error({kHwptAlloc, flags, r.data_type}, err, release_,
                       "allocating a HWPT (flags {:#x}, data type {}, {} "
                       "data bytes) for device {} on pt {}",
                       flags, r.data_type, r.data.size(), r.dev_id, r.pt_id);
  log::debug("host.kernel", "HWPT {} (flags {:#x}, data type {}) for device {} on pt {}", req.out_hwpt_id, flags,
             r.data_type, r.dev_id, r.pt_id);
  return req.out_hwpt_id;
}

Result<void> KernelHost::attach(DeviceId dev, ObjectId pt_id) {
  VSMMU_TRY_ASSIGN(auto d, find_device(dev, "VFIO_DEVICE_ATTACH_IOMMUFD_PT"));
  kabi::vfio_device_attach_iommufd_pt req{.pt_id = pt_id};
  if (int err = xioctl((d)->fd.get(), kabi::kVfioDeviceAttachIommufdPt, &req))
    return ioctl_error({kAttach}, err, release_, "attaching device {} ({}) to pt {}", dev, (d)->label, pt_id);
  if (req.pt_id != pt_id) log::debug("host.kernel", "device {} attached to HWPT {} for IOAS {}", dev, req.pt_id, pt_id);
  return {};
}

Result<void> KernelHost::detach(DeviceId dev) {
  VSMMU_TRY_ASSIGN(auto d, find_device(dev, "VFIO_DEVICE_DETACH_IOMMUFD_PT"));
  kabi::vfio_device_detach_iommufd_pt req{};
  if (int err = xioctl((d)->fd.get(), kabi::kVfioDeviceDetachIommufdPt, &req))
    return ioctl_error({kDetach}, err, release_, "detaching device {} ({})", dev, (d)->label);
  return {};
}

Result<void> KernelHost::set_dirty_tracking(ObjectId hwpt, bool enable) {
  kabi::iommu_hwpt_set_dirty_tracking req{.flags = enable ? kabi::kHwptDirtyTrackingEnable : 0U, .hwpt_id = hwpt};
  if (int err = iommufd_ioctl(kabi::kIommuHwptSetDirtyTracking, &req))
    return ioctl_error({kSetDirty}, err, release_, "{} dirty tracking on HWPT {}", enable ? "enabling" : "disabling",
                       hwpt);
  return {};
}

Result<void> KernelHost::get_dirty_bitmap(ObjectId hwpt, std::uint64_t iova, std::uint64_t length,
                                          std::uint64_t page_size, std::byte* bitmap, std::uint32_t flags) {
  kabi::iommu_hwpt_get_dirty_bitmap req{
      .hwpt_id = hwpt, .flags = flags, .iova = iova, .length = length, .page_size = page_size, .data = uptr(bitmap)};
  if (int err = iommufd_ioctl(kabi::kIommuHwptGetDirtyBitmap, &req))
    return ioctl_error({kGetDirty, flags, 0}, err, release_,
                       "reading the dirty bitmap of HWPT {} for {:#x} bytes at IOVA "
                       "{:#x}, page size {:#x}, flags {:#x}",
                       hwpt, length, iova, page_size, flags);
  return {};
}

// ---- vIOMMU and friends ----

Result<ObjectId> KernelHost::viommu_alloc(DeviceId dev, ObjectId parent_hwpt, std::uint32_t type) {
  kabi::iommu_viommu_alloc req{.type = type, .dev_id = dev, .hwpt_id = parent_hwpt};
  if (int err = iommufd_ioctl(kabi::kIommuViommuAlloc, &req)) {
    if (err == EOPNOTSUPP && type == uapi::kViommuTypeArmSmmuv3) {
      // The kernel says only "not supported": the SMMU's IDRs tell which of its rules refused.
      const auto info = get_hw_info(dev);
      return fail(err, std::string(kViommuAlloc), "allocating a vIOMMU for device {} on parent HWPT {}: {}", dev,
                  parent_hwpt, kernel_errors::viommu_unsupported(info ? &*info : nullptr));
    }
    return ioctl_error({kViommuAlloc}, err, release_, "allocating a vIOMMU of type {} for device {} on parent HWPT {}",
                       type, dev, parent_hwpt);
  }
  log::debug("host.kernel", "vIOMMU {} for device {} on parent HWPT {}", req.out_viommu_id, dev, parent_hwpt);
  return req.out_viommu_id;
}

Result<ObjectId> KernelHost::vdevice_alloc(ObjectId viommu, DeviceId dev, std::uint64_t virt_id) {
  kabi::iommu_vdevice_alloc req{.viommu_id = viommu, .dev_id = dev, .virt_id = virt_id};
  if (int err = iommufd_ioctl(kabi::kIommuVdeviceAlloc, &req))
    return ioctl_error({kVdeviceAlloc}, err, release_,
                       "allocating a vDEVICE with vSID {:#x} for device {} on vIOMMU "
                       "{}",
                       virt_id, dev, viommu);
  return req.out_vdevice_id;
}

Result<VeventqInfo> KernelHost::veventq_alloc(ObjectId viommu, std::uint32_t type, std::uint32_t depth) {
  kabi::iommu_veventq_alloc req{.viommu_id = viommu, .type = type, .veventq_depth = depth};
  if (int err = iommufd_ioctl(kabi::kIommuVeventqAlloc, &req))
    return ioctl_error({kVeventqAlloc}, err, release_, "allocating a vEVENTQ of type {} and depth {} on vIOMMU {}",
                       type, depth, viommu);
  return VeventqInfo{req.out_veventq_id, static_cast<int>(req.out_veventq_fd)};
}

Result<FaultQueueInfo> KernelHost::fault_queue_alloc() {
  kabi::iommu_fault_alloc req{};
  if (int err = iommufd_ioctl(kabi::kIommuFaultQueueAlloc, &req))
    return ioctl_error({kFaultAlloc}, err, release_, "allocating a fault queue");
  return FaultQueueInfo{req.out_fault_id, static_cast<int>(req.out_fault_fd)};
}

InvalidateOutcome KernelHost::hwpt_invalidate(const InvalidateRequest& r) {
  InvalidateOutcome out;
  // An empty span lets a caller probe the kernel's own checks (NULL data); a short one would let the kernel
  // read past the caller's buffer.
  if ((out.error = invalidate_data_error(r))) return out;
  kabi::iommu_hwpt_invalidate req{.hwpt_id = r.id,
                                  .data_uptr = r.data.empty() ? 0 : uptr(r.data.data()),
                                  .data_type = r.data_type,
                                  .entry_len = r.entry_len,
                                  .entry_num = r.entry_num};
  const int err = iommufd_ioctl(kabi::kIommuHwptInvalidate, &req);
  // iommufd's handler writes entry_num back on success and failure alike (0 when it failed before the driver
  // ran). ENOTTY means the handler never ran (no such ioctl), and the field still holds the input count; the
  // other errors that stop iommufd before its handler (short size, non-zero tail, unreadable struct) cannot
  // happen with this fully-sized, zero-tailed request.
  if (err == ENOTTY) req.entry_num = 0;
  out.handled = std::min(req.entry_num, r.entry_num);
  if (err) {
    std::string at;
    if (req.entry_num < r.entry_num && r.entry_len > 0 && !r.data.empty())
      at = fmt::format(", stopped at entry {} (opcode {:#04x})", req.entry_num,
                       std::to_integer<unsigned>(r.data[std::size_t{req.entry_num} * r.entry_len]));
    out.error =
        Error{err, std::string(kInvalidate),
              kernel_errors::ioctl_failed(kInvalidate, err,
                                          fmt::format("invalidating {} entries of {} bytes (data type {}) "
                                                      "through {}; {} handled{}",
                                                      r.entry_num, r.entry_len, r.data_type, r.id, req.entry_num, at),
                                          release_)};
  }
  return out;
}

Result<std::size_t> KernelHost::read_veventq(int fd, std::span<std::byte> buf) {
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    const int err = errno;
    if (err == EINVAL)
      return fail(err, "read(vEVENTQ)", "fd {}: a buffer of {} bytes is shorter than the next record (the "
                  "record stays queued)", fd, buf.size());
    return fail(err, "read(vEVENTQ)", "fd {}: {}", fd, std::strerror(err));
  }
}

Result<std::size_t> KernelHost::read_fault_queue(int fd, std::span<std::byte> buf) {
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    const int err = errno;
    if (err == ESPIPE)
      return fail(err, "read(fault queue)", "fd {}: {} bytes is not a whole number of {}-byte fault records", fd,
                  buf.size(), sizeof(kabi::iommu_hwpt_pgfault));
    return fail(err, "read(fault queue)", "fd {}: {}", fd, std::strerror(err));
  }
}

Result<std::size_t> KernelHost::write_fault_queue(int fd, std::span<const std::byte> responses) {
  for (;;) {
    const ssize_t n = ::write(fd, responses.data(), responses.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    const int err = errno;
    if (err == ESPIPE || err == EINVAL)
      return fail(err, "write(fault queue)", "fd {}: {} bytes of page responses: {}", fd, responses.size(),
                  err == ESPIPE ? fmt::format("not a whole number of {}-byte records", sizeof(kabi::iommu_hwpt_page_response))
                                : std::string("a cookie that names no delivered fault group"));
    return fail(err, "write(fault queue)", "fd {}: {}", fd, std::strerror(err));
  }
}

Result<void> KernelHost::destroy(ObjectId id) {
  kabi::iommu_destroy req{.id = id};
  if (int err = iommufd_ioctl(kabi::kIommuDestroy, &req))
    return ioctl_error({kDestroy}, err, release_, "destroying object {}", id);
  return {};
}

// ---- kernel-only extras ----

Result<std::uint64_t> KernelHost::option_get(std::uint32_t option_id, ObjectId object) {
  kabi::iommu_option req{.option_id = option_id, .op = kabi::kOptionOpGet, .object_id = object};
  if (int err = iommufd_ioctl(kabi::kIommuOption, &req))
    return ioctl_error({kOption}, err, release_, "reading option {} of object {}", option_id, object);
  return req.val64;
}

Result<void> KernelHost::option_set(std::uint32_t option_id, ObjectId object, std::uint64_t value) {
  kabi::iommu_option req{.option_id = option_id, .op = kabi::kOptionOpSet, .object_id = object, .val64 = value};
  if (int err = iommufd_ioctl(kabi::kIommuOption, &req))
    return ioctl_error({kOption}, err, release_, "setting option {} of object {} to {}", option_id, object, value);
  return {};
}

Result<int> KernelHost::device_fd(DeviceId dev) const {
  VSMMU_TRY_ASSIGN(auto d, find_device(dev, "device_fd"));
  return (d)->fd.get();
}

Result<VfioDeviceInfo> KernelHost::device_info(DeviceId dev) {
  VSMMU_TRY_ASSIGN(auto d, find_device(dev, "VFIO_DEVICE_GET_INFO"));
  kabi::vfio_device_info req{};
  if (int err = xioctl((d)->fd.get(), kabi::kVfioDeviceGetInfo, &req))
    return ioctl_error({kDeviceInfo}, err, release_, "reading the VFIO info of device {} ({})", dev, (d)->label);
  return VfioDeviceInfo{req.flags, req.num_regions, req.num_irqs};
}

Result<VfioRegion> KernelHost::region_info(DeviceId dev, std::uint32_t index) {
  VSMMU_TRY_ASSIGN(auto d, find_device(dev, "VFIO_DEVICE_GET_REGION_INFO"));
  return region_info_of(d->fd.get(), index, fmt::format("device {} ({})", dev, (d)->label));
}

Result<VfioRegion> KernelHost::region_info_of(int device_fd, std::uint32_t index, std::string_view what) const {
  kabi::vfio_region_info req{.index = index};
  if (int err = xioctl(device_fd, kabi::kVfioDeviceGetRegionInfo, &req))
    return ioctl_error({kRegionInfo}, err, release_, "reading region {} of {}", index, what);
  return VfioRegion{index, req.flags, req.size, req.offset};
}

}  // namespace vsmmu::host
