#include "acpi/iort_patch.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "acpi/bytes.hpp"
#include "acpi/iort_nesting.hpp"
#include "base/text.hpp"
#include "base/try.hpp"

namespace vsmmu::acpi::iort {
namespace {

using namespace layout;

std::string name(const RootComplexRef& rc) { return root_complex_label(rc.index, rc.segment, rc.offset); }

// Refuses a table with errors other than a wrong checksum (the patch rewrites the checksum anyway).
Result<void> only_checksum_wrong(const Report& report) {
  std::vector<const Problem*> others;
  bool checksum = false;
  for (const auto& p : report.problems) {
    if (p.severity != Severity::error) continue;
    if (p.check == Check::checksum)
      checksum = true;
    else
      others.push_back(&p);
  }
  if (others.empty()) return {};
  return fail(EINVAL, "iort.patch",
              "the table has {}{}, {} {:#x}: {}. A patched copy would carry {} into the kernel; fix the table "
              "first (`vsmmu iort check` lists {})",
              counted(others.size(), "error"), checksum ? " besides its checksum" : "",
              others.size() == 1 ? "at offset" : "the first at offset", others.front()->offset,
              others.front()->message, others.size() == 1 ? "it" : "them", others.size() == 1 ? "it" : "them all");
}

}  // namespace

Result<Patched> set_canwbs(std::span<const std::uint8_t> table, std::optional<std::size_t> rc_index,
                           IfUnsafe if_unsafe) {
  VSMMU_TRY_ASSIGN(auto report, parse(table));
  VSMMU_TRY(only_checksum_wrong(report));

  const auto nesting = nesting_report(report.table);
  const auto& rcs = nesting.root_complexes;
  if (rcs.empty()) return fail(ENOENT, "iort.patch", "the table has no PCI root complex node to set CANWBS on");
  if (rc_index && *rc_index >= rcs.size())
    return fail(ERANGE, "iort.patch", "there is no root complex {}: the table has {} (0-{})", *rc_index, rcs.size(),
                rcs.size() - 1);
  const auto& header = report.table.header;
  if (header.oem_revision == 0xffffffffU)
    return fail(EOVERFLOW, "iort.patch",
                "the OEM revision is already 0xffffffff; Linux replaces a table only by one with a higher OEM "
                "revision, so this table cannot be overridden");

  const bool force = if_unsafe == IfUnsafe::force;
  std::vector<Unsuitable> unsuitables;
  for (const auto& rc : rcs)
    if (rc_index.value_or(rc.index) == rc.index)
      if (auto why = canwbs_cannot_help(rc)) unsuitables.push_back({RootComplexRef{rc.index, rc.offset, rc.segment}, *why});
  const std::size_t chosen = rc_index ? 1 : rcs.size();
  if (!force && unsuitables.size() == chosen) {
    if (chosen == 1)
      return fail(EOPNOTSUPP, "iort.patch", "{} cannot take CANWBS: {}. --force sets it anyway",
                  name(unsuitables[0].rc), unsuitables[0].reason);
    std::string list;
    for (const auto& u : unsuitables) list += fmt::format("{}{}: {}", list.empty() ? "" : "; ", name(u.rc), u.reason);
    return fail(EOPNOTSUPP, "iort.patch", "no root complex can take CANWBS: {}. --force sets it anyway", list);
  }

  Patched out;
  out.table.assign(table.begin(), table.begin() + header.length);
  const std::uint8_t sum = byte_sum(table.first(header.length));
  out.table_revision = header.revision;
  out.oem_revision_before = header.oem_revision;
  out.oem_revision_after = header.oem_revision + 1;
  std::vector<std::string> rc_notes;
  for (const auto& rc : rcs) {
    if (rc_index.value_or(rc.index) != rc.index) continue;
    const RootComplexRef ref{rc.index, rc.offset, rc.segment};
    auto u = std::find_if(unsuitables.begin(), unsuitables.end(),
                          [&](const Unsuitable& x) { return x.rc.index == rc.index; });
    if (u != unsuitables.end() && !force) {
      rc_notes.push_back(fmt::format("{} skipped: {}; --force sets CANWBS there too", name(ref), u->reason));
      out.skipped.push_back(*u);
      continue;
    }
    const std::size_t at = rc.offset + kRcMemory + kMemFlags;
    const std::uint8_t before = out.table[at];
    out.table[at] = static_cast<std::uint8_t>(before | MemoryAccess::kCanwbs);
    FlagChange change{ref, before, out.table[at], std::nullopt};
    if (before & MemoryAccess::kCanwbs)
      rc_notes.push_back(fmt::format("{} already had CANWBS: unchanged (the table is still rewritten with a higher "
                                     "OEM revision)",
                                     name(ref)));
    if (u != unsuitables.end()) {
      change.forced = u->reason;
      rc_notes.push_back(fmt::format("{}: CANWBS forced, which is unsafe: {}", name(ref), u->reason));
    }
    out.changes.push_back(std::move(change));
  }
  put_le(out.table, kOemRevision, out.oem_revision_after, 4);
  out.table[kChecksum] = 0;
  out.table[kChecksum] = static_cast<std::uint8_t>(0x100 - byte_sum(out.table));

  if (sum != 0) {
    const ChecksumFix fix{header.checksum, static_cast<std::uint8_t>(header.checksum - sum), out.table[kChecksum]};
    out.checksum_fixed = fix;
    out.notes.push_back(fmt::format("checksum also fixed: {:#04x} -> {:#04x}; the firmware's table carried {:#04x} "
                                    "where its bytes called for {:#04x} (ACPI 6.5 5.2.6)",
                                    fix.shipped, fix.written, fix.shipped, fix.due));
  }
  if (header.revision < MemoryAccess::kCanwbsTableRevision)
    out.notes.push_back(fmt::format("IORT revision {} predates CANWBS (DEN 0049 E.f, revision {}): bit 2 of the "
                                    "memory access flags is reserved there. Linux reads it at any revision "
                                    "(drivers/acpi/arm64/iort.c, iort_pci_rc_supports_canwbs); other readers may not",
                                    header.revision, MemoryAccess::kCanwbsTableRevision));
  out.notes.insert(out.notes.end(), rc_notes.begin(), rc_notes.end());
  return out;
}

}  // namespace vsmmu::acpi::iort
