// The kernel backend on a machine without /dev/iommu and without VFIO devices: every entry point must fail with
// the errno and a message that says what is missing (the kernel option or module, the permission, the vfio-pci
// binding), the ioctl's name as `where`, and the objects involved.
// Fakes: an iommufd path that does not exist or is /dev/null (a character device that answers every ioctl with
// ENOTTY, as a kernel without that ioctl does), and a sysfs / cdev directory built in a temporary folder.
#include "base/try.hpp"
#include "host/kernel/kernel_host.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <utility>

#include "host/handles.hpp"
#include "host/kernel/iommufd_abi.hpp"
#include "smmu/registers.hpp"

namespace vsmmu::host {
namespace {

namespace fs = std::filesystem;

::testing::AssertionResult Says(const Error& e, std::string_view needle) {
  if (e.message.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << e.to_string() << "' does not say '" << needle << "'";
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "vsmmu-kernel-host-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) ? fs::path(tmpl) : fs::path();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::unique_ptr<KernelHost> fake_host(KernelHostOptions o = {}) {
  o.iommufd_path = "/dev/null";
  auto h = KernelHost::open(o);
  EXPECT_TRUE(h) << h.error().to_string();
  return h ? std::move(*h) : nullptr;
}

TEST(KernelHostOpen, WithoutDevIommuNamesTheKernelOptionAndTheModule) {
  if (fs::exists("/dev/iommu")) GTEST_SKIP() << "this machine has /dev/iommu";
  auto h = KernelHost::open();
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().err, ENOENT);
  EXPECT_EQ(h.error().where, "open");
  EXPECT_TRUE(Says(h.error(),
                   "no /dev/iommu: the kernel lacks CONFIG_IOMMUFD or the iommufd module is not loaded "
                   "(modprobe iommufd)"));
}

TEST(KernelHostOpen, AMissingOverridePathIsNamed) {
  TempDir dir;
  const std::string path = (dir.path() / "iommu").string();
  auto h = KernelHost::open({.iommufd_path = path});
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().err, ENOENT);
  EXPECT_TRUE(Says(h.error(), "no " + path + ": the kernel lacks CONFIG_IOMMUFD"));
}

TEST(KernelHostOpen, ARegularFileIsNotAnIommufd) {
  TempDir dir;
  const fs::path path = dir.path() / "iommu";
  std::ofstream(path) << "x";
  auto h = KernelHost::open({.iommufd_path = path.string()});
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().err, ENOTTY);
  EXPECT_TRUE(Says(h.error(), "is not a character device"));
}

TEST(KernelHostOpen, PermissionDeniedSaysHowToGrantAccess) {
  // As root the kernel grants any mode, so the real EACCES path runs only for an unprivileged user.
  if (::geteuid() != 0) {
    TempDir dir;
    const fs::path path = dir.path() / "iommu";
    std::ofstream(path) << "x";
    fs::permissions(path, fs::perms::none);
    auto h = KernelHost::open({.iommufd_path = path.string()});
    ASSERT_FALSE(h);
    EXPECT_EQ(h.error().err, EACCES);
    EXPECT_TRUE(Says(h.error(), "run as root or give the user access"));
  }
  const Error e{EACCES, "open", kernel_errors::open_iommufd("/dev/iommu", EACCES)};
  EXPECT_TRUE(Says(e, "permission denied on /dev/iommu: run as root or give the user access"));
  const Error cdev{EACCES, "open", kernel_errors::open_cdev("/dev/vfio/devices/vfio0", EACCES)};
  EXPECT_TRUE(Says(cdev, "permission denied on /dev/vfio/devices/vfio0: run as root"));
}

TEST(KernelHostOpen, ANodeWithoutItsDriverNamesTheModule) {
  const Error e{ENXIO, "open", kernel_errors::open_iommufd("/dev/iommu", ENXIO)};
  EXPECT_TRUE(Says(e, "modprobe iommufd"));
}

