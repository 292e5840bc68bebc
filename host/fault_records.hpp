// The records of an iommufd fault queue (IOMMU_FAULT_QUEUE_ALLOC; include/uapi/linux/iommufd.h): what read(2)
// of its fd yields and what write(2) answers. Both backends speak them (the sim host's fault queue has the
// kernel's layout), and the vSMMU decodes them, so they live here rather than in the kernel backend's ABI
// header; tests/unit/host/kernel_header_check.cpp pins them to a real kernel header.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vsmmu::host::uapi {

inline constexpr std::uint32_t kPgfaultFlagsPasidValid = 1U << 0;  // IOMMU_PGFAULT_FLAGS_PASID_VALID
inline constexpr std::uint32_t kPgfaultFlagsLastPage = 1U << 1;    // IOMMU_PGFAULT_FLAGS_LAST_PAGE
inline constexpr std::uint32_t kPgfaultPermRead = 1U << 0;         // IOMMU_PGFAULT_PERM_READ
inline constexpr std::uint32_t kPgfaultPermWrite = 1U << 1;        // IOMMU_PGFAULT_PERM_WRITE
inline constexpr std::uint32_t kPgfaultPermExec = 1U << 2;         // IOMMU_PGFAULT_PERM_EXEC
inline constexpr std::uint32_t kPgfaultPermPriv = 1U << 3;         // IOMMU_PGFAULT_PERM_PRIV
inline constexpr std::uint32_t kPageResponseSuccess = 0;           // IOMMUFD_PAGE_RESP_SUCCESS
inline constexpr std::uint32_t kPageResponseInvalid = 1;           // IOMMUFD_PAGE_RESP_INVALID

// Read from a fault queue fd (IOMMU_FAULT_QUEUE_ALLOC).
struct iommu_hwpt_pgfault {
  std::uint32_t flags = 0;
  std::uint32_t dev_id = 0;
  std::uint32_t pasid = 0;
  std::uint32_t grpid = 0;
  std::uint32_t perm = 0;
  std::uint32_t reserved = 0;
  alignas(8) std::uint64_t addr = 0;
  std::uint32_t length = 0;
  std::uint32_t cookie = 0;
};
static_assert(sizeof(iommu_hwpt_pgfault) == 40);
static_assert(offsetof(iommu_hwpt_pgfault, flags) == 0);
static_assert(offsetof(iommu_hwpt_pgfault, dev_id) == 4);
static_assert(offsetof(iommu_hwpt_pgfault, pasid) == 8);
static_assert(offsetof(iommu_hwpt_pgfault, grpid) == 12);
static_assert(offsetof(iommu_hwpt_pgfault, perm) == 16);
static_assert(offsetof(iommu_hwpt_pgfault, reserved) == 20);
static_assert(offsetof(iommu_hwpt_pgfault, addr) == 24);
static_assert(offsetof(iommu_hwpt_pgfault, length) == 32);
static_assert(offsetof(iommu_hwpt_pgfault, cookie) == 36);

// Written to a fault queue fd to answer the fault group with that cookie.
struct iommu_hwpt_page_response {
  std::uint32_t cookie = 0;
  std::uint32_t code = kPageResponseSuccess;
};
static_assert(sizeof(iommu_hwpt_page_response) == 8);
static_assert(offsetof(iommu_hwpt_page_response, cookie) == 0);
static_assert(offsetof(iommu_hwpt_page_response, code) == 4);

}  // namespace vsmmu::host::uapi
