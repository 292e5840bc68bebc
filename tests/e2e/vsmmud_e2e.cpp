// e2e_vsmmud: the main flow through vsmmud on the real arm-smmu-v3 + iommufd driver, in the e2e guest
// (docs/e2e.md). This program is the VMM: it starts `vsmmud --host kernel` (beside it in /e2e/bin), hands it
// guest RAM (a memfd) and edu's VFIO cdev fd, and plays the guest (the scripted arm-smmu-v3 driver) through
// MMIO over the socket; the daemon does every host call. Steps:
//   1. the daemon binds edu and derives the guest's ID registers from GET_HW_INFO (CREATE_VSMMU);
//   2. stage 1 maps VA A (a pattern) and VA B; edu copies A -> its buffer -> B; B holds the pattern;
//   3. unmap B + TLBI_NH_VA + CMD_SYNC (one HWPT_INVALIDATE in the daemon): edu's copy to B is blocked, and the
//      F_TRANSLATION with the vSID reaches the guest's event queue, written by the daemon, which signals the
//      event-queue eventfd on its own;
//   4. DESTROY_VSMMU leaves the daemon holding no host object; SIGTERM stops it with exit status 0.
// Prints one PASS/FAIL/INFO line per step; exits 1 if any step failed.
//
// Usage: e2e_vsmmud [--device /dev/vfio/devices/vfio0] [--vsid 0x10]     (boot with the CANWBS IORT override)
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "host/handles.hpp"
#include "host/kernel/kernel_host.hpp"
#include "service/client/client.hpp"
#include "service/client/remote_vsmmu.hpp"
#include "smmu/event.hpp"
#include "testing/guest_harness.hpp"
#include "tests/e2e/edu_device.hpp"
#include "tests/e2e/nested_dma_flow.hpp"

namespace {

using namespace vsmmu;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kRamGpa = 0x4000'0000, kRamSize = 64ULL << 20;
constexpr std::uint64_t kVaA = 0x10'0000'0000ULL, kVaB = 0x10'0001'0000ULL;
constexpr std::uint16_t kAsid = 1;
constexpr const char* kSocket = "/tmp/vsmmud.sock";

struct Ram {
  host::UniqueFd fd;
  void* addr = nullptr;
  smmu::RegionMemory view;
  ~Ram() {
    if (addr) ::munmap(addr, kRamSize);
  }
};

pid_t start_daemon(const std::string& bin) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(bin.c_str(), "vsmmud", "--host", "kernel", "--socket", kSocket, "--log-level", "info", static_cast<char*>(nullptr));
    fmt::print(stderr, "e2e_vsmmud: cannot run {}: {}\n", bin, std::strerror(errno));
    ::_exit(127);
  }
  for (int i = 0; i < 1000 && !std::filesystem::exists(kSocket); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return pid;
}

