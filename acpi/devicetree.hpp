// The device-tree side of the vSMMU, with libfdt: add an "arm,smmu-v3" node and the PCIe host's
// iommu-map to a guest's tree, and inspect a host's tree for its IOMMUs (of any kind), their status, coherency
// and CPU addresses, and the devices (iommus, iommu-map) behind each, with what each means for nesting.
// Bindings: Linux Documentation/devicetree/bindings/iommu/{iommu.txt,arm,smmu-v3.yaml} and pci/pci-iommu.txt.
//
// A device tree cannot express CANWBS (that flag exists only in the IORT), so on a device-tree host
// nested SMMUv3 always depends on the SMMU's S2FWB.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "acpi/nesting_status.hpp"
#include "base/error.hpp"

namespace vsmmu::acpi::dt {

// One wired interrupt of the SMMU: its binding name (eventq, priq, cmdq-sync, gerror, or combined)
// and its GSIV (SPI number + 32, the number the IORT uses too).
struct Irq {
  std::string name;
  std::uint32_t gsiv = 0;
};

struct IommuMap {
  std::uint32_t rid_base = 0;
  std::uint32_t vsid_base = 0;
  std::uint32_t length = 0;  // number of RIDs
};

struct VsmmuSpec {
  std::uint64_t base = 0;
  std::uint64_t size = 0x20000;  // register pages 0 and 1
  std::vector<Irq> irqs;         // only the lines used
  bool dma_coherent = true;
  std::vector<IommuMap> iommu_map;
  // The PCIe host node. In an existing tree: its path, or empty for the first "pci-host-ecam-generic"
  // node. In a new tree: the path of the placeholder host node to create.
  std::string pcie_path;
  // The host's MSI windows (base, size; docs/interrupts.md), which the guest must keep identity-mapped in its
  // stage 1: each becomes a /reserved-memory child with reg = the window and iommu-addresses = <&host window>
  // (bindings/reserved-memory/reserved-memory.yaml; Linux's of_iommu_get_resv_regions makes a reg equal to its
  // IOVA an IOMMU_RESV_DIRECT region, mapped 1:1), named by the PCIe host's memory-region. Required: the
  // host, not a default, says where its doorbell is mapped.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> msi_windows;
};

// Adds the vSMMU node (under the root, named smmuv3@<base>), the PCIe host's iommu-map and the MSI windows'
// reserved-memory nodes (msi-window@<base>) to `base`,
// or to a new minimal tree when `base` is empty. Interrupts use the GIC's three-cell form
// <GIC_SPI spi IRQ_TYPE_EDGE_RISING>, as QEMU's virt board writes them.
Result<std::vector<std::uint8_t>> add_vsmmu(std::span<const std::uint8_t> base, const VsmmuSpec& spec);

// How much a problem weighs: an error means Linux would misread the tree (the check's status is then
// malformed); a warning is reported and changes nothing.
enum class Severity { warning, error };
std::string_view to_string(Severity s);  // "warning", "error"

struct RegEntry {
  std::uint64_t address = 0;  // as written, in the parent bus's address space
  std::uint64_t size = 0;
  // The address the CPU (and the IORT) sees: `address` translated through every parent bus's ranges
  // (drivers/of/address.c of_translate_address); nullopt when a bus on the way has no ranges or none covers it.
  std::optional<std::uint64_t> cpu_address;
};

// Any IOMMU: a node with #iommu-cells, one compatible with "arm,smmu-v3", or one a device names in its
// iommus or iommu-map.
struct Iommu {
  std::string path;
  std::vector<std::string> compatible;  // every string, in the tree's order
  bool smmu_v3 = false;                 // compatible with "arm,smmu-v3", the only IOMMU iommufd's vIOMMU runs on
  std::uint32_t phandle = 0;
  std::vector<RegEntry> reg;
  std::string untranslatable;  // why reg has no CPU address (empty when it has one)
  bool available = true;       // drivers/of/base.c of_device_is_available, for the node and every parent
  std::string unavailable;     // why not (its status, or the unavailable parent's); empty when available
  bool dma_coherent = false;
  std::vector<std::string> interrupt_names;
  std::optional<std::uint32_t> iommu_cells;
  // What it gives the devices behind it: needs_s2fwb (an available, coherent, locatable arm,smmu-v3) or
  // impossible, with the reason.
  HostNesting verdict = HostNesting::impossible;
  std::string reason;
};

// One specifier of a device's iommus: the IOMMU's phandle and #iommu-cells cells (for an SMMUv3 the stream ID).
struct IommusEntry {
  std::uint32_t phandle = 0;
  std::string iommu;  // path of the node the phandle names; empty if none
  std::vector<std::uint32_t> cells;
  HostNesting verdict = HostNesting::malformed;  // the IOMMU's, malformed when the phandle names nothing
};

// One iommu-map entry (bindings/pci/pci-iommu.txt): RIDs [rid_base, rid_base + length), after
// iommu-map-mask, go to IDs from sid_base on the IOMMU `target`.
struct MapEntry {
  std::uint32_t rid_base = 0;
  std::uint32_t phandle = 0;
  std::string target;  // path of the node the phandle names; empty if none
  std::uint32_t sid_base = 0;
  std::uint32_t length = 0;
  HostNesting verdict = HostNesting::malformed;  // the IOMMU's, malformed when the phandle names nothing
};

// A node with iommus (a platform device) or iommu-map (a PCIe host, an fsl-mc bus ...).
struct Device {
  std::string path;
  bool available = true;    // as Iommu::available; an unavailable device does not count
  std::string unavailable;  // why not; empty when available
  std::vector<IommusEntry> iommus;
  std::vector<MapEntry> iommu_map;
  std::optional<std::uint32_t> iommu_map_mask;
  // needs_s2fwb when some of its IDs reach an available coherent arm,smmu-v3; malformed when a reference is
  // broken; impossible otherwise (and when the device is unavailable).
  HostNesting verdict = HostNesting::impossible;
  std::string reason;
};

struct Problem {
  std::string path;     // the node at fault
  std::string message;  // what, why, what to do
  Severity severity = Severity::error;
};

struct Report {
  std::vector<Iommu> iommus;
  std::vector<Device> devices;
  std::vector<Problem> problems;

  std::size_t count(Severity s) const;
  // malformed with any error; else needs_s2fwb if an available device needs only S2FWB; else impossible. Never
  // possible: a device tree cannot carry CANWBS.
  HostNesting status() const;
  // One line counting what the verdicts are about: IOMMUs, devices by verdict, errors and warnings.
  std::string counts() const;
  // One line saying what the status means and what to do, starting with the status as `iort check`'s summary
  // does ("needs S2FWB: ...", "impossible: ...", "malformed: ...").
  std::string summary() const;
};

// A report for a blob inspect() refused: no nodes, one error at "/" (status malformed).
Report refused(const Error& e);

// Checks the blob with fdt_check_full first (EINVAL if it is not a sound flattened device tree), then
// reports every IOMMU, every device naming one (iommus, iommu-map) with its verdict, and the problems Linux
// would have.
Result<Report> inspect(std::span<const std::uint8_t> blob);

}  // namespace vsmmu::acpi::dt
