// I/O page faults under shared virtual addressing, through the vSMMU on the simulated host: a device whose
// transaction faults in the guest's stage 1 stalls (IHI 0070 3.12.2); the host kernel hands the fault to the
// vSMMU's fault queue (drivers/iommu/iommufd/eventq.c); the guest reads a stall record (F_TRANSLATION, Stall = 1,
// STAG), maps the page as Linux's iopf handler does (drivers/iommu/io-pgfault.c) and answers CMD_RESUME
// (IHI 0070 4.7.2); the device retries and the DMA completes. Aborts, STALL_TERM (4.7.3), reconfigured streams
// and removed devices end stalls with the access failed, and nothing stays stalled or queued on the host.
#include <cstring>

#include <map>

#include "tests/sim/nesting/nesting_fixture.hpp"
#include "smmu/driver/commands.hpp"

namespace vsmmu::nesting::test {
namespace {

using host::sim::DmaResult;
using smmu::Event;
using smmu::EventId;
using namespace smmu::driver;

constexpr std::uint32_t kAcc0 = 0x10;
constexpr std::uint32_t kAcc1 = 0x18;

// One SMMU that stalls (IDR0.STALL_MODEL "stall"), two accelerators whose firmware says dma-can-stall, one
// device that cannot stall.
constexpr const char* kStallProfile = R"({
  "kind": "hardware", "name": "stalls",
  "smmus": [ { "name": "smmu0", "s2fwb": true, "ssid_bits": 20, "stall_model": "stall" } ],
  "root_complexes": [ { "name": "pcie0", "smmu": "smmu0", "segment": 0 } ],
  "devices": [ { "name": "acc0", "bdf": "0000:01:00.0", "root_complex": "pcie0", "pasid_bits": 16, "stall": true },
               { "name": "acc1", "bdf": "0000:02:00.0", "root_complex": "pcie0", "pasid_bits": 16, "stall": true },
               { "name": "nic0", "bdf": "0000:03:00.0", "root_complex": "pcie0" } ],
  "dma_engines": [ { "name": "acc0.dma", "device": "acc0" }, { "name": "acc1.dma", "device": "acc1" },
                   { "name": "nic0.dma", "device": "nic0" } ]
})";

class Iopf : public NestingSim {
 protected:
  void SetUp() override {
    host = make_host_with_hardware(kStallProfile);
    ASSERT_TRUE(host);
  }

  // A guest given stalls, its two accelerators' masters stalling (Linux's master->stall_enabled), both attached
  // to the process address space kAsid with nothing mapped yet.
  std::unique_ptr<GuestHarness> make_sva(bool stall_wish = true, bool masters_stall = true) {
    VirtualSmmuConfig cfg;
    cfg.wishes.stall = stall_wish;
    cfg.wishes.ssid_bits = 8;  // PASIDs for the second process address space
    auto g = make({{.path = "acc0", .vsid = kAcc0}, {.path = "acc1", .vsid = kAcc1}}, cfg);
    if (!g) return nullptr;
    g->driver().set_master_stalls(kAcc0, masters_stall);
    g->driver().set_master_stalls(kAcc1, masters_stall);
    must(g->attach(kAcc0, kAsid));
    must(g->attach(kAcc1, kAsid));
    return g;
  }

  // The guest's I/O page fault handler: maps a fresh page of guest RAM at the faulting address (remembered in
  // `mapped`) and says it resolved it.
  StallHandler mapper(GuestHarness& g, std::map<std::uint64_t, std::uint64_t>& mapped) {
    return [&g, &mapped](const Event& e) {
      const std::uint64_t va = e.get(Event::InputAddr) & ~(kPage - 1);
      const std::uint64_t gpa = must(g.alloc(kPage));
      if (!g.map(kAsid, va, gpa, kPage)) return false;
      mapped[va] = gpa;
      return true;
    };
  }

  // The VMM's poll loop: the fault fd is among the vSMMU's event fds.
  static void vmm_polls(GuestHarness& g) { (void)must(g.vsmmu().process_events()); }

  DmaResult dma_write(std::string_view engine, std::uint64_t iova, std::span<const std::byte> data,
                  std::optional<std::uint32_t> ssid = std::nullopt) {
    return must(host->dma_write(engine, iova, data, ssid));
  }
  DmaResult outcome(std::string_view engine) { return must(host->dma_outcome(engine)); }

  // A write by `engine` at `iova` that stalls, and the stall record the guest then reads (its event handler
  // not answering yet).
  Event stall_seen(GuestHarness& g, std::string_view engine, std::uint64_t iova) {
    EXPECT_TRUE(dma_write(engine, iova, pattern(64, static_cast<std::uint8_t>(iova >> 12))).pending());
    vmm_polls(g);
    auto ev = must(g.driver().drain_events());
    EXPECT_EQ(ev.records.size(), 1U);
    return ev.records.empty() ? Event{} : ev.records[0];
  }
};

