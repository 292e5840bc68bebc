// The SMMUv3 register file (IHI 0070 6.2 register map, 6.3 register formats): offsets of pages 0 and 1 and
// typed layouts of the registers vsmmu emulates. A 32-bit register lives in the low half of its word.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "smmu/field.hpp"
#include "smmu/ste.hpp"

namespace vsmmu::smmu {

// ---------------------------------------------------------------------------------------------------------
// Register map. Offsets are from the base of page 0; page 1 sits 64KB above it (IHI 0070 6.2).

enum class RegisterPage : std::uint8_t { page0 = 0, page1 = 1 };

struct RegisterInfo {
  std::string_view name;  // as the spec writes it, without the SMMU_ prefix
  std::uint32_t offset;   // from the page-0 base
  std::uint8_t width;     // 32 or 64 bits
  RegisterPage page;
};

inline constexpr std::uint32_t kPage1Offset = 0x10000;
inline constexpr std::uint32_t kRegisterSpace = 2 * kPage1Offset;  // pages 0 and 1

namespace regs {
constexpr RegisterInfo r32(std::string_view n, std::uint32_t o) { return {n, o, 32, RegisterPage::page0}; }
constexpr RegisterInfo r64(std::string_view n, std::uint32_t o) { return {n, o, 64, RegisterPage::page0}; }
constexpr RegisterInfo p1(std::string_view n, std::uint32_t o) { return {n, kPage1Offset + o, 32, RegisterPage::page1}; }

inline constexpr RegisterInfo IDR0 = r32("IDR0", 0x00);
inline constexpr RegisterInfo IDR1 = r32("IDR1", 0x04);
inline constexpr RegisterInfo IDR2 = r32("IDR2", 0x08);
inline constexpr RegisterInfo IDR3 = r32("IDR3", 0x0C);
inline constexpr RegisterInfo IDR4 = r32("IDR4", 0x10);
inline constexpr RegisterInfo IDR5 = r32("IDR5", 0x14);
inline constexpr RegisterInfo IIDR = r32("IIDR", 0x18);
inline constexpr RegisterInfo AIDR = r32("AIDR", 0x1C);
inline constexpr RegisterInfo CR0 = r32("CR0", 0x20);
inline constexpr RegisterInfo CR0ACK = r32("CR0ACK", 0x24);
inline constexpr RegisterInfo CR1 = r32("CR1", 0x28);
inline constexpr RegisterInfo CR2 = r32("CR2", 0x2C);
inline constexpr RegisterInfo STATUSR = r32("STATUSR", 0x40);
inline constexpr RegisterInfo GBPA = r32("GBPA", 0x44);
inline constexpr RegisterInfo AGBPA = r32("AGBPA", 0x48);
inline constexpr RegisterInfo IRQ_CTRL = r32("IRQ_CTRL", 0x50);
inline constexpr RegisterInfo IRQ_CTRLACK = r32("IRQ_CTRLACK", 0x54);
inline constexpr RegisterInfo GERROR = r32("GERROR", 0x60);
inline constexpr RegisterInfo GERRORN = r32("GERRORN", 0x64);
inline constexpr RegisterInfo GERROR_IRQ_CFG0 = r64("GERROR_IRQ_CFG0", 0x68);
inline constexpr RegisterInfo GERROR_IRQ_CFG1 = r32("GERROR_IRQ_CFG1", 0x70);
inline constexpr RegisterInfo GERROR_IRQ_CFG2 = r32("GERROR_IRQ_CFG2", 0x74);
inline constexpr RegisterInfo STRTAB_BASE = r64("STRTAB_BASE", 0x80);
inline constexpr RegisterInfo STRTAB_BASE_CFG = r32("STRTAB_BASE_CFG", 0x88);
inline constexpr RegisterInfo CMDQ_BASE = r64("CMDQ_BASE", 0x90);
inline constexpr RegisterInfo CMDQ_PROD = r32("CMDQ_PROD", 0x98);
inline constexpr RegisterInfo CMDQ_CONS = r32("CMDQ_CONS", 0x9C);
inline constexpr RegisterInfo EVENTQ_BASE = r64("EVENTQ_BASE", 0xA0);
inline constexpr RegisterInfo EVENTQ_IRQ_CFG0 = r64("EVENTQ_IRQ_CFG0", 0xB0);
inline constexpr RegisterInfo EVENTQ_IRQ_CFG1 = r32("EVENTQ_IRQ_CFG1", 0xB8);
inline constexpr RegisterInfo EVENTQ_IRQ_CFG2 = r32("EVENTQ_IRQ_CFG2", 0xBC);
inline constexpr RegisterInfo PRIQ_BASE = r64("PRIQ_BASE", 0xC0);
inline constexpr RegisterInfo PRIQ_IRQ_CFG0 = r64("PRIQ_IRQ_CFG0", 0xD0);
inline constexpr RegisterInfo PRIQ_IRQ_CFG1 = r32("PRIQ_IRQ_CFG1", 0xD8);
inline constexpr RegisterInfo PRIQ_IRQ_CFG2 = r32("PRIQ_IRQ_CFG2", 0xDC);
inline constexpr RegisterInfo GATOS_CTRL = r32("GATOS_CTRL", 0x100);
inline constexpr RegisterInfo GATOS_SID = r64("GATOS_SID", 0x108);
inline constexpr RegisterInfo GATOS_ADDR = r64("GATOS_ADDR", 0x110);
inline constexpr RegisterInfo GATOS_PAR = r64("GATOS_PAR", 0x118);
// Page 1 (IHI 0070 6.3.95-98): the event and PRI queue indexes, apart so they can be mapped to a guest alone.
inline constexpr RegisterInfo EVENTQ_PROD = p1("EVENTQ_PROD", 0xA8);
inline constexpr RegisterInfo EVENTQ_CONS = p1("EVENTQ_CONS", 0xAC);
inline constexpr RegisterInfo PRIQ_PROD = p1("PRIQ_PROD", 0xC8);
inline constexpr RegisterInfo PRIQ_CONS = p1("PRIQ_CONS", 0xCC);
}  // namespace regs

// Every register above, by offset.
std::span<const RegisterInfo> all_registers();
// The register an access at `offset` falls in (either half of a 64-bit register); nullopt for a hole.
std::optional<RegisterInfo> register_info(std::uint32_t offset);

// ---------------------------------------------------------------------------------------------------------
// Register layouts.

// A 32-bit register value; the upper half of the word is always zero.
template <class D>
struct Reg32 : Record<D, 1> {
  static constexpr D of(std::uint32_t v) {
    D d{};
    d.dw[0] = v;
    return d;
  }
  constexpr std::uint32_t value() const { return static_cast<std::uint32_t>(this->dw[0]); }
};
template <class D>
struct Reg64 : Record<D, 1> {
  static constexpr D of(std::uint64_t v) {
    D d{};
    d.dw[0] = v;
    return d;
  }
  constexpr std::uint64_t value() const { return this->dw[0]; }
};

enum class Ttf : std::uint8_t { reserved = 0, aarch32 = 1, aarch64 = 2, aarch32_aarch64 = 3 };
enum class Httu : std::uint8_t { none = 0, access = 1, access_dirty = 2, access_dirty_table = 3 };
enum class TtEndian : std::uint8_t { mixed = 0, reserved = 1, little = 2, big = 3 };
enum class StallModel : std::uint8_t { stall_and_terminate = 0, terminate = 1, stall_forced = 2, reserved = 3 };
enum class StLevel : std::uint8_t { linear = 0, two_level = 1, reserved2 = 2, reserved3 = 3 };
// IDR5.OAS, also the encoding of CD.IPS and STE.S2PS.
enum class Oas : std::uint8_t { bits32 = 0, bits36 = 1, bits40 = 2, bits42 = 3, bits44 = 4, bits48 = 5,
                                bits52 = 6, bits56 = 7 };
enum class Vax : std::uint8_t { va48 = 0, va52 = 1, va56 = 2, reserved = 3 };

// Address size in bits for an OAS/IPS/PS encoding (IHI 0070 6.3.6); 0b111 is 56 bits from SMMUv3.4.
constexpr unsigned address_bits(Oas oas) {
  constexpr unsigned kBits[] = {32, 36, 40, 42, 44, 48, 52, 56};
  return kBits[static_cast<unsigned>(oas) & 7];
}
// The encoding for an address size, if the architecture has one.
constexpr std::optional<Oas> oas_for_bits(unsigned bits) {
  for (unsigned e = 0; e < 8; ++e)
    if (address_bits(static_cast<Oas>(e)) == bits) return static_cast<Oas>(e);
  return std::nullopt;
}

struct Idr0 : Reg32<Idr0> {  // IHI 0070 6.3.1
  static constexpr Field<0, 0, 0, bool> S2P{};
  static constexpr Field<0, 1, 1, bool> S1P{};
  static constexpr Field<0, 3, 2, smmu::Ttf> TTF{};
  static constexpr Field<0, 4, 4, bool> COHACC{};
  static constexpr Field<0, 5, 5, bool> BTM{};
  static constexpr Field<0, 7, 6, smmu::Httu> HTTU{};
  static constexpr Field<0, 8, 8, bool> DORMHINT{};
  static constexpr Field<0, 9, 9, bool> Hyp{};
  static constexpr Field<0, 10, 10, bool> ATS{};
  static constexpr Field<0, 11, 11, bool> NS1ATS{};
  static constexpr Field<0, 12, 12, bool> ASID16{};
  static constexpr Field<0, 13, 13, bool> MSI{};
  static constexpr Field<0, 14, 14, bool> SEV{};
  static constexpr Field<0, 15, 15, bool> ATOS{};
  static constexpr Field<0, 16, 16, bool> PRI{};
  static constexpr Field<0, 17, 17, bool> VMW{};
  static constexpr Field<0, 18, 18, bool> VMID16{};
  static constexpr Field<0, 19, 19, bool> CD2L{};
  static constexpr Field<0, 20, 20, bool> VATOS{};
  static constexpr Field<0, 22, 21, smmu::TtEndian> TTENDIAN{};
  static constexpr Field<0, 23, 23, bool> ATSRECERR{};
  static constexpr Field<0, 25, 24, smmu::StallModel> STALL_MODEL{};
  static constexpr Field<0, 26, 26, bool> TERM_MODEL{};
  static constexpr Field<0, 28, 27, smmu::StLevel> ST_LEVEL{};
  static constexpr Field<0, 30, 30, bool> RME_IMPL{};
};

struct Idr1 : Reg32<Idr1> {  // IHI 0070 6.3.2
  static constexpr Field<0, 5, 0> SIDSIZE{};
  static constexpr Field<0, 10, 6> SSIDSIZE{};
  static constexpr Field<0, 15, 11> PRIQS{};
  static constexpr Field<0, 20, 16> EVENTQS{};
  static constexpr Field<0, 25, 21> CMDQS{};
  static constexpr Field<0, 26, 26, bool> ATTR_PERMS_OVR{};
  static constexpr Field<0, 27, 27, bool> ATTR_TYPES_OVR{};
  static constexpr Field<0, 28, 28, bool> REL{};
  static constexpr Field<0, 29, 29, bool> QUEUES_PRESET{};
  static constexpr Field<0, 30, 30, bool> TABLES_PRESET{};
  static constexpr Field<0, 31, 31, bool> ECMDQ{};
};

struct Idr2 : Reg32<Idr2> {  // IHI 0070 6.3.3
  static constexpr Field<0, 9, 0> BA_VATOS{};
};

struct Idr3 : Reg32<Idr3> {  // IHI 0070 6.3.4
  static constexpr Field<0, 2, 2, bool> HAD{};
  static constexpr Field<0, 3, 3, bool> PBHA{};
  static constexpr Field<0, 4, 4, bool> XNX{};
  static constexpr Field<0, 5, 5, bool> PPS{};
  static constexpr Field<0, 7, 7, bool> MPAM{};
  static constexpr Field<0, 8, 8, bool> FWB{};
  static constexpr Field<0, 9, 9, bool> STT{};
  static constexpr Field<0, 10, 10, bool> RIL{};
  static constexpr Field<0, 12, 11> BBML{};  // break-before-make level: 0, 1 or 2
  static constexpr Field<0, 13, 13, bool> E0PD{};
  static constexpr Field<0, 14, 14, bool> PTWNNC{};
  static constexpr Field<0, 15, 15, bool> DPT{};
  static constexpr Field<0, 16, 16, bool> PASIDTT{};
  static constexpr Field<0, 17, 17, bool> EPAN{};
  static constexpr Field<0, 18, 18, bool> S1PI{};
  static constexpr Field<0, 19, 19, bool> S2PI{};
  static constexpr Field<0, 20, 20, bool> S2PO{};
  static constexpr Field<0, 21, 21, bool> THE{};
  static constexpr Field<0, 22, 22, bool> MTEPERM{};
  static constexpr Field<0, 23, 23, bool> AIE{};
};

struct Idr4 : Reg32<Idr4> {};  // IMPLEMENTATION DEFINED (IHI 0070 6.3.5)

struct Idr5 : Reg32<Idr5> {  // IHI 0070 6.3.6
  static constexpr Field<0, 2, 0, smmu::Oas> OAS{};
  static constexpr Field<0, 4, 4, bool> GRAN4K{};
  static constexpr Field<0, 5, 5, bool> GRAN16K{};
  static constexpr Field<0, 6, 6, bool> GRAN64K{};
  static constexpr Field<0, 7, 7, bool> DS{};
  static constexpr Field<0, 8, 8, bool> D128{};
  static constexpr Field<0, 11, 10, smmu::Vax> VAX{};
  static constexpr Field<0, 31, 16, std::uint16_t> STALL_MAX{};

