// Several devices behind one vSMMU, and several vSMMUs (one per physical SMMU) in one VM: what each guest
// driver sees stays its own, invalidations reach exactly what they name, and a vSMMU never spans physical SMMUs
// that would show the guest different ID registers.
#include "nesting/virtual_smmu.hpp"
#include "smmu/event.hpp"
#include "tests/sim/nesting/nesting_fixture.hpp"

namespace vsmmu::nesting::test {
namespace {

using namespace smmu;
using namespace smmu::driver;

constexpr std::uint64_t kRamGpa = 0x4000'0000;
constexpr std::uint64_t kHalf = 64ULL << 20;

class MultiDeviceSim : public NestingSim {};

// IHI 0070 4.4.3 (TLBI_NH_ASID): invalidates the TLB entries of one ASID only. nic0 and nic1 use separate
// address spaces (separate CD tables, ASIDs 1 and 2, both at the same VA): their vSTEs differ, so each has its
// own nested HWPT. After both unmap without invalidating, TLBI_NH_ASID(1) cuts nic0 off while nic1 keeps its
// (stale) translation: the ASID reached the host unchanged and nothing else was invalidated.
TEST_F(MultiDeviceSim, TlbiNhAsidLeavesTheOtherDevicesAsid) {
  auto g = make({{"nic0", -1, kNic0}, {"nic1", -1, kNic1}});
  ASSERT_TRUE(g);
  const std::uint64_t gpa0 = map_page(*g, kNic0, kAsidA);
  const std::uint64_t gpa1 = map_page(*g, kNic1, kAsidB);
  EXPECT_EQ(g->vsmmu().stats().hwpt_allocs, 2U);
  EXPECT_EQ(g->vsmmu().stats().hwpt_shared, 0U);

  ASSERT_TRUE(lands(*g, "nic0.dma", kVa, gpa0, 1));
  ASSERT_TRUE(lands(*g, "nic1.dma", kVa, gpa1, 2));

  must(g->unmap(kAsidA, kVa, kPage, false));
  must(g->unmap(kAsidB, kVa, kPage, false));
  must(g->driver().issue(cmd_tlbi_nh_asid(0, kAsidA)));
  EXPECT_FALSE(dma("nic0.dma", kVa, pattern(64, 3)));
  EXPECT_TRUE(lands(*g, "nic1.dma", kVa, gpa1, 4)) << "ASID 2's TLB entry survives TLBI_NH_ASID(1)";
  EXPECT_TRUE(holds(*g, gpa0, pattern(64, 1)));

  auto ev = must(g->events());
  ASSERT_EQ(ev.records.size(), 1U);
  EXPECT_EQ(ev.records[0].get(Event::SID), kNic0);
}

// arm_vsmmu_alloc_domain_nested (nested HWPT_ALLOC takes the vSTE;
// drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c): two streams with identical vSTEs - the guest points nic1's
// STE at nic0's CD table - are one nested HWPT on the host, shared, not two. nic1 then translates through nic0's
// address space, and keeps it when nic0 is switched to abort (the HWPT lives while a device uses it).
TEST_F(MultiDeviceSim, IdenticalVstesShareOneNestedHwpt) {
  auto g = make({{"nic0", -1, kNic0}, {"nic1", -1, kNic1}});
  ASSERT_TRUE(g);
  const std::uint64_t gpa = map_page(*g, kNic0, kAsidA);
  const auto before = g->vsmmu().stats();
  const auto objects = host->stats().objects;

  must(g->driver().install_ste(kNic1, guest_ste(*g, kNic0)));
  EXPECT_EQ(must(g->vsmmu().stream_status(kNic1)).state, StreamState::translate);
  EXPECT_EQ(g->vsmmu().stats().hwpt_allocs, before.hwpt_allocs);
  EXPECT_EQ(g->vsmmu().stats().hwpt_shared, before.hwpt_shared + 1);
  EXPECT_EQ(host->stats().objects, objects) << "no new host object for the second stream";

  const auto d = pattern(64, 7);
  EXPECT_TRUE(dma("nic1.dma", kVa, d));
  EXPECT_TRUE(holds(*g, gpa, d));

  must(g->driver().install_abort(kNic0));
  EXPECT_FALSE(dma("nic0.dma", kVa, d));
  const auto d2 = pattern(64, 8);
  EXPECT_TRUE(dma("nic1.dma", kVa, d2));
  EXPECT_TRUE(holds(*g, gpa, d2));
}

// A VM with two vSMMUs, one per physical SMMU (nic0 behind smmu0, gpu0 behind smmu1), in one guest RAM: each
// guest driver has its own stream table, queues and StreamID space (both use vSID 0x10), an invalidation
// through one vSMMU reaches only its own physical SMMU, and a fault is reported only to its own vSMMU.
TEST_F(MultiDeviceSim, TwoVsmmusOnTwoPhysicalSmmusWorkIndependently) {
  const GuestRamLayout layout{kRamGpa, 2 * kHalf};
  auto memory = must(GuestMemory::allocate(*host, std::span(&layout, 1)));
  ASSERT_TRUE(memory);
  GuestHarnessConfig a, b;
  a.vsmmu.name = "vsmmu0";
  a.devices = {{"nic0", -1, kNic0}};
  b.vsmmu = smmu1_config();
  b.vsmmu.name = "vsmmu1";
  b.devices = {{"gpu0", -1, kNic0}};
  auto ga = must(GuestHarness::create_in(*memory, kRamGpa, kHalf, a));
  auto gb = must(GuestHarness::create_in(*memory, kRamGpa + kHalf, kHalf, b));
  ASSERT_TRUE(ga && gb);

  const std::uint64_t gpa_a = map_page(*ga, kNic0, kAsid);
  const std::uint64_t gpa_b = map_page(*gb, kNic0, kAsid);
  ASSERT_TRUE(lands(*ga, "nic0.dma", kVa, gpa_a, 1));
  ASSERT_TRUE(lands(*gb, "gpu0.dma", kVa, gpa_b, 2));

  must(ga->unmap(kAsid, kVa, kPage, false));
  must(gb->unmap(kAsid, kVa, kPage, false));
  must(ga->driver().issue(cmd_tlbi_nh_all()));
  EXPECT_FALSE(dma("nic0.dma", kVa, pattern(64, 3)));
  EXPECT_TRUE(dma("gpu0.dma", kVa, pattern(64, 4))) << "vsmmu0's TLBI_NH_ALL must not reach smmu1";
  EXPECT_EQ(must(ga->events()).records.size(), 1U);
  EXPECT_TRUE(must(gb->events()).records.empty());
  must(gb->driver().issue(cmd_tlbi_nh_all()));
  EXPECT_FALSE(dma("gpu0.dma", kVa, pattern(64, 5)));
  EXPECT_EQ(must(gb->events()).records.size(), 1U);
}

// One vSMMU must show the guest one set of ID registers (IHI 0070 6.3.1-6.3.8); devices behind physical SMMUs
// that would give different ones cannot share it, and the refusal names the device and what differs. On the
// default hardware smmu1 cannot give what the guest already sees from smmu0, and the granules (which no wish
// can change) differ.
TEST_F(MultiDeviceSim, OneVsmmuSpanningDifferentSmmusIsRefused) {
  const GuestRamLayout layout{kRamGpa, kHalf};
  auto memory = must(GuestMemory::allocate(*host, std::span(&layout, 1)));
  ASSERT_TRUE(memory);
  const auto baseline = host->stats();
  auto v = VirtualSmmu::create(*memory, smmu1_config(), {{"nic0", -1, kNic0}, {"gpu0", -1, kGpu0}});
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().err, EINVAL);
  EXPECT_NE(v.error().message.find("gpu0"), std::string::npos) << v.error();
  EXPECT_NE(v.error().message.find("GRAN16K"), std::string::npos) << v.error();
  EXPECT_EQ(host->stats().objects, baseline.objects);
  EXPECT_EQ(host->stats().devices_bound, 0U);
}

// Two physical SMMUs that differ only in range invalidation (IDR3.RIL): one vSMMU over both is refused as it is,
// and accepted when the VMM's wishes ask for RIL = 0, which both can give. Then a TLBI reaches both vIOMMUs and
// a CFGI_CD only the one whose device it names.
TEST(SpanningVsmmu, WishesThatMakeTheRegistersEqualAllowIt) {
  auto host = make_host_with_hardware(twin_smmus_profile(true));
  ASSERT_TRUE(host);
  GuestHarnessConfig c;
  c.devices = {{"devA", -1, kNic0}, {"devB", -1, kNic1}};
  auto refused = GuestHarness::create(*host, c);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("devB"), std::string::npos) << refused.error();
  EXPECT_NE(refused.error().message.find("RIL"), std::string::npos) << refused.error();
  EXPECT_EQ(host->stats().objects, 0U);

