// IORT parser and validator. Every read is bounds-checked (ByteView); every defect becomes a Problem
// with the byte offset of the field at fault, so `vsmmu iort check` can point at the exact byte.
#include <algorithm>
#include <array>
#include <map>

#include <fmt/format.h>

#include "acpi/bytes.hpp"
#include "acpi/iort.hpp"

namespace vsmmu::acpi::iort {
namespace {

using namespace layout;

// The newest revisions DEN 0049 E.f defines; later ones are decoded as far as we know them.
constexpr std::uint8_t kNewestTableRevision = 7;
constexpr std::array<std::uint8_t, kNodeTypeCount> kNewestNodeRevision = {1, 4, 4, 3, 5, 2, 3};
// Linux (iort_find_rmrs) reads RMR nodes only from table revision 5 (E.d) on.
constexpr std::uint8_t kRmrMinTableRevision = 5;

std::string hex(std::uint64_t v) { return fmt::format("0x{:x}", v); }

// A byte range inside one node, to find fields, arrays and names that overlap each other.
struct Region {
  std::uint64_t begin = 0;  // node-relative
  std::uint64_t end = 0;
  std::string what;
};

class Parser {
 public:
  explicit Parser(std::span<const std::uint8_t> bytes) : all_(bytes) { report_.size = bytes.size(); }

  Report run() {
    if (parse_header()) {
      walk_nodes();
      cross_checks();
    }
    return std::move(report_);
  }

 private:
  template <class... A>
  void problem(Severity s, std::uint64_t offset, Check check, fmt::format_string<A...> f, A&&... args) {
    report_.problems.push_back(Problem{offset, s, check, fmt::format(f, std::forward<A>(args)...)});
  }
  template <class... A>
  void error(std::uint64_t offset, Check check, fmt::format_string<A...> f, A&&... args) {
    problem(Severity::error, offset, check, f, std::forward<A>(args)...);
  }
  template <class... A>
  void warning(std::uint64_t offset, Check check, fmt::format_string<A...> f, A&&... args) {
    problem(Severity::warning, offset, check, f, std::forward<A>(args)...);
  }

  static std::string node_name(const Node& n) {
    return fmt::format("{} node at {}", node_type_name(n.type), hex(n.offset));
  }

  bool parse_header();
  void walk_nodes();
  void parse_node(Node& node);
  // Returns the end of the type's fixed fields (node-relative), or 0 when the node is too short.
  std::size_t parse_fields(Node& node, const ByteView& v, std::vector<Region>& regions);
  void parse_mappings(Node& node, const ByteView& v, std::size_t fields_end, std::vector<Region>& regions);
  void check_regions(const Node& node, std::vector<Region>& regions);

  ItsGroup parse_its(const Node& node, const ByteView& v, std::vector<Region>& regions);
  NamedComponent parse_named_component(const Node& node, const ByteView& v, std::vector<Region>& regions);
  RootComplex parse_root_complex(const Node& node, const ByteView& v, std::size_t fixed_end);
  Smmu parse_smmu(const Node& node, const ByteView& v, std::vector<Region>& regions);
  SmmuV3 parse_smmu_v3(const Node& node, const ByteView& v, std::size_t fixed_end);
  Pmcg parse_pmcg(const Node& node, const ByteView& v);
  Rmr parse_rmr(const Node& node, const ByteView& v, std::vector<Region>& regions);
  std::vector<SmmuInterrupt> parse_irq_array(const Node& node, const ByteView& v, std::size_t count_field,
                                             std::size_t offset_field, std::string_view what,
                                             std::vector<Region>& regions);
  static MemoryAccess parse_memory(const ByteView& v, std::size_t at);
  void check_memory_flags(const Node& node, std::size_t at, const MemoryAccess& m);

  void cross_checks();
  void check_references(const Node& node);
  void check_overlaps(const Node& node);
  void check_smmu_msi(const Node& node);

