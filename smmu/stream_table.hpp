// Finding a StreamID's STE through a linear or 2-level stream table (IHI 0070 3.3.1, 3.3.2, 5.1, 6.3.24,
// 6.3.25). Shared by the software SMMU and the VirtualSmmu, which reads the guest's stream table the same way.
#pragma once

#include <cstdint>
#include <expected>

#include "smmu/memory.hpp"
#include "smmu/register_file.hpp"

namespace vsmmu::smmu {

struct SteLookupFailure {
  enum class Kind : std::uint8_t {
    bad_streamid,   // outside the table, or no level-2 table for it: C_BAD_STREAMID
    fetch_abort,    // the level-1 descriptor could not be read: F_STE_FETCH at fetch_address
  };
  Kind kind = Kind::bad_streamid;
  std::uint64_t fetch_address = 0;
};

struct SteLocation {
  std::uint64_t address = 0;
  bool read_l1 = false;     // a level-1 descriptor was fetched to find it
};

// Where the STE of `sid` lives under STRTAB_BASE / STRTAB_BASE_CFG on an SMMU with IDR0/IDR1 `ids`.
std::expected<SteLocation, SteLookupFailure> locate_ste(const PhysicalMemory& mem, const IdRegisters& ids,
                                                        StrtabBase base, StrtabBaseCfg cfg, std::uint32_t sid);

}  // namespace vsmmu::smmu
