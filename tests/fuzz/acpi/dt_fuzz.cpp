// Device-tree fuzz target: inspect arbitrary blobs, render the report (JSON, summary, status), and use them as
// the base tree the vSMMU is added to; a blob we extend must inspect clean of any new problem in the vSMMU node.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "acpi/devicetree.hpp"
#include "acpi/json.hpp"

using namespace vsmmu::acpi;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  auto inspected = dt::inspect(bytes);
  const dt::Report report = inspected ? std::move(*inspected) : dt::refused(inspected.error());
  (void)dt_json("fuzz", report);
  (void)report.summary();
  // A device tree cannot carry CANWBS; an error always makes the tree malformed.
  const HostNesting status = report.status();
  if (status == HostNesting::possible) std::abort();
  if ((report.count(dt::Severity::error) > 0) != (status == HostNesting::malformed)) std::abort();
  dt::VsmmuSpec spec;
  spec.base = 0x9050000;
  spec.irqs = {{"eventq", 106}, {"gerror", 108}};
  spec.iommu_map = {{0, 0, 0x10000}};
  spec.msi_windows = {{0x8000000, 0x100000}};
  auto extended = dt::add_vsmmu(bytes, spec);
  if (!extended) return 0;
  auto again = dt::inspect(*extended);
  if (!again) std::abort();  // what we wrote must be a sound tree
  for (const auto& s : again->iommus)
    if (s.path == "/smmuv3@9050000" && (!s.smmu_v3 || !s.dma_coherent || s.iommu_cells != 1u)) std::abort();
  return 0;
}
