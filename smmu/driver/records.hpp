// STEs and CDs as Linux's arm-smmu-v3 writes them (arm_smmu_make_abort_ste, arm_smmu_make_bypass_ste,
// arm_smmu_make_cdtable_ste, arm_smmu_make_s1_cd; IHI 0070 5.2, 5.4).
#pragma once

#include <cstdint>

#include "smmu/cd.hpp"
#include "smmu/driver/features.hpp"
#include "smmu/ste.hpp"
#include "smmu/table_builder.hpp"

namespace vsmmu::smmu::driver {

// Where a stream's CDs are: STE.S1ContextPtr, S1Fmt and S1CDMax.
struct CdTableRef {
  std::uint64_t base = 0;
  CdTableFormat fmt = CdTableFormat::linear;
  unsigned s1cdmax = 0;  // log2 of the number of CDs (SSIDs) the table covers
};

Ste abort_ste();
// Bypass with the incoming shareability when the SMMU can override it (IDR1.ATTR_TYPES_OVR).
Ste bypass_ste(const Features& f);
// Stage 1 through `table`: CD fetches write-back read-allocate, inner shareable; S1STALLD when the SMMU
// could stall but the master does not (`stall`: Linux's master->stall_enabled); EL1 stream world. S1DSS says
// what a transaction without a SubstreamID uses (Linux: SSID 0).
Ste cdtable_ste(const CdTableRef& table, const Features& f, S1Dss dss = S1Dss::substream0, bool stall = false);
// A stage-1 CD for the tables `s1` built: TTB0 only (EPD1), walks write-back inner shareable, AArch64, faults
// recorded (R) and aborted (A), a non-shared ASID set (ASET), IPS from IDR5.OAS, MAIR attribute 0 Normal
// write-back (TableBuilder's stage-1 leaves use AttrIndx 0). S (faults stall) when the master stalls (`stall`).
Cd s1_cd(const TableBuilder& s1, std::uint16_t asid, const Features& f, bool stall = false);

}  // namespace vsmmu::smmu::driver
