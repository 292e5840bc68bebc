// Stream table entry and stream-table level-1 descriptor (IHI 0070 5.2 STE, 5.1 Level 1 Stream Table
// Descriptor), field names as the architecture writes them.
#pragma once

#include <cstdint>

#include "smmu/field.hpp"

namespace vsmmu::smmu {

enum class StreamConfig : std::uint8_t {  // STE.Config[3:1]; 0b001-0b011 are reserved
  abort = 0b000,
  reserved1 = 0b001,
  reserved2 = 0b010,
  reserved3 = 0b011,
  bypass = 0b100,
  s1_translate = 0b101,
  s2_translate = 0b110,
  nested = 0b111,
};
constexpr bool has_stage1(StreamConfig c) { return c == StreamConfig::s1_translate || c == StreamConfig::nested; }
constexpr bool has_stage2(StreamConfig c) { return c == StreamConfig::s2_translate || c == StreamConfig::nested; }
constexpr bool is_reserved(StreamConfig c) { return static_cast<unsigned>(c) >= 1 && static_cast<unsigned>(c) <= 3; }

enum class CdTableFormat : std::uint8_t { linear = 0, two_level_4k = 1, two_level_64k = 2, reserved = 3 };
enum class S1Dss : std::uint8_t { terminate = 0, bypass = 1, substream0 = 2, reserved = 3 };
enum class Eats : std::uint8_t { abort = 0, translate = 1, s1chk = 2, reserved = 3 };
enum class Strw : std::uint8_t { el1 = 0, el3 = 1, el2 = 2, el2_e2h = 3 };
enum class Shareability : std::uint8_t { non = 0, reserved = 1, outer = 2, inner = 3 };
enum class Cacheability : std::uint8_t { nc = 0, wbra = 1, wt = 2, wb = 3 };

struct Ste : Record<Ste, 8> {
  // Dword 0
  static constexpr Field<0, 0, 0, bool> V{};
  static constexpr Field<0, 3, 1, StreamConfig> Config{};
  static constexpr Field<0, 5, 4, CdTableFormat> S1Fmt{};
  static constexpr AddrField<0, 51, 6> S1ContextPtr{};
  static constexpr Field<0, 63, 59> S1CDMax{};
  // Dword 1
  static constexpr Field<1, 1, 0, S1Dss> S1DSS{};
  static constexpr Field<1, 3, 2, Cacheability> S1CIR{};
  static constexpr Field<1, 5, 4, Cacheability> S1COR{};
  static constexpr Field<1, 7, 6, Shareability> S1CSH{};
  static constexpr Field<1, 19, 19, bool> MEV{};
  static constexpr Field<1, 25, 25, bool> S2FWB{};
  static constexpr Field<1, 27, 27, bool> S1STALLD{};
  static constexpr Field<1, 29, 28, Eats> EATS{};
  static constexpr Field<1, 31, 30, Strw> STRW{};
  static constexpr Field<1, 45, 44> SHCFG{};
  // Dword 2
  static constexpr Field<2, 15, 0, std::uint16_t> S2VMID{};
  static constexpr Field<2, 37, 32> S2T0SZ{};  // VTCR[5:0]
  static constexpr Field<2, 39, 38> S2SL0{};   // VTCR[7:6]
  static constexpr Field<2, 41, 40, Cacheability> S2IR0{};
  static constexpr Field<2, 43, 42, Cacheability> S2OR0{};
  static constexpr Field<2, 45, 44, Shareability> S2SH0{};
  static constexpr Field<2, 47, 46> S2TG{};    // 0: 4KB, 1: 64KB, 2: 16KB (VTCR_EL2.TG0 encoding)
  static constexpr Field<2, 50, 48> S2PS{};    // same encoding as IDR5.OAS / CD.IPS
  static constexpr Field<2, 51, 51, bool> S2AA64{};
  static constexpr Field<2, 52, 52, bool> S2ENDI{};
  static constexpr Field<2, 53, 53, bool> S2AFFD{};
  static constexpr Field<2, 54, 54, bool> S2PTW{};
  static constexpr Field<2, 55, 55, bool> S2HD{};
  static constexpr Field<2, 56, 56, bool> S2HA{};
  static constexpr Field<2, 57, 57, bool> S2S{};
  static constexpr Field<2, 58, 58, bool> S2R{};
  // Dword 3
  static constexpr AddrField<3, 51, 4> S2TTB{};
};

// What a VMM may hand the host as a nested stream's vSTE (IOMMU_HWPT_DATA_ARM_SMMUV3): the words and bits the
// kernel lets userspace set (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c arm_smmu_validate_vste,
// STRTAB_STE_0_NESTING_ALLOWED / STRTAB_STE_1_NESTING_ALLOWED); any other bit is EIO. Words 2-7 must be zero.
inline constexpr std::uint64_t kNestingAllowedWord0 =
    mask_of<0>(Ste::V, Ste::Config, Ste::S1Fmt, Ste::S1ContextPtr, Ste::S1CDMax);
inline constexpr std::uint64_t kNestingAllowedWord1 =
    mask_of<1>(Ste::S1DSS, Ste::S1CIR, Ste::S1COR, Ste::S1CSH, Ste::S1STALLD, Ste::EATS);

// Level-1 stream table descriptor (8 bytes): Span[4:0], L2Ptr[51:6]. Span 0 means invalid; otherwise the
// level-2 table holds 2^(Span-1) STEs (IHI 0070 5.1, Span values above SPLIT+1 are reserved).
struct StreamTableL1 : Record<StreamTableL1, 1> {
  static constexpr Field<0, 4, 0> Span{};
  static constexpr AddrField<0, 51, 6> L2Ptr{};
};

// STRTAB_BASE_CFG.FMT
enum class StreamTableFormat : std::uint8_t { linear = 0, two_level = 1 };

}  // namespace vsmmu::smmu
