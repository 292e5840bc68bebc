// vsmmu demo: a VM with a nested virtual SMMUv3 on the simulated host, end to end. By default the vSMMU lives
// in vsmmud (the demo starts one on the simulated host, or --connect uses a running one) and the demo is the
// VMM: it makes guest RAM (a memfd) and hands it to the daemon, creates a vSMMU for two devices, and plays
// the guest (the scripted arm-smmu-v3 driver) through MMIO over the socket and its own view of guest RAM;
// --in-process keeps the vSMMU in this process. The guest builds CDs and stage-1 tables, the devices DMA
// through guest stage 1 and host stage 2; then the guest unmaps a page: without a TLBI the stale TLB entry
// still translates, after TLBI_NH_VA + CMD_SYNC (forwarded in one HWPT_INVALIDATE) the device faults and the
// guest reads F_TRANSLATION with its vSID, delivered by the daemon with the event-queue interrupt.
// Every step checks what it shows; the exit code says whether all held.
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/try.hpp"
#include "host/handles.hpp"
#include "nesting/dirty_tracking.hpp"
#include "host/sim/profile.hpp"
#include "host/sim/sim_host.hpp"
#include "service/client/client.hpp"
#include "service/client/remote_vsmmu.hpp"
#include "service/wire_wishes.hpp"
#include "smmu/driver/commands.hpp"
#include "smmu/format.hpp"
#include "testing/daemon_process.hpp"
#include "testing/guest_harness.hpp"
#include "testing/memfd_ram.hpp"
#include "tools/commands.hpp"
#include "tools/wish_flags.hpp"

