// VMSAv8-64 translation-table walker for the SMMU's stage 1 (configured by a CD) and stage 2 (configured
// by an STE), with nested walks where stage-1 table addresses are IPAs translated by stage 2, and the
// hardware access-flag / dirty-state updates of HTTU (Arm ARM D8.4, D8.5; IHI 0070 3.13).
#pragma once

#include <cstdint>
#include <expected>

#include "smmu/cd.hpp"
#include "smmu/memory.hpp"
#include "smmu/ste.hpp"
#include "smmu/translation_table.hpp"

namespace vsmmu::smmu {

// What the SMMU implements, from its ID registers, that bounds a walk's configuration.
struct WalkCapabilities {
  unsigned oas_bits = 48;             // IDR5.OAS
  bool gran4k = true, gran16k = true, gran64k = true;  // IDR5.GRAN*
  bool httu_access = false;           // IDR0.HTTU >= 1
  bool httu_dirty = false;            // IDR0.HTTU == 2
  bool vax = false;                   // IDR5.VAX: 52-bit VA with 64KB granule
  bool stt = false;                   // IDR3.STT: small translation tables (TxSZ up to 48/47)
  bool xnx = false;                   // IDR3.XNX: stage-2 XN[1:0] distinguishes privileged/unprivileged
};

struct Stage1Params {
  unsigned t0sz = 0;
  Granule granule = Granule::k4K;
  unsigned ips_bits = 48;             // min(CD.IPS, OAS)
  std::uint64_t ttb = 0;              // TTB0 (an IPA in nested mode)
  unsigned start_level = 0;           // derived from t0sz and granule
  bool epd0 = false;                  // TTB0 walks disabled: every VA faults (translation)
  bool affd = false;                  // AF=0 does not fault
  bool ha = false;                    // hardware access flag updates (CD.HA and HTTU)
  bool hd = false;                    // hardware dirty state (CD.HD and HTTU=2, needs ha)
  bool wxn = false;
  bool tbi = false;                   // CD.TBI0: VA[63:56] ignored
  bool pan = false;                   // CD.PAN: privileged data accesses to unprivileged-accessible pages fault
  bool lpa = false;                   // 64KB granule and OAS 52: descriptors carry OA[51:48] in bits [15:12]
  std::uint16_t asid = 0;
};

struct Stage2Params {
  unsigned t0sz = 0;
  Granule granule = Granule::k4K;
  unsigned ps_bits = 48;              // min(STE.S2PS, OAS)
  std::uint64_t ttb = 0;              // S2TTB (a PA)
  unsigned start_level = 0;           // derived from S2SL0, granule (and t0sz for consistency checks)
  bool affd = false;
  bool ha = false;                    // STE.S2HA and HTTU
  bool hd = false;                    // STE.S2HD and HTTU=2
  bool xnx = false;                   // XN is descriptor bits [54:53] (IDR3.XNX), else bit 54 alone
  bool lpa = false;                   // 64KB granule and OAS 52: descriptors carry OA[51:48] in bits [15:12]
  std::uint16_t vmid = 0;
};

// Why a configuration cannot be used: the SMMU answers with C_BAD_CD or C_BAD_STE.
struct ConfigError {
  const char* field;                  // "T0SZ", "TG0", "S2SL0" ...
  const char* reason;                 // why, readable
};

// Decodes and checks a CD's stage-1 fields against what the SMMU implements (IHI 0070 5.4).
std::expected<Stage1Params, ConfigError> stage1_params(const Cd& cd, const WalkCapabilities& caps);
// Decodes and checks an STE's stage-2 fields (IHI 0070 5.2; Arm ARM D8.2 VTCR_EL2.SL0 rules).
std::expected<Stage2Params, ConfigError> stage2_params(const Ste& ste, const WalkCapabilities& caps);

struct AccessType {
  bool write = false;
  bool instruction = false;
  bool privileged = false;            // PnU
};

enum class FaultType : std::uint8_t { translation, address_size, access, permission, walk_eabt };

struct WalkFault {
  FaultType type = FaultType::translation;
  bool stage2 = false;                // the fault was taken at stage 2 (event S2 bit)
  bool on_table_walk = false;         // a stage-2 fault on the address of a stage-1 descriptor (CLASS=TT)
  bool table_write = false;           // that stage-1 descriptor access was an HTTU update (TTRnW=0)
  int level = 0;                      // level of the descriptor that faulted; 0 for an input address out of
                                      // range, EPD0 and a bad descriptor address at the start level (as the
                                      // Arm ARM pseudocode reports them)
  std::uint64_t ipa = 0;              // stage-2 faults: the IPA being translated
  std::uint64_t fetch_address = 0;    // walk_eabt: the PA of the descriptor fetch that aborted
};

struct Permissions {
  bool read = false;
  bool write = false;
  bool execute = false;
};

struct Translation {
  std::uint64_t output = 0;           // translated address of the input
  unsigned size_log2 = 12;            // the leaf maps 2^size_log2 bytes around the input
  int level = 3;                      // level of the leaf
  Permissions perm;                   // for the access type's privilege, after HTTU updates
  bool write_needs_dirty = false;     // writable only through a DBM dirty-state update (not yet done)
  std::uint64_t descriptor_address = 0;  // PA of the leaf (for nested stage 1: after stage 2)
  std::uint64_t descriptor = 0;       // the leaf as it is now in memory (after any HTTU update)
  std::uint64_t ipa = 0;              // nested(): the intermediate address (the stage-1 output)
};

class Walker {
 public:
  explicit Walker(PhysicalMemory& mem) : mem_(mem) {}

  // Stage 2 alone: IPA -> PA.
  std::expected<Translation, WalkFault> stage2(const Stage2Params& s2, std::uint64_t ipa, AccessType access);
  // Stage 1: VA -> output address (PA, or IPA when s2 is given). With s2, every stage-1 descriptor address
  // is an IPA translated by stage 2 first (nested); an HTTU update of a stage-1 descriptor needs stage-2
  // write permission on its page.
  std::expected<Translation, WalkFault> stage1(const Stage1Params& s1, std::uint64_t va, AccessType access,
                                               const Stage2Params* s2 = nullptr);
  // Both stages: VA -> PA. The result's size is the smaller of the two leaves, permissions their
  // intersection; level, descriptor and descriptor_address are stage 1's.
  std::expected<Translation, WalkFault> nested(const Stage1Params& s1, const Stage2Params& s2, std::uint64_t va,
                                               AccessType access);

  // Descriptor fetches made since construction (for tests and the benchmark's counters).
  std::uint64_t descriptor_reads() const { return descriptor_reads_; }

 private:
  struct Regime;
  struct LeafRef;
  std::expected<LeafRef, WalkFault> walk_levels(const Regime& r, std::uint64_t ia, const Stage2Params* tables_s2);
  std::expected<Translation, WalkFault> translate(const Regime& r, std::uint64_t ia, AccessType access,
                                                  const Stage2Params* tables_s2);

  PhysicalMemory& mem_;
  std::uint64_t descriptor_reads_ = 0;
};

}  // namespace vsmmu::smmu
