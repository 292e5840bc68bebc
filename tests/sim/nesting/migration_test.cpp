// Live migration on the simulated host (docs/migration.md): the VM's stage-2 dirty log as a VMM harvests it
// (hardware on the "nested-dirty" kernel, conservative on "upstream", where NEST_PARENT|DIRTY_TRACKING is
// refused), and the vSMMU's state moving to a vSMMU on a second simulated host.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <cstring>

#include "host/handles.hpp"
#include "nesting/dirty_tracking.hpp"
#include "nesting/migration_state.hpp"
#include "smmu/command.hpp"
#include "smmu/registers.hpp"
#include "testing/memfd_ram.hpp"
#include "tests/sim/nesting/nesting_fixture.hpp"

namespace vsmmu::nesting::test {
namespace {

using smmu::Event;
using smmu::EventId;
namespace regs = smmu::regs;

constexpr std::uint64_t kRamGpa = 0x4000'0000;
constexpr std::uint64_t kRamSize = 64ULL << 20;
constexpr std::uint64_t k2M = 2ULL << 20;

// A VM on one simulated host: its RAM (GuestMemory, with the IOAS in 4 KiB pages or 2 MiB blocks) and a guest
// with nic0 behind its vSMMU.
struct Vm {
  std::unique_ptr<SimHost> host;
  std::unique_ptr<GuestMemory> memory;
  std::unique_ptr<GuestHarness> guest;
};

Vm make_vm(std::string_view kernel, bool huge_pages, std::vector<DeviceSpec> devices = {{"nic0", -1, kNic0}},
           std::string_view hardware = "default") {
  Vm vm;
  vm.host = make_host(kernel, hardware);
  if (!vm.host) return vm;
  const GuestRamLayout layout{kRamGpa, kRamSize};
  vm.memory = must(GuestMemory::allocate(*vm.host, std::span(&layout, 1)));
  if (!vm.memory) return vm;
  // IOMMU_OPTION_HUGE_PAGES off before any domain exists: stage 2 in 4 KiB leaves.
  if (!huge_pages) {
    EXPECT_FALSE(must(vm.host->ioas_huge_pages(vm.memory->ioas(), false)));
  }
  GuestHarnessConfig c;
  c.devices = std::move(devices);
  vm.guest = must(GuestHarness::create_in(*vm.memory, kRamGpa, kRamSize, c));
  return vm;
}

struct Round {
  DirtyHarvest h;
  std::vector<std::byte> bitmap;
  std::uint64_t base = kRamGpa;  // the region's GPA
  bool page(std::uint64_t gpa) const {
    const std::uint64_t i = (gpa - base) / DirtyTracker::kPageSize;
    return (std::to_integer<unsigned>(bitmap[i / 8]) >> (i % 8)) & 1U;
  }
};

Round harvest(GuestMemory& m, std::uint32_t flags = 0, std::uint64_t gpa = kRamGpa, std::uint64_t size = kRamSize) {
  Round r;
  r.base = gpa;
  r.bitmap.assign(DirtyTracker::bitmap_bytes(size), std::byte{0x5a});  // every bit is written
  r.h = must(m.dirty().harvest(gpa, r.bitmap, flags));
  return r;
}

// Maps `pages` guest pages at kVa for nic0 and returns their GPAs.
std::vector<std::uint64_t> map_pages(GuestHarness& g, unsigned pages) {
  std::vector<std::uint64_t> gpas;
  for (unsigned i = 0; i < pages; ++i) {
    const std::uint64_t gpa = must(g.alloc(kPage));
    must(g.map(kAsid, kVa + i * kPage, gpa, kPage));
    gpas.push_back(gpa);
  }
  must(g.attach(kNic0, kAsid));
  return gpas;
}

bool dma_to(SimHost& host, std::string_view engine, std::uint64_t iova, std::uint8_t seed) {
  const auto data = pattern(64, seed);
  auto r = host.dma_write(engine, iova, data);
  return r && r->ok();
}

// ---- the dirty log -----------------------------------------------------------------------------------------

// With NEST_PARENT|DIRTY_TRACKING accepted, a harvest reports exactly the pages the device wrote through the
// nested translation since the last one (the SMMU set S2AP[1] on their DBM leaves, IHI 0070 3.13.3), and
// clears them.
TEST(MigrationDirtySim, HardwareModeReportsExactlyThePagesTheDeviceWrote) {
  Vm vm = make_vm("nested-dirty", false);
  ASSERT_TRUE(vm.guest);
  const auto gpas = map_pages(*vm.guest, 8);
  const DirtyStatus s = must(vm.memory->dirty().start());
  EXPECT_EQ(s.mode, DirtyMode::hardware) << s.reason;
  EXPECT_EQ(s.parents, 1U);
  EXPECT_EQ(s.tracking, 1U);
  EXPECT_EQ(harvest(*vm.memory).h.dirty, 0U) << "nothing was written since tracking started";

  for (unsigned i : {1U, 3U, 4U}) ASSERT_TRUE(dma_to(*vm.host, "nic0.dma", kVa + i * kPage, 7));
  Round r = harvest(*vm.memory);
  EXPECT_FALSE(r.h.conservative);
  EXPECT_EQ(r.h.pages, kRamSize / kPage);
  EXPECT_EQ(r.h.dirty, 3U);
  for (unsigned i = 0; i < gpas.size(); ++i) EXPECT_EQ(r.page(gpas[i]), i == 1 || i == 3 || i == 4) << "page " << i;
  EXPECT_EQ(harvest(*vm.memory).h.dirty, 0U) << "a harvest clears what it reported";
  must(vm.memory->dirty().stop());
}

// NO_CLEAR reports without clearing (IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR): the next harvest sees the same pages.
TEST(MigrationDirtySim, NoClearLeavesThePagesForTheNextHarvest) {
  Vm vm = make_vm("nested-dirty", false);
  ASSERT_TRUE(vm.guest);
  const auto gpas = map_pages(*vm.guest, 2);
  must(vm.memory->dirty().start());
  ASSERT_TRUE(dma_to(*vm.host, "nic0.dma", kVa + kPage, 1));
  for (int i = 0; i < 2; ++i) {
    Round r = harvest(*vm.memory, kDirtyNoClear);
    EXPECT_EQ(r.h.dirty, 1U);
    EXPECT_TRUE(r.page(gpas[1]));
  }
  EXPECT_EQ(harvest(*vm.memory).h.dirty, 1U);
  EXPECT_EQ(harvest(*vm.memory).h.dirty, 0U);
}

// Stage 2 in 2 MiB blocks: one write dirties the whole block, and all 512 of its pages are reported.
TEST(MigrationDirtySim, ABlockMappingDirtiesItsWholeBlock) {
  Vm vm = make_vm("nested-dirty", true);
  ASSERT_TRUE(vm.guest);
  const auto gpas = map_pages(*vm.guest, 1);
  must(vm.memory->dirty().start());
  ASSERT_TRUE(dma_to(*vm.host, "nic0.dma", kVa, 3));
  Round r = harvest(*vm.memory);
  EXPECT_EQ(r.h.dirty, k2M / kPage);
  const std::uint64_t block = gpas[0] & ~(k2M - 1);
  EXPECT_TRUE(r.page(block));
  EXPECT_TRUE(r.page(block + k2M - kPage));
  EXPECT_FALSE(r.page(block + k2M));
}

// Upstream refuses NEST_PARENT|DIRTY_TRACKING: tracking starts conservative and says why, and every round
// reports every page, so a migration copies too much but never misses a page.
TEST(MigrationDirtySim, UpstreamIsConservativeEveryRoundAndSaysWhy) {
  Vm vm = make_vm("upstream", false);
  ASSERT_TRUE(vm.guest);
  map_pages(*vm.guest, 1);
  const DirtyStatus s = must(vm.memory->dirty().start());
  EXPECT_EQ(s.mode, DirtyMode::conservative);
  EXPECT_NE(s.reason.find("NEST_PARENT|DIRTY_TRACKING"), std::string::npos) << s.reason;
  for (int round = 0; round < 3; ++round) {
    Round r = harvest(*vm.memory);
    EXPECT_TRUE(r.h.conservative);
    EXPECT_EQ(r.h.dirty, r.h.pages);
  }
  must(vm.memory->dirty().stop());
  std::vector<std::byte> bitmap(DirtyTracker::bitmap_bytes(kRamSize));
  auto off = vm.memory->dirty().harvest(kRamGpa, bitmap, 0);
  ASSERT_FALSE(off);
  EXPECT_EQ(off.error().err, EINVAL);
}

// The vSMMU writes guest RAM itself (event records, IHI 0070 7.2) through the VMM's mapping, which no IOMMU
// sees: those pages are in the dirty log too.
TEST(MigrationDirtySim, TheVsmmusOwnEventRecordsAreDirtyPages) {
  Vm vm = make_vm("nested-dirty", false);
  ASSERT_TRUE(vm.guest);
  map_pages(*vm.guest, 1);
  must(vm.memory->dirty().start());
  (void)harvest(*vm.memory);
  EXPECT_FALSE(dma_to(*vm.host, "nic0.dma", kVa + 16 * kPage, 1)) << "unmapped: F_TRANSLATION";
  must(vm.guest->endpoint().process_events());  // the VMM services the vEVENTQ: a record lands in the guest queue
  const std::uint64_t eventq = vm.guest->driver().eventq_base();
  Round r = harvest(*vm.memory);
  EXPECT_TRUE(r.page(eventq)) << "the event queue's first page at " << std::hex << eventq;
  EXPECT_EQ(r.h.dirty, 1U);
}

// Guest RAM added while tracking is all new to the destination; a region removed while tracking is harvested
// before its unmap and reported once more with `removed`, so nothing written there is lost with it.
TEST(MigrationDirtySim, RegionsAddedAndRemovedDuringTracking) {
  Vm vm = make_vm("nested-dirty", false);
  ASSERT_TRUE(vm.guest);
  map_pages(*vm.guest, 1);
  must(vm.memory->dirty().start());
  constexpr std::uint64_t kHotGpa = 0x8000'0000, kHotSize = 4ULL << 20;
  auto hot = must(testkit::MemfdRam::create(kHotGpa, kHotSize, "hot-ram"));
  must(vm.memory->add_region({kHotGpa, kHotSize, hot->fd(), 0, hot->bytes().data()}));
  Round first = harvest(*vm.memory, 0, kHotGpa, kHotSize);
  EXPECT_EQ(first.h.dirty, kHotSize / kPage) << "a region added while tracking is reported whole once";
  EXPECT_EQ(harvest(*vm.memory, 0, kHotGpa, kHotSize).h.dirty, 0U);

  // The device writes into the new region through stage 1, then the VMM removes the region.
  const std::uint64_t va = kVa + 0x10'0000;
  must(vm.guest->map(kAsid, va, kHotGpa + 5 * kPage, kPage));
  ASSERT_TRUE(dma_to(*vm.host, "nic0.dma", va, 9));
  must(vm.memory->remove_region(kHotGpa));
  Round last = harvest(*vm.memory, 0, kHotGpa, kHotSize);
  EXPECT_TRUE(last.h.removed);
  EXPECT_EQ(last.h.dirty, 1U);
  EXPECT_TRUE(last.page(kHotGpa + 5 * kPage));
  auto gone = vm.memory->dirty().harvest(kHotGpa, last.bitmap, 0);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().err, ENOENT);
}

// A nest parent that goes (its vSMMU's last device removed) is harvested before it is destroyed.
TEST(MigrationDirtySim, ANestParentThatGoesLeavesItsPagesInTheLog) {
  Vm vm = make_vm("nested-dirty", false);
  ASSERT_TRUE(vm.guest);
  const auto gpas = map_pages(*vm.guest, 1);
  must(vm.memory->dirty().start());
  ASSERT_TRUE(dma_to(*vm.host, "nic0.dma", kVa, 2));
  must(vm.guest->vsmmu().remove_device(kNic0));
  EXPECT_EQ(vm.memory->dirty().status().parents, 0U);
  Round r = harvest(*vm.memory);
  EXPECT_TRUE(r.page(gpas[0]));
  EXPECT_EQ(r.h.dirty, 1U);
}

// ---- the vSMMU's state -------------------------------------------------------------------------------------

// Copies guest RAM from one VM to the other (the VMM's job) and returns the destination's bytes.
void copy_ram(Vm& from, Vm& to) {
  std::memcpy(to.memory->host_pointer(kRamGpa, kRamSize), from.memory->host_pointer(kRamGpa, kRamSize), kRamSize);
}

std::uint64_t reg(VirtualSmmu& v, const auto& r) { return must(v.mmio_read(r.offset, r.width / 8)); }

// A destination VM: RAM of the same layout, no vSMMU yet.
Vm make_destination(std::string_view kernel = "nested-dirty", std::string_view hardware = "default") {
  Vm vm;
  vm.host = make_host(kernel, hardware);
  const GuestRamLayout layout{kRamGpa, kRamSize};
  if (vm.host) vm.memory = must(GuestMemory::allocate(*vm.host, std::span(&layout, 1)));
  return vm;
}

// The guest programmed its vSMMU on host A; the state and RAM move to host B: the registers read the same,
// nic0's DMA translates through the guest's stage 1 on B, a fault record the host had not yet delivered when
// the state was saved reaches the guest's queue on B, and the guest's next command completes there.
TEST(MigrationStateSim, TheVsmmuMovesToASecondHost) {
  Vm a = make_vm("nested-dirty", false);
  ASSERT_TRUE(a.guest);
  const auto gpas = map_pages(*a.guest, 2);
  ASSERT_TRUE(dma_to(*a.host, "nic0.dma", kVa, 1));
  EXPECT_FALSE(dma_to(*a.host, "nic0.dma", kVa + 8 * kPage, 1)) << "a fault left in the host's vEVENTQ";
  VirtualSmmu& va = a.guest->vsmmu();
  const auto blob = must(va.save_state());
  const auto state = must(decode_state(blob));
  EXPECT_EQ(state.events.size(), 1U) << "the undelivered F_TRANSLATION travels in the state";
  EXPECT_EQ(state.devices.size(), 1U);

  Vm b = make_destination();
  ASSERT_TRUE(b.memory);
  copy_ram(a, b);
  auto vb = must(VirtualSmmu::restore(*b.memory, {}, {{"nic0", -1, kNic0}}, blob));
  ASSERT_TRUE(vb);
  for (const auto& r : {regs::CR0, regs::STRTAB_BASE, regs::STRTAB_BASE_CFG, regs::CMDQ_BASE, regs::CMDQ_CONS,
                        regs::EVENTQ_BASE, regs::EVENTQ_CONS, regs::GBPA, regs::IRQ_CTRL})
    EXPECT_EQ(reg(*vb, r), reg(va, r)) << r.name;
  EXPECT_EQ(must(vb->stream_status(kNic0)).state, StreamState::translate);

  // The carried record is now in the guest's queue on B: PROD one past the source's.
  const std::uint64_t prod = reg(*vb, regs::EVENTQ_PROD), cons = reg(*vb, regs::EVENTQ_CONS);
  EXPECT_EQ(prod - cons, 1U);
  const std::uint64_t eventq = a.guest->driver().eventq_base();
  const auto read = b.memory->view().read_record<Event>(eventq + (cons & 0x7f) * sizeof(Event));
  ASSERT_TRUE(read.has_value());
  const Event ev = *read;
  EXPECT_EQ(ev.get(Event::ID), EventId::F_TRANSLATION);
  EXPECT_EQ(ev.get(Event::SID), kNic0);

  // DMA through the guest's stage 1 on B lands in B's RAM.
  const auto data = pattern(64, 42);
  auto w = b.host->dma_write("nic0.dma", kVa + kPage, data);
  ASSERT_TRUE(w && w->ok());
  EXPECT_EQ(std::memcmp(b.memory->host_pointer(gpas[1], 64), data.data(), 64), 0);

  // The guest's next command: a CMD_SYNC at PROD, then the doorbell; CONS follows on B.
  const std::uint64_t cmdq = reg(*vb, regs::CMDQ_BASE) & 0x000f'ffff'ffff'ffe0ULL;
  const std::uint32_t cmd_prod = static_cast<std::uint32_t>(reg(*vb, regs::CMDQ_PROD));
  const unsigned log2 = a.guest->driver().cmdq_log2();
  const std::uint32_t index = cmd_prod & ((1U << log2) - 1);
  const auto sync = smmu::Command{}.set(smmu::Command::Opcode, smmu::Opcode::CMD_SYNC);
  ASSERT_TRUE(b.memory->view().write_record(cmdq + std::uint64_t{index} * 16, sync));
  const std::uint32_t next = (cmd_prod + 1) & ((2U << log2) - 1);
  must(vb->mmio_write(regs::CMDQ_PROD.offset, next, 4));
  EXPECT_EQ(reg(*vb, regs::CMDQ_CONS) & ((2U << log2) - 1), next);
}

// Events that reach the source after the save are held, not written to guest RAM (the VMM's last RAM copy is
// already done), and carried by a second save; a source that resumes delivers them.
TEST(MigrationStateSim, EventsAfterTheSaveAreHeldAndCarried) {
  Vm a = make_vm("nested-dirty", false);
  ASSERT_TRUE(a.guest);
  map_pages(*a.guest, 1);
  VirtualSmmu& v = a.guest->vsmmu();
  const std::uint64_t prod = reg(v, regs::EVENTQ_PROD);
  (void)must(v.save_state());
  EXPECT_FALSE(dma_to(*a.host, "nic0.dma", kVa + 4 * kPage, 1));
  must(v.process_events());
  const std::uint64_t slot = a.guest->driver().eventq_base() + (prod & 0x7f) * sizeof(Event);
  const auto untouched = a.memory->view().read_record<Event>(slot);
  ASSERT_TRUE(untouched.has_value());
  EXPECT_EQ(untouched->dw[0], 0U) << "nothing is written into guest RAM while saved";
  // A guest access means the source resumed: the held record is delivered first.
  EXPECT_EQ(reg(v, regs::EVENTQ_PROD), prod + 1);
  EXPECT_EQ(must(a.guest->events()).records.size(), 1U);

  (void)must(v.save_state());
  EXPECT_FALSE(dma_to(*a.host, "nic0.dma", kVa + 5 * kPage, 1));
  const auto again = must(decode_state(must(v.save_state())));
  EXPECT_EQ(again.events.size(), 1U) << "a later save carries what arrived after the first";
}

// ---- refusals ----------------------------------------------------------------------------------------------

struct Saved {
  Vm source;
  std::vector<std::byte> blob;
};
Saved saved_vm(std::vector<DeviceSpec> devices = {{"nic0", -1, kNic0}}) {
  Saved s{make_vm("nested-dirty", false, std::move(devices)), {}};
  if (!s.source.guest) return s;
  map_pages(*s.source.guest, 1);
  s.blob = must(s.source.guest->vsmmu().save_state());
  return s;
}

Error load_error(Vm& dst, std::span<const std::byte> blob, std::vector<DeviceSpec> devices,
                 VirtualSmmuConfig config = {}) {
  const std::size_t before = dst.host->stats().objects;
  auto v = VirtualSmmu::restore(*dst.memory, config, std::move(devices), blob);
  EXPECT_FALSE(v) << "the load was accepted";
  EXPECT_EQ(dst.host->stats().objects, before) << "a refused load leaves no host object behind";
  return v ? Error{} : v.error();
}

// A state that is not whole, not intact or not of this version is refused before anything is done, each with
// its own errno and message.
TEST(MigrationStateSim, BrokenStatesAreRefusedEachWithItsReason) {
  Saved s = saved_vm();
  ASSERT_FALSE(s.blob.empty());
  Vm b = make_destination();
  copy_ram(s.source, b);
  const std::vector<DeviceSpec> nic0{{"nic0", -1, kNic0}};

  auto truncated = s.blob;
  truncated.resize(truncated.size() - 1);
  Error e = load_error(b, truncated, nic0);
  EXPECT_EQ(e.err, EBADMSG);
  EXPECT_NE(e.message.find("truncated"), std::string::npos) << e;
  e = load_error(b, std::span(s.blob).first(20), nic0);
  EXPECT_EQ(e.err, EBADMSG);
  EXPECT_NE(e.message.find("header"), std::string::npos) << e;

  auto corrupted = s.blob;
  corrupted[kStateHeaderSize + corrupted.size() / 2 - kStateHeaderSize / 2] ^= std::byte{0x01};
  e = load_error(b, corrupted, nic0);
  EXPECT_EQ(e.err, EBADMSG);
  EXPECT_NE(e.message.find("CRC-32"), std::string::npos) << e;

  auto version = s.blob;
  version[8] = std::byte{2};
  e = load_error(b, version, nic0);
  EXPECT_EQ(e.err, EPROTONOSUPPORT);
  EXPECT_NE(e.message.find("version 2"), std::string::npos) << e;

  e = load_error(b, std::as_bytes(std::span("not a state at all, just some bytes")), nic0);
  EXPECT_EQ(e.err, EBADMSG);
  EXPECT_NE(e.message.find("VSMMUSTA"), std::string::npos) << e;
  EXPECT_EQ(b.host->stats().objects, 1U) << "only the destination's IOAS";
}

// A destination that cannot give the guest what it was promised is refused with the reason: a device missing
// or extra, other ID registers, or a vSMMU the guest has already programmed.
TEST(MigrationStateSim, ADestinationThatDiffersIsRefused) {
  Saved s = saved_vm({{"nic0", -1, kNic0}, {"nic1", -1, kNic1}});
  ASSERT_FALSE(s.blob.empty());
  Vm b = make_destination();
  copy_ram(s.source, b);

  Error e = load_error(b, s.blob, {{"nic0", -1, kNic0}});
  EXPECT_EQ(e.err, ENODEV);
  EXPECT_NE(e.message.find("vSID 0x18"), std::string::npos) << e;

  e = load_error(b, s.blob, {{"nic0", -1, kNic0}, {"nic1", -1, kNic1}, {"gpu0", -1, 0x30}}, smmu1_config());
  EXPECT_NE(e.err, 0);  // gpu0 is behind another SMMU with other registers: refused at create or load

  VirtualSmmuConfig no_ril;
  no_ril.wishes.ril = false;
  e = load_error(b, s.blob, {{"nic0", -1, kNic0}, {"nic1", -1, kNic1}}, no_ril);
  EXPECT_EQ(e.err, EINVAL);
  EXPECT_NE(e.message.find("IDR3"), std::string::npos) << e;

  // Loaded into a vSMMU the guest has already written to: EBUSY, and the vSMMU keeps what it had.
  auto v = must(VirtualSmmu::create(*b.memory, {}, {{"nic0", -1, kNic0}, {"nic1", -1, kNic1}}));
  ASSERT_TRUE(v);
  must(v->mmio_write(regs::GERROR_IRQ_CFG1.offset, 0, 4));
  const std::size_t objects = v->host_objects();
  auto busy = v->load_state(s.blob);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().err, EBUSY);
  EXPECT_EQ(v->host_objects(), objects);
}

