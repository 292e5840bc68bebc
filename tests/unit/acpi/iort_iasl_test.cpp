// Generated tables disassembled with ACPICA's iasl (`iasl -d`, an independent IORT decoder) and checked
// field by field: every node header, every type-specific field and every ID mapping at the byte
// offset our model says it is. The text is that of bookworm's iasl 20200925, which predates RMR nodes
// ("**** Unknown IORT node type 0x6") and the CANWBS name (it prints the memory flags byte raw).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include <fmt/format.h>

#include "acpi/files.hpp"
#include "acpi/iort.hpp"
#include "acpi/iort_patch.hpp"
#include "fixtures.hpp"

namespace vsmmu::acpi::iort {
namespace {

using test::Bytes;
using namespace layout;

struct Field {
  std::string name;
  std::string value;
  std::map<std::string, std::string> decoded;  // "COHACC Override" -> "1", the lines below a flags field
};

struct Disassembly {
  std::map<std::uint64_t, std::vector<Field>> fields;  // by offset; memory properties share an offset
  std::string text;
};

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// Runs `iasl -d` on the table and parses lines like
//   [0B7h 0183   1] Memory Flags (decoded below) : 03
//                                     Coherency : 1
Disassembly disassemble(const Bytes& table) {
  Disassembly d;
  const std::string dir = test::temp_dir();
  EXPECT_TRUE(write_file(dir + "/t.dat", table));
  const auto r = test::run(std::string("cd '") + dir + "' && '" + VSMMU_IASL + "' -d t.dat");
  EXPECT_EQ(r.status, 0) << r.out;
  std::ifstream in(dir + "/t.dsl");
  std::stringstream ss;
  ss << in.rdbuf();
  d.text = ss.str();
  static const std::regex field(R"(^\[([0-9A-F]+)h [0-9]+ +[0-9]+\] +(.*?) : (.*)$)");
  static const std::regex decoded(R"(^ +(\S.*?) : (.*)$)");
  Field* last = nullptr;
  std::string line;
  std::istringstream lines(d.text);
  while (std::getline(lines, line)) {
    std::smatch m;
    if (std::regex_match(line, m, field)) {
      auto& at = d.fields[std::stoull(m[1].str(), nullptr, 16)];
      at.push_back(Field{trim(m[2].str()), trim(m[3].str()), {}});
      last = &at.back();
    } else if (last && std::regex_match(line, m, decoded)) {
      last->decoded[trim(m[1].str())] = trim(m[2].str());
    } else {
      last = nullptr;
    }
  }
  return d;
}

// iasl's rendering of an integer field: upper-case hex, two digits per byte.
std::string hex(std::uint64_t v, unsigned bytes) { return fmt::format("{:0{}X}", v, bytes * 2); }

class Checker {
 public:
  explicit Checker(const Disassembly& d) : d_(d) {}

  // The field `name` (or one of `names`) at `offset` reads `value`.
  const Field* expect(std::uint64_t offset, std::initializer_list<std::string_view> names, const std::string& value) {
    auto it = d_.fields.find(offset);
    if (it == d_.fields.end()) {
      ADD_FAILURE() << "iasl printed no field at offset " << hex(offset, 2) << "h (wanted " << *names.begin() << " = "
                    << value << ")";
      return nullptr;
    }
    for (const auto& f : it->second)
      for (auto n : names)
        if (f.name == n) {
          EXPECT_EQ(f.value, value) << f.name << " at " << hex(offset, 2) << "h";
          return &f;
        }
    ADD_FAILURE() << "no field named " << *names.begin() << " at " << hex(offset, 2) << "h; iasl printed "
                  << it->second.front().name;
    return nullptr;
  }
  const Field* expect(std::uint64_t offset, std::string_view name, const std::string& value) {
    return expect(offset, {name}, value);
  }
  void expect_decoded(const Field* f, const std::string& name, const std::string& value) {
    if (!f) return;
    auto it = f->decoded.find(name);
    ASSERT_NE(it, f->decoded.end()) << f->name << " has no decoded line " << name;
    EXPECT_EQ(it->second, value) << f->name << " / " << name;
  }

  void header(const Header& h, std::size_t nodes) {
    expect(kSignature, "Signature", "\"IORT\"    [IO Remapping Table]");
    expect(kLength, "Table Length", hex(h.length, 4));
    expect(kRevision, "Revision", hex(h.revision, 1));
    expect(kChecksum, "Checksum", hex(h.checksum, 1));
    expect(kOemId, "Oem ID", "\"" + h.oem_id + "\"");
    expect(kOemTableId, "Oem Table ID", "\"" + h.oem_table_id + "\"");
    expect(kOemRevision, "Oem Revision", hex(h.oem_revision, 4));
    expect(kNodeCount, "Node Count", hex(nodes, 4));
    expect(kNodeOffset, "Node Offset", hex(h.node_offset, 4));
  }

