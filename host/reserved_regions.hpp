// A device's reserved IOVA regions, as the kernel's IOMMU core lists them for its iommu group
// (include/linux/iommu.h enum iommu_resv_type; drivers/iommu/iommu.c iommu_group_show_resv_regions writes
// /sys/kernel/iommu_groups/N/reserved_regions, one "0x<start> 0x<end> <type>" line per region, end inclusive,
// both as 16 hex digits). Under nesting one of them matters above all: the software MSI window
// (IOMMU_RESV_SW_MSI, "msi"), where iommufd maps the ITS doorbell in the nest parent's stage 2 and where the
// host programs the device's MSI address, so the guest's stage 1 must map it 1:1 (docs/interrupts.md).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"

namespace vsmmu::host {

struct IovaRange {
  std::uint64_t start = 0;
  std::uint64_t last = 0;  // inclusive

  std::uint64_t size() const { return last - start + 1; }
  bool contains(std::uint64_t iova) const { return iova >= start && iova <= last; }
  bool overlaps(std::uint64_t base, std::uint64_t size) const {
    return size != 0 && base <= last && base + (size - 1) >= start;
  }
  bool operator==(const IovaRange&) const = default;
  auto operator<=>(const IovaRange&) const = default;
};

// enum iommu_resv_type, as sysfs names it: IOMMU_RESV_MSI (a hardware MSI window, x86's 0xfee00000) and
// IOMMU_RESV_SW_MSI (the window the OS picks, arm-smmu-v3's) are both "msi" there.
enum class ReservedRegionType : std::uint8_t { direct, direct_relaxable, reserved, msi };
std::string_view to_string(ReservedRegionType t);  // the sysfs word

struct ReservedRegion {
  IovaRange range;
  ReservedRegionType type = ReservedRegionType::reserved;
  bool operator==(const ReservedRegion&) const = default;
};

// arm-smmu-v3's software MSI window (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c arm_smmu_get_resv_regions:
// MSI_IOVA_BASE 0x8000000, MSI_IOVA_LENGTH 1 MiB, IOMMU_RESV_SW_MSI).
inline constexpr IovaRange kArmSmmuV3SwMsi{0x8000000, 0x8000000 + 0x100000 - 1};

// Parses the text of a reserved_regions file; `source` names it in messages. Every malformed line is an
// EINVAL naming the source, the line number and what was expected.
Result<std::vector<ReservedRegion>> parse_reserved_regions(std::string_view text, std::string_view source);

// The MSI window among a device's regions: the "msi" region (the kernel lists at most one per group; should
// there be several, the lowest).
std::optional<IovaRange> msi_window(std::span<const ReservedRegion> regions);

// Whether IOMMU_IOAS_IOVA_RANGES' answer (the IOVA an IOAS still allows) leaves `window` out, as it does once a
// device with that reserved region is attached (drivers/iommu/iommufd/io_pagetable.c
// iopt_table_enforce_dev_resv_regions); the first allowed range that overlaps it otherwise.
std::optional<IovaRange> allowed_overlap(const IovaRange& window, std::span<const IovaRange> allowed);

// "0x8000000-0x80fffff"
std::string to_string(const IovaRange& r);

}  // namespace vsmmu::host
