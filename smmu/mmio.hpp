// The register interface of an SMMUv3 as software sees it (IHI 0070 6.1-6.3): naturally aligned accesses of 4
// or 8 bytes at offsets from the base of page 0 (page 1 at kPage1Offset). The software SMMU of the simulated
// host and the guest-facing VirtualSmmu both offer it, so one driver (smmu/driver) programs either.
#pragma once

#include <cstdint>

#include "base/error.hpp"
#include "base/try.hpp"

namespace vsmmu::smmu {

class SmmuMmio {
 public:
  virtual ~SmmuMmio() = default;
  SmmuMmio() = default;
  SmmuMmio(const SmmuMmio&) = delete;
  SmmuMmio& operator=(const SmmuMmio&) = delete;

  virtual Result<std::uint64_t> mmio_read(std::uint64_t offset, unsigned size) = 0;
  virtual Result<void> mmio_write(std::uint64_t offset, std::uint64_t value, unsigned size) = 0;

  Result<std::uint32_t> read32(std::uint64_t offset) {
    VSMMU_TRY_ASSIGN(auto r, mmio_read(offset, 4));
    return static_cast<std::uint32_t>(r);
  }
  Result<std::uint64_t> read64(std::uint64_t offset) { return mmio_read(offset, 8); }
  Result<void> write32(std::uint64_t offset, std::uint32_t value) { return mmio_write(offset, value, 4); }
  Result<void> write64(std::uint64_t offset, std::uint64_t value) { return mmio_write(offset, value, 8); }
};

}  // namespace vsmmu::smmu
