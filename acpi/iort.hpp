// The ACPI IO Remapping Table (IORT, Arm DEN 0049 E.f): layout, a decoded node model, and a parser
// that validates a whole table and reports every problem it finds with its byte offset.
//
// The parser never stops at the first problem: a platform engineer fixing firmware wants the whole
// list, and a table Linux would still use (with FW_BUG warnings) must still be decoded for the CANWBS
// report. It only refuses bytes that are not an IORT at all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/error.hpp"

namespace vsmmu::acpi::iort {

// Byte offsets and sizes, as DEN 0049 E.f tables 2-19 and ACPI 6.5 5.2.6 give them. Offsets inside a
// node are relative to the node's first byte.
namespace layout {
// ACPI 6.5 Table 5.4, the header every system description table starts with.
inline constexpr std::size_t kSignature = 0, kLength = 4, kRevision = 8, kChecksum = 9, kOemId = 10,
                             kOemTableId = 16, kOemRevision = 24, kCreatorId = 28, kCreatorRevision = 32;
inline constexpr std::size_t kAcpiHeaderSize = 36;
inline constexpr std::size_t kOemIdSize = 6, kOemTableIdSize = 8, kCreatorIdSize = 4;
// DEN 0049 Table 2: the IORT's own header fields after the ACPI header.
inline constexpr std::size_t kNodeCount = 36, kNodeOffset = 40, kReserved = 44, kHeaderSize = 48;

// Table 3, the header of every node.
inline constexpr std::size_t kNodeType = 0, kNodeLength = 1, kNodeRevision = 3, kNodeIdentifier = 4,
                             kNodeMappingCount = 8, kNodeMappingOffset = 12, kNodeHeaderSize = 16;

// Table 4, one ID mapping (the "Number of IDs" field holds the count minus one).
inline constexpr std::size_t kMapInputBase = 0, kMapIdCount = 4, kMapOutputBase = 8, kMapOutputReference = 12,
                             kMapFlags = 16, kIdMappingSize = 20;

// Table 14, memory access properties (8 bytes, inside named component and root complex nodes).
inline constexpr std::size_t kMemCca = 0, kMemHints = 4, kMemFlags = 7, kMemorySize = 8;

// Table 12, ITS group node.
inline constexpr std::size_t kItsCount = 16, kItsIds = 20;
// Table 13, named component node.
inline constexpr std::size_t kNcFlags = 16, kNcMemory = 20, kNcAddressLimit = 28, kNcName = 29;
// Table 17, root complex node. Revision 0 ends after the segment number; revision 1 added the memory
// address size limit (Linux reads it only from revision 1 on); E.d added the PASID capabilities and
// the node flags (revision 4).
inline constexpr std::size_t kRcMemory = 16, kRcAts = 24, kRcSegment = 28, kRcAddressLimit = 32,
                             kRcPasidCaps = 33, kRcFlags = 36;
inline constexpr std::size_t kRcSizeRev0 = 32, kRcSizeRev1 = 36, kRcSizeRev4 = 40;
// Table 18, SMMUv1/v2 node; its global interrupt array is 16 bytes, context and PMU entries 8 each.
inline constexpr std::size_t kSmmuBase = 16, kSmmuSpan = 24, kSmmuModel = 32, kSmmuFlags = 36,
                             kSmmuGlobalIrqOffset = 40, kSmmuContextIrqCount = 44, kSmmuContextIrqOffset = 48,
                             kSmmuPmuIrqCount = 52, kSmmuPmuIrqOffset = 56, kSmmuSize = 60;
inline constexpr std::size_t kSmmuGlobalIrqSize = 16, kSmmuIrqEntrySize = 8;
// Table 19, SMMUv3 node. Revision 0 ended after the SYNC GSIV; the proximity domain and the DeviceID
// mapping index followed.
inline constexpr std::size_t kSmmuV3Base = 16, kSmmuV3Flags = 24, kSmmuV3Vatos = 32, kSmmuV3Model = 40,
                             kSmmuV3EventGsiv = 44, kSmmuV3PriGsiv = 48, kSmmuV3GerrGsiv = 52,
                             kSmmuV3SyncGsiv = 56, kSmmuV3Pxm = 60, kSmmuV3IdMappingIndex = 64;
inline constexpr std::size_t kSmmuV3SizeRev0 = 60, kSmmuV3SizeRev1 = 64, kSmmuV3SizeRev2 = 68;
// Table 21, PMCG node; revision 1 added the page 1 base address.
inline constexpr std::size_t kPmcgPage0 = 16, kPmcgOverflowGsiv = 24, kPmcgNodeReference = 28, kPmcgPage1 = 32;
inline constexpr std::size_t kPmcgSizeRev0 = 32, kPmcgSizeRev1 = 40;
// Tables 22-23, reserved memory range node and its memory range descriptors.
inline constexpr std::size_t kRmrFlags = 16, kRmrCount = 20, kRmrOffset = 24, kRmrSize = 28;
inline constexpr std::size_t kRmrDescBase = 0, kRmrDescLength = 8, kRmrDescriptorSize = 20;
}  // namespace layout

enum class NodeType : std::uint8_t {
  its_group = 0,
  named_component = 1,
  root_complex = 2,
  smmu = 3,  // SMMUv1 or SMMUv2
  smmu_v3 = 4,
  pmcg = 5,
  rmr = 6,
};
inline constexpr std::uint8_t kNodeTypeCount = 7;

// "ITS group", "root complex" ...; "unknown" for types past RMR.
std::string_view node_type_name(std::uint8_t type);

// Memory access properties (DEN 0049 Tables 14-16). The flags' names are Table 16's: CPM, DACS, CANWBS.
struct MemoryAccess {
  static constexpr std::uint8_t kCoherency = 1u << 0;   // CPM: coherent path to memory
  static constexpr std::uint8_t kAttributes = 1u << 1;  // DACS: device attributes are cacheable, inner shareable
  static constexpr std::uint8_t kCanwbs = 1u << 2;      // CANWBS: the device's accesses are coerced to Normal WB
  static constexpr std::uint8_t kKnownFlags = kCoherency | kAttributes | kCanwbs;
  // DEN 0049 E.f (IORT table revision 7) defines CANWBS; before it bit 2 is reserved. Linux reads the bit at any
  // table revision (drivers/acpi/arm64/iort.c, iort_pci_rc_supports_canwbs).
  static constexpr std::uint8_t kCanwbsTableRevision = 7;

