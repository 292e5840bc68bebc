// A passthrough device's MSIs on the simulated host, as Linux gives them to a VFIO device behind arm-smmu-v3:
// VFIO_DEVICE_SET_IRQS enables the vectors; iommu_dma_prepare_msi -> iommufd_sw_msi maps the GICv3 ITS's doorbell
// page (GITS_TRANSLATER, ITS base + 0x10040) into the device's domain - a nested HWPT's nest parent - at the SW MSI
// window MSI_IOVA_BASE 0x8000000 (drivers/iommu/iommufd/driver.c iommufd_sw_msi_install); the message address is
// that IOVA plus GITS_TRANSLATER's offset in its page (drivers/iommu/dma-iommu.c iommu_dma_compose_msi_msg), the
// data the vector's EventID. The device's MSI is a 4-byte DMA write: under nesting it goes through the guest's
// stage 1 (which must keep the window 1:1, as the guest's IORT RMR tells it) and then stage 2 to the doorbell,
// which counts it by DeviceID (the StreamID) and EventID (IHI 0069 12.19.4, GITS_TRANSLATER).
#include <poll.h>

#include "tests/sim/host/sim_fixture.hpp"

namespace vsmmu::host::sim::test {
namespace {

constexpr std::uint64_t kRamBytes = 64ULL << 20;
constexpr std::uint64_t kWindow = 0x8000000;        // MSI_IOVA_BASE
constexpr std::uint64_t kWindowBytes = 0x100000;    // MSI_IOVA_LENGTH
constexpr std::uint64_t kTranslater = 0x08090040;   // QEMU virt's ITS 0x08080000 + GITS_TRANSLATER 0x10040
constexpr std::uint64_t kMsiAddress = kWindow + 0x40;
constexpr std::uint32_t kNic0Sid = 0x0100;          // 0000:01:00.0, an identity IORT mapping
constexpr std::uint32_t kNic1Sid = 0x0200;

std::array<std::byte, 4> le32(std::uint32_t v) {
  std::array<std::byte, 4> b{};
  std::memcpy(b.data(), &v, 4);
  return b;
}

// The one event record the vEVENTQ holds now.
smmu::Event only_event(SimHost& host, int fd) {
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 1000), 1);
  VeventqReader reader(host, fd);
  auto recs = read_events(reader);
  EXPECT_EQ(recs.size(), 1U);
  smmu::Event ev;
  if (!recs.empty()) ev.dw = recs[0].evt;
  return ev;
}

class SimMsi : public ::testing::Test {
 protected:
  void SetUp() override {
    host = make_host();
    ASSERT_TRUE(host);
  }
  // nic0 nested behind a guest whose stage 1 is `guest` (its vSTE: `vste`).
  void nested(std::span<const std::byte> vste) {
    build_nested(*host, ram, vste, s);
    ASSERT_TRUE(s.attachment);
  }
  std::unique_ptr<SimHost> host;
  GuestRam ram{kRamBytes};
  GuestStage1 guest{ram};
  NestedSetup s;
};

TEST_F(SimMsi, TheDoorbellIsQemuVirtsGitsTranslaterByDefault) {
  EXPECT_EQ(host->its_translater(), kTranslater);
  EXPECT_EQ(host->hardware_profile().its_base, 0x08080000U);
}

// A profile's its_base moves the doorbell, and the composed address follows it within the window's page.
TEST_F(SimMsi, AProfilesItsBaseMovesTheDoorbell) {
  auto hw = must(embedded_hardware_profile("default"));
  hw.its_base = 0x0c000000;
  auto moved = must(SimHost::create(must(embedded_kernel_profile("upstream")), std::move(hw)));
  EXPECT_EQ(moved->its_translater(), 0x0c010040U);
  BoundDevice dev(*moved, must(moved->bind_device("nic0")));
  HostObject ioas(*moved, must(moved->ioas_alloc()));
  ASSERT_TRUE(moved->attach(dev.id(), ioas.id()));
  Attachment att(*moved, dev.id());
  EXPECT_EQ(must(moved->enable_msi("nic0", 1))[0], (MsiMessage{kMsiAddress, 0}));
  EXPECT_TRUE(must(moved->raise_msi("nic0.dma", 0)).delivered);
  EXPECT_EQ(moved->msis_delivered(kNic0Sid, 0), 1U);
}