// A device that is there but whose stream cannot translate on the destination (its guest STE is not in the
// copied RAM, here: the RAM was not copied) refuses the load and leaves the vSMMU as it was created.
TEST(MigrationStateSim, AStreamThatCannotTranslateHereRefusesTheLoad) {
  Saved s = saved_vm();
  Vm b = make_destination();
  auto v = must(VirtualSmmu::create(*b.memory, {}, {{"nic0", -1, kNic0}}));
  ASSERT_TRUE(v);
  const std::size_t objects = v->host_objects();
  auto r = v->load_state(s.blob);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EINVAL);
  EXPECT_NE(r.error().message.find("translate on the source"), std::string::npos) << r.error();
  EXPECT_EQ(reg(*v, regs::CR0), 0U);
  EXPECT_EQ(v->host_objects(), objects);
  EXPECT_EQ(must(v->stream_status(kNic0)).state, StreamState::bypass) << "back on GBPA";
}

// ---- scale -------------------------------------------------------------------------------------------------

std::string sixty_four_devices_profile() {
  std::string devices, engines;
  for (int i = 0; i < 64; ++i) {
    devices += fmt::format(R"({}{{ "name": "dev{}", "bdf": "0000:{:02x}:00.0", "root_complex": "pcie0" }})",
                           i ? ", " : "", i, i + 1);
    engines += fmt::format(R"({}{{ "name": "dev{}.dma", "device": "dev{}" }})", i ? ", " : "", i, i);
  }
  return fmt::format(R"({{ "kind": "hardware", "name": "sixty-four",
    "smmus": [ {{ "name": "smmu0", "s2fwb": true, "httu": "dirty", "coherent": true }} ],
    "root_complexes": [ {{ "name": "pcie0", "smmu": "smmu0", "segment": 0 }} ],
    "devices": [ {} ], "dma_engines": [ {} ] }})", devices, engines);
}