  std::span<const std::uint8_t> all_;
  ByteView table_;  // the bytes the table covers: min(declared length, bytes present)
  Report report_;
};

bool Parser::parse_header() {
  ByteView v(all_);
  auto& h = report_.table.header;
  h.signature = v.text(kSignature, 4);
  if (!v.has(0, kAcpiHeaderSize)) {
    error(v.size(), Check::acpi_header,
          "the table ends after {} bytes, inside the 36-byte ACPI header (ACPI 6.5 5.2.6): nothing past the "
          "signature can be read; the dump is truncated",
          v.size());
    return false;
  }
  h.length = v.u32(kLength);
  h.revision = v.u8(kRevision);
  h.checksum = v.u8(kChecksum);
  h.oem_id = v.text(kOemId, kOemIdSize);
  h.oem_table_id = v.text(kOemTableId, kOemTableIdSize);
  h.oem_revision = v.u32(kOemRevision);
  h.creator_id = v.text(kCreatorId, kCreatorIdSize);
  h.creator_revision = v.u32(kCreatorRevision);
  if (!v.has(0, kHeaderSize)) {
    error(v.size(), Check::acpi_header,
          "the table ends after {} bytes, inside the 48-byte IORT header (DEN 0049 Table 2): the node count "
          "and node array offset are missing",
          v.size());
    return false;
  }
  h.node_count = v.u32(kNodeCount);
  h.node_offset = v.u32(kNodeOffset);

  std::size_t limit = v.size();
  if (h.length < kHeaderSize) {
    error(kLength, Check::table_length,
          "the header declares {} bytes, fewer than the 48-byte IORT header; reading the {} bytes present instead",
          h.length, v.size());
  } else if (h.length > v.size()) {
    error(kLength, Check::table_length,
          "the header declares {} ({}) bytes but only {} ({}) are present: the table is truncated and whatever "
          "lay past {} cannot be checked",
          h.length, hex(h.length), v.size(), hex(v.size()), hex(v.size()));
  } else {
    limit = h.length;
    if (h.length < v.size())
      warning(h.length, Check::table_length,
              "{} bytes follow the declared length {} ({}); they are not part of the table and are ignored",
              v.size() - h.length, h.length, hex(h.length));
    std::uint8_t sum = byte_sum(all_.first(h.length));
    if (sum != 0) {
      auto good = static_cast<std::uint8_t>(h.checksum - sum);
      error(kChecksum, Check::checksum,
            "bad checksum: the {} bytes sum to {:#04x}, not 0 (ACPI 6.5 5.2.6); the checksum byte {:#04x} "
            "should be {:#04x}. Linux warns and uses the table anyway; a table override must be fixed "
            "(`vsmmu iort patch` rewrites the checksum)",
            h.length, sum, h.checksum, good);
    }
  }
  table_ = ByteView(all_.first(limit));

  if (h.revision > kNewestTableRevision)
    warning(kRevision, Check::table_revision,
            "table revision {} is newer than DEN 0049 E.f (revision {}); fields added since are not decoded",
            h.revision, kNewestTableRevision);
  return true;
}

void Parser::walk_nodes() {
  const auto& h = report_.table.header;
  if (h.node_count == 0) {
    warning(kNodeCount, Check::node_array, "the table has no nodes: it describes no SMMU and no device");
    return;
  }
  if (h.node_offset < kHeaderSize) {
    error(kNodeOffset, Check::node_array,
          "the node array offset {} points inside the 48-byte IORT header; nodes must follow it", hex(h.node_offset));
    return;
  }
  if (h.node_offset >= table_.size()) {
    error(kNodeOffset, Check::node_array,
          "the node array offset {} is at or past the end of the table ({}): none of the {} nodes is present",
          hex(h.node_offset), hex(table_.size()), h.node_count);
    return;
  }
  std::uint64_t at = h.node_offset;
  for (std::uint32_t i = 0; i < h.node_count; ++i) {
    if (at == table_.size()) {
      error(kNodeCount, Check::node_array,
            "the node count is {} but the table ends after node {} at {}: the count is wrong or the table was "
            "cut short",
            h.node_count, i, hex(at));
      return;
    }
    if (!table_.has(at, kNodeHeaderSize)) {
      error(at, Check::node_header,
            "node {} at {}: its 16-byte header needs bytes up to {}, but the table ends at {}", i, hex(at),
            hex(at + kNodeHeaderSize), hex(table_.size()));
      return;
    }
    Node node;
    node.offset = static_cast<std::uint32_t>(at);
    node.type = table_.u8(at + kNodeType);
    node.length = table_.u16(at + kNodeLength);
    node.revision = table_.u8(at + kNodeRevision);
    node.identifier = table_.u32(at + kNodeIdentifier);
    node.mapping_count = table_.u32(at + kNodeMappingCount);
    node.mapping_offset = table_.u32(at + kNodeMappingOffset);
    if (node.length < kNodeHeaderSize) {
      error(at + kNodeLength, Check::node_length,
            "node {} ({}) has length {}, less than its own 16-byte header{}: the node array cannot be walked "
            "past it",
            i, node_name(node), node.length, node.length == 0 ? " (a zero-length node)" : "");
      return;
    }
    if (!table_.has(at, node.length)) {
      error(at + kNodeLength, Check::node_length,
            "node {} ({}) is {} bytes long and would end at {}, past the end of the table at {}", i,
            node_name(node), node.length, hex(at + node.length), hex(table_.size()));
      return;
    }
    parse_node(node);
    report_.table.nodes.push_back(std::move(node));
    at += report_.table.nodes.back().length;
  }
  if (at < table_.size())
    warning(at, Check::node_array,
            "{} bytes between the end of the last node ({}) and the end of the table ({}) belong to no node",
            table_.size() - at, hex(at), hex(table_.size()));
}

// The smallest node a type and revision can have (DEN 0049 tables 12-23).
std::size_t minimum_size(std::uint8_t type, std::uint8_t revision) {
  switch (static_cast<NodeType>(type)) {
    case NodeType::its_group: return kItsIds;
    case NodeType::named_component: return kNcName + 1;  // at least the name's terminating NUL
    case NodeType::root_complex: return revision == 0 ? kRcSizeRev0 : kRcSizeRev1;
    case NodeType::smmu: return kSmmuSize;
    case NodeType::smmu_v3:
      return revision == 0 ? kSmmuV3SizeRev0 : revision == 1 ? kSmmuV3SizeRev1 : kSmmuV3SizeRev2;
    case NodeType::pmcg: return revision == 0 ? kPmcgSizeRev0 : kPmcgSizeRev1;
    case NodeType::rmr: return kRmrSize;
  }
  return kNodeHeaderSize;
}

void Parser::parse_node(Node& node) {
  ByteView v(table_.span().subspan(node.offset, node.length));
  std::vector<Region> regions;
  if (node.type >= kNodeTypeCount) {
    error(node.offset + kNodeType, Check::node_type,
          "node at {} has type {}, which DEN 0049 E.f does not define (0-6); its contents are skipped",
          hex(node.offset), node.type);
    return;
  }
  const auto newest = kNewestNodeRevision[node.type];
  if (node.revision > newest)
    warning(node.offset + kNodeRevision, Check::node_revision,
            "{} has revision {}, newer than DEN 0049 E.f defines ({}); fields added since are not decoded",
            node_name(node), node.revision, newest);
  if (node.is(NodeType::rmr) && node.revision < 3)
    warning(node.offset + kNodeRevision, Check::node_revision,
            "{} has revision {}: RMR revisions before 3 (DEN 0049 E.e) come from drafts that edk2 and ACPICA "
            "no longer generate; emit revision 3",
            node_name(node), node.revision);

  const std::size_t fields_end = parse_fields(node, v, regions);
  parse_mappings(node, v, fields_end, regions);
  check_regions(node, regions);
}

std::size_t Parser::parse_fields(Node& node, const ByteView& v, std::vector<Region>& regions) {
  const std::size_t need = minimum_size(node.type, node.revision);
  if (node.length < need) {
    error(node.offset + kNodeLength, Check::node_length,
          "{} (revision {}) is {} bytes, too short for its fields, which need {}; the fields are not decoded",
          node_name(node), node.revision, node.length, need);
    return 0;
  }
  // Where the type's own fields may extend to: up to the ID mapping array if there is one.
  const std::size_t fixed_end =
      node.mapping_count != 0 && node.mapping_offset >= need && node.mapping_offset < node.length
          ? node.mapping_offset
          : node.length;
  std::size_t end = need;
  switch (static_cast<NodeType>(node.type)) {
    case NodeType::its_group: node.data = parse_its(node, v, regions); break;
    case NodeType::named_component:
      node.data = parse_named_component(node, v, regions);
      end = kNcName;  // the name that follows is a region of its own
      break;
    case NodeType::root_complex: {
      auto rc = parse_root_complex(node, v, fixed_end);
      if (rc.flags) end = kRcSizeRev4;
      node.data = std::move(rc);
      break;
    }
    case NodeType::smmu: node.data = parse_smmu(node, v, regions); break;
    case NodeType::smmu_v3: node.data = parse_smmu_v3(node, v, fixed_end); break;
    case NodeType::pmcg: node.data = parse_pmcg(node, v); break;
    case NodeType::rmr: node.data = parse_rmr(node, v, regions); break;
  }
  regions.push_back(Region{0, end, fmt::format("the {} fields", node_type_name(node.type))});
  return end;
}

MemoryAccess Parser::parse_memory(const ByteView& v, std::size_t at) {
  return MemoryAccess{v.u32(at + kMemCca), v.u8(at + kMemHints), v.u8(at + kMemFlags)};
}

void Parser::check_memory_flags(const Node& node, std::size_t at, const MemoryAccess& m) {
  if (auto unknown = m.flags & ~MemoryAccess::kKnownFlags)
    warning(node.offset + at + kMemFlags, Check::node_fields,
            "{}: memory access flags {:#04x} set bits {:#04x} that DEN 0049 E.f reserves", node_name(node), m.flags,
            unknown);
  if (m.cache_coherency > 1)
    warning(node.offset + at + kMemCca, Check::node_fields,
            "{}: cache coherency attribute is {}; DEN 0049 defines only 0 (not coherent) and 1 (coherent)",
            node_name(node), m.cache_coherency);
}

ItsGroup Parser::parse_its(const Node& node, const ByteView& v, std::vector<Region>& regions) {
  ItsGroup its;
  const std::uint32_t count = v.u32(kItsCount);
  if (count == 0) {
    error(node.offset + kItsCount, Check::node_fields,
          "{} lists no ITS: MSIs whose IDs are mapped to it have no ITS to reach", node_name(node));
    return its;
  }
  const std::uint64_t bytes = std::uint64_t{count} * 4;
  if (!v.has(kItsIds, bytes)) {
    error(node.offset + kItsCount, Check::node_fields,
          "{} claims {} ITS identifiers ({} bytes from +{}), but the node ends at +{}", node_name(node), count,
          bytes, hex(kItsIds), hex(v.size()));
    return its;
  }
  for (std::uint32_t i = 0; i < count; ++i) its.its_ids.push_back(v.u32(kItsIds + 4 * std::uint64_t{i}));
  regions.push_back(Region{kItsIds, kItsIds + bytes, "the ITS identifier array"});
  return its;
}

NamedComponent Parser::parse_named_component(const Node& node, const ByteView& v, std::vector<Region>& regions) {
  NamedComponent nc;
  nc.node_flags = v.u32(kNcFlags);
  nc.memory = parse_memory(v, kNcMemory);
  check_memory_flags(node, kNcMemory, nc.memory);
  nc.memory_address_limit = v.u8(kNcAddressLimit);
  const std::size_t end =
      node.mapping_count != 0 && node.mapping_offset > kNcName && node.mapping_offset <= v.size()
          ? node.mapping_offset
          : v.size();
  std::size_t i = kNcName;
  while (i < end && v.u8(i) != 0) nc.device_name.push_back(static_cast<char>(v.u8(i++)));
  if (i == end) {
    error(node.offset + kNcName, Check::node_fields,
          "{}: the device name at +{} has no terminating NUL before +{} (the {}); Linux compares it as a C "
          "string and would read past it",
          node_name(node), hex(kNcName), hex(end), end == v.size() ? "end of the node" : "ID mapping array");
    return nc;
  }
  regions.push_back(Region{kNcName, i + 1, "the device name"});
  return nc;
}

RootComplex Parser::parse_root_complex(const Node& node, const ByteView& v, std::size_t fixed_end) {
  RootComplex rc;
  rc.memory = parse_memory(v, kRcMemory);
  check_memory_flags(node, kRcMemory, rc.memory);
  rc.ats_attribute = v.u32(kRcAts);
  rc.pci_segment = v.u32(kRcSegment);
  if (node.revision >= 1) rc.memory_address_limit = v.u8(kRcAddressLimit);
  if (node.revision >= 4) {
    rc.pasid_capabilities = v.u16(kRcPasidCaps);
    if (fixed_end >= kRcSizeRev4) rc.flags = v.u32(kRcFlags);
  }
  return rc;
}

std::vector<SmmuInterrupt> Parser::parse_irq_array(const Node& node, const ByteView& v, std::size_t count_field,
                                                   std::size_t offset_field, std::string_view what,
                                                   std::vector<Region>& regions) {
  std::vector<SmmuInterrupt> irqs;
  const std::uint32_t count = v.u32(count_field);
  const std::uint32_t offset = v.u32(offset_field);
  if (count == 0) return irqs;
  const std::uint64_t bytes = std::uint64_t{count} * kSmmuIrqEntrySize;
  if (offset == 0 || !v.has(offset, bytes)) {
    error(node.offset + count_field, Check::node_fields,
          "{}: {} {} interrupts ({} bytes at +{}) do not fit in the node, which ends at +{}", node_name(node), count,
          what, bytes, hex(offset), hex(v.size()));
    return irqs;
  }
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::uint64_t at = offset + std::uint64_t{i} * kSmmuIrqEntrySize;
    irqs.push_back(SmmuInterrupt{v.u32(at), v.u32(at + 4)});
  }
  regions.push_back(Region{offset, offset + bytes, fmt::format("the {} interrupt array", what)});
  return irqs;
}

Smmu Parser::parse_smmu(const Node& node, const ByteView& v, std::vector<Region>& regions) {
  Smmu s;
  s.base = v.u64(kSmmuBase);
  s.span = v.u64(kSmmuSpan);
  s.model = v.u32(kSmmuModel);
  s.flags = v.u32(kSmmuFlags);
  const std::uint32_t global = v.u32(kSmmuGlobalIrqOffset);
  if (global == 0 || !v.has(global, kSmmuGlobalIrqSize)) {
    error(node.offset + kSmmuGlobalIrqOffset, Check::node_fields,
          "{}: the global interrupt array at +{} (16 bytes) does not fit in the node, which ends at +{}",
          node_name(node), hex(global), hex(v.size()));
  } else {
    s.nsg_irpt = SmmuInterrupt{v.u32(global), v.u32(global + 4)};
    s.nsg_cfg_irpt = SmmuInterrupt{v.u32(global + 8), v.u32(global + 12)};
    regions.push_back(Region{global, global + kSmmuGlobalIrqSize, "the global interrupt array"});
  }
  s.context_interrupts = parse_irq_array(node, v, kSmmuContextIrqCount, kSmmuContextIrqOffset, "context", regions);
  s.pmu_interrupts = parse_irq_array(node, v, kSmmuPmuIrqCount, kSmmuPmuIrqOffset, "PMU", regions);
  return s;
}

SmmuV3 Parser::parse_smmu_v3(const Node& node, const ByteView& v, std::size_t fixed_end) {
  SmmuV3 s;
  s.base = v.u64(kSmmuV3Base);
  s.flags = v.u32(kSmmuV3Flags);
  s.vatos_address = v.u64(kSmmuV3Vatos);
  s.model = v.u32(kSmmuV3Model);
  s.event_gsiv = v.u32(kSmmuV3EventGsiv);
  s.pri_gsiv = v.u32(kSmmuV3PriGsiv);
  s.gerr_gsiv = v.u32(kSmmuV3GerrGsiv);
  s.sync_gsiv = v.u32(kSmmuV3SyncGsiv);
  if (node.revision >= 1) s.proximity_domain = v.u32(kSmmuV3Pxm);
  if (node.revision >= 2 && fixed_end >= kSmmuV3SizeRev2) s.id_mapping_index = v.u32(kSmmuV3IdMappingIndex);
  if (s.httu() == 3)
    warning(node.offset + kSmmuV3Flags, Check::node_fields,
            "{}: HTTU override value 3 is reserved (0: none, 1: access flag, 2: access and dirty flags)",
            node_name(node));
  return s;
}

Pmcg Parser::parse_pmcg(const Node& node, const ByteView& v) {
  Pmcg p;
  p.page0_base = v.u64(kPmcgPage0);
  p.overflow_gsiv = v.u32(kPmcgOverflowGsiv);
  p.node_reference = v.u32(kPmcgNodeReference);
  if (node.revision >= 1) p.page1_base = v.u64(kPmcgPage1);
  return p;
}

Rmr Parser::parse_rmr(const Node& node, const ByteView& v, std::vector<Region>& regions) {
  Rmr r;
  r.flags = v.u32(kRmrFlags);
  const std::uint32_t count = v.u32(kRmrCount);
  const std::uint32_t offset = v.u32(kRmrOffset);
  if (count == 0 || offset == 0) {
    error(node.offset + kRmrCount, Check::rmr,
          "{} has {} memory range descriptors at offset {}: Linux skips an RMR node without descriptors, so the "
          "range is not reserved",
          node_name(node), count, hex(offset));
    return r;
  }
  const std::uint64_t bytes = std::uint64_t{count} * kRmrDescriptorSize;
  if (!v.has(offset, bytes)) {
    error(node.offset + kRmrCount, Check::node_fields,
          "{}: {} memory range descriptors ({} bytes at +{}) run past the node's end at +{}", node_name(node),
          count, bytes, hex(offset), hex(v.size()));
    return r;
  }
  regions.push_back(Region{offset, offset + bytes, "the memory range descriptor array"});
  constexpr std::uint64_t k64K = 0x10000;
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::uint64_t at = offset + std::uint64_t{i} * kRmrDescriptorSize;
    RmrRange range{v.u64(at + kRmrDescBase), v.u64(at + kRmrDescLength)};
    if (range.length == 0)
      warning(node.offset + at + kRmrDescLength, Check::rmr,
              "{}: memory range {} at {} has length 0 (Linux: 'RMR descriptor with zero length')", node_name(node),
              i, hex(range.base));
    else if (range.base % k64K != 0 || range.length % k64K != 0)
      warning(node.offset + at, Check::rmr,
              "{}: memory range {} [{}, +{}) is not 64 KiB aligned (DEN 0049 Table 23); Linux rounds it to pages "
              "and warns",
              node_name(node), i, hex(range.base), hex(range.length));
    for (std::uint32_t j = 0; j < r.ranges.size(); ++j) {
      const auto& o = r.ranges[j];
      if (range.length && o.length && range.base <= o.base + (o.length - 1) &&
          o.base <= range.base + (range.length - 1))
        warning(node.offset + at, Check::rmr, "{}: memory ranges {} and {} overlap (Linux warns and continues)",
                node_name(node), j, i);
    }
    r.ranges.push_back(range);
  }
  return r;
}

