// End to end on the simulated host: a memfd is guest RAM, mapped into the IOAS with IOMMU_IOAS_MAP_FILE; the guest's
// CD and stage-1 tables live in that memfd; a nested HWPT from the guest's vSTE is attached; a simulated device's
// DMA goes through stage 1 and stage 2 and its bytes appear in the memfd at the offset the two stages name. An
// unmapped stage-1 page keeps working from the TLB until the guest's TLBI_NH_VA goes through IOMMU_HWPT_INVALIDATE
// (VMID rewritten by the kernel); then the DMA faults and the guest's vEVENTQ gets F_TRANSLATION with its vSID
// (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c: arm_vsmmu_convert_user_cmd, arm_vmaster_report_event).
#include <poll.h>

#include <atomic>
#include <thread>

#include "tests/sim/host/sim_fixture.hpp"

namespace vsmmu::host::sim::test {
namespace {

constexpr std::uint64_t kRamBytes = 64ULL << 20;
constexpr std::uint64_t kVa = 0x10'0000'0000;                     // the device's IOVA (a guest VA)
constexpr std::uint64_t kIpa = GuestRam::kBase + 0x20'0000;       // where stage 1 sends it

// The guest maps kVa -> kIpa (two pages) at stage 1; nic0 is attached to its nested HWPT.
class SimEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    host = make_host();
    ASSERT_TRUE(host);
    guest.map(kVa, kIpa, 0x2000);
    vste = guest.vste();
    build_nested(*host, ram, vste, s);
    ASSERT_TRUE(s.attachment);
  }
  std::unique_ptr<SimHost> host;
  GuestRam ram{kRamBytes};
  GuestStage1 guest{ram};
  std::array<std::byte, 16> vste{};
  NestedSetup s;
};

TEST_F(SimEndToEnd, DmaThroughBothStagesLandsInTheMemfdAndTlbiMakesAnUnmappedPageFault) {

  // The physical STE: the guest's stage 1 over the parent's stage 2 (arm_smmu_make_nested_cd_table_ste).
  auto ste = must(host->physical_ste("nic0"));
  EXPECT_EQ(ste.get(smmu::Ste::Config), smmu::StreamConfig::nested);
  EXPECT_EQ(ste.get(smmu::Ste::S1ContextPtr), guest.cd_ipa);
  EXPECT_TRUE(ste.get(smmu::Ste::MEV));
  EXPECT_TRUE(ste.get(smmu::Ste::S2FWB));  // smmu0 has S2FWB and this is a nest parent

  // DMA through VA -> IPA (stage 1, the guest's) -> PA (stage 2, the IOAS's) -> the memfd.
  std::array<std::byte, 64> data{};
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::byte(static_cast<std::uint8_t>(0xa0 + i));
  auto r = must(host->dma_write("nic0.dma", kVa + 0x1010, data));
  ASSERT_TRUE(r.ok()) << static_cast<int>(r.fault->outcome);
  EXPECT_EQ(r.bytes, data.size());
  std::array<std::byte, 64> seen{};
  ASSERT_EQ(::pread(ram.fd.get(), seen.data(), seen.size(), static_cast<off_t>(kIpa + 0x1010 - GuestRam::kBase)), 64);
  EXPECT_EQ(seen, data);
  // And back: the device reads what the VMM writes into the memfd.
  std::memset(ram.at(kIpa + 0x1800), 0x5a, 16);
  std::array<std::byte, 16> back{};
  ASSERT_TRUE(must(host->dma_read("nic0.dma", kVa + 0x1800, back)).ok());
  for (auto b : back) EXPECT_EQ(b, std::byte{0x5a});

  // The guest unmaps the second page. Without an invalidation the SMMU's TLB still translates it.
  ASSERT_TRUE(guest.tables.unmap(kVa + 0x1000, 0x1000));
  EXPECT_TRUE(must(host->dma_write("nic0.dma", kVa + 0x1020, std::span(data).first(8))).ok())
      << "the TLB should still hold the page: the model caches translations until a TLBI";

  // The guest's TLBI_NH_VA through the vIOMMU: the kernel puts the vIOMMU's VMID in, the SMMU drops the entry.
  const std::array cmds{tlbi_nh_va(GuestStage1::kAsid, kVa + 0x1000)};
  auto out = invalidate(*host, s.viommu.id(), cmds);
  ASSERT_FALSE(out.error) << *out.error;
  EXPECT_EQ(out.handled, 1U);

  r = must(host->dma_write("nic0.dma", kVa + 0x1030, std::span(data).first(8)));
  ASSERT_FALSE(r.ok()) << "after TLBI_NH_VA the unmapped page must fault";
  EXPECT_EQ(r.bytes, 0U);
  // The first page is still mapped and still works.
  EXPECT_TRUE(must(host->dma_write("nic0.dma", kVa + 0x40, std::span(data).first(8))).ok());

  // The fault reached the guest's vEVENTQ as F_TRANSLATION, stage 1, with the vSID and the VA.
  pollfd p{s.veventq.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 1000), 1);
  VeventqReader reader(*host, s.veventq.fd());
  auto recs = read_events(reader);
  ASSERT_EQ(recs.size(), 1U);
  EXPECT_EQ(recs[0].kind, VeventqRecord::Kind::event);
  EXPECT_EQ(recs[0].sequence, 0U);
  smmu::Event ev;
  ev.dw = recs[0].evt;
  EXPECT_EQ(ev.get(smmu::Event::ID), smmu::EventId::F_TRANSLATION);
  EXPECT_EQ(ev.get(smmu::Event::SID), NestedSetup::kVsid);
  EXPECT_FALSE(ev.get(smmu::Event::S2));
  EXPECT_EQ(ev.get(smmu::Event::InputAddr), kVa + 0x1030);
}

