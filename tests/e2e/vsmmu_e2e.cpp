// e2e_vsmmu: the project's nested vSMMU on the real arm-smmu-v3 + iommufd driver, in the e2e guest (docs/e2e.md),
// with QEMU's edu device (bound to vfio-pci by the guest's init) as the DMA master. Everything host-side goes
// through KernelHost, GuestMemory and VirtualSmmu, driven by the scripted guest driver (GuestHarness); this file
// only drives edu through its VFIO regions and its MSI (VFIO_DEVICE_SET_IRQS). The flow is
// tests/e2e/nested_dma_flow.hpp, which the sim test runs on the "qemu-virt" profile too. Prints one
// PASS/FAIL/INFO line per step; exits 1 if any step failed.
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
#include "tests/e2e/edu_device.hpp"
#include "tests/e2e/nested_dma_flow.hpp"

namespace {

using namespace vsmmu;
using Clock = std::chrono::steady_clock;

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
    e2e::Edu edu(host, fd.get(), device);
    e2e::FlowOptions o;
    // The vSMMU takes over a dup of our fd; ours stays for edu's regions (the same open file, bound by it).
    o.bind = [&] {
      if (!fd) {  // released for a new binding (the flow's migration): open the cdev again, for edu too
        fd = host::UniqueFd(::open(device.c_str(), O_RDWR | O_CLOEXEC));
        report.check(static_cast<bool>(fd), fmt::format("open {} again", device), fd ? "opened" : std::strerror(errno));
        edu.use_fd(fd.get());
      }
      return nesting::DeviceSpec{"", ::dup(fd.get()), vsid};
    };
    o.path = device;
    o.vsid = vsid;
    o.msi = &edu;  // step 6: edu's MSI through the guest's stage 1
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
  const auto args = vsmmu::e2e::parse_device_args(argc, argv, "e2e_vsmmu");
  if (!args) return 2;
  return run(args->device, args->vsid);
}