void Parser::parse_mappings(Node& node, const ByteView& v, std::size_t fields_end, std::vector<Region>& regions) {
  if (node.mapping_count == 0) {
    if (node.is(NodeType::rmr))
      error(node.offset + kNodeMappingCount, Check::rmr,
            "{} has no ID mappings: Linux ('Invalid ID mapping, skipping RMR node') cannot tell which stream "
            "IDs the reserved ranges are for",
            node_name(node));
    return;
  }
  if (node.is(NodeType::its_group)) {
    error(node.offset + kNodeMappingCount, Check::node_fields,
          "{} claims {} ID mappings; an ITS group is where IDs end (DEN 0049 Table 12) and has none",
          node_name(node), node.mapping_count);
    return;
  }
  const std::uint64_t bytes = std::uint64_t{node.mapping_count} * kIdMappingSize;
  if (node.mapping_offset == 0 || node.mapping_offset < kNodeHeaderSize ||
      (fields_end != 0 && node.mapping_offset < fields_end)) {
    error(node.offset + kNodeMappingOffset, Check::id_mapping,
          "{}: the ID mapping array offset +{} lies inside the node's own fields, which end at +{}",
          node_name(node), hex(node.mapping_offset), hex(std::max<std::size_t>(fields_end, kNodeHeaderSize)));
    return;
  }
  if (!v.has(node.mapping_offset, bytes)) {
    error(node.offset + kNodeMappingCount, Check::id_mapping,
          "{}: {} ID mappings ({} bytes from +{}) would end at +{}, past the node's end at +{}", node_name(node),
          node.mapping_count, bytes, hex(node.mapping_offset), hex(node.mapping_offset + bytes), hex(v.size()));
    return;
  }
  regions.push_back(Region{node.mapping_offset, node.mapping_offset + bytes, "the ID mapping array"});
  for (std::uint32_t i = 0; i < node.mapping_count; ++i) {
    const std::uint64_t rel = node.mapping_offset + std::uint64_t{i} * kIdMappingSize;
    IdMapping m{v.u32(rel + kMapInputBase), v.u32(rel + kMapIdCount),         v.u32(rel + kMapOutputBase),
                v.u32(rel + kMapOutputReference), v.u32(rel + kMapFlags), static_cast<std::uint32_t>(node.offset + rel)};
    if (!m.single() && m.input_last() > 0xffffffffULL)
      error(m.offset + kMapIdCount, Check::id_mapping,
            "{}: mapping {} input range {} + {} IDs wraps past 0xffffffff", node_name(node), i, hex(m.input_base),
            hex(m.count()));
    if (m.output_last() > 0xffffffffULL && !m.single())
      error(m.offset + kMapIdCount, Check::id_mapping,
            "{}: mapping {} output range {} + {} IDs wraps past 0xffffffff", node_name(node), i, hex(m.output_base),
            hex(m.count()));
    if (auto reserved = m.flags & ~IdMapping::kSingleMapping)
      warning(m.offset + kMapFlags, Check::id_mapping,
              "{}: mapping {} sets reserved flag bits {} (only bit 0, single mapping, is defined)", node_name(node),
              i, hex(reserved));
    node.mappings.push_back(m);
  }
}

