// QEMU's edu device (hw/misc/edu.c; docs/e2e.md) as the e2e tier's DMA master, driven through its VFIO cdev's
// regions: the guest programs e2e_vsmmu (the vSMMU in process) and e2e_vsmmud (the vSMMU in vsmmud) share it.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include <fmt/format.h>

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

class Edu final : public CopyDevice {
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
