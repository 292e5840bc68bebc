#include "acpi/iort_patch.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "acpi/bytes.hpp"
#include "base/try.hpp"

namespace vsmmu::acpi::iort {

using namespace layout;

Result<Patched> set_canwbs(std::span<const std::uint8_t> table, std::optional<std::size_t> rc_index) {
  VSMMU_TRY_ASSIGN(auto report, parse(table));
  const auto& problems = report.problems;
  auto first_error = std::find_if(problems.begin(), problems.end(),
                                  [](const Problem& p) { return p.severity == Severity::error; });
  if (first_error != problems.end())
    return fail(EINVAL, "iort.patch",
                "the table has {} errors, the first at offset {:#x}: {}. A patched copy would carry them into the "
                "kernel; fix the table first (`vsmmu iort check` lists them all)",
                report.count(Severity::error), first_error->offset, first_error->message);

  const auto rcs = report.table.of_type(NodeType::root_complex);
  if (rcs.empty()) return fail(ENOENT, "iort.patch", "the table has no PCI root complex node to set CANWBS on");
  if (rc_index && *rc_index >= rcs.size())
    return fail(ERANGE, "iort.patch", "there is no root complex {}: the table has {} (0-{})", *rc_index, rcs.size(),
                rcs.size() - 1);
  const auto& header = report.table.header;
  if (header.oem_revision == 0xffffffffU)
    return fail(EOVERFLOW, "iort.patch",
                "the OEM revision is already 0xffffffff; Linux replaces a table only by one with a higher OEM "
                "revision, so this table cannot be overridden");

  Patched out;
  out.table.assign(table.begin(), table.begin() + header.length);
  for (std::size_t i = 0; i < rcs.size(); ++i) {
    if (rc_index && *rc_index != i) continue;
    const std::size_t at = rcs[i]->offset + kRcMemory + kMemFlags;
    const std::uint8_t before = out.table[at];
    out.table[at] = static_cast<std::uint8_t>(before | MemoryAccess::kCanwbs);
    out.changes.push_back(FlagChange{i, rcs[i]->offset, before, out.table[at]});
  }
  out.oem_revision_before = header.oem_revision;
  out.oem_revision_after = header.oem_revision + 1;
  put_le(out.table, kOemRevision, out.oem_revision_after, 4);
  out.table[kChecksum] = 0;
  out.table[kChecksum] = static_cast<std::uint8_t>(0x100 - byte_sum(out.table));
  return out;
}

}  // namespace vsmmu::acpi::iort