// A state saved with 64 devices, every stream translating, loads on a second host and every stream translates.
TEST(MigrationStateSim, AStateWithSixtyFourDevicesLoads) {
  const std::string hw = sixty_four_devices_profile();
  auto hardware = host::sim::parse_hardware_profile(hw, "sixty-four");
  ASSERT_TRUE(hardware) << hardware.error();
  std::vector<DeviceSpec> devices;
  for (std::uint32_t i = 0; i < 64; ++i) devices.push_back({fmt::format("dev{}", i), -1, 0x100 + i});

  auto host_a = host_from(host::sim::embedded_kernel_profile("nested-dirty"), *hardware);
  ASSERT_TRUE(host_a);
  const GuestRamLayout layout{kRamGpa, kRamSize};
  auto mem_a = must(GuestMemory::allocate(*host_a, std::span(&layout, 1)));
  GuestHarnessConfig c;
  c.devices = devices;
  auto g = must(GuestHarness::create_in(*mem_a, kRamGpa, kRamSize, c));
  ASSERT_TRUE(g);
  const std::uint64_t gpa = must(g->alloc(kPage));
  must(g->map(kAsid, kVa, gpa, kPage));
  for (const auto& d : devices) must(g->attach(d.vsid, kAsid));
  const auto blob = must(g->vsmmu().save_state());
  EXPECT_EQ(must(decode_state(blob)).devices.size(), 64U);

  auto host_b = host_from(host::sim::embedded_kernel_profile("nested-dirty"), *hardware);
  ASSERT_TRUE(host_b);
  auto mem_b = must(GuestMemory::allocate(*host_b, std::span(&layout, 1)));
  std::memcpy(mem_b->host_pointer(kRamGpa, kRamSize), mem_a->host_pointer(kRamGpa, kRamSize), kRamSize);
  auto vb = must(VirtualSmmu::restore(*mem_b, {}, devices, blob));
  ASSERT_TRUE(vb);
  for (const auto& d : devices) EXPECT_EQ(must(vb->stream_status(d.vsid)).state, StreamState::translate) << d.path;
  EXPECT_TRUE(dma_to(*host_b, "dev63.dma", kVa, 5));
}

}  // namespace
}  // namespace vsmmu::nesting::test
