// STE, CD and the level-1 descriptors (IHI 0070 5.1 - 5.4): exact encodings and round trips.
#include <gtest/gtest.h>

#include <bit>

#include "smmu/cd.hpp"
#include "smmu/ste.hpp"

namespace vsmmu::smmu {
namespace {

// Fields of one word are disjoint when their masks' popcounts add up to the popcount of their union.
template <unsigned W, RecordField... Fs>
constexpr bool disjoint(Fs... fs) {
  const int sum = (0 + ... + (Fs::word == W ? std::popcount(Fs::mask) : 0));
  return sum == std::popcount(mask_of<W>(fs...));
}

// IHI 0070 5.2: no two STE fields share a bit (a mistyped position would overlap a neighbour).
TEST(SteLayout, FieldsDoNotOverlap) {
  EXPECT_TRUE(disjoint<0>(Ste::V, Ste::Config, Ste::S1Fmt, Ste::S1ContextPtr, Ste::S1CDMax));
  EXPECT_TRUE(disjoint<1>(Ste::S1DSS, Ste::S1CIR, Ste::S1COR, Ste::S1CSH, Ste::MEV, Ste::S2FWB, Ste::S1STALLD,
                          Ste::EATS, Ste::STRW, Ste::SHCFG));
  EXPECT_TRUE(disjoint<2>(Ste::S2VMID, Ste::S2T0SZ, Ste::S2SL0, Ste::S2IR0, Ste::S2OR0, Ste::S2SH0, Ste::S2TG,
                          Ste::S2PS, Ste::S2AA64, Ste::S2ENDI, Ste::S2AFFD, Ste::S2PTW, Ste::S2HD, Ste::S2HA,
                          Ste::S2S, Ste::S2R));
  // VTCR occupies dword 2 [50:32] (IHI 0070 5.2: S2T0SZ ... S2PS).
  EXPECT_EQ(mask_of<2>(Ste::S2T0SZ, Ste::S2SL0, Ste::S2IR0, Ste::S2OR0, Ste::S2SH0, Ste::S2TG, Ste::S2PS),
            ((1ULL << 51) - 1) & ~((1ULL << 32) - 1));
}

// IHI 0070 5.4: nor do CD fields.
TEST(CdLayout, FieldsDoNotOverlap) {
  EXPECT_TRUE(disjoint<0>(Cd::T0SZ, Cd::TG0, Cd::IR0, Cd::OR0, Cd::SH0, Cd::EPD0, Cd::ENDI, Cd::T1SZ, Cd::TG1,
                          Cd::IR1, Cd::OR1, Cd::SH1, Cd::EPD1, Cd::V, Cd::IPS, Cd::AFFD, Cd::WXN, Cd::UWXN,
                          Cd::TBI0, Cd::TBI1, Cd::PAN, Cd::AA64, Cd::HD, Cd::HA, Cd::S, Cd::R, Cd::A, Cd::ASET,
                          Cd::ASID));
  // Dword 0 is fully defined: TCR-like fields, V, and the CD's own.
  EXPECT_EQ(mask_of<0>(Cd::T0SZ, Cd::TG0, Cd::IR0, Cd::OR0, Cd::SH0, Cd::EPD0, Cd::ENDI, Cd::T1SZ, Cd::TG1, Cd::IR1,
                       Cd::OR1, Cd::SH1, Cd::EPD1, Cd::V, Cd::IPS, Cd::AFFD, Cd::WXN, Cd::UWXN, Cd::TBI0, Cd::TBI1,
                       Cd::PAN, Cd::AA64, Cd::HD, Cd::HA, Cd::S, Cd::R, Cd::A, Cd::ASET, Cd::ASID),
            ~0ULL);
}

// A nested STE as a guest driver writes it and the host installs it, worked out from IHI 0070 5.2:
// dword 0: V[0]=1, Config[3:1]=0b111, S1Fmt[5:4]=0, S1ContextPtr[51:6]=0x8000, S1CDMax[63:59]=0;
// dword 1: S1CIR[3:2]=WBRA, S1COR[5:4]=WBRA, S1CSH[7:6]=ISH;
// dword 2: S2VMID[15:0]=1, S2T0SZ[37:32]=24, S2SL0[39:38]=1, S2TG[47:46]=4K, S2PS[50:48]=48 bits,
//          S2AA64[51]=1; dword 3: S2TTB[51:4]=0x40000000.
TEST(SteEncoding, NestedSteHasTheSpecifiedDwords) {
  Ste ste{};
  ste.set(Ste::V, true)
      .set(Ste::Config, StreamConfig::nested)
      .set(Ste::S1Fmt, CdTableFormat::linear)
      .set(Ste::S1ContextPtr, 0x8000)
      .set(Ste::S1CIR, Cacheability::wbra)
      .set(Ste::S1COR, Cacheability::wbra)
      .set(Ste::S1CSH, Shareability::inner)
      .set(Ste::S2VMID, 1)
      .set(Ste::S2T0SZ, 24)
      .set(Ste::S2SL0, 1)
      .set(Ste::S2TG, 0)
      .set(Ste::S2PS, 5)
      .set(Ste::S2AA64, true)
      .set(Ste::S2TTB, 0x4000'0000);
  EXPECT_EQ(ste.dw[0], 0x800FULL);
  EXPECT_EQ(ste.dw[1], 0xD4ULL);
  EXPECT_EQ(ste.dw[2], 0x000D'0058'0000'0001ULL);
  EXPECT_EQ(ste.dw[3], 0x4000'0000ULL);
  for (std::size_t i = 4; i < 8; ++i) EXPECT_EQ(ste.dw[i], 0U);
}

// IHI 0070 5: structures are little-endian, so byte 0 of an STE holds V and Config.
TEST(SteEncoding, RoundTripsThroughLittleEndianBytes) {
  Ste ste{};
  ste.set(Ste::V, true).set(Ste::Config, StreamConfig::s2_translate).set(Ste::S2VMID, 0xBEEF)
      .set(Ste::S2TTB, 0x000F'FFFF'FFFF'FFF0ULL).set(Ste::S1CDMax, 31);
  const auto bytes = ste.to_bytes();
  EXPECT_EQ(std::to_integer<unsigned>(bytes[0]), 0x0DU);              // V=1, Config=0b110
  EXPECT_EQ(std::to_integer<unsigned>(bytes[7]), 31U << 3);           // S1CDMax in the top byte of dword 0
  EXPECT_EQ(std::to_integer<unsigned>(bytes[16]), 0xEFU);             // S2VMID low byte starts dword 2
  EXPECT_EQ(Ste::from_bytes(bytes), ste);
  EXPECT_EQ(ste.get(Ste::S2TTB), 0x000F'FFFF'FFFF'FFF0ULL);
  EXPECT_EQ(ste.get(Ste::S1CDMax), 31U);
}

// IHI 0070 5.2: S1ContextPtr is 64-byte aligned, S2TTB 16-byte aligned, both below bit 52.
TEST(SteEncoding, PointerFieldsRejectMisalignedOrWideAddresses) {
  EXPECT_TRUE(Ste::S1ContextPtr.fits(0x8000));
  EXPECT_FALSE(Ste::S1ContextPtr.fits(0x8020));
  EXPECT_FALSE(Ste::S1ContextPtr.fits(1ULL << 52));
  EXPECT_TRUE(Ste::S2TTB.fits(0x10));
  EXPECT_FALSE(Ste::S2TTB.fits(0x8));
  EXPECT_FALSE(Ste::S1CDMax.fits(32));
}

TEST(SteConfig, StagesFollowConfigBits) {
  EXPECT_TRUE(has_stage1(StreamConfig::s1_translate));
  EXPECT_FALSE(has_stage2(StreamConfig::s1_translate));
  EXPECT_TRUE(has_stage1(StreamConfig::nested) && has_stage2(StreamConfig::nested));
  EXPECT_FALSE(has_stage1(StreamConfig::bypass) || has_stage2(StreamConfig::bypass));
  EXPECT_TRUE(is_reserved(StreamConfig::reserved1));
  EXPECT_FALSE(is_reserved(StreamConfig::abort));
}

// A CD for a 48-bit VA space with 4KB pages, worked out from IHI 0070 5.4: T0SZ[5:0]=16, TG0[7:6]=0 (4KB),
// EPD1[30]=1, V[31]=1, IPS[34:32]=0b101 (48 bits), AA64[41]=1, R[45]=1, A[46]=1, ASID[63:48]=5.
TEST(CdEncoding, Dword0OfA48BitCdIsAsSpecified) {
  Cd cd{};
  cd.set(Cd::T0SZ, 16)
      .set(Cd::TG0, 0)
      .set(Cd::EPD1, true)
      .set(Cd::V, true)
      .set(Cd::IPS, 5)
      .set(Cd::AA64, true)
      .set(Cd::R, true)
      .set(Cd::A, true)
      .set(Cd::ASID, 5)
      .set(Cd::TTB0, 0x1'0000'0000ULL)
      .set(Cd::MAIR, 0x0000'0000'0044'ff04ULL);
  EXPECT_EQ(cd.dw[0], 0x0005'6205'C000'0010ULL);
  EXPECT_EQ(cd.dw[1], 0x1'0000'0000ULL);
  EXPECT_EQ(cd.dw[3], 0x44ff04ULL);
  EXPECT_EQ(Cd::from_bytes(cd.to_bytes()), cd);
  EXPECT_FALSE(Cd::TTB0.fits(0x1'0000'0008ULL));  // 16-byte aligned
}

// IHI 0070 5.1: L1STD Span[4:0] and L2Ptr[51:6]; Span 0 means invalid, else 2^(Span-1) STEs.
TEST(StreamTableL1Encoding, SpanAndL2Ptr) {
  StreamTableL1 l1{};
  l1.set(StreamTableL1::Span, 9).set(StreamTableL1::L2Ptr, 0x1'0000);
  EXPECT_EQ(l1.dw[0], 0x1'0009ULL);
  EXPECT_EQ(StreamTableL1::from_bytes(l1.to_bytes()), l1);
  EXPECT_FALSE(StreamTableL1::L2Ptr.fits(0x1'0020));
  EXPECT_EQ(StreamTableL1{}.get(StreamTableL1::Span), 0U);
}

// IHI 0070 5.3: L1CD V[0] and L2Ptr[51:12] (4KB-aligned level-2 tables).
TEST(CdTableL1Encoding, ValidAndL2Ptr) {
  CdTableL1 l1{};
  l1.set(CdTableL1::V, true).set(CdTableL1::L2Ptr, 0x5000);
  EXPECT_EQ(l1.dw[0], 0x5001ULL);
  EXPECT_EQ(CdTableL1::from_bytes(l1.to_bytes()), l1);
  EXPECT_FALSE(CdTableL1::L2Ptr.fits(0x5800));
  EXPECT_FALSE(CdTableL1::L2Ptr.fits(1ULL << 52));
}

}  // namespace
}  // namespace vsmmu::smmu
