// Building IORT tables: a node-level Builder that writes any node type at a chosen revision (tests use
// it for every shape, malformed ones included, and for tables laid out like QEMU's), and the guest IORT
// a VMM hands to a VM that has a vSMMU.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "acpi/iort.hpp"
#include "base/error.hpp"

namespace vsmmu::acpi::iort {

struct TableIdentity {
  std::uint8_t revision = 5;  // DEN 0049 E.d; Linux reads RMR nodes from 5 on
  std::string oem_id = "VSMMU ";
  std::string oem_table_id = "VSMMUIRT";
  std::uint32_t oem_revision = 1;
  std::string creator_id = "VSMU";
  std::uint32_t creator_revision = 1;
};

// Appends nodes in table order. Each call returns the node's table offset, which later nodes' ID
// mappings use as their output reference; next_offset() names a node before it is added. The layout
// of each node follows its revision (see layout::).
class Builder {
 public:
  explicit Builder(TableIdentity identity) : identity_(std::move(identity)) {}

  std::uint32_t its_group(std::uint8_t revision, std::uint32_t identifier, const ItsGroup& its);
  std::uint32_t named_component(std::uint8_t revision, std::uint32_t identifier, const NamedComponent& nc,
                                std::span<const IdMapping> maps);
  std::uint32_t root_complex(std::uint8_t revision, std::uint32_t identifier, const RootComplex& rc,
                             std::span<const IdMapping> maps);
  std::uint32_t smmu(std::uint8_t revision, std::uint32_t identifier, const Smmu& smmu,
                     std::span<const IdMapping> maps);
  std::uint32_t smmu_v3(std::uint8_t revision, std::uint32_t identifier, const SmmuV3& smmu,
                        std::span<const IdMapping> maps);
  std::uint32_t pmcg(std::uint8_t revision, std::uint32_t identifier, const Pmcg& pmcg,
                     std::span<const IdMapping> maps);
  std::uint32_t rmr(std::uint8_t revision, std::uint32_t identifier, const Rmr& rmr, std::span<const IdMapping> maps);

  std::uint32_t next_offset() const;
  // The whole table with its length, node count and checksum. Fails (E2BIG) if a node outgrew the
  // 16-bit node length.
  Result<std::vector<std::uint8_t>> finish() const;

 private:
  std::uint32_t add(NodeType type, std::uint8_t revision, std::uint32_t identifier, const std::vector<std::uint8_t>& fields,
                    std::span<const IdMapping> maps, const std::vector<std::uint8_t>& tail = {});

  TableIdentity identity_;
  std::vector<std::uint8_t> nodes_;
  std::uint32_t count_ = 0;
  std::optional<Error> error_;
};

// What a VMM knows about its vSMMUs and PCI topology.
struct GuestSmmu {
  std::uint64_t base = 0;  // MMIO base of the 128 KiB register frame (pages 0 and 1)
  // Wired interrupts as GSIVs (SPI number + 32); 0 leaves a line unwired.
  std::uint32_t event_gsiv = 0, pri_gsiv = 0, gerr_gsiv = 0, sync_gsiv = 0;
  bool coherent = true;  // COHACC override: the guest must see a coherent SMMU or VFIO refuses its devices
  // The ITS DeviceID of the SMMU's own MSIs, used when some line is unwired; default 0x10000 + its index,
  // above every 16-bit requester ID.
  std::optional<std::uint32_t> msi_device_id;
};

struct GuestRidMap {
  std::uint32_t rid_base = 0;  // requester ID (bus << 8 | devfn)
  std::uint32_t count = 0;     // number of RIDs (not minus one)
  std::uint32_t vsid_base = 0;
  std::size_t smmu = 0;  // index into GuestIort::smmus
};

struct GuestRootComplex {
  std::uint32_t segment = 0;
  std::vector<GuestRidMap> maps;  // RIDs behind a vSMMU; the others go straight to the ITS
  bool canwbs = false;            // carry over from the host root complex (see host_canwbs)
  bool ats = false;
  std::uint8_t memory_address_limit = 64;
};

struct GuestIort {
  // Revision 5 (E.d): SMMUv3 nodes revision 4. Revision 6 (E.e): SMMUv3 revision 5 with the DeviceID
  // valid flag. Root complexes are revision 4, the ITS group 1, RMR nodes 3 either way.
  TableIdentity identity;
  std::vector<std::uint32_t> its_ids{0};  // one ITS group with these MADT translation IDs; empty: no ITS
  std::vector<GuestSmmu> smmus;
  std::vector<GuestRootComplex> root_complexes;
  // One RMR node per vSMMU reserving the host kernel's MSI IOVA window for its vSIDs, so the guest maps
  // it 1:1 in stage 1 and the host's stage 2 can point it at the physical doorbell.
  // The windows come from the host (its devices' reserved regions, docs/interrupts.md) or the user: with
  // msi_rmr, none is refused (there is no default: the host decides where its doorbell is mapped).
  bool msi_rmr = true;
  std::vector<RmrRange> msi_windows;  // each RMR node lists them all
};

Result<std::vector<std::uint8_t>> build_guest(const GuestIort& spec);

// The CANWBS flag a guest root complex may carry over from the host: that of the host root complex
// number `index` (table order), or without an index that of the host's only root complex.
Result<bool> host_canwbs(const Table& host, std::optional<std::size_t> index);

}  // namespace vsmmu::acpi::iort
