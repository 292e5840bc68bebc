// vsmmu demo: a VM with a nested virtual SMMUv3 on the simulated host, end to end. The VMM side maps guest RAM
// into the host's IOAS and creates a VirtualSmmu for two devices; the guest side (the scripted arm-smmu-v3
// driver) probes it, builds CDs and stage-1 tables, and the devices DMA through guest stage 1 and host stage 2.
// Then the guest unmaps a page: without a TLBI the stale TLB entry still translates, after TLBI_NH_VA + CMD_SYNC
// (forwarded in one HWPT_INVALIDATE) the device faults and the guest reads F_TRANSLATION with its vSID.
// Every step checks what it shows; the exit code says whether all held.
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "base/try.hpp"
#include "testing/guest_harness.hpp"
#include "host/sim/profile.hpp"
#include "host/sim/sim_host.hpp"
#include "smmu/driver/commands.hpp"
#include "smmu/format.hpp"
#include "tools/commands.hpp"

namespace vsmmu::tools {
namespace {

using namespace vsmmu::smmu;
using namespace vsmmu::nesting;
using host::sim::SimHost;
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

void step(std::string_view what) { fmt::print("\n== {}\n", what); }

std::string text_for(const DemoDevice& d) { return fmt::format("hello from {} (vSID {:#x}) through both stages", d.name, d.vsid); }

struct Demo {
  std::unique_ptr<SimHost> host;
  std::unique_ptr<GuestHarness> guest;
  std::uint64_t buffers[2] = {};
  unsigned eventq_irqs = 0;
};

Result<void> create_vm(Demo& d, const std::string& kernel, const std::string& hardware) {
  step("host: the simulated host (kernel profile \"" + kernel + "\", hardware profile \"" + hardware + "\")");
  VSMMU_TRY_ASSIGN(auto kp, host::sim::resolve_kernel_profile(kernel));
  VSMMU_TRY_ASSIGN(auto hp, host::sim::resolve_hardware_profile(hardware));
  VSMMU_TRY_ASSIGN(auto h, SimHost::create(kp, hp));
  d.host = std::move(h);

  step("VMM: guest RAM (a memfd) mapped into the IOAS as stage 2; a vSMMU for nic0 and nic1");
  GuestHarnessConfig c;
  c.vsmmu.name = "vsmmu0";
  for (const auto& dev : kDevices) c.devices.push_back({dev.name, -1, dev.vsid});
  VSMMU_TRY_ASSIGN(auto g, GuestHarness::create(*d.host, c));
  d.guest = std::move(g);
  const auto& ids = d.guest->vsmmu().id_registers();
  fmt::print("guest RAM: [{:#x}, +{:#x}) in IOAS {}\n", c.ram_gpa, c.ram_size, d.guest->memory().ioas());
  fmt::print("the guest's ID registers, from GET_HW_INFO and the VMM's wishes (stage 1 only):\n{}\n{}\n{}\n{}\n",
             ids.idr0, ids.idr1, ids.idr3, ids.idr5);
  d.guest->vsmmu().set_irq_handler(Irq::eventq, [&d] { ++d.eventq_irqs; });
  return {};
}

Result<void> probe_and_map(Demo& d) {
  step("guest: arm-smmu-v3 probe through the vSMMU's registers");
  auto& drv = d.guest->driver();
  fmt::print("stream table: {} at GPA {:#x}; command queue 2^{} at {:#x}; event queue 2^{} at {:#x}; SMMUEN set\n",
             drv.strtab_format() == StreamTableFormat::two_level ? "2-level" : "linear", drv.strtab_base(),
             drv.cmdq_log2(), drv.cmdq_base(), drv.eventq_log2(), drv.eventq_base());

  step("guest: stage-1 tables and a CD per device, STE + CFGI_CD + CFGI_STE + CMD_SYNC");
  for (std::size_t i = 0; i < std::size(kDevices); ++i) {
    const auto& dev = kDevices[i];
    VSMMU_TRY_ASSIGN(auto buf, d.guest->alloc(kBuffer));
    d.buffers[i] = buf;
    VSMMU_TRY(d.guest->map(dev.asid, kVa, buf, kBuffer));
    VSMMU_TRY(d.guest->attach(dev.vsid, dev.asid));
    auto status = d.guest->vsmmu().stream_status(dev.vsid);
    if (!status || status->state != StreamState::translate)
      return fail(EIO, kWhere, "{}'s stream is not translating after its STE was installed", dev.name);
    fmt::print("{}: ASID {}, VA {:#x} -> GPA {:#x} (2 pages); the host attached a nested HWPT\n", dev.name, dev.asid,
               kVa, buf);
  }
  return {};
}

Result<void> dma(Demo& d) {
  step("devices: DMA through guest stage 1 and host stage 2");
  for (std::size_t i = 0; i < std::size(kDevices); ++i) {
    const auto& dev = kDevices[i];
    const std::string text = text_for(dev);
    VSMMU_TRY_ASSIGN(auto r, d.host->dma_write(dev.dma_engine, kVa + 0x100, std::as_bytes(std::span(text))));
    if (!r.ok()) return fail(EIO, kWhere, "{}'s DMA write faulted", dev.name);
    auto landed = d.guest->bytes(d.buffers[i] + 0x100, text.size());
    if (std::memcmp(landed.data(), text.data(), text.size()) != 0)
      return fail(EIO, kWhere, "{}'s bytes did not land at GPA {:#x}", dev.name, d.buffers[i] + 0x100);
    std::string back(text.size(), '\0');
    auto rd = d.host->dma_read(dev.dma_engine, kVa + 0x100, std::as_writable_bytes(std::span(back)));
    if (!rd || !rd->ok() || back != text) return fail(EIO, kWhere, "{}'s DMA read did not return its bytes", dev.name);
    fmt::print("{}: VA {:#x} -> GPA {:#x}: \"{}\" (and read back)\n", dev.name, kVa + 0x100, d.buffers[i] + 0x100, text);
  }
  return {};
}

Result<void> unmap_and_fault(Demo& d) {
  const auto& dev = kDevices[0];
  const std::uint64_t page = kVa + 0x1000;
  step("guest: unmaps nic0's second page, no TLBI yet");
  std::uint64_t stale = 0x5354414c45;
  if (auto r = d.host->dma_write(dev.dma_engine, page, std::as_bytes(std::span(&stale, 1))); !r || !r->ok())
    return fail(EIO, kWhere, "the first DMA to the second page failed");
  VSMMU_TRY(d.guest->unmap(dev.asid, page, 0x1000, /*invalidate=*/false));
  stale = ~stale;
  auto r = d.host->dma_write(dev.dma_engine, page, std::as_bytes(std::span(&stale, 1)));
  if (!r || !r->ok()) return fail(EIO, kWhere, "the DMA after the unmap should have hit the stale TLB entry");
  fmt::print("the DMA still lands: the SMMU's TLB holds the old translation until the guest invalidates it\n");

  step("guest: TLBI_NH_VA + CMD_SYNC through its command queue");
  const auto before = d.guest->vsmmu().stats();
  VSMMU_TRY(d.guest->driver().issue(driver::cmd_tlbi_nh_va(0, dev.asid, page)));
  const auto after = d.guest->vsmmu().stats();
  fmt::print("{} HWPT_INVALIDATE call(s) carried {} command(s); CMD_SYNC completed by the vSMMU\n",
             after.invalidate_calls - before.invalidate_calls, after.forwarded - before.forwarded);

  step("device: DMA to the unmapped page faults; the guest reads its event queue");
  std::uint64_t poison = 0xdead;
  r = d.host->dma_write(dev.dma_engine, page, std::as_bytes(std::span(&poison, 1)));
  if (!r) return std::unexpected(r.error());
  if (r->ok()) return fail(EIO, kWhere, "the DMA after TLBI_NH_VA should have faulted");
  std::uint64_t kept = 0;
  std::memcpy(&kept, d.guest->bytes(d.buffers[0] + 0x1000, 8).data(), 8);
  if (kept != stale) return fail(EIO, kWhere, "the faulting DMA changed guest memory");
  VSMMU_TRY_ASSIGN(auto ev, d.guest->events());
  if (ev.records.size() != 1 || ev.records[0].get(Event::ID) != EventId::F_TRANSLATION ||
      ev.records[0].get(Event::SID) != dev.vsid)
    return fail(EIO, kWhere, "expected one F_TRANSLATION for vSID {:#x}, read {} record(s)", dev.vsid, ev.records.size());
  fmt::print("nothing moved; the guest's event: {}\nevent-queue interrupts: {}\n", ev.records[0], d.eventq_irqs);
  return {};
}

void report(Demo& d) {
  step("report");
  const auto s = d.guest->vsmmu().stats();
  fmt::print("guest commands {}  forwarded {}  coalesced {}  HWPT_INVALIDATE calls {}  CMD_SYNCs {}\n"
             "STE reinstalls {}  nested HWPTs {} (+{} shared)  attaches {}  events to the guest {}  lost {}\n"
             "host calls in all {}  command errors {}  refused STEs {}\n",
             s.commands, s.forwarded, s.coalesced, s.invalidate_calls, s.syncs, s.ste_reinstalls, s.hwpt_allocs,
             s.hwpt_shared, s.attaches, s.events, s.events_lost, s.host_calls, s.command_errors, s.bad_stes);
}

constexpr std::string_view kUsage =
    "usage: vsmmu demo [--kernel PROFILE] [--hardware PROFILE]\n\n"
    "Runs a VM's nested virtual SMMUv3 end to end on the simulated host: guest RAM mapped as stage 2, a\n"
    "VirtualSmmu for two devices, the guest's arm-smmu-v3 probe, stage-1 mappings, DMA with data checks,\n"
    "an unmap that is stale until TLBI_NH_VA + CMD_SYNC, the fault the guest then reads, and a report.\n"
    "PROFILE is a shipped profile name or a JSON file (docs/sim-host.md); defaults: upstream, default.\n"
    "Exit status: 0 when every step held, 1 when one did not, 2 for a usage error.\n";

}  // namespace

int demo_command(std::span<const std::string_view> args) {
  std::string kernel = "upstream", hardware = "default";
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    }
    if ((args[i] == "--kernel" || args[i] == "--hardware") && i + 1 < args.size()) {
      (args[i] == "--kernel" ? kernel : hardware) = std::string(args[i + 1]);
      ++i;
      continue;
    }
    fmt::print(stderr, "vsmmu demo: unexpected argument '{}'\n\n{}", args[i], kUsage);
    return 2;
  }
  Demo d;
  Result<void> r = create_vm(d, kernel, hardware);
  if (r) r = probe_and_map(d);
  if (r) r = dma(d);
  if (r) r = unmap_and_fault(d);
  if (!r) {
    fmt::print(stderr, "\nvsmmu demo: FAILED: {}\n", r.error());
    return 1;
  }
  report(d);
  fmt::print("\ndemo complete: nested DMA for two devices, stale TLB until the guest's TLBI, its fault as an event\n");
  return 0;
}

}  // namespace vsmmu::tools
