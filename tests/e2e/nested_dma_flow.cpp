#include "tests/e2e/nested_dma_flow.hpp"

#include <poll.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <optional>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/try.hpp"
#include "smmu/command.hpp"
#include "smmu/driver/commands.hpp"
#include "smmu/event.hpp"
#include "smmu/format.hpp"
#include "smmu/registers.hpp"
#include "smmu/ste.hpp"
#include "host/handles.hpp"

namespace vsmmu::e2e {

using namespace smmu;
using namespace smmu::driver;
using testkit::GuestHarness;

bool Report::check(bool ok, std::string name, std::string detail) {
  steps_.push_back({std::move(name), ok, std::move(detail)});
  if (on_step_) on_step_(steps_.back());
  return ok;
}

void Report::note(std::string name, std::string detail) {
  steps_.push_back({std::move(name), true, std::move(detail), true});
  if (on_step_) on_step_(steps_.back());
}

std::size_t Report::failures() const {
  return static_cast<std::size_t>(std::ranges::count_if(steps_, [](const StepResult& s) { return !s.ok; }));
}

std::string format_step(const StepResult& s) {
  return fmt::format("{} {}: {}", s.info ? "INFO" : s.ok ? "PASS" : "FAIL", s.name, s.detail);
}

namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint16_t kAsid = 1;
// Stage-1 VAs below 256 MiB: edu masks its DMA addresses to 28 bits.
constexpr std::uint64_t kVaA = 0x0020'0000;  // the source page
constexpr std::uint64_t kVaB = 0x0030'0000;  // the destination page
constexpr std::uint64_t kVaC = 0x0040'0000;  // the page DMA must not reach behind an invalid vSTE
constexpr std::uint64_t kVaM = 0x0050'0000;  // the page mapped after a migration
// Step 6b: a linear CD table of 2^kCdBits CDs (S1CDMax), and the substream whose CD the guest edits.
constexpr unsigned kCdBits = 4;
constexpr std::uint32_t kSsid = 1;
constexpr std::uint16_t kSsidAsid = 2;

std::vector<std::byte> pattern(std::uint8_t seed) {
  std::vector<std::byte> v(kPage);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::byte(static_cast<std::uint8_t>(seed + i * 13 + (i >> 8)));
  return v;
}

bool equals(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}
bool all_zero(std::span<const std::byte> a) {
  return std::ranges::all_of(a, [](std::byte b) { return b == std::byte{0}; });
}

std::string events_summary(const DrainedEvents& ev) {
  std::string s = fmt::format("{} record(s){}", ev.records.size(), ev.overflow ? ", queue overflowed" : "");
  if (!ev.records.empty()) s += fmt::format("; first: {}", to_string(ev.records.front()));
  return s;
}

// Everything the guest's event queue receives until `first` passes with nothing, or `quiet` passes with nothing
// more after a record (the kernel delivers a faulting transfer's records over time).
Result<DrainedEvents> wait_for_events(GuestHarness& g, std::chrono::milliseconds first, std::chrono::milliseconds quiet) {
  DrainedEvents all;
  auto wait = first;
  for (;;) {
    std::vector<pollfd> fds;
    for (int fd : g.vsmmu().event_fds()) fds.push_back({fd, POLLIN, 0});
    const int n = ::poll(fds.data(), fds.size(), static_cast<int>(wait.count()));
    if (n < 0 && errno != EINTR) return fail(errno, "poll", "polling the vEVENTQ fds: {}", std::strerror(errno));
    VSMMU_TRY_ASSIGN(auto ev, g.events());
    all.overflow |= ev.overflow;
    all.records.insert(all.records.end(), ev.records.begin(), ev.records.end());
    if (n <= 0 && ev.records.empty()) return all;
    wait = quiet;
  }
}

Result<std::uint32_t> read32(GuestHarness& g, const RegisterInfo& reg) {
  VSMMU_TRY_ASSIGN(auto v, g.vsmmu().mmio_read(reg.offset, 4));
  return static_cast<std::uint32_t>(v);
}

// The registers the guest driver programmed (IHI 0070 6.3), as it reads them: a migrated vSMMU must show the same.
constexpr std::array kProgrammed = {regs::CR0,       regs::CR1,         regs::CR2,       regs::GBPA,
                                    regs::STRTAB_BASE, regs::STRTAB_BASE_CFG, regs::CMDQ_BASE, regs::CMDQ_PROD,
                                    regs::CMDQ_CONS, regs::EVENTQ_BASE, regs::EVENTQ_PROD, regs::EVENTQ_CONS};
Result<std::array<std::uint64_t, kProgrammed.size()>> read_programmed(GuestHarness& g) {
  std::array<std::uint64_t, kProgrammed.size()> v{};
  for (std::size_t i = 0; i < v.size(); ++i) {
    VSMMU_TRY_ASSIGN(v[i], g.vsmmu().mmio_read(kProgrammed[i].offset, kProgrammed[i].width / 8));
  }
  return v;
}

class Flow {
 public:
  Flow(host::Host& host, CopyDevice& device, const FlowOptions& o, Report& r)
      : host_(host), dev_(device), o_(o), r_(r) {}

  void run() {
    if (!hw_info()) return;
    if (!start()) return;
    if (dma_through_both_stages() && migrate()) {
      unmap_blocks_and_faults();
      invalid_vste();
      command_batch();
      host_refusals();
      msi_through_stage1();
      pasids();
    }
    teardown();
  }

 private:
  bool ok(const Result<void>& res, std::string name) {
    return r_.check(res.has_value(), std::move(name), res ? "done" : res.error().to_string());
  }
  template <class T>
  std::optional<T> must(Result<T> res, std::string name) {
    if (!res) {
      r_.check(false, std::move(name), res.error().to_string());
      return std::nullopt;
    }
    return std::move(*res);
  }

  // 1a. IOMMU_GET_HW_INFO on a bind of our own: the physical SMMU the vSMMU's ID registers come from.
  bool hw_info() {
    auto dev = must(host_.bind_device(o_.path), fmt::format("bind {}", o_.path));
    if (!dev) return false;
    auto hw = must(host_.get_hw_info(*dev), "IOMMU_GET_HW_INFO");
    msi_window_of(*dev);
    if (auto u = host_.unbind_device(*dev); !u) r_.check(false, "unbind after GET_HW_INFO", u.error().to_string());
    if (!hw) return false;
    hw_ = *hw;
    const bool qemu = hw->idr == kQemuSmmuv3Idr && hw->iidr == kQemuSmmuv3Iidr && hw->aidr == kQemuSmmuv3Aidr;
    return r_.check(hw->type == host::uapi::kHwInfoTypeArmSmmuv3 && (qemu || !o_.expect_qemu_smmuv3),
                    "GET_HW_INFO: the physical SMMU",
                    fmt::format("type {} idr {:#010x} iidr {:#x} aidr {:#x} capabilities {:#x}{}", hw->type,
                                fmt::join(hw->idr, " "), hw->iidr, hw->aidr, hw->capabilities,
                                qemu ? " (QEMU's SMMUv3)" : " (expected QEMU's SMMUv3: type 2, kQemuSmmuv3*)"));
  }

  // 1a. The device's reserved regions (Host::reserved_regions: the kernel's sysfs reserved_regions of its iommu
  // group, the sim host's SMMU window) and the MSI window among them, kept for step 6.
  void msi_window_of(host::DeviceId dev) {
    auto regions = must(host_.reserved_regions(dev), "the device's reserved regions (Host::reserved_regions)");
    if (!regions) return;
    std::string listed;
    for (const auto& r : *regions) listed += fmt::format(" {} {};", host::to_string(r.range), host::to_string(r.type));
    window_ = host::msi_window(*regions);
    r_.check(window_ && window_->start % kPage == 0 && window_->size() % kPage == 0,
             "the host's MSI window (Host::reserved_regions)",
             window_ ? fmt::format("{}, {} KiB; regions:{}", host::to_string(*window_), window_->size() / 1024, listed)
                     : fmt::format("no region of type msi among:{}", listed.empty() ? " none" : listed));
  }

