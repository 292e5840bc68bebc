#include "acpi/json.hpp"

#include <nlohmann/json.hpp>

namespace vsmmu::acpi {
namespace {

using nlohmann::json;
using namespace iort;

// DEN 0049 Tables 14-16: CCA, the allocation hints and the memory access flags CPM, DACS, CANWBS.
json memory(const MemoryAccess& m) {
  return {{"cache_coherency", m.cache_coherency}, {"hints", m.hints},   {"flags", m.flags},
          {"flag_names", memory_flags_names(m.flags)}, {"cpm", m.coherency()}, {"dacs", m.attributes()},
          {"canwbs", m.canwbs()}};
}

json routes(const std::vector<Route>& rs) {
  json out = json::array();
  for (const auto& r : rs) {
    out.push_back({{"mapping_index", r.mapping_index},
                   {"mapping_offset", r.mapping_offset},
                   {"rid_first", r.rid_first},
                   {"rid_last", r.rid_last},
                   {"single", r.single},
                   {"applies", r.applies},
                   {"target", to_string(r.target)},
                   {"target_offset", r.target_offset},
                   {"target_base", r.target_base},
                   {"target_name", r.target_name},
                   {"out_first", r.out_first},
                   {"out_last", r.out_last},
                   {"coherent_smmu", r.coherent_smmu}});
    if (!r.applies) out.back()["not_applying"] = r.not_applying;  // why Linux never matches it
  }
  return out;
}

json problem(const Problem& p) {
  return {{"offset", p.offset}, {"severity", to_string(p.severity)}, {"check", to_string(p.check)}, {"message", p.message}};
}

// Firmware strings (OEM IDs, device names, node paths) are bytes, not necessarily UTF-8: invalid
// sequences become U+FFFD instead of an exception.
std::string dump(const json& j) { return j.dump(2, ' ', false, json::error_handler_t::replace); }

json irq(const SmmuInterrupt& i) { return {{"gsiv", i.gsiv}, {"flags", i.flags}}; }

template <class T>
json optional(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

json fields(const NodeData& data) {
  struct Visitor {
    json operator()(std::monostate) const { return json::object(); }
    json operator()(const ItsGroup& g) const { return {{"its_ids", g.its_ids}}; }
    json operator()(const NamedComponent& n) const {
      return {{"node_flags", n.node_flags},
              {"memory", memory(n.memory)},
              {"memory_address_limit", n.memory_address_limit},
              {"device_name", n.device_name}};
    }
    json operator()(const RootComplex& r) const {
      return {{"memory", memory(r.memory)},
              {"ats_attribute", r.ats_attribute},
              {"pci_segment", r.pci_segment},
              {"memory_address_limit", optional(r.memory_address_limit)},
              {"pasid_capabilities", optional(r.pasid_capabilities)},
              {"flags", optional(r.flags)}};
    }
    json operator()(const Smmu& s) const {
      json ctx = json::array(), pmu = json::array();
      for (const auto& i : s.context_interrupts) ctx.push_back(irq(i));
      for (const auto& i : s.pmu_interrupts) pmu.push_back(irq(i));
      return {{"base", s.base},   {"span", s.span},     {"model", s.model},
              {"flags", s.flags}, {"nsg_irpt", irq(s.nsg_irpt)}, {"nsg_cfg_irpt", irq(s.nsg_cfg_irpt)},
              {"context_interrupts", ctx}, {"pmu_interrupts", pmu}};
    }
    json operator()(const SmmuV3& s) const {
      return {{"base", s.base},
              {"flags", s.flags},
              {"cohacc", s.cohacc()},
              {"httu", s.httu()},
              {"vatos_address", s.vatos_address},
              {"model", s.model},
              {"event_gsiv", s.event_gsiv},
              {"pri_gsiv", s.pri_gsiv},
              {"gerr_gsiv", s.gerr_gsiv},
              {"sync_gsiv", s.sync_gsiv},
              {"proximity_domain", optional(s.proximity_domain)},
              {"id_mapping_index", optional(s.id_mapping_index)}};
    }
    json operator()(const Pmcg& p) const {
      return {{"page0_base", p.page0_base},
              {"overflow_gsiv", p.overflow_gsiv},
              {"node_reference", p.node_reference},
              {"page1_base", optional(p.page1_base)}};
    }
    json operator()(const Rmr& r) const {
      json ranges = json::array();
      for (const auto& range : r.ranges) ranges.push_back({{"base", range.base}, {"length", range.length}});
      return {{"flags", r.flags}, {"access_attributes", r.access_attributes()}, {"ranges", ranges}};
    }
  };
  return std::visit(Visitor{}, data);
}

}  // namespace

std::string_view key(Nesting n) {
  switch (n) {
    case Nesting::allowed_canwbs: return "allowed_canwbs";
    case Nesting::needs_s2fwb: return "needs_s2fwb";
    case Nesting::refused: return "refused";
  }
  return "?";
}

std::string iort_json(std::string_view source, const Report& report, const NestingReport& nesting) {
  const auto& h = report.table.header;
  const auto status = host_status(report, nesting);
  json out;
  out["source"] = source;
  out["status"] = {{"name", to_string(status)}, {"exit_code", exit_code(status)}};
  out["summary"] = nesting_summary(report, nesting, source);
  out["valid"] = report.valid();
  out["errors"] = report.count(Severity::error);
  out["warnings"] = report.count(Severity::warning) + nesting.problems.size();
  out["header"] = {{"signature", h.signature},       {"length", h.length},
                   {"revision", h.revision},         {"checksum", h.checksum},
                   {"oem_id", h.oem_id},             {"oem_table_id", h.oem_table_id},
                   {"oem_revision", h.oem_revision}, {"creator_id", h.creator_id},
                   {"creator_revision", h.creator_revision}, {"node_count", h.node_count},
                   {"node_offset", h.node_offset}};
  json nodes = json::array();
  for (const auto& n : report.table.nodes) {
    json maps = json::array();
    for (const auto& m : n.mappings)
      maps.push_back({{"offset", m.offset},
                      {"input_base", m.input_base},
                      {"id_count", m.id_count},
                      {"output_base", m.output_base},
                      {"output_reference", m.output_reference},
                      {"flags", m.flags},
                      {"single", m.single()}});
    nodes.push_back({{"offset", n.offset},
                     {"type", n.type},
                     {"type_name", node_type_name(n.type)},
                     {"length", n.length},
                     {"revision", n.revision},
                     {"identifier", n.identifier},
                     {"mappings", maps},
                     {"fields", fields(n.data)}});
  }
  out["nodes"] = nodes;
  // The parser's problems, then the nesting report's warnings.
  json problems = json::array();
  for (const auto& p : report.problems) problems.push_back(problem(p));
  for (const auto& p : nesting.problems) problems.push_back(problem(p));
  out["problems"] = problems;
  json rcs = json::array();
  for (const auto& rc : nesting.root_complexes)
    rcs.push_back({{"index", rc.index},
                   {"offset", rc.offset},
                   {"segment", rc.segment},
                   {"memory", memory(rc.memory)},
                   {"routes", routes(rc.routes)},
                   {"verdict", key(rc.verdict)},
                   {"cause", rc.cause},
                   {"reason", rc.reason},
                   {"shadowed_by", optional(rc.shadowed_by)}});
  out["root_complexes"] = rcs;
  json ncs = json::array();
  for (const auto& nc : nesting.named_components)
    ncs.push_back({{"offset", nc.offset},
                   {"device_name", nc.device_name},
                   {"memory", memory(nc.memory)},
                   {"routes", routes(nc.routes)},
                   {"verdict", key(nc.verdict)},
                   {"cause", nc.cause},
                   {"reason", nc.reason}});
  out["named_components"] = ncs;
  out["any_canwbs"] = nesting.any_canwbs();
  return dump(out);
}

std::string dt_json(std::string_view source, const dt::Report& report) {
  const auto text = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  json out;
  out["source"] = source;
  const HostNesting status = report.status();
  out["status"] = {{"name", to_string(status)}, {"exit_code", exit_code(status)}};
  out["summary"] = report.summary();
  out["counts"] = report.counts();
  out["errors"] = report.count(dt::Severity::error);
  out["warnings"] = report.count(dt::Severity::warning);
  json iommus = json::array();
  for (const auto& s : report.iommus) {
    json reg = json::array();
    for (const auto& r : s.reg)
      reg.push_back({{"address", r.address}, {"size", r.size}, {"cpu_address", optional(r.cpu_address)}});
    iommus.push_back({{"path", s.path},
                      {"compatible", s.compatible},
                      {"smmu_v3", s.smmu_v3},
                      {"phandle", s.phandle},
                      {"reg", reg},
                      {"base", s.reg.empty() ? json(nullptr) : optional(s.reg.front().cpu_address)},
                      {"untranslatable", text(s.untranslatable)},
                      {"available", s.available},
                      {"unavailable", text(s.unavailable)},
                      {"dma_coherent", s.dma_coherent},
                      {"interrupt_names", s.interrupt_names},
                      {"iommu_cells", optional(s.iommu_cells)},
                      {"verdict", to_string(s.verdict)},
                      {"reason", s.reason}});
  }
  out["iommus"] = iommus;
  json devices = json::array();
  for (const auto& d : report.devices) {
    json refs = json::array(), map = json::array();
    for (const auto& e : d.iommus)
      refs.push_back({{"phandle", e.phandle}, {"iommu", text(e.iommu)}, {"cells", e.cells},
                      {"verdict", to_string(e.verdict)}});
    for (const auto& e : d.iommu_map)
      map.push_back({{"rid_base", e.rid_base},
                     {"phandle", e.phandle},
                     {"target", text(e.target)},
                     {"sid_base", e.sid_base},
                     {"length", e.length},
                     {"verdict", to_string(e.verdict)}});
    devices.push_back({{"path", d.path},
                       {"available", d.available},
                       {"unavailable", text(d.unavailable)},
                       {"iommus", refs},
                       {"iommu_map", map},
                       {"iommu_map_mask", optional(d.iommu_map_mask)},
                       {"verdict", to_string(d.verdict)},
                       {"reason", d.reason}});
  }
  out["devices"] = devices;
  json problems = json::array();
  for (const auto& p : report.problems)
    problems.push_back({{"path", p.path}, {"severity", dt::to_string(p.severity)}, {"message", p.message}});
  out["problems"] = problems;
  // A device tree has no CANWBS: nesting on such a host always depends on the SMMU's S2FWB.
  out["canwbs_expressible"] = false;
  return dump(out);
}

}  // namespace vsmmu::acpi
