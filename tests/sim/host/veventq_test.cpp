// The vEVENTQ on the simulated host: real DMA faults through the SMMU model become event records that the
// simulated driver forwards (arm_vmaster_report_event: stage-1 events only, SID replaced by the vSID) to the
// vIOMMU's vEVENTQ fd, with the kernel's sequence numbers and LOST_EVENTS header on overflow
// (iommufd_viommu_report_event, iommufd_vevent_handler; reference/kernel-uapi.md "vEVENTQ read"; iommufd
// selftest "vevent" with trigger/read and overflow).
#include <poll.h>
#include <unistd.h>

#include <chrono>

#include "tests/sim/host/sim_fixture.hpp"

namespace vsmmu::host::sim::test {
namespace {

constexpr std::uint64_t kVa = 0x5000'0000;  // nothing is mapped here at stage 1: every DMA faults

class SimVeventq : public ::testing::Test {
 protected:
  void build(std::uint32_t depth) {
    host = make_host();
    ASSERT_TRUE(host);
    ram = std::make_unique<GuestRam>(16 << 20);
    guest = std::make_unique<GuestStage1>(*ram);
    vste = guest->vste();
    build_nested(*host, *ram, vste, s, "nic0", depth);
    ASSERT_TRUE(s.attachment);
  }
  // One faulting DMA at page `n` of the unmapped range.
  void fault(std::uint64_t n) {
    const std::array<std::byte, 4> data{};
    auto r = must(host->dma_write("nic0.dma", kVa + n * 0x1000, data));
    ASSERT_FALSE(r.ok());
  }