// (a) The guest keeps the window 1:1 at stage 1 (what Linux does with an IORT RMR: IOMMU_RESV_DIRECT); the MSI
// goes VA 0x8000040 -> IPA 0x8000040 (stage 1) -> the doorbell (stage 2, the sw_msi page) and is delivered.
TEST_F(SimMsi, NestedDeviceWithTheWindowIdentityMappedDeliversItsMsi) {
  guest.map(kWindow, kWindow, kWindowBytes);
  nested(guest.vste());
  const auto before = host->stats().domain_mapped_bytes;

  auto msgs = must(host->enable_msi("nic0", 2));
  ASSERT_EQ(msgs.size(), 2U);
  EXPECT_EQ(msgs[0], (MsiMessage{kMsiAddress, 0}));
  EXPECT_EQ(msgs[1], (MsiMessage{kMsiAddress, 1}));
  // The doorbell page went into the nest parent's stage 2 (one 4 KiB page).
  EXPECT_EQ(host->stats().domain_mapped_bytes, before + 4096);

  auto out = must(host->raise_msi("nic0.dma", 1));
  EXPECT_TRUE(out.dma.ok());
  EXPECT_TRUE(out.delivered);
  EXPECT_EQ(out.message, msgs[1]);
  EXPECT_EQ(host->msis_delivered(kNic0Sid, 1), 1U);
  EXPECT_EQ(host->msis_delivered(kNic0Sid, 0), 0U);
  EXPECT_EQ(host->msis_delivered(), 1U);
  ASSERT_TRUE(must(host->raise_msi("nic0.dma", 0)).delivered);
  EXPECT_EQ(host->msis_delivered(kNic0Sid, 0), 1U);
  // Nothing faulted: the guest's event queue is empty.
  VeventqReader reader(*host, s.veventq.fd());
  EXPECT_TRUE(read_events(reader).empty());
}

// (b) Without the identity map the MSI faults at the guest's stage 1: not delivered, and the guest reads
// F_TRANSLATION with its vSID and the MSI address (arm_vmaster_report_event).
TEST_F(SimMsi, NestedDeviceWithoutTheWindowMappedFaultsAtStage1AndTheGuestSeesIt) {
  nested(guest.vste());
  must(host->enable_msi("nic0", 1));

  auto out = must(host->raise_msi("nic0.dma", 0));
  EXPECT_FALSE(out.delivered);
  ASSERT_FALSE(out.dma.ok());
  EXPECT_EQ(host->msis_delivered(), 0U);
  const smmu::Event ev = only_event(*host, s.veventq.fd());
  EXPECT_EQ(ev.get(smmu::Event::ID), smmu::EventId::F_TRANSLATION);
  EXPECT_EQ(ev.get(smmu::Event::SID), NestedSetup::kVsid);
  EXPECT_FALSE(ev.get(smmu::Event::S2));
  EXPECT_EQ(ev.get(smmu::Event::InputAddr), kMsiAddress);
  EXPECT_TRUE(ev.get(smmu::Event::RnW) == false);
}

// A guest that maps the window's IOVA to its RAM: the MSI write lands in that RAM, as it would on hardware,
// and is no interrupt.
TEST_F(SimMsi, AGuestMappingTheWindowToRamGetsTheWriteInRamAndNoInterrupt) {
  constexpr std::uint64_t kIpa = GuestRam::kBase + 0x30'0000;
  guest.map(kWindow, kIpa, 0x1000);
  nested(guest.vste());
  must(host->enable_msi("nic0", 4));
  std::memset(ram.at(kIpa + 0x40), 0xee, 8);

  auto out = must(host->raise_msi("nic0.dma", 3));
  EXPECT_TRUE(out.dma.ok());
  EXPECT_FALSE(out.delivered);
  EXPECT_EQ(host->msis_delivered(), 0U);
  const auto data = le32(3);
  EXPECT_EQ(std::memcmp(ram.at(kIpa + 0x40), data.data(), 4), 0) << "the EventID was written into guest RAM";
  EXPECT_EQ(*ram.at(kIpa + 0x44), std::byte{0xee}) << "only 4 bytes are written";
}