void Parser::check_regions(const Node& node, std::vector<Region>& regions) {
  std::sort(regions.begin(), regions.end(), [](const Region& a, const Region& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < regions.size(); ++i) {
    const auto& a = regions[i - 1];
    const auto& b = regions[i];
    if (b.begin < a.end)
      error(node.offset + b.begin, Check::node_fields, "{}: {} (+{}..+{}) overlaps {} (+{}..+{})", node_name(node),
            b.what, hex(b.begin), hex(b.end), a.what, hex(a.begin), hex(a.end));
  }
}

// Which node types a type's ID mappings may point at (DEN 0049 2.3 / Linux iort_node_map_id).
bool allowed_output(std::uint8_t from, std::uint8_t to, std::string& allowed) {
  const auto t = static_cast<NodeType>(to);
  switch (static_cast<NodeType>(from)) {
    case NodeType::named_component:
    case NodeType::root_complex:
      allowed = "an ITS group or an SMMU";
      return t == NodeType::its_group || t == NodeType::smmu || t == NodeType::smmu_v3;
    case NodeType::smmu:
    case NodeType::smmu_v3:
    case NodeType::pmcg:
      allowed = "an ITS group";
      return t == NodeType::its_group;
    case NodeType::rmr:
      allowed = "an SMMU";
      return t == NodeType::smmu || t == NodeType::smmu_v3;
    case NodeType::its_group: break;
  }
  allowed = "nothing";
  return false;
}

void Parser::check_references(const Node& node) {
  const auto& table = report_.table;
  for (std::size_t i = 0; i < node.mappings.size(); ++i) {
    const auto& m = node.mappings[i];
    const std::uint64_t at = m.offset + kMapOutputReference;
    if (m.output_reference == 0) {
      error(at, Check::output_reference,
            "{}: mapping {} has output reference 0 (Linux: 'ID map has NULL parent reference'); its IDs go nowhere",
            node_name(node), i);
      continue;
    }
    const Node* target = table.node_at(m.output_reference);
    if (!target) {
      std::string starts;
      for (const auto& n : table.nodes) starts += (starts.empty() ? "" : ", ") + hex(n.offset);
      error(at, Check::output_reference,
            "{}: mapping {} points at {}, which is not the start of any node (nodes start at {}); a table that was "
            "edited without fixing its references",
            node_name(node), i, hex(m.output_reference), starts);
      continue;
    }
    if (target == &node) {
      error(at, Check::output_reference, "{}: mapping {} points at the node itself", node_name(node), i);
      continue;
    }
    std::string allowed;
    if (!allowed_output(node.type, target->type, allowed))
      error(at, Check::output_reference, "{}: mapping {} points at the {}, but its IDs can only go to {}",
            node_name(node), i, node_name(*target), allowed);
  }
}

// Index of the SMMUv3 mapping that carries the SMMU's own MSI DeviceID, when Linux uses one: from node
// revision 1 on, unless all four interrupts are wired GSIVs (iort_get_id_mapping_index).
std::optional<std::size_t> smmu_msi_index(const Node& node) {
  const auto* s = node.as<SmmuV3>();
  if (!s || node.revision < 1 || !s->id_mapping_index || s->all_gsivs()) return std::nullopt;
  return *s->id_mapping_index;
}

void Parser::check_smmu_msi(const Node& node) {
  auto index = smmu_msi_index(node);
  if (!index) return;
  const auto at = node.offset + kSmmuV3IdMappingIndex;
  if (*index >= node.mappings.size()) {
    error(at, Check::smmu_msi,
          "{}: not every interrupt is a wired GSIV, so Linux takes the SMMU's MSI DeviceID from mapping {}, but "
          "the node has {} mappings ('ID mapping index overflows valid mappings')",
          node_name(node), *index, node.mappings.size());
    return;
  }
  const auto& m = node.mappings[*index];
  const Node* target = report_.table.node_at(m.output_reference);
  if (!m.single() || !target || !target->is(NodeType::its_group))
    error(m.offset, Check::smmu_msi,
          "{}: mapping {} is the SMMU's MSI DeviceID mapping (some interrupts are not wired GSIVs) and must be a "
          "single mapping to an ITS group (Linux: 'Invalid MSI mapping'); Linux also skips it when translating "
          "device IDs, so devices whose IDs only it maps lose their MSIs",
          node_name(node), *index);
}

void Parser::check_overlaps(const Node& node) {
  if (node.is(NodeType::rmr)) return;  // RMR mappings name stream IDs by their outputs; inputs are unused
  const auto msi = node.is(NodeType::smmu_v3) ? smmu_msi_index(node) : std::nullopt;
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < node.mappings.size(); ++i)
    if (!node.mappings[i].single() && i != msi) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return node.mappings[a].input_base < node.mappings[b].input_base;
  });
  std::optional<std::size_t> reach;  // the mapping seen so far whose input range ends last
  for (auto i : order) {
    const auto& m = node.mappings[i];
    if (reach) {
      const auto& r = node.mappings[*reach];
      if (m.input_base <= r.input_last()) {
        const std::uint64_t last = std::min(r.input_last(), m.input_last());
        if (last == m.input_base && r.input_last() == m.input_base && r.id_count != 0)
          warning(m.offset + kMapInputBase, Check::overlapping_input,
                  "{}: mapping {} ends at input ID {} where mapping {} begins: its Number of IDs looks like a "
                  "count, but DEN 0049 stores the count minus one; Linux works around exactly this case",
                  node_name(node), *reach, hex(m.input_base), i);
        else
          error(m.offset + kMapInputBase, Check::overlapping_input,
                "{}: mappings {} and {} both claim input IDs {}-{}; Linux takes the first match, so devices in "
                "the overlap may get the wrong stream or device ID",
                node_name(node), *reach, i, hex(m.input_base), hex(last));
      }
    }
    if (!reach || m.input_last() > node.mappings[*reach].input_last()) reach = i;
  }
}