// Every iommufd entry point, as issued on an fd that is not an iommufd (or on a kernel without the ioctl):
// ENOTTY, the ioctl's name, the release that added it, and the ids of the request.
TEST(KernelHostCalls, EveryIommufdEntryPointFailsWithTheIoctlsNameAndWhatIsMissing) {
  auto host = fake_host();
  ASSERT_TRUE(host);
  std::array<std::byte, 16> vste{};
  std::array<std::byte, 64> bitmap{};
  HwptAllocRequest parent;
  parent.flags = uapi::kHwptAllocNestParent;
  parent.dev_id = 3;
  parent.pt_id = 2;
  HwptAllocRequest nested;
  nested.dev_id = 3;
  nested.pt_id = 6;
  nested.data_type = uapi::kHwptDataArmSmmuv3;
  nested.data = vste;
  nested.fault_id = 11;
  struct Case {
    std::string_view where;
    std::string_view ids;
    std::function<Result<void>()> call;
  };
  auto drop = [](auto r) -> Result<void> {
    if (!r) return std::unexpected(r.error());
    return {};
  };
  const std::vector<Case> cases = {
      {"IOMMU_GET_HW_INFO", "device 3", [&] { return drop(host->get_hw_info(3)); }},
      {"IOMMU_IOAS_ALLOC", "IOAS", [&] { return drop(host->ioas_alloc()); }},
      {"IOMMU_IOAS_MAP", "IOAS 2", [&] { return drop(host->ioas_map(2, bitmap.data(), 4096, 0x1000, 7)); }},
      {"IOMMU_IOAS_MAP_FILE", "fd 9", [&] { return drop(host->ioas_map_file(2, 9, 0, 4096, 0x1000, 7)); }},
      {"IOMMU_IOAS_UNMAP", "IOAS 2", [&] { return drop(host->ioas_unmap(2, 0x1000, 4096)); }},
      {"IOMMU_IOAS_IOVA_RANGES", "IOAS 2", [&] { return drop(host->ioas_iova_ranges(2)); }},
      {"IOMMU_HWPT_ALLOC", "flags 0x1, data type 0, 0 data bytes) for device 3 on pt 2",
       [&] { return drop(host->hwpt_alloc(parent)); }},
      // fault_id sets FAULT_ID_VALID (1 << 2)
      {"IOMMU_HWPT_ALLOC", "flags 0x4, data type 2, 16 data bytes) for device 3 on pt 6",
       [&] { return drop(host->hwpt_alloc(nested)); }},
      {"IOMMU_HWPT_SET_DIRTY_TRACKING", "HWPT 4", [&] { return host->set_dirty_tracking(4, true); }},
      {"IOMMU_HWPT_GET_DIRTY_BITMAP", "HWPT 4",
       [&] { return host->get_dirty_bitmap(4, 0, 64 * 8 * 4096, 4096, bitmap.data(), 0); }},
      {"IOMMU_VIOMMU_ALLOC", "device 3 on parent HWPT 5", [&] { return drop(host->viommu_alloc(3, 5, 1)); }},
      {"IOMMU_VDEVICE_ALLOC", "vSID 0x10 for device 3 on vIOMMU 6",
       [&] { return drop(host->vdevice_alloc(6, 3, 0x10)); }},
      {"IOMMU_VEVENTQ_ALLOC", "vIOMMU 6", [&] { return drop(host->veventq_alloc(6, 1, 64)); }},
      {"IOMMU_FAULT_QUEUE_ALLOC", "fault queue", [&] { return drop(host->fault_queue_alloc()); }},
      {"IOMMU_DESTROY", "object 6", [&] { return host->destroy(6); }},
      {"IOMMU_OPTION", "object 2", [&] { return drop(host->option_get(kabi::kOptionHugePages, 2)); }},
      {"IOMMU_OPTION", "object 2", [&] { return host->option_set(kabi::kOptionHugePages, 2, 0); }},
  };
  for (const auto& c : cases) {
    auto r = c.call();
    ASSERT_FALSE(r) << c.where;
    EXPECT_EQ(r.error().err, ENOTTY) << r.error().to_string();
    EXPECT_EQ(r.error().where, c.where) << r.error().to_string();
    EXPECT_TRUE(Says(r.error(), c.ids)) << c.where;
    EXPECT_TRUE(Says(r.error(), fmt::format("this kernel has no {} (added in Linux", c.where)));
    EXPECT_TRUE(Says(r.error(), "or the fd is not an iommufd"));
  }
}

TEST(KernelHostCalls, VeventqAllocNamesTheReleaseThatAddedIt) {
  auto host = fake_host();
  ASSERT_TRUE(host);
  auto r = host->veventq_alloc(6, 1, 64);
  ASSERT_FALSE(r);
  EXPECT_TRUE(Says(r.error(), "added in Linux 6.15; running " + host->kernel_release()));
}

TEST(KernelHostCalls, InvalidateThatNeverReachedTheKernelHandledNothing) {
  // iommufd writes entry_num back only from its handler; an unknown ioctl leaves the input count in place,
  // which must not be reported as handled.
  auto host = fake_host();
  ASSERT_TRUE(host);
  std::array<std::byte, 32> cmds{};
  auto out = host->hwpt_invalidate({.id = 6, .entry_len = 16, .entry_num = 2, .data = cmds});
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->err, ENOTTY);
  EXPECT_EQ(out.error->where, "IOMMU_HWPT_INVALIDATE");
  EXPECT_EQ(out.handled, 0U);
  EXPECT_TRUE(Says(*out.error, "through 6"));
}