  constexpr unsigned oas_bits() const { return address_bits(get(OAS)); }
};

struct Iidr : Reg32<Iidr> {  // IHI 0070 6.3.7
  static constexpr Field<0, 11, 0> Implementer{};  // JEP106 code of the implementer
  static constexpr Field<0, 15, 12> Revision{};
  static constexpr Field<0, 19, 16> Variant{};
  static constexpr Field<0, 31, 20> ProductID{};
};

struct Aidr : Reg32<Aidr> {  // IHI 0070 6.3.8: SMMUv3.<ArchMinorRev> when ArchMajorRev == 0
  static constexpr Field<0, 3, 0> ArchMinorRev{};
  static constexpr Field<0, 7, 4> ArchMajorRev{};
};

// CR0 and CR0ACK share a layout (IHI 0070 6.3.9, 6.3.10).
struct Cr0 : Reg32<Cr0> {
  static constexpr Field<0, 0, 0, bool> SMMUEN{};
  static constexpr Field<0, 1, 1, bool> PRIQEN{};
  static constexpr Field<0, 2, 2, bool> EVENTQEN{};
  static constexpr Field<0, 3, 3, bool> CMDQEN{};
  static constexpr Field<0, 4, 4, bool> ATSCHK{};
  static constexpr Field<0, 8, 6> VMW{};
  static constexpr Field<0, 10, 10, bool> DPT_WALK_EN{};
};

// CR1 cacheability does not follow the TCR encoding: 1 is write-back, 2 write-through (IHI 0070 6.3.11).
enum class Cr1Cache : std::uint8_t { nc = 0, wb = 1, wt = 2, reserved = 3 };
struct Cr1 : Reg32<Cr1> {
  static constexpr Field<0, 1, 0, Cr1Cache> QUEUE_IC{};
  static constexpr Field<0, 3, 2, Cr1Cache> QUEUE_OC{};
  static constexpr Field<0, 5, 4, Shareability> QUEUE_SH{};
  static constexpr Field<0, 7, 6, Cr1Cache> TABLE_IC{};
  static constexpr Field<0, 9, 8, Cr1Cache> TABLE_OC{};
  static constexpr Field<0, 11, 10, Shareability> TABLE_SH{};
};

struct Cr2 : Reg32<Cr2> {  // IHI 0070 6.3.12
  static constexpr Field<0, 0, 0, bool> E2H{};
  static constexpr Field<0, 1, 1, bool> RECINVSID{};
  static constexpr Field<0, 2, 2, bool> PTM{};
  static constexpr Field<0, 3, 3, bool> REC_CFG_ATS{};
};

struct Statusr : Reg32<Statusr> {  // IHI 0070 6.3.13
  static constexpr Field<0, 0, 0, bool> DORMANT{};
};

// Global bypass attributes, used while SMMUEN == 0 (IHI 0070 6.3.14).
struct Gbpa : Reg32<Gbpa> {
  static constexpr Field<0, 3, 0> MemAttr{};
  static constexpr Field<0, 4, 4, bool> MTCFG{};
  static constexpr Field<0, 11, 8> ALLOCCFG{};
  static constexpr Field<0, 13, 12> SHCFG{};    // 0 NSH, 1 use incoming, 2 OSH, 3 ISH
  static constexpr Field<0, 17, 16> PRIVCFG{};
  static constexpr Field<0, 19, 18> INSTCFG{};
  static constexpr Field<0, 20, 20, bool> ABORT{};
  static constexpr Field<0, 31, 31, bool> Update{};
};

// IRQ_CTRL and IRQ_CTRLACK (IHI 0070 6.3.16, 6.3.18).
struct IrqCtrl : Reg32<IrqCtrl> {
  static constexpr Field<0, 0, 0, bool> GERROR_IRQEN{};
  static constexpr Field<0, 1, 1, bool> PRIQ_IRQEN{};
  static constexpr Field<0, 2, 2, bool> EVENTQ_IRQEN{};
};

// GERROR and GERRORN: an error is active while its bits differ (IHI 0070 6.3.19, 6.3.20, 7.5). The spec
// spells the event-queue bits EVENTQ_ABT_ERR / MSI_EVENTQ_ABT_ERR; the short forms follow Linux.
struct Gerror : Reg32<Gerror> {
  static constexpr Field<0, 0, 0, bool> CMDQ_ERR{};
  static constexpr Field<0, 2, 2, bool> EVTQ_ABT_ERR{};
  static constexpr Field<0, 3, 3, bool> PRIQ_ABT_ERR{};
  static constexpr Field<0, 4, 4, bool> MSI_CMDQ_ABT_ERR{};
  static constexpr Field<0, 5, 5, bool> MSI_EVTQ_ABT_ERR{};
  static constexpr Field<0, 6, 6, bool> MSI_PRIQ_ABT_ERR{};
  static constexpr Field<0, 7, 7, bool> MSI_GERROR_ABT_ERR{};
  static constexpr Field<0, 8, 8, bool> SFM_ERR{};
  static constexpr Field<0, 9, 9, bool> CMDQP_ERR{};  // GERROR only: ECMDQ page errors
  static constexpr Field<0, 10, 10, bool> DPT_ERR{};

