// The host's software MSI window (IOMMU_RESV_SW_MSI; drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c
// arm_smmu_get_resv_regions, MSI_IOVA_BASE 0x8000000, MSI_IOVA_LENGTH 1 MiB) as the VMM and the guest meet it
// under nesting (docs/interrupts.md): the vSMMU reports each device's window, guest RAM may not overlap one,
// and a device whose DMA faults in the guest's stage 1 inside its window - its MSIs, unmapped because the
// guest ignored the IORT RMR / DT reserved-memory node - gets the guest its event record and the VMM one notice.
#include <sys/mman.h>

#include "host/reserved_regions.hpp"
#include "nesting/virtual_smmu.hpp"
#include "smmu/event.hpp"
#include "tests/sim/nesting/nesting_fixture.hpp"

namespace vsmmu::nesting::test {
namespace {

using namespace smmu;

constexpr std::uint64_t kMsiBase = host::kArmSmmuV3SwMsi.start;
constexpr std::uint64_t kInWindow = kMsiBase + 0x40;  // where the host's ITS doorbell IOVA would be

bool mentions(const std::string& s, std::initializer_list<const char*> words) {
  bool all = true;
  for (const char* w : words)
    if (s.find(w) == std::string::npos) {
      ADD_FAILURE() << "\"" << w << "\" missing in: " << s;
      all = false;
    }
  return all;
}

// Anonymous memory for a RAM region the tests try to add (refused before anything maps it, or mapped).
struct Anon {
  explicit Anon(std::size_t n) : size(n), p(::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) {}
  ~Anon() { ::munmap(p, size); }
  std::byte* bytes() const { return static_cast<std::byte*>(p); }
  std::size_t size;
  void* p;
};

class MsiWindowSim : public NestingSim {};

// The VMM learns each device's window from the vSMMU; devices behind different physical SMMUs may have
// different ones (the profile moves smmuB's).
TEST_F(MsiWindowSim, TheVmmSeesEachDevicesWindowPerPhysicalSmmu) {
  host = make_host_with_hardware(R"({
    "kind": "hardware", "name": "two-windows",
    "smmus": [ { "name": "smmuA", "s2fwb": true },
               { "name": "smmuB", "s2fwb": true, "msi_window": ["0x9000000", "0x10000"] } ],
    "root_complexes": [ { "name": "pcieA", "smmu": "smmuA", "segment": 0 },
                        { "name": "pcieB", "smmu": "smmuB", "segment": 1 } ],
    "devices": [ { "name": "devA", "bdf": "0000:01:00.0", "root_complex": "pcieA" },
                 { "name": "devB", "bdf": "0001:01:00.0", "root_complex": "pcieB" } ]
  })");
  ASSERT_TRUE(host);
  auto g = make({{"devA", -1, 0x1}, {"devB", -1, 0x2}});
  ASSERT_TRUE(g);
  const auto w = g->vsmmu().msi_windows();
  ASSERT_EQ(w.size(), 2U);
  EXPECT_EQ(w[0].vsid, 0x1U);
  EXPECT_EQ(w[0].device, "devA");
  EXPECT_EQ(w[0].window, host::kArmSmmuV3SwMsi);
  EXPECT_EQ(w[1].vsid, 0x2U);
  EXPECT_EQ(w[1].window, (host::IovaRange{0x9000000, 0x900ffff}));
  // The guest RAM's owner sees the same windows, each with its device.
  const auto held = g->memory().msi_windows();
  ASSERT_EQ(held.size(), 2U);
  mentions(held[1].owner, {"devB", "vSID 0x2"});
  must(g->vsmmu().remove_device(0x2));
  EXPECT_EQ(g->vsmmu().msi_windows().size(), 1U);
  EXPECT_EQ(g->memory().msi_windows().size(), 1U) << "a removed device's window is released";
}

// Guest RAM over a bound device's window could be mapped neither in the IOAS (the host reserves the window
// there: iopt_table_enforce_dev_resv_regions) nor 1:1 in the guest's stage 1: ADD_REGION is refused with
// EADDRINUSE, naming both ranges, and nothing is mapped.
TEST_F(MsiWindowSim, RamOverABoundDevicesWindowIsRefused) {
  auto g = make({{"nic0", -1, kNic0}});
  ASSERT_TRUE(g);
  const auto before = host->stats();
  const auto regions = g->memory().regions().size();
  Anon ram(0x200000);
  auto r = g->memory().add_region({kMsiBase - 0x100000, ram.size, -1, 0, ram.bytes()});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EADDRINUSE);
  mentions(r.error().message, {"guest RAM 0x7f00000-0x80fffff", "MSI window 0x8000000-0x80fffff", "nic0",
                               "vSID 0x10", "IOMMU_RESV_SW_MSI", "move the RAM"});
  EXPECT_EQ(g->memory().regions().size(), regions);
  EXPECT_EQ(host->stats().ioas_areas, before.ioas_areas);
  EXPECT_EQ(host->stats().pinned_bytes, before.pinned_bytes);
  // Next to the window, RAM is fine.
  must(g->memory().add_region({host::kArmSmmuV3SwMsi.last + 1, ram.size, -1, 0, ram.bytes()}));
  must(g->memory().remove_region(host::kArmSmmuV3SwMsi.last + 1));
}