  std::uint32_t cache_coherency = 0;  // CCA: 1 = fully coherent device
  std::uint8_t hints = 0;             // allocation hints: transient, write/read allocate, override
  std::uint8_t flags = 0;             // memory access flags

  bool cca() const { return cache_coherency == 1; }
  bool coherency() const { return (flags & kCoherency) != 0; }
  bool attributes() const { return (flags & kAttributes) != 0; }
  bool canwbs() const { return (flags & kCanwbs) != 0; }
  friend bool operator==(const MemoryAccess&, const MemoryAccess&) = default;
};
// "CPM|DACS", "CPM|DACS|CANWBS", "none", with unknown bits as "0x80" (DEN 0049 Table 16 names).
std::string memory_flags_names(std::uint8_t flags);

struct IdMapping {
  static constexpr std::uint32_t kSingleMapping = 1u << 0;
  // The largest input ID a root complex mapping can ever be matched with: Linux looks a PCI device up by its
  // 16-bit requester ID (drivers/acpi/arm64/iort.c, iort_pci_iommu_init: pci_for_each_dma_alias gives a u16).
  static constexpr std::uint64_t kMaxRequesterId = 0xffff;

  std::uint32_t input_base = 0;
  std::uint32_t id_count = 0;  // the number of IDs minus one, as stored
  std::uint32_t output_base = 0;
  std::uint32_t output_reference = 0;  // table offset of the node the IDs go to
  std::uint32_t flags = 0;
  std::uint32_t offset = 0;  // where this mapping sits in the table (set by the parser)

