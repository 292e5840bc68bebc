// e2e_vsmmud: the main flow through vsmmud on the real arm-smmu-v3 + iommufd driver, in the e2e guest
// (docs/e2e.md). This program is the VMM: it starts `vsmmud --host kernel` (beside it in /e2e/bin), hands it
// guest RAM (a memfd) and edu's VFIO cdev fd, and plays the guest (the scripted arm-smmu-v3 driver) through
// MMIO over the socket; the daemon does every host call. Steps:
//   1. the daemon binds edu and derives the guest's ID registers from GET_HW_INFO (CREATE_VSMMU);
//   2. stage 1 maps VA A (a pattern) and VA B; edu copies A -> its buffer -> B; B holds the pattern;
//   3. unmap B + TLBI_NH_VA + CMD_SYNC (one HWPT_INVALIDATE in the daemon): edu's copy to B is blocked, and the
//      F_TRANSLATION with the vSID reaches the guest's event queue, written by the daemon, which signals the
//      event-queue eventfd on its own;
//   4. edu's MSI: the host's window (VSMMU_STATS) not in the guest's stage 1, the MSI is blocked, the guest
//      reads F_TRANSLATION at the MSI address and the daemon's vSMMU counts an MSI-window fault; with the window
//      mapped 1:1 the MSI arrives;
//   5. DESTROY_VSMMU leaves the daemon holding only the connection's IOAS; SIGTERM stops it with exit status 0.
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

#include "base/try.hpp"
#include "host/handles.hpp"
#include "host/kernel/kernel_host.hpp"
#include "nesting/notice.hpp"
#include "service/client/client.hpp"
#include "service/client/remote_vsmmu.hpp"
#include "smmu/event.hpp"
#include "smmu/format.hpp"
#include "testing/daemon_process.hpp"
#include "testing/guest_harness.hpp"
#include "testing/memfd_ram.hpp"
#include "tests/e2e/edu_device.hpp"
#include "tests/e2e/nested_dma_flow.hpp"

