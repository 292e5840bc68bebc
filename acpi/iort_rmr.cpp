#include "acpi/iort_rmr.hpp"

namespace vsmmu::acpi::iort {

std::vector<RmrRegion> rmr_regions(const Table& table, std::uint32_t smmu_offset, std::uint32_t stream_id) {
  std::vector<RmrRegion> out;
  for (const Node* n : table.of_type(NodeType::rmr)) {
    const auto* rmr = n->as<Rmr>();
    if (!rmr) continue;
    bool applies = false;
    for (const auto& m : n->mappings)
      applies |= m.output_reference == smmu_offset && stream_id >= m.output_base && stream_id <= m.output_last();
    if (!applies) continue;
    for (const auto& r : rmr->ranges)
      out.push_back(RmrRegion{r, (rmr->flags & Rmr::kRemapPermitted) != 0, n->offset});
  }
  return out;
}

}  // namespace vsmmu::acpi::iort
