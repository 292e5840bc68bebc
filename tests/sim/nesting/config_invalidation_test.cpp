// Configuration the guest changes in its RAM takes effect when - and only when - it invalidates it (IHI 0070 3.21,
// 4.3): CDs with CFGI_CD, STEs with CFGI_STE / CFGI_STE_RANGE / CFGI_ALL, in a linear or a 2-level stream table;
// and devices hot-plugged into a running vSMMU follow the STE the guest has for them.
#include "nesting/virtual_smmu.hpp"
#include "smmu/event.hpp"
#include "tests/sim/nesting/nesting_fixture.hpp"

namespace vsmmu::nesting::test {
namespace {

using namespace smmu;
using namespace smmu::driver;

class ConfigInvalidationSim : public NestingSim {};

// IHI 0070 4.3.3 (CFGI_CD) + 5.4 (CD): the SMMU may keep using a cached CD until software invalidates it. The
// guest re-points nic0's CD at another address space (ASID 2, TTB0 of other tables mapping the same VA to
// another page): without CFGI_CD the DMA still lands where the old CD said; after CFGI_CD + CMD_SYNC it lands
// where the new one says.
TEST_F(ConfigInvalidationSim, ChangedCdTakesEffectOnlyAfterCfgiCd) {
  auto g = make({{"nic0", -1, kNic0}});
  ASSERT_TRUE(g);
  const std::uint64_t gpa_a = map_page(*g, kNic0, kAsidA);
  const std::uint64_t gpa_b = must(g->alloc(kPage));
  must(g->map(kAsidB, kVa, gpa_b, kPage));
  const auto d1 = pattern(64, 1);
  ASSERT_TRUE(dma("nic0.dma", kVa, d1));
  ASSERT_TRUE(holds(*g, gpa_a, d1));

  auto& drv = g->driver();
  must(drv.write_cd(kNic0, 0, s1_cd(*must(g->address_space(kAsidB)), kAsidB, drv.features())));
  const auto d2 = pattern(64, 2);
  ASSERT_TRUE(dma("nic0.dma", kVa, d2));
  EXPECT_TRUE(holds(*g, gpa_a, d2)) << "without CFGI_CD the cached CD still applies";

  must(drv.issue(cmd_cfgi_cd(kNic0, 0)));
  const auto d3 = pattern(64, 3);
  ASSERT_TRUE(dma("nic0.dma", kVa, d3));
  EXPECT_TRUE(holds(*g, gpa_b, d3)) << "after CFGI_CD + CMD_SYNC the new CD applies";
  EXPECT_TRUE(holds(*g, gpa_a, d2));
}

// IHI 0070 5.4 (CD.V = 0: the CD is invalid) + 7.3.10 (C_BAD_CD): after the guest clears CD.V and issues CFGI_CD,
// the stream's DMA is terminated and the guest reads C_BAD_CD with its vSID; before the CFGI_CD the cached CD
// still translates.
TEST_F(ConfigInvalidationSim, InvalidatedCdWithVClearedFaultsWithCBadCd) {
  auto g = make({{"nic0", -1, kNic0}});
  ASSERT_TRUE(g);
  const std::uint64_t gpa = map_page(*g, kNic0, kAsidA);
  ASSERT_TRUE(dma("nic0.dma", kVa, pattern(64, 1)));

  must(g->driver().write_cd(kNic0, 0, Cd{}));
  const auto d2 = pattern(64, 2);
  EXPECT_TRUE(dma("nic0.dma", kVa, d2));
  EXPECT_TRUE(holds(*g, gpa, d2));
  ASSERT_TRUE(must(g->events()).records.empty());

  must(g->driver().issue(cmd_cfgi_cd(kNic0, 0)));
  EXPECT_FALSE(dma("nic0.dma", kVa, pattern(64, 3)));
  EXPECT_TRUE(holds(*g, gpa, d2));
  auto ev = must(g->events());
  ASSERT_EQ(ev.records.size(), 1U);
  EXPECT_EQ(ev.records[0].get(Event::ID), EventId::C_BAD_CD);
  EXPECT_EQ(ev.records[0].get(Event::SID), kNic0);
}

// IHI 0070 3.3.2 (2-level stream table: level-1 descriptors pointing at level-2 tables of 2^SPLIT STEs) + 4.3.2
// (CFGI_STE_RANGE invalidates 2^(Range+1) STEs from an aligned StreamID) + 4.3.4 (CFGI_ALL): with vSIDs 0x010
// and 0x310 in different level-2 tables, STE changes apply only to the streams an invalidation names:
// CFGI_STE_RANGE over 0x000-0x0ff switches nic0 to its new (abort) STE while nic1 keeps its cached one until
// CFGI_ALL; CFGI_ALL then reinstalls both translating STEs again.
TEST_F(ConfigInvalidationSim, TwoLevelStreamTableAndRangeAndAllInvalidation) {
  constexpr std::uint32_t kLow = 0x010, kHigh = 0x310;
  auto g = make({{"nic0", -1, kLow}, {"nic1", -1, kHigh}});
  ASSERT_TRUE(g);
  ASSERT_EQ(g->driver().strtab_format(), StreamTableFormat::two_level);
  ASSERT_NE(kLow >> SmmuDriver::kStrtabSplit, kHigh >> SmmuDriver::kStrtabSplit);
  // SMMUEN came before the guest made level-2 tables: the streams abort, but no event is made up for traffic
  // that never happened (hardware raises C_BAD_STREAMID only on a transaction, IHI 0070 7.3.2).
  EXPECT_TRUE(must(g->events()).records.empty());
  EXPECT_EQ(must(g->vsmmu().stream_status(kLow)).state, StreamState::abort);
  const std::uint64_t gpa0 = map_page(*g, kLow, kAsidA);
  const std::uint64_t gpa1 = map_page(*g, kHigh, kAsidB);
  ASSERT_TRUE(dma("nic0.dma", kVa, pattern(64, 1)));
  ASSERT_TRUE(dma("nic1.dma", kVa, pattern(64, 2)));
  EXPECT_TRUE(holds(*g, gpa0, pattern(64, 1)));
  EXPECT_TRUE(holds(*g, gpa1, pattern(64, 2)));
  const Ste low = guest_ste(*g, kLow), high = guest_ste(*g, kHigh);

  auto& drv = g->driver();
  must(drv.write_ste(kLow, abort_ste()));
  must(drv.write_ste(kHigh, abort_ste()));
  EXPECT_TRUE(dma("nic0.dma", kVa, pattern(64, 3))) << "no CFGI yet";
  EXPECT_TRUE(dma("nic1.dma", kVa, pattern(64, 3))) << "no CFGI yet";

  must(drv.issue(cmd_cfgi_ste_range(0, 7)));  // StreamIDs 0x000-0x0ff
  EXPECT_FALSE(dma("nic0.dma", kVa, pattern(64, 4)));
  EXPECT_TRUE(dma("nic1.dma", kVa, pattern(64, 4))) << "0x310 is outside the range";

  must(drv.issue(cmd_cfgi_all()));
  EXPECT_FALSE(dma("nic1.dma", kVa, pattern(64, 5)));

  must(drv.write_ste(kLow, low));
  must(drv.write_ste(kHigh, high));
  must(drv.issue(cmd_cfgi_all()));
  EXPECT_TRUE(dma("nic0.dma", kVa, pattern(64, 6)));
  EXPECT_TRUE(dma("nic1.dma", kVa, pattern(64, 7)));
  EXPECT_TRUE(holds(*g, gpa0, pattern(64, 6)));
  EXPECT_TRUE(holds(*g, gpa1, pattern(64, 7)));
  EXPECT_TRUE(must(g->events()).records.empty());
}

// IHI 0070 4.3.1: CFGI_STE invalidates the STE and every CD cached through it. The guest re-points nic0's CD at
// another address space and invalidates with CFGI_STE alone: the new CD applies. The vSTE did not change, so the
// vSMMU attaches nothing (the kernel would not even touch the physical STE for the same nested HWPT) and sends
// the host one CFGI_CD_ALL for the vSID instead.
TEST_F(ConfigInvalidationSim, CfgiSteOfAnUnchangedSteStillInvalidatesItsCds) {
  auto g = make({{"nic0", -1, kNic0}});
  ASSERT_TRUE(g);
  const std::uint64_t gpa_a = map_page(*g, kNic0, kAsidA);
  const std::uint64_t gpa_b = must(g->alloc(kPage));
  must(g->map(kAsidB, kVa, gpa_b, kPage));
  ASSERT_TRUE(lands(*g, "nic0.dma", kVa, gpa_a, 1));

  auto& drv = g->driver();
  must(drv.write_cd(kNic0, 0, s1_cd(*must(g->address_space(kAsidB)), kAsidB, drv.features())));
  ASSERT_TRUE(lands(*g, "nic0.dma", kVa, gpa_a, 2)) << "without an invalidation the cached CD still applies";

  const VirtualSmmuStats before = g->vsmmu().stats();
  must(drv.issue(cmd_cfgi_ste(kNic0)));
  const VirtualSmmuStats after = g->vsmmu().stats();
  EXPECT_EQ(after.attaches, before.attaches) << "the same vSTE: nothing to attach";
  EXPECT_EQ(after.ste_unchanged, before.ste_unchanged + 1);
  EXPECT_EQ(after.invalidate_calls, before.invalidate_calls + 1) << "one HWPT_INVALIDATE with CFGI_CD_ALL";
  EXPECT_TRUE(lands(*g, "nic0.dma", kVa, gpa_b, 3)) << "after CFGI_STE + CMD_SYNC the new CD applies";
}

// IHI 0070 7.3.4 F_STE_FETCH: the guest points the level-1 descriptor of nic0's StreamIDs at a level-2 table
// outside its RAM and invalidates the STE: fetching the STE aborts, the stream aborts DMA and the guest reads
// F_STE_FETCH with the vSID and the STE's address (docs/virtual-smmu.md, "Streams").
TEST_F(ConfigInvalidationSim, SteOutsideGuestRamAbortsTheStreamWithFSteFetch) {
  constexpr std::uint32_t kSid = 0x310;  // wide enough for the guest driver to make a 2-level stream table
  auto g = make({{"nic0", -1, kSid}});
  ASSERT_TRUE(g);
  const std::uint64_t gpa = map_page(*g, kSid, kAsidA);
  ASSERT_TRUE(lands(*g, "nic0.dma", kVa, gpa, 1));
  auto& drv = g->driver();
  ASSERT_EQ(drv.strtab_format(), StreamTableFormat::two_level);
  constexpr std::uint64_t kOutside = 1ULL << 36;  // 64 GiB: far above the guest's RAM
  const std::uint64_t l1 = drv.strtab_base() + (kSid >> SmmuDriver::kStrtabSplit) * StreamTableL1::bytes;
  ASSERT_TRUE(g->memory().view().write_record(
      l1, StreamTableL1{}.set(StreamTableL1::Span, SmmuDriver::kStrtabSplit + 1).set(StreamTableL1::L2Ptr, kOutside)));
  must(drv.issue(cmd_cfgi_ste(kSid, /*leaf=*/false)));

  EXPECT_FALSE(dma("nic0.dma", kVa, pattern(64, 2)));
  auto ev = must(g->events());
  ASSERT_EQ(ev.records.size(), 1U);
  EXPECT_EQ(ev.records[0].get(Event::ID), EventId::F_STE_FETCH);
  EXPECT_EQ(ev.records[0].get(Event::SID), kSid);
  const std::uint64_t ste_at = kOutside + (kSid & ((1U << SmmuDriver::kStrtabSplit) - 1)) * Ste::bytes;
  EXPECT_EQ(ev.records[0].get(Event::FetchAddr), ste_at);
  const StreamStatus st = must(g->vsmmu().stream_status(kSid));
  EXPECT_EQ(st.state, StreamState::abort);
  EXPECT_NE(st.problem.value_or("").find("F_STE_FETCH"), std::string::npos) << st.problem.value_or("");
}

// Hot-plug into a running vSMMU (SMMUEN = 1): the new device follows the STE the guest has for its vSID - none
// yet (V = 0: abort) - until the guest configures it; removal blocks its DMA and releases everything it held on
// the host; plugged in again it follows the guest's STE at once. A vSID already in use or wider than
// IDR1.SIDSIZE is refused.
TEST_F(ConfigInvalidationSim, HotPlugWhileEnabledFollowsTheGuestsSte) {
  auto g = make({{"nic0", -1, kNic0}});
  ASSERT_TRUE(g);
  map_page(*g, kNic0, kAsidA);
  const auto objects = host->stats().objects;
  const auto held = g->vsmmu().host_objects();

  must(g->vsmmu().add_device({"nic1", -1, kNic1}));
  EXPECT_EQ(must(g->vsmmu().stream_status(kNic1)).state, StreamState::abort);
  EXPECT_FALSE(dma("nic1.dma", kVa + kPage, pattern(64, 1)));

  const std::uint64_t gpa1 = map_page(*g, kNic1, kAsidB, kVa + kPage);
  const auto d = pattern(64, 2);
  EXPECT_TRUE(dma("nic1.dma", kVa + kPage, d));
  EXPECT_TRUE(holds(*g, gpa1, d));

  must(g->vsmmu().remove_device(kNic1));
  EXPECT_FALSE(g->vsmmu().stream_status(kNic1));
  EXPECT_FALSE(dma("nic1.dma", kVa + kPage, pattern(64, 3)));
  EXPECT_TRUE(holds(*g, gpa1, d));
  EXPECT_EQ(g->vsmmu().host_objects(), held);
  EXPECT_EQ(host->stats().objects, objects);
  EXPECT_EQ(host->stats().devices_bound, 1U);

  must(g->vsmmu().add_device({"nic1", -1, kNic1}));
  EXPECT_EQ(must(g->vsmmu().stream_status(kNic1)).state, StreamState::translate);
  EXPECT_TRUE(dma("nic1.dma", kVa + kPage, pattern(64, 4)));
  EXPECT_TRUE(dma("nic0.dma", kVa, pattern(64, 4))) << "nic0 was never disturbed";

  auto dup = g->vsmmu().add_device({"nvme0", -1, kNic1});
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().err, EEXIST);
  const auto sid_bits = g->vsmmu().id_registers().idr1.get(Idr1::SIDSIZE);
  ASSERT_LT(sid_bits, 32U);
  auto wide = g->vsmmu().add_device({"nvme0", -1, static_cast<std::uint32_t>(1ULL << sid_bits)});
  ASSERT_FALSE(wide);
  EXPECT_EQ(wide.error().err, EINVAL);
  EXPECT_EQ(host->stats().devices_bound, 2U);
}

}  // namespace
}  // namespace vsmmu::nesting::test