// The seam's rule, the same on both backends (host.hpp invalidate_data_error): data shorter than entry_len x
// entry_num never reaches the kernel, which would read past it; EFAULT, as copy_from_user says for memory the
// kernel cannot read (iommu_copy_struct_from_full_user_array).
TEST(KernelHostCalls, InvalidateRefusesDataShorterThanItsEntries) {
  auto host = fake_host();
  ASSERT_TRUE(host);
  std::array<std::byte, 16> one{};
  auto out = host->hwpt_invalidate({.id = 6, .entry_len = 16, .entry_num = 2, .data = one});
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->err, EFAULT);
  EXPECT_EQ(out.handled, 0U);
  EXPECT_TRUE(Says(*out.error, "2 entries of 16 bytes need 32 bytes, data has 16"));
}

// Host::read_veventq on the kernel is read(2) of the vEVENTQ fd: the kernel's own answers (whole records, 0 when
// empty; drivers/iommu/iommufd/eventq.c iommufd_veventq_fops_read). A pipe stands in for the fd here.
TEST(KernelHostCalls, ReadVeventqReadsTheFd) {
  auto host = fake_host();
  ASSERT_TRUE(host);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  UniqueFd r(p[0]), w(p[1]);
  std::array<std::byte, 88> records{};  // two events and a LOST_EVENTS header
  records[0] = std::byte{0x5a};
  ASSERT_EQ(::write(w.get(), records.data(), records.size()), 88);
  w.reset();
  std::array<std::byte, 4096> buf{};
  auto n = host->read_veventq(r.get(), buf);
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(*n, 88U);
  EXPECT_EQ(buf[0], std::byte{0x5a});
  n = host->read_veventq(r.get(), buf);
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(*n, 0U) << "nothing left: 0, as the kernel's empty vEVENTQ reads";
}

TEST(KernelHostCalls, ReadVeventqErrorsCarryTheErrno) {
  auto host = fake_host();
  ASSERT_TRUE(host);
  std::array<std::byte, 64> buf{};
  auto n = host->read_veventq(-1, buf);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().err, EBADF);
  EXPECT_EQ(n.error().where, "read(vEVENTQ)");
}

TEST(KernelHostCalls, DeviceEntryPointsOnAnUnboundDeviceSayBindFirst) {
  auto host = fake_host();
  ASSERT_TRUE(host);
  const std::vector<std::pair<std::string_view, std::function<Result<void>()>>> cases = {
      {"VFIO_DEVICE_ATTACH_IOMMUFD_PT", [&] { return host->attach(9, 2); }},
      {"VFIO_DEVICE_DETACH_IOMMUFD_PT", [&] { return host->detach(9); }},
      {"unbind", [&] { return host->unbind_device(9); }},
      {"VFIO_DEVICE_GET_INFO",
       [&]() -> Result<void> {
         VSMMU_TRY(host->device_info(9));
         return {};
       }},
      {"VFIO_DEVICE_GET_REGION_INFO",
       [&]() -> Result<void> {
         VSMMU_TRY(host->region_info(9, 0));
         return {};
       }},
  };
  for (const auto& [where, call] : cases) {
    auto r = call();
    ASSERT_FALSE(r) << where;
    EXPECT_EQ(r.error().err, ENOENT) << r.error().to_string();
    EXPECT_EQ(r.error().where, where);
    EXPECT_TRUE(Says(r.error(), "device 9 is not bound through this host"));
  }
}

// ---- binding ----

TEST(KernelHostBind, AMissingCdevPathAsksForVfioPciAndTheCdevOption) {
  auto host = fake_host();
  ASSERT_TRUE(host);
  auto r = host->bind_device("/dev/vfio/devices/vfio4242");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, ENOENT);
  EXPECT_EQ(r.error().where, "open");
  EXPECT_TRUE(Says(r.error(),
                   "no such cdev /dev/vfio/devices/vfio4242: is the device bound to vfio-pci and "
                   "CONFIG_VFIO_DEVICE_CDEV=y?"));
}

TEST(KernelHostBind, ABareCdevNameIsLookedUpInTheCdevDirectory) {
  TempDir dir;
  auto host = fake_host({.vfio_devices_dir = dir.path().string()});
  ASSERT_TRUE(host);
  auto r = host->bind_device("vfio7");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, ENOENT);
  EXPECT_TRUE(Says(r.error(), "no such cdev " + (dir.path() / "vfio7").string()));
}

