// IORT parser fuzz target: parse, judge, render and patch arbitrary bytes. Beyond "no crash, no stray
// read" (ASan/UBSan), it checks what must hold for every input: problems point inside the input, the
// nesting report adds only warnings, the host status is malformed exactly when there is an error, and
// patching succeeds only on a table whose errors are at most its checksum, yielding a valid table where
// every root complex is either patched (CANWBS set, and suitable unless forced) or skipped (unchanged).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "acpi/iort.hpp"
#include "acpi/iort_nesting.hpp"
#include "acpi/iort_patch.hpp"
#include "acpi/json.hpp"

using namespace vsmmu::acpi;

namespace {

void check_patch(const iort::Report& before, const iort::NestingReport& nesting, const iort::Patched& patched,
                 iort::IfUnsafe if_unsafe) {
  for (const auto& p : before.problems)
    if (p.severity == iort::Severity::error && p.check != iort::Check::checksum) std::abort();
  auto again = iort::parse(patched.table);
  if (!again || !again->valid()) std::abort();
  const auto after = iort::nesting_report(again->table).root_complexes;
  if (after.size() != nesting.root_complexes.size()) std::abort();
  if (patched.changes.size() + patched.skipped.size() != after.size()) std::abort();
  if (if_unsafe == iort::IfUnsafe::force && !patched.skipped.empty()) std::abort();
  for (const auto& c : patched.changes) {
    if (!after[c.rc.index].memory.canwbs()) std::abort();
    const auto& was = nesting.root_complexes[c.rc.index];
    const bool suitable = was.verdict != iort::Nesting::refused && was.memory.cca();
    if (suitable == c.forced.has_value()) std::abort();
  }
  for (const auto& s : patched.skipped)
    if (after[s.rc.index].memory != nesting.root_complexes[s.rc.index].memory) std::abort();
  if (patched.checksum_fixed.has_value() == before.valid()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  auto report = iort::parse(bytes);
  if (!report) return 0;
  for (const auto& p : report->problems)
    if (p.offset > size) std::abort();
  const auto nesting = iort::nesting_report(report->table);
  for (const auto& p : nesting.problems)
    if (p.offset > size || p.severity != iort::Severity::warning) std::abort();
  (void)iort_json("fuzz", *report, nesting);
  (void)iort::nesting_summary(*report, nesting, "fuzz");
  // The status is malformed exactly when the parser found an error (acpi/nesting_status.hpp).
  const auto status = iort::host_status(*report, nesting);
  if ((status == HostNesting::malformed) != !report->valid()) std::abort();
  for (const auto if_unsafe : {iort::IfUnsafe::refuse, iort::IfUnsafe::force}) {
    // Refusals (errors besides the checksum, no suitable root complex, a maxed OEM revision) are fine.
    if (auto patched = iort::set_canwbs(bytes, std::nullopt, if_unsafe)) check_patch(*report, nesting, *patched, if_unsafe);
  }
  return 0;
}
