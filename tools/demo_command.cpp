// vsmmu demo: a device's DMA through a nested SMMUv3 translation on the simulated host's SMMU (the model),
// programmed through its registers the way Linux's arm-smmu-v3 programs hardware. It shows the bytes
// landing at the PA both stages select, a stale TLB entry surviving an unmap until TLBI_NH_VA + CMD_SYNC,
// and the F_TRANSLATION event the next DMA raises, read from the event queue.
#include <span>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "smmu/driver/smmu_driver.hpp"
#include "smmu/format.hpp"
#include "smmu/model/dma.hpp"
#include "smmu/model/smmu_model.hpp"
#include "smmu/model/testbed.hpp"
#include "tools/commands.hpp"

namespace vsmmu::tools {
namespace {

using namespace vsmmu::smmu;
using namespace vsmmu::smmu::model;
using namespace vsmmu::smmu::driver;

constexpr const char* kWhere = "vsmmu demo";
constexpr TestbedLayout kLayout{};                     // host RAM, the VM's RAM at PA guest_pa / IPA guest_ipa
constexpr std::uint64_t kBufferIpa = kLayout.guest_ipa + kLayout.guest_pool_size;  // past its tables
constexpr std::uint64_t kBufferPa = kLayout.guest_pa + kLayout.guest_pool_size;
constexpr std::uint64_t kIova = 0x7f00'0000'0000ULL;   // the guest driver's DMA address for the buffer
constexpr std::uint32_t kSid = 0x42;
constexpr std::uint16_t kVmid = 7;
constexpr std::uint16_t kAsid = 3;
constexpr std::uint64_t kOffset = 0x100;
constexpr std::uint64_t kStale = 0x5354414c45;  // what the DMA through the stale TLB entry writes

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

// The demo's world: host RAM, the VM's RAM and its IPA view, both stages' builders, the SMMU and its driver.
struct World : Testbed {
  unsigned eventq_irqs = 0;
};

Result<void> bring_up(World& w) {
  step("the SMMU (software model, reference SMMUv3.2 profile) and its driver");
  if (auto r = w.start(); !r) return r;
  w.smmu->set_irq_handler(Irq::eventq, [&w] { ++w.eventq_irqs; });
  auto idr0 = reg<Idr0>(*w.smmu, regs::IDR0);
  auto idr1 = reg<Idr1>(*w.smmu, regs::IDR1);
  auto idr3 = reg<Idr3>(*w.smmu, regs::IDR3);
  auto idr5 = reg<Idr5>(*w.smmu, regs::IDR5);
  if (!idr0 || !idr1 || !idr3 || !idr5) return fail(EIO, kWhere, "cannot read the ID registers");
  fmt::print("{}\n{}\n{}\n{}\n", *idr0, *idr1, *idr3, *idr5);
  fmt::print("driver: stream table and queues, CR0 with CR0ACK, CFGI_ALL + TLBI_NSNH_ALL + CMD_SYNC, SMMUEN\n");
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
  if (auto r = w.map_guest_ram(); !r) return r;
  fmt::print("IPA [{:#x}, {:#x}) -> PA {:#x}; root table at PA {:#x}, start level {}\n", kLayout.guest_ipa,
             kLayout.guest_ipa + kLayout.guest_size, kLayout.guest_pa, w.s2.root(), w.s2.start_level());

  step("guest: stage 1 maps its DMA buffer, VA -> IPA, and a CD in its RAM");
  if (auto r = w.s1.map(kIova, kBufferIpa, 4096, MapAttributes{}); !r) return r;
  auto cd_ipa = w.guest_pool.allocate(Cd::bytes, Cd::bytes);
  if (!cd_ipa) return std::unexpected(cd_ipa.error());
  const Cd cd = stage1_cd(w.s1, kAsid);
  if (!w.guest.write_record(*cd_ipa, cd)) return fail(EFAULT, kWhere, "cannot write the CD at IPA {:#x}", *cd_ipa);
  fmt::print("VA {:#x} -> IPA {:#x}\nCD at IPA {:#x}: {}\n", kIova, kBufferIpa, *cd_ipa, cd);

  step("host: a nested STE for the device (its S1ContextPtr is an IPA), then CFGI_STE + CMD_SYNC");
  const Ste ste = stage1_ste(*cd_ipa, &w.s2, kVmid).set(Ste::S2FWB, true);
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
  if (auto r = device.write64(kIova + kOffset, kStale); !r)
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
  std::uint64_t after = 0;
  if (auto v = w.mem.read64(kBufferPa + kOffset); v) after = *v;
  if (after != kStale) return fail(EIO, kWhere, "the faulting DMA changed PA {:#x}", kBufferPa + kOffset);
  fmt::print("DMA {}; nothing moved (PA {:#x} still holds {:#x})\n", describe(fault.error()), kBufferPa + kOffset,
             after);
  auto drained = w.driver->drain_events();
  if (!drained) return std::unexpected(drained.error());
  const auto& events = drained->records;
  if (events.size() != 1 || events[0].get(Event::ID) != EventId::F_TRANSLATION)
    return fail(EIO, kWhere, "expected one F_TRANSLATION event, read {}", events.size());
  fmt::print("{}\nevent queue interrupts: {}\n", events[0], w.eventq_irqs);

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