// The whole path: the stall record the guest reads carries what the architecture says (IHI 0070 7.3.12:
// F_TRANSLATION, S2 = 0, CLASS = IN; Stall, STAG, the device's StreamID, RnW = 0 for a write), and the guest's
// CMD_RESUME retry completes the DMA with its bytes in the page the guest mapped.
TEST_F(Iopf, AStalledDmaCompletesAfterTheGuestMapsThePageAndResumes) {
  auto g = make_sva();
  ASSERT_TRUE(g);
  EXPECT_EQ(g->vsmmu().id_registers().idr0.get(smmu::Idr0::STALL_MODEL), smmu::StallModel::stall_and_terminate);
  EXPECT_GT(g->vsmmu().id_registers().idr5.get(smmu::Idr5::STALL_MAX), 0U);
  const auto data = pattern(256, 3);
  const DmaResult first = dma_write("acc0.dma", kVa, data);
  ASSERT_TRUE(first.pending()) << "the unmapped page stalls the write";

  vmm_polls(*g);
  std::map<std::uint64_t, std::uint64_t> mapped;
  std::vector<Event> seen;
  auto handler = mapper(*g, mapped);
  const ServicedEvents s = must(g->driver().service_events([&](const Event& e) {
    seen.push_back(e);
    return handler(e);
  }));
  ASSERT_EQ(seen.size(), 1U);
  const Event& e = seen[0];
  EXPECT_EQ(e.get(Event::ID), EventId::F_TRANSLATION);
  EXPECT_TRUE(e.get(Event::Stall));
  EXPECT_EQ(e.get(Event::SID), kAcc0);
  EXPECT_EQ(e.get(Event::InputAddr) & ~(kPage - 1), kVa);
  EXPECT_FALSE(e.get(Event::RnW)) << "a write";
  EXPECT_FALSE(e.get(Event::S2));
  EXPECT_FALSE(e.get(Event::SSV));
  EXPECT_EQ(s.resumed, 1U);

  const DmaResult done = outcome("acc0.dma");
  EXPECT_TRUE(done.ok());
  EXPECT_EQ(done.bytes, data.size());
  ASSERT_EQ(mapped.count(kVa), 1U);
  EXPECT_TRUE(holds(*g, mapped[kVa], data));
  const auto st = g->vsmmu().stats();
  EXPECT_EQ(st.stalls, 1U);
  EXPECT_EQ(st.stalls_resumed, 1U);
  EXPECT_EQ(st.stalls_aborted + st.stalls_dropped, 0U);
  EXPECT_EQ(host->stats().fault_groups, 0U);
  EXPECT_EQ(host->stats().stalled_transactions, 0U);
}

// A handler that cannot resolve the fault answers CMD_RESUME abort: the device's access fails.
TEST_F(Iopf, AnAbortAnswerFailsTheDma) {
  auto g = make_sva();
  ASSERT_TRUE(g);
  ASSERT_TRUE(dma_write("acc0.dma", kVa, pattern(64, 1)).pending());
  vmm_polls(*g);
  const ServicedEvents s = must(g->driver().service_events([](const Event&) { return false; }));
  EXPECT_EQ(s.aborted, 1U);
  const DmaResult done = outcome("acc0.dma");
  EXPECT_FALSE(done.ok());
  EXPECT_TRUE(done.fault.has_value());
  EXPECT_EQ(g->vsmmu().stats().stalls_aborted, 1U);
  EXPECT_EQ(host->stats().fault_groups, 0U);
}