namespace vsmmu::tools {
namespace {

using namespace vsmmu::smmu;
using namespace vsmmu::nesting;
using host::sim::SimHost;
using nlohmann::json;
using testkit::GuestHarness;
using testkit::GuestHarnessConfig;

constexpr const char* kWhere = "vsmmu demo";
struct DemoDevice {
  const char* name;
  const char* dma_engine;
  std::uint32_t vsid;
  std::uint16_t asid;
};
constexpr DemoDevice kDevices[] = {{"nic0", "nic0.dma", 0x10, 1}, {"nic1", "nic1.dma", 0x18, 2}};
constexpr std::uint64_t kVa = 0x7f00'0000'0000ULL;  // the same VA in both address spaces
constexpr std::uint64_t kBuffer = 0x2000;            // two pages per device
constexpr std::uint64_t kRamGpa = 0x4000'0000, kRamSize = 64ULL << 20;

bool g_text = true;  // false with --json: the report is one JSON document
template <class... Args>
void say(fmt::format_string<Args...> f, Args&&... args) {
  if (g_text) fmt::print(f, std::forward<Args>(args)...);
}
void step(std::string_view what) { say("\n== {}\n", what); }

std::string text_for(const DemoDevice& d) { return fmt::format("hello from {} (vSID {:#x}) through both stages", d.name, d.vsid); }

struct Demo {
  VsmmuWishes wishes;  // the wish flags; every field auto by default
  // in process
  std::unique_ptr<SimHost> host;
  // through vsmmud
  std::optional<testkit::DaemonProcess> daemon;
  std::unique_ptr<service::Client> client;
  std::unique_ptr<testkit::MemfdRam> ram;
  service::RemoteVsmmu* remote = nullptr;
  // either way
  std::unique_ptr<GuestHarness> guest;
  std::function<Result<host::sim::DmaResult>(const char*, std::uint64_t, std::span<std::byte>, bool)> dma;
  std::uint64_t buffers[2] = {};
  unsigned eventq_irqs = 0;
  json report = json::object();
};

Result<testkit::DaemonProcess> spawn_daemon(const std::string& kernel, const std::string& hardware) {
  std::error_code ec;
  VSMMU_TRY_ASSIGN(auto bin, testkit::DaemonProcess::find_beside(std::filesystem::read_symlink("/proc/self/exe", ec).string()));
  return testkit::DaemonProcess::start(bin, {"--host", "sim", "--profile", kernel, "--hardware", hardware, "--log-level", "warn"});
}

Result<void> start_daemon(Demo& d, const std::string& kernel, const std::string& hardware) {
  VSMMU_TRY_ASSIGN(auto daemon, spawn_daemon(kernel, hardware));
  d.daemon.emplace(std::move(daemon));
  return {};
}

GuestHarnessConfig harness_config(const VsmmuWishes& wishes) {
  GuestHarnessConfig c;
  c.vsmmu.name = "vsmmu0";
  c.vsmmu.wishes = wishes;
  c.ram_gpa = kRamGpa;
  c.ram_size = kRamSize;
  for (const auto& dev : kDevices) c.devices.push_back({dev.name, -1, dev.vsid});
  return c;
}

Result<void> create_in_process(Demo& d, const std::string& kernel, const std::string& hardware) {
  step("host: the simulated host in this process (kernel profile \"" + kernel + "\", hardware profile \"" + hardware + "\")");
  VSMMU_TRY_ASSIGN(auto kp, host::sim::resolve_kernel_profile(kernel));
  VSMMU_TRY_ASSIGN(auto hp, host::sim::resolve_hardware_profile(hardware));
  VSMMU_TRY_ASSIGN(auto h, SimHost::create(kp, hp));
  d.host = std::move(h);
  step("VMM: guest RAM (a memfd) mapped into the IOAS as stage 2; a vSMMU for nic0 and nic1");
  const auto c = harness_config(d.wishes);
  VSMMU_TRY_ASSIGN(auto g, GuestHarness::create(*d.host, c));
  d.guest = std::move(g);
  say("guest RAM: [{:#x}, +{:#x}) in IOAS {}\n", c.ram_gpa, c.ram_size, d.guest->memory().ioas());
  d.guest->vsmmu().set_irq_handler(Irq::eventq, [&d] { ++d.eventq_irqs; });
  d.dma = [&d](const char* engine, std::uint64_t iova, std::span<std::byte> data, bool write) -> Result<host::sim::DmaResult> {
    if (write) return d.host->dma_write(engine, iova, data);
    return d.host->dma_read(engine, iova, data);
  };
  d.report["mode"] = "in-process";
  return {};
}

Result<void> create_remote(Demo& d, const std::string& connect, const std::string& kernel, const std::string& hardware) {
  if (connect.empty()) {
    step("vsmmud: started on the simulated host (kernel profile \"" + kernel + "\", hardware profile \"" + hardware + "\")");
    VSMMU_TRY(start_daemon(d, kernel, hardware));
    say("vsmmud pid {} listening on {}\n", d.daemon->pid(), d.daemon->socket());
  } else {
    step("vsmmud: the running daemon at " + connect);
  }
  const std::string socket = connect.empty() ? d.daemon->socket() : connect;
  VSMMU_TRY_ASSIGN(auto client, service::Client::connect(socket));
  d.client = std::move(client);
  const auto& hello = d.client->hello();
  if (hello.host != static_cast<std::uint32_t>(service::HostKind::sim) || !(hello.features & service::kFeatureSimDma))
    return fail(EOPNOTSUPP, kWhere, "the daemon at {} does not run the simulated host; the demo's devices are simulated", socket);
  say("HELLO: protocol version {}, posted MMIO writes {}, max message {} bytes, {} fds per message\n", hello.version,
      (hello.features & service::kFeaturePostedWrites) ? "on" : "off", hello.max_message, hello.max_fds);

  step("VMM: guest RAM (a memfd) sent to vsmmud (ADD_REGION) and mapped here; a vSMMU for nic0 and nic1");
  VSMMU_TRY_ASSIGN(auto ram, testkit::MemfdRam::create(kRamGpa, kRamSize, "vsmmu-demo-ram"));
  d.ram = std::move(ram);
  VSMMU_TRY(d.client->add_region(kRamGpa, kRamSize, d.ram->fd(), 0));
  const auto c = harness_config(d.wishes);
  service::VsmmuOptions options;
  options.name = c.vsmmu.name;
  options.wishes = service::to_wire(d.wishes);
  VSMMU_TRY_ASSIGN(auto remote, service::RemoteVsmmu::create(*d.client, options, {kDevices[0].vsid, kDevices[0].name, -1}));
  for (std::size_t i = 1; i < std::size(kDevices); ++i)
    VSMMU_TRY(remote->add_device({kDevices[i].vsid, kDevices[i].name, -1}));
  remote->set_irq_handler(Irq::eventq, [&d] { ++d.eventq_irqs; });
  d.remote = remote.get();
  VSMMU_TRY_ASSIGN(auto g, GuestHarness::create_remote(std::move(remote), d.ram->view(), kRamGpa, kRamSize, c));
  d.guest = std::move(g);
  say("guest RAM: [{:#x}, +{:#x}), one memfd shared by the VMM and vsmmud; vSMMU handle {}\n", kRamGpa, kRamSize,
      d.remote->handle());
  d.dma = [&d](const char* engine, std::uint64_t iova, std::span<std::byte> data, bool write) -> Result<host::sim::DmaResult> {
    service::SimDma dma;
    dma.engine = engine;
    dma.iova = iova;
    dma.direction = write ? service::DmaDirection::write : service::DmaDirection::read;
    if (write) dma.data = data;
    else dma.read_length = static_cast<std::uint32_t>(data.size());
    VSMMU_TRY_ASSIGN(auto r, d.client->sim_dma(dma));
    host::sim::DmaResult out;
    out.bytes = r.reply.bytes;
    if (r.reply.faulted) out.fault = smmu::model::DmaFault{};
    if (!write && !r.data.empty()) std::memcpy(data.data(), r.data.data(), std::min(r.data.size(), data.size()));
    return out;
  };
  d.report["mode"] = connect.empty() ? "vsmmud" : "vsmmud --connect";
  return {};
}

Result<void> probe_and_map(Demo& d) {
  const auto& ids = d.guest->endpoint().id_registers();
  say("the guest's ID registers, from GET_HW_INFO and the VMM's wishes (stage 1 only):\n{}\n{}\n{}\n{}\n", ids.idr0,
      ids.idr1, ids.idr3, ids.idr5);
  step("guest: arm-smmu-v3 probe through the vSMMU's registers");
  auto& drv = d.guest->driver();
  say("stream table: {} at GPA {:#x}; command queue 2^{} at {:#x}; event queue 2^{} at {:#x}; SMMUEN set\n",
      drv.strtab_format() == StreamTableFormat::two_level ? "2-level" : "linear", drv.strtab_base(), drv.cmdq_log2(),
      drv.cmdq_base(), drv.eventq_log2(), drv.eventq_base());

  step("guest: stage-1 tables and a CD per device, STE + CFGI_CD + CFGI_STE + CMD_SYNC");
  for (std::size_t i = 0; i < std::size(kDevices); ++i) {
    const auto& dev = kDevices[i];
    VSMMU_TRY_ASSIGN(auto buf, d.guest->alloc(kBuffer));
    d.buffers[i] = buf;
    VSMMU_TRY(d.guest->map(dev.asid, kVa, buf, kBuffer));
    const auto before = d.guest->endpoint().stats();
    VSMMU_TRY(d.guest->attach(dev.vsid, dev.asid));
    const auto after = d.guest->endpoint().stats();
    if (after.hwpt_allocs + after.hwpt_shared == before.hwpt_allocs + before.hwpt_shared)
      return fail(EIO, kWhere, "{}'s stream did not get a nested HWPT after its STE was installed", dev.name);
    say("{}: ASID {}, VA {:#x} -> GPA {:#x} (2 pages); the host attached a nested HWPT\n", dev.name, dev.asid, kVa, buf);
  }
  return {};
}

Result<void> dma(Demo& d) {
  step("devices: DMA through guest stage 1 and host stage 2");
  for (std::size_t i = 0; i < std::size(kDevices); ++i) {
    const auto& dev = kDevices[i];
    std::string text = text_for(dev);
    VSMMU_TRY_ASSIGN(auto r, d.dma(dev.dma_engine, kVa + 0x100, std::as_writable_bytes(std::span(text)), true));
    if (!r.ok()) return fail(EIO, kWhere, "{}'s DMA write faulted", dev.name);
    auto landed = d.guest->bytes(d.buffers[i] + 0x100, text.size());
    if (std::memcmp(landed.data(), text.data(), text.size()) != 0)
      return fail(EIO, kWhere, "{}'s bytes did not land at GPA {:#x}", dev.name, d.buffers[i] + 0x100);
    std::string back(text.size(), '\0');
    auto rd = d.dma(dev.dma_engine, kVa + 0x100, std::as_writable_bytes(std::span(back)), false);
    if (!rd || !rd->ok() || back != text) return fail(EIO, kWhere, "{}'s DMA read did not return its bytes", dev.name);
    say("{}: VA {:#x} -> GPA {:#x}: \"{}\" (and read back)\n", dev.name, kVa + 0x100, d.buffers[i] + 0x100, text);
  }
  return {};
}

// The event-queue interrupt: in process the vSMMU raises it while the VMM services its fds; through vsmmud the
// daemon writes the record into guest RAM and signals the eventfd on its own, so the VMM only waits for it.
Result<void> wait_for_event_interrupt(Demo& d) {
  if (!d.remote) return {};
  pollfd p{d.remote->irq_fd(Irq::eventq), POLLIN, 0};
  if (::poll(&p, 1, 5000) != 1)
    return fail(ETIMEDOUT, kWhere, "vsmmud did not signal the event-queue interrupt within 5 s of the fault");
  return {};
}

Result<void> unmap_and_fault(Demo& d) {
  const auto& dev = kDevices[0];
  const std::uint64_t page = kVa + 0x1000;
  step("guest: unmaps nic0's second page, no TLBI yet");
  std::uint64_t stale = 0x5354414c45;
  if (auto r = d.dma(dev.dma_engine, page, std::as_writable_bytes(std::span(&stale, 1)), true); !r || !r->ok())
    return fail(EIO, kWhere, "the first DMA to the second page failed");
  VSMMU_TRY(d.guest->unmap(dev.asid, page, 0x1000, /*invalidate=*/false));
  stale = ~stale;
  auto r = d.dma(dev.dma_engine, page, std::as_writable_bytes(std::span(&stale, 1)), true);
  if (!r || !r->ok()) return fail(EIO, kWhere, "the DMA after the unmap should have hit the stale TLB entry");
  say("the DMA still lands: the SMMU's TLB holds the old translation until the guest invalidates it\n");

  step("guest: TLBI_NH_VA + CMD_SYNC through its command queue");
  const auto before = d.guest->endpoint().stats();
  VSMMU_TRY(d.guest->driver().issue(driver::cmd_tlbi_nh_va(0, dev.asid, page)));
  const auto after = d.guest->endpoint().stats();
  say("{} HWPT_INVALIDATE call(s) carried {} command(s); CMD_SYNC completed by the vSMMU\n",
      after.invalidate_calls - before.invalidate_calls, after.forwarded - before.forwarded);
  d.report["tlbi"] = {{"hwpt_invalidate_calls", after.invalidate_calls - before.invalidate_calls},
                      {"forwarded", after.forwarded - before.forwarded}};

  step("device: DMA to the unmapped page faults; the guest reads its event queue");
  std::uint64_t poison = 0xdead;
  r = d.dma(dev.dma_engine, page, std::as_writable_bytes(std::span(&poison, 1)), true);
  if (!r) return std::unexpected(r.error());
  if (r->ok()) return fail(EIO, kWhere, "the DMA after TLBI_NH_VA should have faulted");
  std::uint64_t kept = 0;
  std::memcpy(&kept, d.guest->bytes(d.buffers[0] + 0x1000, 8).data(), 8);
  if (kept != stale) return fail(EIO, kWhere, "the faulting DMA changed guest memory");
  VSMMU_TRY(wait_for_event_interrupt(d));
  VSMMU_TRY_ASSIGN(auto ev, d.guest->events());
  if (ev.records.size() != 1 || ev.records[0].get(Event::ID) != EventId::F_TRANSLATION ||
      ev.records[0].get(Event::SID) != dev.vsid)
    return fail(EIO, kWhere, "expected one F_TRANSLATION for vSID {:#x}, read {} record(s)", dev.vsid, ev.records.size());
  say("nothing moved; the guest's event: {}\nevent-queue interrupts: {}\n", ev.records[0], d.eventq_irqs);
  d.report["event"] = {{"id", "F_TRANSLATION"}, {"vsid", dev.vsid}, {"interrupts", d.eventq_irqs}};
  return {};
}

// The daemon at `socket` once its VMM left: it releases a closed connection's objects on its own strands, and
// must then hold none.
Result<service::DaemonStatsReply> after_leaving(const std::string& socket) {
  VSMMU_TRY_ASSIGN(auto probe, service::Client::connect(socket));
  service::DaemonStatsReply st{};
  for (int i = 0; i < 200; ++i) {
    VSMMU_TRY_ASSIGN(auto s, probe->daemon_stats());
    st = s;
    if (st.host_live_objects == 0 && st.clients == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (st.host_live_objects != 0)
    return fail(EIO, kWhere, "vsmmud still holds {} host object(s) after the VMM left", st.host_live_objects);
  return st;
}

// ---- --migrate: the VM moves to a second vsmmud (a second simulated host) while its devices DMA

// The VMM's dirty bitmap for guest RAM: a memfd the daemon writes with DIRTY_GET, mapped here to read.
struct Bitmap {
  host::UniqueFd fd;
  std::byte* bits = nullptr;
  std::uint64_t bytes = 0;
  Bitmap() = default;
  Bitmap(const Bitmap&) = delete;
  Bitmap& operator=(const Bitmap&) = delete;
  ~Bitmap() {
    if (bits) ::munmap(bits, bytes);
  }
  bool page(std::uint64_t i) const { return (std::to_integer<unsigned>(bits[i / 8]) >> (i % 8)) & 1U; }
};

Result<void> make_bitmap(Bitmap& b, std::uint64_t ram_bytes) {
  b.bytes = nesting::DirtyTracker::bitmap_bytes(ram_bytes);
  b.fd = host::UniqueFd(::memfd_create("vsmmu-demo-dirty", MFD_CLOEXEC));
  if (!b.fd || ::ftruncate(b.fd.get(), static_cast<off_t>(b.bytes)) != 0)
    return fail(errno, kWhere, "a memfd for the dirty bitmap: {}", std::strerror(errno));
  void* m = ::mmap(nullptr, b.bytes, PROT_READ, MAP_SHARED, b.fd.get(), 0);
  if (m == MAP_FAILED) return fail(errno, kWhere, "mapping the dirty bitmap: {}", std::strerror(errno));
  b.bits = static_cast<std::byte*>(m);
  return {};
}

// One pre-copy round: DIRTY_GET, then the dirty pages copied to the destination's RAM (all of them in round 0).
Result<std::uint64_t> copy_round(Demo& d, testkit::MemfdRam& to, Bitmap& bitmap, bool everything, std::uint64_t& dirty) {
  VSMMU_TRY_ASSIGN(auto round, d.client->dirty_get(kRamGpa, bitmap.fd.get()));
  dirty = round.dirty;
  std::uint64_t copied = 0;
  auto from = d.ram->bytes(), dst = to.bytes();
  for (std::uint64_t i = 0; i < round.pages; ++i) {
    if (!everything && !bitmap.page(i)) continue;
    std::memcpy(dst.data() + i * 4096, from.data() + i * 4096, 4096);
    ++copied;
  }
  return copied;
}

// The devices keep writing while the VM is copied: each writes its two pages with this round's text.
Result<std::uint64_t> workload(Demo& d, unsigned round) {
  std::uint64_t pages = 0;
  for (const auto& dev : kDevices)
    for (std::uint64_t page = 0; page < 2; ++page) {
      std::string text = fmt::format("{} round {} page {}", dev.name, round, page);
      VSMMU_TRY_ASSIGN(auto r, d.dma(dev.dma_engine, kVa + page * 0x1000 + 0x800, std::as_writable_bytes(std::span(text)), true));
      if (!r.ok()) return fail(EIO, kWhere, "{}'s DMA during pre-copy round {} faulted", dev.name, round);
      ++pages;
    }
  return pages;
}

Result<void> migrate(Demo& d, const std::string& kernel, const std::string& hardware) {
  using Clock = std::chrono::steady_clock;
  step("migration: a destination vsmmud on a second simulated host, and guest RAM there");
  VSMMU_TRY_ASSIGN(auto dst_daemon, spawn_daemon(kernel, hardware));
  VSMMU_TRY_ASSIGN(auto dst_client, service::Client::connect(dst_daemon.socket()));
  VSMMU_TRY_ASSIGN(auto dst_ram, testkit::MemfdRam::create(kRamGpa, kRamSize, "vsmmu-demo-ram-destination"));
  VSMMU_TRY(dst_client->add_region(kRamGpa, kRamSize, dst_ram->fd(), 0));
  say("destination vsmmud pid {} at {}\n", dst_daemon.pid(), dst_daemon.socket());

  step("source: DIRTY_START, the VM's stage-2 dirty log");
  VSMMU_TRY_ASSIGN(auto started, d.client->dirty_start());
  const bool hardware_mode = started.mode == service::DirtyLogMode::hardware;
  say("dirty tracking: {} ({} of {} nest parent(s) track in hardware){}{}\n", hardware_mode ? "hardware" : "conservative",
      started.tracking, started.parents, hardware_mode ? "" : ": ", started.reason);
  json mig = {{"dirty_mode", hardware_mode ? "hardware" : "conservative"}, {"reason", started.reason}};

  Bitmap bitmap;
  VSMMU_TRY(make_bitmap(bitmap, kRamSize));
  json rounds = json::array();
  constexpr unsigned kRounds = 4;
  for (unsigned round = 0; round < kRounds; ++round) {
    std::uint64_t written = 0;
    if (round > 0) {
      VSMMU_TRY_ASSIGN(written, workload(d, round));
    }
    std::uint64_t dirty = 0;
    VSMMU_TRY_ASSIGN(const std::uint64_t copied, copy_round(d, *dst_ram, bitmap, round == 0, dirty));
    say("pre-copy round {}: devices wrote {} page(s); DIRTY_GET: {} dirty page(s); copied {} page(s){}\n", round,
        written, dirty, copied,
        round == 0 ? " (the first round copies all guest RAM)"
                   : hardware_mode ? " (stage 2 maps guest RAM in 2 MiB blocks: a write dirties its block)"
                                   : " (conservative: every page)");
    rounds.push_back({{"round", round}, {"device_pages_written", written}, {"dirty_pages", dirty}, {"copied_pages", copied}});
    // Every page a device wrote must be in the round (a 2 MiB stage-2 block reports all 512 of its pages).
    if (round > 0)
      for (std::size_t i = 0; i < std::size(kDevices); ++i)
        for (std::uint64_t page = 0; page < 2; ++page)
          if (!bitmap.page((d.buffers[i] + page * 0x1000 - kRamGpa) / 0x1000))
            return fail(EIO, kWhere, "round {}: {} wrote GPA {:#x} but DIRTY_GET did not report it", round,
                        kDevices[i].name, d.buffers[i] + page * 0x1000);
  }
  mig["rounds"] = std::move(rounds);

  step("stop-and-copy: SAVE_STATE, the last dirty pages, LOAD_STATE on the destination");
  const auto stop = Clock::now();
  VSMMU_TRY_ASSIGN(const auto state, d.remote->save_state());
  std::uint64_t last_dirty = 0;
  VSMMU_TRY_ASSIGN(const std::uint64_t last_copied, copy_round(d, *dst_ram, bitmap, false, last_dirty));
  VSMMU_TRY(d.client->dirty_stop());
  const auto c = harness_config(d.wishes);
  service::VsmmuOptions options;
  options.name = c.vsmmu.name;
  options.wishes = service::to_wire(d.wishes);
  VSMMU_TRY_ASSIGN(auto target, service::RemoteVsmmu::create(*dst_client, options, {kDevices[0].vsid, kDevices[0].name, -1}));
  for (std::size_t i = 1; i < std::size(kDevices); ++i)
    VSMMU_TRY(target->add_device({kDevices[i].vsid, kDevices[i].name, -1}));
  VSMMU_TRY(target->load_state(state));
  const auto downtime = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - stop);
  say("state: {} bytes; last round: {} dirty page(s) copied; downtime {:.2f} ms (save, last copy, create, load)\n",
      state.size(), last_copied, static_cast<double>(downtime.count()) / 1000.0);

  const bool equal = std::memcmp(d.ram->bytes().data(), dst_ram->bytes().data(), kRamSize) == 0;
  mig["state_bytes"] = state.size();
  mig["last_round_dirty_pages"] = last_dirty;
  mig["downtime_ms"] = static_cast<double>(downtime.count()) / 1000.0;
  mig["ram_equal"] = equal;
  d.report["migration"] = std::move(mig);
  if (!equal) return fail(EIO, kWhere, "the destination's guest RAM differs from the source's after the last round");
  say("destination guest RAM equals the source's, byte for byte ({} MiB)\n", kRamSize >> 20);

  step("the guest goes on on the destination; the source VMM releases its vSMMU");
  target->set_irq_handler(Irq::eventq, [&d] { ++d.eventq_irqs; });
  service::RemoteVsmmu* moved = target.get();
  VSMMU_TRY_ASSIGN(auto source, d.guest->migrate(std::move(target), dst_ram->view()));
  source.reset();  // DESTROY_VSMMU on the source
  VSMMU_TRY(d.client->remove_region(kRamGpa));
  d.client.reset();
  VSMMU_TRY(after_leaving(d.daemon->socket()));
  if (d.daemon->stop() != 0) return fail(EIO, kWhere, "the source vsmmud did not exit cleanly on SIGTERM");
  say("source vsmmud: 0 host objects, stopped\n");
  d.daemon.reset();
  d.daemon.emplace(std::move(dst_daemon));
  d.client = std::move(dst_client);
  d.ram = std::move(dst_ram);
  d.remote = moved;
  return dma(d);  // the devices' DMA on the destination, through the guest's stage 1 there
}

void report(Demo& d) {
  step("report");
  const auto s = d.guest->endpoint().stats();
  say("guest commands {}  forwarded {}  coalesced {}  HWPT_INVALIDATE calls {}  CMD_SYNCs {}\n"
      "STE reinstalls {}  nested HWPTs {} (+{} shared)  attaches {}  events to the guest {}  lost {}\n"
      "host calls in all {}  command errors {}  refused STEs {}\n",
      s.commands, s.forwarded, s.coalesced, s.invalidate_calls, s.syncs, s.ste_reinstalls, s.hwpt_allocs, s.hwpt_shared,
      s.attaches, s.events, s.events_lost, s.host_calls, s.command_errors, s.bad_stes);
  d.report["stats"] = {{"commands", s.commands},       {"forwarded", s.forwarded},
                       {"coalesced", s.coalesced},     {"hwpt_invalidate_calls", s.invalidate_calls},
                       {"syncs", s.syncs},             {"ste_reinstalls", s.ste_reinstalls},
                       {"hwpt_allocs", s.hwpt_allocs}, {"hwpt_shared", s.hwpt_shared},
                       {"attaches", s.attaches},       {"events", s.events},
                       {"events_lost", s.events_lost}, {"host_calls", s.host_calls},
                       {"command_errors", s.command_errors}, {"bad_stes", s.bad_stes}};
}

// Through vsmmud: the VMM leaves (its vSMMU destroyed, its connection closed) and the daemon must hold nothing
// of it; a daemon the demo started must then stop cleanly on SIGTERM.
Result<void> leave(Demo& d, const std::string& socket) {
  if (!d.client) return {};
  step("VMM: leaves; vsmmud releases everything it made");
  d.guest.reset();  // DESTROY_VSMMU
  d.remote = nullptr;
  VSMMU_TRY(d.client->remove_region(kRamGpa));
  d.client.reset();
  VSMMU_TRY_ASSIGN(const auto st, after_leaving(socket));
  d.report["daemon_after"] = {{"host_live_objects", st.host_live_objects}, {"requests", st.requests}, {"refused", st.refused}};
  say("vsmmud holds 0 host objects after {} request(s)\n", st.requests);
  if (d.daemon) {
    const int status = d.daemon->stop();
    if (status != 0) return fail(EIO, kWhere, "vsmmud exited with status {} on SIGTERM", status);
    say("vsmmud stopped cleanly on SIGTERM\n");
  }
  return {};
}

constexpr std::string_view kUsage =
    "usage: vsmmu demo [--connect SOCKET | --in-process | --migrate] [--kernel PROFILE] [--hardware PROFILE] [--json]\n"
    "                  [wish flags]\n\n"
    "Runs a VM's nested virtual SMMUv3 end to end on the simulated host: guest RAM mapped as stage 2, a vSMMU\n"
    "for two devices, the guest's arm-smmu-v3 probe, stage-1 mappings, DMA with data checks, an unmap that is\n"
    "stale until TLBI_NH_VA + CMD_SYNC, the fault the guest then reads, and a report.\n"
    "By default the vSMMU lives in a vsmmud the demo starts (and stops); --connect SOCKET uses a running\n"
    "vsmmud (it must run the simulated host); --in-process keeps the vSMMU in this process.\n"
    "PROFILE is a shipped profile name or a JSON file (docs/sim-host.md); defaults: upstream (nested-dirty with\n"
    "--migrate), default "
    "(for a started daemon or in process; a running daemon has its own).\n"
    "--migrate moves the VM to a second vsmmud (a second simulated host) halfway (docs/migration.md): pre-copy\n"
    "rounds of DIRTY_GET while the devices write, their dirty pages, the stop-and-copy (SAVE_STATE, the last\n"
    "dirty pages, LOAD_STATE) and its downtime, the RAM equality check; the rest of the demo then runs on the\n"
    "destination. Its kernel profile defaults to nested-dirty (exact dirty pages); --kernel upstream shows the\n"
    "conservative mode of today's kernels.\n"
    "--json prints the report as one JSON document instead of the text.\n"
    "Wish flags, the guest's ID registers as the VMM asks for them (docs/virtual-smmu.md; default auto):\n"
    "Exit status: 0 when every step held, 1 when one did not, 2 for a usage error.\n";

std::string usage() { return fmt::format("{}", kUsage).insert(kUsage.find("Exit status"), kWishFlagsUsage); }

}  // namespace

int demo_command(std::span<const std::string_view> args) {
  std::string kernel, hardware = "default", connect;
  bool in_process = false, as_json = false, migrating = false;
  VsmmuWishes wishes;
  for (std::size_t i = 0; i < args.size(); ++i) {
    auto wish = parse_wish_flag(args, i, wishes);
    if (!wish) {
      fmt::print(stderr, "vsmmu demo: {}\n\n{}", wish.error().message, usage());
      return 2;
    }
    if (*wish) continue;
    if (args[i] == "--help" || args[i] == "-h") {
      fmt::print("{}", usage());
      return 0;
    }
    if (args[i] == "--in-process") {
      in_process = true;
      continue;
    }
    if (args[i] == "--json") {
      as_json = true;
      continue;
    }
    if (args[i] == "--migrate") {
      migrating = true;
      continue;
    }
    if ((args[i] == "--kernel" || args[i] == "--hardware" || args[i] == "--connect") && i + 1 < args.size()) {
      (args[i] == "--kernel" ? kernel : args[i] == "--hardware" ? hardware : connect) = std::string(args[i + 1]);
      ++i;
      continue;
    }
    fmt::print(stderr, "vsmmu demo: unexpected argument '{}'\n\n{}", args[i], usage());
    return 2;
  }
  if (in_process && !connect.empty()) {
    fmt::print(stderr, "vsmmu demo: --connect and --in-process exclude each other\n\n{}", usage());
    return 2;
  }
  if (migrating && (in_process || !connect.empty())) {
    fmt::print(stderr, "vsmmu demo: --migrate starts its own two vsmmuds (source and destination host); it excludes "
               "--connect and --in-process\n\n{}", usage());
    return 2;
  }
  if (kernel.empty()) kernel = migrating ? "nested-dirty" : "upstream";
  g_text = !as_json;
  Demo d;
  d.wishes = wishes;
  Result<void> r = in_process ? create_in_process(d, kernel, hardware) : create_remote(d, connect, kernel, hardware);
  if (r) r = probe_and_map(d);
  if (r) r = dma(d);
  if (r && migrating) r = migrate(d, kernel, hardware);
  if (r) r = unmap_and_fault(d);
  if (r) report(d);
  if (r) r = leave(d, connect.empty() ? d.daemon->socket() : connect);
  d.report["ok"] = r.has_value();
  if (!r) {
    d.report["error"] = r.error().to_string();
    if (as_json) fmt::print("{}\n", d.report.dump(2));
    fmt::print(stderr, "\nvsmmu demo: FAILED: {}\n", r.error());
    return 1;
  }
  if (as_json) {
    fmt::print("{}\n", d.report.dump(2));
    return 0;
  }
  say("\ndemo complete: nested DMA for two devices, {}stale TLB until the guest's TLBI, its fault as an event{}\n",
      migrating ? "a live migration to a second host, " : "", in_process ? "" : ", all through vsmmud");
  return 0;
}

}  // namespace vsmmu::tools