// (d) Stage 2 only (an IOAS attach), and a guest's bypass vSTE (the nest parent's stage 2 alone): the MSI
// address is the window's IOVA, which stage 2 sends to the doorbell.
TEST_F(SimMsi, Stage2OnlyAndGuestBypassDeliverDirectly) {
  BoundDevice dev(*host, must(host->bind_device("nic1")));
  HostObject ioas(*host, must(host->ioas_alloc()));
  ASSERT_EQ(must(host->ioas_map_file(ioas.id(), ram.fd.get(), 0, ram.size, GuestRam::kBase, kMapRW)), GuestRam::kBase);
  ASSERT_TRUE(host->attach(dev.id(), ioas.id()));
  Attachment att(*host, dev.id());
  EXPECT_EQ(must(host->enable_msi("nic1", 1))[0], (MsiMessage{kMsiAddress, 0}));
  auto out = must(host->raise_msi("nic1.dma", 0));
  EXPECT_TRUE(out.dma.ok());
  EXPECT_TRUE(out.delivered);
  EXPECT_EQ(host->msis_delivered(kNic1Sid, 0), 1U);

  const auto bypass = vste_config(smmu::StreamConfig::bypass);
  nested(bypass);
  must(host->enable_msi("nic0", 1));
  EXPECT_TRUE(must(host->raise_msi("nic0.dma", 0)).delivered);
  EXPECT_EQ(host->msis_delivered(kNic0Sid, 0), 1U);
  EXPECT_EQ(host->msis_delivered(), 2U);
}

// A device attached to nothing has no domain to map the doorbell into: its message names the doorbell's
// physical address, and its abort STE stops the write (no event: Config = abort).
TEST_F(SimMsi, AnUnattachedDeviceGetsThePhysicalDoorbellAndItsWriteIsAborted) {
  BoundDevice dev(*host, must(host->bind_device("nic0")));
  EXPECT_EQ(must(host->enable_msi("nic0", 1))[0], (MsiMessage{kTranslater, 0}));
  auto out = must(host->raise_msi("nic0.dma", 0));
  EXPECT_FALSE(out.delivered);
  ASSERT_FALSE(out.dma.ok());
  EXPECT_EQ(out.dma.fault->outcome, smmu::model::DmaOutcome::aborted);
  EXPECT_FALSE(out.dma.fault->event.has_value());
}

// (e) As in the kernel: disabling MSIs leaves the page in the domain (sw_msi pages leave with the domain); the
// device's next domain gets it too (iommufd_group_setup_msi); once the domains are gone and the device is bound
// afresh, a write to the MSI address faults at stage 2 and reaches no doorbell.
TEST_F(SimMsi, TheDoorbellPageLivesWithTheDomainAndFollowsTheDeviceUntilUnbound) {
  BoundDevice dev(*host, must(host->bind_device("nic0")));
  HostObject ioas(*host, must(host->ioas_alloc()));
  ASSERT_EQ(must(host->ioas_map_file(ioas.id(), ram.fd.get(), 0, ram.size, GuestRam::kBase, kMapRW)), GuestRam::kBase);
  HostObject p1(*host, must(host->hwpt_alloc(paging_request(dev.id(), ioas.id(), 0))));
  HostObject p2(*host, must(host->hwpt_alloc(paging_request(dev.id(), ioas.id(), 0))));
  ASSERT_TRUE(host->attach(dev.id(), p1.id()));
  must(host->enable_msi("nic0", 1));
  ASSERT_TRUE(must(host->raise_msi("nic0.dma", 0)).delivered);
  EXPECT_EQ(host->stats().domain_mapped_bytes, 2 * kRamBytes + 4096);

  // Off: the vector cannot be raised, but the page is still mapped (a stray write still reaches the ITS).
  ASSERT_TRUE(host->disable_msi("nic0"));
  EXPECT_EQ(err_of(host->raise_msi("nic0.dma", 0)), EINVAL);
  EXPECT_TRUE(must(host->msi_messages("nic0")).empty());
  const auto ev0 = le32(0);
  EXPECT_TRUE(must(host->dma_write("nic0.dma", kMsiAddress, ev0)).ok());
  EXPECT_EQ(host->msis_delivered(kNic0Sid, 0), 2U);

  // Replaced onto p2: the group still needs the page, so p2 gets it at attach.
  ASSERT_TRUE(host->attach(dev.id(), p2.id()));
  EXPECT_EQ(host->stats().domain_mapped_bytes, 2 * kRamBytes + 2 * 4096);
  EXPECT_TRUE(must(host->dma_write("nic0.dma", kMsiAddress, ev0)).ok());
  EXPECT_EQ(host->msis_delivered(kNic0Sid, 0), 3U);

  // While p1 still holds the page with no device attached (no SW MSI reservation), IOAS_MAP cannot put RAM there.
  ASSERT_TRUE(host->detach(dev.id()));
  EXPECT_EQ(err_of(host->ioas_map_file(ioas.id(), ram.fd.get(), 0, 0x1000, kWindow, kMapRW)), EEXIST);

  // The domains go, and with them the page.
  p1 = HostObject();
  p2 = HostObject();
  EXPECT_EQ(host->stats().domain_mapped_bytes, 0U);
  dev = BoundDevice();
  dev = BoundDevice(*host, must(host->bind_device("nic0")));
  HostObject p3(*host, must(host->hwpt_alloc(paging_request(dev.id(), ioas.id(), 0))));
  ASSERT_TRUE(host->attach(dev.id(), p3.id()));
  Attachment att(*host, dev.id());
  EXPECT_EQ(host->stats().domain_mapped_bytes, kRamBytes) << "a freshly bound device's new domain has no doorbell";
  auto r = must(host->dma_write("nic0.dma", kMsiAddress, ev0));
  ASSERT_FALSE(r.ok());
  ASSERT_TRUE(r.fault->event.has_value());
  EXPECT_EQ(r.fault->event->get(smmu::Event::ID), smmu::EventId::F_TRANSLATION);
  EXPECT_TRUE(r.fault->event->get(smmu::Event::S2));
  EXPECT_EQ(r.fault->event->get(smmu::Event::InputAddr), kMsiAddress);
  EXPECT_EQ(host->msis_delivered(), 3U);
}

