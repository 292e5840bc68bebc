#include "smmu/driver/cd_table.hpp"

#include "base/try.hpp"

#include <algorithm>

namespace vsmmu::smmu::driver {
namespace {

constexpr const char* kWhere = "smmu.driver.cd";

}  // namespace

Result<CdTable> CdTable::create(PhysicalMemory& mem, TablePageAllocator& alloc, unsigned ssid_bits, bool two_level_ok,
                                std::optional<CdTableFormat> fmt) {
  // STE.S1CDMax is 5 bits and SSIDs are at most 20 (IHI 0070 5.2).
  if (ssid_bits > 20) return fail(ERANGE, kWhere, "{} SSID bits: SubstreamIDs have at most 20", ssid_bits);
  const CdTableFormat format =
      fmt.value_or(two_level_ok && ssid_bits > kSplit64K ? CdTableFormat::two_level_64k : CdTableFormat::linear);
  if (format == CdTableFormat::reserved) return fail(EINVAL, kWhere, "S1Fmt 0b11 is reserved");
  if (format != CdTableFormat::linear && !two_level_ok)
    return fail(EOPNOTSUPP, kWhere, "a 2-level CD table needs IDR0.CD2L, which is 0");
  CdTable t(mem, alloc, CdTableRef{0, format, ssid_bits});
  // Linear: one CD per SSID. 2-level: one 8-byte level-1 descriptor per level-2 table (at least one).
  const std::uint64_t bytes = format == CdTableFormat::linear
                                  ? Cd::bytes << ssid_bits
                                  : CdTableL1::bytes << (ssid_bits > t.split() ? ssid_bits - t.split() : 0);
  VSMMU_TRY_ASSIGN(auto base, alloc.allocate(bytes, std::max<std::uint64_t>(64, bytes)));
  t.ref_.base = base;
  return t;
}

Result<std::uint64_t> CdTable::cd_address(std::uint32_t ssid, bool allocate) {
  if (std::uint64_t{ssid} >> ref_.s1cdmax != 0)
    return fail(ERANGE, kWhere, "SSID {:#x} is beyond S1CDMax {}", ssid, ref_.s1cdmax);
  if (ref_.fmt == CdTableFormat::linear) return ref_.base + std::uint64_t{ssid} * Cd::bytes;
  const std::uint64_t l1_at = ref_.base + (ssid >> split()) * CdTableL1::bytes;
  auto l1 = mem_->read_record<CdTableL1>(l1_at);
  if (!l1) return fail(EFAULT, kWhere, "no memory behind the level-1 CD descriptor at {:#x}", l1_at);
  if (!l1->get(CdTableL1::V)) {
    if (!allocate) return fail(ENOENT, kWhere, "SSID {:#x} has no level-2 CD table", ssid);
    const std::uint64_t bytes = Cd::bytes << split();
    VSMMU_TRY_ASSIGN(auto l2, alloc_->allocate(bytes, bytes));
    l1->set(CdTableL1::V, true).set(CdTableL1::L2Ptr, l2);
    if (!mem_->write_record(l1_at, *l1)) return fail(EFAULT, kWhere, "cannot write the level-1 CD descriptor at {:#x}", l1_at);
  }
  return l1->get(CdTableL1::L2Ptr) + (ssid & ((1U << split()) - 1)) * Cd::bytes;
}

Result<std::uint64_t> CdTable::write(std::uint32_t ssid, const Cd& cd) {
  auto at = cd_address(ssid, true);
  if (!at) return at;
  if (!mem_->write_record(*at, cd)) return fail(EFAULT, kWhere, "cannot write the CD for SSID {:#x} at {:#x}", ssid, *at);
  return at;
}

Result<Cd> CdTable::read(std::uint32_t ssid) {
  VSMMU_TRY_ASSIGN(auto at, cd_address(ssid));
  auto cd = mem_->read_record<Cd>(at);
  if (!cd) return fail(EFAULT, kWhere, "cannot read the CD for SSID {:#x} at {:#x}", ssid, at);
  return *cd;
}

}  // namespace vsmmu::smmu::driver