// Several stalls outstanding at once, on two devices and two PASIDs: each record names its StreamID and
// SubstreamID, the STAGs tell them apart, and every DMA completes once its page is mapped.
TEST_F(Iopf, ManyOutstandingFaultsOnTwoDevicesAndPasidsAllComplete) {
  auto g = make_sva();
  ASSERT_TRUE(g);
  constexpr std::uint16_t kAsid2 = 9;
  constexpr std::uint32_t kPasid = 3;
  (void)must(g->driver().create_cd_table(kAcc1, 4));  // room for PASIDs (the first attach made SSID 0's only)
  must(g->attach(kAcc1, kAsid));
  must(g->attach(kAcc1, kAsid2, kPasid));  // a second process address space on acc1's PASID 3
  const auto a = pattern(128, 10), b = pattern(128, 20);
  ASSERT_TRUE(dma_write("acc0.dma", kVa, a).pending());
  ASSERT_TRUE(dma_write("acc1.dma", kVa + 0x10000, b, kPasid).pending());
  vmm_polls(*g);
  std::map<std::uint64_t, std::uint64_t> mapped;
  std::vector<Event> seen;
  const ServicedEvents s = must(g->driver().service_events([&](const Event& e) {
    seen.push_back(e);
    const std::uint16_t asid = e.get(Event::SSV) ? kAsid2 : kAsid;
    const std::uint64_t va = e.get(Event::InputAddr) & ~(kPage - 1);
    const std::uint64_t gpa = must(g->alloc(kPage));
    if (!g->map(asid, va, gpa, kPage)) return false;
    mapped[va] = gpa;
    return true;
  }));
  ASSERT_EQ(seen.size(), 2U);
  EXPECT_EQ(s.resumed, 2U);
  bool saw_pasid = false;
  for (const Event& e : seen)
    if (e.get(Event::SID) == kAcc1) {
      EXPECT_TRUE(e.get(Event::SSV));
      EXPECT_EQ(e.get(Event::SSID), kPasid);
      saw_pasid = true;
    }
  EXPECT_TRUE(saw_pasid);
  EXPECT_TRUE(outcome("acc0.dma").ok());
  EXPECT_TRUE(outcome("acc1.dma").ok());
  EXPECT_TRUE(holds(*g, mapped[kVa], a));
  EXPECT_TRUE(holds(*g, mapped[kVa + 0x10000], b));
  EXPECT_EQ(g->vsmmu().stats().stalls, 2U);
}

// A device removed while its stall is outstanding: the vSMMU answers it INVALID, the DMA fails, and the host
// holds nothing for it (no fault group, no stalled transaction, no pending transfer); the guest's late
// CMD_RESUME for it names no stall and is ignored.
TEST_F(Iopf, ADeviceRemovedWithAStallPendingLeavesNothingBehind) {
  auto g = make_sva();
  ASSERT_TRUE(g);
  const Event stall = stall_seen(*g, "acc0.dma", kVa);
  const auto objects_before = g->vsmmu().host_objects();
  must(g->vsmmu().remove_device(kAcc0));
  EXPECT_EQ(g->vsmmu().stats().stalls_aborted, 1U);
  EXPECT_FALSE(outcome("acc0.dma").ok());
  const auto hs = host->stats();
  EXPECT_EQ(hs.fault_groups, 0U);
  EXPECT_EQ(hs.stalled_transactions, 0U);
  EXPECT_EQ(hs.pending_dma, 0U);
  EXPECT_LT(g->vsmmu().host_objects(), objects_before);
  must(g->driver().issue(cmd_resume(kAcc0, stall.get(Event::STAG), smmu::ResumeAction::retry)));
  EXPECT_EQ(g->vsmmu().stats().command_errors, 0U);
}

// The guest reconfigures a stream with a stall outstanding (here: an abort STE): the stall is answered
// INVALID before the host's configuration changes.
TEST_F(Iopf, AStreamReconfiguredWithAStallPendingIsAnsweredInvalid) {
  auto g = make_sva();
  ASSERT_TRUE(g);
  (void)stall_seen(*g, "acc0.dma", kVa);
  must(g->driver().install_abort(kAcc0));
  EXPECT_EQ(g->vsmmu().stats().stalls_aborted, 1U);
  EXPECT_FALSE(outcome("acc0.dma").ok());
  EXPECT_EQ(host->stats().fault_groups, 0U);
  EXPECT_EQ(host->stats().stalled_transactions, 0U);
}

// CMD_STALL_TERM (IHI 0070 4.7.3) ends every stall of the stream, and only of that stream; the driver's
// detach sends it.
TEST_F(Iopf, StallTermEndsTheStreamsStallsOnly) {
  auto g = make_sva();
  ASSERT_TRUE(g);
  (void)stall_seen(*g, "acc0.dma", kVa);
  (void)stall_seen(*g, "acc1.dma", kVa + 0x20000);
  must(g->driver().issue(cmd_stall_term(kAcc0)));
  EXPECT_FALSE(outcome("acc0.dma").ok());
  EXPECT_TRUE(must(host->dma_outcome("acc1.dma")).pending()) << "acc1's stall is still outstanding";
  EXPECT_EQ(g->vsmmu().stats().stalls_aborted, 1U);
  must(g->driver().detach(kAcc1));
  EXPECT_FALSE(outcome("acc1.dma").ok());
  EXPECT_EQ(host->stats().fault_groups, 0U);
}