void Parser::cross_checks() {
  auto& table = report_.table;
  std::map<std::uint32_t, const Node*> identifiers;
  std::size_t rmrs = 0;
  for (const auto& node : table.nodes) {
    check_references(node);
    check_overlaps(node);
    if (node.is(NodeType::smmu_v3)) check_smmu_msi(node);
    for (std::size_t i = 0; i < node.mappings.size(); ++i)
      if (node.mappings[i].single() && node.is(NodeType::smmu))
        error(node.mappings[i].offset + kMapFlags, Check::single_mapping,
              "{}: mapping {} is a single mapping, which DEN 0049 allows only for named components, root "
              "complexes, SMMUv3, PMCG and RMR nodes; Linux ignores it for an SMMUv1/v2",
              node_name(node), i);
    if (const auto* p = node.as<Pmcg>(); p && !table.node_at(p->node_reference))
      error(node.offset + kPmcgNodeReference, Check::output_reference,
            "{}: its node reference {} is not the start of any node", node_name(node), hex(p->node_reference));
    // Two root complexes of one segment are not a table error: Linux uses the first (iort_nesting.cpp warns,
    // Check::shared_segment).
    if (table.header.revision >= kRmrMinTableRevision) {
      auto [it, fresh] = identifiers.emplace(node.identifier, &node);
      if (!fresh)
        warning(node.offset + kNodeIdentifier, Check::identifier,
                "{} reuses identifier {} of the {}; DEN 0049 (E.d on) asks for unique node identifiers",
                node_name(node), node.identifier, node_name(*it->second));
    }
    if (node.is(NodeType::rmr)) ++rmrs;
  }
  if (rmrs && table.header.revision < kRmrMinTableRevision)
    warning(kRevision, Check::table_revision,
            "the table has {} RMR nodes but revision {}: Linux reads RMR nodes only from revision 5 (DEN 0049 E.d) "
            "on and ignores them here",
            rmrs, table.header.revision);
}

}  // namespace