// The other order: a device whose window falls in existing guest RAM cannot join, and the refusal leaves the
// host as it was (the device unbound, no vIOMMU).
TEST_F(MsiWindowSim, ADeviceWhoseWindowOverlapsRamCannotJoin) {
  const auto empty = host->stats();
  const GuestRamLayout layout[] = {{0x7e00000, 0x400000}};  // 0x7e00000-0x81fffff covers the window
  auto memory = must(GuestMemory::allocate(*host, layout));
  ASSERT_TRUE(memory);
  const auto with_ram = host->stats();
  auto v = VirtualSmmu::create(*memory, {}, {{"nic0", -1, kNic0}});
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().err, EADDRINUSE);
  mentions(v.error().message, {"guest RAM 0x7e00000-0x81fffff", "MSI window 0x8000000-0x80fffff", "nic0"});
  EXPECT_EQ(host->stats().objects, with_ram.objects);
  EXPECT_EQ(host->stats().devices_bound, 0U);
  EXPECT_TRUE(memory->msi_windows().empty());
  memory.reset();
  EXPECT_EQ(host->stats().objects, empty.objects);
}

// The guest's stage 1 maps its buffer but not the window: the device's MSI writes (here a DMA at an IOVA in the
// window, as the host programs the MSI address) fault in stage 1. The guest reads its F_TRANSLATION records
// (IHI 0070 7.3.12) with the address; the VMM gets one notice for the device however many faults follow, and
// each is counted.
TEST_F(MsiWindowSim, AStage1FaultInTheWindowTellsTheVmmOnce) {
  auto g = make({{"nic0", -1, kNic0}});
  ASSERT_TRUE(g);
  std::vector<Notice> notices;
  g->vsmmu().set_notice_handler([&](const Notice& n) { notices.push_back(n); });
  map_page(*g, kNic0, kAsid);
  // A fault elsewhere is the guest's business alone.
  EXPECT_FALSE(dma("nic0.dma", kVa + 8 * kPage, pattern(4, 1)));
  auto ev = must(g->events());
  ASSERT_EQ(ev.records.size(), 1U);
  EXPECT_TRUE(notices.empty());

  EXPECT_FALSE(dma("nic0.dma", kInWindow, pattern(4, 2)));
  EXPECT_FALSE(dma("nic0.dma", kInWindow, pattern(4, 3)));
  ev = must(g->events());
  ASSERT_EQ(ev.records.size(), 2U);
  for (const auto& e : ev.records) {
    EXPECT_EQ(e.get(Event::ID), EventId::F_TRANSLATION);
    EXPECT_EQ(e.get(Event::SID), kNic0);
    EXPECT_EQ(e.get(Event::InputAddr), kInWindow);
    EXPECT_FALSE(e.get(Event::S2));
  }
  ASSERT_EQ(notices.size(), 1U);
  EXPECT_EQ(notices[0].kind, NoticeKind::msi_window_fault);
  EXPECT_EQ(notices[0].vsid, kNic0);
  mentions(notices[0].text, {"nic0", "vSID 0x10", "0x8000040", "MSI window 0x8000000-0x80fffff", "IORT RMR",
                        "reserved-memory", "iommu-addresses", "vsmmu iort gen"});
  EXPECT_EQ(g->vsmmu().stats().msi_window_faults, 2U);
}

// A guest that honoured the RMR maps the window 1:1 in its stage 1: no stage-1 fault there, no notice (where the
// write goes next is the host's stage 2).
TEST_F(MsiWindowSim, AWindowMappedOneToOneRaisesNoNotice) {
  auto g = make({{"nic0", -1, kNic0}});
  ASSERT_TRUE(g);
  std::vector<Notice> notices;
  g->vsmmu().set_notice_handler([&](const Notice& n) { notices.push_back(n); });
  must(g->map(kAsid, kMsiBase, kMsiBase, host::kArmSmmuV3SwMsi.size()));
  must(g->attach(kNic0, kAsid));
  (void)host->dma_write("nic0.dma", kInWindow, pattern(4, 2));
  const auto ev = must(g->events());
  for (const auto& e : ev.records) EXPECT_TRUE(e.get(Event::S2) || e.get(Event::InputAddr) != kInWindow);
  EXPECT_TRUE(notices.empty());
  EXPECT_EQ(g->vsmmu().stats().msi_window_faults, 0U);
}

}  // namespace
}  // namespace vsmmu::nesting::test