  // 1b. The vSMMU over GET_HW_INFO; the guest driver probes and enables it.
  bool start() {
    testkit::GuestHarnessConfig c;
    c.vsmmu.wishes.ipa_bits = 40;  // guest RAM at 1 GiB; QEMU's SMMU has a 44-bit OAS
    c.devices = {o_.bind()};
    c.devices[0].vsid = o_.vsid;
    c.ram_size = 32ULL << 20;
    c.table_pool_size = 8ULL << 20;
    auto g = GuestHarness::create(host_, c);
    if (!r_.check(g.has_value(), "vSMMU created, guest driver probed and enabled it",
                  g ? fmt::format("{} host objects", (*g)->vsmmu().host_objects()) : g.error().to_string()))
      return false;
    g_ = std::move(*g);

    // What the guest reads from the ID registers (MMIO), against the physical SMMU's.
    const auto& ids = g_->vsmmu().id_registers();
    std::array<std::uint32_t, 6> read{};
    const std::array<RegisterInfo, 6> idr_regs = {regs::IDR0, regs::IDR1, regs::IDR2, regs::IDR3, regs::IDR4, regs::IDR5};
    for (std::size_t i = 0; i < read.size(); ++i) {
      auto v = must(read32(*g_, idr_regs[i]), fmt::format("read {}", idr_regs[i].name));
      if (!v) return false;
      read[i] = *v;
    }
    const auto h0 = Idr0::of(hw_.idr[0]);
    const auto h1 = Idr1::of(hw_.idr[1]);
    const auto h3 = Idr3::of(hw_.idr[3]);
    const auto h5 = Idr5::of(hw_.idr[5]);
    const auto g0 = Idr0::of(read[0]);
    const auto g1 = Idr1::of(read[1]);
    const auto g3 = Idr3::of(read[3]);
    const auto g5 = Idr5::of(read[5]);
    const bool same_as_state = read[0] == ids.idr0.value() && read[1] == ids.idr1.value() &&
                               read[3] == ids.idr3.value() && read[5] == ids.idr5.value();
    // nesting/id_registers.hpp: stage 1 only; ST_LEVEL, granules, RIL, BBML, IIDR/AIDR from the host; OAS from
    // the guest's 40-bit IPA space, at most the host's.
    const bool derived = g0.get(Idr0::S1P) && !g0.get(Idr0::S2P) && g0.get(Idr0::HTTU) == Httu::none &&
                         g0.get(Idr0::ST_LEVEL) == h0.get(Idr0::ST_LEVEL) &&
                         g1.get(Idr1::SIDSIZE) <= h1.get(Idr1::SIDSIZE) && g3.get(Idr3::RIL) == h3.get(Idr3::RIL) &&
                         g3.get(Idr3::BBML) == h3.get(Idr3::BBML) && !g3.get(Idr3::FWB) && g5.oas_bits() == 40 &&
                         g5.oas_bits() <= h5.oas_bits() && g5.get(Idr5::GRAN4K) == h5.get(Idr5::GRAN4K) &&
                         ids.iidr.value() == hw_.iidr && ids.aidr.value() == hw_.aidr;
    r_.check(same_as_state && derived, "guest ID registers derived from GET_HW_INFO",
             fmt::format("guest IDR0 {:#010x} IDR1 {:#010x} IDR3 {:#010x} IDR5 {:#010x} IIDR {:#x} AIDR {:#x}", read[0],
                         read[1], read[3], read[5], ids.iidr.value(), ids.aidr.value()));

    auto cr0 = must(read32(*g_, regs::CR0ACK), "read CR0ACK");
    const auto& drv = g_->driver();
    r_.check(cr0 && Cr0::of(*cr0).get(Cr0::SMMUEN), "guest driver enabled the vSMMU",
             fmt::format("CR0ACK {:#x}; {} stream table, {} SID bits, command queue 2^{}, event queue 2^{}",
                         cr0.value_or(0), drv.strtab_format() == StreamTableFormat::linear ? "linear" : "2-level",
                         drv.sid_bits(), drv.cmdq_log2(), drv.eventq_log2()));
    return ok(dev_.prepare(), "device ready (bus mastering, registers)");
  }

  // 2. Stage 1 VA -> GPA, stage 2 GPA -> host memory: the copy A -> device -> B lands in B's page only.
  bool dma_through_both_stages() {
    std::array<std::uint64_t, 5> pages{};  // A's page, a guard, B's page, a guard, C's page
    for (auto& p : pages) {
      auto a = must(g_->alloc(kPage), "guest RAM page");
      if (!a) return false;
      p = *a;
    }
    src_ = pages[0];
    dst_ = pages[2];
    third_ = pages[4];
    guards_ = {pages[1], pages[3]};
    const auto first = pattern(0x5a);
    std::ranges::copy(first, g_->bytes(src_, kPage).begin());
    for (auto [va, gpa] : {std::pair{kVaA, src_}, {kVaB, dst_}, {kVaC, third_}})
      if (!ok(g_->map(kAsid, va, gpa, kPage), fmt::format("stage-1 map VA {:#x} -> GPA {:#x}", va, gpa))) return false;
    if (!ok(g_->attach(o_.vsid, kAsid), fmt::format("CD (ASID {}) + STE (S1 translate) for vSID {:#x}", kAsid, o_.vsid)))
      return false;
    auto st = g_->vsmmu().stream_status(o_.vsid);
    r_.check(st && st->state == nesting::StreamState::translate, "vSTE installed as a nested HWPT",
             st ? (st->problem ? *st->problem : "translating") : st.error().to_string());

    if (!ok(dev_.to_device(kVaA, kPage), "DMA RAM -> device (VA A)")) return false;
    if (!ok(dev_.from_device(kVaB, kPage), "DMA device -> RAM (VA B)")) return false;
    const bool landed = equals(g_->bytes(dst_, kPage), first);
    r_.check(landed, "the pattern landed at B's GPA",
             fmt::format("VA {:#x} -> GPA {:#x}: {}", kVaB, dst_, landed ? "4096 bytes equal" : "differs"));
    r_.check(equals(g_->bytes(src_, kPage), first) && all_zero(g_->bytes(guards_[0], kPage)) &&
                 all_zero(g_->bytes(guards_[1], kPage)) && all_zero(g_->bytes(third_, kPage)),
             "no other page touched", "A's page unchanged, the guard pages and C's page still zero");
    return landed;
  }

  // 2b. Live migration within the guest (nesting/dirty_tracking.hpp, nesting/migration.cpp). False if the guest
  // was left without a vSMMU.
  bool migrate() {
    dirty_log();
    return move_vsmmu();
  }