std::string_view node_type_name(std::uint8_t type) {
  switch (type) {
    case 0: return "ITS group";
    case 1: return "named component";
    case 2: return "root complex";
    case 3: return "SMMUv1/v2";
    case 4: return "SMMUv3";
    case 5: return "PMCG";
    case 6: return "RMR";
    default: return "unknown";
  }
}

std::string memory_flags_names(std::uint8_t flags) {
  std::string s;
  auto add = [&](std::string_view name) {
    if (!s.empty()) s += '|';
    s += name;
  };
  if (flags & MemoryAccess::kCoherency) add("CPM");
  if (flags & MemoryAccess::kAttributes) add("DACS");
  if (flags & MemoryAccess::kCanwbs) add("CANWBS");
  if (auto rest = flags & ~MemoryAccess::kKnownFlags) add(fmt::format("{:#04x}", rest));
  return s.empty() ? "none" : s;
}

std::string_view to_string(Check check) {
  switch (check) {
    case Check::acpi_header: return "acpi_header";
    case Check::table_length: return "table_length";
    case Check::checksum: return "checksum";
    case Check::table_revision: return "table_revision";
    case Check::node_array: return "node_array";
    case Check::node_header: return "node_header";
    case Check::node_length: return "node_length";
    case Check::node_type: return "node_type";
    case Check::node_revision: return "node_revision";
    case Check::node_fields: return "node_fields";
    case Check::id_mapping: return "id_mapping";
    case Check::output_reference: return "output_reference";
    case Check::overlapping_input: return "overlapping_input";
    case Check::single_mapping: return "single_mapping";
    case Check::identifier: return "identifier";
    case Check::smmu_msi: return "smmu_msi";
    case Check::rmr: return "rmr";
    case Check::requester_id: return "requester_id";
    case Check::shared_stream_id: return "shared_stream_id";
    case Check::shared_segment: return "shared_segment";
    case Check::canwbs_revision: return "canwbs_revision";
    case Check::unreachable_mapping: return "unreachable_mapping";
  }
  return "?";
}

