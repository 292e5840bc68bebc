// The guest-facing fuzz target: the input is a hostile guest (docs/fuzzing.md has the byte format). A small VM
// (GuestHarness: 2 MiB of guest RAM, the scripted driver's bring-up) runs a VirtualSmmu over the simulated host; the
// bytes then drive MMIO of any offset and size, writes of raw bytes or well-formed STEs, CDs, level-1 descriptors
// and commands into the structures the vSMMU reads, the CMDQ_PROD doorbell, device DMA through the sim's SMMU,
// process_events(), hot-plug of the profile's devices, stage-1 page-table changes and host failure injection
// (SimHost::set_fail_nth). After every action it checks what must hold for any guest, a hostile one included
// (docs/fuzzing.md, "The guest fuzzer"):
// - an MMIO access is refused exactly when it is not 4 or 8 bytes, misaligned or outside pages 0 and 1;
// - the host objects the sim holds are exactly the vSMMU's (VirtualSmmu::host_objects()) and its guest RAM's IOAS;
// - every device's physical STE (SimHost::physical_ste) does what VirtualSmmu::stream_status says: Config =
//   abort for blocked/abort (and for a device the vSMMU does not hold), stage 2 only for bypass, nested for
//   translate (IHI 0070 5.2, STE.Config);
// - after teardown the sim holds nothing but that IOAS and its mapping (no device, domain, translating STE,
//   queue), and every fd the vSMMU handed out in event_fds() (vEVENTQs, its work fd) is closed.
// Built with VSMMU_GUEST_FUZZ_DIFFERENTIAL (guest_diff_fuzz), the same actions run on two VirtualSmmus over two
// independent sim hosts, InvalidationPolicy::batched and ::per_command; after each action both run the VMM's
// poll loop until their command queues are drained, and then everything the guest can observe must be
// identical: each action's answer (MMIO values and errors, DMA results, read data and where writes landed,
// drained event records), the registers the SMMU moves (all of them at the end), the event queue's memory,
// interrupts, stream_status, and at the end the whole of guest RAM. Host failure injection is left out there:
// the policies make different numbers of host calls by design.
// A violation prints what differs and aborts, so libFuzzer keeps the input.
#include <fcntl.h>
#include <poll.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "testing/guest_harness.hpp"
#include "nesting/guest_memory.hpp"
#include "host/sim/sim_host.hpp"
#include "smmu/driver/commands.hpp"
#include "smmu/driver/records.hpp"
#include "smmu/registers.hpp"
#include "smmu/stream_table.hpp"

namespace {

using namespace vsmmu;
using namespace vsmmu::smmu;
using testkit::GuestHarness;
using nesting::InvalidationPolicy;
using nesting::StreamState;
using host::sim::SimHost;

#ifdef VSMMU_GUEST_FUZZ_DIFFERENTIAL
constexpr bool kDifferential = true;
#else
constexpr bool kDifferential = false;
#endif

// GUEST_FUZZ_TRACE=1: each action's op and every world's answer on stderr, for reading a crash input.
bool trace() {
  static const bool on = std::getenv("GUEST_FUZZ_TRACE") != nullptr;
  return on;
}

[[noreturn]] void violation(const std::string& what) {
  std::fprintf(stderr, "guest fuzz invariant violated: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// The input, read front to back; past its end every read is 0 and done() is true.
class Bytes {
 public:
  explicit Bytes(std::span<const std::uint8_t> b) : b_(b) {}
  bool done() const { return at_ >= b_.size(); }
  std::uint8_t u8() { return at_ < b_.size() ? b_[at_++] : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | (u8() << 8)); }
  std::uint32_t u32() { return u16() | (static_cast<std::uint32_t>(u16()) << 16); }
  std::uint64_t u64() { return u32() | (static_cast<std::uint64_t>(u32()) << 32); }
  std::span<const std::uint8_t> take(std::size_t n) {
    n = std::min(n, b_.size() - std::min(at_, b_.size()));
    auto s = b_.subspan(at_, n);
    at_ += n;
    return s;
  }

 private:
  std::span<const std::uint8_t> b_;
  std::size_t at_ = 0;
};

// The guest: RAM at 1 GiB, a table pool for the scripted driver, data pages after it.
constexpr std::uint64_t kRamGpa = 0x4000'0000;
constexpr std::uint64_t kRamSize = 2ULL << 20;
constexpr std::uint64_t kPoolSize = 1ULL << 20;
constexpr std::uint64_t kPage = 0x1000;
constexpr std::uint64_t kVa = 0x7f00'0000'0000;
constexpr unsigned kDataPages = 8;   // mapped at kVa + i * kPage by the address spaces below
constexpr std::uint16_t kAsidA = 1;
constexpr std::uint16_t kAsidB = 2;
constexpr std::size_t kMaxActions = 96;

// The default hardware profile's devices (nic0/nic1 behind smmu0, gpu0/nvme0 behind smmu1, nvme0 refused for
// coherency) and the vSIDs the guest knows the first two by from the start.
constexpr std::array<const char*, 4> kDevices{"nic0", "nic1", "gpu0", "nvme0"};
constexpr std::array<const char*, 4> kEngines{"nic0.dma", "nic1.dma", "gpu0.dma", "nvme0.dma"};
constexpr std::uint32_t kNic0 = 0x10, kNic1 = 0x18, kGpu0 = 0x20;
constexpr std::array<std::uint32_t, 8> kSids{kNic0, kNic1, kGpu0, kNic0, kNic1, 0x28, 0, 0xff};

// Two alike physical SMMUs without S2FWB (coherent through CANWBS root complexes), with the default profile's
// device names: nic0/nic1 behind smmuA, gpu0 behind smmuB, nvme0 behind smmuB on a root complex without CANWBS.
// gpu0 can join a vSMMU made on smmuA (same ID registers), so one vSMMU drives two vIOMMUs.
constexpr const char* kTwinSmmus = R"({
  "kind": "hardware", "name": "fuzz-twins",
  "smmus": [ { "name": "smmuA", "s2fwb": false, "ril": true }, { "name": "smmuB", "s2fwb": false, "ril": true } ],
  "root_complexes": [ { "name": "pcie0", "smmu": "smmuA", "segment": 0, "canwbs": true },
                      { "name": "pcie1", "smmu": "smmuB", "segment": 1, "canwbs": true },
                      { "name": "pcie2", "smmu": "smmuB", "segment": 2, "canwbs": false } ],
  "devices": [ { "name": "nic0", "bdf": "0000:01:00.0", "root_complex": "pcie0" },
               { "name": "nic1", "bdf": "0000:02:00.0", "root_complex": "pcie0" },
               { "name": "gpu0", "bdf": "0001:01:00.0", "root_complex": "pcie1" },
               { "name": "nvme0", "bdf": "0002:03:00.0", "root_complex": "pcie2" } ],
  "dma_engines": [ { "name": "nic0.dma", "device": "nic0" }, { "name": "nic1.dma", "device": "nic1" },
                   { "name": "gpu0.dma", "device": "gpu0" }, { "name": "nvme0.dma", "device": "nvme0" } ]
})";