  // The VM's dirty log over a nest parent that cannot track: QEMU's SMMUv3 has no HTTU (IDR0.HTTU = 0, IHI 0070
  // 6.3.1), so GET_HW_INFO reports no IOMMU_HW_CAP_DIRTY_TRACKING, and where an SMMU has it upstream arm-smmu-v3
  // refuses NEST_PARENT|DIRTY_TRACKING (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c).
  void dirty_log() {
    auto& dirty = g_->memory().dirty();
    auto st = must(dirty.start(), "dirty tracking: start");
    if (!st) return;
    r_.check(st->mode == nesting::DirtyMode::conservative && st->parents == 1 && st->tracking == 0,
             "dirty tracking starts conservative",
             fmt::format("mode {}, {} nest parent(s), {} tracking in hardware (expected conservative, 1, 0): {}",
                         nesting::dirty_mode_name(st->mode), st->parents, st->tracking, st->reason));
    // The reason is the warning the tracker logs ("dirty tracking on, conservative: ..."): a VMM author needs the
    // cause that fits this host and what it costs a migration.
    const bool has_cap = hw_.capabilities & host::uapi::kCapDirtyTracking;
    const std::string_view cause = has_cap ? "the host refuses NEST_PARENT|DIRTY_TRACKING"
                                           : "does not report IOMMU_HW_CAP_DIRTY_TRACKING";
    const std::string_view cost = "every page of guest RAM is reported dirty in every round";
    r_.check(st->reason.find(cause) != std::string::npos && st->reason.find(cost) != std::string::npos,
             "the conservative mode says why and what it costs",
             fmt::format("capabilities {:#x}; expected \"{}\" and \"{}\" in: {}", hw_.capabilities, cause, cost,
                         st->reason));
    const auto region = g_->memory().regions().front();
    std::vector<std::byte> bitmap(nesting::DirtyTracker::bitmap_bytes(region.size), std::byte{0});
    if (auto h = must(dirty.harvest(region.gpa, bitmap, 0), "dirty tracking: harvest guest RAM")) {
      const std::uint64_t pages = region.size / kPage;
      std::uint64_t set = 0;
      for (std::byte b : bitmap) set += static_cast<std::uint64_t>(std::popcount(std::to_integer<unsigned>(b)));
      r_.check(h->conservative && h->pages == pages && h->dirty == pages && set == pages,
               "one harvest: every page of guest RAM dirty",
               fmt::format("region [{:#x}, +{:#x}): {} of {} page(s) dirty, {} bit(s) set in the bitmap, conservative {} "
                           "(expected {} of {}, conservative)", region.gpa, region.size, h->dirty, h->pages, set,
                           h->conservative, pages, pages));
    }
    if (ok(dirty.stop(), "dirty tracking: stop"))
      r_.check(dirty.status().mode == nesting::DirtyMode::off, "dirty tracking is off",
               fmt::format("mode {}", nesting::dirty_mode_name(dirty.status().mode)));
  }

  // save_state, teardown, VirtualSmmu::restore onto a fresh vSMMU in the same GuestMemory with the device bound
  // anew (a VFIO cdev binds once at a time: the old binding goes first, as in step 6); the guest driver carries
  // on, its tables in guest RAM, and the device translates through its stage 1 again.
  bool move_vsmmu() {
    auto regs_before = must(read_programmed(*g_), "read the programmed registers before the save");
    if (!regs_before) return true;
    const std::size_t held = g_->vsmmu().host_objects();
    std::optional<std::size_t> left;
    auto moved = g_->reload([&] {
      if (o_.host_objects) left = o_.host_objects();
      if (o_.release) o_.release();
      auto d = o_.bind();
      d.vsid = o_.vsid;
      return std::vector{d};
    });
    if (!r_.check(moved.has_value(), "save_state, teardown, restore onto a fresh vSMMU",
                  moved ? fmt::format("the old vSMMU held {} host objects, the restored one {}", held,
                                      g_->vsmmu().host_objects())
                        : moved.error().to_string()))
      return false;
    if (left)
      r_.check(*left == 1, "teardown left only the IOAS on the host",
               fmt::format("{} live host object(s) between teardown and restore (expected 1, the IOAS)", *left));
    else
      r_.note("teardown: host objects", "this host keeps no count of its objects (the kernel's iommufd)");

    auto regs_after = must(read_programmed(*g_), "read the programmed registers after the load");
    if (regs_after) {
      std::string diff;
      for (std::size_t i = 0; i < kProgrammed.size(); ++i)
        if ((*regs_before)[i] != (*regs_after)[i])
          diff += fmt::format(" {} {:#x} -> {:#x};", kProgrammed[i].name, (*regs_before)[i], (*regs_after)[i]);
      r_.check(diff.empty(), "the guest reads the registers it programmed",
               diff.empty() ? fmt::format("{} registers equal; CR0 {:#x}, STRTAB_BASE {:#x}, CMDQ_PROD {:#x}",
                                          kProgrammed.size(), (*regs_after)[0], (*regs_after)[4], (*regs_after)[7])
                            : "differ:" + diff);
    }
    auto st = g_->vsmmu().stream_status(o_.vsid);
    r_.check(st && st->state == nesting::StreamState::translate, "restored: the vSTE is a nested HWPT again",
             st ? (st->problem ? *st->problem : nesting::state_name(st->state)) : st.error().to_string());
    if (!ok(dev_.prepare(), "device ready again (bus mastering, registers)")) return true;

    auto page = must(g_->alloc(kPage), "guest RAM page mapped after the load");
    if (!page) return true;
    if (!ok(g_->map(kAsid, kVaM, *page, kPage), fmt::format("stage-1 map VA {:#x} -> GPA {:#x}", kVaM, *page)))
      return true;
    const auto first = pattern(0x5a);
    if (!ok(dev_.to_device(kVaA, kPage), "restored: DMA RAM -> device (VA A)")) return true;
    if (!ok(dev_.from_device(kVaM, kPage), fmt::format("restored: DMA device -> RAM (VA {:#x})", kVaM))) return true;
    const bool landed = equals(g_->bytes(*page, kPage), first);
    r_.check(landed && equals(g_->bytes(dst_, kPage), first) && all_zero(g_->bytes(third_, kPage)),
             "restored: the pattern landed through the guest's stage 1",
             fmt::format("VA {:#x} -> GPA {:#x}: {}; B still the pattern, C still zero", kVaM, *page,
                         landed ? "4096 bytes equal" : "differs"));
    const auto before = g_->vsmmu().stats();
    const bool synced = ok(g_->driver().issue(cmd_tlbi_nh_va(0, kAsid, kVaM)), "restored: TLBI_NH_VA + CMD_SYNC");
    const auto after = g_->vsmmu().stats();
    r_.check(synced && after.invalidate_calls == before.invalidate_calls + 1 && after.forwarded == before.forwarded + 1,
             "restored: the TLBI reached the host in one HWPT_INVALIDATE",
             fmt::format("{} call(s), {} entr(ies) forwarded", after.invalidate_calls - before.invalidate_calls,
                         after.forwarded - before.forwarded));
    return true;
  }

