// A passthrough device's MSIs through the whole stack: the host maps the ITS doorbell at the SW MSI window
// 0x8000000 of the nest parent (drivers/iommu/iommufd/driver.c iommufd_sw_msi) and programs the device with
// address 0x8000040 (iommu_dma_compose_msi_msg), so the device's MSI is a DMA write that the guest's stage 1
// translates first. The guest keeps the window 1:1 because the VMM's IORT says so with an RMR node for its vSMMU's
// vSIDs (acpi/iort_build.cpp; Linux: iort_get_rmrs -> IOMMU_RESV_DIRECT -> iommu_create_device_direct_mappings);
// without it the MSI is an F_TRANSLATION the guest reads with the device's vSID.
#include "acpi/iort.hpp"
#include "acpi/iort_build.hpp"
#include "acpi/iort_rmr.hpp"
#include "tests/sim/nesting/nesting_fixture.hpp"

namespace vsmmu::nesting::test {
namespace {

using smmu::Event;
using smmu::EventId;

constexpr std::uint64_t kWindow = 0x8000000;      // MSI_IOVA_BASE of the host's arm-smmu-v3
constexpr std::uint64_t kWindowBytes = 0x100000;  // MSI_IOVA_LENGTH
constexpr std::uint64_t kMsiAddress = kWindow + 0x40;  // + GITS_TRANSLATER's offset in its page
constexpr std::uint32_t kNic0Sid = 0x0100;        // nic0's physical StreamID: the ITS's DeviceID
constexpr std::uint64_t kVsmmuBase = 0x9050000;   // where the VMM puts the vSMMU (the guest IORT's SMMUv3 base)

class MsiSim : public NestingSim {
 protected:
  void SetUp() override {
    NestingSim::SetUp();
    g = make({{"nic0", -1, kNic0}});
    ASSERT_TRUE(g);
  }
  std::unique_ptr<GuestHarness> g;
};

// (a) The window kept 1:1 at stage 1: the MSI reaches the doorbell with nic0's StreamID as DeviceID and the
// vector's EventID; the guest sees no event. Its data DMA goes on as before.
TEST_F(MsiSim, AGuestKeepingTheWindowIdentityMappedGetsItsDevicesMsisDelivered) {
  must(g->map(kAsid, kWindow, kWindow, kWindowBytes));
  const std::uint64_t gpa = map_page(*g, kNic0, kAsid);
  const auto msgs = must(host->enable_msi("nic0", 4));
  ASSERT_EQ(msgs.size(), 4U);
  EXPECT_EQ(msgs[2].address, kMsiAddress);
  EXPECT_EQ(msgs[2].data, 2U);

  auto out = must(host->raise_msi("nic0.dma", 2));
  EXPECT_TRUE(out.dma.ok());
  EXPECT_TRUE(out.delivered);
  EXPECT_EQ(host->msis_delivered(kNic0Sid, 2), 1U);
  EXPECT_EQ(host->msis_delivered(), 1U);
  EXPECT_TRUE(lands(*g, "nic0.dma", kVa, gpa, 9));
  EXPECT_TRUE(must(g->events()).records.empty());

  // The guest unmaps the window (with its TLBI): the next MSI faults at stage 1, and the guest reads it.
  must(g->unmap(kAsid, kWindow, kWindowBytes));
  EXPECT_FALSE(must(host->raise_msi("nic0.dma", 2)).delivered);
  EXPECT_EQ(host->msis_delivered(), 1U);
  const auto ev = must(g->events());
  ASSERT_EQ(ev.records.size(), 1U);
  EXPECT_EQ(ev.records[0].get(Event::ID), EventId::F_TRANSLATION);
  EXPECT_EQ(ev.records[0].get(Event::InputAddr), kMsiAddress);
}

// (b) A guest that does not map the window: the MSI is an F_TRANSLATION at stage 1 in the guest's event queue,
// with the device's vSID and the MSI address; nothing reaches the ITS.
TEST_F(MsiSim, WithoutTheWindowMappedTheMsiIsAStage1FaultTheGuestReads) {
  map_page(*g, kNic0, kAsid);
  must(host->enable_msi("nic0", 1));
  auto out = must(host->raise_msi("nic0.dma", 0));
  EXPECT_FALSE(out.delivered);
  EXPECT_FALSE(out.dma.ok());
  EXPECT_EQ(host->msis_delivered(), 0U);
  const auto ev = must(g->events());
  ASSERT_EQ(ev.records.size(), 1U);
  EXPECT_EQ(ev.records[0].get(Event::ID), EventId::F_TRANSLATION);
  EXPECT_EQ(ev.records[0].get(Event::SID), kNic0);
  EXPECT_FALSE(ev.records[0].get(Event::S2));
  EXPECT_FALSE(ev.records[0].get(Event::RnW));
  EXPECT_EQ(ev.records[0].get(Event::InputAddr), kMsiAddress);
}

// (c) The guest learns the window from the VMM's IORT: the RMR node for its vSMMU's vSIDs, read from the parsed
// table as Linux's iort_get_rmrs does, mapped 1:1 into the device's address space. Then (a) holds.
TEST_F(MsiSim, TheGuestMapsWhatTheIortRmrReservesAndTheMsiIsDelivered) {
  acpi::iort::GuestIort spec;
  spec.smmus = {acpi::iort::GuestSmmu{kVsmmuBase, 106, 107, 108, 109, true, {}}};
  // The guest sees nic0 at RID 0x0008 (00:01.0) with vSID kNic0 behind its vSMMU.
  spec.root_complexes = {acpi::iort::GuestRootComplex{0, {{0x0008, 1, kNic0, 0}}, true, false, 64}};
  // The VMM describes the window the host reports for the vSMMU's devices (Host::reserved_regions).
  for (const auto& w : g->vsmmu().msi_windows()) spec.msi_windows.push_back({w.window.start, w.window.size()});
  ASSERT_EQ(spec.msi_windows.size(), 1U);
  const auto bytes = acpi::iort::build_guest(spec);
  ASSERT_TRUE(bytes) << bytes.error();
  const auto report = acpi::iort::parse(*bytes);
  ASSERT_TRUE(report) << report.error();
  ASSERT_TRUE(report->valid());

  // The guest's boot: find its SMMUv3 node by base address, then the RMR regions of its device's StreamID.
  std::optional<std::uint32_t> smmu_node;
  for (const auto* n : report->table.of_type(acpi::iort::NodeType::smmu_v3))
    if (n->as<acpi::iort::SmmuV3>()->base == kVsmmuBase) smmu_node = n->offset;
  ASSERT_TRUE(smmu_node);
  const auto regions = acpi::iort::rmr_regions(report->table, *smmu_node, kNic0);
  ASSERT_EQ(regions.size(), 1U);
  EXPECT_EQ(regions[0].range, (acpi::iort::RmrRange{kWindow, kWindowBytes}));
  EXPECT_FALSE(regions[0].remap_permitted) << "IOMMU_RESV_DIRECT: the guest may not move it";
  for (const auto& r : regions) must(g->map(kAsid, r.range.base, r.range.base, r.range.length));
  map_page(*g, kNic0, kAsid);

  must(host->enable_msi("nic0", 1));
  EXPECT_TRUE(must(host->raise_msi("nic0.dma", 0)).delivered);
  EXPECT_EQ(host->msis_delivered(kNic0Sid, 0), 1U);
  EXPECT_TRUE(must(g->events()).records.empty());
}

// MSIs enabled before the guest set up its stream (the device's vSTE still aborts) go nowhere, and work once the
// guest's STE and window are in place: the doorbell page sits in the nest parent whatever the guest's vSTE.
TEST_F(MsiSim, MsisEnabledBeforeTheGuestsStreamIsUpWorkOnceItIs) {
  must(host->enable_msi("nic0", 1));
  EXPECT_FALSE(must(host->raise_msi("nic0.dma", 0)).delivered);
  must(g->map(kAsid, kWindow, kWindow, kWindowBytes));
  map_page(*g, kNic0, kAsid);
  EXPECT_TRUE(must(host->raise_msi("nic0.dma", 0)).delivered);
  EXPECT_EQ(host->msis_delivered(), 1U);
}

}  // namespace
}  // namespace vsmmu::nesting::test
