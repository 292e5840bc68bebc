// Decoding CD and STE translation fields into walk parameters: what is ILLEGAL (the model raises C_BAD_CD /
// C_BAD_STE) and how effective values are derived (IHI 0070 5.2 STE, 5.4 CD, 3.4 address sizes; Arm ARM
// J1.1.4 AArch64.S2InvalidSL / S2InconsistentSL / S1StartLevel).
#include <gtest/gtest.h>

#include <string_view>

#include "tests/unit/smmu/walk_fixture.hpp"

namespace vsmmu::smmu {
namespace {

using namespace test;

// A valid CD for a 48-bit, 4KB stage 1 with its table at 0x4000'0000.
Cd good_cd() {
  Cd cd;
  cd.set(Cd::V, true).set(Cd::AA64, true).set(Cd::EPD1, true).set(Cd::T0SZ, 16).set(Cd::TG0, 0).set(Cd::IPS, 5);
  cd.set(Cd::TTB0, 0x4000'0000);
  return cd;
}

// A valid STE stage 2: 40-bit IPA, 4KB, level 1 with 2 concatenated tables.
Ste good_ste() {
  Ste ste;
  ste.set(Ste::V, true).set(Ste::Config, StreamConfig::s2_translate).set(Ste::S2AA64, true);
  ste.set(Ste::S2T0SZ, 24).set(Ste::S2SL0, 1).set(Ste::S2TG, 0).set(Ste::S2PS, 2).set(Ste::S2TTB, 0x4000'0000);
  return ste;
}

void expect_bad_cd(const Cd& cd, std::string_view field, const WalkCapabilities& caps = full_caps()) {
  auto p = stage1_params(cd, caps);
  ASSERT_FALSE(p) << "expected C_BAD_CD for " << field;
  EXPECT_EQ(std::string_view(p.error().field), field) << p.error().reason;
}
void expect_bad_ste(const Ste& ste, std::string_view field, const WalkCapabilities& caps = full_caps()) {
  auto p = stage2_params(ste, caps);
  ASSERT_FALSE(p) << "expected C_BAD_STE for " << field;
  EXPECT_EQ(std::string_view(p.error().field), field) << p.error().reason;
}

// ---- CD ----

TEST(Stage1Config, GoodCdDecodes) {
  auto p = stage1_params(good_cd().set(Cd::ASID, 0x1234), full_caps());
  ASSERT_TRUE(p);
  EXPECT_EQ(p->granule, Granule::k4K);
  EXPECT_EQ(p->t0sz, 16U);
  EXPECT_EQ(p->start_level, 0U);
  EXPECT_EQ(p->ips_bits, 48U);
  EXPECT_EQ(p->ttb, 0x4000'0000U);
  EXPECT_EQ(p->asid, 0x1234);
  EXPECT_FALSE(p->ha || p->hd || p->epd0);
}

// IHI 0070 5.4 V: an invalid CD is ILLEGAL when used.
TEST(Stage1Config, InvalidCd) { expect_bad_cd(good_cd().set(Cd::V, false), "V"); }

// IHI 0070 5.4 AA64: this SMMU has no VMSAv8-32 LPAE tables (IDR0.TTF = AArch64 only).
TEST(Stage1Config, Aarch32TablesAreIllegal) { expect_bad_cd(good_cd().set(Cd::AA64, false), "AA64"); }

// IHI 0070 5.4 TG0: a Reserved value or a granule the SMMU does not implement is ILLEGAL.
TEST(Stage1Config, ReservedOrUnimplementedGranule) {
  expect_bad_cd(good_cd().set(Cd::TG0, 3), "TG0");
  WalkCapabilities no16k = full_caps();
  no16k.gran16k = false;
  expect_bad_cd(good_cd().set(Cd::TG0, 2), "TG0", no16k);
  WalkCapabilities no64k = full_caps();
  no64k.gran64k = false;
  expect_bad_cd(good_cd().set(Cd::TG0, 1), "TG0", no64k);
}

// IHI 0070 5.4 T0SZ: 16 to 39, or up to 48 (47 for 64KB) with IDR3.STT; down to 12 with 64KB when IDR5.VAX
// says 52-bit VAs. Out of range is ILLEGAL from SMMUv3.1.
TEST(Stage1Config, T0szRange) {
  WalkCapabilities base;  // no STT, no VAX
  expect_bad_cd(good_cd().set(Cd::T0SZ, 15), "T0SZ", base);
  expect_bad_cd(good_cd().set(Cd::T0SZ, 40), "T0SZ", base);
  EXPECT_TRUE(stage1_params(good_cd().set(Cd::T0SZ, 39), base));
  WalkCapabilities stt = base;
  stt.stt = true;
  EXPECT_TRUE(stage1_params(good_cd().set(Cd::T0SZ, 48), stt));
  expect_bad_cd(good_cd().set(Cd::T0SZ, 49), "T0SZ", stt);
  expect_bad_cd(good_cd().set(Cd::T0SZ, 48).set(Cd::TG0, 1), "T0SZ", stt);
  WalkCapabilities vax = base;
  vax.vax = true;
  vax.oas_bits = 52;
  EXPECT_TRUE(stage1_params(good_cd().set(Cd::T0SZ, 12).set(Cd::TG0, 1).set(Cd::IPS, 6), vax));
  expect_bad_cd(good_cd().set(Cd::T0SZ, 12), "T0SZ", vax);  // 52-bit VA needs 64KB (no DS)
}

// Arm ARM AArch64.S1StartLevel: 3 - ((64 - T0SZ - 1 - granulebits) DIV stride).
TEST(Stage1Config, StartLevelFollowsT0szAndGranule) {
  struct Case {
    unsigned tg0, t0sz, level;
  };
  for (Case c : {Case{0, 16, 0}, Case{0, 24, 0}, Case{0, 25, 1}, Case{0, 33, 1}, Case{0, 34, 2}, Case{2, 16, 0},
                 Case{2, 17, 1}, Case{2, 28, 2}, Case{1, 16, 1}, Case{1, 21, 1}, Case{1, 22, 2}, Case{1, 35, 3}}) {
    auto p = stage1_params(good_cd().set(Cd::TG0, c.tg0).set(Cd::T0SZ, c.t0sz), full_caps());
    ASSERT_TRUE(p);
    EXPECT_EQ(p->start_level, c.level) << fmt::format("TG0={} T0SZ={}", c.tg0, c.t0sz);
  }
}

// IHI 0070 5.4 IPS: eff_IPS = MIN(IPS, OAS); without LPA2 the 4KB/16KB descriptors hold 48 bits.
TEST(Stage1Config, IpsIsCappedToOasAndDescriptorFormat) {
  WalkCapabilities caps = full_caps();
  caps.oas_bits = 40;
  EXPECT_EQ(stage1_params(good_cd().set(Cd::IPS, 5), caps)->ips_bits, 40U);
  EXPECT_EQ(stage1_params(good_cd().set(Cd::IPS, 1), caps)->ips_bits, 36U);
  caps.oas_bits = 52;
  EXPECT_EQ(stage1_params(good_cd().set(Cd::IPS, 6), caps)->ips_bits, 48U);
  EXPECT_EQ(stage1_params(good_cd().set(Cd::IPS, 6).set(Cd::TG0, 1), caps)->ips_bits, 52U);
  EXPECT_EQ(stage1_params(good_cd().set(Cd::IPS, 7).set(Cd::TG0, 1), caps)->ips_bits, 52U);
}

// IHI 0070 3.4 note and 5.4 TTB0: a TTB0 outside the effective IPS is C_BAD_CD, not an address size fault;
// with a 4KB/16KB granule it must also fit in 48 bits.
TEST(Stage1Config, Ttb0OutsideIpsIsIllegal) {
  expect_bad_cd(good_cd().set(Cd::IPS, 0).set(Cd::TTB0, 1ULL << 32), "TTB0");
  EXPECT_TRUE(stage1_params(good_cd().set(Cd::IPS, 0).set(Cd::TTB0, (1ULL << 32) - 4096), full_caps()));
  WalkCapabilities caps = full_caps();
  caps.oas_bits = 52;
  expect_bad_cd(good_cd().set(Cd::IPS, 6).set(Cd::TTB0, 1ULL << 48), "TTB0", caps);
}

// IHI 0070 5.4 TTB0: bits below the start-level table's alignment are treated as zero.
TEST(Stage1Config, Ttb0IsAlignedToItsTable) {
  auto p = stage1_params(good_cd().set(Cd::TTB0, 0x4000'0ff0), full_caps());
  ASSERT_TRUE(p);
  EXPECT_EQ(p->ttb, 0x4000'0000U);
  // T0SZ 30 with 4KB: level 1 with 16 entries, a 128-byte table.
  EXPECT_EQ(stage1_params(good_cd().set(Cd::T0SZ, 30).set(Cd::TTB0, 0x4000'00f0), full_caps())->ttb, 0x4000'0080U);
  // With a 52-bit effective IPS the minimum alignment is 64 bytes: a 16-byte root (64KB, T0SZ 47) too.
  WalkCapabilities caps = full_caps();
  caps.oas_bits = 52;
  const Cd small = good_cd().set(Cd::TG0, 1).set(Cd::T0SZ, 47).set(Cd::TTB0, 0x4000'0030);
  EXPECT_EQ(stage1_params(Cd(small).set(Cd::IPS, 6), caps)->ttb, 0x4000'0000U);
  EXPECT_EQ(stage1_params(Cd(small).set(Cd::IPS, 5), caps)->ttb, 0x4000'0030U);
}

// IHI 0070 5.4 HA/HD: ILLEGAL without the HTTU the SMMU has; HD without HA behaves as neither.
TEST(Stage1Config, HttuNeedsIdr0Httu) {
  WalkCapabilities none;
  expect_bad_cd(good_cd().set(Cd::HA, true), "HA", none);
  WalkCapabilities access_only;
  access_only.httu_access = true;
  expect_bad_cd(good_cd().set(Cd::HA, true).set(Cd::HD, true), "HD", access_only);
  EXPECT_TRUE(stage1_params(good_cd().set(Cd::HA, true), access_only)->ha);
  auto hd_only = stage1_params(good_cd().set(Cd::HD, true), full_caps());
  ASSERT_TRUE(hd_only);
  EXPECT_FALSE(hd_only->ha);
  EXPECT_FALSE(hd_only->hd);
}

// IHI 0070 5.4 EPD0: T0SZ, TG0 and TTB0 are IGNORED when TTB0 walks are disabled.
TEST(Stage1Config, Epd0IgnoresTheTtb0Fields) {
  auto p = stage1_params(good_cd().set(Cd::EPD0, true).set(Cd::TG0, 3).set(Cd::T0SZ, 63).set(Cd::TTB0, ~0ULL),
                         full_caps());
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->epd0);
}

// IHI 0070 5.4 ENDI: big-endian tables are ILLEGAL on an SMMU whose IDR0.TTENDIAN is little-endian only.
TEST(Stage1Config, BigEndianTablesAreIllegal) { expect_bad_cd(good_cd().set(Cd::ENDI, true), "ENDI"); }

TEST(Stage1Config, PermissionControlsAreCarried) {
  auto p = stage1_params(good_cd().set(Cd::WXN, true).set(Cd::PAN, true).set(Cd::TBI0, true).set(Cd::AFFD, true),
                         full_caps());
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->wxn && p->pan && p->tbi && p->affd);
}

// ---- STE ----

TEST(Stage2Config, GoodSteDecodes) {
  auto p = stage2_params(good_ste().set(Ste::S2VMID, 7), full_caps());
  ASSERT_TRUE(p);
  EXPECT_EQ(p->granule, Granule::k4K);
  EXPECT_EQ(p->t0sz, 24U);
  EXPECT_EQ(p->start_level, 1U);
  EXPECT_EQ(p->ps_bits, 40U);
  EXPECT_EQ(p->ttb, 0x4000'0000U);
  EXPECT_EQ(p->vmid, 7);
}

TEST(Stage2Config, Aarch32TablesAreIllegal) { expect_bad_ste(good_ste().set(Ste::S2AA64, false), "S2AA64"); }

TEST(Stage2Config, BigEndianTablesAreIllegal) { expect_bad_ste(good_ste().set(Ste::S2ENDI, true), "S2ENDI"); }

// IHI 0070 5.2 S2TG: Reserved or unimplemented granules are ILLEGAL.
TEST(Stage2Config, ReservedOrUnimplementedGranule) {
  expect_bad_ste(good_ste().set(Ste::S2TG, 3), "S2TG");
  WalkCapabilities no4k = full_caps();
  no4k.gran4k = false;
  expect_bad_ste(good_ste(), "S2TG", no4k);
}

// IHI 0070 5.2 S2T0SZ: at least MAX(16, 64 - IAS) (12 with 64KB), IAS = OAS here; at most 39, or 48/47
// with STT.
TEST(Stage2Config, S2t0szRange) {
  WalkCapabilities caps;
  caps.oas_bits = 40;
  // 41-bit IPA on a 40-bit OAS: IPA larger than the IAS.
  expect_bad_ste(good_ste().set(Ste::S2T0SZ, 23), "S2T0SZ", caps);
  EXPECT_TRUE(stage2_params(good_ste().set(Ste::S2T0SZ, 24), caps));
  // 25-bit IPA (T0SZ 39), level 2 start: fine; T0SZ 40 needs STT.
  EXPECT_TRUE(stage2_params(good_ste().set(Ste::S2T0SZ, 39).set(Ste::S2SL0, 0), caps));
  expect_bad_ste(good_ste().set(Ste::S2T0SZ, 40).set(Ste::S2SL0, 0), "S2T0SZ", caps);
  caps.stt = true;
  EXPECT_TRUE(stage2_params(good_ste().set(Ste::S2T0SZ, 40).set(Ste::S2SL0, 0), caps));
}

// Arm ARM AArch64.S2InconsistentSL: the start level must leave at least one bit to resolve there and at most
// one level's bits plus 4 (16 concatenated tables).
TEST(Stage2Config, StartLevelMustBeConsistentWithS2t0sz) {
  // 4KB level 1 resolves bits [38:30]: IPA sizes 31 to 43 (43 = 16 concatenated tables).
  EXPECT_TRUE(stage2_params(good_ste().set(Ste::S2T0SZ, 64 - 43), full_caps()));
  expect_bad_ste(good_ste().set(Ste::S2T0SZ, 64 - 44), "S2SL0");
  EXPECT_TRUE(stage2_params(good_ste().set(Ste::S2T0SZ, 64 - 31), full_caps()));
  expect_bad_ste(good_ste().set(Ste::S2T0SZ, 64 - 30), "S2SL0");
  // 48-bit IPA from level 2: 2^18 tables.
  expect_bad_ste(good_ste().set(Ste::S2T0SZ, 16).set(Ste::S2SL0, 0), "S2SL0");
  EXPECT_TRUE(stage2_params(good_ste().set(Ste::S2T0SZ, 16).set(Ste::S2SL0, 2), full_caps()));
}

// Arm ARM AArch64.S2InvalidSL with PAMax = OAS: 4KB SL0=2 (level 0) needs a 44-bit PA, SL0=3 (level 3) STT;
// 16KB SL0=2 (level 1) needs 42 bits and SL0=3 (level 0) LPA2; 64KB SL0=2 (level 1) needs 44 bits, SL0=3
// is reserved.
TEST(Stage2Config, S2sl0EncodingsTheSmmuCannotUse) {
  WalkCapabilities oas40 = full_caps();
  oas40.oas_bits = 40;
  expect_bad_ste(good_ste().set(Ste::S2SL0, 2), "S2SL0", oas40);
  WalkCapabilities no_stt = full_caps();
  no_stt.stt = false;
  expect_bad_ste(good_ste().set(Ste::S2T0SZ, 39).set(Ste::S2SL0, 3), "S2SL0", no_stt);
  EXPECT_TRUE(stage2_params(good_ste().set(Ste::S2T0SZ, 39).set(Ste::S2SL0, 3), full_caps()));

  const Ste g16 = good_ste().set(Ste::S2TG, 2);
  expect_bad_ste(Ste(g16).set(Ste::S2T0SZ, 16).set(Ste::S2SL0, 3), "S2SL0");
  WalkCapabilities oas40_16 = oas40;
  expect_bad_ste(Ste(g16).set(Ste::S2T0SZ, 24).set(Ste::S2SL0, 2), "S2SL0", oas40_16);
  WalkCapabilities oas42 = full_caps();
  oas42.oas_bits = 42;
  EXPECT_TRUE(stage2_params(Ste(g16).set(Ste::S2T0SZ, 22).set(Ste::S2SL0, 2).set(Ste::S2PS, 3), oas42));

  const Ste g64 = good_ste().set(Ste::S2TG, 1);
  expect_bad_ste(Ste(g64).set(Ste::S2SL0, 3), "S2SL0");
  EXPECT_TRUE(stage2_params(Ste(g64).set(Ste::S2T0SZ, 16).set(Ste::S2SL0, 2), full_caps()));
  expect_bad_ste(Ste(g64).set(Ste::S2T0SZ, 24).set(Ste::S2SL0, 2), "S2SL0", oas40);
}

// Each S2SL0 value's start level (VTCR_EL2.SL0 encoding).
TEST(Stage2Config, S2sl0Decodes) {
  struct Case {
    unsigned tg, sl0, t0sz;
    unsigned level;
  };
  for (Case c : {Case{0, 0, 34, 2}, Case{0, 1, 24, 1}, Case{0, 2, 16, 0}, Case{0, 3, 44, 3}, Case{2, 0, 40, 3},
                 Case{2, 1, 30, 2}, Case{2, 2, 16, 1}, Case{1, 0, 36, 3}, Case{1, 1, 24, 2}, Case{1, 2, 16, 1}}) {
    auto p = stage2_params(good_ste().set(Ste::S2TG, c.tg).set(Ste::S2SL0, c.sl0).set(Ste::S2T0SZ, c.t0sz),
                           full_caps());
    ASSERT_TRUE(p) << fmt::format("TG={} SL0={} T0SZ={}: {}", c.tg, c.sl0, c.t0sz, p ? "" : p.error().reason);
    EXPECT_EQ(p->start_level, c.level);
  }
}

// IHI 0070 5.2 S2PS: eff_S2PS = MIN(S2PS, OAS), Reserved values included; S2TTB outside it is ILLEGAL.
TEST(Stage2Config, S2psCappedAndS2ttbChecked) {
  WalkCapabilities caps = full_caps();
  caps.oas_bits = 44;
  EXPECT_EQ(stage2_params(good_ste().set(Ste::S2PS, 7), caps)->ps_bits, 44U);
  EXPECT_EQ(stage2_params(good_ste().set(Ste::S2PS, 0), caps)->ps_bits, 32U);
  expect_bad_ste(good_ste().set(Ste::S2PS, 0).set(Ste::S2TTB, 1ULL << 32), "S2TTB", caps);
  caps.oas_bits = 52;
  expect_bad_ste(good_ste().set(Ste::S2PS, 6).set(Ste::S2TTB, 1ULL << 48), "S2TTB", caps);
}

// Arm ARM AArch64.S2TTBaseAddress: the concatenated root is aligned to its whole size (here two 4KB tables).
TEST(Stage2Config, S2ttbIsAlignedToTheConcatenatedRoot) {
  EXPECT_EQ(stage2_params(good_ste().set(Ste::S2TTB, 0x4000'1000), full_caps())->ttb, 0x4000'0000U);
}

// IHI 0070 5.2 S2HA/S2HD: ILLEGAL beyond IDR0.HTTU; S2HD without S2HA behaves as neither.
TEST(Stage2Config, HttuNeedsIdr0Httu) {
  WalkCapabilities none;
  expect_bad_ste(good_ste().set(Ste::S2HA, true), "S2HA", none);
  WalkCapabilities access_only;
  access_only.httu_access = true;
  expect_bad_ste(good_ste().set(Ste::S2HA, true).set(Ste::S2HD, true), "S2HD", access_only);
  auto hd_only = stage2_params(good_ste().set(Ste::S2HD, true), full_caps());
  ASSERT_TRUE(hd_only);
  EXPECT_FALSE(hd_only->hd);
  auto both = stage2_params(good_ste().set(Ste::S2HA, true).set(Ste::S2HD, true), full_caps());
  ASSERT_TRUE(both);
  EXPECT_TRUE(both->ha && both->hd);
}

}  // namespace
}  // namespace vsmmu::smmu
