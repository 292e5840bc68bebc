// SMMUv3 commands (IHI 0070 4 Commands): 16 bytes, opcode in bits [7:0] of dword 0. One Command record
// carries every field; the opcode table says which fields an opcode uses, so RES0 masks, decoding and
// printing derive from one definition.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "smmu/field.hpp"
#include "smmu/field_desc.hpp"

namespace vsmmu::smmu {

// IHI 0070 4.1.1. 0x80-0x8F are IMPLEMENTATION DEFINED; every value not listed is Reserved (CERROR_ILL).
enum class Opcode : std::uint8_t {
  PREFETCH_CONFIG = 0x01,
  PREFETCH_ADDR = 0x02,
  CFGI_STE = 0x03,
  CFGI_STE_RANGE = 0x04,  // CFGI_ALL is CFGI_STE_RANGE with Range = 31
  CFGI_CD = 0x05,
  CFGI_CD_ALL = 0x06,
  CFGI_VMS_PIDM = 0x07,
  TLBI_NH_ALL = 0x10,
  TLBI_NH_ASID = 0x11,
  TLBI_NH_VA = 0x12,
  TLBI_NH_VAA = 0x13,
  TLBI_EL3_ALL = 0x18,
  TLBI_EL3_VA = 0x1A,
  TLBI_EL2_ALL = 0x20,
  TLBI_EL2_ASID = 0x21,
  TLBI_EL2_VA = 0x22,
  TLBI_EL2_VAA = 0x23,
  TLBI_S12_VMALL = 0x28,
  TLBI_S2_IPA = 0x2A,
  TLBI_NSNH_ALL = 0x30,
  ATC_INV = 0x40,
  PRI_RESP = 0x41,
  RESUME = 0x44,
  STALL_TERM = 0x45,
  CMD_SYNC = 0x46,
  // Secure-only (IHI 0070 4.4.2.11-14, 4.4.3.3-4, 4.4.4.2): CERROR_ILL on the Non-secure queue.
  TLBI_S_EL2_ALL = 0x50,
  TLBI_S_EL2_ASID = 0x51,
  TLBI_S_EL2_VA = 0x52,
  TLBI_S_EL2_VAA = 0x53,
  TLBI_S_S12_VMALL = 0x58,
  TLBI_S_S2_IPA = 0x5A,
  TLBI_SNH_ALL = 0x60,
  // Device Permission Table maintenance (IHI 0070 4.6, SMMUv3.4): CERROR_ILL when IDR3.DPT == 0.
  DPTI_ALL = 0x70,
  DPTI_PA = 0x73,
};

enum class SyncCs : std::uint8_t { none = 0, irq = 1, sev = 2, reserved = 3 };
enum class PriResp : std::uint8_t { denied = 0, failure = 1, success = 2, reserved = 3 };
// CMD_RESUME's Action field as Linux names its values (CMDQ_RESUME_0_RESP_*); the architecture splits it into
// Ac (bit 12: 1 retry, 0 terminate) and Ab (bit 13: terminate with abort, else RAZ/WI unless
// IDR0.TERM_MODEL == 1), so `reserved` (Ac = Ab = 1) is a retry with Ab IGNORED (IHI 0070 4.7.1).
enum class ResumeAction : std::uint8_t { term = 0, retry = 1, abort = 2, reserved = 3 };

struct Command : Record<Command, 2> {
  // Dword 0
  static constexpr Field<0, 7, 0, smmu::Opcode> Opcode{};
  static constexpr Field<0, 9, 9, bool> Global{};  // ATC_INV
  static constexpr Field<0, 10, 10, bool> SSec{};  // PREFETCH_*, CFGI_*, RESUME, STALL_TERM (Secure stream)
  static constexpr Field<0, 11, 11, bool> SSV{};
  static constexpr Field<0, 13, 12, SyncCs> CS{};  // CMD_SYNC
  static constexpr Field<0, 13, 12, ResumeAction> Action{};   // RESUME
  static constexpr Field<0, 16, 12> NUM{};         // TLBI range: (NUM+1) * 2^SCALE granules
  static constexpr Field<0, 24, 20> SCALE{};       // bit 25 joins only with IDR5.DS == 1 (never advertised)
  static constexpr Field<0, 23, 22> MSH{};         // CMD_SYNC
  static constexpr Field<0, 27, 24> MSIAttr{};     // CMD_SYNC
  static constexpr Field<0, 31, 12> SSID{};
  static constexpr Field<0, 63, 32, std::uint32_t> SID{};
  static constexpr Field<0, 47, 32, std::uint16_t> VMID{};
  static constexpr Field<0, 63, 48, std::uint16_t> ASID{};
  static constexpr Field<0, 63, 32, std::uint32_t> MSIData{};
  // Dword 1
  static constexpr Field<1, 0, 0, bool> Leaf{};
  static constexpr Field<1, 4, 0> Range{};         // CFGI_STE_RANGE: 2^(Range+1) STEs from SID aligned down
  static constexpr Field<1, 4, 0> PrefetchSize{};  // PREFETCH_ADDR: 2^Size translations, Stride apart
  static constexpr Field<1, 9, 5> Stride{};        // PREFETCH_ADDR: 2^(12+Stride) bytes (IHI 0070 4.2.2)
  static constexpr Field<1, 5, 0> Size{};          // ATC_INV: 2^Size pages of 4KB (52: everything)
  static constexpr Field<1, 9, 8> TTL{};
  static constexpr Field<1, 11, 10> TG{};          // 0: none, 1: 4KB, 2: 16KB, 3: 64KB
  static constexpr Field<1, 8, 0> PRGIndex{};      // PRI_RESP
  static constexpr Field<1, 13, 12, smmu::PriResp> Resp{};  // PRI_RESP
  static constexpr Field<1, 15, 0, std::uint16_t> STAG{};  // RESUME
  static constexpr AddrField<1, 63, 12> Address{}; // TLBI_*_VA, ATC_INV, PREFETCH_ADDR
  static constexpr AddrField<1, 51, 12> IPA{};     // TLBI_S2_IPA
  static constexpr AddrField<1, 51, 2> MSIAddr{};  // CMD_SYNC

  // CFGI_ALL is CFGI_STE_RANGE with Range = 31 (IHI 0070 4.3.2, 4.3.6).
  static constexpr unsigned kCfgiAllRange = 31;
};

// What the architecture says about one opcode: its name and which bits it defines; every other bit is RES0.
struct OpcodeInfo {
  smmu::Opcode opcode;
  std::string_view name;
  std::uint64_t dw0_defined;  // includes the opcode field
  std::uint64_t dw1_defined;
  std::span<const FieldDesc> fields;  // the opcode's parameters in print order (the opcode itself excluded)
};

// The table of every opcode; nullopt for a value the architecture does not define (CERROR_ILL).
std::optional<OpcodeInfo> opcode_info(std::uint8_t opcode);
std::span<const OpcodeInfo> all_opcodes();
std::string_view opcode_name(Opcode op);  // "UNKNOWN" for undefined values

// Bits set in a command outside what its opcode defines (must be zero: RES0). Undefined opcode: all bits.
struct Res0Violation {
  std::uint64_t dw0 = 0;
  std::uint64_t dw1 = 0;
  constexpr explicit operator bool() const { return dw0 != 0 || dw1 != 0; }
};
Res0Violation res0_violation(const Command& cmd);

}  // namespace vsmmu::smmu
