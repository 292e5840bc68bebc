// Live migration through vsmmud, as a VMM meets it (docs/protocol.md "Live migration (16-20)"): two daemons are
// two simulated hosts. The source VMM tracks the guest RAM devices write (DIRTY_START), copies RAM in pre-copy
// rounds of exactly the dirty pages (DIRTY_GET into a bitmap memfd), stops the guest, copies the last pages and
// saves the vSMMU (SAVE_STATE); the destination VMM creates a vSMMU with the same wishes and devices and loads
// the state (LOAD_STATE). The guest - the scripted SMMU driver, its tables and queues in RAM - then goes on
// against the destination as if nothing happened.
//
// Guest RAM is 16 regions of 1 MiB (one memfd): a region holds no 2 MiB block, so stage 2 maps it in 4 KiB
// pages and a device's write dirties exactly the page it wrote (IOMMU_HWPT_GET_DIRTY_BITMAP reports a block as
// all of its pages).
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "service/client/client.hpp"
#include "service/client/remote_vsmmu.hpp"
#include "service/protocol.hpp"
#include "smmu/registers.hpp"
#include "testing/guest_harness.hpp"
#include "testing/memfd_ram.hpp"
#include "tests/service/daemon_fixture.hpp"

namespace vsmmu::servicetest {
namespace {

using namespace vsmmu::service;

constexpr std::uint64_t kRamGpa = 0x4000'0000, kRamSize = 16ULL << 20, kRegion = 1ULL << 20;
constexpr std::uint64_t kPage = 4096, kPages = kRamSize / kPage;
constexpr std::uint64_t kVa = 0x7f00'0000'0000ULL;
constexpr std::uint64_t kUnmappedVa = kVa + 0x10'0000;
constexpr std::uint32_t kVsid = 0x10, kVsid2 = 0x18;
constexpr std::uint64_t kBitmapBytes = kRegion / kPage / 8;  // 256 pages: 4 words

// One host's VMM: its connection to the daemon and its copy of guest RAM, added as 16 regions of 1 MiB.
struct Vmm {
  std::unique_ptr<Client> client;
  std::unique_ptr<testkit::MemfdRam> ram;
  host::UniqueFd bitmap;  // the VMM's dirty bitmap file
  bool ok() const { return client && ram && bitmap; }
  std::byte* at(std::uint64_t gpa) { return ram->bytes().data() + (gpa - kRamGpa); }
};

Vmm vmm_on(const Daemon& d, const char* name) {
  Vmm v;
  auto c = Client::connect(d.socket(), Client::default_offer(), std::chrono::seconds(10));
  EXPECT_TRUE(c) << c.error();
  auto r = testkit::MemfdRam::create(kRamGpa, kRamSize, name);
  EXPECT_TRUE(r) << r.error();
  if (!c || !r) return v;
  v.client = std::move(*c);
  v.ram = std::move(*r);
  for (std::uint64_t at = 0; at < kRamSize; at += kRegion) {
    auto added = v.client->add_region(kRamGpa + at, kRegion, v.ram->fd(), at);
    EXPECT_TRUE(added) << added.error();
    if (!added) return v;
  }
  v.bitmap = host::UniqueFd(::memfd_create("dirty-bitmap", MFD_CLOEXEC));
  EXPECT_EQ(::ftruncate(v.bitmap.get(), kPage), 0);
  return v;
}

// One pre-copy round: DIRTY_GET of every region, the GPAs of its set bits read back from the bitmap file.
struct Round {
  std::set<std::uint64_t> dirty;  // page GPAs
  std::uint64_t reported = 0;     // the replies' dirty counts, summed
  std::uint64_t pages = 0;        // the replies' page counts, summed
  std::size_t conservative = 0;   // regions reported with kDirtyConservative
};
Round harvest(Vmm& vmm, std::uint32_t flags = 0) {
  Round round;
  for (std::uint64_t region = kRamGpa; region < kRamGpa + kRamSize; region += kRegion) {
    auto got = vmm.client->dirty_get(region, vmm.bitmap.get(), 0, flags);
    EXPECT_TRUE(got) << got.error();
    if (!got) return round;
    EXPECT_FALSE(got->removed);
    round.reported += got->dirty;
    round.pages += got->pages;
    round.conservative += got->conservative ? 1 : 0;
    std::uint8_t bits[kBitmapBytes] = {};
    EXPECT_EQ(::pread(vmm.bitmap.get(), bits, sizeof bits, 0), static_cast<ssize_t>(sizeof bits));
    for (std::uint64_t i = 0; i < kRegion / kPage; ++i)
      if (bits[i / 8] & (1U << (i % 8))) round.dirty.insert(region + i * kPage);
  }
  EXPECT_EQ(round.reported, round.dirty.size()) << "the replies' counts are the bitmap's set bits";
  return round;
}

void copy_pages(Vmm& from, Vmm& to, const std::set<std::uint64_t>& pages) {
  for (std::uint64_t gpa : pages) std::memcpy(to.at(gpa), from.at(gpa), kPage);
}
bool same_ram(Vmm& a, Vmm& b) { return std::memcmp(a.ram->bytes().data(), b.ram->bytes().data(), kRamSize) == 0; }

SimDmaReply dma_write(Client& c, std::uint64_t iova, const std::string& text) {
  SimDma dma;
  dma.engine = "nic0.dma";
  dma.iova = iova;
  dma.data = std::as_bytes(std::span(text));
  auto r = c.sim_dma(dma);
  EXPECT_TRUE(r) << r.error();
  return r ? r->reply : SimDmaReply{};
}

std::uint32_t read32(nesting::VsmmuEndpoint& e, const smmu::RegisterInfo& reg) {
  auto v = e.mmio_read(reg.offset, 4);
  EXPECT_TRUE(v) << v.error();
  return v ? static_cast<std::uint32_t>(*v) : 0;
}

// The vSMMU writes a fault's event record into the guest's queue asynchronously (docs/protocol.md SIM_DMA):
// EVENTQ_PROD moves past `prod` once it is there (IHI 0070 6.3.29).
bool await_event(nesting::VsmmuEndpoint& e, std::uint32_t prod) {
  for (int i = 0; i < 500; ++i) {
    if (read32(e, smmu::regs::EVENTQ_PROD) != prod) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

std::set<std::uint64_t> all_pages() {
  std::set<std::uint64_t> s;
  for (std::uint64_t p = 0; p < kPages; ++p) s.insert(kRamGpa + p * kPage);
  return s;
}

// The whole migration of a VM with one vSMMU and one device (nic0, vSID 0x10) between two daemons on kernel
// profile `profile`; `hardware`: its nest parents track dirty pages (else conservative).
void migrate_vm(const char* profile, bool hardware) {
  Daemon a({"--profile", profile}), b({"--profile", profile});
  ASSERT_TRUE(a.listening() && b.listening());
  Vmm src = vmm_on(a, "source-ram"), dst = vmm_on(b, "destination-ram");
  ASSERT_TRUE(src.ok() && dst.ok());
  ASSERT_TRUE(src.client->migration()) << "the daemon grants kFeatureMigration on every host";

  // The guest: its driver brought the vSMMU up, a stage-1 address space maps a 16-page buffer for the device.
  VsmmuOptions options;
  options.name = "vsmmu0";
  auto remote = RemoteVsmmu::create(*src.client, options, {kVsid, "nic0", -1});
  ASSERT_TRUE(remote) << remote.error();
  testkit::GuestHarnessConfig config;
  config.vsmmu.name = "vsmmu0";
  config.table_pool_size = 4ULL << 20;
  auto made = testkit::GuestHarness::create_remote(std::move(*remote), src.ram->view(), kRamGpa, kRamSize, config);
  ASSERT_TRUE(made) << made.error();
  testkit::GuestHarness& guest = **made;
  auto buf = guest.alloc(16 * kPage);
  ASSERT_TRUE(buf) << buf.error();
  ASSERT_TRUE(guest.map(1, kVa, *buf, 16 * kPage));
  ASSERT_TRUE(guest.attach(kVsid, 1));

  // ---- pre-copy. DIRTY_START: hardware tracking on nested-dirty; on upstream the nest parent cannot track
  // (arm-smmu-v3-iommufd.c refuses NEST_PARENT|DIRTY_TRACKING) and the daemon says so.
  auto started = src.client->dirty_start();
  ASSERT_TRUE(started) << started.error();
  EXPECT_EQ(started->parents, 1u);
  if (hardware) {
    EXPECT_EQ(started->mode, DirtyLogMode::hardware);
    EXPECT_EQ(started->tracking, 1u);
    EXPECT_EQ(started->reason, "");
  } else {
    EXPECT_EQ(started->mode, DirtyLogMode::conservative);
    EXPECT_EQ(started->tracking, 0u);
    EXPECT_NE(started->reason.find("NEST_PARENT|DIRTY_TRACKING"), std::string::npos) << started->reason;
  }
  auto again = src.client->dirty_start();
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().err, EALREADY) << again.error();

  // Round 0 copies everything.
  copy_pages(src, dst, all_pages());

  // Round 1: the device writes pages 0, 3 and 9 of its buffer through the nested translation.
  for (std::uint64_t p : {0, 3, 9})
    EXPECT_EQ(dma_write(*src.client, kVa + p * kPage + 0x10, fmt::format("round 1, page {}", p)).faulted, 0u);
  Round r1 = harvest(src);
  if (hardware) {
    EXPECT_EQ(r1.dirty, (std::set<std::uint64_t>{*buf, *buf + 3 * kPage, *buf + 9 * kPage}));
    EXPECT_EQ(r1.conservative, 0u);
  } else {
    EXPECT_EQ(r1.dirty, all_pages()) << "conservative: every page in every round";
    EXPECT_EQ(r1.conservative, kRamSize / kRegion);
  }
  EXPECT_EQ(r1.pages, kPages);
  copy_pages(src, dst, r1.dirty);
  EXPECT_TRUE(same_ram(src, dst)) << "a page written since round 0 was not reported";

  // Round 2: a DMA to an unmapped address faults; the vSMMU writes the event record into the guest's event
  // queue itself (IHI 0070 7.3), and that page is dirty too. The guest does not read it yet.
  const std::uint32_t prod = read32(guest.endpoint(), smmu::regs::EVENTQ_PROD);
  EXPECT_EQ(dma_write(*src.client, kUnmappedVa, "nobody home").faulted, 1u);
  ASSERT_TRUE(await_event(guest.endpoint(), prod)) << "the fault's event record never reached the guest's queue";
  EXPECT_EQ(dma_write(*src.client, kVa + 5 * kPage, "round 2").faulted, 0u);
  const std::uint64_t mask = (1ULL << guest.driver().eventq_log2()) - 1;
  const std::uint64_t record = guest.driver().eventq_base() + (prod & mask) * 32;
  Round peek = harvest(src, kDirtyGetNoClear);
  Round r2 = harvest(src);
  EXPECT_EQ(peek.dirty, r2.dirty) << "NO_CLEAR reports and keeps the bits";
  if (hardware) {
    EXPECT_EQ(r2.dirty, (std::set<std::uint64_t>{*buf + 5 * kPage, record & ~(kPage - 1)}));
  } else {
    EXPECT_EQ(r2.dirty, all_pages());
  }
  copy_pages(src, dst, r2.dirty);
  EXPECT_TRUE(same_ram(src, dst));

  // ---- stop-and-copy: the guest is paused (no DMA, no MMIO from here). The last round, the vSMMU's
  // registers as the guest left them, the state, and a round after it: SAVE_STATE writes nothing to RAM.
  Round last = harvest(src);
  if (hardware) {
    EXPECT_TRUE(last.dirty.empty());
  }
  copy_pages(src, dst, last.dirty);
  const std::uint32_t src_prod = read32(guest.endpoint(), smmu::regs::EVENTQ_PROD);
  const std::uint32_t src_cons = read32(guest.endpoint(), smmu::regs::EVENTQ_CONS);
  EXPECT_NE(src_prod, src_cons) << "the fault's record is in the queue, unconsumed";
  auto state = guest.endpoint().save_state();
  ASSERT_TRUE(state) << state.error();
  Round after_save = harvest(src);
  if (hardware) {
    EXPECT_TRUE(after_save.dirty.empty());
  }
  copy_pages(src, dst, after_save.dirty);
  ASSERT_TRUE(src.client->dirty_stop());
  EXPECT_TRUE(same_ram(src, dst)) << "the destination's guest RAM is the source's, byte for byte";

  // ---- the destination: the same wishes and device at the same vSID, then the state.
  auto target = RemoteVsmmu::create(*dst.client, options, {kVsid, "nic0", -1});
  ASSERT_TRUE(target) << target.error();
  auto loaded = (*target)->load_state(*state);
  ASSERT_TRUE(loaded) << loaded.error();
  EXPECT_TRUE(same_ram(src, dst)) << "loading the state writes no guest RAM";
  auto source = guest.migrate(std::move(*target), dst.ram->view());
  ASSERT_TRUE(source) << source.error();

  // The guest's event queue is where it was (IHI 0070 6.3.29, 6.3.30) and the fault is there to read.
  EXPECT_EQ(read32(guest.endpoint(), smmu::regs::EVENTQ_PROD), src_prod);
  EXPECT_EQ(read32(guest.endpoint(), smmu::regs::EVENTQ_CONS), src_cons);
  auto events = guest.events();
  ASSERT_TRUE(events) << events.error();
  ASSERT_EQ(events->records.size(), 1u);
  EXPECT_EQ(events->records[0].get(smmu::Event::ID), smmu::EventId::F_TRANSLATION);
  EXPECT_EQ(events->records[0].get(smmu::Event::SID), kVsid);
  EXPECT_EQ(events->records[0].get(smmu::Event::InputAddr), kUnmappedVa);

  // The guest's next commands run on the destination: an unmap with TLBI + CMD_SYNC (the DMA to it then
  // faults), DMA through the mappings it kept, and a new mapping.
  const std::string kept = "after migration, page 3";
  EXPECT_EQ(dma_write(*dst.client, kVa + 3 * kPage + 0x100, kept).faulted, 0u);
  EXPECT_EQ(std::memcmp(dst.at(*buf + 3 * kPage + 0x100), kept.data(), kept.size()), 0);
  ASSERT_TRUE(guest.unmap(1, kVa, kPage));
  EXPECT_EQ(dma_write(*dst.client, kVa + 0x20, "unmapped").faulted, 1u) << "the TLBI reached the destination's host";
  auto fresh = guest.alloc(kPage);
  ASSERT_TRUE(fresh);
  ASSERT_TRUE(guest.map(1, kVa + 0x20'0000, *fresh, kPage));
  const std::string text = "a mapping made on the destination";
  EXPECT_EQ(dma_write(*dst.client, kVa + 0x20'0000, text).faulted, 0u);
  EXPECT_EQ(std::memcmp(dst.at(*fresh), text.data(), text.size()), 0);
  EXPECT_NE(std::memcmp(src.at(*fresh), text.data(), text.size()), 0) << "the source's RAM is not the guest's any more";

  source->reset();  // the source VMM destroys its vSMMU
  auto stats = src.client->daemon_stats();
  ASSERT_TRUE(stats) << stats.error();
  EXPECT_EQ(stats->vsmmus, 0u);
  made->reset();
  src.client.reset();
  dst.client.reset();
  EXPECT_EQ(a.stop(), 0) << a.log();
  EXPECT_EQ(b.stop(), 0) << b.log();
}

// docs/protocol.md "Live migration (16-20)", on the kernel profile with stage-2 dirty tracking for nesting:
// every round reports exactly what the device and the vSMMU wrote.
TEST(Migration, FullMigrationWithHardwareDirtyTracking) { migrate_vm("nested-dirty", true); }

// Upstream's nest parent cannot track: the dirty log is conservative (every page in every round), and the
// destination still ends with the source's RAM and vSMMU.
TEST(Migration, FullMigrationWithConservativeDirtyTracking) { migrate_vm("upstream", false); }

// ---- refusals

std::vector<std::byte> dirty_packet(Op op, std::uint32_t vsmmu) {
  Header h;
  h.op = static_cast<std::uint16_t>(op);
  h.tag = 2;
  h.vsmmu = vsmmu;
  if (op == Op::dirty_get) return build(h, DirtyGetRequest{.region_gpa = kRamGpa});
  if (op == Op::dirty_stop) return build(h, DirtyStopRequest{});
  return build(h, DirtyStartRequest{});
}

void expect_refused(const Result<void>& r, int err, std::string_view part) {
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, err) << r.error();
  EXPECT_NE(r.error().to_string().find(part), std::string::npos) << r.error();
}
template <class T>
void expect_refused(const Result<T>& r, int err, std::string_view part) {
  expect_refused(r ? Result<void>{} : Result<void>(std::unexpected(r.error())), err, part);
}

// The dirty log's refusals: each names the op, the field and why, and the connection keeps serving.
TEST(Migration, DirtyLogRefusals) {
  Daemon d({"--profile", "nested-dirty"});
  {
    auto bare = Client::connect(d.socket(), Client::default_offer(), std::chrono::seconds(10));
    ASSERT_TRUE(bare) << bare.error();
    expect_refused((*bare)->dirty_start(), ENOENT, "regions: this connection has no guest RAM");
  }
  Vmm vmm = vmm_on(d, "ram");
  ASSERT_TRUE(vmm.ok());
  Client& c = *vmm.client;
  expect_refused(c.dirty_get(kRamGpa, vmm.bitmap.get()), EINVAL, "dirty: dirty tracking is off");
  ASSERT_TRUE(c.dirty_start());
  expect_refused(c.dirty_get(kRamGpa, -1), EBADF, "fds: none came with the packet");
  {
    host::UniqueFd small(::memfd_create("short-bitmap", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(small.get(), 16), 0);
    expect_refused(c.dirty_get(kRamGpa, small.get()), EINVAL, "the bitmap file has 16 bytes");
    expect_refused(c.dirty_get(kRamGpa, small.get()), EINVAL, "needs 32 bytes at offset 0");
    expect_refused(c.dirty_get(kRamGpa, vmm.bitmap.get(), kPage), EINVAL, "needs 32 bytes at offset 4096");
  }
  expect_refused(c.dirty_get(kRamGpa + kRamSize, vmm.bitmap.get()), ENOENT, "body.region_gpa");
  expect_refused(c.dirty_get(kRamGpa + kPage, vmm.bitmap.get()), ENOENT, "no guest RAM region");
  EXPECT_TRUE(c.dirty_get(kRamGpa, vmm.bitmap.get())) << "the connection keeps serving";

  // The dirty log is the VM's: a request that names a vSMMU is refused (no client library sends one).
  auto raw = d.raw_connect();
  ASSERT_TRUE(raw);
  ASSERT_EQ(roundtrip(raw.get(), hello_packet(kFeatureMigration)).header.status, 0);
  const int bitmap = vmm.bitmap.get();
  for (Op op : {Op::dirty_start, Op::dirty_stop, Op::dirty_get}) {
    SCOPED_TRACE(op_name(static_cast<std::uint16_t>(op)));
    auto r = roundtrip(raw.get(), dirty_packet(op, 1),
                       op == Op::dirty_get ? std::span<const int>(&bitmap, 1) : std::span<const int>());
    EXPECT_EQ(r.header.status, EINVAL);
    EXPECT_EQ(r.refusal.field, "header.vsmmu");
    EXPECT_NE(r.refusal.reason.find("must be 0"), std::string::npos) << r.refusal.to_string();
  }
  // Without kFeatureMigration granted, the ops are refused.
  auto plain = d.raw_connect();
  ASSERT_EQ(roundtrip(plain.get(), hello_packet()).header.status, 0);
  auto r = roundtrip(plain.get(), dirty_packet(Op::dirty_start, 0));
  EXPECT_EQ(r.header.status, EOPNOTSUPP);
  EXPECT_NE(r.refusal.reason.find("kFeatureMigration"), std::string::npos) << r.refusal.to_string();

  ASSERT_TRUE(c.dirty_stop());
  expect_refused(c.dirty_stop(), EALREADY, "already off");
  EXPECT_TRUE(c.daemon_stats());
  EXPECT_EQ(d.stop(), 0) << d.log();
}

struct Objects {
  std::uint64_t live = 0, connection = 0;
  bool operator==(const Objects&) const = default;
};
Objects objects(Client& c) {
  auto s = c.daemon_stats();
  EXPECT_TRUE(s) << s.error();
  return s ? Objects{s->host_live_objects, s->connection_host_objects} : Objects{};
}

// LOAD_STATE's refusals (nesting/migration_state.hpp; VirtualSmmu::load_state): each with its errno and
// message, none leaving a host object behind, the connection serving after each.
TEST(Migration, LoadStateRefusals) {
  Daemon a, b;
  Vmm src = vmm_on(a, "source-ram"), dst = vmm_on(b, "destination-ram");
  ASSERT_TRUE(src.ok() && dst.ok());
  auto from = src.client->create_vsmmu({}, {kVsid, "nic0", -1});
  ASSERT_TRUE(from) << from.error();
  ASSERT_TRUE(src.client->attach_device(from->handle, {kVsid2, "nic1", -1}));
  auto state = src.client->save_state(from->handle);
  ASSERT_TRUE(state) << state.error();
  ASSERT_GT(state->size(), 32u);

  // A device of the source missing: ENODEV naming its vSID. Destroying the vSMMU leaves nothing behind.
  const Objects before_create = objects(*dst.client);
  {
    auto lacking = dst.client->create_vsmmu({}, {kVsid, "nic0", -1});
    ASSERT_TRUE(lacking) << lacking.error();
    expect_refused(dst.client->load_state(lacking->handle, *state), ENODEV, "(vSID 0x18)");
    ASSERT_TRUE(dst.client->destroy_vsmmu(lacking->handle));
    EXPECT_EQ(objects(*dst.client), before_create);
  }

  auto to = dst.client->create_vsmmu({}, {kVsid, "nic0", -1});
  ASSERT_TRUE(to) << to.error();
  ASSERT_TRUE(dst.client->attach_device(to->handle, {kVsid2, "nic1", -1}));
  const Objects created = objects(*dst.client);

  std::vector<std::byte> truncated(state->begin(), state->end() - 1);
  std::vector<std::byte> corrupted = *state;
  corrupted[corrupted.size() / 2 + 16] ^= std::byte{0x01};
  std::vector<std::byte> version2 = *state;
  version2[8] = std::byte{2};  // bytes 8-11: the format version
  struct Case {
    const char* what;
    const std::vector<std::byte>& blob;
    int err;
    const char* says;
  };
  for (const Case& k : {Case{"truncated", truncated, EBADMSG, "the state is truncated"},
                        Case{"one byte flipped", corrupted, EBADMSG, "the state is corrupted: its body's CRC-32"},
                        Case{"format version 2", version2, EPROTONOSUPPORT, "the state is format version 2"}}) {
    SCOPED_TRACE(k.what);
    expect_refused(dst.client->load_state(to->handle, k.blob), k.err, k.says);
    EXPECT_EQ(objects(*dst.client), created) << "a refused load leaves the host objects as they were";
  }
  // A file shorter than state_bytes says so.
  {
    host::UniqueFd file(::memfd_create("short-state", MFD_CLOEXEC));
    ASSERT_EQ(::pwrite(file.get(), state->data(), 40, 0), 40);
    expect_refused(dst.client->load_state_from(to->handle, file.get(), state->size()), EINVAL,
                   fmt::format("the state file ends after 40 bytes; state_bytes says {}", state->size()));
  }
  // And the state itself loads, once.
  auto loaded = dst.client->load_state(to->handle, *state);
  EXPECT_TRUE(loaded) << loaded.error();
  expect_refused(dst.client->load_state(to->handle, *state), EBUSY, "already programmed");
  EXPECT_EQ(a.stop(), 0) << a.log();
  EXPECT_EQ(b.stop(), 0) << b.log();
}

// docs/protocol.md "DIRTY_GET (18)": a region removed while the log is on keeps the bits its devices set; the
// next DIRTY_GET of its GPA returns them once, flagged removed.
TEST(Migration, ARegionRemovedWhileTrackingReturnsItsLastBits) {
  Daemon d({"--profile", "nested-dirty"});
  Vmm vmm = vmm_on(d, "ram");
  ASSERT_TRUE(vmm.ok());
  auto remote = RemoteVsmmu::create(*vmm.client, {}, {kVsid, "nic0", -1});
  ASSERT_TRUE(remote) << remote.error();
  testkit::GuestHarnessConfig config;
  config.table_pool_size = 4ULL << 20;
  auto guest = testkit::GuestHarness::create_remote(std::move(*remote), vmm.ram->view(), kRamGpa, kRamSize, config);
  ASSERT_TRUE(guest) << guest.error();
  auto buf = (*guest)->alloc(kRegion);  // after the table pool: a region of its own, 1 MiB aligned
  ASSERT_TRUE(buf);
  ASSERT_EQ(*buf % kRegion, 0u);
  ASSERT_TRUE((*guest)->map(1, kVa, *buf, kRegion));
  ASSERT_TRUE((*guest)->attach(kVsid, 1));
  ASSERT_TRUE(vmm.client->dirty_start());
  EXPECT_EQ(dma_write(*vmm.client, kVa + 7 * kPage, "before removal").faulted, 0u);
  ASSERT_TRUE(vmm.client->remove_region(*buf));

  auto peek = vmm.client->dirty_get(*buf, vmm.bitmap.get(), 0, kDirtyGetNoClear);
  ASSERT_TRUE(peek) << peek.error();
  EXPECT_TRUE(peek->removed);
  auto last = vmm.client->dirty_get(*buf, vmm.bitmap.get());
  ASSERT_TRUE(last) << last.error();
  EXPECT_TRUE(last->removed);
  EXPECT_FALSE(last->conservative);
  EXPECT_EQ(last->pages, kRegion / kPage);
  EXPECT_EQ(last->dirty, 1u);
  std::uint8_t bits[kBitmapBytes] = {};
  ASSERT_EQ(::pread(vmm.bitmap.get(), bits, sizeof bits, 0), static_cast<ssize_t>(sizeof bits));
  EXPECT_EQ(bits[0], 0x80) << "page 7";
  expect_refused(vmm.client->dirty_get(*buf, vmm.bitmap.get()), ENOENT, "body.region_gpa");
  ASSERT_TRUE(vmm.client->dirty_stop());
  EXPECT_EQ(d.stop(), 0) << d.log();
}

}  // namespace
}  // namespace vsmmu::servicetest