struct Profiles {
  host::sim::KernelProfile kernel;
  std::array<host::sim::HardwareProfile, 2> hardware;  // the embedded "default", the twins
};
const Profiles& profiles() {
  static const Profiles p = [] {
    auto k = host::sim::embedded_kernel_profile("upstream");
    auto h = host::sim::embedded_hardware_profile("default");
    auto t = host::sim::parse_hardware_profile(kTwinSmmus, "guest_fuzz");
    if (!k) violation(fmt::format("kernel profile: {}", k.error().to_string()));
    if (!h) violation(fmt::format("default hardware profile: {}", h.error().to_string()));
    if (!t) violation(fmt::format("twin hardware profile: {}", t.error().to_string()));
    return Profiles{std::move(*k), {std::move(*h), std::move(*t)}};
  }();
  return p;
}

// Bring-up choices from the input's first byte.
struct Setup {
  InvalidationPolicy policy = InvalidationPolicy::batched;
  bool linear = false;          // a linear stream table (else 2-level where IDR0.ST_LEVEL offers it)
  bool gbpa_abort = false;      // GBPA.ABORT at reset
  unsigned cmdq_log2 = 8;       // small queues wrap and fill quickly
  unsigned eventq_log2 = 7;
  bool prepared_stes = true;    // the devices' STEs written (not yet invalidated: CFGI_STE makes them live)
  unsigned ssid_bits = 4;       // IDR1.SSIDSIZE the VMM asks for (0: no substreams)
  bool twins = false;           // the two-alike-SMMUs profile (else the embedded default)
};

// A host and the VM's RAM (its IOAS on that host) live for the whole process: making them is most of what a
// fresh VM costs (memfd, a thread, the SMMU models). Every input starts from zeroed RAM, no injected failure,
// and a host that holds nothing but that IOAS (teardown checks it), so an input does the same on its own.
struct Machine {
  std::unique_ptr<SimHost> host;
  std::unique_ptr<nesting::GuestMemory> memory;
};
Machine& machine(std::size_t side, bool twins) {
  static std::array<Machine, 4> m;
  const std::size_t i = side + (twins ? 2 : 0);
  if (!m[i].host) {
    auto host = SimHost::create(profiles().kernel, profiles().hardware[twins ? 1 : 0]);
    if (!host) violation(fmt::format("SimHost::create: {}", host.error().to_string()));
    m[i].host = std::move(*host);
    const nesting::GuestRamLayout ram{kRamGpa, kRamSize};
    auto memory = nesting::GuestMemory::allocate(*m[i].host, std::span(&ram, 1));
    if (!memory) violation(fmt::format("GuestMemory::allocate: {}", memory.error().to_string()));
    m[i].memory = std::move(*memory);
  }
  m[i].host->set_fail_nth(0);
  std::memset(m[i].memory->host_pointer(kRamGpa, kRamSize), 0, kRamSize);
  return m[i];
}

// One VM: the harness (the vSMMU and the scripted driver over the machine's RAM), what it holds.
struct World {
  SimHost* host = nullptr;
  std::unique_ptr<GuestHarness> guest;
  std::map<std::uint32_t, std::size_t> held;  // vSID -> index in kDevices
  std::vector<int> fds_seen;                  // every vEVENTQ fd the vSMMU handed out
  std::array<std::uint64_t, 4> irqs{};
  std::uint64_t data_gpa = 0;                 // kDataPages data pages
  std::uint64_t spare_gpa = 0;                // 16 KiB for level-2 stream tables the input points at
  std::uint32_t unpublished = 0;              // commands written after CMDQ_PROD, not yet published

  nesting::VirtualSmmu& vsmmu() { return guest->vsmmu(); }
  PhysicalMemory& ram() { return guest->memory().view(); }
};

