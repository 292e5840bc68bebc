// VMSAv8-64 translation-table formats (Arm ARM D8.3 "Translation table descriptor formats"): granules,
// descriptor fields for stage 1 and stage 2, and the encodings SMMU structures use to name them.
#pragma once

#include <cstdint>
#include <optional>

#include "smmu/field.hpp"

namespace vsmmu::smmu {

// Value is log2 of the granule size.
enum class Granule : std::uint8_t { k4K = 12, k16K = 14, k64K = 16 };
constexpr unsigned granule_shift(Granule g) { return static_cast<unsigned>(g); }
constexpr std::uint64_t granule_size(Granule g) { return 1ULL << granule_shift(g); }
// Bits of input address resolved per level: granule_shift - 3 (9, 11, 13).
constexpr unsigned bits_per_level(Granule g) { return granule_shift(g) - 3; }

// CD.TG0 and STE.S2TG use the TCR_ELx.TG0 encoding: 0 = 4KB, 1 = 64KB, 2 = 16KB, 3 reserved.
constexpr std::optional<Granule> granule_from_tg0(unsigned tg0) {
  switch (tg0) {
    case 0: return Granule::k4K;
    case 1: return Granule::k64K;
    case 2: return Granule::k16K;
    default: return std::nullopt;
  }
}
constexpr unsigned tg0_from_granule(Granule g) { return g == Granule::k4K ? 0 : g == Granule::k64K ? 1 : 2; }
// TLBI commands' TG field: 0 = no hint, 1 = 4KB, 2 = 16KB, 3 = 64KB (IHI 0070 4.4.1).
constexpr std::optional<Granule> granule_from_tlbi_tg(unsigned tg) {
  switch (tg) {
    case 1: return Granule::k4K;
    case 2: return Granule::k16K;
    case 3: return Granule::k64K;
    default: return std::nullopt;
  }
}
constexpr unsigned tlbi_tg_from_granule(Granule g) { return g == Granule::k4K ? 1 : g == Granule::k16K ? 2 : 3; }

// Physical/intermediate address size encoding of CD.IPS, STE.S2PS and IDR5.OAS.
constexpr std::optional<unsigned> address_bits_from_ps(unsigned ps) {
  constexpr unsigned bits[] = {32, 36, 40, 42, 44, 48, 52};
  if (ps < 7) return bits[ps];
  return std::nullopt;
}
constexpr std::optional<unsigned> ps_from_address_bits(unsigned bits) {
  for (unsigned ps = 0; ps < 7; ++ps)
    if (address_bits_from_ps(ps) == bits) return ps;
  return std::nullopt;
}

// ---- Walk geometry (Arm ARM J1.1.4 pseudocode, VMSAv8-64 with 64-bit descriptors, no FEAT_LPA2) ----

constexpr int kFinalLevel = 3;

// Mask of address bits [n-1:0].
constexpr std::uint64_t low_bits(unsigned n) { return n >= 64 ? ~0ULL : (1ULL << n) - 1; }

// log2 of the bytes one entry at `level` maps (page at level 3, block or next table above).
constexpr unsigned level_shift(Granule g, int level) {
  return granule_shift(g) + bits_per_level(g) * static_cast<unsigned>(kFinalLevel - level);
}

// Stage-1 start level for an input size (AArch64.S1StartLevel): 3 - ((iasize - 1 - granulebits) DIV stride).
// ia_bits must exceed the granule shift.
constexpr int s1_start_level(Granule g, unsigned ia_bits) {
  return kFinalLevel - static_cast<int>((ia_bits - 1 - granule_shift(g)) / bits_per_level(g));
}

// Entries of the start-level table: above one table's worth, the tables are concatenated (stage 2 only,
// at most 16, Arm ARM D8.2.x / AArch64.S2InconsistentSL).
constexpr std::uint64_t root_entries(Granule g, unsigned ia_bits, int start_level) {
  return 1ULL << (ia_bits - level_shift(g, start_level));
}

// Block descriptors (AArch64.BlockDescSupported without DS/D128): 4KB at levels 1 and 2, 16KB at level 2,
// 64KB at level 2, and at level 1 when the PA is 52 bits (FEAT_LPA, `lpa`).
constexpr bool block_allowed(Granule g, int level, bool lpa) {
  switch (g) {
    case Granule::k4K: return level == 1 || level == 2;
    case Granule::k16K: return level == 2;
    case Granule::k64K: return level == 2 || (level == 1 && lpa);
  }
  return false;
}

// STE.S2SL0 to start level (AArch64.S2StartLevel, VTCR_EL2.SL0 encoding). 4KB 0b11 is level 3 (FEAT_TTST,
// SMMU_IDR3.STT); 64KB 0b11 is reserved. Whether the level is usable is checked by stage2_params.
constexpr std::optional<int> s2_start_level(Granule g, unsigned sl0) {
  if (sl0 > 3) return std::nullopt;
  if (g == Granule::k4K) {
    constexpr int levels[] = {2, 1, 0, 3};
    return levels[sl0];
  }
  if (g == Granule::k64K && sl0 == 3) return std::nullopt;
  return 3 - static_cast<int>(sl0);
}
constexpr unsigned s2sl0_from_start_level(Granule g, int level) {
  if (g == Granule::k4K) return level == 3 ? 3U : static_cast<unsigned>(2 - level);
  return static_cast<unsigned>(3 - level);
}

// log2 of the start-level table size in bytes (its alignment): AArch64.S1TTBaseAddress / S2TTBaseAddress.
constexpr unsigned root_table_log2(Granule g, unsigned ia_bits, int start_level) {
  return ia_bits - level_shift(g, start_level) + 3;
}

// One 64-bit descriptor. Which fields apply depends on the stage and on whether it is a table, block or
// page descriptor at that level (Arm ARM D8.3.1, D8.3.2).
struct Descriptor : Record<Descriptor, 1> {
  static constexpr Field<0, 0, 0, bool> Valid{};
  static constexpr Field<0, 1, 1, bool> Table{};  // 1 at levels 0-2: table; at level 3: page. 0: block.
  // Lower attributes, stage 1
  static constexpr Field<0, 4, 2> AttrIndx{};
  static constexpr Field<0, 5, 5, bool> NS{};
  static constexpr Field<0, 6, 6, bool> AP1{};  // AP[1]: EL0 (unprivileged) access allowed
  static constexpr Field<0, 7, 7, bool> AP2{};  // AP[2]: read-only
  static constexpr Field<0, 9, 8> SH{};
  static constexpr Field<0, 10, 10, bool> AF{};
  static constexpr Field<0, 11, 11, bool> nG{};
  // Lower attributes, stage 2
  static constexpr Field<0, 5, 2> MemAttr{};
  static constexpr Field<0, 6, 6, bool> S2AP_R{};  // S2AP[0]: read allowed
  static constexpr Field<0, 7, 7, bool> S2AP_W{};  // S2AP[1]: write allowed
  // Upper attributes
  static constexpr Field<0, 51, 51, bool> DBM{};
  static constexpr Field<0, 52, 52, bool> Contiguous{};
  static constexpr Field<0, 53, 53, bool> PXN{};   // stage 1
  static constexpr Field<0, 54, 54, bool> UXN{};   // stage 1 (XN at EL2 regimes)
  static constexpr Field<0, 54, 53> S2XN{};        // stage 2 XN[1:0] (FEAT_XNX; bit 54 alone without it)
  // Table descriptor attributes, stage 1 hierarchical controls
  static constexpr Field<0, 59, 59, bool> PXNTable{};
  static constexpr Field<0, 60, 60, bool> UXNTable{};
  static constexpr Field<0, 62, 61> APTable{};
  // Output address / next-level table address, bits [47:G] in place; with the 64KB granule and 52-bit
  // addresses, OA[51:48] sit in descriptor bits [15:12] (FEAT_LPA).
  static constexpr AddrField<0, 47, 12> Address{};
  static constexpr Field<0, 15, 12> OA_51_48{};

  // The address a table, block or page descriptor at `level` holds: bits [47:n] in place, n the table
  // (granule) or leaf size, plus OA[51:48] from bits [15:12] with `lpa` (AArch64.NextTableBase,
  // AArch64.S1LeafBase). Bits below n are ignored.
  static constexpr std::uint64_t output_address(std::uint64_t desc, unsigned low_bit, bool lpa) {
    std::uint64_t a = Address.extract(desc) & ~((1ULL << low_bit) - 1);
    if (lpa) a |= OA_51_48.raw(desc) << 48;
    return a;
  }
  // Inserts an address (aligned to the granule, below 2^48, or 2^52 with `lpa`) the way output_address reads it.
  static constexpr std::uint64_t with_address(std::uint64_t desc, std::uint64_t addr, bool lpa) {
    std::uint64_t d = Address.insert(desc, addr & Address.mask);
    if (lpa) d = OA_51_48.insert(d, (addr >> 48) & OA_51_48.max);
    return d;
  }
};

}  // namespace vsmmu::smmu