  // 3. IHI 0070 4.4.2 TLBI_NH_VA + 4.7 CMD_SYNC: after unmap + invalidation the device cannot reach B; the fault
  // is F_TRANSLATION (7.3.12) with the vSID, through the vEVENTQ into the guest's event queue.
  void unmap_blocks_and_faults() {
    const auto before = g_->vsmmu().stats();
    if (!ok(g_->unmap(kAsid, kVaB, kPage), "unmap B + TLBI_NH_VA + CMD_SYNC")) return;
    const auto after = g_->vsmmu().stats();
    r_.check(after.invalidate_calls == before.invalidate_calls + 1 && after.forwarded > before.forwarded,
             "the TLBI reached the host in one HWPT_INVALIDATE",
             fmt::format("{} call(s), {} entr(ies) forwarded", after.invalidate_calls - before.invalidate_calls,
                         after.forwarded - before.forwarded));
    // The device's buffer gets a second pattern, so a copy to B that got through would show.
    const auto second = pattern(0xa5);
    std::ranges::copy(second, g_->bytes(src_, kPage).begin());
    if (!ok(dev_.to_device(kVaA, kPage), "DMA RAM -> device (VA A, second pattern)")) return;
    if (!ok(dev_.from_device(kVaB, kPage), "DMA device -> RAM (VA B, unmapped)")) return;
    r_.check(equals(g_->bytes(dst_, kPage), pattern(0x5a)), "the DMA to unmapped B was blocked",
             "B's page still holds the first pattern");
    auto ev = must(wait_for_events(*g_, o_.event_wait, std::chrono::milliseconds(300)), "guest event queue");
    if (!ev) return;
    const auto is_fault = [&](const Event& e) {
      return e.get(Event::ID) == EventId::F_TRANSLATION && e.get(Event::SID) == o_.vsid &&
             e.get(Event::InputAddr) >= kVaB && e.get(Event::InputAddr) < kVaB + kPage;
    };
    if (ev->records.empty()) {
      r_.check(false, "F_TRANSLATION reached the guest",
               "no event record reached the guest's event queue although the DMA was blocked");
      return;
    }
    r_.check(std::ranges::all_of(ev->records, is_fault), "F_TRANSLATION reached the guest",
             fmt::format("every record F_TRANSLATION, SID = vSID {:#x}, InputAddr in B's page: {}", o_.vsid,
                         events_summary(*ev)));
    // Every record the device raised reaches the guest's queue or is counted lost (VirtualSmmuStats::events_lost:
    // the kernel vEVENTQ's lost-events count, or the guest's queue full), and the queue says so with
    // EVENTQ_PROD.OVFLG (IHI 0070 7.4) exactly when one was lost. The vEVENTQ is as deep as the guest's queue, so
    // at least a queue's worth arrives; how many more depends on timing: the kernel delivers a faulting
    // transfer's records over time, and this guest drains its queue while they come (a CI run saw 256 of 1024
    // arrive in two bursts, 284 + 484 lost).
    const std::uint64_t raised = o_.faults_per_blocked_page;
    const std::uint64_t capacity = 1ULL << g_->driver().eventq_log2();
    const std::uint64_t fit = std::min(raised, capacity);
    const std::uint64_t got = ev->records.size();
    const std::uint64_t lost = g_->vsmmu().stats().events_lost - before.events_lost;
    r_.check(got >= fit && got + lost == raised && ev->overflow == (lost != 0),
             "the guest's event queue: every record delivered or counted lost, OVFLG when lost",
             fmt::format("{} delivered + {} lost of {} raised, overflow {} (expected at least {}: a queue of {}; the "
                         "sum {}; overflow iff lost)",
                         got, lost, raised, ev->overflow, fit, capacity, raised));
  }

  // 4. IHI 0070 5.2: an STE with Config = stage 2 on an SMMU without stage 2 is ILLEGAL: C_BAD_STE (7.3.4), and
  // the stream aborts its transactions.
  void invalid_vste() {
    const auto bad = Ste{}.set(Ste::V, true).set(Ste::Config, StreamConfig::s2_translate);
    if (!ok(g_->driver().install_ste(o_.vsid, bad), "install vSTE V=1 Config=S2 + CFGI_STE + CMD_SYNC")) return;
    auto st = g_->vsmmu().stream_status(o_.vsid);
    r_.check(st && st->state != nesting::StreamState::translate && st->problem, "the vSMMU refused the vSTE",
             st ? st->problem.value_or("no problem recorded") : st.error().to_string());
    auto ev = must(wait_for_events(*g_, std::chrono::milliseconds(200), std::chrono::milliseconds(100)),
                   "guest event queue");
    if (ev)
      r_.check(ev->records.size() == 1 && ev->records[0].get(Event::ID) == EventId::C_BAD_STE &&
                   ev->records[0].get(Event::SID) == o_.vsid,
               "the guest read C_BAD_STE with its vSID", events_summary(*ev));
    // The buffer still holds the second pattern; C is mapped at stage 1, but the stream must not translate.
    if (!ok(dev_.from_device(kVaC, kPage), "DMA device -> RAM (VA C, behind the invalid vSTE)")) return;
    r_.check(all_zero(g_->bytes(third_, kPage)), "the device's DMA was blocked", "C's page still zero");
    auto after = must(wait_for_events(*g_, std::chrono::milliseconds(500), std::chrono::milliseconds(100)),
                      "guest event queue");
    if (after)  // Config = abort records no event (IHI 0070 5.2, STE.Config 0b000)
      r_.check(after->records.empty(), "no event for DMA on the aborting stream", events_summary(*after));
    ok(g_->attach(o_.vsid, kAsid), "valid vSTE again");
  }