std::unique_ptr<World> make_world(const Setup& s, Machine& m) {
  auto w = std::make_unique<World>();
  w->host = m.host.get();
  testkit::GuestHarnessConfig c;
  c.vsmmu.policy = s.policy;
  c.vsmmu.gbpa_abort_at_reset = s.gbpa_abort;
  c.vsmmu.wishes.ssid_bits = s.ssid_bits;
  // Queues of at most 256 commands and 128 events (IDR1.CMDQS/EVENTQS): the work per doorbell stays small.
  c.vsmmu.wishes.cmdq_log2 = 8;
  c.vsmmu.wishes.eventq_log2 = 7;
  c.devices = {{"nic0", -1, kNic0}, {"nic1", -1, kNic1}};
  c.ram_gpa = kRamGpa;
  c.ram_size = kRamSize;
  c.table_pool_size = kPoolSize;
  c.driver.force_linear = s.linear;
  c.driver.cmdq_log2 = s.cmdq_log2;
  c.driver.eventq_log2 = s.eventq_log2;
  auto g = GuestHarness::create_in(*m.memory, kRamGpa, kRamSize, c);
  if (!g) violation(fmt::format("GuestHarness::create_in: {}", g.error().to_string()));
  w->guest = std::move(*g);
  w->held = {{kNic0, 0}, {kNic1, 1}};
  for (unsigned line = 0; line < 3; ++line)
    w->vsmmu().set_irq_handler(static_cast<Irq>(line), [irqs = &w->irqs, line] { ++(*irqs)[line]; });

  // Two address spaces over the data pages (the last one global, nG = 0, as kernel mappings are), and for
  // each device a CD table with SSID 0 -> ASID A, SSID 1 -> ASID B: what the input's STEs point at.
  auto& g2 = *w->guest;
  auto ok = [](const Result<void>& r, const char* what) {
    if (!r) violation(fmt::format("setup: {}: {}", what, r.error().to_string()));
  };
  auto must = [](auto r, const char* what) {
    if (!r) violation(fmt::format("setup: {}: {}", what, r.error().to_string()));
    return std::move(*r);
  };
  w->data_gpa = must(g2.alloc(kDataPages * kPage), "data pages");
  w->spare_gpa = must(g2.alloc(4 * kPage), "spare pages");
  for (unsigned i = 0; i < kDataPages; ++i) {
    MapAttributes a;
    a.global = i == kDataPages - 1;
    ok(g2.map(kAsidA, kVa + i * kPage, w->data_gpa + i * kPage, kPage, a), "map A");
    if (i < kDataPages / 2) ok(g2.map(kAsidB, kVa + i * kPage, w->data_gpa + (kDataPages - 1 - i) * kPage, kPage, a), "map B");
  }
  auto& drv = g2.driver();
  for (std::uint32_t sid : {kNic0, kNic1, kGpu0}) {
    const auto ref = must(drv.create_cd_table(sid, std::min(s.ssid_bits, 1U), CdTableFormat::linear), "CD table");
    (void)must(drv.write_cd(sid, 0, driver::s1_cd(*must(g2.address_space(kAsidA), "ASID A"), kAsidA, drv.features())), "CD 0");
    if (s.ssid_bits) (void)must(drv.write_cd(sid, 1, driver::s1_cd(*must(g2.address_space(kAsidB), "ASID B"), kAsidB, drv.features())), "CD 1");
    if (s.prepared_stes) (void)must(drv.write_ste(sid, driver::cdtable_ste(ref, drv.features())), "STE");
  }
  return w;
}

// ---- invariants

// StreamState in messages: its number (nesting/virtual_smmu.hpp: blocked, abort, bypass, translate).
unsigned state_number(StreamState s) { return static_cast<unsigned>(s); }

void check_world(World& w, const char* side, std::size_t step) {
  auto& v = w.vsmmu();
  // The IOAS of the guest's RAM is the one host object that is not the vSMMU's.
  const auto st = w.host->stats();
  const std::size_t vsmmu_objects = v.host_objects();
  if (st.objects != vsmmu_objects + 1)
    violation(fmt::format("{} action {}: the sim host holds {} objects, the vSMMU says it holds {} (+1 IOAS)", side,
                          step, st.objects, vsmmu_objects));
  for (std::size_t i = 0; i < kDevices.size(); ++i) {
    auto ste = w.host->physical_ste(kDevices[i]);
    if (!ste) violation(fmt::format("physical_ste({}): {}", kDevices[i], ste.error().to_string()));
    const StreamConfig physical = ste->get(Ste::V) ? ste->get(Ste::Config) : StreamConfig::abort;
    std::optional<std::uint32_t> vsid;
    for (const auto& [sid, dev] : w.held)
      if (dev == i) vsid = sid;
    StreamState state = StreamState::blocked;
    if (vsid) {
      auto status = v.stream_status(*vsid);
      if (!status) violation(fmt::format("{} action {}: stream_status({:#x}) of a held device: {}", side, step, *vsid,
                                         status.error().to_string()));
      state = status->state;
    }
    const StreamConfig want = state == StreamState::bypass      ? StreamConfig::s2_translate
                              : state == StreamState::translate ? StreamConfig::nested
                                                                : StreamConfig::abort;
    if (physical != want)
      violation(fmt::format("{} action {}: {} ({}) has physical STE Config {:#05b} but the vSMMU says StreamState {}", side, step,
                            kDevices[i], vsid ? fmt::format("vSID {:#x}", *vsid) : std::string("not held"),
                            static_cast<unsigned>(physical), state_number(state)));
  }
  for (int fd : v.event_fds())
    if (std::find(w.fds_seen.begin(), w.fds_seen.end(), fd) == w.fds_seen.end()) w.fds_seen.push_back(fd);
}