TEST_F(SimEndToEnd, UnmappingTheIoasMakesTheDeviceFaultAtStage2AndNothingIsForwarded) {

  std::array<std::byte, 8> data{std::byte{1}};
  ASSERT_TRUE(must(host->dma_write("nic0.dma", kVa, data)).ok());
  // IOMMU_IOAS_UNMAP removes the stage-2 leaves and invalidates (TLBI_S2_IPA + TLBI_NH_ALL for a nest
  // parent): nothing stale survives, the next DMA faults.
  EXPECT_EQ(must(host->ioas_unmap(s.ioas.id(), 0, ~0ULL)), kRamBytes);
  auto r = must(host->dma_write("nic0.dma", kVa, data));
  EXPECT_FALSE(r.ok());
  // A stage-2 fault (or the CD fetch through stage 2) is the host's, not the guest's: not forwarded.
  VeventqReader reader(*host, s.veventq.fd());
  EXPECT_TRUE(read_events(reader).empty());
  EXPECT_GE(host->stats().events_unhandled, 1U);
  EXPECT_EQ(host->stats().pinned_bytes, 0U);
}

// The simulated host is guarded by one lock: a device may DMA from its own thread while the VMM's thread maps,
// unmaps and invalidates. Mappings the device uses stay valid throughout and every DMA through them lands.
TEST_F(SimEndToEnd, DeviceDmaFromAnotherThreadWhileTheHostChangesOtherMappings) {
  GuestRam other(1 << 20);

  constexpr int kRounds = 300;
  std::atomic<int> landed{0};
  std::thread device([&] {
    for (int i = 0; i < kRounds; ++i) {
      const std::array<std::byte, 8> data{std::byte(static_cast<std::uint8_t>(i))};
      auto r = host->dma_write("nic0.dma", kVa + 8 * (i % 64), data);
      if (r && r->ok()) ++landed;
      std::array<std::byte, 8> sink{};
      (void)host->dma_read("nic0.dma", kVa + 0x10'0000, sink);  // unmapped at stage 1: a fault and an event
    }
  });
  const std::array tlbi{op(smmu::Opcode::TLBI_NH_ASID).set(smmu::Command::ASID, 99)};
  for (int i = 0; i < kRounds; ++i) {
    ASSERT_TRUE(host->ioas_map_file(s.ioas.id(), other.fd.get(), 0, other.size, 0x2'0000'0000, kMapRW));
    EXPECT_FALSE(invalidate(*host, s.viommu.id(), tlbi).error);
    ASSERT_EQ(must(host->ioas_unmap(s.ioas.id(), 0x2'0000'0000, other.size)), other.size);
  }
  device.join();
  EXPECT_EQ(landed.load(), kRounds);
  EXPECT_EQ(*ram.at(kIpa + 8 * ((kRounds - 1) % 64)), std::byte(static_cast<std::uint8_t>(kRounds - 1)));
}

}  // namespace
}  // namespace vsmmu::host::sim::test
