// e2e_vsmmu: the project's nested vSMMU on the real arm-smmu-v3 + iommufd driver, in the e2e guest (docs/e2e.md),
// with QEMU's edu device (bound to vfio-pci by the guest's init) as the DMA master. Everything host-side goes
// through KernelHost, GuestMemory and VirtualSmmu, driven by the scripted guest driver (GuestHarness); this file
// only drives edu through its VFIO regions. The flow is tests/e2e/nested_dma_flow.hpp, which the sim test runs
// on the "qemu-virt" profile too. Prints one PASS/FAIL/INFO line per step; exits 1 if any step failed.
//
// Usage: e2e_vsmmu [--device /dev/vfio/devices/vfio0] [--vsid 0x10]     (boot with the CANWBS IORT override)
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#include "host/handles.hpp"
#include "host/kernel/kernel_host.hpp"
#include "tests/e2e/nested_dma_flow.hpp"

namespace {

using namespace vsmmu;
using Clock = std::chrono::steady_clock;

// QEMU's edu device (hw/misc/edu.c; docs/e2e.md): BAR0 registers, a 4 KiB buffer at device address 0x40000.
constexpr std::uint32_t kBar0 = 0;            // VFIO_PCI_BAR0_REGION_INDEX
constexpr std::uint32_t kConfig = 7;          // VFIO_PCI_CONFIG_REGION_INDEX
constexpr std::uint64_t kPciCommand = 0x04;   // PCI_COMMAND: bit 1 memory space, bit 2 bus master
constexpr std::uint16_t kMemoryAndMaster = 0x0006;
constexpr std::uint64_t kEduId = 0x00, kEduSrc = 0x80, kEduDst = 0x88, kEduCount = 0x90, kEduCmd = 0x98;
constexpr std::uint64_t kEduStart = 1, kEduToRam = 2;  // command bits: run; direction buffer -> RAM (64-bit)
constexpr std::uint64_t kEduBuffer = 0x40000;

class Edu final : public e2e::CopyDevice {
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
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (reg(kEduCmd) & kEduStart) {
      if (Clock::now() > deadline) return fail(ETIMEDOUT, "edu", "{}: DMA {:#x} -> {:#x} did not finish in 10 s", name_, src, dst);
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

// Open fds and mappings of this process: equal before and after means nothing leaked.
std::size_t count_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}
std::size_t count_mappings() {
  std::ifstream maps("/proc/self/maps");
  std::size_t n = 0;
  for (std::string line; std::getline(maps, line);) ++n;
  return n;
}

int run(const std::string& device, std::uint32_t vsid) {
  e2e::Report report([](const e2e::StepResult& s) { fmt::print("{}\n", e2e::format_step(s)); std::fflush(stdout); });
  const std::size_t fds_before = count_fds();
  const std::size_t maps_before = count_mappings();
  const auto start = Clock::now();
  {
    auto opened = host::KernelHost::open();
    if (!report.check(opened.has_value(), "open /dev/iommu", opened ? "opened" : opened.error().to_string())) return 1;
    auto& host = **opened;
    report.note("kernel", host.kernel_release());
    host::UniqueFd fd(::open(device.c_str(), O_RDWR | O_CLOEXEC));
    if (!report.check(static_cast<bool>(fd), fmt::format("open {}", device), fd ? "opened" : std::strerror(errno))) return 1;
    Edu edu(host, fd.get(), device);
    e2e::FlowOptions o;
    // The vSMMU takes over a dup of our fd; ours stays for edu's regions (the same open file, bound by it).
    o.bind = [&] { return nesting::DeviceSpec{"", ::dup(fd.get()), vsid}; };
    o.path = device;
    o.vsid = vsid;
    o.release = [&] {
      edu.unmap();
      fd.reset();  // the last reference to the open file: the kernel unbinds the device now
    };
    e2e::run_nested_dma_flow(host, edu, o, report);
  }
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  report.check(count_fds() == fds_before && count_mappings() == maps_before, "no leaks after teardown",
               fmt::format("{} fds and {} mappings before, {} and {} after", fds_before, maps_before, count_fds(),
                           count_mappings()));
  fmt::print("e2e_vsmmu: {} steps, {} failed, {} ms\n", report.steps().size(), report.failures(), elapsed.count());
  return report.failures() ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string device = "/dev/vfio/devices/vfio0";
  std::uint32_t vsid = 0x10;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--device" && i + 1 < argc) {
      device = argv[++i];
    } else if (a == "--vsid" && i + 1 < argc) {
      vsid = static_cast<std::uint32_t>(std::stoul(argv[++i], nullptr, 0));
    } else {
      fmt::print(stderr, "usage: e2e_vsmmu [--device /dev/vfio/devices/vfioN] [--vsid N]\n");
      return 2;
    }
  }
  return run(device, vsid);
}