// Destroys the VMs (all of them first: in differential mode a number one vSMMU closed may have been reused by
// the other's fd); each sim host must then hold nothing but the RAM's IOAS and its one mapping, and every fd a
// vSMMU handed out in event_fds() must be closed.
void teardown(std::span<const std::unique_ptr<World>> worlds) {
  for (const auto& w : worlds) w->guest.reset();
  for (std::size_t i = 0; i < worlds.size(); ++i) {
    const char* side = i ? "per_command" : "batched";
    const World& w = *worlds[i];
    const auto st = w.host->stats();
    if (st.objects != 1 || st.devices_bound || st.ioas_areas != 1 || st.domains || st.translating_stes || st.veventq_fds)
      violation(fmt::format("{} teardown: the sim host still holds {} objects (1: the RAM's IOAS), {} devices bound, "
                            "{} IOAS areas (1: the RAM), {} domains, {} translating STEs, {} queue fds",
                            side, st.objects, st.devices_bound, st.ioas_areas, st.domains, st.translating_stes,
                            st.veventq_fds));
    for (int fd : w.fds_seen)
      if (::fcntl(fd, F_GETFD) != -1) violation(fmt::format("{} teardown: fd {} of the vSMMU is still open", side, fd));
  }
}

// ---- what the guest observes, compared between the two policies

// The answers are text only where they are compared (differential mode) or traced.
bool want_text() { return kDifferential || trace(); }

std::string describe(const Result<std::uint64_t>& r) {
  if (!want_text()) return {};
  return r ? fmt::format("{:#x}", *r) : fmt::format("error {}", r.error().err);
}
std::string describe(const Result<void>& r) {
  if (!want_text()) return {};
  return r ? "ok" : fmt::format("error {}", r.error().err);
}
std::string describe(const Result<std::size_t>& r, int) {
  if (!want_text()) return {};
  return r ? fmt::format("{}", *r) : fmt::format("error {}", r.error().err);
}
std::string describe(const Result<host::sim::DmaResult>& r) {
  if (!want_text()) return {};
  if (!r) return fmt::format("error {}", r.error().err);
  if (!r->fault) return fmt::format("{} bytes, no fault", r->bytes);
  const auto& f = *r->fault;
  return fmt::format("{} bytes, fault outcome {} at {:#x} event {} recorded {}", r->bytes,
                     static_cast<unsigned>(f.outcome), f.iova,
                     f.event ? fmt::format("{:#x}", static_cast<unsigned>(f.event->get(Event::ID))) : "none", f.recorded);
}

void same(const std::string& a, const std::string& b, const std::string& what, std::size_t step) {
  if (a != b) violation(fmt::format("action {}: {} differs: batched {} / per_command {}", step, what, a, b));
}