  // Every error bit GERRORN can acknowledge.
  static constexpr std::uint32_t kErrorMask = static_cast<std::uint32_t>(
      mask_of<0>(CMDQ_ERR, EVTQ_ABT_ERR, PRIQ_ABT_ERR, MSI_CMDQ_ABT_ERR, MSI_EVTQ_ABT_ERR, MSI_PRIQ_ABT_ERR,
                 MSI_GERROR_ABT_ERR, SFM_ERR, DPT_ERR));
  // Errors raised and not yet acknowledged through GERRORN.
  static constexpr Gerror active(Gerror gerror, Gerror gerrorn) {
    return of((gerror.value() ^ gerrorn.value()) & kErrorMask);
  }
};

// STRTAB_BASE: Read-Allocate hint and the table address (IHI 0070 6.3.24).
struct StrtabBase : Reg64<StrtabBase> {
  static constexpr AddrField<0, 51, 6> ADDR{};
  static constexpr Field<0, 62, 62, bool> RA{};
};

struct StrtabBaseCfg : Reg32<StrtabBaseCfg> {  // IHI 0070 6.3.25
  static constexpr Field<0, 5, 0> LOG2SIZE{};   // log2 of the number of StreamIDs covered
  static constexpr Field<0, 10, 6> SPLIT{};     // 2-level: StreamID bits resolved by a level-2 table
  static constexpr Field<0, 17, 16, StreamTableFormat> FMT{};
};

// CMDQ_BASE / EVENTQ_BASE / PRIQ_BASE (IHI 0070 6.3.26, 6.3.29, 6.3.33). Bit 62 is RA for the command
// queue, which the SMMU reads, and WA for the queues it writes.
struct QueueBase : Reg64<QueueBase> {
  static constexpr Field<0, 4, 0> LOG2SIZE{};   // log2 of the number of entries, capped by IDR1.xQS
  static constexpr AddrField<0, 51, 5> ADDR{};
  static constexpr Field<0, 62, 62, bool> RA{};
  static constexpr Field<0, 62, 62, bool> WA{};
};

// Command-queue error codes in CMDQ_CONS.ERR (IHI 0070 7.1).
enum class Cerror : std::uint8_t { none = 0, ill = 1, abt = 2, atc_inv_sync = 3 };

// A queue's PROD register: CMDQ_PROD, EVENTQ_PROD, PRIQ_PROD (IHI 0070 6.3.27, 6.3.95, 6.3.97).
struct QueueProd : Reg32<QueueProd> {
  static constexpr Field<0, 19, 0, std::uint32_t> WR{};   // index and wrap bit, split by LOG2SIZE (QueueIndex)
  static constexpr Field<0, 31, 31, bool> OVFLG{};        // EVENTQ/PRIQ: overflowed (toggles); RES0 for CMDQ
};
// A queue's CONS register: CMDQ_CONS, EVENTQ_CONS, PRIQ_CONS (IHI 0070 6.3.28, 6.3.96, 6.3.98).
struct QueueCons : Reg32<QueueCons> {
  static constexpr Field<0, 19, 0, std::uint32_t> RD{};
  static constexpr Field<0, 30, 24, Cerror> ERR{};        // CMDQ only
  static constexpr Field<0, 31, 31, bool> OVACKFLG{};     // EVENTQ/PRIQ: overflow acknowledged
};

// The WR/RD value of a queue of 2^log2size entries: an index in bits [log2size-1:0] and a wrap bit at
// [log2size] (IHI 0070 3.5.1). With log2size == 0 the queue has one entry and bit 0 is the wrap bit.
struct QueueIndex {
  unsigned log2size = 0;  // at most 19: WR/RD are 20 bits wide

