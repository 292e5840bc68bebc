#include "smmu/id_features.hpp"

namespace vsmmu::smmu {

IdFeatures IdFeatures::of(const IdRegisters& ids) {
  const Idr0& i0 = ids.idr0;
  const Idr1& i1 = ids.idr1;
  const Idr3& i3 = ids.idr3;
  const Idr5& i5 = ids.idr5;
  IdFeatures f;
  f.s2p = i0.get(Idr0::S2P);
  f.s1p = i0.get(Idr0::S1P);
  f.ttf = i0.get(Idr0::TTF);
  f.cohacc = i0.get(Idr0::COHACC);
  f.httu = i0.get(Idr0::HTTU);
  f.hyp = i0.get(Idr0::Hyp);
  f.ats = i0.get(Idr0::ATS);
  f.asid16 = i0.get(Idr0::ASID16);
  f.msi = i0.get(Idr0::MSI);
  f.pri = i0.get(Idr0::PRI);
  f.vmid16 = i0.get(Idr0::VMID16);
  f.cd2l = i0.get(Idr0::CD2L);
  f.ttendian = i0.get(Idr0::TTENDIAN);
  f.stall_model = i0.get(Idr0::STALL_MODEL);
  f.term_model = i0.get(Idr0::TERM_MODEL);
  f.st_level = i0.get(Idr0::ST_LEVEL);

  f.sidsize = static_cast<unsigned>(i1.get(Idr1::SIDSIZE));
  f.ssidsize = static_cast<unsigned>(i1.get(Idr1::SSIDSIZE));
  f.eventqs = static_cast<unsigned>(i1.get(Idr1::EVENTQS));
  f.cmdqs = static_cast<unsigned>(i1.get(Idr1::CMDQS));
  f.attr_types_ovr = i1.get(Idr1::ATTR_TYPES_OVR);
  f.rel = i1.get(Idr1::REL);
  f.queues_preset = i1.get(Idr1::QUEUES_PRESET);
  f.tables_preset = i1.get(Idr1::TABLES_PRESET);

  f.fwb = i3.get(Idr3::FWB);
  f.ril = i3.get(Idr3::RIL);
  f.bbml = static_cast<unsigned>(i3.get(Idr3::BBML));

  f.oas = i5.get(Idr5::OAS);
  f.gran4k = i5.get(Idr5::GRAN4K);
  f.gran16k = i5.get(Idr5::GRAN16K);
  f.gran64k = i5.get(Idr5::GRAN64K);
  f.vax = i5.get(Idr5::VAX);

  f.implementer = static_cast<std::uint32_t>(ids.iidr.get(Iidr::Implementer));
  f.revision = static_cast<std::uint32_t>(ids.iidr.get(Iidr::Revision));
  f.variant = static_cast<std::uint32_t>(ids.iidr.get(Iidr::Variant));
  f.product_id = static_cast<std::uint32_t>(ids.iidr.get(Iidr::ProductID));

  f.arch_major_rev = static_cast<unsigned>(ids.aidr.get(Aidr::ArchMajorRev));
  f.arch_minor_rev = static_cast<unsigned>(ids.aidr.get(Aidr::ArchMinorRev));
  return f;
}

}  // namespace vsmmu::smmu
