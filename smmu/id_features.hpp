// The one decoder of the SMMUv3 identification registers (IHI 0070 6.3.1-6.3.8): each field a reader of the ID
// registers needs, by the name the spec gives it, read out of IDR0, IDR1, IDR3, IDR5, IIDR and AIDR once.
// What a field means to a given reader (a driver's feature flags, the kernel's nesting rules, the probe's
// verdict, the vSMMU's advertised registers) is that reader's business, built on these values.
#pragma once

#include <cstdint>

#include "smmu/registers.hpp"
#include "smmu/translation_table.hpp"

namespace vsmmu::smmu {

struct IdFeatures {
  // IDR0 (IHI 0070 6.3.1)
  bool s2p = false;      // S2P: stage-2 translation
  bool s1p = false;      // S1P: stage-1 translation
  Ttf ttf = Ttf::reserved;
  bool cohacc = false;   // COHACC: coherent access to tables, queues and MSIs
  Httu httu = Httu::none;
  bool hyp = false;      // Hyp: EL2 (and EL2-E2H) translation regimes
  bool ats = false;
  bool asid16 = false;
  bool msi = false;
  bool pri = false;
  bool vmid16 = false;
  bool cd2l = false;     // CD2L: 2-level CD tables
  TtEndian ttendian = TtEndian::mixed;
  StallModel stall_model = StallModel::stall_and_terminate;
  bool term_model = false;  // TERM_MODEL: 1 = a terminated transaction always aborts (no RAZ/WI)
  StLevel st_level = StLevel::linear;

  // IDR1 (IHI 0070 6.3.2)
  unsigned sidsize = 0;   // SIDSIZE: StreamID bits
  unsigned ssidsize = 0;  // SSIDSIZE: SubstreamID bits; 0 means no substreams
  unsigned eventqs = 0;   // EVENTQS: log2 of the event queue's maximum entries
  unsigned cmdqs = 0;     // CMDQS: log2 of the command queue's maximum entries
  bool attr_types_ovr = false;
  bool rel = false;            // REL: base addresses are relative (with TABLES_PRESET/QUEUES_PRESET)
  bool queues_preset = false;
  bool tables_preset = false;

  // IDR3 (IHI 0070 6.3.4)
  bool fwb = false;       // FWB: STE.S2FWB is supported
  bool ril = false;       // RIL: range-based invalidation and the TTL hint
  unsigned bbml = 0;      // BBML: break-before-make level, 0 to 2

  // IDR5 (IHI 0070 6.3.6)
  Oas oas = Oas::bits32;
  bool gran4k = false, gran16k = false, gran64k = false;  // GRAN4K, GRAN16K, GRAN64K
  Vax vax = Vax::va48;

  // IIDR (IHI 0070 6.3.7)
  std::uint32_t implementer = 0;  // JEP106 code
  std::uint32_t revision = 0;
  std::uint32_t variant = 0;
  std::uint32_t product_id = 0;

  // AIDR (IHI 0070 6.3.8): SMMUv3.<arch_minor_rev> when arch_major_rev is 0.
  unsigned arch_major_rev = 0;
  unsigned arch_minor_rev = 0;

  static IdFeatures of(const IdRegisters& ids);

  // IDR5.OAS as a number of address bits (IHI 0070 6.3.6).
  unsigned oas_bits() const { return address_bits(oas); }
  // ASID and VMID widths: IDR0.ASID16, IDR0.VMID16 (16 bits, else 8).
  unsigned asid_bits() const { return asid16 ? 16 : 8; }
  unsigned vmid_bits() const { return vmid16 ? 16 : 8; }
  // IDR0.ST_LEVEL: 2-level stream tables.
  bool two_level_stream_table() const { return st_level == StLevel::two_level; }
  // IDR0.TTF: the AArch64 translation table format, alone or with AArch32.
  bool aarch64_tables() const { return ttf == Ttf::aarch64 || ttf == Ttf::aarch32_aarch64; }
  // IDR0.HTTU: hardware update of the Access flag (>= 1), and of dirty state too (>= 2).
  bool httu_access() const { return httu != Httu::none; }
  bool httu_dirty() const { return httu >= Httu::access_dirty; }
  // IDR5.GRAN4K/16K/64K for one granule.
  bool granule(Granule g) const { return g == Granule::k4K ? gran4k : g == Granule::k16K ? gran16k : gran64k; }
};

}  // namespace vsmmu::smmu
