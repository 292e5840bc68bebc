#include "table_invariants.hpp"

#include <cerrno>

#include <fmt/format.h>

#include "acpi/devicetree.hpp"
#include "acpi/iort.hpp"
#include "acpi/iort_nesting.hpp"
#include "acpi/iort_patch.hpp"
#include "acpi/json.hpp"
#include "acpi/nesting_status.hpp"

namespace vsmmu::acpi::test {
namespace {

std::string patch_invariants(const iort::Report& before, const iort::NestingReport& nesting,
                             const iort::Patched& patched, iort::IfUnsafe if_unsafe) {
  for (const auto& p : before.problems)
    if (p.severity == iort::Severity::error && p.check != iort::Check::checksum)
      return fmt::format("patched a table with a {} error: {}", to_string(p.check), p.message);
  auto again = iort::parse(patched.table);
  if (!again) return "the patched table is not an IORT: " + again.error().message;
  if (!again->valid()) return "the patched table has errors";
  const auto after = iort::nesting_report(again->table).root_complexes;
  if (after.size() != nesting.root_complexes.size()) return "the patch changed the number of root complexes";
  if (patched.changes.size() + patched.skipped.size() != after.size())
    return "a root complex is neither patched nor skipped";
  if (if_unsafe == iort::IfUnsafe::force && !patched.skipped.empty()) return "a forced patch skipped a root complex";
  for (const auto& c : patched.changes) {
    if (!after[c.rc.index].memory.canwbs()) return fmt::format("patched root complex {} lacks CANWBS", c.rc.index);
    const auto& was = nesting.root_complexes[c.rc.index];
    const bool suitable = was.verdict != iort::Nesting::refused && was.memory.cca();
    if (suitable == c.forced.has_value())
      return fmt::format("root complex {} is {} but {} forced", c.rc.index, suitable ? "suitable" : "unsuitable",
                         c.forced ? "was" : "was not");
  }
  for (const auto& s : patched.skipped)
    if (after[s.rc.index].memory != nesting.root_complexes[s.rc.index].memory)
      return fmt::format("skipped root complex {} changed", s.rc.index);
  if (patched.checksum_fixed.has_value() == before.valid()) return "checksum_fixed disagrees with the table's validity";
  return "";
}

}  // namespace

std::string iort_invariants(std::span<const std::uint8_t> bytes) {
  auto report = iort::parse(bytes);
  if (!report) return "";  // not an IORT: `iort check` says malformed from the error alone
  for (const auto& p : report->problems)
    if (p.offset > bytes.size()) return fmt::format("a problem points past the input at {:#x}: {}", p.offset, p.message);
  const auto nesting = iort::nesting_report(report->table);
  for (const auto& p : nesting.problems)
    if (p.offset > bytes.size() || p.severity != iort::Severity::warning)
      return "the nesting report has an error or points past the input: " + p.message;
  (void)iort_json("sweep", *report, nesting);
  const auto summary = iort::nesting_summary(*report, nesting, "sweep");
  const auto status = iort::host_status(*report, nesting);
  if ((status == HostNesting::malformed) != !report->valid())
    return fmt::format("status {} for a table that is {}valid", to_string(status), report->valid() ? "" : "not ");
  bool canwbs = false;
  for (const auto& rc : nesting.root_complexes) canwbs |= rc.verdict == iort::Nesting::allowed_canwbs && !rc.shadowed_by;
  if ((status == HostNesting::possible) != canwbs && status != HostNesting::malformed)
    return fmt::format("status {} but {} root complex is allowed by CANWBS", to_string(status), canwbs ? "a" : "no");
  // The summary suggests `iort patch` exactly where it would change a verdict, and each patch it suggests works.
  bool patchable = false;
  if (status != HostNesting::malformed)
    for (const auto& rc : nesting.root_complexes) {
      if (rc.verdict != iort::Nesting::needs_s2fwb || iort::canwbs_cannot_help(rc)) continue;
      patchable = true;
      auto patched = iort::set_canwbs(bytes, rc.index);
      if (!patched && patched.error().err != EOVERFLOW)
        return fmt::format("the summary suggests patching root complex {}, which iort patch refuses: {}", rc.index,
                           patched.error().message);
    }
  if (patchable != (summary.find("iort patch") != std::string::npos))
    return fmt::format("status {}: the summary {} a patch: {}", to_string(status),
                       patchable ? "does not suggest" : "suggests", summary);
  for (const auto if_unsafe : {iort::IfUnsafe::refuse, iort::IfUnsafe::force})
    if (auto patched = iort::set_canwbs(bytes, std::nullopt, if_unsafe))  // refusals are fine
      if (auto broken = patch_invariants(*report, nesting, *patched, if_unsafe); !broken.empty()) return broken;
  return "";
}

std::string dt_invariants(std::span<const std::uint8_t> bytes) {
  auto inspected = dt::inspect(bytes);
  const dt::Report report = inspected ? std::move(*inspected) : dt::refused(inspected.error());
  (void)dt_json("sweep", report);
  (void)report.summary();
  const HostNesting status = report.status();
  if (status == HostNesting::possible) return "a device tree said nesting is possible without S2FWB";
  if ((report.count(dt::Severity::error) > 0) != (status == HostNesting::malformed))
    return fmt::format("status {} with {} errors", to_string(status), report.count(dt::Severity::error));
  dt::VsmmuSpec spec;
  spec.base = 0x9050000;
  spec.irqs = {{"eventq", 106}, {"gerror", 108}};
  spec.iommu_map = {{0, 0, 0x10000}};
  spec.msi_windows = {{0x8000000, 0x100000}};
  auto extended = dt::add_vsmmu(bytes, spec);
  if (!extended) return "";  // a base tree we cannot extend is refused with its reason
  auto again = dt::inspect(*extended);
  if (!again) return "the tree we extended is not sound: " + again.error().message;
  for (const auto& s : again->iommus)
    if (s.path == "/smmuv3@9050000" && (!s.smmu_v3 || !s.dma_coherent || s.iommu_cells != 1u))
      return "the vSMMU we added does not read back as a coherent arm,smmu-v3 with #iommu-cells 1";
  return "";
}

}  // namespace vsmmu::acpi::test