  constexpr std::uint32_t entries() const { return 1U << log2size; }
  constexpr std::uint32_t index_mask() const { return entries() - 1; }
  constexpr std::uint32_t mask() const { return (entries() << 1) - 1; }  // index and wrap
  constexpr std::uint32_t index(std::uint32_t p) const { return p & index_mask(); }
  constexpr bool wrap(std::uint32_t p) const { return ((p >> log2size) & 1U) != 0; }
  // p advanced by n entries, the wrap bit toggling each time the index passes the end.
  constexpr std::uint32_t advance(std::uint32_t p, std::uint32_t n = 1) const { return (p + n) & mask(); }
  constexpr bool empty(std::uint32_t prod, std::uint32_t cons) const { return ((prod ^ cons) & mask()) == 0; }
  constexpr bool full(std::uint32_t prod, std::uint32_t cons) const { return ((prod ^ cons) & mask()) == entries(); }
  // Entries between cons and prod (those produced and not yet consumed).
  constexpr std::uint32_t count(std::uint32_t prod, std::uint32_t cons) const { return (prod - cons) & mask(); }
};

// GERROR_IRQ_CFG0 / EVENTQ_IRQ_CFG0 / PRIQ_IRQ_CFG0: the MSI target address (IHI 0070 6.3.21).
struct IrqCfg0 : Reg64<IrqCfg0> {
  static constexpr AddrField<0, 51, 2> ADDR{};
};
// *_IRQ_CFG1: the MSI payload (IHI 0070 6.3.22).
struct IrqCfg1 : Reg32<IrqCfg1> {
  static constexpr Field<0, 31, 0, std::uint32_t> DATA{};
};
// *_IRQ_CFG2: the MSI write's attributes (IHI 0070 6.3.23, 6.3.36).
struct IrqCfg2 : Reg32<IrqCfg2> {
  static constexpr Field<0, 3, 0> MemAttr{};
  static constexpr Field<0, 5, 4, Shareability> SH{};
  static constexpr Field<0, 31, 31, bool> LO{};  // PRIQ only: interrupt only for a PRI message with L set
};

// The identification registers (IHI 0070 6.3.1-6.3.8).
struct IdRegisters {
  Idr0 idr0;
  Idr1 idr1;
  Idr2 idr2;
  Idr3 idr3;
  Idr4 idr4;
  Idr5 idr5;
  Iidr iidr;
  Aidr aidr;
};

}  // namespace vsmmu::smmu