  bool single() const { return (flags & kSingleMapping) != 0; }
  std::uint64_t count() const { return std::uint64_t{id_count} + 1; }
  std::uint64_t input_last() const { return std::uint64_t{input_base} + id_count; }
  std::uint64_t output_last() const { return std::uint64_t{output_base} + id_count; }
  friend bool operator==(const IdMapping& a, const IdMapping& b) {
    return a.input_base == b.input_base && a.id_count == b.id_count && a.output_base == b.output_base &&
           a.output_reference == b.output_reference && a.flags == b.flags;
  }
};

struct ItsGroup {
  std::vector<std::uint32_t> its_ids;  // GIC ITS translation IDs (MADT)
  friend bool operator==(const ItsGroup&, const ItsGroup&) = default;
};

struct NamedComponent {
  std::uint32_t node_flags = 0;  // bit 0 stall supported, bits 5:1 PASID bits
  MemoryAccess memory;
  std::uint8_t memory_address_limit = 0;
  std::string device_name;  // ACPI namespace path, e.g. "\_SB.DEV0"
  friend bool operator==(const NamedComponent&, const NamedComponent&) = default;
};

struct RootComplex {
  static constexpr std::uint32_t kAtsSupported = 1u << 0, kPriSupported = 1u << 1, kPasidForwarding = 1u << 2;

  MemoryAccess memory;
  std::uint32_t ats_attribute = 0;
  std::uint32_t pci_segment = 0;
  std::optional<std::uint8_t> memory_address_limit;  // revision >= 1
  std::optional<std::uint16_t> pasid_capabilities;   // revision >= 4; bits 4:0 max PASID width
  std::optional<std::uint32_t> flags;                // revision >= 4 with the 40-byte layout
  friend bool operator==(const RootComplex&, const RootComplex&) = default;
};

struct SmmuInterrupt {
  std::uint32_t gsiv = 0;
  std::uint32_t flags = 0;  // bit 0: edge triggered
  friend bool operator==(const SmmuInterrupt&, const SmmuInterrupt&) = default;
};

struct Smmu {  // SMMUv1 / SMMUv2
  std::uint64_t base = 0;
  std::uint64_t span = 0;
  std::uint32_t model = 0;
  std::uint32_t flags = 0;  // bit 0 DVM, bit 1 coherent page table walk
  SmmuInterrupt nsg_irpt;
  SmmuInterrupt nsg_cfg_irpt;
  std::vector<SmmuInterrupt> context_interrupts;
  std::vector<SmmuInterrupt> pmu_interrupts;
  friend bool operator==(const Smmu&, const Smmu&) = default;
};

struct SmmuV3 {
  static constexpr std::uint32_t kCohaccOverride = 1u << 0;
  static constexpr std::uint32_t kHttuShift = 1, kHttuMask = 3u << kHttuShift;  // 1: access flag, 2: + dirty
  static constexpr std::uint32_t kPxmValid = 1u << 3;
  static constexpr std::uint32_t kDeviceIdValid = 1u << 4;  // node revision 5

  std::uint64_t base = 0;
  std::uint32_t flags = 0;
  std::uint64_t vatos_address = 0;
  std::uint32_t model = 0;
  std::uint32_t event_gsiv = 0, pri_gsiv = 0, gerr_gsiv = 0, sync_gsiv = 0;
  std::optional<std::uint32_t> proximity_domain;  // revision >= 1
  std::optional<std::uint32_t> id_mapping_index;  // revision >= 2 layout (68 bytes)

  bool cohacc() const { return (flags & kCohaccOverride) != 0; }
  unsigned httu() const { return (flags & kHttuMask) >> kHttuShift; }
  bool all_gsivs() const { return event_gsiv && pri_gsiv && gerr_gsiv && sync_gsiv; }
  friend bool operator==(const SmmuV3&, const SmmuV3&) = default;
};

struct Pmcg {
  std::uint64_t page0_base = 0;
  std::uint32_t overflow_gsiv = 0;
  std::uint32_t node_reference = 0;         // table offset of the SMMU/component it counts for
  std::optional<std::uint64_t> page1_base;  // revision >= 1
  friend bool operator==(const Pmcg&, const Pmcg&) = default;
};

struct RmrRange {
  std::uint64_t base = 0;
  std::uint64_t length = 0;
  friend bool operator==(const RmrRange&, const RmrRange&) = default;
};

struct Rmr {
  static constexpr std::uint32_t kRemapPermitted = 1u << 0, kAccessPrivileged = 1u << 1;
  static constexpr std::uint32_t kAttributesShift = 2, kAttributesMask = 0xffu << kAttributesShift;

