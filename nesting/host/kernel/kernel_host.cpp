#include "nesting/host/kernel/kernel_host.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <utility>

#include "nesting/host/kernel/iommufd_abi.hpp"
#include "smmu/log.hpp"
#include "smmu/registers.hpp"

namespace vsmmu::host {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kDestroy = "IOMMU_DESTROY";
constexpr std::string_view kIoasAlloc = "IOMMU_IOAS_ALLOC";
constexpr std::string_view kIovaRanges = "IOMMU_IOAS_IOVA_RANGES";
constexpr std::string_view kIoasMap = "IOMMU_IOAS_MAP";
constexpr std::string_view kIoasUnmap = "IOMMU_IOAS_UNMAP";
constexpr std::string_view kOption = "IOMMU_OPTION";
constexpr std::string_view kHwptAlloc = "IOMMU_HWPT_ALLOC";
constexpr std::string_view kGetHwInfo = "IOMMU_GET_HW_INFO";
constexpr std::string_view kSetDirty = "IOMMU_HWPT_SET_DIRTY_TRACKING";
constexpr std::string_view kGetDirty = "IOMMU_HWPT_GET_DIRTY_BITMAP";
constexpr std::string_view kInvalidate = "IOMMU_HWPT_INVALIDATE";
constexpr std::string_view kFaultAlloc = "IOMMU_FAULT_QUEUE_ALLOC";
constexpr std::string_view kMapFile = "IOMMU_IOAS_MAP_FILE";
constexpr std::string_view kViommuAlloc = "IOMMU_VIOMMU_ALLOC";
constexpr std::string_view kVdeviceAlloc = "IOMMU_VDEVICE_ALLOC";
constexpr std::string_view kVeventqAlloc = "IOMMU_VEVENTQ_ALLOC";
constexpr std::string_view kBind = "VFIO_DEVICE_BIND_IOMMUFD";
constexpr std::string_view kAttach = "VFIO_DEVICE_ATTACH_IOMMUFD_PT";
constexpr std::string_view kDetach = "VFIO_DEVICE_DETACH_IOMMUFD_PT";
constexpr std::string_view kDeviceInfo = "VFIO_DEVICE_GET_INFO";
constexpr std::string_view kRegionInfo = "VFIO_DEVICE_GET_REGION_INFO";

std::uint64_t uptr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// ioctl, retried when a signal interrupted it; 0 or the errno.
int xioctl(int fd, unsigned long request, void* arg) {
  for (;;) {
    if (::ioctl(fd, request, arg) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

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

// One ioctl as the error messages need it: its name, and the request fields that change what an errno means.
struct Call {
  std::string_view where;
  std::uint32_t flags = 0;
  std::uint32_t data_type = 0;
};

std::string ioctl_message(const Call& c, int err, std::string_view what, std::string_view release);

template <class... Args>
std::unexpected<Error> ioctl_error(const Call& c, int err, std::string_view release, fmt::format_string<Args...> f,
                                   Args&&... args) {
  return fail(err, std::string(c.where), "{}",
              ioctl_message(c, err, fmt::format(f, std::forward<Args>(args)...), release));
}

bool is_hex(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

// "0000:01:00.0" or "01:00.0" (domain 0), lower-cased and with the domain; nullopt if not a PCI address.
std::optional<std::string> normalize_bdf(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (std::count(s.begin(), s.end(), ':') == 1) s = "0000:" + s;
  const auto c1 = s.find(':');
  const auto c2 = s.find(':', c1 + 1);
  const auto dot = s.find('.', c2 == std::string::npos ? 0 : c2);
  if (c1 == std::string::npos || c2 == std::string::npos || dot == std::string::npos) return std::nullopt;
  const std::string_view v(s);
  const auto domain = v.substr(0, c1), bus = v.substr(c1 + 1, c2 - c1 - 1), dev = v.substr(c2 + 1, dot - c2 - 1),
             fn = v.substr(dot + 1);
  if (domain.size() < 4 || !is_hex(domain) || bus.size() != 2 || !is_hex(bus) || dev.size() != 2 || !is_hex(dev) ||
      fn.size() != 1 || fn[0] < '0' || fn[0] > '7')
    return std::nullopt;
  return s;
}

bool is_vfio_name(std::string_view s) {
  return s.size() > 4 && s.starts_with("vfio") &&
         std::all_of(s.begin() + 4, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string ioctl_message(const Call& c, int err, std::string_view what, std::string_view release) {
  std::string meaning = specific_meaning(c.where, err, c.flags, c.data_type);
  if (meaning.empty()) meaning = generic_meaning(c.where, err, release);
  return fmt::format("{}: {}", what, meaning);
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
  const auto idr0 = smmu::Idr0::of(info->idr[0]);
  const auto idr3 = smmu::Idr3::of(info->idr[3]);
  if (!idr0.get(smmu::Idr0::S1P) || !idr0.get(smmu::Idr0::S2P))
    return fmt::format("the SMMU cannot nest: nesting needs stage 1 and stage 2 (IDR0.S1P={:d}, IDR0.S2P={:d})",
                       idr0.get(smmu::Idr0::S1P), idr0.get(smmu::Idr0::S2P));
  if (!idr3.get(smmu::Idr3::FWB))
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
  return ioctl_message(Call{where, flags, data_type}, err, what, release);
}

}  // namespace kernel_errors

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
  auto bdf = normalize_bdf(path_or_name);
  if (!bdf)
    return fail(EINVAL, "bind",
                "'{}' is neither a VFIO cdev path (/dev/vfio/devices/vfioN), a cdev name (vfioN) "
                "nor a PCI address (0000:01:00.0)",
                path_or_name);
  const fs::path dev_dir = fs::path(options_.pci_devices_dir) / *bdf;
  std::error_code ec;
  if (!fs::exists(dev_dir, ec))
    return fail(ENOENT, "bind", "no PCI device {} ({} does not exist)", *bdf, dev_dir.string());
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
              *bdf, vfio_dev.string(), driver, dev_dir.string(), *bdf);
}

Result<DeviceId> KernelHost::bind_device(const std::string& path_or_name) {
  auto path = resolve_device_path(path_or_name);
  if (!path) return std::unexpected(path.error());
  UniqueFd fd(::open(path->c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    return fail(err, "open", "{}", kernel_errors::open_cdev(*path, err));
  }
  std::string label = *path == path_or_name ? *path : fmt::format("{} ({})", path_or_name, *path);
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

DeviceLocation KernelHost::device_location(DeviceId dev) const {
  DeviceLocation loc;
  auto it = devices_.find(dev);
  struct stat st {};
  if (it == devices_.end() || ::fstat(it->second.fd.get(), &st) != 0 || !S_ISCHR(st.st_mode)) return loc;
  std::error_code ec;
  // /sys/dev/char/M:m/device resolves to /sys/devices/pci0000:00/.../0000:01:00.0 for a vfio-pci device.
  const fs::path pci = fs::canonical(
      fs::path(options_.sysfs_char_dir) / fmt::format("{}:{}", major(st.st_rdev), minor(st.st_rdev)) / "device", ec);
  if (ec) return loc;
  if (normalize_bdf(pci.filename().string())) loc.pci_address = pci.filename().string();
  for (const auto& part : pci)
    if (part.string().starts_with("pci")) {
      loc.root_complex = part.string();
      break;
    }
  if (auto iommu = fs::read_symlink(pci / "iommu", ec); !ec) loc.smmu = iommu.filename().string();
  return loc;
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
  auto d = find_device(dev, "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
  if (!d) return std::unexpected(d.error());
  kabi::vfio_device_attach_iommufd_pt req{.pt_id = pt_id};
  if (int err = xioctl((*d)->fd.get(), kabi::kVfioDeviceAttachIommufdPt, &req))
    return ioctl_error({kAttach}, err, release_, "attaching device {} ({}) to pt {}", dev, (*d)->label, pt_id);
  if (req.pt_id != pt_id) log::debug("host.kernel", "device {} attached to HWPT {} for IOAS {}", dev, req.pt_id, pt_id);
  return {};
}

Result<void> KernelHost::detach(DeviceId dev) {
  auto d = find_device(dev, "VFIO_DEVICE_DETACH_IOMMUFD_PT");
  if (!d) return std::unexpected(d.error());
  kabi::vfio_device_detach_iommufd_pt req{};
  if (int err = xioctl((*d)->fd.get(), kabi::kVfioDeviceDetachIommufdPt, &req))
    return ioctl_error({kDetach}, err, release_, "detaching device {} ({})", dev, (*d)->label);
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
  auto d = find_device(dev, "device_fd");
  if (!d) return std::unexpected(d.error());
  return (*d)->fd.get();
}

Result<VfioDeviceInfo> KernelHost::device_info(DeviceId dev) {
  auto d = find_device(dev, "VFIO_DEVICE_GET_INFO");
  if (!d) return std::unexpected(d.error());
  kabi::vfio_device_info req{};
  if (int err = xioctl((*d)->fd.get(), kabi::kVfioDeviceGetInfo, &req))
    return ioctl_error({kDeviceInfo}, err, release_, "reading the VFIO info of device {} ({})", dev, (*d)->label);
  return VfioDeviceInfo{req.flags, req.num_regions, req.num_irqs};
}

Result<VfioRegion> KernelHost::region_info(DeviceId dev, std::uint32_t index) {
  auto d = find_device(dev, "VFIO_DEVICE_GET_REGION_INFO");
  if (!d) return std::unexpected(d.error());
  return region_info_of(d.value()->fd.get(), index, fmt::format("device {} ({})", dev, (*d)->label));
}

Result<VfioRegion> KernelHost::region_info_of(int device_fd, std::uint32_t index, std::string_view what) const {
  kabi::vfio_region_info req{.index = index};
  if (int err = xioctl(device_fd, kabi::kVfioDeviceGetRegionInfo, &req))
    return ioctl_error({kRegionInfo}, err, release_, "reading region {} of {}", index, what);
  return VfioRegion{index, req.flags, req.size, req.offset};
}

}  // namespace vsmmu::host
