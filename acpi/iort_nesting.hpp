// What a host IORT means for nested SMMUv3: for every PCI root complex, where its requester IDs go,
// its memory access flags, and the verdict Linux (arm-smmu-v3 + iommufd) would reach when a VMM
// allocates a vIOMMU for a device behind it.
//
// The kernel rule (arm-smmu-v3-iommufd.c, arm_vsmmu_init): IOMMU_VIOMMU_ALLOC fails with EOPNOTSUPP
// unless the device's root complex has CANWBS in the IORT (IOMMU_FWSPEC_PCI_RC_CANWBS, set by
// iort_pci_rc_supports_canwbs) or the SMMU has S2FWB (IDR3.FWB). The IORT shows only the first; the
// second is a hardware register that `vsmmu probe` reads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "acpi/iort.hpp"

namespace vsmmu::acpi::iort {

enum class Nesting {
  allowed_canwbs,  // the root complex has CANWBS: nesting works whatever the SMMU's S2FWB
  needs_s2fwb,     // a coherent SMMUv3 translates it, but without CANWBS only S2FWB can allow nesting
  refused,         // no coherent SMMUv3 translates its devices: no nesting at all
};
std::string_view to_string(Nesting n);

// Where one ID mapping of a root complex sends its requester IDs.
struct Route {
  enum class Target { smmu_v3, smmu_v1v2, its_group, unresolved };
  std::uint64_t rid_first = 0, rid_last = 0;  // inclusive; a single mapping covers every RID
  bool single = false;
  Target target = Target::unresolved;
  std::uint32_t target_offset = 0;
  std::uint64_t out_first = 0, out_last = 0;  // stream IDs (SMMU) or device IDs (ITS)
  bool coherent_smmu = false;                 // SMMUv3 with the COHACC override
};
std::string_view to_string(Route::Target t);

struct RootComplexNesting {
  std::size_t index = 0;  // among the table's root complexes, in table order (`iort patch --rc INDEX`)
  std::uint32_t offset = 0;
  std::uint32_t segment = 0;
  MemoryAccess memory;
  std::vector<Route> routes;
  Nesting verdict = Nesting::refused;
  std::string reason;
};

struct NestingReport {
  std::vector<RootComplexNesting> root_complexes;
  // Whether some root complex allows nesting by itself (CANWBS); `iort check` exits 0 only then.
  bool any_canwbs() const;
};

NestingReport nesting_report(const Table& table);

}  // namespace vsmmu::acpi::iort
