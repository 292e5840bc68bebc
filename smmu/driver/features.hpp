// What a driver makes of an SMMU's ID registers, the way Linux's arm_smmu_device_hw_probe reads them
// (IHI 0070 6.3.1-6.3.6): the driver's names for the fields smmu::IdFeatures decodes, and the refusals for an
// SMMU it cannot drive.
#pragma once

#include <cstdint>

#include "base/error.hpp"
#include "smmu/id_features.hpp"
#include "smmu/mmio.hpp"
#include "smmu/registers.hpp"
#include "smmu/translation_table.hpp"

namespace vsmmu::smmu::driver {

struct Features {
  IdFeatures id;  // IDR0, IDR1, IDR3 and IDR5 as read at probe (IDR2, IDR4, IIDR and AIDR are not read)

  bool stage1() const { return id.s1p; }
  bool stage2() const { return id.s2p; }
  bool hyp() const { return id.hyp; }
  bool two_level_strtab() const { return id.two_level_stream_table(); }
  bool two_level_cd() const { return id.cd2l; }
  bool range_inv() const { return id.ril; }
  bool ats() const { return id.ats; }
  bool msi() const { return id.msi; }
  bool attr_types_ovr() const { return id.attr_types_ovr; }
  // ARM_SMMU_FEAT_STALLS: stalls possible and not forced, so a driver that does not want them sets S1STALLD.
  bool stalls() const { return id.stall_model == StallModel::stall_and_terminate; }
  // ARM_SMMU_FEAT_STALL_FORCE: every stream stalls on a fault.
  bool stall_forced() const { return id.stall_model == StallModel::stall_forced; }
  unsigned sid_bits() const { return id.sidsize; }
  unsigned ssid_bits() const { return id.ssidsize; }
  unsigned cmdq_log2() const { return id.cmdqs; }
  unsigned eventq_log2() const { return id.eventqs; }
  unsigned asid_bits() const { return id.asid_bits(); }
  unsigned vmid_bits() const { return id.vmid_bits(); }
  unsigned oas_bits() const { return id.oas_bits(); }
  bool granule(Granule g) const { return id.granule(g); }
};

// Reads IDR0, IDR1, IDR3 and IDR5 and refuses, one reason each (ENXIO, as Linux's probe fails): no
// translation stage at all, no stage 1 when `need_stage1`, no AArch64 table format, big-endian tables only
// (the driver writes little-endian), no granule, tables or queues preset by an embedded implementation.
Result<Features> probe_features(SmmuMmio& mmio, bool need_stage1);

}  // namespace vsmmu::smmu::driver