int stop_daemon(pid_t pid) {
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void run(e2e::Report& report, const std::string& daemon_bin, const std::string& device, std::uint32_t vsid) {
  const pid_t daemon = start_daemon(daemon_bin);
  if (!report.check(std::filesystem::exists(kSocket), "vsmmud --host kernel listens", fmt::format("{} on {}", daemon_bin, kSocket))) {
    stop_daemon(daemon);
    return;
  }
  {
    auto client = service::Client::connect(kSocket, service::Client::default_offer(), std::chrono::seconds(60));
    if (!report.check(client.has_value(), "HELLO", client ? fmt::format("version {}, kernel host", (*client)->hello().version)
                                                         : client.error().to_string()))
      return (void)stop_daemon(daemon);
    auto& c = **client;
    report.check(c.hello().host == static_cast<std::uint32_t>(service::HostKind::kernel), "the daemon drives the kernel's iommufd",
                 fmt::format("host kind {}", c.hello().host));

    Ram ram;
    ram.fd = host::UniqueFd(::memfd_create("e2e-guest-ram", MFD_CLOEXEC));
    if (!ram.fd || ::ftruncate(ram.fd.get(), kRamSize) != 0) return (void)report.check(false, "guest RAM", std::strerror(errno));
    ram.addr = ::mmap(nullptr, kRamSize, PROT_READ | PROT_WRITE, MAP_SHARED, ram.fd.get(), 0);
    if (ram.addr == MAP_FAILED) {
      ram.addr = nullptr;
      return (void)report.check(false, "guest RAM", std::strerror(errno));
    }
    (void)ram.view.add_borrowed(kRamGpa, std::span(static_cast<std::byte*>(ram.addr), kRamSize));
    auto added = c.add_region(kRamGpa, kRamSize, ram.fd.get(), 0);
    if (!report.check(added.has_value(), "ADD_REGION: guest RAM into the daemon's IOAS",
                      added ? fmt::format("[{:#x}, +{:#x})", kRamGpa, kRamSize) : added.error().to_string()))
      return (void)stop_daemon(daemon);

    host::UniqueFd fd(::open(device.c_str(), O_RDWR | O_CLOEXEC));
    if (!report.check(static_cast<bool>(fd), fmt::format("open {}", device), fd ? "opened" : std::strerror(errno)))
      return (void)stop_daemon(daemon);
    service::VsmmuOptions options;
    options.name = "vsmmu0";
    auto remote = service::RemoteVsmmu::create(c, options, {vsid, "", fd.get()});
    if (!report.check(remote.has_value(), "CREATE_VSMMU with edu's cdev fd",
                      remote ? fmt::format("handle {}, IDR0 {:#010x}", (*remote)->handle(), (*remote)->id_registers().idr0.value())
                             : remote.error().to_string()))
      return (void)stop_daemon(daemon);
    service::RemoteVsmmu& vsmmu = **remote;
    const int eventq_fd = vsmmu.irq_fd(smmu::Irq::eventq);

    // edu's regions through our fd: the same open file the daemon bound to its iommufd.
    auto region_host = host::KernelHost::open();
    if (!report.check(region_host.has_value(), "open /dev/iommu (edu's region info)", region_host ? "opened" : region_host.error().to_string()))
      return (void)stop_daemon(daemon);
    e2e::Edu edu(**region_host, fd.get(), device);
    if (auto p = edu.prepare(); !report.check(p.has_value(), "edu ready (bound by the daemon)", p ? "BAR0 mapped" : p.error().to_string()))
      return (void)stop_daemon(daemon);

    testkit::GuestHarnessConfig config;
    auto guest = testkit::GuestHarness::create_remote(std::move(*remote), ram.view, kRamGpa, kRamSize, config);
    if (!report.check(guest.has_value(), "guest driver probe through MMIO over the socket",
                      guest ? "SMMUEN set" : guest.error().to_string()))
      return (void)stop_daemon(daemon);
    auto& g = **guest;

    auto a = g.alloc(e2e::CopyDevice::kBufferBytes), b = g.alloc(e2e::CopyDevice::kBufferBytes);
    if (!a || !b) return (void)report.check(false, "guest buffers", "out of guest RAM");
    auto pa = g.bytes(*a, e2e::CopyDevice::kBufferBytes);
    for (std::size_t i = 0; i < pa.size(); ++i) pa[i] = static_cast<std::byte>(i * 7 + 1);
    auto mapped = g.map(kAsid, kVaA, *a, e2e::CopyDevice::kBufferBytes);
    if (mapped) mapped = g.map(kAsid, kVaB, *b, e2e::CopyDevice::kBufferBytes);
    if (mapped) mapped = g.attach(vsid, kAsid);
    if (!report.check(mapped.has_value(), "stage 1: VA A and VA B mapped, CD + STE installed",
                      mapped ? "the daemon attached edu to a nested HWPT" : mapped.error().to_string()))
      return (void)stop_daemon(daemon);

    auto copied = edu.to_device(kVaA, e2e::CopyDevice::kBufferBytes);
    if (copied) copied = edu.from_device(kVaB, e2e::CopyDevice::kBufferBytes);
    const auto pb = g.bytes(*b, e2e::CopyDevice::kBufferBytes);
    report.check(copied && std::memcmp(pa.data(), pb.data(), pa.size()) == 0, "DMA through both stages: A -> edu -> B",
                 copied ? "B holds A's pattern" : copied.error().to_string());

    const auto before = vsmmu.stats();
    auto unmapped = g.unmap(kAsid, kVaB, e2e::CopyDevice::kBufferBytes, /*invalidate=*/true);
    const auto after = vsmmu.stats();
    report.check(unmapped && after.invalidate_calls > before.invalidate_calls, "unmap B + TLBI_NH_VA + CMD_SYNC",
                 unmapped ? fmt::format("{} HWPT_INVALIDATE call(s) in the daemon", after.invalidate_calls - before.invalidate_calls)
                          : unmapped.error().to_string());

    for (std::size_t i = 0; i < pa.size(); ++i) pa[i] = std::byte{0x5a};
    auto blocked = edu.to_device(kVaA, e2e::CopyDevice::kBufferBytes);
    if (blocked) blocked = edu.from_device(kVaB, e2e::CopyDevice::kBufferBytes);
    bool kept = true;
    for (std::size_t i = 0; i < pb.size(); ++i) kept = kept && pb[i] == static_cast<std::byte>(i * 7 + 1);
    report.check(blocked.has_value() && kept, "edu's copy to the unmapped B is blocked", kept ? "B unchanged" : "B was written");

    pollfd p{eventq_fd, POLLIN, 0};
    const bool signalled = ::poll(&p, 1, 5000) == 1;
    report.check(signalled, "the daemon signals the event-queue eventfd", signalled ? "within 5 s" : "nothing in 5 s");
    auto ev = g.events();
    bool found = false;
    if (ev)
      for (const auto& r : ev->records)
        found = found || (r.get(smmu::Event::ID) == smmu::EventId::F_TRANSLATION && r.get(smmu::Event::SID) == vsid);
    report.check(found, "F_TRANSLATION with the vSID in the guest's event queue",
                 ev ? fmt::format("{} record(s) read", ev->records.size()) : ev.error().to_string());

    const auto objects = vsmmu.host_objects();
    report.note("host objects of the vSMMU", objects ? fmt::format("{}", *objects) : objects.error().to_string());
    edu.unmap();
    fd.reset();      // the daemon's copy is then the open file's last reference: closing it unbinds edu
    guest->reset();  // DESTROY_VSMMU: the daemon releases the vDEVICE, HWPTs, vIOMMU, vEVENTQ and closes edu
    auto st = c.daemon_stats();
    report.check(st && st->host_objects == 0, "DESTROY_VSMMU leaves no host object in the daemon",
                 st ? fmt::format("{} held by vSMMUs", st->host_objects) : st.error().to_string());
    (void)c.remove_region(kRamGpa);
  }
  const int status = stop_daemon(daemon);
  report.check(status == 0, "vsmmud stops on SIGTERM", fmt::format("exit status {}", status));
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
      fmt::print(stderr, "usage: e2e_vsmmud [--device /dev/vfio/devices/vfioN] [--vsid N]\n");
      return 2;
    }
  }
  std::error_code ec;
  const auto daemon = (std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / "vsmmud").string();
  vsmmu::e2e::Report report([](const vsmmu::e2e::StepResult& s) {
    fmt::print("{}\n", vsmmu::e2e::format_step(s));
    std::fflush(stdout);
  });
  const auto start = Clock::now();
  run(report, daemon, device, vsid);
  fmt::print("e2e_vsmmud: {} steps, {} failed, {} ms\n", report.steps().size(), report.failures(),
             std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
  return report.failures() ? 1 : 0;
}