// The ITS takes a 16- or 32-bit write at GITS_TRANSLATER as an MSI and ignores anything else in the frame.
TEST_F(SimMsi, OnlyA32Or16BitWriteAtGitsTranslaterIsAnMsi) {
  BoundDevice dev(*host, must(host->bind_device("nic0")));
  HostObject ioas(*host, must(host->ioas_alloc()));
  ASSERT_TRUE(host->attach(dev.id(), ioas.id()));
  Attachment att(*host, dev.id());
  must(host->enable_msi("nic0", 1));
  std::array<std::byte, 8> wide{std::byte{5}};
  EXPECT_TRUE(must(host->dma_write("nic0.dma", kMsiAddress, wide)).ok());   // 64-bit: WI
  EXPECT_TRUE(must(host->dma_write("nic0.dma", kWindow, le32(5))).ok());    // offset 0: WI
  EXPECT_EQ(host->msis_delivered(), 0U);
  std::array<std::byte, 4> back{std::byte{1}, std::byte{1}, std::byte{1}, std::byte{1}};
  EXPECT_TRUE(must(host->dma_read("nic0.dma", kMsiAddress, back)).ok());
  EXPECT_EQ(back, (std::array<std::byte, 4>{}));                            // the frame reads as zero
  std::array<std::byte, 2> half{std::byte{0x34}, std::byte{0x12}};
  EXPECT_TRUE(must(host->dma_write("nic0.dma", kMsiAddress, half)).ok());
  EXPECT_EQ(host->msis_delivered(kNic0Sid, 0x1234), 1U);
}

TEST_F(SimMsi, EnableAndRaiseRefuseWhatVfioWouldRefuse) {
  EXPECT_EQ(err_of(host->enable_msi("nic0", 1)), EINVAL) << "not bound";
  EXPECT_EQ(err_of(host->enable_msi("nic9", 1)), ENOENT);
  BoundDevice dev(*host, must(host->bind_device("nic0")));
  EXPECT_EQ(err_of(host->enable_msi("nic0", 0)), EINVAL);
  EXPECT_EQ(err_of(host->enable_msi("nic0", 33)), EINVAL);
  EXPECT_EQ(err_of(host->raise_msi("nic0.dma", 0)), EINVAL) << "MSIs off";
  must(host->enable_msi("nic0", 32));
  EXPECT_EQ(err_of(host->enable_msi("nic0", 2)), EINVAL) << "already enabled";
  EXPECT_EQ(err_of(host->raise_msi("nic0.dma", 32)), EINVAL) << "vector 32 of 32";
  EXPECT_EQ(err_of(host->raise_msi("nope.dma", 0)), ENOENT);
  // Unbinding forgets the device's MSIs.
  dev = BoundDevice();
  dev = BoundDevice(*host, must(host->bind_device("nic0")));
  EXPECT_TRUE(must(host->msi_messages("nic0")).empty());
}

// The attach rule stays: an IOAS that maps RAM over the window cannot take a device (EADDRINUSE).
TEST_F(SimMsi, AnIoasMappingRamOverTheWindowStillRefusesTheAttach) {
  BoundDevice dev(*host, must(host->bind_device("nic0")));
  HostObject ioas(*host, must(host->ioas_alloc()));
  ASSERT_EQ(must(host->ioas_map_file(ioas.id(), ram.fd.get(), 0, 0x200000, kWindow, kMapRW)), kWindow);
  EXPECT_EQ(err_of(host->attach(dev.id(), ioas.id())), EADDRINUSE);
}

}  // namespace
}  // namespace vsmmu::host::sim::test