// A CMD_RESUME whose StreamID and STAG name no stalled transaction is ignored (IHI 0070 4.7.2): no command
// error, and the stall that is outstanding is untouched.
TEST_F(Iopf, AResumeWithAnUnknownStagIsIgnored) {
  auto g = make_sva();
  ASSERT_TRUE(g);
  const std::uint16_t stag = stall_seen(*g, "acc0.dma", kVa).get(Event::STAG);
  must(g->driver().issue(cmd_resume(kAcc0, static_cast<std::uint16_t>(stag + 1), smmu::ResumeAction::retry)));
  must(g->driver().issue(cmd_resume(kAcc1, stag, smmu::ResumeAction::abort)));
  EXPECT_EQ(g->vsmmu().stats().command_errors, 0U);
  EXPECT_TRUE(must(host->dma_outcome("acc0.dma")).pending());
  must(g->driver().issue(cmd_resume(kAcc0, stag, smmu::ResumeAction::abort)));
  EXPECT_FALSE(outcome("acc0.dma").ok());
}

// A master that does not stall (Linux leaves master->stall_enabled off: STE.S1STALLD = 1, CD.S = 0): the fault
// terminates at once and the guest reads it without Stall, through the vEVENTQ.
TEST_F(Iopf, S1stalldTerminatesAndTheGuestSeesTheFaultWithoutStall) {
  auto g = make_sva(/*stall_wish=*/true, /*masters_stall=*/false);
  ASSERT_TRUE(g);
  const DmaResult r = dma_write("acc0.dma", kVa, pattern(64, 11));
  EXPECT_FALSE(r.pending());
  EXPECT_FALSE(r.ok());
  auto ev = must(g->events());
  ASSERT_EQ(ev.records.size(), 1U);
  EXPECT_EQ(ev.records[0].get(Event::ID), EventId::F_TRANSLATION);
  EXPECT_FALSE(ev.records[0].get(Event::Stall));
  EXPECT_EQ(g->vsmmu().stats().stalls, 0U);
}

// Without the stall wish the guest is given no stalls (IDR0.STALL_MODEL terminate), so CMD_RESUME is illegal
// (IHI 0070 4.1.3: a command for a feature the SMMU lacks), and the device's fault terminates.
TEST_F(Iopf, WithoutStallsGivenResumeIsIllegal) {
  auto g = make_sva(/*stall_wish=*/false);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->vsmmu().id_registers().idr0.get(smmu::Idr0::STALL_MODEL), smmu::StallModel::terminate);
  EXPECT_FALSE(dma_write("acc0.dma", kVa, pattern(64, 12)).pending());
  EXPECT_FALSE(g->driver().issue(cmd_resume(kAcc0, 0, smmu::ResumeAction::retry)));
  EXPECT_EQ(g->vsmmu().stats().command_errors, 1U);
}


// Stalls on auto (docs/vsva.md, "What the host must offer"): a VMM that says nothing gets the physical SMMU's
// stall model. If the host kernel then cannot give the fault queue the stalls are reported through
// (IOMMU_FAULT_QUEUE_ALLOC), the vSMMU is made without stalls rather than failing; a VMM that asked for stalls
// gets the host's error instead. fail_nth finds the fault queue among create's host calls: it is the one
// injected failure that an auto vSMMU survives.
TEST_F(Iopf, StallsOnAutoFollowTheSmmuAndAreDroppedWithoutAFaultQueue) {
  const GuestRamLayout layout{0x40000000ULL, 16ULL << 20};
  auto memory = must(GuestMemory::allocate(*host, std::span(&layout, 1)));
  {
    auto v = must(VirtualSmmu::create(*memory, {}, {{"acc0", -1, kAcc0}}));
    EXPECT_EQ(v->id_registers().idr0.get(smmu::Idr0::STALL_MODEL), smmu::StallModel::stall_and_terminate);
  }
  unsigned survived = 0;
  for (unsigned n = 1; n < 40; ++n) {
    host->set_fail_nth(n);
    auto v = VirtualSmmu::create(*memory, {}, {{"acc0", -1, kAcc0}});
    const bool fired = host->fail_nth_fired();
    host->set_fail_nth(0);
    if (!fired) break;
    if (!v) continue;  // another host call failed: create refused cleanly (lifecycle_test covers those)
    ++survived;
    EXPECT_EQ((*v)->id_registers().idr0.get(smmu::Idr0::STALL_MODEL), smmu::StallModel::terminate)
        << "n = " << n << ": the vSMMU survived a failed host call and still gives stalls";
    VirtualSmmuConfig asked;
    asked.wishes.stall = true;
    v->reset();
    host->set_fail_nth(n);
    auto refused = VirtualSmmu::create(*memory, asked, {{"acc0", -1, kAcc0}});
    host->set_fail_nth(0);
    ASSERT_FALSE(refused) << "n = " << n << ": stated stalls without a fault queue were not refused";
    EXPECT_NE(refused.error().message.find("IOMMU_FAULT_QUEUE_ALLOC"), std::string::npos) << refused.error();
  }
  EXPECT_EQ(survived, 1U) << "exactly one host call of create is optional: the fault queue";
}

}  // namespace
}  // namespace vsmmu::nesting::test