  std::unique_ptr<SimHost> host;
  std::unique_ptr<GuestRam> ram;
  std::unique_ptr<GuestStage1> guest;
  std::array<std::byte, 16> vste{};
  NestedSetup s;
};

// Each fault is one whole record {flags 0, sequence n} + the 32-byte event with the vSID; the fd is pollable.
TEST_F(SimVeventq, SequenceAndVsid) {
  build(16);
  pollfd p{s.veventq.fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "nothing to read yet";
  for (std::uint64_t i = 0; i < 5; ++i) fault(i);
  ASSERT_EQ(::poll(&p, 1, 1000), 1);
  // Records come whole: the first read returns exactly one header and its event.
  std::array<std::byte, 4096> buf{};
  ASSERT_EQ(::read(s.veventq.fd(), buf.data(), buf.size()), 40);
  VeventqReader reader(s.veventq.fd());
  std::vector<VeventqRecord> recs;
  ASSERT_TRUE(reader.parse(buf.data(), 40, recs));
  auto rest = read_events(reader);
  recs.insert(recs.end(), rest.begin(), rest.end());
  ASSERT_EQ(recs.size(), 5U);
  for (std::uint32_t i = 0; i < 5; ++i) {
    EXPECT_EQ(recs[i].kind, VeventqRecord::Kind::event);
    EXPECT_EQ(recs[i].sequence, i);
    smmu::Event ev;
    ev.dw = recs[i].evt;
    EXPECT_EQ(ev.get(smmu::Event::ID), smmu::EventId::F_TRANSLATION);
    EXPECT_EQ(ev.get(smmu::Event::SID), NestedSetup::kVsid);
    EXPECT_EQ(ev.get(smmu::Event::InputAddr), kVa + i * 0x1000);
  }
  EXPECT_EQ(reader.lost_total(), 0U);
  EXPECT_EQ(::read(s.veventq.fd(), buf.data(), buf.size()), -1) << "empty: EAGAIN (the kernel's fd returns 0)";
  EXPECT_EQ(host->stats().events_forwarded, 5U);
}

// Overflow within one interrupt-handler run (the selftest triggers depth+N events at once): `depth` events
// queue, the rest are lost and one LOST_EVENTS header carries the sequence of the last lost one.
TEST_F(SimVeventq, OverflowInOneHandlerRunEndsWithOneLostHeader) {
  build(4);
  host->set_interrupts_deferred(true);
  for (std::uint64_t i = 0; i < 7; ++i) fault(i);
  VeventqReader reader(s.veventq.fd());
  EXPECT_TRUE(read_events(reader).empty()) << "nothing before the interrupt is serviced";
  host->run_interrupts();
  auto recs = read_events(reader);
  ASSERT_EQ(recs.size(), 5U);
  for (std::uint32_t i = 0; i < 4; ++i) EXPECT_EQ(recs[i].sequence, i);
  EXPECT_EQ(recs[4].kind, VeventqRecord::Kind::lost);
  EXPECT_EQ(recs[4].sequence, 6U);
  ASSERT_TRUE(recs[4].lost_count);
  EXPECT_EQ(*recs[4].lost_count, 3U);
  // The queue has room again: the next event takes the next sequence number.
  host->set_interrupts_deferred(false);
  fault(20);
  recs = read_events(reader);
  ASSERT_EQ(recs.size(), 1U);
  EXPECT_EQ(recs[0].kind, VeventqRecord::Kind::event);
  EXPECT_EQ(recs[0].sequence, 7U);
  EXPECT_EQ(reader.lost_total(), 3U);
}

// Losses over several handler runs while the reader is away: one header (the socket cannot move it to the
// tail as the kernel would), and the next event's sequence gap counts the rest; every loss is accounted for.
TEST_F(SimVeventq, OverflowAcrossHandlerRunsCountsEveryLoss) {
  build(2);
  for (std::uint64_t i = 0; i < 5; ++i) fault(i);  // 0, 1 queued; 2, 3, 4 lost
  VeventqReader reader(s.veventq.fd());
  auto recs = read_events(reader);
  ASSERT_EQ(recs.size(), 3U);
  EXPECT_EQ(recs[2].kind, VeventqRecord::Kind::lost);
  fault(9);  // sequence 5
  auto more = read_events(reader);
  ASSERT_FALSE(more.empty());
  EXPECT_EQ(more.back().kind, VeventqRecord::Kind::event);
  EXPECT_EQ(more.back().sequence, 5U);
  EXPECT_EQ(reader.lost_total(), 3U);
}

// More records than the socket holds: the simulated kernel keeps the rest and writes them as the reader
// makes room (its pump thread), so a deep queue loses nothing.
TEST_F(SimVeventq, DeepQueueDeliversEverythingThroughTheBacklog) {
  constexpr std::uint32_t kEvents = 12000;
  build(kEvents + 10);
  host->set_interrupts_deferred(true);
  for (std::uint32_t i = 0; i < kEvents; ++i) {
    fault(i);
    if (i % 200 == 199) host->run_interrupts();  // before the SMMU's 256-entry event queue overflows
  }
  host->run_interrupts();
  VeventqReader reader(s.veventq.fd());
  std::vector<VeventqRecord> recs;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (recs.size() < kEvents && std::chrono::steady_clock::now() < deadline) {
    pollfd p{s.veventq.fd(), POLLIN, 0};
    (void)::poll(&p, 1, 100);
    auto n = reader.read_available(recs);
    ASSERT_TRUE(n) << n.error();
  }
  ASSERT_EQ(recs.size(), kEvents);
  for (std::uint32_t i = 0; i < kEvents; ++i) {
    ASSERT_EQ(recs[i].kind, VeventqRecord::Kind::event) << i;
    ASSERT_EQ(recs[i].sequence, i);
  }
  EXPECT_EQ(reader.lost_total(), 0U);
}

// Only a device attached to a nested HWPT with a vDEVICE has a vSID to report (arm_smmu_handle_evt ->
// master->vmaster); stage-2 faults and events with no vEVENTQ are the host's: logged, not forwarded.
TEST_F(SimVeventq, EventsWithoutVmasterOrVeventqAreNotForwarded) {
  build(8);
  const ObjectId q = s.veventq.id();
  s.veventq = QueueObject();  // closes the fd, destroys the vEVENTQ
  EXPECT_EQ(err_of(host->destroy(q)), ENOENT);
  const auto before = host->stats();
  fault(1);
  auto after = host->stats();
  EXPECT_EQ(after.events_forwarded, before.events_forwarded);
  EXPECT_EQ(after.events_unhandled, before.events_unhandled + 1);
}

}  // namespace
}  // namespace vsmmu::host::sim::test