  c.vsmmu.wishes.ril = false;
  auto g = must(GuestHarness::create(*host, c));
  ASSERT_TRUE(g);
  const std::uint64_t gpa = must(g->alloc(2 * kPage));
  must(g->map(kAsid, kVa, gpa, kPage));
  must(g->map(kAsid + 1, kVa, gpa + kPage, kPage));
  must(g->attach(kNic0, kAsid));
  must(g->attach(kNic1, kAsid + 1));
  const auto da = pattern(64, 1), db = pattern(64, 2);
  ASSERT_TRUE(must(host->dma_write("devA.dma", kVa, da)).ok());
  ASSERT_TRUE(must(host->dma_write("devB.dma", kVa, db)).ok());
  EXPECT_EQ(std::memcmp(g->bytes(gpa, 64).data(), da.data(), 64), 0);
  EXPECT_EQ(std::memcmp(g->bytes(gpa + kPage, 64).data(), db.data(), 64), 0);

  const auto calls = g->vsmmu().stats().invalidate_calls;
  const auto cmds_a = must(host->smmu_counters("smmuA")).commands;
  const auto cmds_b = must(host->smmu_counters("smmuB")).commands;
  must(g->driver().issue(cmd_tlbi_nh_all()));
  EXPECT_EQ(g->vsmmu().stats().invalidate_calls, calls + 2) << "one HWPT_INVALIDATE per vIOMMU";
  must(g->driver().issue(cmd_cfgi_cd(kNic1, 0)));
  EXPECT_EQ(g->vsmmu().stats().invalidate_calls, calls + 3) << "CFGI_CD goes to devB's vIOMMU only";
  EXPECT_EQ(must(host->smmu_counters("smmuA")).commands, cmds_a + 2);
  EXPECT_EQ(must(host->smmu_counters("smmuB")).commands, cmds_b + 4);
}

}  // namespace
}  // namespace vsmmu::nesting::test