  void node_header(const Node& n) {
    expect(n.offset + kNodeType, "Type", hex(n.type, 1));
    expect(n.offset + kNodeLength, "Length", hex(n.length, 2));
    expect(n.offset + kNodeRevision, "Revision", hex(n.revision, 1));
    expect(n.offset + kNodeIdentifier, {"Reserved", "Identifier"}, hex(n.identifier, 4));
    expect(n.offset + kNodeMappingCount, "Mapping Count", hex(n.mapping_count, 4));
    expect(n.offset + kNodeMappingOffset, "Mapping Offset", hex(n.mapping_offset, 4));
  }

  void mappings(const Node& n) {
    for (const auto& m : n.mappings) {
      expect(m.offset + kMapInputBase, "Input base", hex(m.input_base, 4));
      expect(m.offset + kMapIdCount, "ID Count", hex(m.id_count, 4));
      expect(m.offset + kMapOutputBase, "Output Base", hex(m.output_base, 4));
      expect(m.offset + kMapOutputReference, "Output Reference", hex(m.output_reference, 4));
      expect_decoded(expect(m.offset + kMapFlags, "Flags (decoded below)", hex(m.flags, 4)), "Single Mapping",
                     m.single() ? "1" : "0");
    }
  }

  void memory(std::uint64_t at, const MemoryAccess& m) {
    expect(at + kMemCca, "Cache Coherency", hex(m.cache_coherency, 4));
    expect(at + kMemHints, "Hints (decoded below)", hex(m.hints, 1));
    // iasl 20200925 knows bits 0 and 1 only; the byte itself carries CANWBS (bit 2).
    const Field* f = expect(at + kMemFlags, "Memory Flags (decoded below)", hex(m.flags, 1));
    expect_decoded(f, "Coherency", m.coherency() ? "1" : "0");
    expect_decoded(f, "Device Attribute", m.attributes() ? "1" : "0");
  }

  void node(const Node& n) {
    node_header(n);
    const auto o = n.offset;
    if (const auto* its = n.as<ItsGroup>()) {
      expect(o + kItsCount, "ItsCount", hex(its->its_ids.size(), 4));
      for (std::size_t i = 0; i < its->its_ids.size(); ++i) expect(o + kItsIds + 4 * i, "Identifiers", hex(its->its_ids[i], 4));
    } else if (const auto* s = n.as<SmmuV3>()) {
      expect(o + kSmmuV3Base, "Base Address", hex(s->base, 8));
      const Field* f = expect(o + kSmmuV3Flags, "Flags (decoded below)", hex(s->flags, 4));
      expect_decoded(f, "COHACC Override", s->cohacc() ? "1" : "0");
      expect_decoded(f, "HTTU Override", std::to_string(s->httu()));
      expect(o + kSmmuV3Vatos, "VATOS Address", hex(s->vatos_address, 8));
      expect(o + kSmmuV3Model, "Model", hex(s->model, 4));
      expect(o + kSmmuV3EventGsiv, "Event GSIV", hex(s->event_gsiv, 4));
      expect(o + kSmmuV3PriGsiv, "PRI GSIV", hex(s->pri_gsiv, 4));
      expect(o + kSmmuV3GerrGsiv, "GERR GSIV", hex(s->gerr_gsiv, 4));
      expect(o + kSmmuV3SyncGsiv, "Sync GSIV", hex(s->sync_gsiv, 4));
      expect(o + kSmmuV3Pxm, "Proximity Domain", hex(*s->proximity_domain, 4));
      expect(o + kSmmuV3IdMappingIndex, "Device ID Mapping Index", hex(*s->id_mapping_index, 4));
    } else if (const auto* rc = n.as<RootComplex>()) {
      memory(o + kRcMemory, rc->memory);
      expect(o + kRcAts, "ATS Attribute", hex(rc->ats_attribute, 4));
      expect(o + kRcSegment, "PCI Segment Number", hex(rc->pci_segment, 4));
      expect(o + kRcAddressLimit, "Memory Size Limit", hex(*rc->memory_address_limit, 1));
      // iasl 20200925 shows the revision 4 PASID capabilities (2 bytes) and reserved byte as one
      // 3-byte "Reserved" integer, and skips the node flags that follow.
      expect(o + kRcPasidCaps, "Reserved", hex(rc->pasid_capabilities.value_or(0), 3));
    } else if (const auto* s2 = n.as<Smmu>()) {
      expect(o + kSmmuBase, "Base Address", hex(s2->base, 8));
      expect(o + kSmmuSpan, "Span", hex(s2->span, 8));
      expect(o + kSmmuModel, "Model", hex(s2->model, 4));
      expect(o + kSmmuContextIrqCount, "Context Interrupt Count", hex(s2->context_interrupts.size(), 4));
      expect(o + kSmmuPmuIrqCount, "PMU Interrupt Count", hex(s2->pmu_interrupts.size(), 4));
      expect(o + kSmmuSize, "NSgIrpt", hex(s2->nsg_irpt.gsiv, 4));
      expect(o + kSmmuSize + 8, "NSgCfgIrpt", hex(s2->nsg_cfg_irpt.gsiv, 4));
      for (std::size_t i = 0; i < s2->context_interrupts.size(); ++i) {
        const auto& irq = s2->context_interrupts[i];
        expect(o + kSmmuSize + kSmmuGlobalIrqSize + 8 * i, "Context Interrupt",
               hex(std::uint64_t{irq.flags} << 32 | irq.gsiv, 8));
      }
    } else if (const auto* nc = n.as<NamedComponent>()) {
      expect(o + kNcFlags, "Node Flags", hex(nc->node_flags, 4));
      memory(o + kNcMemory, nc->memory);
      expect(o + kNcAddressLimit, "Memory Size Limit", hex(nc->memory_address_limit, 1));
      expect(o + kNcName, "Device Name", "\"" + nc->device_name + "\"");
    } else if (const auto* p = n.as<Pmcg>()) {
      expect(o + kPmcgPage0, "Page 0 Base Address", hex(p->page0_base, 8));
      expect(o + kPmcgOverflowGsiv, "Overflow Interrupt GSIV", hex(p->overflow_gsiv, 4));
      expect(o + kPmcgNodeReference, "Node Reference", hex(p->node_reference, 4));
      expect(o + kPmcgPage1, "Page 1 Base Address", hex(*p->page1_base, 8));
    }
    if (!n.is(NodeType::rmr)) mappings(n);
  }

