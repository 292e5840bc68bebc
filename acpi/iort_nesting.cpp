#include "acpi/iort_nesting.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace vsmmu::acpi::iort {
namespace {

Route route_of(const Table& table, const IdMapping& m) {
  Route r;
  r.single = m.single();
  r.rid_first = m.single() ? 0 : m.input_base;
  r.rid_last = m.single() ? 0xffffffffULL : m.input_last();
  r.out_first = m.output_base;
  r.out_last = m.single() ? m.output_base : m.output_last();
  r.target_offset = m.output_reference;
  const Node* t = table.node_at(m.output_reference);
  if (!t) return r;
  if (t->is(NodeType::smmu_v3)) {
    r.target = Route::Target::smmu_v3;
    const auto* s = t->as<SmmuV3>();
    r.coherent_smmu = s && s->cohacc();
  } else if (t->is(NodeType::smmu)) {
    r.target = Route::Target::smmu_v1v2;
  } else if (t->is(NodeType::its_group)) {
    r.target = Route::Target::its_group;
  }
  return r;
}

std::string rid_range(const Route& r) {
  return r.single ? std::string("every RID (single mapping)") : fmt::format("RIDs {:#x}-{:#x}", r.rid_first, r.rid_last);
}

void judge(RootComplexNesting& rc) {
  const auto is = [](Route::Target t) { return [t](const Route& r) { return r.target == t; }; };
  const bool any_v3 = std::any_of(rc.routes.begin(), rc.routes.end(), is(Route::Target::smmu_v3));
  const bool any_coherent = std::any_of(rc.routes.begin(), rc.routes.end(), [](const Route& r) {
    return r.target == Route::Target::smmu_v3 && r.coherent_smmu;
  });
  if (rc.routes.empty()) {
    rc.verdict = Nesting::refused;
    rc.reason = "it has no ID mappings: its devices reach no SMMU, so nothing can be nested";
    return;
  }
  if (!any_v3) {
    rc.verdict = Nesting::refused;
    if (std::any_of(rc.routes.begin(), rc.routes.end(), is(Route::Target::smmu_v1v2)))
      rc.reason = "its IDs go to an SMMUv1/v2 (arm-smmu driver), which has no iommufd vIOMMU; nesting needs an SMMUv3";
    else if (std::any_of(rc.routes.begin(), rc.routes.end(), is(Route::Target::its_group)))
      rc.reason = "its IDs go straight to the ITS: its devices bypass every SMMU, so there is no stage 2 to nest under";
    else
      rc.reason = "none of its ID mappings points at a valid node (see the problems above)";
    return;
  }
  if (!any_coherent) {
    rc.verdict = Nesting::refused;
    rc.reason =
        "the SMMUv3 it maps to lacks the COHACC override flag: Linux takes the SMMU's coherency from firmware, treats "
        "it as not cache coherent, and iommufd refuses to bind devices (no IOMMU_CAP_CACHE_COHERENCY)";
    return;
  }
  std::string lost;
  for (const auto& r : rc.routes)
    if (r.target != Route::Target::smmu_v3 || !r.coherent_smmu)
      lost += fmt::format("{}{} ({})", lost.empty() ? "" : ", ", rid_range(r),
                          r.target == Route::Target::smmu_v3 ? "non-coherent SMMUv3" : to_string(r.target));
  const std::string partial =
      lost.empty() ? "" : fmt::format("; {} do not reach a coherent SMMUv3 and cannot be nested", lost);
  if (rc.memory.canwbs()) {
    rc.verdict = Nesting::allowed_canwbs;
    rc.reason = fmt::format(
        "memory access flags {:#04x} carry CANWBS: Linux marks its devices IOMMU_FWSPEC_PCI_RC_CANWBS, so "
        "IOMMU_VIOMMU_ALLOC succeeds whether or not the SMMU has S2FWB{}",
        rc.memory.flags, partial);
  } else {
    rc.verdict = Nesting::needs_s2fwb;
    rc.reason = fmt::format(
        "memory access flags {:#04x} ({}) lack CANWBS: IOMMU_VIOMMU_ALLOC succeeds only if the SMMU has S2FWB "
        "(IDR3.FWB), which the IORT cannot show; `vsmmu probe` reads it{}",
        rc.memory.flags, memory_flags_names(rc.memory.flags), partial);
  }
}

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

bool NestingReport::any_canwbs() const {
  return std::any_of(root_complexes.begin(), root_complexes.end(),
                     [](const RootComplexNesting& rc) { return rc.verdict == Nesting::allowed_canwbs; });
}

NestingReport nesting_report(const Table& table) {
  NestingReport report;
  for (const Node* node : table.of_type(NodeType::root_complex)) {
    RootComplexNesting rc;
    rc.index = report.root_complexes.size();
    rc.offset = node->offset;
    if (const auto* data = node->as<RootComplex>()) {
      rc.segment = data->pci_segment;
      rc.memory = data->memory;
    }
    for (const auto& m : node->mappings) rc.routes.push_back(route_of(table, m));
    judge(rc);
    report.root_complexes.push_back(std::move(rc));
  }
  return report;
}

}  // namespace vsmmu::acpi::iort
