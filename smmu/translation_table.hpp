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
};

}  // namespace vsmmu::smmu
