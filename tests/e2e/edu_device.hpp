// QEMU's edu device (hw/misc/edu.c; docs/e2e.md) as the e2e tier's DMA master, driven through its VFIO cdev's
// regions: the guest programs e2e_vsmmu (the vSMMU in process) and e2e_vsmmud (the vSMMU in vsmmud) share it.
#pragma once

#include <linux/vfio.h>  // VFIO_DEVICE_SET_IRQS: in every uapi header since 3.6, unlike the nesting uAPI
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#include "base/try.hpp"
#include "host/handles.hpp"
#include "host/kernel/kernel_host.hpp"
#include "tests/e2e/nested_dma_flow.hpp"

namespace vsmmu::e2e {

// QEMU's edu device (hw/misc/edu.c; docs/e2e.md): BAR0 registers, a 4 KiB buffer at device address 0x40000.
inline constexpr std::uint32_t kBar0 = 0;            // VFIO_PCI_BAR0_REGION_INDEX
inline constexpr std::uint32_t kConfig = 7;          // VFIO_PCI_CONFIG_REGION_INDEX
inline constexpr std::uint64_t kPciCommand = 0x04;   // PCI_COMMAND: bit 1 memory space, bit 2 bus master
inline constexpr std::uint16_t kMemoryAndMaster = 0x0006;
inline constexpr std::uint64_t kEduId = 0x00, kEduSrc = 0x80, kEduDst = 0x88, kEduCount = 0x90, kEduCmd = 0x98;
inline constexpr std::uint64_t kEduStart = 1, kEduToRam = 2;  // command bits: run; direction buffer -> RAM (64-bit)
inline constexpr std::uint64_t kEduBuffer = 0x40000;
// Interrupts: writing 0x60 ORs the value into the interrupt status and, with MSI enabled, sends the MSI at once
// (edu_raise_irq -> msi_notify: one 4-byte write of the MSI data to the MSI address, through the device's
// bus-master address space, so through the SMMU); 0x64 clears the written bits.
inline constexpr std::uint64_t kEduRaiseIrq = 0x60, kEduAckIrq = 0x64;
inline constexpr std::uint32_t kEduTestIrq = 0x1000;  // a status bit of ours, not FACT_IRQ or DMA_IRQ
// The PCI MSI capability (PCI Local Bus 3.0, 6.8.1; include/uapi/linux/pci_regs.h).
inline constexpr std::uint8_t kPciStatus = 0x06, kPciStatusCapList = 0x10, kPciCapabilityList = 0x34;
inline constexpr std::uint8_t kPciCapIdMsi = 0x05;
inline constexpr std::uint16_t kPciMsiFlagsEnable = 0x0001, kPciMsiFlags64Bit = 0x0080;

class Edu final : public CopyDevice, public MsiSource {
 public:
  Edu(host::KernelHost& host, int fd, std::string name) : host_(host), fd_(fd), name_(std::move(name)) {}
  ~Edu() override { unmap(); }
  Edu(const Edu&) = delete;
  Edu& operator=(const Edu&) = delete;

  Result<void> prepare() override {
    auto config = host_.region_info_of(fd_, kConfig, name_);
    auto bar0 = host_.region_info_of(fd_, kBar0, name_);
    if (!config) return std::unexpected(config.error());
    if (!bar0) return std::unexpected(bar0.error());
    // vfio-pci leaves PCI_COMMAND without bus mastering: edu's DMA would silently do nothing.
    std::uint16_t cmd = 0;
    const auto at = static_cast<off_t>(config->offset + kPciCommand);
    if (::pread(fd_, &cmd, sizeof cmd, at) != sizeof cmd) return fail(errno, "pread", "{}: PCI_COMMAND: {}", name_, std::strerror(errno));
    cmd = static_cast<std::uint16_t>(cmd | kMemoryAndMaster);
    if (::pwrite(fd_, &cmd, sizeof cmd, at) != sizeof cmd) return fail(errno, "pwrite", "{}: PCI_COMMAND: {}", name_, std::strerror(errno));
    void* p = ::mmap(nullptr, bar0->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, static_cast<off_t>(bar0->offset));
    if (p == MAP_FAILED) return fail(errno, "mmap", "{}: BAR0 ({:#x} bytes): {}", name_, bar0->size, std::strerror(errno));
    bar_ = static_cast<volatile std::uint64_t*>(p);
    bar_size_ = bar0->size;
    // Registers below 0x80 take 32-bit accesses only.
    const std::uint32_t id = static_cast<volatile std::uint32_t*>(p)[kEduId / 4];
    fmt::print("INFO edu: PCI_COMMAND {:#06x}, BAR0 {:#x} bytes, identification {:#010x}\n", cmd, bar0->size, id);
    if ((id & 0xff) != 0xed) return fail(ENODEV, "edu", "{}: identification {:#x} is not edu's (0x..ed)", name_, id);
    return {};
  }
  Result<void> to_device(std::uint64_t iova, std::uint64_t len) override { return transfer(iova, kEduBuffer, len, 0); }
  Result<void> from_device(std::uint64_t iova, std::uint64_t len) override {
    return transfer(kEduBuffer, iova, len, kEduToRam);
  }

