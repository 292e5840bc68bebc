// What a driver makes of an SMMU's ID registers, the way Linux's arm_smmu_device_hw_probe reads them
// (IHI 0070 6.3.1-6.3.6), and the refusals for an SMMU it cannot drive.
#pragma once

#include <cstdint>

#include "base/error.hpp"
#include "smmu/mmio.hpp"
#include "smmu/registers.hpp"
#include "smmu/translation_table.hpp"

namespace vsmmu::smmu::driver {

struct Features {
  Idr0 idr0;
  Idr1 idr1;
  Idr3 idr3;
  Idr5 idr5;

  bool stage1() const { return idr0.get(Idr0::S1P); }
  bool stage2() const { return idr0.get(Idr0::S2P); }
  bool hyp() const { return idr0.get(Idr0::Hyp); }
  bool two_level_strtab() const { return idr0.get(Idr0::ST_LEVEL) == StLevel::two_level; }
  bool two_level_cd() const { return idr0.get(Idr0::CD2L); }
  bool range_inv() const { return idr3.get(Idr3::RIL); }
  bool ats() const { return idr0.get(Idr0::ATS); }
  bool msi() const { return idr0.get(Idr0::MSI); }
  bool attr_types_ovr() const { return idr1.get(Idr1::ATTR_TYPES_OVR); }
  // ARM_SMMU_FEAT_STALLS: stalls possible and not forced, so a driver that does not want them sets S1STALLD.
  bool stalls() const { return idr0.get(Idr0::STALL_MODEL) == StallModel::stall_and_terminate; }
  unsigned sid_bits() const { return static_cast<unsigned>(idr1.get(Idr1::SIDSIZE)); }
  unsigned ssid_bits() const { return static_cast<unsigned>(idr1.get(Idr1::SSIDSIZE)); }
  unsigned cmdq_log2() const { return static_cast<unsigned>(idr1.get(Idr1::CMDQS)); }
  unsigned eventq_log2() const { return static_cast<unsigned>(idr1.get(Idr1::EVENTQS)); }
  unsigned asid_bits() const { return idr0.get(Idr0::ASID16) ? 16 : 8; }
  unsigned vmid_bits() const { return idr0.get(Idr0::VMID16) ? 16 : 8; }
  unsigned oas_bits() const { return idr5.oas_bits(); }
  bool granule(Granule g) const {
    return g == Granule::k4K ? idr5.get(Idr5::GRAN4K) : g == Granule::k16K ? idr5.get(Idr5::GRAN16K) : idr5.get(Idr5::GRAN64K);
  }
};

// Reads IDR0, IDR1, IDR3 and IDR5 and refuses, one reason each (ENXIO, as Linux's probe fails): no
// translation stage at all, no stage 1 when `need_stage1`, no AArch64 table format, big-endian tables only
// (the driver writes little-endian), no granule, tables or queues preset by an embedded implementation.
Result<Features> probe_features(SmmuMmio& mmio, bool need_stage1);

}  // namespace vsmmu::smmu::driver
