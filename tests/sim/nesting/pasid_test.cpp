// Substreams (PASIDs) through the vSMMU (IHI 0070 3.9): a guest that asked for SSIDSIZE > 0 gives one device
// several address spaces, one CD each in a CD table in its RAM (linear or 2-level, STE.S1Fmt), which the host's
// SMMU walks through stage 2. Each test states what the guest sees. The simulated SMMU caches STEs, CDs and
// TLB entries as hardware may, so a missing invalidation shows as a stale translation.
#include <array>
#include <tuple>
#include <utility>

#include "nesting/virtual_smmu.hpp"
#include "smmu/event.hpp"
#include "tests/sim/nesting/nesting_fixture.hpp"

namespace vsmmu::nesting::test {
namespace {

using namespace smmu;
using namespace smmu::driver;

constexpr unsigned kSsidBits = 4;                                 // the vSMMU's IDR1.SSIDSIZE in these tests
constexpr std::array<std::uint32_t, 3> kSsids{1, 2, 3};           // the device's three PASIDs
constexpr std::array<std::uint16_t, 3> kAsids{11, 12, 13};        // one ASID per address space

class PasidSim : public NestingSim {
 protected:
  // nic0 (PCIe PASID and ATS capable, behind smmu0 with 20-bit SSIDs) behind a vSMMU of kSsidBits SSID bits.
  std::unique_ptr<GuestHarness> make_pasid(bool ats = false) {
    VirtualSmmuConfig cfg;
    cfg.wishes.ssid_bits = kSsidBits;
    if (ats) cfg.wishes.ats = true;
    return make({{"nic0", -1, kNic0}}, cfg);
  }

  // A fresh page mapped at kVa in `asid`'s address space: (its GPA, the space's tables).
  static std::pair<std::uint64_t, TableBuilder*> new_space(GuestHarness& g, std::uint16_t asid) {
    const std::uint64_t gpa = must(g.alloc(kPage));
    must(g.map(asid, kVa, gpa, kPage));
    return {gpa, must(g.address_space(asid))};
  }

  // The three address spaces: each ASID maps kVa to its own page; nic0's CD table (`fmt`, kSsidBits SSIDs) holds
  // their CDs at kSsids with `dss` for untagged transactions. Returns the pages.
  std::array<std::uint64_t, 3> three_spaces(GuestHarness& g, std::optional<CdTableFormat> fmt = CdTableFormat::linear,
                                            S1Dss dss = S1Dss::substream0) {
    std::array<std::uint64_t, 3> gpas{};
    EXPECT_TRUE(g.driver().create_cd_table(kNic0, kSsidBits, fmt).has_value());
    for (std::size_t i = 0; i < kSsids.size(); ++i) {
      TableBuilder* s1 = nullptr;
      std::tie(gpas[i], s1) = new_space(g, kAsids[i]);
      if (s1) must(g.driver().attach_stage1(kNic0, kSsids[i], kAsids[i], *s1, dss));
    }
    return gpas;
  }

  // A DMA write of a pattern by nic0 at kVa with `ssid` (nullopt: no SubstreamID); whether it completed.
  bool dma_ssid(std::optional<std::uint32_t> ssid, std::uint8_t seed, std::uint64_t iova = kVa) {
    auto r = host->dma_write("nic0.dma", iova, pattern(64, seed), ssid);
    if (!r) ADD_FAILURE() << r.error();
    return r && r->ok();
  }

  // Every one of the three PASIDs but `except` lands in its own page (seeds base+i).
  void expect_all_land(GuestHarness& g, const std::array<std::uint64_t, 3>& gpas, std::uint8_t base,
                       std::optional<std::size_t> except = {}) {
    for (std::size_t i = 0; i < kSsids.size(); ++i) {
      if (i == except) continue;
      SCOPED_TRACE(fmt::format("SSID {}", kSsids[i]));
      EXPECT_TRUE(dma_ssid(kSsids[i], static_cast<std::uint8_t>(base + i)));
      EXPECT_TRUE(holds(g, gpas[i], pattern(64, static_cast<std::uint8_t>(base + i))));
    }
  }

