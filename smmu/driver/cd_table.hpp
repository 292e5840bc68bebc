// A stream's context-descriptor table (IHI 0070 5.3, 5.4, 3.4.3): linear, or 2-level with level-2 tables of
// 64 CDs (4KB) or 1024 CDs (64KB) allocated on first use, in the address space the SMMU fetches CDs from
// (PA for a host's stage-1 stream; the IPA for a nested guest's).
#pragma once

#include <cstdint>
#include <optional>

#include "smmu/cd.hpp"
#include "smmu/driver/records.hpp"
#include "base/error.hpp"
#include "smmu/memory.hpp"
#include "smmu/table_builder.hpp"

namespace vsmmu::smmu::driver {

class CdTable {
 public:
  // Linux's CTXDESC_SPLIT: the SSID bits a 64KB level-2 table resolves.
  static constexpr unsigned kSplit64K = 10;
  static constexpr unsigned kSplit4K = 6;

  // A table for SSIDs below 2^ssid_bits. Without `fmt`, as arm_smmu_alloc_cd_tables picks: 2-level with 64KB
  // level-2 tables when `two_level_ok` (IDR0.CD2L) and more than 1024 CDs are needed, linear otherwise.
  static Result<CdTable> create(PhysicalMemory& mem, TablePageAllocator& alloc, unsigned ssid_bits, bool two_level_ok,
                                std::optional<CdTableFormat> fmt = {});

  const CdTableRef& ref() const { return ref_; }
  // The CD's address, allocating and publishing its level-2 table (level-1 V and L2Ptr) on first use when
  // `allocate`; ENOENT for a missing level-2 table otherwise.
  Result<std::uint64_t> cd_address(std::uint32_t ssid, bool allocate = false);
  // Writes the CD (allocating as above). Invalidation (CFGI_CD) is the caller's.
  Result<std::uint64_t> write(std::uint32_t ssid, const Cd& cd);
  Result<Cd> read(std::uint32_t ssid);

 private:
  CdTable(PhysicalMemory& mem, TablePageAllocator& alloc, CdTableRef ref) : mem_(&mem), alloc_(&alloc), ref_(ref) {}
  unsigned split() const { return ref_.fmt == CdTableFormat::two_level_4k ? kSplit4K : kSplit64K; }

  PhysicalMemory* mem_;
  TablePageAllocator* alloc_;
  CdTableRef ref_;
};

}  // namespace vsmmu::smmu::driver