  // 5. IHI 0070 7.1: a command the SMMU cannot execute stops the queue on it, CMDQ_CONS.ERR = CERROR_ILL, CONS
  // pointing at it, everything before it done. TLBI_S2_IPA is ILLEGAL without stage 2 (4.4.3).
  void command_batch() {
    const auto before = g_->vsmmu().stats();
    auto prod = must(read32(*g_, regs::CMDQ_PROD), "read CMDQ_PROD");
    if (!prod) return;
    const std::array cmds = {cmd_tlbi_nh_va(0, kAsid, kVaA), cmd_tlbi_nh_va(0, kAsid, kVaC),
                             cmd_tlbi_s2_ipa(0, 0x4000'0000), cmd_tlbi_nh_va(0, kAsid, kVaB)};
    auto issued = g_->driver().issue(cmds);
    r_.check(!issued && issued.error().err == EIO, "[TLBI_NH_VA, TLBI_NH_VA, TLBI_S2_IPA, TLBI_NH_VA] + CMD_SYNC stops",
             issued ? "the queue completed" : issued.error().to_string());
    auto err = must(g_->driver().command_error(), "command_error()");
    if (!err) return;
    const auto mask = (1U << g_->driver().cmdq_log2()) - 1;
    const std::uint32_t at = *err ? (((*err)->index - QueueProd::of(*prod).get(QueueProd::WR)) & mask) : 0;
    r_.check(*err && (*err)->cerror == Cerror::ill && at == 2 && (*err)->command &&
                 (*err)->command->get(Command::Opcode) == Opcode::TLBI_S2_IPA,
             "CMDQ_CONS.ERR = CERROR_ILL at index 2",
             *err ? fmt::format("CERROR {} at index {} ({})", static_cast<unsigned>((*err)->cerror), at,
                                (*err)->command ? to_string(*(*err)->command) : "unreadable")
                  : "no command error");
    const auto mid = g_->vsmmu().stats();
    r_.check(mid.invalidate_calls == before.invalidate_calls + 1 && mid.forwarded == before.forwarded + 2,
             "the two commands before it went to the host in one HWPT_INVALIDATE",
             fmt::format("{} call(s), {} entr(ies)", mid.invalidate_calls - before.invalidate_calls,
                         mid.forwarded - before.forwarded));
    // As arm_smmu_cmdq_skip_err: replace it by CMD_SYNC, acknowledge GERROR.CMDQ_ERR, and the queue resumes.
    if (!ok(g_->driver().acknowledge_command_error(true), "acknowledge the error (GERRORN), skip the command")) return;
    if (!ok(g_->driver().issue(std::span<const Command>{}), "CMD_SYNC after the acknowledgement")) return;
    const auto after = g_->vsmmu().stats();
    r_.check(after.forwarded == before.forwarded + 3 && after.command_errors == before.command_errors + 1,
             "the command after it ran once the queue resumed",
             fmt::format("{} entr(ies) forwarded in {} call(s), {} command error(s)", after.forwarded - before.forwarded,
                         after.invalidate_calls - before.invalidate_calls, after.command_errors - before.command_errors));
  }

  // 5b. Edge cases the planner forwards (fields a stage-1-only SMMU ignores or that do not fit the CD's granule):
  // a host refusal would reach the guest as CERROR_ILL on the command. The kernel passes vIOMMU invalidation
  // fields through unchecked (kernel profile "upstream": strict_invalidation_fields = false), so it accepts them
  // all; a CFGI_CD for a StreamID with no device has nothing to invalidate and is not forwarded (the kernel
  // would refuse its unknown vSID with EIO).
  void host_refusals() {
    struct Probe {
      std::string name;
      Command cmd;
      std::uint64_t forwarded = 1;
    };
    const auto nh_va = cmd_tlbi_nh_va(0, kAsid, kVaA);
    const std::vector<Probe> probes = {
        {"TLBI_NH_ALL", cmd_tlbi_nh_all()},
        {"TLBI_NH_ASID 0xffff", cmd_tlbi_nh_asid(0, 0xffff)},
        {"TLBI_NH_VAA", cmd_tlbi_nh_vaa(0, kVaA)},
        {"TLBI_NH_VA with VMID 5", cmd_tlbi_nh_va(5, kAsid, kVaA)},
        {"TLBI_NH_VA range TG=4K SCALE=0 NUM=31", Command(nh_va).set(Command::TG, 1U).set(Command::NUM, 31U)},
        {"TLBI_NH_VA range TG=64K SCALE=20 NUM=31 TTL=3",
         Command(nh_va).set(Command::TG, 3U).set(Command::SCALE, 20U).set(Command::NUM, 31U).set(Command::TTL, 3U)},
        {"TLBI_NH_VA VA bit 63", cmd_tlbi_nh_va(0, kAsid, 0xffff'ffff'ffff'f000)},
        {"CFGI_CD vSID SSID 0", cmd_cfgi_cd(o_.vsid, 0)},
        {"CFGI_CD_ALL vSID", cmd_cfgi_cd_all(o_.vsid)},
        {"CFGI_CD for a vSID without a device", cmd_cfgi_cd(o_.vsid + 1, 0), 0},
    };
    for (const auto& p : probes) {
      const auto before = g_->vsmmu().stats();
      auto r = g_->driver().issue(p.cmd);
      const auto after = g_->vsmmu().stats();
      const auto forwarded = after.forwarded - before.forwarded;
      r_.check(r && forwarded == p.forwarded, fmt::format("{}: {}", p.name, p.forwarded ? "forwarded, the host accepts it" : "not forwarded"),
               r ? fmt::format("completed; {} entr(ies) forwarded in {} call(s)", forwarded,
                               after.invalidate_calls - before.invalidate_calls)
                 : fmt::format("the guest sees {}", r.error().to_string()));
      if (!r) {  // skip it, as arm_smmu_cmdq_skip_err, so the next probe runs
        (void)g_->driver().acknowledge_command_error(true);
        (void)g_->driver().issue(std::span<const Command>{});
      }
    }
  }

  // 6. MSIs under nesting. Once a device is attached the kernel reserves the host's software MSI window in the
  // IOAS (drivers/iommu/iommufd/device.c iommufd_device_attach_reserved_iova; arm-smmu-v3's is MSI_IOVA_BASE
  // 0x8000000, 1 MiB: drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c arm_smmu_get_resv_regions). Enabling MSI
  // (VFIO_DEVICE_SET_IRQS) runs iommu_dma_prepare_msi -> iommufd_sw_msi (drivers/iommu/iommufd/driver.c), which
  // maps the ITS doorbell page into the nest parent at the window (find_hwpt_paging: a nested HWPT's parent)
  // and gives the device the window IOVA + the doorbell's offset as its MSI address. The MSI write is then a
  // stage-1 input address like any DMA of the stream (IHI 0070 3.2): the guest's stage 1 must map the window
  // 1:1, as a Linux guest does for an IORT RMR (IOMMU_RESV_DIRECT), or it faults there.
  void msi_through_stage1() {
    if (!o_.msi) {
      r_.note("MSI through the guest's stage 1", "skipped: this device raises no MSI");
      return;
    }
    auto& msi = *o_.msi;
    if (!window_) {
      r_.check(false, "MSI through the guest's stage 1", "step 1 found no MSI window for the device");
      return;
    }
    const host::IovaRange window = *window_;
    // The vSMMU read the same window through its own binding (VirtualSmmu::msi_windows).
    const auto windows = g_->vsmmu().msi_windows();
    const auto mine = std::ranges::find_if(windows, [&](const nesting::DeviceMsiWindow& w) { return w.vsid == o_.vsid; });
    r_.check(mine != windows.end() && mine->window == window, "the vSMMU holds the same MSI window for the device",
             mine != windows.end() ? fmt::format("vSID {:#x}: {}", o_.vsid, host::to_string(mine->window))
                                   : fmt::format("no window for vSID {:#x} among {} device(s)", o_.vsid, windows.size()));
    if (auto ranges = must(host_.ioas_iova_ranges(g_->memory().ioas()), "IOMMU_IOAS_IOVA_RANGES")) {
      std::string allowed;
      for (const auto& r : *ranges) allowed += fmt::format(" [{:#x}, {:#x}]", r.start, r.last);
      r_.check(!host::allowed_overlap(window, *ranges), "the kernel reserved the window in the guest's IOAS",
               "allowed IOVA ranges:" + allowed);
    }
    // The notice handler of the vSMMU the guest has now (step 2b replaced the first one).
    notices_.clear();
    g_->vsmmu().set_notice_handler([this](const nesting::Notice& n) { notices_.emplace_back(n.text); });
    if (!ok(g_->map(kAsid, window.start, window.start, window.size()),
            fmt::format("stage-1 1:1 map of the window (VA {:#x} -> IPA {:#x}, as for an IORT RMR)", window.start,
                        window.start)))
      return;
    if (!ok(msi.enable_msi(), "MSI on, one vector (VFIO_DEVICE_SET_IRQS)")) return;
    msi_delivery(msi, window);
    ok(msi.disable_msi(), "MSI off (VFIO_DEVICE_SET_IRQS, count 0)");
  }

  // Raises one interrupt; whether the trigger fired, and how long after the raise it returned.
  std::optional<std::pair<bool, std::chrono::microseconds>> raise(MsiSource& msi, std::chrono::milliseconds wait,
                                                                  std::string name) {
    const auto start = std::chrono::steady_clock::now();
    auto fired = must(msi.raise_and_wait(wait), std::move(name));
    if (!fired) return std::nullopt;
    const auto took = std::chrono::steady_clock::now() - start;
    return std::pair{*fired, std::chrono::duration_cast<std::chrono::microseconds>(took)};
  }

  // The window unmapped: the device raises an interrupt, which must not arrive, and the guest reads one
  // F_TRANSLATION at the MSI address. False if the flow cannot go on.
  bool blocked_msi(MsiSource& msi, std::uint64_t addr, std::string_view again) {
    auto blocked = raise(msi, o_.msi_blocked_wait, fmt::format("raise an interrupt (window unmapped{})", again));
    if (!blocked) return false;
    r_.check(!blocked->first, fmt::format("without the 1:1 map the MSI is blocked{}", again),
             blocked->first ? fmt::format("it arrived after {} us", blocked->second.count())
                            : fmt::format("nothing arrived in {} ms", o_.msi_blocked_wait.count()));
    auto ev = must(wait_for_events(*g_, o_.event_wait, std::chrono::milliseconds(300)), "guest event queue");
    if (!ev) return false;
    // One 4-byte write is one transaction: one record, a write faulting at stage 1 in the MSI address's page.
    const bool one = ev->records.size() == 1 && ev->records[0].get(Event::ID) == EventId::F_TRANSLATION &&
                     ev->records[0].get(Event::SID) == o_.vsid && !ev->records[0].get(Event::RnW) &&
                     !ev->records[0].get(Event::S2) && ev->records[0].get(Event::InputAddr) / kPage == addr / kPage;
    r_.check(one, fmt::format("F_TRANSLATION at the MSI address reached the guest{}", again),
             fmt::format("expected one record, F_TRANSLATION, SID = vSID {:#x}, RnW=W, S2=0, InputAddr in {:#x}'s "
                         "page: {}", o_.vsid, addr, events_summary(*ev)));
    return true;
  }

  void msi_delivery(MsiSource& msi, const host::IovaRange& window) {
    const std::uint64_t size = window.size();
    auto addr = must(msi.msi_address(), "the device's MSI address");
    if (!addr) return;
    if (!r_.check(*addr >= window.start && *addr <= window.last, "the host put the device's MSI address in the window",
                  fmt::format("MSI address {:#x}", *addr)))
      return;

    auto first = raise(msi, o_.msi_wait, "raise an interrupt (window mapped 1:1)");
    if (!first) return;
    r_.check(first->first, "the MSI went through the guest's stage 1 and arrived",
             first->first ? fmt::format("after {} us", first->second.count())
                          : fmt::format("nothing arrived in {} ms", o_.msi_wait.count()));
    if (auto ev = must(wait_for_events(*g_, std::chrono::milliseconds(300), std::chrono::milliseconds(100)),
                       "guest event queue"))
      r_.check(ev->records.empty(), "no event for the delivered MSI", events_summary(*ev));

    // Without the 1:1 map: the doorbell write faults in the guest's stage 1 (IHI 0070 7.3.12), the host's SMMU
    // records it, arm_smmu_handle_event hands it to the vEVENTQ (a nested master, S2 = 0) and the vSMMU to the
    // guest's event queue.
    const auto before = g_->vsmmu().stats();
    if (!ok(g_->unmap(kAsid, window.start, size), "unmap the window + TLBI_NH_VA + CMD_SYNC")) return;
    const auto after = g_->vsmmu().stats();
    r_.check(after.invalidate_calls > before.invalidate_calls && after.forwarded > before.forwarded,
             "the TLBI for the window reached the host",
             fmt::format("{} call(s), {} entr(ies) forwarded", after.invalidate_calls - before.invalidate_calls,
                         after.forwarded - before.forwarded));
    const auto faults_before = g_->vsmmu().stats().msi_window_faults;
    if (!blocked_msi(msi, *addr, "")) return;
    // VirtualSmmu::diagnose_msi_fault: a stage-1 fault in the device's window is counted and the VMM told, once.
    const auto faults = g_->vsmmu().stats().msi_window_faults - faults_before;
    r_.check(faults == 1, "the vSMMU counted an MSI-window fault",
             fmt::format("msi_window_faults +{} (expected +1)", faults));
    const std::string vsid = fmt::format("vSID {:#x}", o_.vsid), at = fmt::format("{:#x}", *addr),
                      in = fmt::format("MSI window {}", host::to_string(window));
    const bool names = notices_.size() == 1 && std::ranges::all_of(std::array{vsid, at, in}, [&](const std::string& w) {
                         return notices_[0].find(w) != std::string::npos;
                       });
    r_.check(names, "the vSMMU told the VMM once: the guest's stage 1 lacks the host's MSI window",
             fmt::format("{} notice(s), expected one naming \"{}\", \"{}\" and \"{}\"{}{}", notices_.size(), vsid, at, in,
                         notices_.empty() ? "" : ": ", notices_.empty() ? "" : notices_.front()));
    // A second MSI faults the same way: counted, forwarded to the guest, but the VMM already knows.
    const auto second_before = g_->vsmmu().stats().msi_window_faults;
    if (!blocked_msi(msi, *addr, ", again")) return;
    const auto second = g_->vsmmu().stats().msi_window_faults - second_before;
    r_.check(second == 1 && notices_.size() == 1, "a second blocked MSI: counted, no second notice",
             fmt::format("msi_window_faults +{} (expected +1), {} notice(s) in all (expected 1)", second, notices_.size()));

    if (!ok(g_->map(kAsid, window.start, window.start, size), "stage-1 1:1 map of the window again")) return;
    auto again = raise(msi, o_.msi_wait, "raise an interrupt (window mapped again)");
    if (!again) return;
    r_.check(again->first, "with the 1:1 map back the MSI arrives again",
             again->first ? fmt::format("it arrived after {} us", again->second.count())
                          : fmt::format("nothing arrived in {} ms", o_.msi_wait.count()));
  }

  // 6b. PASIDs (IHI 0070 3.9, 5.2 S1CDMax/S1Fmt/S1DSS, 5.4): the guest's SSIDSIZE is at most the physical SMMU's
  // IDR1.SSIDSIZE (nesting/id_registers.cpp). The guest builds a linear CD table of 2^kCdBits CDs in its RAM
  // (CD 0: the flow's address space; CD kSsid: another ASID) and installs a vSTE with S1CDMax = kCdBits and
  // S1DSS = substream0 (untagged DMA, all edu can send, uses CD 0). Where the guest's SSIDSIZE allows it, the
  // vSTE becomes a nested HWPT and edu copies through CD 0; where it does not (QEMU's SMMUv3: SSIDSIZE 0), the
  // vSTE is ILLEGAL (IHI 0070 5.2) and the guest reads C_BAD_STE naming S1CDMax and SSIDSIZE. Either way the
  // guest then edits CD kSsid and sends CFGI_CD(vSID, kSsid) and CFGI_CD_ALL(vSID), which go to the host's
  // vIOMMU (IOMMU_HWPT_INVALIDATE) and complete. Last, the flow's own vSTE (S1CDMax 0) again, and edu copies.
  void pasids() {
    const auto& f = g_->driver().features();
    const auto host_ssid = static_cast<unsigned>(Idr1::of(hw_.idr[1]).get(Idr1::SSIDSIZE));
    const unsigned guest_ssid = f.ssid_bits();
    r_.note("PASIDs: SSIDSIZE", fmt::format("physical IDR1.SSIDSIZE {}, max_pasid_log2 {} (the device's PASID "
                                            "width), guest IDR1.SSIDSIZE {}", host_ssid, hw_.max_pasid_log2, guest_ssid));
    r_.check(guest_ssid <= host_ssid, "PASIDs: the guest's SSIDSIZE is at most the host's",
             fmt::format("{} <= {}", guest_ssid, host_ssid));
    auto table = must(g_->alloc(kPage), "PASIDs: a page for the CD table");
    auto* s1 = must(g_->address_space(kAsid), "PASIDs: the flow's address space").value_or(nullptr);
    auto* other = must(g_->address_space(kSsidAsid), "PASIDs: a second address space").value_or(nullptr);
    if (!table || !s1 || !other) return;
    const auto put_cd = [&](std::uint32_t ssid, const Cd& cd) {
      const auto bytes = cd.to_bytes();
      std::ranges::copy(bytes, g_->bytes(*table + ssid * Cd::bytes, Cd::bytes).begin());
    };
    put_cd(0, s1_cd(*s1, kAsid, f));
    put_cd(kSsid, s1_cd(*s1, kAsid, f));
    const Ste ste = cdtable_ste(CdTableRef{*table, CdTableFormat::linear, kCdBits}, f, S1Dss::substream0);
    if (!ok(g_->driver().install_ste(o_.vsid, ste),
            fmt::format("PASIDs: vSTE with S1CDMax {}, S1Fmt linear, S1DSS substream0 (CFGI_STE + CMD_SYNC)", kCdBits)))
      return;
    auto st = must(g_->vsmmu().stream_status(o_.vsid), "PASIDs: stream status");
    if (!st) return;
    if (kCdBits <= guest_ssid) {
      r_.check(st->state == nesting::StreamState::translate, "PASIDs: the vSTE is a nested HWPT on the host",
               st->problem.value_or("translating"));
      copy_lands(kVaC, third_, 0x77, "PASIDs: edu's untagged DMA goes through CD 0 (S1DSS substream0)");
    } else {
      auto ev = must(wait_for_events(*g_, std::chrono::milliseconds(300), std::chrono::milliseconds(100)),
                     "PASIDs: guest event queue");
      const std::string want = fmt::format("S1CDMax {} exceeds IDR1.SSIDSIZE {}", kCdBits, guest_ssid);
      const bool bad_ste = ev && ev->records.size() == 1 && ev->records[0].get(Event::ID) == EventId::C_BAD_STE &&
                           ev->records[0].get(Event::SID) == o_.vsid;
      r_.check(bad_ste && st->state == nesting::StreamState::abort && st->problem &&
                   st->problem->find(want) != std::string::npos,
               "PASIDs: S1CDMax above the guest's SSIDSIZE is C_BAD_STE, the vSMMU says why",
               fmt::format("{}; stream problem: {}", ev ? events_summary(*ev) : "no events",
                           st->problem.value_or("none")));
    }
    // The guest points CD kSsid at another address space and invalidates it: CFGI_CD names a CD-table index,
    // legal only below 2^SSIDSIZE (IHI 0070 4.3.3; CERROR_ILL beyond it, the vSMMU's own answer: the host is not
    // asked); CFGI_CD_ALL (4.3.4) goes to the host either way.
    put_cd(kSsid, s1_cd(*other, kSsidAsid, f));
    const bool legal = (kSsid >> guest_ssid) == 0;
    cfgi(cmd_cfgi_cd(o_.vsid, kSsid), legal,
         fmt::format("PASIDs: CFGI_CD(vSID, SSID {}) {}", kSsid,
                     legal ? "goes to the host and completes" : "is CERROR_ILL beyond the guest's SSIDSIZE"));
    cfgi(cmd_cfgi_cd_all(o_.vsid), true, "PASIDs: CFGI_CD_ALL(vSID) goes to the host and completes");
    if (!ok(g_->attach(o_.vsid, kAsid), "PASIDs: the flow's vSTE (S1CDMax 0) again")) return;
    copy_lands(kVaC, third_, 0x78, "PASIDs: edu copies through stage 1 again");
  }

  // One command + CMD_SYNC: forwarded to the host and completed (`legal`), or CERROR_ILL on it with nothing
  // forwarded, then skipped as arm_smmu_cmdq_skip_err does.
  void cfgi(const Command& cmd, bool legal, std::string name) {
    const auto before = g_->vsmmu().stats();
    auto r = g_->driver().issue(cmd);
    const auto after = g_->vsmmu().stats();
    const auto forwarded = after.forwarded - before.forwarded;
    if (legal) {
      r_.check(r && forwarded == 1, std::move(name),
               r ? fmt::format("{} entr(ies) in {} HWPT_INVALIDATE call(s)", forwarded,
                               after.invalidate_calls - before.invalidate_calls)
                 : fmt::format("the guest sees {}", r.error().to_string()));
    } else {
      auto err = g_->driver().command_error();
      const bool ill = err && *err && (*err)->cerror == Cerror::ill && (*err)->command &&
                       (*err)->command->get(Command::Opcode) == cmd.get(Command::Opcode);
      r_.check(!r && ill && forwarded == 0, std::move(name),
               fmt::format("{}; {} entr(ies) forwarded", r ? "completed" : r.error().to_string(), forwarded));
    }
    if (!r) {
      (void)g_->driver().acknowledge_command_error(true);
      (void)g_->driver().issue(std::span<const Command>{});
    }
  }

  // edu copies A (a fresh pattern) -> its buffer -> `va`; whether `gpa` then holds it.
  void copy_lands(std::uint64_t va, std::uint64_t gpa, std::uint8_t seed, std::string name) {
    const auto p = pattern(seed);
    std::ranges::copy(p, g_->bytes(src_, kPage).begin());
    if (!ok(dev_.to_device(kVaA, kPage), name + ": DMA RAM -> device") ||
        !ok(dev_.from_device(va, kPage), name + ": DMA device -> RAM"))
      return;
    const bool landed = equals(g_->bytes(gpa, kPage), p);
    r_.check(landed, name, fmt::format("VA {:#x} -> GPA {:#x}: {}", va, gpa, landed ? "4096 bytes equal" : "differs"));
  }

  // 7b. The host's kernel on its own (the Host seam, the device bound anew once the vSMMU is gone): a nested
  // HWPT from a vSTE with S1CDMax > 0, and a nested HWPT with a fault queue (IOMMU_FAULT_QUEUE_ALLOC,
  // IOMMU_HWPT_FAULT_ID_VALID) attached to the device. What the kernel answers is reported as is (INFO); the
  // fault queue's fd is checked against drivers/iommu/iommufd/eventq.c (iommufd_fault_fops_read/_write/_poll):
  // a read of a size that is not a whole number of 40-byte records is ESPIPE, an empty queue reads 0, a
  // response with a cookie no delivered group has is EINVAL, poll shows no POLLIN, and closing the fd lets
  // IOMMU_DESTROY free it. No fault is delivered: the device cannot stall (QEMU's SMMUv3 does not) and has no PRI.
  void raw_kernel() {
    auto dev_id = must(host_.bind_device(o_.path), fmt::format("host: bind {}", o_.path));
    if (!dev_id) return;
    host::BoundDevice dev(host_, *dev_id);
    auto ioas_id = must(host_.ioas_alloc(), "host: IOMMU_IOAS_ALLOC");
    if (!ioas_id) return;
    host::HostObject ioas(host_, *ioas_id);
    auto parent_id = must(host_.hwpt_alloc(host::paging_request(*dev_id, ioas.id(), host::uapi::kHwptAllocNestParent)),
                          "host: IOMMU_HWPT_ALLOC(NEST_PARENT)");
    if (!parent_id) return;
    host::HostObject parent(host_, *parent_id);
    if (!ok(host_.attach(*dev_id, parent.id()), "host: attach the nest parent")) return;
    auto viommu_id = must(host_.viommu_alloc(*dev_id, parent.id(), host::uapi::kViommuTypeArmSmmuv3),
                          "host: IOMMU_VIOMMU_ALLOC");
    if (!viommu_id) return;
    host::HostObject viommu(host_, *viommu_id);
    auto vdev_id = must(host_.vdevice_alloc(viommu.id(), *dev_id, o_.vsid), "host: IOMMU_VDEVICE_ALLOC");
    if (!vdev_id) return;
    host::HostObject vdevice(host_, *vdev_id);

    // A vSTE the guest could write: stage 1 through a linear table of 2^kCdBits CDs at an IPA.
    const auto vste = [](unsigned cdmax) {
      const auto all = Ste{}
                           .set(Ste::V, true)
                           .set(Ste::Config, StreamConfig::s1_translate)
                           .set(Ste::S1ContextPtr, 0x4000'0000ULL)
                           .set(Ste::S1CDMax, cdmax)
                           .set(Ste::S1DSS, cdmax ? S1Dss::substream0 : S1Dss::terminate)
                           .to_bytes();
      std::array<std::byte, 16> out{};
      std::memcpy(out.data(), all.data(), out.size());
      return out;
    };
    const auto answer = [](const auto& res) {
      return res ? std::string("accepted") : fmt::format("errno {} ({}): {}", res.error().err,
                                                         std::strerror(res.error().err), res.error().message);
    };
    const auto cd_vste = vste(kCdBits);
    auto with_cds = host_.hwpt_alloc(host::nested_request(*dev_id, viommu.id(), cd_vste));
    r_.note(fmt::format("host: nested HWPT from a vSTE with S1CDMax {} (physical SSIDSIZE {})", kCdBits,
                        Idr1::of(hw_.idr[1]).get(Idr1::SSIDSIZE)),
            answer(with_cds));
    if (with_cds) {
      host::HostObject nested(host_, *with_cds);
      r_.note("host: attach it", answer(host_.attach(*dev_id, nested.id())));
      ok(host_.attach(*dev_id, parent.id()), "host: back to the nest parent");
    }

    // The kernel's vIOMMU invalidation with an SSID (arm_vsmmu_convert_user_cmd: the vSID becomes the SID).
    const std::array cmds = {cmd_cfgi_cd(o_.vsid, kSsid), cmd_cfgi_cd_all(o_.vsid)};
    const auto out = host_.hwpt_invalidate(host::InvalidateRequest{
        .id = viommu.id(), .entry_num = static_cast<std::uint32_t>(cmds.size()), .data = std::as_bytes(std::span(cmds))});
    r_.note(fmt::format("host: IOMMU_HWPT_INVALIDATE(CFGI_CD vSID SSID {}, CFGI_CD_ALL vSID) on the vIOMMU", kSsid),
            out.error ? fmt::format("{} handled; errno {}: {}", out.handled, out.error->err, out.error->message)
                      : fmt::format("accepted, {} handled", out.handled));

    auto q = must(host_.fault_queue_alloc(), "host: IOMMU_FAULT_QUEUE_ALLOC");
    if (!q) return;
    host::UniqueFd fd(q->fd);
    host::HostObject queue(host_, q->id);
    fault_fd(fd.get());
    const auto plain = vste(0);
    auto req = host::nested_request(*dev_id, viommu.id(), plain);
    req.fault_id = q->id;
    auto with_fault = host_.hwpt_alloc(req);
    r_.note("host: nested HWPT with FAULT_ID_VALID (a stage-1 vSTE)", answer(with_fault));
    if (with_fault) {
      host::HostObject nested(host_, *with_fault);
      auto can_stall = host_.device_can_stall(*dev_id);
      r_.note("host: attach it to the device", fmt::format("{}; device_can_stall: {}", answer(host_.attach(*dev_id, nested.id())),
                                                          can_stall ? (*can_stall ? "yes" : "no") : can_stall.error().to_string()));
      fault_fd(fd.get());
      ok(host_.attach(*dev_id, parent.id()), "host: back to the nest parent");
      ok(nested.reset(), "host: IOMMU_DESTROY(nested HWPT with the fault queue)");
    }
    // Its fd closed, the fault queue can go (while the fd is open IOMMU_DESTROY is EBUSY: host/handles.hpp).
    fd.reset();
    ok(queue.reset(), "host: fault queue fd closed, IOMMU_DESTROY(fault queue)");
    ok(host_.detach(*dev_id), "host: detach");
  }

  // What the fault queue's fd answers while no fault is queued.
  void fault_fd(int fd) {
    std::array<std::byte, 2 * sizeof(host::uapi::iommu_hwpt_pgfault)> buf{};
    auto odd = host_.read_fault_queue(fd, std::span(buf).first(sizeof(host::uapi::iommu_hwpt_pgfault) - 1));
    r_.check(!odd && odd.error().err == ESPIPE, "fault queue: read of 39 bytes is ESPIPE",
             odd ? fmt::format("{} bytes", *odd) : odd.error().to_string());
    auto empty = host_.read_fault_queue(fd, buf);
    r_.check(empty && *empty == 0, "fault queue: read of an empty queue is 0",
             empty ? fmt::format("{} bytes", *empty) : empty.error().to_string());
    pollfd p{fd, POLLIN, 0};
    const int n = ::poll(&p, 1, 0);
    r_.check(n == 0 || (n == 1 && !(p.revents & POLLIN)), "fault queue: poll shows no POLLIN",
             fmt::format("poll {} revents {:#x}", n, static_cast<unsigned>(p.revents)));
    const host::uapi::iommu_hwpt_page_response resp{.cookie = 0x1234, .code = host::uapi::kPageResponseSuccess};
    auto w = host_.write_fault_queue(fd, std::as_bytes(std::span(&resp, 1)));
    r_.check(!w && w.error().err == EINVAL, "fault queue: a response with an unknown cookie is EINVAL",
             w ? fmt::format("{} bytes consumed", *w) : w.error().to_string());
  }

  // 7. Teardown: every host object goes with the vSMMU; the device can serve a second vSMMU after.
  void teardown() {
    g_.reset();
    r_.note("first vSMMU destroyed", "guest RAM, IOAS, HWPTs, vIOMMU, vDEVICE, vEVENTQ released");
    if (o_.release) o_.release();
    raw_kernel();
    ssidsize_refused();
    testkit::GuestHarnessConfig c;
    c.vsmmu.wishes.ipa_bits = 40;
    c.devices = {{o_.path, -1, o_.vsid}};
    c.ram_size = 16ULL << 20;
    c.table_pool_size = 4ULL << 20;
    auto g = GuestHarness::create(host_, c);
    if (!r_.check(g.has_value(), "a second vSMMU binds the device again", g ? "created" : g.error().to_string())) return;
    auto page = must((*g)->alloc(kPage), "second vSMMU: guest RAM page");
    if (page && ok((*g)->map(kAsid, kVaA, *page, kPage), "second vSMMU: map") &&
        ok((*g)->attach(o_.vsid, kAsid), "second vSMMU: attach")) {
      auto st = (*g)->vsmmu().stream_status(o_.vsid);
      r_.check(st && st->state == nesting::StreamState::translate, "second vSMMU: the stream translates",
               st ? "translating" : st.error().to_string());
    }
  }

  // A vSMMU asking for more SSID bits than the physical SMMU has is refused when it is created, saying so.
  void ssidsize_refused() {
    const auto host_ssid = static_cast<unsigned>(Idr1::of(hw_.idr[1]).get(Idr1::SSIDSIZE));
    testkit::GuestHarnessConfig c;
    c.vsmmu.wishes.ipa_bits = 40;
    c.vsmmu.wishes.ssid_bits = host_ssid + kCdBits;
    c.devices = {{o_.path, -1, o_.vsid}};
    c.ram_size = 16ULL << 20;
    c.table_pool_size = 4ULL << 20;
    auto g = GuestHarness::create(host_, c);
    const std::string want = fmt::format("SSIDSIZE {} asked, the physical SMMU has {}", host_ssid + kCdBits, host_ssid);
    r_.check(!g && g.error().err == EINVAL && g.error().message.find(want) != std::string::npos,
             "PASIDs: a vSMMU with SSIDSIZE above the host's is refused at creation",
             g ? "created" : g.error().to_string());
  }

  host::Host& host_;
  CopyDevice& dev_;
  const FlowOptions& o_;
  Report& r_;
  host::HwInfo hw_;
  std::unique_ptr<GuestHarness> g_;
  std::optional<host::IovaRange> window_;  // the device's MSI window (step 1), for step 6
  std::vector<std::string> notices_;       // the vSMMU's notices to the VMM during step 6
  std::uint64_t src_ = 0, dst_ = 0, third_ = 0;
  std::array<std::uint64_t, 2> guards_{};
};

}  // namespace

void run_nested_dma_flow(host::Host& host, CopyDevice& device, const FlowOptions& options, Report& report) {
  Flow(host, device, options, report).run();
}

}  // namespace vsmmu::e2e
