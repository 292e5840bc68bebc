#include "smmu/driver/records.hpp"

#include <algorithm>

namespace vsmmu::smmu::driver {
namespace {

// STE.SHCFG 0b01: use the incoming shareability (IHI 0070 5.2).
constexpr unsigned kShcfgIncoming = 1;
// MAIR attribute 0: Normal, inner and outer write-back read/write-allocate.
constexpr std::uint64_t kMairNormalWb = 0xff;

}  // namespace

Ste abort_ste() { return Ste{}.set(Ste::V, true).set(Ste::Config, StreamConfig::abort); }

Ste bypass_ste(const Features& f) {
  Ste ste = Ste{}.set(Ste::V, true).set(Ste::Config, StreamConfig::bypass);
  if (f.attr_types_ovr()) ste.set(Ste::SHCFG, kShcfgIncoming);
  return ste;
}

Ste cdtable_ste(const CdTableRef& table, const Features& f, S1Dss dss, bool stall) {
  Ste ste;
  ste.set(Ste::V, true)
      .set(Ste::Config, StreamConfig::s1_translate)
      .set(Ste::S1Fmt, table.fmt)
      .set(Ste::S1ContextPtr, table.base)
      .set(Ste::S1CDMax, table.s1cdmax)
      .set(Ste::S1DSS, dss)
      .set(Ste::S1CIR, Cacheability::wbra)
      .set(Ste::S1COR, Cacheability::wbra)
      .set(Ste::S1CSH, Shareability::inner)
      .set(Ste::S1STALLD, f.stalls() && !stall)
      .set(Ste::STRW, Strw::el1);
  if (f.attr_types_ovr() && dss == S1Dss::bypass) ste.set(Ste::SHCFG, kShcfgIncoming);
  return ste;
}

Cd s1_cd(const TableBuilder& s1, std::uint16_t asid, const Features& f, bool stall) {
  // The output size stage 1 may produce: the SMMU's, up to the 52 bits a CD can name.
  const unsigned ips = static_cast<unsigned>(oas_for_bits(std::min(f.oas_bits(), 52U)).value_or(Oas::bits48));
  Cd cd;
  cd.set(Cd::V, true)
      .set(Cd::T0SZ, s1.t0sz())
      .set(Cd::TG0, tg0_from_granule(s1.granule()))
      .set(Cd::IR0, Cacheability::wbra)
      .set(Cd::OR0, Cacheability::wbra)
      .set(Cd::SH0, Shareability::inner)
      .set(Cd::EPD1, true)
      .set(Cd::IPS, ips)
      .set(Cd::AA64, true)
      .set(Cd::R, true)
      .set(Cd::A, true)
      .set(Cd::S, stall)
      .set(Cd::ASET, true)
      .set(Cd::ASID, asid)
      .set(Cd::TTB0, s1.root())
      .set(Cd::MAIR, kMairNormalWb);
  return cd;
}

}  // namespace vsmmu::smmu::driver
