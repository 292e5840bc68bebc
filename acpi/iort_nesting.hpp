// What a host IORT means for nested SMMUv3: for every PCI root complex and every named component, where
// its IDs go, its memory access flags, and the verdict Linux (arm-smmu-v3 + iommufd) would reach when a
// VMM allocates a vIOMMU for a device behind it; the warnings about what Linux makes of the mappings; and
// the one status (acpi/nesting_status.hpp) `vsmmu iort check` reports for the whole host.
//
// The kernel rule (arm-smmu-v3-iommufd.c, arm_vsmmu_init): IOMMU_VIOMMU_ALLOC fails with EOPNOTSUPP
// unless the device's root complex has CANWBS in the IORT (IOMMU_FWSPEC_PCI_RC_CANWBS, set by
// iort_pci_rc_supports_canwbs) or the SMMU has S2FWB (IDR3.FWB). The IORT shows only the first; the
// second is a hardware register that `vsmmu probe` reads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "acpi/iort.hpp"
#include "acpi/nesting_status.hpp"

namespace vsmmu::acpi::iort {

enum class Nesting {
  allowed_canwbs,  // the root complex has CANWBS: nesting works whatever the SMMU's S2FWB
  needs_s2fwb,     // a coherent SMMUv3 translates it, but without CANWBS only S2FWB can allow nesting
  refused,         // no coherent SMMUv3 translates its devices (or Linux never uses the node): no nesting
};
std::string_view to_string(Nesting n);

// How an engineer knows a node: "SMMUv3 at 0x2b400000 (node 0x048)", "SMMUv1/v2 at 0x... (node 0x...)",
// "ITS group (node 0x030)", "no node (0x04c)".
std::string node_label(const Table& table, std::uint32_t offset);
// "root complex 1 (segment 2, node 0x0a0)".
std::string root_complex_label(std::size_t index, std::uint32_t segment, std::uint32_t offset);

// Where one ID mapping of a root complex or named component sends its IDs.
struct Route {
  enum class Target { smmu_v3, smmu_v1v2, its_group, unresolved };
  std::uint64_t rid_first = 0, rid_last = 0;  // inclusive input IDs; a single mapping covers every ID
  bool single = false;
  Target target = Target::unresolved;
  std::uint32_t target_offset = 0;
  std::uint64_t out_first = 0, out_last = 0;  // stream IDs (SMMU) or device IDs (ITS)
  bool coherent_smmu = false;                 // SMMUv3 with the COHACC override
  std::size_t mapping_index = 0;              // among the node's ID mappings
  std::uint32_t mapping_offset = 0;           // the mapping's table offset
  std::uint64_t target_base = 0;              // the SMMU's base address (SMMUv3, SMMUv1/v2)
  std::string target_name;                    // node_label() of the target
  // Whether Linux ever matches it: a root complex mapping whose input IDs all lie above the 16-bit
  // requester ID never applies (IdMapping::kMaxRequesterId; one straddling 0xffff applies only below), nor
  // does one after a single mapping of the same root complex (iort_node_map_id takes the first that matches,
  // and a single mapping matches every RID). `not_applying` says which, as a clause.
  bool applies = true;
  std::string not_applying;
};
std::string_view to_string(Route::Target t);
// A route's input IDs as the summary and `iort check` write them: "RIDs 0x0-0xff", "every RID (single
// mapping)"; `ids` names them ("RID" for a root complex, "ID" for a named component).
std::string id_range(const Route& r, std::string_view ids);

struct RootComplexNesting {
  std::size_t index = 0;  // among the table's root complexes, in table order (`iort patch --rc INDEX`)
  std::uint32_t offset = 0;
  std::uint32_t segment = 0;
  MemoryAccess memory;
  std::vector<Route> routes;
  Nesting verdict = Nesting::refused;
  std::string reason;
  std::string cause;                        // the short why, as the summary quotes it
  std::optional<std::size_t> shadowed_by;   // an earlier root complex of the same segment Linux uses instead
};

// A named component (a platform device, DEN 0049 Table 13). Linux reads CANWBS only from root complexes
// (iort_pci_rc_supports_canwbs), so the best it can get is needs_s2fwb.
struct ComponentNesting {
  std::uint32_t offset = 0;
  std::string device_name;  // ACPI namespace path
  MemoryAccess memory;
  std::vector<Route> routes;
  Nesting verdict = Nesting::refused;
  std::string reason;
  std::string cause;
};

struct NestingReport {
  std::vector<RootComplexNesting> root_complexes;
  std::vector<ComponentNesting> named_components;
  // Warnings (Severity::warning) about what Linux makes of a table the parser found sound: RIDs past 16
  // bits, single mappings that merge every device, root complexes shadowed by a segment twin, CANWBS in a
  // table older than E.f. Offsets and checks as Report::problems has them.
  std::vector<Problem> problems;
  // Whether some root complex allows nesting by itself (CANWBS).
  bool any_canwbs() const;
};

NestingReport nesting_report(const Table& table);

// Why setting CANWBS on this root complex cannot help or cannot be true, as a clause, or nothing: its verdict
// is refused (it cannot nest whatever its flags), or its CCA is 0 (CANWBS, accesses coerced to Normal
// Write-Back, presumes a coherent path to memory; DEN 0049 memory access properties). The one rule `iort patch` refuses by and
// `iort check`'s summary suggests a patch by.
std::optional<std::string> canwbs_cannot_help(const RootComplexNesting& rc);

// The host's status: malformed on any parser error; else the best verdict over the root complexes Linux
// uses and the named components: allowed_canwbs -> possible, needs_s2fwb -> needs_s2fwb, else impossible
// (also when the table has neither).
HostNesting host_status(const Report& report, const NestingReport& nesting);

// One line saying what the status means for this table and what to do: which devices, why, `vsmmu probe`
// where S2FWB decides, `vsmmu iort patch --canwbs` only for root complexes whose verdict it would change.
// `source` is the file the patch command should read.
std::string nesting_summary(const Report& report, const NestingReport& nesting, std::string_view source);

}  // namespace vsmmu::acpi::iort
