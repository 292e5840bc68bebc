// The vEVENTQ on the simulated host: real DMA faults through the SMMU model become event records that the
// simulated driver forwards (arm_vmaster_report_event: stage-1 events only, SID replaced by the vSID) to the
// vIOMMU's vEVENTQ, with the kernel's sequence numbers and LOST_EVENTS header on overflow
// (drivers/iommu/iommufd/driver.c iommufd_viommu_report_event, iommufd_private.h iommufd_vevent_handler), read
// through Host::read_veventq with the kernel's answers (drivers/iommu/iommufd/eventq.c
// iommufd_veventq_fops_read, iommufd_eventq_fops_poll; iommufd selftest "vevent" with trigger/read and
// overflow).
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "tests/sim/host/sim_fixture.hpp"

namespace vsmmu::host::sim::test {
namespace {

constexpr std::uint64_t kVa = 0x5000'0000;  // nothing is mapped here at stage 1: every DMA faults

std::uint32_t u32_at(std::span<const std::byte> b, std::size_t at) {
  std::uint32_t v = 0;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}

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

  bool readable() {
    pollfd p{s.veventq.fd(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
  }
  Result<std::size_t> read(std::span<std::byte> buf) { return host->read_veventq(s.veventq.fd(), buf); }

  std::unique_ptr<SimHost> host;
  std::unique_ptr<GuestRam> ram;
  std::unique_ptr<GuestStage1> guest;
  std::array<std::byte, 16> vste{};
  NestedSetup s;
};

// Each fault is one whole record {flags 0, sequence n} + the 32-byte event with the vSID. The fd is readable
// exactly while records are queued (iommufd_eventq_fops_poll); a read returns as many whole records as fit
// (iommufd_veventq_fops_read), and an empty queue reads 0 rather than EAGAIN or blocking.
TEST_F(SimVeventq, SequenceAndVsid) {
  build(16);
  EXPECT_FALSE(readable()) << "nothing to read yet";
  std::array<std::byte, 4096> buf{};
  EXPECT_EQ(must(read(buf)), 0U) << "empty: 0 bytes";
  for (std::uint64_t i = 0; i < 5; ++i) fault(i);
  EXPECT_TRUE(readable());
  ASSERT_EQ(must(read(buf)), 5U * 40) << "all five records fit: one read returns them all";
  EXPECT_FALSE(readable()) << "drained";
  VeventqReader reader(*host, s.veventq.fd());
  std::vector<VeventqRecord> recs;
  ASSERT_TRUE(reader.parse(buf.data(), 5 * 40, recs));
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
  EXPECT_EQ(must(read(buf)), 0U) << "empty again: 0 bytes";
  EXPECT_EQ(host->stats().events_forwarded, 5U);
}

// iommufd_veventq_fops_read: a buffer shorter than a header is EINVAL even on an empty queue; a buffer that
// holds no whole first record is EINVAL and the record stays queued (and the fd readable); otherwise only the
// records that fit whole are returned.
TEST_F(SimVeventq, ShortBufferIsEinvalAndTheRecordStaysQueued) {
  build(16);
  std::array<std::byte, 4096> buf{};
  EXPECT_EQ(err_of(read(std::span(buf).first(7))), EINVAL) << "shorter than a header, empty queue";
  fault(0);
  fault(1);
  EXPECT_EQ(err_of(read(std::span(buf).first(7))), EINVAL) << "shorter than a header";
  EXPECT_EQ(err_of(read(std::span(buf).first(39))), EINVAL) << "one byte short of the first record";
  EXPECT_TRUE(readable()) << "the record is still queued";
  EXPECT_EQ(must(read(std::span(buf).first(79))), 40U) << "one whole record fits, the second does not";
  EXPECT_EQ(u32_at(buf, 4), 0U);
  EXPECT_EQ(must(read(std::span(buf).first(40))), 40U);
  EXPECT_EQ(u32_at(buf, 4), 1U) << "the record kept by the short reads comes next, nothing was lost";
  EXPECT_EQ(must(read(buf)), 0U);
}

// iommufd_viommu_report_event: with `depth` events queued, a new event is lost and the queue's LOST_EVENTS
// header moves to the tail carrying the newest dropped sequence; the header alone is 8 bytes and fits where an
// event does not.
TEST_F(SimVeventq, LostEventsHeaderCarriesTheNewestDroppedSequence) {
  build(2);
  for (std::uint64_t i = 0; i < 5; ++i) fault(i);  // 0, 1 queued; 2, 3, 4 lost
  std::array<std::byte, 4096> buf{};
  ASSERT_EQ(must(read(std::span(buf).first(88))), 88U) << "two events and the header";
  EXPECT_EQ(u32_at(buf, 80), uapi::kVeventqFlagLostEvents);
  EXPECT_EQ(u32_at(buf, 84), 4U) << "the newest dropped event's sequence";
  EXPECT_FALSE(readable());
  // Again, read in two goes: the header fits a buffer of 8 bytes.
  for (std::uint64_t i = 5; i < 10; ++i) fault(i);  // sequences 5, 6 queued; 7, 8, 9 lost
  ASSERT_EQ(must(read(std::span(buf).first(80 + 7))), 80U);
  EXPECT_EQ(must(read(std::span(buf).first(8))), 8U);
  EXPECT_EQ(u32_at(buf, 0), uapi::kVeventqFlagLostEvents);
  EXPECT_EQ(u32_at(buf, 4), 9U);
}

// Overflow within one interrupt-handler run (the selftest triggers depth+N events at once): `depth` events
// queue, the rest are lost and one LOST_EVENTS header carries the sequence of the last lost one.
TEST_F(SimVeventq, OverflowInOneHandlerRunEndsWithOneLostHeader) {
  build(4);
  host->set_interrupts_deferred(true);
  for (std::uint64_t i = 0; i < 7; ++i) fault(i);
  VeventqReader reader(*host, s.veventq.fd());
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

// Losses over several handler runs while the reader is away: the one header moves to the tail with the newest
// dropped sequence (iommufd_vevent_handler), and an event queued after it removes it: the event's sequence gap
// then counts the losses. Every loss is accounted for.
TEST_F(SimVeventq, OverflowAcrossHandlerRunsCountsEveryLoss) {
  build(2);
  fault(0);
  fault(1);
  fault(2);  // lost: header 2
  fault(3);  // lost: the header moves to 3
  VeventqReader reader(*host, s.veventq.fd());
  auto recs = read_events(reader);
  ASSERT_EQ(recs.size(), 3U);
  EXPECT_EQ(recs[2].kind, VeventqRecord::Kind::lost);
  EXPECT_EQ(recs[2].sequence, 3U);
  EXPECT_EQ(recs[2].lost_count, 2U);
  fault(4);  // sequence 4: queued
  fault(5);  // 5: queued
  fault(6);  // lost: header 6 at the tail
  std::array<std::byte, 40> one{};
  ASSERT_EQ(must(read(one)), 40U);  // sequence 4 read: room for one
  fault(7);  // queued after the header, which goes: the gap before 7 reports the loss of 6
  recs.clear();
  ASSERT_TRUE(reader.parse(one.data(), one.size(), recs));
  auto more = read_events(reader);
  recs.insert(recs.end(), more.begin(), more.end());
  ASSERT_EQ(recs.size(), 4U);
  EXPECT_EQ(recs[0].sequence, 4U);
  EXPECT_EQ(recs[1].sequence, 5U);
  EXPECT_EQ(recs[2].kind, VeventqRecord::Kind::lost) << "from the sequence gap";
  EXPECT_EQ(recs[2].lost_count, 1U);
  EXPECT_EQ(recs[3].sequence, 7U);
  EXPECT_EQ(reader.lost_total(), 3U);
}

// A fault storm as QEMU makes one (the qemu-virt profile's edu goes on after a fault in 4-byte pieces): one
// blocked 4 KiB DMA raises 1024 F_TRANSLATION records. arm_smmu_evtq_thread drains the SMMU's event queue as
// it fills, so none is lost there and the vEVENTQ's sequence advances by 1024, as on the real e2e run: a queue
// of 64 holds sequences 0..63 and its LOST_EVENTS header carries 1023; the next event is 1024.
TEST(SimVeventqStorm, AFaultingFourKibDmaAdvancesTheSequenceBy1024) {
  auto host = make_host("upstream", "qemu-virt");
  ASSERT_TRUE(host);
  GuestRam ram(16 << 20);
  GuestStage1 guest(ram);
  auto vste = guest.vste();
  NestedSetup s;
  build_nested(*host, ram, vste, s, "edu", 64);
  ASSERT_TRUE(s.attachment);
  const auto before = must(host->smmu_counters("smmuv3"));
  std::vector<std::byte> data(0x1000, std::byte{0x3c});
  EXPECT_FALSE(must(host->dma_write("edu.dma", kVa, data)).ok());
  const auto after = must(host->smmu_counters("smmuv3"));
  EXPECT_EQ(after.model.events - before.model.events, 1024U);
  EXPECT_EQ(after.model.events_lost, before.model.events_lost) << "the SMMU's own queue never overflowed";
  EXPECT_EQ(host->stats().events_forwarded, 1024U);
  VeventqReader reader(*host, s.veventq.fd());
  auto recs = read_events(reader);
  ASSERT_EQ(recs.size(), 65U);
  for (std::uint32_t i = 0; i < 64; ++i) ASSERT_EQ(recs[i].sequence, i);
  smmu::Event ev;
  ev.dw = recs[0].evt;
  EXPECT_EQ(ev.get(smmu::Event::ID), smmu::EventId::F_TRANSLATION);
  EXPECT_EQ(recs[64].kind, VeventqRecord::Kind::lost);
  EXPECT_EQ(recs[64].sequence, 1023U);
  EXPECT_EQ(recs[64].lost_count, 1024U - 64);
  const std::array<std::byte, 4> word{};
  EXPECT_FALSE(must(host->dma_write("edu.dma", kVa + 0x10000, word)).ok());
  recs = read_events(reader);
  ASSERT_EQ(recs.size(), 1U);
  EXPECT_EQ(recs[0].sequence, 1024U);
}

// The fd is the queue's only name on the read path, as for read(2): a closed fd is EBADF, an fd that is not
// a vEVENTQ's is refused.
TEST_F(SimVeventq, ReadingAnFdThatIsNotAVeventqIsRefused) {
  build(4);
  std::array<std::byte, 64> buf{};
  EXPECT_EQ(err_of(host->read_veventq(-1, buf)), EBADF);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  UniqueFd r(p[0]), w(p[1]);
  EXPECT_EQ(err_of(host->read_veventq(r.get(), buf)), EINVAL);
}

// A deep queue holds everything the reader has not read yet: nothing is lost while fewer than `depth` events
// wait (iommufd_viommu_report_event counts queued events only).
TEST_F(SimVeventq, DeepQueueDeliversEverything) {
  constexpr std::uint32_t kEvents = 12000;
  build(kEvents + 10);
  host->set_interrupts_deferred(true);
  for (std::uint32_t i = 0; i < kEvents; ++i) {
    fault(i);
    if (i % 200 == 199) host->run_interrupts();  // before the SMMU's 256-entry event queue overflows
  }
  host->run_interrupts();
  VeventqReader reader(*host, s.veventq.fd());
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
