// vsmmu demo: a device's DMA through a nested SMMUv3 translation on the simulated host's SMMU (the model),
// programmed through its registers the way Linux's arm-smmu-v3 programs hardware. It shows the bytes
// landing at the PA both stages select, a stale TLB entry surviving an unmap until TLBI_NH_VA + CMD_SYNC,
// and the F_TRANSLATION event the next DMA raises, read from the event queue.
#include <span>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "smmu/format.hpp"
#include "smmu/model/dma.hpp"
#include "smmu/model/driver.hpp"
#include "smmu/model/smmu_model.hpp"
#include "smmu/table_builder.hpp"
#include "tools/commands.hpp"

namespace vsmmu::tools {
namespace {

using namespace vsmmu::smmu;
using namespace vsmmu::smmu::model;

constexpr const char* kWhere = "vsmmu demo";
constexpr std::uint64_t kMiB = 1ULL << 20;
constexpr std::uint64_t kHostPool = 0x4000'0000;       // stream table, queues, stage-2 tables
constexpr std::uint64_t kHostPoolSize = 8 * kMiB;
constexpr std::uint64_t kGuestPa = 0x1'8000'0000;      // the VM's RAM in host PA space ...
constexpr std::uint64_t kGuestIpa = 0x8000'0000;       // ... and where the VM sees it
constexpr std::uint64_t kGuestSize = 16 * kMiB;
constexpr std::uint64_t kGuestPoolSize = 4 * kMiB;     // the guest's CDs and stage-1 tables
constexpr std::uint64_t kBufferIpa = kGuestIpa + 8 * kMiB;
constexpr std::uint64_t kBufferPa = kGuestPa + 8 * kMiB;
constexpr std::uint64_t kIova = 0x7f00'0000'0000ULL;   // the guest driver's DMA address for the buffer
constexpr std::uint32_t kSid = 0x42;
constexpr std::uint16_t kVmid = 7;
constexpr std::uint16_t kAsid = 3;
constexpr std::uint64_t kOffset = 0x100;

void step(std::string_view what) { fmt::print("\n== {}\n", what); }

std::string describe(const DmaFault& f) {
  const char* outcome = f.outcome == DmaOutcome::aborted  ? "aborted"
                        : f.outcome == DmaOutcome::raz_wi ? "RAZ/WI"
                                                          : "bus error";
  return fmt::format("{} at {:#x}{}", outcome, f.iova,
                     f.event ? fmt::format(" ({})", event_name(f.event->get(Event::ID))) : "");
}

// A register's value as its record type, for printing.
template <class R>
Result<R> reg(SmmuModel& smmu, const RegisterInfo& info) {
  auto v = smmu.mmio_read(info.offset, info.width / 8);
  if (!v) return std::unexpected(v.error());
  return R::of(static_cast<decltype(R{}.value())>(*v));
}

// The world of the demo: host RAM, the VM's RAM and its IPA view, the SMMU and its driver.
struct World {
  RegionMemory mem;
  RegionMemory guest;
  TablePageAllocator host_pool{mem, kHostPool, kHostPoolSize};
  TablePageAllocator guest_pool{guest, kGuestIpa, kGuestPoolSize};
  TableBuilder s2{mem, host_pool, Stage::s2, Granule::k4K, 48};
  TableBuilder s1{guest, guest_pool, Stage::s1, Granule::k4K, 48};
  std::unique_ptr<SmmuModel> smmu;
  std::optional<ModelDriver> driver;
  unsigned eventq_irqs = 0;
};

Result<void> bring_up(World& w) {
  if (auto r = w.mem.add_ram(kHostPool, kHostPoolSize); !r) return r;
  if (auto r = w.mem.add_ram(kGuestPa, kGuestSize); !r) return r;
  if (auto r = w.guest.add_borrowed(kGuestIpa, std::span(w.mem.host_pointer(kGuestPa, kGuestSize), kGuestSize)); !r)
    return r;

  step("the SMMU (software model, reference SMMUv3.2 profile)");
  auto smmu = SmmuModel::create(w.mem, ModelConfig::reference());
  if (!smmu) return std::unexpected(smmu.error());
  w.smmu = std::move(*smmu);
  w.smmu->set_irq_handler(Irq::eventq, [&w] { ++w.eventq_irqs; });
  auto idr0 = reg<Idr0>(*w.smmu, regs::IDR0);
  auto idr1 = reg<Idr1>(*w.smmu, regs::IDR1);
  auto idr3 = reg<Idr3>(*w.smmu, regs::IDR3);
  auto idr5 = reg<Idr5>(*w.smmu, regs::IDR5);
  if (!idr0 || !idr1 || !idr3 || !idr5) return fail(EIO, kWhere, "cannot read the ID registers");
  fmt::print("{}\n{}\n{}\n{}\n", *idr0, *idr1, *idr3, *idr5);

  step("driver: stream table and queues, CR0 with CR0ACK, CFGI_ALL + TLBI_NSNH_ALL + CMD_SYNC, SMMUEN");
  auto driver = ModelDriver::start(*w.smmu, w.mem, w.host_pool);
  if (!driver) return std::unexpected(driver.error());
  w.driver.emplace(*driver);
  auto strtab = reg<StrtabBase>(*w.smmu, regs::STRTAB_BASE);
  auto strtab_cfg = reg<StrtabBaseCfg>(*w.smmu, regs::STRTAB_BASE_CFG);
  auto cmdq = reg<QueueBase>(*w.smmu, regs::CMDQ_BASE);
  auto eventq = reg<QueueBase>(*w.smmu, regs::EVENTQ_BASE);
  auto cr0ack = reg<Cr0>(*w.smmu, regs::CR0ACK);
  if (!strtab || !strtab_cfg || !cmdq || !eventq || !cr0ack) return fail(EIO, kWhere, "cannot read the registers");
  fmt::print("{}\n{}\ncommand queue: {}\nevent queue:   {}\nCR0ACK: {}\n", *strtab, *strtab_cfg, *cmdq, *eventq,
             *cr0ack);
  return {};
}

Result<void> configure_stream(World& w) {
  step("hypervisor: stage 2 maps the VM's RAM, IPA -> PA (4KB granule, 48-bit IPA, 4 levels)");
  if (auto r = w.s2.map(kGuestIpa, kGuestPa, kGuestSize, MapAttributes{.allow_blocks = false}); !r) return r;
  fmt::print("IPA [{:#x}, {:#x}) -> PA {:#x}; root table at PA {:#x}, start level {}\n", kGuestIpa,
             kGuestIpa + kGuestSize, kGuestPa, w.s2.root(), w.s2.start_level());

  step("guest: stage 1 maps its DMA buffer, VA -> IPA, and a CD in its RAM");
  if (auto r = w.s1.map(kIova, kBufferIpa, 4096, MapAttributes{}); !r) return r;
  auto cd_ipa = w.guest_pool.allocate(Cd::bytes, Cd::bytes);
  if (!cd_ipa) return std::unexpected(cd_ipa.error());
  Cd cd;
  cd.set(Cd::V, true).set(Cd::AA64, true).set(Cd::R, true).set(Cd::A, true).set(Cd::EPD1, true)
      .set(Cd::T0SZ, w.s1.t0sz()).set(Cd::TG0, tg0_from_granule(Granule::k4K)).set(Cd::IPS, 5)
      .set(Cd::ASID, kAsid).set(Cd::TTB0, w.s1.root());
  if (!w.guest.write_record(*cd_ipa, cd)) return fail(EFAULT, kWhere, "cannot write the CD at IPA {:#x}", *cd_ipa);
  fmt::print("VA {:#x} -> IPA {:#x}\nCD at IPA {:#x}: {}\n", kIova, kBufferIpa, *cd_ipa, cd);

  step("host: a nested STE for the device (its S1ContextPtr is an IPA), then CFGI_STE + CMD_SYNC");
  Ste ste;
  ste.set(Ste::V, true).set(Ste::Config, StreamConfig::nested).set(Ste::S1ContextPtr, *cd_ipa)
      .set(Ste::S2VMID, kVmid).set(Ste::S2AA64, true).set(Ste::S2R, true).set(Ste::S2T0SZ, w.s2.t0sz())
      .set(Ste::S2SL0, w.s2.s2sl0()).set(Ste::S2TG, tg0_from_granule(Granule::k4K)).set(Ste::S2PS, 5)
      .set(Ste::S2TTB, w.s2.root()).set(Ste::S2FWB, true);
  auto ste_pa = w.driver->write_ste(kSid, ste);
  if (!ste_pa) return std::unexpected(ste_pa.error());
  if (auto r = w.driver->issue(cmd_cfgi_ste(kSid)); !r) return r;
  fmt::print("SID {:#x}, STE at PA {:#x}: {}\neffective S2FWB: {}\n", kSid, *ste_pa, ste,
             w.smmu->effective_s2fwb(kSid).value_or(false));
  return {};
}

Result<void> dma_and_invalidate(World& w) {
  step("device: DMA write through both stages");
  DmaMaster device(*w.smmu, kSid);
  const std::string text = "hello from device 0x42, through stage 1 and stage 2";
  if (auto r = device.write(kIova + kOffset, std::as_bytes(std::span(text))); !r)
    return fail(EIO, kWhere, "DMA write: {}", describe(r.error()));
  std::string landed(text.size(), '\0');
  if (!w.mem.read(kBufferPa + kOffset, std::as_writable_bytes(std::span(landed))) || landed != text)
    return fail(EIO, kWhere, "the bytes did not land at PA {:#x}", kBufferPa + kOffset);
  fmt::print("VA {:#x} -> IPA {:#x} -> PA {:#x}: \"{}\"\n", kIova + kOffset, kBufferIpa + kOffset,
             kBufferPa + kOffset, landed);

  step("guest: unmaps the page without invalidating the TLB");
  if (auto r = w.s1.unmap(kIova, 4096); !r) return r;
  const std::uint64_t hits = w.smmu->counters().tlb_hits;
  if (auto r = device.write64(kIova + kOffset, 0x5354414c45); !r)
    return fail(EIO, kWhere, "the DMA after the unmap should hit the stale TLB entry: {}", describe(r.error()));
  if (w.smmu->counters().tlb_hits != hits + 1) return fail(EIO, kWhere, "the DMA after the unmap missed the TLB");
  fmt::print("DMA after the unmap still succeeds: a stale TLB hit wrote PA {:#x}\n", kBufferPa + kOffset);

  step("guest: TLBI_NH_VA + CMD_SYNC");
  const smmu::Command tlbi = cmd_tlbi_nh_va(kVmid, kAsid, kIova);
  fmt::print("{}\n{}\n", tlbi, cmd_sync());
  if (auto r = w.driver->issue(tlbi); !r) return r;

  step("device: DMA again, then the event queue");
  auto fault = device.write64(kIova + kOffset, 1);
  if (fault) return fail(EIO, kWhere, "the DMA after TLBI_NH_VA should have faulted");
  fmt::print("DMA {}; nothing moved\n", describe(fault.error()));
  auto events = w.driver->drain_events();
  if (!events) return std::unexpected(events.error());
  if (events->size() != 1 || (*events)[0].get(Event::ID) != EventId::F_TRANSLATION)
    return fail(EIO, kWhere, "expected one F_TRANSLATION event, read {}", events->size());
  fmt::print("{}\nevent queue interrupts: {}\n", (*events)[0], w.eventq_irqs);

  step("counters");
  const Counters c = w.smmu->counters();
  fmt::print("translations {}  TLB hits {}  misses {}  walks {}  descriptor reads {}\n"
             "STE fetches {}  CD fetches {}  config-cache hits {}  commands {}  CMD_SYNCs {}\n"
             "TLB entries invalidated {}  events {}\n",
             c.translations, c.tlb_hits, c.tlb_misses, c.walks, c.descriptor_reads, c.ste_fetches, c.cd_fetches,
             c.config_hits, c.commands, c.syncs, c.tlb_invalidated, c.events);
  return {};
}

}  // namespace

int demo_command(std::span<const std::string_view> args) {
  if (!args.empty()) {
    const bool help = args[0] == "--help" || args[0] == "-h";
    fmt::print(help ? stdout : stderr,
               "usage: vsmmu demo\n\nDrives a device's DMA through a nested SMMUv3 translation on the simulated\n"
               "host's SMMU: stage 1 and stage 2 tables, an STE and a CD, register programming, a stale TLB\n"
               "entry until TLBI_NH_VA, and the F_TRANSLATION event that follows.\n");
    return help ? 0 : 2;
  }
  World w;
  Result<void> r = bring_up(w);
  if (r) r = configure_stream(w);
  if (r) r = dma_and_invalidate(w);
  if (!r) {
    fmt::print(stderr, "\nvsmmu demo: FAILED: {}\n", r.error());
    return 1;
  }
  fmt::print("\ndemo complete: nested DMA, stale TLB hit, invalidation and event as the architecture says\n");
  return 0;
}

}  // namespace vsmmu::tools