  // VFIO_DEVICE_SET_IRQS on VFIO_PCI_MSI_IRQ_INDEX, one vector, an eventfd as its trigger: vfio-pci allocates the
  // vector (the ITS maps its doorbell through iommu_dma_prepare_msi) and enables the device's MSI capability.
  Result<void> enable_msi() override {
    host::UniqueFd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!efd) return fail(errno, "eventfd", "{}: {}", name_, std::strerror(errno));
    VSMMU_TRY(set_msi_trigger(efd.get()));
    eventfd_ = std::move(efd);
    return {};
  }

  // What the host kernel wrote into the device's MSI capability, read from sysfs (the real config space: the
  // VFIO config region virtualises the MSI address and data fields).
  Result<std::uint64_t> msi_address() override {
    const std::string path = sysfs_dir() + "/config";
    std::ifstream in(path, std::ios::binary);
    std::array<std::uint8_t, 256> c{};
    if (!in.read(reinterpret_cast<char*>(c.data()), c.size()))
      return fail(EIO, "edu", "{}: cannot read 256 bytes of {}", name_, path);
    const auto word = [&](unsigned at) { return static_cast<std::uint16_t>(c[at] | c[at + 1] << 8); };
    const auto dword = [&](unsigned at) { return static_cast<std::uint32_t>(word(at) | word(at + 2) << 16); };
    if (!(word(kPciStatus) & kPciStatusCapList)) return fail(ENODEV, "edu", "{}: no capability list", name_);
    for (unsigned at = c[kPciCapabilityList] & 0xfc, hops = 0; at != 0 && hops < 48; at = c[at + 1] & 0xfc, ++hops) {
      if (c[at] != kPciCapIdMsi) continue;
      const std::uint16_t flags = word(at + 2);
      if (!(flags & kPciMsiFlagsEnable))
        return fail(EINVAL, "edu", "{}: MSI Enable is 0 in the MSI capability at {:#x} (flags {:#06x})", name_, at,
                    flags);
      std::uint64_t addr = dword(at + 4);
      if (flags & kPciMsiFlags64Bit) addr |= std::uint64_t{dword(at + 8)} << 32;
      return addr;
    }
    return fail(ENODEV, "edu", "{}: no MSI capability in {}", name_, path);
  }

  Result<bool> raise_and_wait(std::chrono::milliseconds wait) override {
    if (!bar_) return fail(EINVAL, "edu", "{}: not prepared", name_);
    if (!eventfd_) return fail(EINVAL, "edu", "{}: MSI is not enabled", name_);
    auto* regs = reinterpret_cast<volatile std::uint32_t*>(bar_);  // below 0x80: 32-bit accesses only
    regs[kEduRaiseIrq / 4] = kEduTestIrq;
    pollfd p{eventfd_.get(), POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(wait.count()));
    const int poll_errno = errno;
    regs[kEduAckIrq / 4] = kEduTestIrq;
    if (n < 0) return fail(poll_errno, "poll", "{}: the MSI eventfd: {}", name_, std::strerror(poll_errno));
    if (n == 0) return false;
    std::uint64_t count = 0;
    if (::read(eventfd_.get(), &count, sizeof count) != sizeof count)
      return fail(errno, "read", "{}: the MSI eventfd: {}", name_, std::strerror(errno));
    return true;
  }