  std::uint32_t flags = 0;
  std::vector<RmrRange> ranges;
  unsigned access_attributes() const { return (flags & kAttributesMask) >> kAttributesShift; }
  friend bool operator==(const Rmr&, const Rmr&) = default;
};

using NodeData = std::variant<std::monostate, ItsGroup, NamedComponent, RootComplex, Smmu, SmmuV3, Pmcg, Rmr>;

struct Node {
  std::uint32_t offset = 0;  // in the table
  std::uint8_t type = 0;     // raw, so an unknown type can still be reported
  std::uint16_t length = 0;
  std::uint8_t revision = 0;
  std::uint32_t identifier = 0;
  std::uint32_t mapping_count = 0;
  std::uint32_t mapping_offset = 0;
  std::vector<IdMapping> mappings;  // those that lie inside the node
  NodeData data;                    // monostate when the type is unknown or the fields did not fit

  bool is(NodeType t) const { return type == static_cast<std::uint8_t>(t); }
  template <class T>
  const T* as() const {
    return std::get_if<T>(&data);
  }
};

struct Header {
  std::string signature;
  std::uint32_t length = 0;
  std::uint8_t revision = 0;
  std::uint8_t checksum = 0;
  std::string oem_id;
  std::string oem_table_id;
  std::uint32_t oem_revision = 0;
  std::string creator_id;
  std::uint32_t creator_revision = 0;
  std::uint32_t node_count = 0;
  std::uint32_t node_offset = 0;
};

struct Table {
  Header header;
  std::vector<Node> nodes;  // in table order

  // The node that starts exactly at `offset`, or nullptr.
  const Node* node_at(std::uint32_t offset) const;
  std::vector<const Node*> of_type(NodeType type) const;
};

enum class Severity { error, warning };

// Which rule a problem breaks; stable names for JSON and tests.
enum class Check {
  acpi_header,        // fewer bytes than the ACPI / IORT header
  table_length,       // declared length vs bytes present
  checksum,           // ACPI 6.5 5.2.6
  table_revision,     // unknown or too old for what the table holds
  node_array,         // node count / offset
  node_header,        // a node header cut off by the end of the table
  node_length,        // zero, too short for the type, or past the end of the table
  node_type,          // type past RMR
  node_revision,      // unknown or deprecated node revision
  node_fields,        // arrays, names and counts inside a node
  id_mapping,         // ID mapping array bounds, ranges that wrap, reserved flag bits
  output_reference,   // a reference that does not name a node, or names the wrong kind
  overlapping_input,  // two mappings of one node claiming the same input ID
  single_mapping,     // the single-mapping flag where DEN 0049 / Linux do not allow it
  identifier,         // node identifiers that are not unique
  smmu_msi,           // the SMMUv3 DeviceID mapping index for its own MSIs
  rmr,                // memory range descriptors Linux warns about
  requester_id,       // a root complex mapping whose input range goes past the 16-bit requester ID
  shared_stream_id,   // a root complex single mapping: every RID gets one stream ID, one iommu group
  shared_segment,     // two root complexes with one PCI segment: Linux uses the first, the later is shadowed
  canwbs_revision,    // CANWBS (or its absence) in a table older than DEN 0049 E.f, which defines it
  unreachable_mapping,  // a root complex mapping after a single mapping, which already takes every RID
};
std::string_view to_string(Check check);
std::string_view to_string(Severity severity);

struct Problem {
  std::uint64_t offset = 0;  // byte offset in the table of the field at fault
  Severity severity = Severity::error;
  Check check = Check::acpi_header;
  std::string message;  // what is wrong, why it matters, what to do
};

struct Report {
  Table table;
  std::vector<Problem> problems;
  std::size_t size = 0;  // bytes given to the parser

  std::size_t count(Severity s) const;
  bool valid() const { return count(Severity::error) == 0; }
};

// Parses and validates a whole table. Fails (EINVAL, "iort.parse") only when the bytes are not an
// IORT at all: fewer than 4 bytes, or another signature. Every other defect is a Problem.
Result<Report> parse(std::span<const std::uint8_t> bytes);

// The report of `size` bytes parse() refused (error `e`): an empty table with that one error at offset 0, so
// every consumer (the status, which is then malformed; the JSON) treats it like any other malformed table.
Report refused(const Error& e, std::size_t size);

}  // namespace vsmmu::acpi::iort
