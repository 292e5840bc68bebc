#include "smmu/driver/features.hpp"

namespace vsmmu::smmu::driver {

Result<Features> probe_features(SmmuMmio& mmio, bool need_stage1) {
  constexpr const char* kWhere = "smmu.driver.probe";
  auto idr0 = mmio.read32(regs::IDR0.offset);
  auto idr1 = mmio.read32(regs::IDR1.offset);
  auto idr3 = mmio.read32(regs::IDR3.offset);
  auto idr5 = mmio.read32(regs::IDR5.offset);
  if (!idr0 || !idr1 || !idr3 || !idr5)
    return fail(EIO, kWhere, "cannot read the ID registers: {}",
                (!idr0 ? idr0 : !idr1 ? idr1 : !idr3 ? idr3 : idr5).error());
  IdRegisters ids;
  ids.idr0 = Idr0::of(*idr0);
  ids.idr1 = Idr1::of(*idr1);
  ids.idr3 = Idr3::of(*idr3);
  ids.idr5 = Idr5::of(*idr5);
  const Features f{IdFeatures::of(ids)};

  if (!f.stage1() && !f.stage2()) return fail(ENXIO, kWhere, "IDR0 = {:#x}: no translation stage (S1P = S2P = 0)", *idr0);
  if (need_stage1 && !f.stage1())
    return fail(ENXIO, kWhere, "IDR0 = {:#x}: stage 1 is wanted and IDR0.S1P is 0", *idr0);
  if (!f.id.aarch64_tables())
    return fail(ENXIO, kWhere, "IDR0.TTF = {}: no AArch64 translation table format", static_cast<unsigned>(f.id.ttf));
  if (f.id.ttendian == TtEndian::big) return fail(ENXIO, kWhere, "IDR0.TTENDIAN: big-endian tables only; the driver writes little-endian");
  if (f.id.ttendian == TtEndian::reserved) return fail(ENXIO, kWhere, "IDR0.TTENDIAN has the reserved value 0b01");
  if (f.id.tables_preset || f.id.queues_preset || f.id.rel)
    return fail(ENXIO, kWhere, "IDR1 = {:#x}: preset tables or queues (an embedded implementation) are not supported",
                *idr1);
  if (!f.granule(Granule::k4K) && !f.granule(Granule::k16K) && !f.granule(Granule::k64K))
    return fail(ENXIO, kWhere, "IDR5 = {:#x}: no translation granule (GRAN4K, GRAN16K, GRAN64K all 0)", *idr5);
  return f;
}

}  // namespace vsmmu::smmu::driver