std::string_view to_string(Severity severity) { return severity == Severity::error ? "error" : "warning"; }

const Node* Table::node_at(std::uint32_t offset) const {
  auto it = std::lower_bound(nodes.begin(), nodes.end(), offset,
                             [](const Node& n, std::uint32_t off) { return n.offset < off; });
  return it != nodes.end() && it->offset == offset ? &*it : nullptr;
}

std::vector<const Node*> Table::of_type(NodeType type) const {
  std::vector<const Node*> out;
  for (const auto& n : nodes)
    if (n.is(type)) out.push_back(&n);
  return out;
}

std::size_t Report::count(Severity s) const {
  return static_cast<std::size_t>(
      std::count_if(problems.begin(), problems.end(), [s](const Problem& p) { return p.severity == s; }));
}

Report refused(const Error& e, std::size_t size) {
  Report r;
  r.size = size;
  r.problems.push_back(Problem{0, Severity::error, Check::acpi_header, e.message});
  return r;
}

Result<Report> parse(std::span<const std::uint8_t> bytes) {
  ByteView v(bytes);
  const std::string sig = v.text(layout::kSignature, 4);
  if (bytes.size() < 4)
    return fail(EINVAL, "iort.parse", "{} bytes are not an ACPI table: even the 4-byte signature is missing",
                bytes.size());
  if (sig != "IORT") {
    std::string shown;
    for (char c : sig) shown += (c >= 0x20 && c < 0x7f) ? std::string(1, c) : fmt::format("\\x{:02x}", c & 0xff);
    return fail(EINVAL, "iort.parse",
                "not an IORT: the table signature is \"{}\" (expected \"IORT\"); pass the IORT itself, e.g. "
                "/sys/firmware/acpi/tables/IORT",
                shown);
  }
  return Parser(bytes).run();
}

}  // namespace vsmmu::acpi::iort
