#include "host/host.hpp"

#include <cerrno>

namespace vsmmu::host {

smmu::IdRegisters HwInfo::id_registers() const {
  smmu::IdRegisters ids;
  ids.idr0 = smmu::Idr0::of(idr[0]);
  ids.idr1 = smmu::Idr1::of(idr[1]);
  ids.idr2 = smmu::Idr2::of(idr[2]);
  ids.idr3 = smmu::Idr3::of(idr[3]);
  ids.idr4 = smmu::Idr4::of(idr[4]);
  ids.idr5 = smmu::Idr5::of(idr[5]);
  ids.iidr = smmu::Iidr::of(iidr);
  ids.aidr = smmu::Aidr::of(aidr);
  return ids;
}

std::optional<Error> invalidate_data_error(const InvalidateRequest& req) {
  const std::uint64_t needed = std::uint64_t{req.entry_len} * req.entry_num;
  if (req.data.empty() || req.data.size() >= needed) return std::nullopt;
  return fail(EFAULT, "IOMMU_HWPT_INVALIDATE",
              "invalidating through {}: {} entries of {} bytes need {} bytes, data has {} (the kernel would read "
              "past the buffer)",
              req.id, req.entry_num, req.entry_len, needed, req.data.size())
      .error();
}

}  // namespace vsmmu::host