 private:
  const Disassembly& d_;
};

// Checks every node of `table` against iasl's disassembly; RMR nodes only by their headers.
void check_table(const Bytes& table) {
  auto r = parse(table);
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->problems.empty()) << r->problems.front().message;
  const auto d = disassemble(table);
  Checker c(d);
  c.header(r->table.header, r->table.nodes.size());
  std::size_t rmrs = 0;
  for (const auto& n : r->table.nodes) {
    c.node(n);
    rmrs += n.is(NodeType::rmr);
  }
  // RMR nodes (DEN 0049 E.c on) postdate this iasl: it prints their header, then says so and moves on.
  std::size_t unknown = 0;
  for (auto at = d.text.find("**** Unknown IORT node type 0x6"); at != std::string::npos;
       at = d.text.find("**** Unknown IORT node type 0x6", at + 1))
    ++unknown;
  EXPECT_EQ(unknown, rmrs);
  EXPECT_EQ(d.text.find("Invalid"), std::string::npos) << d.text;
}

TEST(IortIasl, QemuVirtLayout) {
  if (!test::tool_present(VSMMU_IASL, "iasl", "acpica-tools")) return;
  check_table(test::qemu_virt_iort());
  // The values as numbers a reader of the disassembly would check by hand.
  const auto d = disassemble(test::qemu_virt_iort());
  Checker c(d);
  c.expect(0x58, "Base Address", "0000000009050000");
  c.expect(0x74, "Event GSIV", "0000006A");  // SPI 74 + 32
  c.expect(0xb7, "Memory Flags (decoded below)", "03");
  c.expect(0xc0, "Memory Size Limit", "40");  // 64 bits
  c.expect(0xc8, "ID Count", "0000FFFF");  // 0x10000 RIDs, stored minus one
  c.expect(0xd0, "Output Reference", "00000048");  // the SMMUv3 node
}

TEST(IortIasl, PatchedQemuTableShowsFlags07AndTheNewOemRevision) {
  if (!test::tool_present(VSMMU_IASL, "iasl", "acpica-tools")) return;
  auto p = set_canwbs(test::qemu_virt_iort(), std::nullopt);
  ASSERT_TRUE(p);
  check_table(p->table);
  const auto d = disassemble(p->table);
  Checker c(d);
  c.expect(0xb7, "Memory Flags (decoded below)", "07");
  c.expect(kOemRevision, "Oem Revision", "00000002");
  EXPECT_EQ(d.text.find("Checksum is incorrect"), std::string::npos);
}

TEST(IortIasl, GuestTableFieldByField) {
  if (!test::tool_present(VSMMU_IASL, "iasl", "acpica-tools")) return;
  auto g = test::guest_two_smmus();
  g.root_complexes[0].canwbs = true;
  check_table(build_guest(g).value());
}

TEST(IortIasl, EveryNodeTypeFieldByField) {
  if (!test::tool_present(VSMMU_IASL, "iasl", "acpica-tools")) return;
  check_table(test::all_node_types());
}

TEST(IortIasl, IaslAgreesOnABadChecksum) {
  if (!test::tool_present(VSMMU_IASL, "iasl", "acpica-tools")) return;
  Bytes t = test::qemu_virt_iort();
  const std::uint8_t good = t[kChecksum];
  t[kChecksum] ^= 0x10;
  const auto d = disassemble(t);
  EXPECT_NE(d.text.find(fmt::format("Incorrect checksum, should be {:02X}", good)), std::string::npos)
      << d.text.substr(0, 2000);
  auto r = parse(t);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->problems.size(), 1u);
  EXPECT_EQ(r->problems[0].check, Check::checksum);
  EXPECT_NE(r->problems[0].message.find(fmt::format("should be {:#04x}", good)), std::string::npos);
}

}  // namespace
}  // namespace vsmmu::acpi::iort
