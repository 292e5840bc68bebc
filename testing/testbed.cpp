#include "testing/testbed.hpp"

#include "base/try.hpp"

namespace vsmmu::testkit {

using namespace smmu;
using namespace smmu::model;

Testbed::Testbed(const TestbedLayout& l)
    : layout(l),
      host_pool(mem, l.host_pool, l.host_pool_size),
      guest_pool(guest, l.guest_ipa, l.guest_pool_size),
      s2(mem, host_pool, Stage::s2, Granule::k4K, l.ipa_bits),
      s1(guest, guest_pool, Stage::s1, Granule::k4K, l.va_bits) {}

Result<void> Testbed::add_memory() {
  if (ram_added_) return {};
  VSMMU_TRY(mem.add_ram(layout.host_pool, layout.host_pool_size));
  VSMMU_TRY(mem.add_ram(layout.guest_pa, layout.guest_size));
  std::span<std::byte> ram(mem.host_pointer(layout.guest_pa, layout.guest_size), layout.guest_size);
  VSMMU_TRY(guest.add_borrowed(layout.guest_ipa, ram));
  ram_added_ = true;
  return {};
}

Result<void> Testbed::start(const ModelConfig& config, const DriverOptions& driver_options) {
  VSMMU_TRY(add_memory());
  VSMMU_TRY_ASSIGN(auto m, SmmuModel::create(mem, config));
  smmu = std::move(m);
  VSMMU_TRY_ASSIGN(auto d, driver::SmmuDriver::start(*smmu, mem, host_pool, driver_options));
  driver.emplace(std::move(d));
  return {};
}

Result<void> Testbed::map_guest_ram(bool pages) {
  return s2.map(layout.guest_ipa, layout.guest_pa, layout.guest_size, MapAttributes{.allow_blocks = !pages});
}

Result<std::uint64_t> Testbed::nested_stream(std::uint32_t sid, std::uint16_t vmid, std::uint16_t asid) {
  VSMMU_TRY(s1.init());
  VSMMU_TRY(s2.init());
  auto table = guest_pool.allocate(Cd::bytes, Cd::bytes);
  if (!table) return table;
  if (!guest.write_record(*table, stage1_cd(s1, asid)))
    return fail(EFAULT, "smmu.model.testbed", "no guest RAM behind the CD table at IPA {:#x}", *table);
  VSMMU_TRY(driver->write_ste(sid, stage1_ste(*table, &s2, vmid)));
  VSMMU_TRY(driver->issue(driver::cmd_cfgi_ste(sid)));
  return table;
}

Ste stage2_ste(const TableBuilder& s2, std::uint16_t vmid) {
  Ste ste;
  ste.set(Ste::V, true)
      .set(Ste::Config, StreamConfig::s2_translate)
      .set(Ste::S2VMID, vmid)
      .set(Ste::S2AA64, true)
      .set(Ste::S2R, true)
      .set(Ste::S2T0SZ, s2.t0sz())
      .set(Ste::S2SL0, s2.s2sl0())
      .set(Ste::S2TG, tg0_from_granule(s2.granule()))
      .set(Ste::S2PS, 5)  // 48 bits
      .set(Ste::S2TTB, s2.root());
  return ste;
}

Ste stage1_ste(std::uint64_t cd_table, const TableBuilder* s2, std::uint16_t vmid, unsigned cdmax, CdTableFormat fmt,
               S1Dss dss) {
  Ste ste = s2 ? stage2_ste(*s2, vmid) : Ste{};
  ste.set(Ste::V, true)
      .set(Ste::Config, s2 ? StreamConfig::nested : StreamConfig::s1_translate)
      .set(Ste::S1ContextPtr, cd_table)
      .set(Ste::S1CDMax, cdmax)
      .set(Ste::S1Fmt, fmt)
      .set(Ste::S1DSS, dss);
  return ste;
}

Cd stage1_cd(const TableBuilder& s1, std::uint16_t asid) {
  Cd cd;
  cd.set(Cd::V, true)
      .set(Cd::AA64, true)
      .set(Cd::EPD1, true)  // no TTB1 region
      .set(Cd::R, true)
      .set(Cd::A, true)
      .set(Cd::T0SZ, s1.t0sz())
      .set(Cd::TG0, tg0_from_granule(s1.granule()))
      .set(Cd::IPS, 5)  // 48 bits
      .set(Cd::ASID, asid)
      .set(Cd::TTB0, s1.root());
  return cd;
}

}  // namespace vsmmu::testkit
