// Device-tree fuzz target: inspect arbitrary blobs, render the report, and use them as the base tree
// the vSMMU is added to; a blob we extend must inspect clean of any new problem in the vSMMU node.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "acpi/devicetree.hpp"
#include "acpi/json.hpp"

using namespace vsmmu::acpi;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  auto report = dt::inspect(bytes);
  if (report) (void)dt_json("fuzz", *report);
  dt::VsmmuSpec spec;
  spec.base = 0x9050000;
  spec.irqs = {{"eventq", 106}, {"gerror", 108}};
  spec.iommu_map = {{0, 0, 0x10000}};
  spec.msi_windows = {{0x8000000, 0x100000}};
  auto extended = dt::add_vsmmu(bytes, spec);
  if (!extended) return 0;
  auto again = dt::inspect(*extended);
  if (!again) std::abort();  // what we wrote must be a sound tree
  for (const auto& s : again->smmus)
    if (s.path == "/smmuv3@9050000" && (!s.dma_coherent || s.iommu_cells != 1u)) std::abort();
  return 0;
}