  // The guest reads exactly one event: `id` for nic0's vSID, with SubstreamID `ssid` (SSV set where the
  // record has one, IHI 0070 7.3).
  static void expect_one_event(GuestHarness& g, EventId id, std::uint32_t ssid) {
    auto ev = must(g.events());
    ASSERT_EQ(ev.records.size(), 1U);
    const Event& e = ev.records[0];
    EXPECT_EQ(e.get(Event::ID), id);
    EXPECT_EQ(e.get(Event::SID), kNic0);
    EXPECT_EQ(e.get(Event::SSID), ssid);
    if (id != EventId::C_BAD_SUBSTREAMID) {
      EXPECT_TRUE(e.get(Event::SSV));
    }
  }
};

// IHI 0070 3.9, 5.2 (S1ContextPtr, S1CDMax), 5.4: one device, three SubstreamIDs, each selecting its own CD
// with its own ASID and TTB0. The same VA lands in three different pages depending on the PASID the device
// sends; the vSMMU handed the host the guest's CD table (Viommu::install: S1CDMax, S1Fmt, S1DSS) and nothing
// else was needed.
TEST_F(PasidSim, ThreePasidsTranslateThroughTheirOwnTables) {
  auto g = make_pasid();
  ASSERT_TRUE(g);
  ASSERT_EQ(g->vsmmu().id_registers().idr1.get(Idr1::SSIDSIZE), kSsidBits);
  const auto gpas = three_spaces(*g);
  const Ste ste = guest_ste(*g, kNic0);
  EXPECT_EQ(ste.get(Ste::S1CDMax), kSsidBits);
  EXPECT_EQ(must(g->vsmmu().stream_status(kNic0)).state, StreamState::translate);
  // Three CDs, three ASIDs, three TTB0s.
  CdTable* t = g->driver().cd_table(kNic0);
  ASSERT_NE(t, nullptr);
  std::array<std::uint64_t, 3> ttb0{};
  for (std::size_t i = 0; i < kSsids.size(); ++i) {
    const Cd cd = must(t->read(kSsids[i]));
    EXPECT_EQ(cd.get(Cd::ASID), kAsids[i]);
    ttb0[i] = cd.get(Cd::TTB0);
  }
  EXPECT_NE(ttb0[0], ttb0[1]);
  EXPECT_NE(ttb0[1], ttb0[2]);
  EXPECT_NE(ttb0[0], ttb0[2]);

  expect_all_land(*g, gpas, 10);
  expect_all_land(*g, gpas, 20);  // again, through the TLB
  EXPECT_TRUE(must(g->events()).records.empty());
}

// IHI 0070 4.4 (TLBI_NH_VA, TLBI_NH_ASID): an unmap in one address space needs its TLBI - until then the SMMU
// may go on using its TLB entry (the sim's does); after TLBI_NH_VA or TLBI_NH_ASID with that ASID + CMD_SYNC
// the PASID faults: F_TRANSLATION (IHI 0070 7.3.13) with SSV = 1 and its SubstreamID in the guest's event, the
// vSID as its StreamID. The other two PASIDs (other ASIDs) go on translating.
TEST_F(PasidSim, UnmapAndTlbiFaultOnePasidOnly) {
  for (const bool by_asid : {false, true}) {
    SCOPED_TRACE(by_asid ? "TLBI_NH_ASID" : "TLBI_NH_VA");
    auto g = make_pasid();
    ASSERT_TRUE(g);
    const auto gpas = three_spaces(*g);
    expect_all_land(*g, gpas, 1);  // fills the TLB

    must(g->unmap(kAsids[1], kVa, kPage, /*invalidate=*/false));
    EXPECT_TRUE(dma_ssid(kSsids[1], 2)) << "before its TLBI the SMMU may still use the cached translation";

    if (by_asid) {
      must(g->driver().issue(cmd_tlbi_nh_asid(0, kAsids[1])));
    } else {
      must(g->driver().issue(tlbi_range(cmd_tlbi_nh_va(0, kAsids[1], 0), kVa, kPage, kPage, Granule::k4K,
                                        g->driver().features().range_inv())));
    }
    EXPECT_FALSE(dma_ssid(kSsids[1], 3));
    EXPECT_TRUE(holds(*g, gpas[1], pattern(64, 2))) << "the faulting DMA moved nothing";
    expect_one_event(*g, EventId::F_TRANSLATION, kSsids[1]);

    expect_all_land(*g, gpas, 40, 1);
    EXPECT_TRUE(must(g->events()).records.empty());
  }
}

// IHI 0070 4.3.3 CMD_CFGI_CD, 4.3.4 CMD_CFGI_CD_ALL (the SMMU may cache CDs until then): a CD the guest
// rewrites in its RAM is not seen until it invalidates it. The guest points SSID 2 at a fourth address space
// (new ASID, new TTB0): DMA with SSID 2 still lands in the old page until CFGI_CD(vSID, SSID 2) (or
// CFGI_CD_ALL(vSID)) + CMD_SYNC, which the vSMMU forwards to the host; then it lands in the new one. The other
// PASIDs are unaffected.
TEST_F(PasidSim, ARewrittenCdIsStaleUntilCfgiCd) {
  for (const bool all : {false, true}) {
    SCOPED_TRACE(all ? "CFGI_CD_ALL" : "CFGI_CD");
    auto g = make_pasid();
    ASSERT_TRUE(g);
    const auto gpas = three_spaces(*g);
    expect_all_land(*g, gpas, 1);  // CDs cached

    constexpr std::uint16_t kNewAsid = 14;
    const auto [fresh, s1] = new_space(*g, kNewAsid);
    ASSERT_NE(s1, nullptr);
    (void)must(g->driver().write_cd(kNic0, kSsids[1], s1_cd(*s1, kNewAsid, g->driver().features())));

    EXPECT_TRUE(dma_ssid(kSsids[1], 5));
    EXPECT_TRUE(holds(*g, gpas[1], pattern(64, 5))) << "without CFGI_CD the SMMU may use its cached CD";
    EXPECT_FALSE(holds(*g, fresh, pattern(64, 5)));

    must(g->driver().issue(all ? cmd_cfgi_cd_all(kNic0) : cmd_cfgi_cd(kNic0, kSsids[1])));
    EXPECT_TRUE(dma_ssid(kSsids[1], 6));
    EXPECT_TRUE(holds(*g, fresh, pattern(64, 6))) << "after CFGI_CD the new CD's tables translate";
    EXPECT_TRUE(holds(*g, gpas[1], pattern(64, 5))) << "and the old page is no longer the target";
    expect_all_land(*g, gpas, 60, 1);
    EXPECT_TRUE(must(g->events()).records.empty());
  }
}

// IHI 0070 5.2 S1Fmt, 5.3: the CD table may be linear or 2-level (level-1 descriptors pointing at level-2 tables
// of 64 CDs (4KB) or 1024 CDs (64KB), all in guest RAM). The vSMMU passes S1Fmt to the host, whose SMMU walks
// either through stage 2; the guest sees the same three PASIDs translate.
struct CdFormatCase {
  const char* name;
  CdTableFormat fmt;
};
class PasidCdFormatSim : public PasidSim, public ::testing::WithParamInterface<CdFormatCase> {};

TEST_P(PasidCdFormatSim, ThreePasidsTranslate) {
  auto g = make_pasid();
  ASSERT_TRUE(g);
  const auto gpas = three_spaces(*g, GetParam().fmt);
  EXPECT_EQ(guest_ste(*g, kNic0).get(Ste::S1Fmt), GetParam().fmt);
  EXPECT_EQ(must(g->vsmmu().stream_status(kNic0)).state, StreamState::translate);
  expect_all_land(*g, gpas, 30);
  EXPECT_TRUE(must(g->events()).records.empty());
}

INSTANTIATE_TEST_SUITE_P(Formats, PasidCdFormatSim,
                         ::testing::Values(CdFormatCase{"Linear", CdTableFormat::linear},
                                           CdFormatCase{"TwoLevel4K", CdTableFormat::two_level_4k},
                                           CdFormatCase{"TwoLevel64K", CdTableFormat::two_level_64k}),
                         ByName());

// IHI 0070 5.2 S1DSS: what a transaction without a SubstreamID does when substreams are on. terminate: aborted,
// F_STREAM_DISABLED (7.3.7) in the guest's queue (no SSV); bypass: stage 1 skipped, the IOVA is the GPA (stage 2
// still applies); substream0: it uses CD 0 - and a transaction *with* SubstreamID 0 is then C_BAD_SUBSTREAMID.
TEST_F(PasidSim, S1dssDecidesForTransactionsWithoutASubstreamId) {
  for (const S1Dss dss : {S1Dss::terminate, S1Dss::bypass, S1Dss::substream0}) {
    SCOPED_TRACE(fmt::format("S1DSS {}", static_cast<unsigned>(dss)));
    auto g = make_pasid();
    ASSERT_TRUE(g);
    const auto gpas = three_spaces(*g, CdTableFormat::linear, dss);
    // CD 0: its own address space.
    constexpr std::uint16_t kAsid0 = 10;
    const auto [gpa0, s1] = new_space(*g, kAsid0);
    ASSERT_NE(s1, nullptr);
    must(g->driver().attach_stage1(kNic0, 0, kAsid0, *s1, dss));
    EXPECT_EQ(guest_ste(*g, kNic0).get(Ste::S1DSS), dss);
    const std::uint64_t raw = must(g->alloc(kPage));

    switch (dss) {
      case S1Dss::terminate: {
        EXPECT_FALSE(dma_ssid(std::nullopt, 1));
        EXPECT_FALSE(holds(*g, gpa0, pattern(64, 1)));
        auto ev = must(g->events());
        ASSERT_EQ(ev.records.size(), 1U);
        EXPECT_EQ(ev.records[0].get(Event::ID), EventId::F_STREAM_DISABLED);
        EXPECT_EQ(ev.records[0].get(Event::SID), kNic0);
        EXPECT_TRUE(dma_ssid(0U, 2)) << "SubstreamID 0 is an ordinary substream here";
        EXPECT_TRUE(holds(*g, gpa0, pattern(64, 2)));
        break;
      }
      case S1Dss::bypass:
        EXPECT_TRUE(dma_ssid(std::nullopt, 3, raw)) << "IOVA = GPA";
        EXPECT_TRUE(holds(*g, raw, pattern(64, 3)));
        EXPECT_FALSE(dma_ssid(std::nullopt, 3, kVa)) << "no stage 1, and kVa is no GPA";
        EXPECT_TRUE(dma_ssid(0U, 4));
        EXPECT_TRUE(holds(*g, gpa0, pattern(64, 4)));
        break;
      default:
        EXPECT_TRUE(dma_ssid(std::nullopt, 5));
        EXPECT_TRUE(holds(*g, gpa0, pattern(64, 5))) << "untagged traffic uses CD 0";
        EXPECT_FALSE(dma_ssid(0U, 6));
        EXPECT_TRUE(holds(*g, gpa0, pattern(64, 5)));
        expect_one_event(*g, EventId::C_BAD_SUBSTREAMID, 0);
        break;
    }
    EXPECT_TRUE(must(g->events()).records.empty());
    expect_all_land(*g, gpas, 70);
  }
}

// IHI 0070 5.2 S1CDMax, 3.9.2: a SubstreamID at or above 2^S1CDMax is terminated with C_BAD_SUBSTREAMID
// (7.3.9: its SubstreamID is given, there is no SSV), the vSID as its StreamID. A CD table of 4 CDs here.
TEST_F(PasidSim, SsidBeyondS1CDMaxIsCBadSubstreamId) {
  auto g = make_pasid();
  ASSERT_TRUE(g);
  (void)must(g->driver().create_cd_table(kNic0, 2));
  const std::uint64_t gpa = must(g->alloc(kPage));
  must(g->map(kAsid, kVa, gpa, kPage));
  must(g->attach(kNic0, kAsid, 3));
  ASSERT_EQ(guest_ste(*g, kNic0).get(Ste::S1CDMax), 2U);
  EXPECT_TRUE(dma_ssid(3U, 1));
  EXPECT_TRUE(holds(*g, gpa, pattern(64, 1)));

  EXPECT_FALSE(dma_ssid(4U, 2));
  EXPECT_TRUE(holds(*g, gpa, pattern(64, 1)));
  expect_one_event(*g, EventId::C_BAD_SUBSTREAMID, 4);
}

// IHI 0070 4.5 (CMD_ATC_INV with SSV/SSID), 3.9.1: with ATS on (the vSMMU advertises IDR0.ATS, the vSTE sets
// EATS), the guest invalidates a PASID's ATC entries by ATC_INV with that SubstreamID. The vSMMU forwards it
// (vSID -> the host's SID) and the host's SMMU takes it: no command error for the guest, ATC_INV + CMD_SYNC on
// the physical queue. The sim models no ATC, so what the device would drop is not visible here.
TEST_F(PasidSim, AtcInvWithAnSsidReachesTheHost) {
  auto g = make_pasid(/*ats=*/true);
  ASSERT_TRUE(g);
  ASSERT_TRUE(g->vsmmu().id_registers().idr0.get(Idr0::ATS));
  const auto gpas = three_spaces(*g);
  Ste ste = guest_ste(*g, kNic0);
  must(g->driver().install_ste(kNic0, ste.set(Ste::EATS, Eats::translate)));
  EXPECT_EQ(must(g->vsmmu().stream_status(kNic0)).state, StreamState::translate);
  expect_all_land(*g, gpas, 1);

  const auto forwarded = g->vsmmu().stats().forwarded;
  const auto smmu_commands = must(host->smmu_counters("smmu0")).commands;
  const auto smmu_errors = must(host->smmu_counters("smmu0")).command_errors;
  must(g->driver().issue(cmd_atc_inv(kNic0, kVa, 0, kSsids[1])));
  EXPECT_FALSE(must(g->driver().command_error()).has_value());
  EXPECT_EQ(g->vsmmu().stats().forwarded, forwarded + 1);
  EXPECT_EQ(must(host->smmu_counters("smmu0")).commands, smmu_commands + 2) << "ATC_INV + CMD_SYNC";
  EXPECT_EQ(must(host->smmu_counters("smmu0")).command_errors, smmu_errors);
  expect_all_land(*g, gpas, 9);
}

// derive_id_registers (nesting/id_registers.cpp): SSIDSIZE above the physical SMMU's (smmu0 has 20 bits) is
// refused when the vSMMU is created, with EINVAL naming the field and both values.
TEST_F(PasidSim, SsidsizeAboveTheHostsIsRefusedAtCreation) {
  GuestHarnessConfig c;
  c.vsmmu.wishes.ssid_bits = 21;
  c.devices = {{"nic0", -1, kNic0}};
  auto g = GuestHarness::create(*host, c);
  ASSERT_FALSE(g.has_value());
  EXPECT_EQ(g.error().err, EINVAL);
  EXPECT_NE(g.error().message.find("SSIDSIZE 21 asked, the physical SMMU has 20"), std::string::npos) << g.error();

  c.vsmmu.wishes.ssid_bits = 20;
  EXPECT_TRUE(GuestHarness::create(*host, c).has_value()) << "the host's own 20 bits are fine";
}

// IHI 0070 5.2 "STE validity": S1CDMax above IDR1.SSIDSIZE makes the STE ILLEGAL: C_BAD_STE (7.3.5) with the vSID,
// the stream blocked, and the host never asked.
TEST_F(PasidSim, S1CDMaxAboveSsidsizeIsCBadSte) {
  auto g = make_pasid();
  ASSERT_TRUE(g);
  const auto gpas = three_spaces(*g);
  expect_all_land(*g, gpas, 1);
  const auto hwpts = g->vsmmu().stats().hwpt_allocs;
  Ste ste = guest_ste(*g, kNic0);
  must(g->driver().install_ste(kNic0, ste.set(Ste::S1CDMax, kSsidBits + 1)));
  const std::string problem = expect_c_bad_ste(*g, kNic0);
  EXPECT_NE(problem.find(fmt::format("S1CDMax {} exceeds IDR1.SSIDSIZE {}", kSsidBits + 1, kSsidBits)), std::string::npos)
      << problem;
  EXPECT_EQ(g->vsmmu().stats().hwpt_allocs, hwpts);
  for (const auto ssid : kSsids) EXPECT_FALSE(dma_ssid(ssid, 2));
}

}  // namespace
}  // namespace vsmmu::nesting::test
