#include "acpi/iort_nesting.hpp"

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/text.hpp"

namespace vsmmu::acpi::iort {
std::string id_range(const Route& r, std::string_view ids) {
  return r.single ? fmt::format("every {} (single mapping)", ids)
                  : fmt::format("{}s {:#x}-{:#x}", ids, r.rid_first, r.rid_last);
}

namespace {

using namespace layout;

Route route_of(const Table& table, const IdMapping& m, std::size_t index, bool root_complex) {
  Route r;
  r.single = m.single();
  r.rid_first = m.single() ? 0 : m.input_base;
  r.rid_last = m.single() ? 0xffffffffULL : m.input_last();
  r.out_first = m.output_base;
  r.out_last = m.single() ? m.output_base : m.output_last();
  r.target_offset = m.output_reference;
  r.mapping_index = index;
  r.mapping_offset = m.offset;
  r.target_name = node_label(table, m.output_reference);
  r.applies = !root_complex || m.single() || m.input_base <= IdMapping::kMaxRequesterId;
  if (!r.applies)
    r.not_applying = fmt::format("it takes only RIDs above {:#x}, which Linux never matches (16-bit requester IDs)",
                                 IdMapping::kMaxRequesterId);
  const Node* t = table.node_at(m.output_reference);
  if (!t) return r;
  if (const auto* s = t->as<SmmuV3>()) {
    r.target = Route::Target::smmu_v3;
    r.coherent_smmu = s->cohacc();
    r.target_base = s->base;
  } else if (t->is(NodeType::smmu_v3)) {
    r.target = Route::Target::smmu_v3;
  } else if (t->is(NodeType::smmu)) {
    r.target = Route::Target::smmu_v1v2;
    if (const auto* v2 = t->as<Smmu>()) r.target_base = v2->base;
  } else if (t->is(NodeType::its_group)) {
    r.target = Route::Target::its_group;
  }
  return r;
}

// The names of the distinct targets of `routes` that satisfy `pick`, in table order.
template <class Pick>
std::vector<std::string> targets(const std::vector<Route>& routes, Pick pick) {
  std::vector<std::string> names;
  for (const auto& r : routes)
    if (r.applies && pick(r) && std::find(names.begin(), names.end(), r.target_name) == names.end())
      names.push_back(r.target_name);
  return names;
}

bool coherent_v3(const Route& r) { return r.target == Route::Target::smmu_v3 && r.coherent_smmu; }

// Why no coherent SMMUv3 translates the devices behind these routes, or nullopt if one does.
std::optional<std::string> no_coherent_smmu(const std::vector<Route>& routes) {
  const auto is = [](Route::Target t) { return [t](const Route& r) { return r.target == t; }; };
  if (routes.empty()) return "it has no ID mappings: its devices reach no SMMU";
  if (std::none_of(routes.begin(), routes.end(), [](const Route& r) { return r.applies; }))
    return fmt::format("none of its ID mappings ever applies ({}): its devices get no IOMMU at all",
                       routes.front().not_applying);
  if (!targets(routes, coherent_v3).empty()) return std::nullopt;
  if (auto v3 = targets(routes, is(Route::Target::smmu_v3)); !v3.empty())
    return fmt::format("{} lack{} the COHACC override flag: Linux treats {} as not cache coherent and VFIO "
                       "refuses its devices (no IOMMU_CAP_CACHE_COHERENCY, drivers/vfio/vfio_main.c)",
                       fmt::join(v3, ", "), v3.size() == 1 ? "s" : "", v3.size() == 1 ? "it" : "them");
  if (auto v2 = targets(routes, is(Route::Target::smmu_v1v2)); !v2.empty())
    return fmt::format("its IDs go to {}, an SMMUv1/v2 (arm-smmu driver) without iommufd vIOMMU support; nesting "
                       "needs an SMMUv3",
                       fmt::join(v2, ", "));
  if (!targets(routes, is(Route::Target::its_group)).empty())
    return std::string("its IDs go straight to the ITS: its devices bypass every SMMU, so there is no stage 2 to "
                       "nest under");
  return std::string("none of its ID mappings points at a valid node (see the errors)");
}

// What the routes that do not reach a coherent SMMUv3 (or never apply) leave out.
std::string left_out(const std::vector<Route>& routes, std::string_view ids) {
  std::vector<std::string> lost, never;
  for (const auto& r : routes) {
    if (!r.applies)
      never.push_back(
          fmt::format("mapping {} ({} -> {}): {}", r.mapping_index, id_range(r, ids), r.target_name, r.not_applying));
    else if (!coherent_v3(r))
      lost.push_back(fmt::format("{} ({}{})", id_range(r, ids), r.target_name,
                                 r.target == Route::Target::smmu_v3 ? ", no COHACC" : ""));
  }
  std::string s;
  if (!lost.empty())
    s += fmt::format("; {} do not reach a coherent SMMUv3 and cannot be nested", fmt::join(lost, ", "));
  if (!never.empty()) s += fmt::format("; not counted: {}", fmt::join(never, "; "));
  return s;
}

void judge(RootComplexNesting& rc, const RootComplexNesting* shadowing) {
  const auto flags = fmt::format("memory access flags {:#04x} ({})", rc.memory.flags, memory_flags_names(rc.memory.flags));
  if (shadowing) {
    rc.verdict = Nesting::refused;
    rc.shadowed_by = shadowing->index;
    rc.cause = fmt::format("shadowed by root complex {} (node {:#05x}), the first of segment {}", shadowing->index,
                           shadowing->offset, rc.segment);
    rc.reason = fmt::format(
        "{}: Linux matches a PCI device to the first root complex of its segment (iort_scan_node), so this node's "
        "mappings and flags are never used; it gets no verdict of its own and does not count toward the status",
        rc.cause);
    return;
  }
  if (auto why = no_coherent_smmu(rc.routes)) {
    rc.verdict = Nesting::refused;
    rc.cause = rc.memory.canwbs() ? fmt::format("it has CANWBS, but {}", *why) : *why;
    for (const auto& r : rc.routes)
      if (!r.applies && coherent_v3(r))
        rc.cause += fmt::format(" (mapping {} to {} never applies: {})", r.mapping_index, r.target_name, r.not_applying);
    rc.reason = fmt::format("{}; CANWBS cannot change that{}", rc.cause, left_out(rc.routes, "RID"));
    return;
  }
  const auto smmus = fmt::format("{}", fmt::join(targets(rc.routes, coherent_v3), ", "));
  if (rc.memory.canwbs()) {
    rc.verdict = Nesting::allowed_canwbs;
    rc.cause = fmt::format("it has CANWBS and reaches {}", smmus);
    rc.reason = fmt::format(
        "it reaches {}; {} carry CANWBS: Linux marks its devices IOMMU_FWSPEC_PCI_RC_CANWBS, so IOMMU_VIOMMU_ALLOC "
        "succeeds whether or not the SMMU has S2FWB{}",
        smmus, flags, left_out(rc.routes, "RID"));
  } else {
    rc.verdict = Nesting::needs_s2fwb;
    rc.cause = fmt::format("it reaches {} without CANWBS", smmus);
    rc.reason = fmt::format(
        "it reaches {}; {} lack CANWBS: IOMMU_VIOMMU_ALLOC succeeds only if the SMMU has S2FWB (IDR3.FWB), which "
        "the IORT cannot show; `vsmmu probe` reads it{}",
        smmus, flags, left_out(rc.routes, "RID"));
  }
}

void judge(ComponentNesting& nc) {
  std::string notes;
  if (nc.memory.canwbs())
    notes += "; its CANWBS flag has no effect: Linux reads CANWBS only from root complexes (iort_pci_rc_supports_canwbs)";
  std::vector<std::size_t> ranges;
  for (const auto& r : nc.routes)
    if (!r.single) ranges.push_back(r.mapping_index);
  if (!ranges.empty())
    notes += fmt::format("; mapping{} {} map{} a range of IDs: Linux uses those only for devices that bring their own "
                         "input ID (a bus such as fsl-mc, iort_nc_iommu_map_id); the component itself gets stream IDs "
                         "only from its leading single mappings (iort_nc_iommu_map stops at the first other one)",
                         ranges.size() == 1 ? "" : "s", fmt::join(ranges, ", "), ranges.size() == 1 ? "s" : "");
  if (nc.memory.cache_coherency == 0)
    notes += "; warning: CCA=0, the IORT describes the device as not cache coherent - check the device's _CCA and "
             "that it does coherent DMA before assigning it to a guest";
  if (auto why = no_coherent_smmu(nc.routes)) {
    nc.verdict = Nesting::refused;
    nc.cause = *why;
    nc.reason = fmt::format("{}{}{}", *why, left_out(nc.routes, "ID"), notes);
    return;
  }
  nc.verdict = Nesting::needs_s2fwb;
  nc.cause = fmt::format("it reaches {}, and a named component cannot carry CANWBS for Linux",
                         fmt::join(targets(nc.routes, coherent_v3), ", "));
  nc.reason = fmt::format(
      "{}: Linux reads CANWBS only from root complexes (iort_pci_rc_supports_canwbs), so IOMMU_VIOMMU_ALLOC succeeds "
      "only if the SMMU has S2FWB (IDR3.FWB); `vsmmu probe` reads it{}{}",
      nc.cause, left_out(nc.routes, "ID"), notes);
}

Problem warning(std::uint64_t offset, Check check, std::string message) {
  return Problem{offset, Severity::warning, check, std::move(message)};
}

// The warnings about one root complex's mappings (DEN 0049 Table 4 against Linux's 16-bit requester IDs).
void mapping_warnings(const Table& table, const Node& node, const std::string& name, std::vector<Problem>& out) {
  for (std::size_t i = 0; i < node.mappings.size(); ++i) {
    const auto& m = node.mappings[i];
    const auto target = node_label(table, m.output_reference);
    const Node* t = table.node_at(m.output_reference);
    const bool smmu = t && (t->is(NodeType::smmu_v3) || t->is(NodeType::smmu));
    if (m.single()) {
      out.push_back(warning(
          m.offset + kMapFlags, Check::shared_stream_id,
          smmu ? fmt::format("{}: mapping {} (at {:#05x}) is a single mapping: every requester ID becomes stream ID "
                             "{:#x} at {}, so the SMMU cannot tell its devices apart; arm-smmu-v3 keeps one device per "
                             "stream ID (arm_smmu_insert_master refuses a second device whose stream ID is taken), so "
                             "only the first device probed gets an IOMMU - one device behind it at most can be nested",
                             name, i, m.offset, m.output_base, target)
               : fmt::format("{}: mapping {} (at {:#05x}) is a single mapping: every requester ID becomes device ID "
                             "{:#x} at {}, so the ITS sees one device for all of them",
                             name, i, m.offset, m.output_base, target)));
    } else if (m.input_base > IdMapping::kMaxRequesterId) {
      out.push_back(warning(
          m.offset + kMapInputBase, Check::requester_id,
          fmt::format("{}: mapping {} (at {:#05x}) takes RIDs {:#x}-{:#x}, all above {:#x}: Linux matches a PCI "
                      "device by its 16-bit requester ID (drivers/acpi/arm64/iort.c, iort_pci_iommu_init), so this "
                      "mapping never applies and the devices meant for {} get no IOMMU",
                      name, i, m.offset, m.input_base, m.input_last(), IdMapping::kMaxRequesterId, target)));
    } else if (m.input_last() > IdMapping::kMaxRequesterId) {
      out.push_back(warning(
          m.offset + kMapIdCount, Check::requester_id,
          fmt::format("{}: mapping {} (at {:#05x}) takes RIDs {:#x}-{:#x}, past {:#x}: Linux matches 16-bit "
                      "requester IDs only (iort_pci_iommu_init), so its part {:#x}-{:#x} never applies",
                      name, i, m.offset, m.input_base, m.input_last(), IdMapping::kMaxRequesterId,
                      IdMapping::kMaxRequesterId + 1, m.input_last())));
    }
  }
}

void revision_warning(const Table& table, const Node& node, const RootComplex& rc, const std::string& name,
                      std::vector<Problem>& out) {
  const auto revision = table.header.revision;
  if (revision >= MemoryAccess::kCanwbsTableRevision) return;
  const auto at = node.offset + kRcMemory + kMemFlags;
  if (rc.memory.canwbs())
    out.push_back(warning(
        at, Check::canwbs_revision,
        fmt::format("{}: CANWBS is set in a table of revision {}, older than DEN 0049 E.f (revision {}) which defines "
                    "it; bit 2 is reserved there, and this relies on Linux reading it at any revision "
                    "(iort_pci_rc_supports_canwbs ignores the table revision)",
                    name, revision, MemoryAccess::kCanwbsTableRevision)));
  else
    out.push_back(warning(
        at, Check::canwbs_revision,
        fmt::format("{}: no CANWBS, but the table's revision {} predates DEN 0049 E.f (revision {}) which defines it "
                    "(bit 2 is reserved before; Linux reads it anyway): its absence says nothing about the hardware",
                    name, revision, MemoryAccess::kCanwbsTableRevision)));
}

bool counts(const RootComplexNesting& rc) { return !rc.shadowed_by; }

}  // namespace

std::string_view to_string(Nesting n) {
  switch (n) {
    case Nesting::allowed_canwbs: return "allowed (CANWBS)";
    case Nesting::needs_s2fwb: return "only if the SMMU has S2FWB";
    case Nesting::refused: return "refused";
  }
  return "?";
}

std::string_view to_string(Route::Target t) {
  switch (t) {
    case Route::Target::smmu_v3: return "SMMUv3";
    case Route::Target::smmu_v1v2: return "SMMUv1/v2";
    case Route::Target::its_group: return "ITS group";
    case Route::Target::unresolved: return "unresolved";
  }
  return "?";
}

std::string node_label(const Table& table, std::uint32_t offset) {
  const Node* n = table.node_at(offset);
  if (!n) return fmt::format("no node ({:#05x})", offset);
  if (const auto* s = n->as<SmmuV3>()) return fmt::format("SMMUv3 at {:#x} (node {:#05x})", s->base, offset);
  if (const auto* s = n->as<Smmu>()) return fmt::format("SMMUv1/v2 at {:#x} (node {:#05x})", s->base, offset);
  return fmt::format("{} (node {:#05x})", node_type_name(n->type), offset);
}

std::string root_complex_label(std::size_t index, std::uint32_t segment, std::uint32_t offset) {
  return fmt::format("root complex {} (segment {}, node {:#05x})", index, segment, offset);
}

std::optional<std::string> canwbs_cannot_help(const RootComplexNesting& rc) {
  if (rc.verdict == Nesting::refused) return fmt::format("nesting is refused there whatever its flags: {}", rc.reason);
  if (!rc.memory.cca())
    return fmt::format(
        "its CCA is {} (not cache coherent): CANWBS says its accesses are coerced to Normal Write-Back, which needs a "
        "coherent path to memory (DEN 0049, memory access properties)",
        rc.memory.cache_coherency);
  return std::nullopt;
}

bool NestingReport::any_canwbs() const {
  return std::any_of(root_complexes.begin(), root_complexes.end(),
                     [](const RootComplexNesting& rc) { return rc.verdict == Nesting::allowed_canwbs; });
}

NestingReport nesting_report(const Table& table) {
  NestingReport report;
  std::map<std::uint32_t, std::size_t> first_of_segment;
  for (const Node* node : table.of_type(NodeType::root_complex)) {
    RootComplexNesting rc;
    rc.index = report.root_complexes.size();
    rc.offset = node->offset;
    const auto* data = node->as<RootComplex>();
    if (data) {
      rc.segment = data->pci_segment;
      rc.memory = data->memory;
    }
    for (std::size_t i = 0; i < node->mappings.size(); ++i)
      rc.routes.push_back(route_of(table, node->mappings[i], i, true));
    const auto name = root_complex_label(rc.index, rc.segment, rc.offset);
    // iort_node_map_id takes the first mapping iort_id_map accepts, and a single mapping accepts every RID.
    std::vector<std::size_t> unreachable;
    const auto single = std::find_if(rc.routes.begin(), rc.routes.end(), [](const Route& r) { return r.single; });
    for (auto r = single == rc.routes.end() ? single : single + 1; r < rc.routes.end(); ++r) {
      if (r->applies) unreachable.push_back(r->mapping_index);
      r->applies = false;
      r->not_applying = fmt::format("it follows single mapping {}, which already takes every RID (iort_node_map_id "
                                    "uses the first mapping that matches)",
                                    single->mapping_index);
    }
    const RootComplexNesting* shadowing = nullptr;
    if (data) {
      auto [it, fresh] = first_of_segment.emplace(rc.segment, rc.index);
      if (!fresh) {
        shadowing = &report.root_complexes[it->second];
        report.problems.push_back(warning(
            node->offset + kRcSegment, Check::shared_segment,
            fmt::format("{} has the PCI segment of root complex {} (node {:#05x}): Linux matches devices to the first "
                        "root complex of their segment (iort_scan_node), so this one is shadowed - its mappings and "
                        "memory access flags are never used",
                        name, shadowing->index, shadowing->offset)));
      } else {
        revision_warning(table, *node, *data, name, report.problems);
      }
    }
    if (!shadowing) {
      mapping_warnings(table, *node, name, report.problems);
      for (const auto i : unreachable)
        report.problems.push_back(warning(
            node->mappings[i].offset, Check::unreachable_mapping,
            fmt::format("{}: mapping {} (at {:#05x}) comes after single mapping {}, which already takes every RID "
                        "(iort_node_map_id uses the first mapping that matches): it never applies, and the devices "
                        "meant for {} go where mapping {} sends them",
                        name, i, node->mappings[i].offset, single->mapping_index, rc.routes[i].target_name,
                        single->mapping_index)));
    }
    judge(rc, shadowing);
    report.root_complexes.push_back(std::move(rc));
  }
  for (const Node* node : table.of_type(NodeType::named_component)) {
    ComponentNesting nc;
    nc.offset = node->offset;
    if (const auto* data = node->as<NamedComponent>()) {
      nc.device_name = data->device_name;
      nc.memory = data->memory;
    }
    for (std::size_t i = 0; i < node->mappings.size(); ++i)
      nc.routes.push_back(route_of(table, node->mappings[i], i, false));
    judge(nc);
    report.named_components.push_back(std::move(nc));
  }
  return report;
}

HostNesting host_status(const Report& report, const NestingReport& nesting) {
  if (!report.valid()) return HostNesting::malformed;
  std::optional<Nesting> best;
  const auto consider = [&](Nesting v) {
    if (!best || static_cast<int>(v) < static_cast<int>(*best)) best = v;
  };
  for (const auto& rc : nesting.root_complexes)
    if (counts(rc)) consider(rc.verdict);
  for (const auto& nc : nesting.named_components) consider(nc.verdict);
  if (best == Nesting::allowed_canwbs) return HostNesting::possible;
  if (best == Nesting::needs_s2fwb) return HostNesting::needs_s2fwb;
  return HostNesting::impossible;
}

std::string nesting_summary(const Report& report, const NestingReport& nesting, std::string_view source) {
  const auto status = host_status(report, nesting);
  if (status == HostNesting::malformed) {
    const auto errors = report.count(Severity::error);
    const bool only_checksum = std::all_of(report.problems.begin(), report.problems.end(), [](const Problem& p) {
      return p.severity != Severity::error || p.check == Check::checksum;
    });
    if (only_checksum)
      return "malformed: the table's only error is its checksum; Linux warns and uses it anyway, so the verdicts "
             "above hold, but firmware should fix it and a table override must carry the right one (the problem "
             "above gives it)";
    return fmt::format("malformed: the table has {}; fix {} first (Linux may misroute or ignore what {} "
                       "touch{}, so no verdict can be trusted)",
                       counted(errors, "error"), errors == 1 ? "it" : "them", errors == 1 ? "it" : "they",
                       errors == 1 ? "es" : "");
  }
  std::vector<std::string> allowed, needs, refused;
  std::vector<std::size_t> patchable;
  for (const auto& rc : nesting.root_complexes) {
    const auto name = root_complex_label(rc.index, rc.segment, rc.offset);
    if (rc.verdict == Nesting::allowed_canwbs) allowed.push_back(name);
    if (rc.verdict == Nesting::needs_s2fwb) {
      needs.push_back(fmt::format("{}: {}", name, rc.cause));
      if (!canwbs_cannot_help(rc)) patchable.push_back(rc.index);
    }
    if (rc.verdict == Nesting::refused) refused.push_back(fmt::format("{}: {}", name, rc.cause));
  }
  for (const auto& nc : nesting.named_components) {
    const auto name = fmt::format("named component \"{}\" (node {:#05x})", nc.device_name, nc.offset);
    if (nc.verdict == Nesting::needs_s2fwb) needs.push_back(fmt::format("{}: {}", name, nc.cause));
    if (nc.verdict == Nesting::refused) refused.push_back(fmt::format("{}: {}", name, nc.cause));
  }
  if (status == HostNesting::impossible) {
    if (refused.empty())
      return "impossible: the table describes no PCI root complex and no named component, so no device sits behind "
             "an SMMU (CANWBS cannot change that)";
    return fmt::format("impossible: no device reaches a coherent SMMUv3, so neither CANWBS nor S2FWB can allow "
                       "nesting - {}",
                       fmt::join(refused, "; "));
  }
  std::string s =
      status == HostNesting::possible
          ? fmt::format("possible: {} carr{} CANWBS, so Linux allows nesting there whatever the SMMU's S2FWB",
                        fmt::join(allowed, ", "), allowed.size() == 1 ? "ies" : "y")
          : std::string("needs S2FWB");
  if (!needs.empty())
    s += fmt::format("{} nesting depends on the SMMU's S2FWB (IDR3.FWB), which the IORT cannot show (run `vsmmu "
                     "probe` on this host), for {}",
                     status == HostNesting::possible ? "; elsewhere" : ":", fmt::join(needs, "; "));
  if (!patchable.empty()) {
    std::vector<std::string> commands;
    if (patchable.size() == nesting.root_complexes.size())
      commands.push_back(fmt::format("`vsmmu iort patch --canwbs {} -o iort.cpio --cpio`", source));
    else
      for (auto i : patchable)
        commands.push_back(fmt::format("`vsmmu iort patch --canwbs --rc {} {} -o iort.cpio --cpio`", i, source));
    s += fmt::format("; if the hardware guarantees CANWBS for {} {}, {} makes Linux allow nesting there without "
                     "S2FWB",
                     patchable.size() == 1 ? "root complex" : "root complexes", fmt::join(patchable, ", "),
                     fmt::join(commands, " or "));
  }
  if (!refused.empty()) s += fmt::format("; refused: {}", fmt::join(refused, "; "));
  return s;
}

}  // namespace vsmmu::acpi::iort