TEST(KernelHostBind, APciAddressIsResolvedThroughSysfs) {
  TempDir dir;
  const fs::path sys = dir.path() / "sys";
  const fs::path dev = dir.path() / "dev";
  fs::create_directories(sys);
  fs::create_directories(dev);
  auto host = fake_host({.pci_devices_dir = sys.string(), .vfio_devices_dir = dev.string()});
  ASSERT_TRUE(host);

  // No such PCI device.
  auto r = host->bind_device("0000:01:00.0");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, ENOENT);
  EXPECT_TRUE(Says(r.error(), "no PCI device 0000:01:00.0"));

  // The device exists but is bound to another driver: no vfio-dev/ directory.
  const fs::path pci = sys / "0000:01:00.0";
  fs::create_directories(pci);
  fs::create_directories(dir.path() / "drivers" / "nvme");
  fs::create_directory_symlink(dir.path() / "drivers" / "nvme", pci / "driver");
  r = host->bind_device("0000:01:00.0");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, ENOENT);
  EXPECT_TRUE(Says(r.error(), "is bound to driver 'nvme'"));
  EXPECT_TRUE(Says(r.error(), "bind it to vfio-pci"));
  EXPECT_TRUE(Says(r.error(), "CONFIG_VFIO_DEVICE_CDEV=y"));

  // Bound to vfio-pci: sysfs names vfio3, whose cdev node is missing; the short form resolves the same.
  fs::create_directories(pci / "vfio-dev" / "vfio3");
  for (const char* name : {"0000:01:00.0", "01:00.0", "0000:01:00.0"}) {
    r = host->bind_device(name);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().err, ENOENT);
    EXPECT_TRUE(Says(r.error(), "no such cdev " + (dev / "vfio3").string())) << name;
  }

  // The node exists but is not a VFIO device: the bind ioctl says so.
  std::ofstream(dev / "vfio3") << "";
  r = host->bind_device("01:00.0");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, ENOTTY);
  EXPECT_EQ(r.error().where, "VFIO_DEVICE_BIND_IOMMUFD");
  EXPECT_TRUE(Says(r.error(), "binding 01:00.0 (" + (dev / "vfio3").string() + ") to /dev/null"));
  EXPECT_TRUE(Says(r.error(), "not a VFIO device cdev"));
}

TEST(KernelHostBind, SomethingThatIsNoDeviceNameIsRefused) {
  auto host = fake_host();
  ASSERT_TRUE(host);
  for (const char* name : {"eth0", "0000:01:00.8", "1:00.0", "vfio", "vfio1a", "0000:01:000.0"}) {
    auto r = host->bind_device(name);
    ASSERT_FALSE(r) << name;
    EXPECT_EQ(r.error().err, EINVAL) << name;
    EXPECT_TRUE(Says(r.error(), "nor a PCI address")) << name;
  }
}

TEST(KernelHostBind, BindingAnFdTakesItAndClosesItOnFailure) {
  auto host = fake_host();
  ASSERT_TRUE(host);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  ::close(p[1]);
  auto r = host->bind_device_fd(p[0]);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, ENOTTY);
  EXPECT_EQ(r.error().where, "VFIO_DEVICE_BIND_IOMMUFD");
  EXPECT_TRUE(Says(r.error(), fmt::format("binding fd {}", p[0])));
  EXPECT_EQ(::fcntl(p[0], F_GETFD), -1);  // closed by the host
  EXPECT_EQ(errno, EBADF);

  auto bad = host->bind_device_fd(-1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().err, EBADF);
}

// ---- what an errno means for one call on arm-smmu-v3 ----

TEST(KernelErrors, ViommuAllocEopnotsuppPointsAtNestingAndCoherency) {
  // arm-smmu-v3-iommufd.c: vIOMMU alloc needs FEAT_NESTING and (CANWBS on the root complex or S2FWB).
  const auto m = kernel_errors::ioctl_failed("IOMMU_VIOMMU_ALLOC", EOPNOTSUPP, "vIOMMU for device 3", "7.2.12");
  EXPECT_EQ(m,
            "vIOMMU for device 3: the SMMU lacks nesting, or the device's root complex has no CANWBS and the "
            "SMMU no S2FWB: see `vsmmu probe`");
}