std::size_t hash(std::span<const std::byte> b) {
  return std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

// The guest's RAM at [gpa, gpa + n), empty when that is not all RAM.
std::span<const std::byte> ram_at(World& w, std::uint64_t gpa, std::size_t n) {
  const std::byte* p = w.guest->memory().host_pointer(gpa, n);
  return p ? std::span(p, n) : std::span<const std::byte>{};
}
bool same_bytes(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// The registers the SMMU itself changes (IHI 0070 6.3: acknowledgements, GBPA.Update, GERROR, the indexes it
// moves): compared after every action. The others hold what the guest wrote; finish() compares them all.
constexpr std::array<RegisterInfo, 8> kMovingRegisters{regs::CR0ACK, regs::STATUSR, regs::GBPA, regs::IRQ_CTRLACK,
                                                       regs::GERROR, regs::CMDQ_CONS, regs::EVENTQ_PROD, regs::EVENTQ_CONS};

template <class Registers>
void compare_registers(World& a, World& b, const Registers& which, std::size_t step) {
  for (const auto& reg : which) {
    const unsigned size = reg.width / 8;
    auto ra = a.vsmmu().mmio_read(reg.offset, size);
    auto rb = b.vsmmu().mmio_read(reg.offset, size);
    if (ra.has_value() != rb.has_value() || (ra && *ra != *rb) || (!ra && ra.error().err != rb.error().err))
      same(describe(ra), describe(rb), fmt::format("register {}", reg.name), step);
  }
}

// What the guest sees after an action: the registers the SMMU moves, the event queue's memory, stream_status,
// interrupts.
void compare(World& a, World& b, std::size_t step) {
  compare_registers(a, b, kMovingRegisters, step);
  auto base = a.vsmmu().mmio_read(regs::EVENTQ_BASE.offset, 8);
  if (base) {
    const auto q = QueueBase::of(*base);
    const auto log2 = std::min<std::uint64_t>(q.get(QueueBase::LOG2SIZE), a.vsmmu().id_registers().idr1.get(Idr1::EVENTQS));
    const std::size_t n = Event::bytes << log2;
    if (!same_bytes(ram_at(a, q.get(QueueBase::ADDR), n), ram_at(b, q.get(QueueBase::ADDR), n)))
      violation(fmt::format("action {}: the event queue's memory at {:#x} differs", step, q.get(QueueBase::ADDR)));
  }
  for (std::uint32_t sid : {kNic0, kNic1, kGpu0, 0x28U, 0U, 0xffU}) {
    auto sa = a.vsmmu().stream_status(sid);
    auto sb = b.vsmmu().stream_status(sid);
    const bool equal = sa.has_value() == sb.has_value() &&
                       (sa ? sa->state == sb->state && sa->problem.has_value() == sb->problem.has_value()
                           : sa.error().err == sb.error().err);
    if (!equal) {
      const auto d = [](const Result<nesting::StreamStatus>& st) {
        return st ? fmt::format("StreamState {} problem {}", state_number(st->state), st->problem.value_or("none"))
                  : fmt::format("error {}", st.error().err);
      };
      same(d(sa), d(sb), fmt::format("stream_status({:#x})", sid), step);
    }
  }
  if (a.irqs != b.irqs)
    violation(fmt::format("action {}: interrupt counts (eventq, gerror, cmd_sync) differ: batched {} {} {} / "
                          "per_command {} {} {}", step, a.irqs[0], a.irqs[1], a.irqs[2], b.irqs[0], b.irqs[1], b.irqs[2]));
}

// ---- the guest's actions

// An MMIO access is refused exactly when it is not 4 or 8 bytes, not naturally aligned, or not inside pages 0
// and 1 (smmu/mmio.hpp; holes are RAZ/WI, IHI 0070 6.2): a refusal the VMM turns into an abort for the guest.
void check_mmio_answer(std::uint64_t offset, unsigned size, bool accepted, const char* what, std::size_t step) {
  const bool valid = (size == 4 || size == 8) && offset % size == 0 && offset <= kRegisterSpace - size;
  if (accepted != valid)
    violation(fmt::format("action {}: {} of {} bytes at {:#x} was {}", step, what, size, offset,
                          accepted ? "accepted" : "refused"));
}

enum class Op : std::uint8_t {
  mmio_write, mmio_read, ram_bytes, write_ste, write_cd, write_l1, push_commands, doorbell, commands_and_sync,
  dma, process_events, add_device, remove_device, fail_nth, page_table, drain_events, ack_gerror, count
};

std::uint64_t pick_offset(Bytes& in) {
  const std::uint8_t sel = in.u8();
  const auto regs_all = all_registers();
  if (sel < 224) {
    const auto& r = regs_all[sel % regs_all.size()];
    return r.offset + ((sel & 0x80) && r.width == 64 ? 4 : 0);  // either half of a 64-bit register
  }
  return in.u32() % (kRegisterSpace + 0x100);  // anywhere, holes and beyond page 1 included
}
unsigned pick_size(Bytes& in) {
  static constexpr std::array<unsigned, 16> sizes{4, 8, 4, 8, 4, 8, 4, 8, 4, 8, 1, 2, 3, 0, 16, 6};
  return sizes[in.u8() % sizes.size()];
}
std::uint32_t pick_sid(Bytes& in) {
  const std::uint8_t s = in.u8();
  return s < 240 ? kSids[s % kSids.size()] : in.u16();
}
std::uint16_t pick_asid(Bytes& in) {
  static constexpr std::array<std::uint16_t, 7> asids{kAsidA, kAsidB, kAsidA, kAsidB, 0, 3, 0xffff};
  const std::uint8_t s = in.u8();
  return s < 252 ? asids[s % asids.size()] : in.u16();
}
std::uint64_t pick_va(Bytes& in) {
  const std::uint8_t s = in.u8();
  return s < 240 ? kVa + (s % (kDataPages + 1)) * kPage : in.u64();
}

std::uint64_t reg(World& w, const RegisterInfo& r) {
  auto v = w.vsmmu().mmio_read(r.offset, r.width / 8);
  return v ? *v : 0;
}

// A command the guest writes: well formed (any opcode the guest may or may not use, fields from the input),
// raw bytes, or well formed with bits flipped.
Command pick_command(World& w, Bytes& in, int depth = 0) {
  using namespace driver;
  const std::uint8_t k = in.u8();
  switch (k % 20) {
    case 0: return cmd_sync();
    case 1: return cmd_sync(SyncCs::irq);
    case 2: { const auto sid = pick_sid(in); return cmd_cfgi_ste(sid, in.u8() & 1); }
    case 3: { const auto sid = pick_sid(in); return cmd_cfgi_ste_range(sid, in.u8() % 32); }
    case 4: return cmd_cfgi_all();
    case 5: {
      const auto sid = pick_sid(in);
      const std::uint32_t ssid = in.u8() % 4;
      return cmd_cfgi_cd(sid, ssid, in.u8() & 1);
    }
    case 6: return cmd_cfgi_cd_all(pick_sid(in));
    case 7: return cmd_tlbi_nh_all();
    case 8: return cmd_tlbi_nh_asid(0, pick_asid(in));
    case 9: { const auto asid = pick_asid(in); return cmd_tlbi_nh_va(0, asid, pick_va(in), in.u8() & 1); }
    case 10: { const auto va = pick_va(in); return cmd_tlbi_nh_vaa(0, va, in.u8() & 1); }
    case 11: return cmd_tlbi_el2_all();
    case 12: return cmd_tlbi_s12_vmall(0);
    case 13: return cmd_tlbi_s2_ipa(0, pick_va(in));
    case 14: return cmd_tlbi_nsnh_all();
    case 15: {
      const auto sid = pick_sid(in);
      const auto addr = pick_va(in);
      const unsigned size = in.u8() % 53;
      if (!(in.u8() & 1)) return cmd_atc_inv(sid, addr, size);
      return cmd_atc_inv(sid, addr, size, in.u8() % 4U);
    }
    case 16: {
      const auto sid = pick_sid(in);
      const std::uint32_t ssid = in.u8() % 4;
      return cmd_prefetch_config(sid, ssid, in.u8() & 1);
    }
    case 17: {  // a range invalidation (IHI 0070 4.4.1.1), as Linux writes them with IDR3.RIL
      const auto asid = pick_asid(in);
      const auto va = pick_va(in);
      const std::uint64_t size = (1 + in.u8() % 8) * kPage;
      auto cmds = tlbi_range(cmd_tlbi_nh_va(0, asid, 0), va, size, kPage, Granule::k4K,
                             w.guest->driver().features().range_inv());
      return cmds.empty() ? cmd_sync() : cmds.front();
    }
    case 18: { Command c; c.dw[0] = in.u64(); c.dw[1] = in.u64(); return c; }
    default: {
      Command c = depth ? cmd_sync() : pick_command(w, in, depth + 1);
      const std::size_t word = in.u8() & 1;
      c.dw[word] ^= 1ULL << (in.u8() % 64);
      return c;
    }
  }
}

// An STE: V = 0, abort, bypass, stage 1 through a device's CD table (with S1DSS and S1CDMax from the input),
// or any of those with bits flipped.
Ste pick_ste(World& w, Bytes& in) {
  auto& drv = w.guest->driver();
  const std::uint8_t k = in.u8();
  Ste s{};
  switch (k % 6) {
    case 0: break;
    case 1: s = driver::abort_ste(); break;
    case 2: s = driver::bypass_ste(drv.features()); break;
    default: {
      const std::uint32_t owner = std::array{kNic0, kNic1, kGpu0}[in.u8() % 3];
      auto* t = drv.cd_table(owner);
      driver::CdTableRef ref = t ? t->ref() : driver::CdTableRef{};
      if (k % 6 == 4) ref.s1cdmax = in.u8() % 24;
      s = driver::cdtable_ste(ref, drv.features(), static_cast<S1Dss>(in.u8() % 4));
      break;
    }
  }
  if (k & 0x80) {
    const std::size_t word = in.u8() % 4;
    s.dw[word] ^= 1ULL << (in.u8() % 64);
  }
  return s;
}

Cd pick_cd(World& w, Bytes& in) {
  auto& g = *w.guest;
  const std::uint8_t k = in.u8();
  Cd c{};
  if (k % 4 != 0) {
    const std::uint16_t asid = (k % 4 == 1) ? kAsidA : (k % 4 == 2) ? kAsidB : pick_asid(in);
    auto s1 = g.address_space(asid == kAsidB ? kAsidB : kAsidA);
    if (s1) c = driver::s1_cd(**s1, asid, g.driver().features());
  }
  if (k & 0x80) {
    const std::size_t word = in.u8() % 4;
    c.dw[word] ^= 1ULL << (in.u8() % 64);
  }
  return c;
}

// Where the guest's structures are, from its registers: biased towards what the vSMMU reads.
std::uint64_t pick_target(World& w, Bytes& in) {
  const std::uint8_t k = in.u8();
  const std::uint64_t off = in.u16();
  switch (k % 8) {
    case 0: return StrtabBase::of(reg(w, regs::STRTAB_BASE)).get(StrtabBase::ADDR) + off % 0x4000;
    case 1: return QueueBase::of(reg(w, regs::CMDQ_BASE)).get(QueueBase::ADDR) + off % 0x1000;
    case 2: return QueueBase::of(reg(w, regs::EVENTQ_BASE)).get(QueueBase::ADDR) + off % 0x1000;
    case 3: {
      auto* t = w.guest->driver().cd_table(kSids[off % 3]);
      return (t ? t->ref().base : kRamGpa) + (off >> 8) % 0x80;
    }
    case 4: return w.data_gpa + off % (kDataPages * kPage);
    case 5: return w.spare_gpa + off % (4 * kPage);
    case 6: return kRamGpa + (static_cast<std::uint64_t>(off) << 4) % kRamSize;
    default: return in.u64();
  }
}

// The STE's address for sid as the vSMMU finds it (IHI 0070 3.3), from the guest's registers.
std::optional<std::uint64_t> ste_address(World& w, std::uint32_t sid) {
  auto loc = locate_ste(w.ram(), w.vsmmu().id_registers(), StrtabBase::of(reg(w, regs::STRTAB_BASE)),
                        StrtabBaseCfg::of(static_cast<std::uint32_t>(reg(w, regs::STRTAB_BASE_CFG))), sid);
  if (!loc) return std::nullopt;
  return loc->address;
}

// The running state of one input: one or two worlds, every action applied to each.
class Run {
 public:
  explicit Run(const Setup& s) {
    worlds_.push_back(make_world(s, machine(0, s.twins)));
    if (kDifferential) {
      Setup other = s;
      other.policy = InvalidationPolicy::per_command;
      worlds_.push_back(make_world(other, machine(1, s.twins)));
    }
  }

  void step(Bytes& in, std::size_t n) {
    const auto op = static_cast<Op>(in.u8() % static_cast<std::uint8_t>(Op::count));
    World& a = *worlds_[0];
    std::vector<std::string> seen;  // what each world answered, compared in differential mode
    auto each = [&](auto&& f) {
      for (auto& w : worlds_) seen.push_back(f(*w));
    };
    switch (op) {
      case Op::mmio_write: {
        const auto off = pick_offset(in);
        const auto size = pick_size(in);
        const auto value = in.u64();
        each([&](World& w) {
          if (off == regs::CMDQ_PROD.offset) w.unpublished = 0;
          auto r = w.vsmmu().mmio_write(off, value, size);
          check_mmio_answer(off, size, r.has_value(), "an MMIO write", n);
          return describe(r);
        });
        break;
      }
      case Op::mmio_read: {
        const auto off = pick_offset(in);
        const auto size = pick_size(in);
        each([&](World& w) {
          auto r = w.vsmmu().mmio_read(off, size);
          check_mmio_answer(off, size, r.has_value(), "an MMIO read", n);
          return describe(r);
        });
        break;
      }
      case Op::ram_bytes: {
        const auto at = pick_target(a, in);
        const auto bytes = in.take(in.u8() % 65);
        each([&](World& w) { return std::string(w.ram().write(at, std::as_bytes(bytes)) ? "ok" : "outside RAM"); });
        break;
      }
      case Op::write_ste: {
        const auto sid = pick_sid(in);
        const Ste ste = pick_ste(a, in);
        if (auto at = ste_address(a, sid)) each([&](World& w) { return describe(Result<void>(write(w, *at, ste))); });
        break;
      }
      case Op::write_cd: {
        const auto sid = pick_sid(in);
        const std::uint32_t ssid = in.u8() % 4;
        const Cd cd = pick_cd(a, in);
        auto at = ste_address(a, sid);
        if (!at) break;
        auto ste = a.ram().read_record<Ste>(*at);
        if (!ste) break;
        const std::uint64_t cd_at = ste->get(Ste::S1ContextPtr) + ssid * Cd::bytes;
        each([&](World& w) { return describe(Result<void>(write(w, cd_at, cd))); });
        break;
      }
      case Op::write_l1: {
        // A level-1 stream table descriptor (IHI 0070 5.1): Span and L2Ptr, for the spare pages or from the input.
        const auto sid = pick_sid(in);
        const auto cfg = StrtabBaseCfg::of(static_cast<std::uint32_t>(reg(a, regs::STRTAB_BASE_CFG)));
        const std::uint64_t base = StrtabBase::of(reg(a, regs::STRTAB_BASE)).get(StrtabBase::ADDR);
        const std::uint64_t at = base + (sid >> cfg.get(StrtabBaseCfg::SPLIT)) * StreamTableL1::bytes;
        const std::uint8_t k = in.u8();
        StreamTableL1 l1{};
        l1.set(StreamTableL1::Span, k < 128 ? cfg.get(StrtabBaseCfg::SPLIT) + 1 : k % 32);
        l1.set(StreamTableL1::L2Ptr, (k & 0x40) ? in.u64() : a.spare_gpa + (k & 1) * 2 * kPage);
        each([&](World& w) { return describe(Result<void>(write(w, at, l1))); });
        break;
      }
      case Op::push_commands:
      case Op::commands_and_sync: {
        const unsigned count = 1 + in.u8() % 4;
        std::vector<Command> cmds;
        for (unsigned i = 0; i < count; ++i) cmds.push_back(pick_command(a, in));
        if (op == Op::commands_and_sync) cmds.push_back(driver::cmd_sync(in.u8() & 1 ? SyncCs::irq : SyncCs::none));
        each([&](World& w) {
          push(w, cmds);
          if (op == Op::commands_and_sync) return doorbell(w);
          return std::string("pushed");
        });
        break;
      }
      case Op::doorbell: each([&](World& w) { return doorbell(w); }); break;
      case Op::dma: {
        const std::size_t e = in.u8() % kEngines.size();
        const bool write_op = in.u8() & 1;
        const std::uint8_t ss = in.u8();
        const std::optional<std::uint32_t> ssid =
            ss % 4 == 0 ? std::nullopt : std::optional<std::uint32_t>(ss % 4 == 3 ? in.u8() : ss % 4 - 1);
        const std::uint64_t iova = pick_va(in) + in.u16() % kPage;
        static constexpr std::array<std::size_t, 8> lengths{8, 64, 256, 4096, 4100, 1, 16, 8192};
        const std::size_t len = lengths[in.u8() % lengths.size()];
        const std::uint8_t seed = in.u8();
        each([&](World& w) {
          std::vector<std::byte> data(len);
          for (std::size_t i = 0; i < len; ++i) data[i] = std::byte(static_cast<std::uint8_t>(seed + i * 7));
          auto r = write_op ? w.host->dma_write(kEngines[e], iova, data, ssid) : w.host->dma_read(kEngines[e], iova, data, ssid);
          std::string out = describe(r);
          if (!want_text()) return out;
          if (!write_op && r) out += fmt::format(" data {:x}", hash(std::span(data).first(std::min<std::size_t>(r->bytes, len))));
          if (write_op && kDifferential)  // where a write landed is the guest's to see
            out += fmt::format(" data pages {:x}", hash(ram_at(w, w.data_gpa, kDataPages * kPage)));
          return out;
        });
        break;
      }
      case Op::process_events:
        each([&](World& w) { return describe(w.vsmmu().process_events(), 0); });
        break;
      case Op::add_device: {
        const std::size_t dev = in.u8() % kDevices.size();
        const auto vsid = pick_sid(in);
        each([&](World& w) {
          auto r = w.vsmmu().add_device({kDevices[dev], -1, vsid});
          if (r) w.held[vsid] = dev;
          return describe(r);
        });
        break;
      }
      case Op::remove_device: {
        const auto vsid = pick_sid(in);
        each([&](World& w) {
          auto r = w.vsmmu().remove_device(vsid);
          if (r) w.held.erase(vsid);
          return describe(r);
        });
        break;
      }
      case Op::fail_nth: {
        // The n-th host call from now fails (ENOMEM, as the kernel's fail_nth). Not in differential mode: the
        // two policies make different numbers of host calls by design.
        const unsigned nth = in.u8() % 12;
        if (!kDifferential) a.host->set_fail_nth(nth);
        break;
      }
      case Op::page_table: {
        // The guest changes its stage-1 tables without invalidating (that is for its commands to do).
        const std::uint8_t k = in.u8();
        const std::uint16_t asid = (k & 1) ? kAsidB : kAsidA;
        const std::uint64_t va = kVa + ((k >> 1) % kDataPages) * kPage;
        const std::uint64_t gpa = a.data_gpa + ((k >> 4) % kDataPages) * kPage;
        MapAttributes attrs;
        attrs.global = k & 0x80;
        attrs.write = !(k & 0x40) || (k & 0x80);
        each([&](World& w) {
          auto r = w.guest->unmap(asid, va, kPage, false);
          if (k & 0x20) r = w.guest->map(asid, va, gpa, kPage, attrs);
          return describe(r);
        });
        break;
      }
      case Op::drain_events:
        each([&](World& w) {
          auto r = w.guest->driver().drain_events();
          if (!r || !want_text()) return describe(r ? Result<void>{} : Result<void>(std::unexpected(r.error())));
          std::string out = fmt::format("overflow {} records", r->overflow);
          for (const auto& ev : r->records) out += fmt::format(" {:x}.{:x}.{:x}.{:x}", ev.dw[0], ev.dw[1], ev.dw[2], ev.dw[3]);
          return out;
        });
        break;
      case Op::ack_gerror:
        each([&](World& w) {
          return describe(w.vsmmu().mmio_write(regs::GERRORN.offset, reg(w, regs::GERROR), 4));
        });
        break;
      case Op::count: break;
    }
    if (trace()) {
      std::string line = fmt::format("action {}: op {}:", n, static_cast<unsigned>(op));
      for (const auto& s : seen) line += " [" + s + "]";
      for (auto& w : worlds_) {
        const auto st = w->vsmmu().stats();
        line += fmt::format(" (commands {} host calls {} deferred {})", st.commands, st.host_calls, st.deferred);
      }
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    if (kDifferential) drain(n);
    for (std::size_t i = 0; i < worlds_.size(); ++i) check_world(*worlds_[i], i ? "per_command" : "batched", n);
    if (kDifferential) {
      if (seen.size() == 2) same(seen[0], seen[1], fmt::format("the answer to action {}", static_cast<unsigned>(op)), n);
      compare(*worlds_[0], *worlds_[1], n);
    }
  }

  void finish() {
    if (kDifferential) {
      compare_registers(*worlds_[0], *worlds_[1], all_registers(), kMaxActions);
      const auto ra = ram_at(*worlds_[0], kRamGpa, kRamSize);
      const auto rb = ram_at(*worlds_[1], kRamGpa, kRamSize);
      if (!same_bytes(ra, rb)) {
        std::size_t page = 0;
        while (std::memcmp(ra.data() + page, rb.data() + page, kPage) == 0) page += kPage;
        violation(fmt::format("guest RAM differs at the end, in the page at {:#x}", kRamGpa + page));
      }
    }
    teardown(worlds_);
  }

 private:
  template <class R>
  static Result<void> write(World& w, std::uint64_t at, const R& rec) {
    if (!w.ram().write_record(at, rec)) return fail(EFAULT, "fuzz", "outside RAM");
    return {};
  }

  // The command queue as the guest programmed it (IHI 0070 6.3.26-27): base, size, producer index.
  struct Cmdq {
    std::uint64_t base;
    QueueIndex idx;
    std::uint32_t prod;
  };
  static Cmdq cmdq(World& w) {
    const auto q = QueueBase::of(reg(w, regs::CMDQ_BASE));
    const unsigned log2 = static_cast<unsigned>(
        std::min<std::uint64_t>(q.get(QueueBase::LOG2SIZE), w.vsmmu().id_registers().idr1.get(Idr1::CMDQS)));
    return {q.get(QueueBase::ADDR), QueueIndex{log2},
            QueueProd::of(static_cast<std::uint32_t>(reg(w, regs::CMDQ_PROD))).get(QueueProd::WR)};
  }
  // Commands at CMDQ_PROD (plus those already written and not yet published), as a driver writes them.
  static void push(World& w, std::span<const Command> cmds) {
    const Cmdq q = cmdq(w);
    for (const auto& c : cmds) {
      const std::uint32_t at = q.idx.advance(q.prod, w.unpublished);
      (void)w.ram().write_record(q.base + q.idx.index(at) * Command::bytes, c);
      ++w.unpublished;
    }
  }
  // The doorbell: CMDQ_PROD past what was written.
  static std::string doorbell(World& w) {
    const Cmdq q = cmdq(w);
    const std::uint32_t next = q.idx.advance(q.prod, w.unpublished);
    w.unpublished = 0;
    return describe(w.vsmmu().mmio_write(regs::CMDQ_PROD.offset, next, 4));
  }

  // Whether one of the vSMMU's fds is readable: a vEVENTQ with records, or its work fd (command-queue work an
  // access left for later, VirtualSmmuConfig::commands_per_access).
  static bool readable(World& w) {
    std::vector<pollfd> fds;
    for (int fd : w.vsmmu().event_fds()) fds.push_back({fd, POLLIN, 0});
    return ::poll(fds.data(), fds.size(), 0) > 0;
  }
  // The VMM's poll loop on both sides until neither has anything left, so the two are compared once their
  // command queues are drained (one access does a bounded amount of work; per_command makes more host calls
  // for the same commands and so may finish later). It must finish: 256 commands at one host call each are
  // 4 accesses' worth of host_calls_per_access.
  void drain(std::size_t step) {
    for (unsigned round = 0; round < 64; ++round) {
      bool any = false;
      for (auto& w : worlds_) any |= readable(*w);
      if (!any) return;
      for (auto& w : worlds_) (void)w->vsmmu().process_events();
    }
    violation(fmt::format("action {}: work or events still left after 64 rounds of process_events()", step));
  }

  std::vector<std::unique_ptr<World>> worlds_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Bytes in(std::span(data, size));
  const std::uint8_t b = in.u8();
  Setup s;
  s.linear = b & 1;
  s.gbpa_abort = b & 2;
  s.cmdq_log2 = (b & 4) ? 2 : 8;
  s.eventq_log2 = (b & 8) ? 1 : 7;
  s.prepared_stes = !(b & 16);
  s.ssid_bits = (b & 64) ? 0 : 4;
  s.twins = b & 128;
  if (!kDifferential && (b & 32)) s.policy = InvalidationPolicy::per_command;
  Run run(s);
  for (std::size_t n = 0; n < kMaxActions && !in.done(); ++n) run.step(in, n);
  run.finish();
  return 0;
}
