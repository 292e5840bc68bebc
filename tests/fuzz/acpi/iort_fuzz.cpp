// IORT parser fuzz target: parse, judge, render and patch arbitrary bytes. Beyond "no crash, no stray
// read" (ASan/UBSan), it checks what must hold for every input: problems point inside the input, the
// nesting report adds only warnings, the host status is malformed exactly when there is an error, and
// patching a valid table yields a valid table with CANWBS on every root complex.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "acpi/iort.hpp"
#include "acpi/iort_nesting.hpp"
#include "acpi/iort_patch.hpp"
#include "acpi/json.hpp"

using namespace vsmmu::acpi;

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
  if (!report->valid()) return 0;
  auto patched = iort::set_canwbs(bytes, std::nullopt);
  if (!patched) return 0;  // no root complex, or an OEM revision that cannot grow
  auto again = iort::parse(patched->table);
  if (!again || !again->valid()) std::abort();
  for (const auto& rc : iort::nesting_report(again->table).root_complexes)
    if (!rc.memory.canwbs()) std::abort();
  return 0;
}