TEST(KernelErrors, ViommuUnsupportedNamesTheRuleTheIdrsBreak) {
  // arm_smmu_get_viommu_size(): FEAT_NESTING, then S2FWB or CANWBS. QEMU's emulated SMMUv3 (GET_HW_INFO in the
  // e2e guest): idr0 0x0d44101b (S1P, S2P), idr3 0x00001414 (FWB=0).
  HwInfo qemu{.type = uapi::kHwInfoTypeArmSmmuv3, .idr = {0x0d44101b, 0x02730010, 0, 0x00001414, 0, 0x74}};
  const auto no_fwb = kernel_errors::viommu_unsupported(&qemu);
  EXPECT_NE(no_fwb.find("no S2FWB (IDR3.FWB=0)"), std::string::npos) << no_fwb;
  EXPECT_NE(no_fwb.find("CANWBS"), std::string::npos) << no_fwb;
  EXPECT_NE(no_fwb.find("vsmmu iort patch --canwbs"), std::string::npos) << no_fwb;

  HwInfo s1_only = qemu;
  s1_only.idr[0] = smmu::Idr0::of(qemu.idr[0]).set(smmu::Idr0::S2P, false).value();
  EXPECT_NE(kernel_errors::viommu_unsupported(&s1_only).find("IDR0.S1P=1, IDR0.S2P=0"), std::string::npos);

  HwInfo fwb = qemu;
  fwb.idr[3] = smmu::Idr3::of(qemu.idr[3]).set(smmu::Idr3::FWB, true).value();
  EXPECT_NE(kernel_errors::viommu_unsupported(&fwb).find("CONFIG_ARM_SMMU_V3_IOMMUFD"), std::string::npos);

  EXPECT_NE(kernel_errors::viommu_unsupported(nullptr).find("no SMMUv3 hardware information"), std::string::npos);
}

TEST(KernelErrors, HwptAllocEopnotsuppDependsOnTheFlags) {
  using namespace uapi;
  // Upstream refuses NEST_PARENT|DIRTY_TRACKING on any hardware; DIRTY_TRACKING alone needs HTTU.
  EXPECT_NE(kernel_errors::ioctl_failed("IOMMU_HWPT_ALLOC", EOPNOTSUPP, "x", "7.2",
                                        kHwptAllocNestParent | kHwptAllocDirtyTracking)
                .find("this kernel has no nested dirty tracking"),
            std::string::npos);
  EXPECT_NE(kernel_errors::ioctl_failed("IOMMU_HWPT_ALLOC", EOPNOTSUPP, "x", "7.2", kHwptAllocDirtyTracking)
                .find("IDR0.HTTU=2"),
            std::string::npos);
  // Nested: EIO is the vSTE check, EINVAL the 16-byte payload / vIOMMU pt_id rule.
  EXPECT_NE(kernel_errors::ioctl_failed("IOMMU_HWPT_ALLOC", EIO, "x", "7.2", 0, kHwptDataArmSmmuv3).find("vSTE"),
            std::string::npos);
  EXPECT_NE(kernel_errors::ioctl_failed("IOMMU_HWPT_ALLOC", EINVAL, "x", "7.2", 0, kHwptDataArmSmmuv3)
                .find("exactly 16 bytes"),
            std::string::npos);
}

TEST(KernelErrors, InvalidateAndAttachErrorsSayWhatTheDriverWants) {
  EXPECT_NE(kernel_errors::ioctl_failed("IOMMU_HWPT_INVALIDATE", EOPNOTSUPP, "x", "7.2").find("through the vIOMMU"),
            std::string::npos);
  EXPECT_NE(kernel_errors::ioctl_failed("IOMMU_HWPT_INVALIDATE", EIO, "x", "7.2").find("CMD_SYNC"), std::string::npos);
  EXPECT_NE(kernel_errors::ioctl_failed("VFIO_DEVICE_ATTACH_IOMMUFD_PT", ENOENT, "x", "7.2")
                .find("IOMMU_VDEVICE_ALLOC first"),
            std::string::npos);
  EXPECT_NE(kernel_errors::ioctl_failed("IOMMU_DESTROY", EBUSY, "x", "7.2").find("still in use"), std::string::npos);
}

TEST(KernelErrors, AnErrnoWithoutASpecificMeaningGetsTheGenericOne) {
  EXPECT_EQ(kernel_errors::ioctl_failed("IOMMU_IOAS_ALLOC", ENOMEM, "allocating an IOAS", "7.2"),
            "allocating an IOAS: the kernel ran out of memory");
  EXPECT_NE(kernel_errors::ioctl_failed("IOMMU_IOAS_MAP", E2BIG, "x", "6.13.1").find("running 6.13.1"),
            std::string::npos);
}

}  // namespace
}  // namespace vsmmu::host
