// The whole stack on the simulated host: the scripted guest driver brings the VirtualSmmu up as Linux's
// arm-smmu-v3 does, builds CDs and stage-1 tables in guest RAM, and simulated devices DMA through guest stage 1
// and host stage 2. Each test states what a guest kernel would see (IHI 0070 sections cited).
#include "tests/sim/nesting/nesting_fixture.hpp"

namespace vsmmu::nesting::test {
namespace {

using namespace smmu;
using namespace smmu::driver;

class VirtualSmmuSim : public NestingSim {};

// IHI 0070 3.2 + 3.3: a translating vSTE becomes a nested HWPT; the device's DMA goes through the guest's stage 1
// (VA -> GPA) and the host's stage 2 (GPA -> host memory), landing in the right guest page and nowhere else.
TEST_F(VirtualSmmuSim, DmaLandsInTheGuestPageStage1Names) {
  auto g = make({{"nic0", -1, kNic0}});
  ASSERT_TRUE(g);
  const std::uint64_t gpa = map_page(*g, kNic0, kAsid);
  const std::uint64_t other = must(g->alloc(0x1000));
  EXPECT_EQ(must(g->vsmmu().stream_status(kNic0)).state, StreamState::translate);

  const auto data = pattern(256, 3);
  auto r = must(host->dma_write("nic0.dma", kVa + 0x100, data));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::memcmp(g->bytes(gpa + 0x100, data.size()).data(), data.data(), data.size()), 0);
  for (std::byte b : g->bytes(gpa, 0x100)) ASSERT_EQ(b, std::byte{0});
  for (std::byte b : g->bytes(other, 0x1000)) ASSERT_EQ(b, std::byte{0});
}

// IHI 0070 4.4.2 (TLBI_NH_VA) + 4.7 (CMD_SYNC): after unmap + TLBI + SYNC the next DMA faults and the guest reads
// F_TRANSLATION with its vSID (7.3.12). Without the TLBI the stale TLB entry still translates: forwarding the
// guest's invalidation is what makes it right.
TEST_F(VirtualSmmuSim, UnmapWithTlbiFaultsWithTheVsidAndWithoutItTheTlbIsStale) {
  auto g = make({{"nic0", -1, kNic0}});
  ASSERT_TRUE(g);
  const std::uint64_t gpa = map_page(*g, kNic0, kAsid);
  const auto data = pattern(64, 1);
  ASSERT_TRUE(must(host->dma_write("nic0.dma", kVa, data)).ok());  // fills the TLB

  must(g->unmap(kAsid, kVa, 0x1000, /*invalidate=*/false));
  const auto data2 = pattern(64, 9);
  EXPECT_TRUE(must(host->dma_write("nic0.dma", kVa, data2)).ok()) << "no TLBI: the SMMU still uses its TLB entry";
  EXPECT_EQ(std::memcmp(g->bytes(gpa, 64).data(), data2.data(), 64), 0);

  const auto calls_before = g->vsmmu().stats().invalidate_calls;
  must(g->driver().issue(cmd_tlbi_nh_va(0, kAsid, kVa)));
  EXPECT_EQ(g->vsmmu().stats().invalidate_calls, calls_before + 1);
  auto r = must(host->dma_write("nic0.dma", kVa, data));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(std::memcmp(g->bytes(gpa, 64).data(), data2.data(), 64), 0) << "the faulting DMA moved nothing";
  auto ev = must(g->events());
  ASSERT_EQ(ev.records.size(), 1U);
  EXPECT_EQ(ev.records[0].get(Event::ID), EventId::F_TRANSLATION);
  EXPECT_EQ(ev.records[0].get(Event::SID), kNic0);
  EXPECT_EQ(ev.records[0].get(Event::InputAddr), kVa);
}

}  // namespace
}  // namespace vsmmu::nesting::test
