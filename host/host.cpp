#include "host/host.hpp"

#include <cerrno>

namespace vsmmu::host {

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
