// Context descriptor and CD-table level-1 descriptor (IHI 0070 5.4 CD, 5.3 Level 1 Context Descriptor).
#pragma once

#include <cstdint>

#include "smmu/field.hpp"
#include "smmu/ste.hpp"

namespace vsmmu::smmu {

struct Cd : Record<Cd, 8> {
  // Dword 0 (TCR-like fields first, then the CD's own)
  static constexpr Field<0, 5, 0> T0SZ{};
  static constexpr Field<0, 7, 6> TG0{};  // 0: 4KB, 1: 64KB, 2: 16KB (TCR_EL1.TG0 encoding)
  static constexpr Field<0, 9, 8, Cacheability> IR0{};
  static constexpr Field<0, 11, 10, Cacheability> OR0{};
  static constexpr Field<0, 13, 12, Shareability> SH0{};
  static constexpr Field<0, 14, 14, bool> EPD0{};
  static constexpr Field<0, 15, 15, bool> ENDI{};
  static constexpr Field<0, 21, 16> T1SZ{};
  static constexpr Field<0, 23, 22> TG1{};  // TCR_EL1.TG1 encoding: 1: 16KB, 2: 4KB, 3: 64KB
  static constexpr Field<0, 25, 24, Cacheability> IR1{};
  static constexpr Field<0, 27, 26, Cacheability> OR1{};
  static constexpr Field<0, 29, 28, Shareability> SH1{};
  static constexpr Field<0, 30, 30, bool> EPD1{};
  static constexpr Field<0, 31, 31, bool> V{};
  static constexpr Field<0, 34, 32> IPS{};
  static constexpr Field<0, 35, 35, bool> AFFD{};
  static constexpr Field<0, 36, 36, bool> WXN{};
  static constexpr Field<0, 37, 37, bool> UWXN{};
  static constexpr Field<0, 38, 38, bool> TBI0{};
  static constexpr Field<0, 39, 39, bool> TBI1{};
  static constexpr Field<0, 40, 40, bool> PAN{};
  static constexpr Field<0, 41, 41, bool> AA64{};
  static constexpr Field<0, 42, 42, bool> HD{};
  static constexpr Field<0, 43, 43, bool> HA{};
  static constexpr Field<0, 44, 44, bool> S{};
  static constexpr Field<0, 45, 45, bool> R{};
  static constexpr Field<0, 46, 46, bool> A{};
  static constexpr Field<0, 47, 47, bool> ASET{};
  static constexpr Field<0, 63, 48, std::uint16_t> ASID{};
  // Dword 1
  static constexpr AddrField<1, 51, 4> TTB0{};
  // Dword 2
  static constexpr AddrField<2, 51, 4> TTB1{};
  // Dword 3
  static constexpr Field<3, 63, 0> MAIR{};
};

// Level-1 CD table descriptor (8 bytes): V(0), L2Ptr[51:12].
struct CdTableL1 : Record<CdTableL1, 1> {
  static constexpr Field<0, 0, 0, bool> V{};
  static constexpr AddrField<0, 51, 12> L2Ptr{};
};

}  // namespace vsmmu::smmu
