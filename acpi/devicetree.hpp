// The device-tree side of the vSMMU, with libfdt: add an "arm,smmu-v3" node and the PCIe host's
// iommu-map to a guest's tree, and inspect a host's tree for SMMUv3 nodes, their coherency and the
// iommu-maps that lead to them. Bindings: Linux Documentation/devicetree/bindings/iommu/arm,smmu-v3.yaml
// and pci/pci-iommu.txt.
//
// A device tree cannot express CANWBS (that flag exists only in the IORT), so on a device-tree host
// nested SMMUv3 always depends on the SMMU's S2FWB.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

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

struct SmmuNode {
  std::string path;
  std::string compatible;
  std::uint32_t phandle = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> reg;  // address, size
  bool dma_coherent = false;
  std::vector<std::string> interrupt_names;
  std::optional<std::uint32_t> iommu_cells;
};

struct MapEntry {
  std::uint32_t rid_base = 0;
  std::uint32_t phandle = 0;
  std::string target;  // path of the node the phandle names; empty if none
  std::uint32_t sid_base = 0;
  std::uint32_t length = 0;
};

struct Host {
  std::string path;
  std::vector<MapEntry> iommu_map;
  std::optional<std::uint32_t> iommu_map_mask;
};

struct Problem {
  std::string path;     // the node at fault
  std::string message;  // what, why, what to do
};

struct Report {
  std::vector<SmmuNode> smmus;
  std::vector<Host> hosts;
  std::vector<Problem> problems;
};

// Checks the blob with fdt_check_full first (EINVAL if it is not a sound flattened device tree), then
// reports every SMMUv3 node and every node with an iommu-map.
Result<Report> inspect(std::span<const std::uint8_t> blob);

}  // namespace vsmmu::acpi::dt