  // SET_IRQS with DATA_NONE, count 0: vfio-pci frees the vector and disables the capability.
  Result<void> disable_msi() override {
    if (!eventfd_) return {};
    auto r = set_msi_trigger(-1);
    eventfd_.reset();
    return r;
  }
  // The cdev was closed (the kernel unbound the device) and opened again as `fd`: prepare() again before DMA.
  void use_fd(int fd) {
    unmap();
    fd_ = fd;
  }
  void unmap() {
    if (bar_) ::munmap(const_cast<std::uint64_t*>(bar_), bar_size_);
    bar_ = nullptr;
  }

 private:
  // The cdev's PCI device in sysfs: /sys/class/vfio-dev/vfioN/device.
  std::string sysfs_dir() const {
    const auto slash = name_.find_last_of('/');
    return "/sys/class/vfio-dev/" + name_.substr(slash == std::string::npos ? 0 : slash + 1) + "/device";
  }

  // VFIO_DEVICE_SET_IRQS, VFIO_PCI_MSI_IRQ_INDEX, ACTION_TRIGGER: vector 0 signals `efd`; -1 turns MSI off.
  Result<void> set_msi_trigger(int efd) {
    vfio_irq_set head{};
    head.argsz = sizeof head + (efd >= 0 ? sizeof(std::int32_t) : 0);
    head.flags = VFIO_IRQ_SET_ACTION_TRIGGER | (efd >= 0 ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE);
    head.index = VFIO_PCI_MSI_IRQ_INDEX;
    head.start = 0;
    head.count = efd >= 0 ? 1 : 0;
    alignas(vfio_irq_set) std::array<std::byte, sizeof(vfio_irq_set) + sizeof(std::int32_t)> buf{};
    std::memcpy(buf.data(), &head, sizeof head);
    const std::int32_t fd32 = efd;
    std::memcpy(buf.data() + sizeof head, &fd32, sizeof fd32);
    if (::ioctl(fd_, VFIO_DEVICE_SET_IRQS, buf.data()) != 0)
      return fail(errno, "VFIO_DEVICE_SET_IRQS", "{}: MSI {}: {}", name_, efd >= 0 ? "on with an eventfd" : "off",
                  std::strerror(errno));
    return {};
  }

  std::uint64_t reg(std::uint64_t off) const { return bar_[off / 8]; }
  void set(std::uint64_t off, std::uint64_t v) { bar_[off / 8] = v; }

  // One DMA; about 90 ms under TCG (edu's timer), so poll the run bit.
  Result<void> transfer(std::uint64_t src, std::uint64_t dst, std::uint64_t len, std::uint64_t dir) {
    if (!bar_) return fail(EINVAL, "edu", "{}: not prepared", name_);
    set(kEduSrc, src);
    set(kEduDst, dst);
    set(kEduCount, len);
    set(kEduCmd, kEduStart | dir);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (reg(kEduCmd) & kEduStart) {
      if (std::chrono::steady_clock::now() > deadline) return fail(ETIMEDOUT, "edu", "{}: DMA {:#x} -> {:#x} did not finish in 10 s", name_, src, dst);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return {};
  }

  host::KernelHost& host_;
  int fd_;
  std::string name_;
  volatile std::uint64_t* bar_ = nullptr;
  std::size_t bar_size_ = 0;
  host::UniqueFd eventfd_;  // the MSI trigger while MSI is on
};

// The e2e programs' arguments: [--device /dev/vfio/devices/vfioN] [--vsid N]; nullopt (usage printed) if wrong.
struct DeviceArgs {
  std::string device = "/dev/vfio/devices/vfio0";
  std::uint32_t vsid = 0x10;
};
inline std::optional<DeviceArgs> parse_device_args(int argc, char** argv, std::string_view program) {
  DeviceArgs a;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--device" && i + 1 < argc) {
      a.device = argv[++i];
    } else if (arg == "--vsid" && i + 1 < argc) {
      a.vsid = static_cast<std::uint32_t>(std::stoul(argv[++i], nullptr, 0));
    } else {
      fmt::print(stderr, "usage: {} [--device /dev/vfio/devices/vfioN] [--vsid N]\n", program);
      return std::nullopt;
    }
  }
  return a;
}

}  // namespace vsmmu::e2e
