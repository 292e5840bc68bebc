// What an IORT's RMR nodes reserve for one stream of an SMMU, as Linux reads them (drivers/acpi/arm64/iort.c:
// iort_get_rmrs, iort_node_get_rmr_info, iort_rmr_has_dev): an RMR node applies to a StreamID when one of its ID
// mappings names the SMMU node as its output reference and its output IDs (StreamIDs) cover it. Each of the node's
// memory ranges becomes a reserved region of the device, IOMMU_RESV_DIRECT (IOMMU_RESV_DIRECT_RELAXABLE when
// remapping is permitted), which the IOMMU core maps 1:1 into the device's domain
// (drivers/iommu/iommu.c iommu_create_device_direct_mappings). A guest behind a vSMMU reads the VMM's RMR this way
// and keeps the host's MSI window identity-mapped in its stage 1.
#pragma once

#include <cstdint>
#include <vector>

#include "acpi/iort.hpp"

namespace vsmmu::acpi::iort {

struct RmrRegion {
  RmrRange range;
  bool remap_permitted = false;  // flags bit 0: DIRECT_RELAXABLE rather than DIRECT
  std::uint32_t node_offset = 0; // the RMR node it comes from
};

// The regions every RMR node of `table` reserves for `stream_id` of the SMMU node at `smmu_offset`, in table order.
std::vector<RmrRegion> rmr_regions(const Table& table, std::uint32_t smmu_offset, std::uint32_t stream_id);

}  // namespace vsmmu::acpi::iort