namespace {

using namespace vsmmu;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kRamGpa = 0x4000'0000, kRamSize = 64ULL << 20;
constexpr std::uint64_t kVaA = 0x200000, kVaB = 0x300000;  // below edu's 28-bit DMA mask (hw/misc/edu.c)
constexpr std::uint16_t kAsid = 1;

// Every record the guest's event queue receives until `first` passes with none, or 300 ms with no more after one.
Result<smmu::driver::DrainedEvents> collect_events(testkit::GuestHarness& g, std::chrono::milliseconds first) {
  smmu::driver::DrainedEvents all;
  auto deadline = Clock::now() + first;
  while (Clock::now() < deadline) {
    VSMMU_TRY_ASSIGN(auto ev, g.events());
    if (!ev.records.empty()) deadline = Clock::now() + std::chrono::milliseconds(300);
    all.overflow |= ev.overflow;
    all.records.insert(all.records.end(), ev.records.begin(), ev.records.end());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return all;
}

// Step 6 of the main flow through the daemon: edu's MSI under a guest whose stage 1 does not map the host's MSI
// window (the window as the daemon's vSMMU read it, VSMMU_STATS) is blocked, the guest reads F_TRANSLATION at
// the MSI address, and the daemon's vSMMU counts it (msi_window_faults); with the window mapped 1:1 the MSI
// arrives.
void msi_through_the_daemon(e2e::Report& report, service::Client& c, service::RemoteVsmmu& vsmmu,
                            testkit::GuestHarness& g, e2e::Edu& edu, std::uint32_t vsid) {
  auto st = c.vsmmu_stats(vsmmu.handle());
  if (!report.check(st && st->msi_windows == 1 && st->msi_window_size != 0, "VSMMU_STATS: the host's MSI window",
                    st ? fmt::format("{} window(s), the first [{:#x}, +{:#x})", st->msi_windows, st->msi_window_base,
                                     st->msi_window_size)
                       : st.error().to_string()))
    return;
  const host::IovaRange window{st->msi_window_base, st->msi_window_base + st->msi_window_size - 1};
  (void)collect_events(g, std::chrono::milliseconds(200));  // what is left of step 3's faults
  if (!report.check(edu.enable_msi().has_value(), "MSI on (VFIO_DEVICE_SET_IRQS on the VMM's fd)", "an eventfd as its trigger"))
    return;
  auto addr = edu.msi_address();
  if (report.check(addr && window.contains(*addr), "the host put edu's MSI address in the window",
                   addr ? fmt::format("MSI address {:#x}, window {}", *addr, host::to_string(window))
                        : addr.error().to_string())) {
    const auto faults_before = vsmmu.stats().msi_window_faults;
    std::vector<nesting::Notice> notices;
    vsmmu.set_notice_handler([&](const nesting::Notice& n) { notices.push_back(n); });
    auto blocked = edu.raise_and_wait(std::chrono::milliseconds(2000));
    report.check(blocked && !*blocked, "without the window in stage 1 the MSI is blocked",
                 blocked ? (*blocked ? "the eventfd fired" : "no eventfd signal in 2000 ms") : blocked.error().to_string());
    auto ev = collect_events(g, std::chrono::milliseconds(3000));
    const bool one = ev && ev->records.size() == 1 &&
                     ev->records[0].get(smmu::Event::ID) == smmu::EventId::F_TRANSLATION &&
                     ev->records[0].get(smmu::Event::SID) == vsid &&
                     ev->records[0].get(smmu::Event::InputAddr) / 4096 == *addr / 4096;
    report.check(one, "F_TRANSLATION at the MSI address in the guest's event queue",
                 ev ? fmt::format("{} record(s){}", ev->records.size(),
                                  ev->records.empty() ? "" : "; first: " + smmu::to_string(ev->records.front()))
                    : ev.error().to_string());
    // The daemon's vSMMU diagnosed it (VirtualSmmu::diagnose_msi_fault) and sent the line as a NOTICE (op 14),
    // which RemoteVsmmu::process_events hands to the handler.
    const auto faults = vsmmu.stats().msi_window_faults - faults_before;
    report.check(faults == 1, "the daemon's vSMMU counted an MSI-window fault",
                 fmt::format("msi_window_faults +{} (expected +1)", faults));
    auto pumped = vsmmu.process_events();
    const bool told = pumped && notices.size() == 1 && notices[0].kind == nesting::NoticeKind::msi_window_fault &&
                      notices[0].vsid == vsid &&
                      notices[0].text.find(fmt::format("{:#x}", *addr)) != std::string::npos &&
                      notices[0].text.find(host::to_string(window)) != std::string::npos;
    report.check(told, "the VMM got one NOTICE naming the vSID, the MSI address and the window",
                 !pumped ? pumped.error().to_string()
                         : fmt::format("{} notice(s){}", notices.size(), notices.empty() ? "" : ": " + notices[0].text));
    vsmmu.set_notice_handler({});
    auto mapped = g.map(kAsid, window.start, window.start, window.size());
    if (report.check(mapped.has_value(), "stage-1 1:1 map of the window", mapped ? "done" : mapped.error().to_string())) {
      auto arrived = edu.raise_and_wait(std::chrono::milliseconds(5000));
      report.check(arrived && *arrived, "with the window mapped 1:1 the MSI arrives",
                   arrived ? (*arrived ? "the eventfd fired" : "no eventfd signal in 5000 ms") : arrived.error().to_string());
    }
  }
  auto off = edu.disable_msi();
  report.check(off.has_value(), "MSI off", off ? "done" : off.error().to_string());
}

void run(e2e::Report& report, const std::string& device, std::uint32_t vsid) {
  std::error_code ec;
  auto bin = testkit::DaemonProcess::find_beside(std::filesystem::read_symlink("/proc/self/exe", ec).string());
  auto started = bin ? testkit::DaemonProcess::start(*bin, {"--host", "kernel", "--log-level", "info"})
                     : Result<testkit::DaemonProcess>(std::unexpected(bin.error()));
  if (!report.check(started.has_value(), "vsmmud --host kernel listens",
                    started ? fmt::format("{} on {}", *bin, started->socket()) : started.error().to_string()))
    return;
  testkit::DaemonProcess& daemon = *started;
  {
    auto client = service::Client::connect(daemon.socket(), service::Client::default_offer(), std::chrono::seconds(60));
    if (!report.check(client.has_value(), "HELLO", client ? fmt::format("version {}, kernel host", (*client)->hello().version)
                                                         : client.error().to_string()))
      return;  // the daemon is stopped by its destructor
    auto& c = **client;
    report.check(c.hello().host == static_cast<std::uint32_t>(service::HostKind::kernel), "the daemon drives the kernel's iommufd",
                 fmt::format("host kind {}", c.hello().host));

    auto ram = testkit::MemfdRam::create(kRamGpa, kRamSize, "e2e-guest-ram");
    if (!ram) return (void)report.check(false, "guest RAM", ram.error().to_string());
    auto added = c.add_region(kRamGpa, kRamSize, (*ram)->fd(), 0);
    if (!report.check(added.has_value(), "ADD_REGION: guest RAM into the daemon's IOAS",
                      added ? fmt::format("[{:#x}, +{:#x})", kRamGpa, kRamSize) : added.error().to_string()))
      return;  // the daemon is stopped by its destructor

    host::UniqueFd fd(::open(device.c_str(), O_RDWR | O_CLOEXEC));
    if (!report.check(static_cast<bool>(fd), fmt::format("open {}", device), fd ? "opened" : std::strerror(errno)))
      return;  // the daemon is stopped by its destructor
    service::VsmmuOptions options;
    options.name = "vsmmu0";
    options.wishes.present = service::kWishIpaBits;
    options.wishes.ipa_bits = 40;  // guest RAM at 1 GiB; QEMU's SMMU has a 44-bit OAS
    auto remote = service::RemoteVsmmu::create(c, options, {vsid, "", fd.get()});
    if (!report.check(remote.has_value(), "CREATE_VSMMU with edu's cdev fd",
                      remote ? fmt::format("handle {}, IDR0 {:#010x}", (*remote)->handle(), (*remote)->id_registers().idr0.value())
                             : remote.error().to_string()))
      return;  // the daemon is stopped by its destructor
    service::RemoteVsmmu& vsmmu = **remote;
    const int eventq_fd = vsmmu.irq_fd(smmu::Irq::eventq);

    // edu's regions through our fd: the same open file the daemon bound to its iommufd.
    auto region_host = host::KernelHost::open();
    if (!report.check(region_host.has_value(), "open /dev/iommu (edu's region info)", region_host ? "opened" : region_host.error().to_string()))
      return;  // the daemon is stopped by its destructor
    e2e::Edu edu(**region_host, fd.get(), device);
    if (auto p = edu.prepare(); !report.check(p.has_value(), "edu ready (bound by the daemon)", p ? "BAR0 mapped" : p.error().to_string()))
      return;  // the daemon is stopped by its destructor

    testkit::GuestHarnessConfig config;
    auto guest = testkit::GuestHarness::create_remote(std::move(*remote), (*ram)->view(), kRamGpa, kRamSize, config);
    if (!report.check(guest.has_value(), "guest driver probe through MMIO over the socket",
                      guest ? "SMMUEN set" : guest.error().to_string()))
      return;  // the daemon is stopped by its destructor
    auto& g = **guest;

    auto a = g.alloc(e2e::CopyDevice::kBufferBytes), b = g.alloc(e2e::CopyDevice::kBufferBytes);
    if (!a || !b) return (void)report.check(false, "guest buffers", "out of guest RAM");
    auto pa = g.bytes(*a, e2e::CopyDevice::kBufferBytes);
    for (std::size_t i = 0; i < pa.size(); ++i) pa[i] = static_cast<std::byte>(i * 7 + 1);
    auto mapped = g.map(kAsid, kVaA, *a, e2e::CopyDevice::kBufferBytes);
    if (mapped) mapped = g.map(kAsid, kVaB, *b, e2e::CopyDevice::kBufferBytes);
    const auto before_attach = vsmmu.stats();
    if (mapped) mapped = g.attach(vsid, kAsid);
    const auto after_attach = vsmmu.stats();
    const bool nested = after_attach.hwpt_allocs + after_attach.hwpt_shared > before_attach.hwpt_allocs + before_attach.hwpt_shared;
    if (!report.check(mapped.has_value() && nested, "stage 1: VA A and VA B mapped, CD + STE installed",
                      !mapped ? mapped.error().to_string()
                              : nested ? "the daemon attached edu to a nested HWPT" : "no nested HWPT was allocated"))
      return;  // the daemon is stopped by its destructor

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

    msi_through_the_daemon(report, c, vsmmu, g, edu, vsid);

    const auto objects = vsmmu.host_objects();
    report.note("host objects of the vSMMU", objects ? fmt::format("{}", *objects) : objects.error().to_string());
    edu.unmap();
    fd.reset();      // the daemon's copy is then the open file's last reference: closing it unbinds edu
    guest->reset();  // DESTROY_VSMMU: the daemon releases the vDEVICE, HWPTs, vIOMMU, vEVENTQ and closes edu
    auto st = c.daemon_stats();
    report.check(st && st->connection_host_objects == 1, "DESTROY_VSMMU leaves the daemon holding only this VMM's IOAS",
                 st ? fmt::format("{} host object(s) for this connection", st->connection_host_objects) : st.error().to_string());
    (void)c.remove_region(kRamGpa);
  }
  const int status = daemon.stop();
  report.check(status == 0, "vsmmud stops on SIGTERM", fmt::format("exit status {}", status));
}

}  // namespace

int main(int argc, char** argv) {
  const auto args = vsmmu::e2e::parse_device_args(argc, argv, "e2e_vsmmud");
  if (!args) return 2;
  vsmmu::e2e::Report report([](const vsmmu::e2e::StepResult& s) {
    fmt::print("{}\n", vsmmu::e2e::format_step(s));
    std::fflush(stdout);
  });
  const auto start = Clock::now();
  run(report, args->device, args->vsid);
  fmt::print("e2e_vsmmud: {} steps, {} failed, {} ms\n", report.steps().size(), report.failures(),
             std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
  return report.failures() ? 1 : 0;
}
