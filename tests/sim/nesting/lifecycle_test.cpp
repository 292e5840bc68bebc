// Creation, refusal, hot-plug and teardown of a vSMMU, with host failures injected at every step
// (SimHost::set_fail_nth, as the iommufd selftests' fail_nth): a refusal names its reason, a failure leaves no
// host object behind, and a failure the guest cannot be told about as an error gets the architectural answer.
#include "nesting/virtual_smmu.hpp"
#include "smmu/event.hpp"
#include "tests/sim/nesting/nesting_fixture.hpp"

namespace vsmmu::nesting::test {
namespace {

using namespace smmu;
using namespace smmu::driver;

constexpr std::uint64_t kRamGpa = 0x4000'0000;
constexpr unsigned kMaxSteps = 200;  // far more host calls than any path below makes

class LifecycleSim : public NestingSim {
 protected:
  std::unique_ptr<GuestMemory> guest_ram() {
    const GuestRamLayout layout{kRamGpa, 16ULL << 20};
    return must(GuestMemory::allocate(*host, std::span(&layout, 1)));
  }
  // Nothing of the VM is left on the host: no object, mapping, stage-2 table, translating STE or queue fd.
  void expect_host_empty() { EXPECT_EQ(host->stats().held(), ""); }
};

// arm_smmu_get_viommu_size (VIOMMU_ALLOC needs S2FWB or a CANWBS root complex;
// drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c): nvme0 sits behind smmu1 (no S2FWB) on pcie2 (no CANWBS), so
// a guest-owned stage 1 could make its DMA non-coherent. The vSMMU is refused with an error naming the device, its
// root complex and both missing properties, alone or next to a device that could nest, and nothing it made on the
// host outlives the refusal.
TEST_F(LifecycleSim, DeviceWithoutS2fwbOrCanwbsIsRefusedAndNothingLeaks) {
  for (const auto& devices : {std::vector<DeviceSpec>{{"nvme0", -1, kNic0}},
                              std::vector<DeviceSpec>{{"gpu0", -1, kGpu0}, {"nvme0", -1, kNic0}}}) {
    SCOPED_TRACE(devices.size());
    {
      auto memory = guest_ram();
      ASSERT_TRUE(memory);
      const auto baseline = host->stats();
      auto v = VirtualSmmu::create(*memory, smmu1_config(), devices);
      ASSERT_FALSE(v);
      EXPECT_EQ(v.error().err, EOPNOTSUPP);
      for (const char* word : {"nvme0", "pcie2", "S2FWB", "CANWBS"})
        EXPECT_NE(v.error().message.find(word), std::string::npos) << word << " in: " << v.error();
      EXPECT_EQ(host->stats().objects, baseline.objects) << "only the guest RAM's IOAS remains";
      EXPECT_EQ(host->stats().devices_bound, 0U);
    }
    expect_host_empty();
  }
}

// A working VM torn down - two devices translating, events enabled, a fault queued - leaves the host exactly as
// it found it (design: "When a client disconnects ... every host object is destroyed: nothing leaks").
TEST_F(LifecycleSim, DestroyingAWorkingVsmmuLeavesNothing) {
  {
    auto g = make({{"nic0", -1, kNic0}, {"nic1", -1, kNic1}});
    ASSERT_TRUE(g);
    map_page(*g, kNic0, kAsid);
    map_page(*g, kNic1, kAsid + 1, kVa + kPage);
    ASSERT_TRUE(dma("nic0.dma", kVa, pattern(16, 1)));
    ASSERT_FALSE(dma("nic1.dma", kVa, pattern(16, 1)));  // a fault waiting in the vEVENTQ
    EXPECT_EQ(host->stats().translating_stes, 2U);
    EXPECT_GT(g->vsmmu().host_objects(), 0U);
  }
  expect_host_empty();
}

// fail_nth over VirtualSmmu::create: whichever host call fails, create fails with that call's error and the host
// holds what it held before (the guest RAM's IOAS). Past the last call, create succeeds.
TEST_F(LifecycleSim, EveryHostFailureDuringCreateIsCleanlyRefused) {
  auto memory = guest_ram();
  ASSERT_TRUE(memory);
  const auto baseline = host->stats();
  unsigned n = 1;
  for (; n < kMaxSteps; ++n) {
    host->set_fail_nth(n);
    auto v = VirtualSmmu::create(*memory, {}, {{"nic0", -1, kNic0}, {"nic1", -1, kNic1}});
    const bool fired = host->fail_nth_fired();
    host->set_fail_nth(0);
    if (!fired) {
      ASSERT_TRUE(v) << v.error();
      break;
    }
    ASSERT_FALSE(v) << "n = " << n << ": an injected failure was swallowed";
    EXPECT_EQ(v.error().err, ENOMEM) << v.error();
    EXPECT_NE(v.error().message.find("injected"), std::string::npos) << v.error();
    EXPECT_EQ(host->stats().objects, baseline.objects) << "n = " << n << ": " << v.error();
    EXPECT_EQ(host->stats().devices_bound, 0U) << "n = " << n;
  }
  EXPECT_GT(n, 5U) << "create makes more host calls than that";
}

// fail_nth over GuestHarness::create (guest RAM, vSMMU, and the guest driver's reset: CFGI_ALL, TLBI, EVENTQEN,
// SMMUEN). A failure in the VMM's own calls fails create cleanly. A failure behind a guest register write cannot
// fail the write; the guest gets what hardware would give instead: a device left blocking DMA until its next
// STE invalidation, or GERROR.EVTQ_ABT_ERR when its event queue has no host vEVENTQ behind it (IHI 0070 7.5).
// Either way the guest can then attach both devices and DMA, and teardown leaves nothing.
TEST_F(LifecycleSim, EveryHostFailureDuringHarnessCreateIsCleanOrArchitectural) {
  GuestHarnessConfig c;
  c.devices = {{"nic0", -1, kNic0}, {"nic1", -1, kNic1}};
  unsigned n = 1;
  for (bool done = false; !done && n < kMaxSteps; ++n) {
    SCOPED_TRACE(n);
    {
      host->set_fail_nth(n);
      auto g = GuestHarness::create(*host, c);
      const bool fired = host->fail_nth_fired();
      host->set_fail_nth(0);
      done = !fired;
      if (!g) {
        EXPECT_TRUE(fired) << g.error();
        EXPECT_FALSE(g.error().message.empty());
      } else {
        // event_fds(): the vEVENTQs, then the command-queue work fd, which is always there.
        const bool has_veventq = (*g)->vsmmu().event_fds().size() > 1;
        const bool evtq_abt = must((*g)->driver().active_global_errors()).get(Gerror::EVTQ_ABT_ERR);
        EXPECT_NE(has_veventq, evtq_abt) << "no vEVENTQ must show as EVTQ_ABT_ERR, and only then";
        map_page(**g, kNic0, kAsid);
        map_page(**g, kNic1, kAsid + 1, kVa + kPage);
        EXPECT_TRUE(dma("nic0.dma", kVa, pattern(16, 1)));
        EXPECT_TRUE(dma("nic1.dma", kVa + kPage, pattern(16, 1)));
      }
    }
    expect_host_empty();
  }
  EXPECT_LT(n, kMaxSteps);
}

// fail_nth over what a guest's CFGI_STE makes the vSMMU do for a translating vSTE (IOMMU_HWPT_ALLOC of the
// nested HWPT, then the attach): the guest cannot be handed an errno, so it gets what an SMMU gives for an STE
// it cannot use - C_BAD_STE with the vSID (IHI 0070 7.3.5), the stream aborting - and no host object is left
// for it. Past the last call the stream translates.
TEST_F(LifecycleSim, HostFailureBehindCfgiSteIsCBadSte) {
  auto g = make({{"nic0", -1, kNic0}});
  ASSERT_TRUE(g);
  const std::uint64_t gpa = must(g->alloc(kPage));
  must(g->map(kAsid, kVa, gpa, kPage));
  auto& drv = g->driver();
  const auto table = must(drv.create_cd_table(kNic0, 0));
  must(drv.write_cd(kNic0, 0, s1_cd(*must(g->address_space(kAsid)), kAsid, drv.features())));
  const Ste translate = cdtable_ste(table, drv.features());
  unsigned n = 1;
  for (; n < kMaxSteps; ++n) {
    SCOPED_TRACE(n);
    must(drv.install_abort(kNic0));
    ASSERT_TRUE(must(g->events()).records.empty());
    const auto objects = host->stats().objects;
    must(drv.write_ste(kNic0, translate));
    host->set_fail_nth(n);
    must(drv.issue(cmd_cfgi_ste(kNic0)));
    const bool fired = host->fail_nth_fired();
    host->set_fail_nth(0);
    if (!fired) {
      EXPECT_EQ(must(g->vsmmu().stream_status(kNic0)).state, StreamState::translate);
      EXPECT_TRUE(dma("nic0.dma", kVa, pattern(16, 1)));
      break;
    }
    const std::string problem = expect_c_bad_ste(*g, kNic0);
    EXPECT_NE(problem.find("injected"), std::string::npos) << problem;
    EXPECT_FALSE(dma("nic0.dma", kVa, pattern(16, 1)));
    EXPECT_EQ(host->stats().objects, objects) << "no nested HWPT left for a stream that aborts";
  }
  EXPECT_EQ(n, 3U) << "HWPT_ALLOC and the attach";
}

// Hot-plug of a device behind a second physical SMMU (a new vIOMMU, nest parent, abort/bypass HWPTs, vDEVICE)
// with a host failure at each step: add_device fails and the vSMMU holds exactly what it held before; removing
// the device again releases its physical SMMU's objects too.
TEST(HotPlugFailNth, AFailedHotPlugLeavesTheVsmmuAsItWas) {
  auto host = make_host_with_hardware(twin_smmus_profile(false));
  ASSERT_TRUE(host);
  GuestHarnessConfig c;
  c.devices = {{"devA", -1, kNic0}};
  auto g = must(GuestHarness::create(*host, c));
  ASSERT_TRUE(g);
  const auto objects = host->stats().objects;
  const auto held = g->vsmmu().host_objects();
  unsigned n = 1;
  for (; n < kMaxSteps; ++n) {
    host->set_fail_nth(n);
    auto r = g->vsmmu().add_device({"devB", -1, kNic1});
    const bool fired = host->fail_nth_fired();
    host->set_fail_nth(0);
    if (!fired) {
      ASSERT_TRUE(r) << r.error();
      break;
    }
    ASSERT_FALSE(r) << "n = " << n;
    EXPECT_EQ(g->vsmmu().host_objects(), held) << "n = " << n << ": " << r.error();
    EXPECT_EQ(host->stats().objects, objects) << "n = " << n;
  }
  EXPECT_GT(g->vsmmu().host_objects(), held);
  must(g->vsmmu().remove_device(kNic1));
  EXPECT_EQ(g->vsmmu().host_objects(), held) << "devB's physical SMMU has no device left";
  EXPECT_EQ(host->stats().objects, objects);
}

}  // namespace
}  // namespace vsmmu::nesting::test
