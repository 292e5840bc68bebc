// Device-tree fuzz target: inspect arbitrary blobs, render the report (JSON, summary, status), and use them as
// the base tree the vSMMU is added to. Beyond "no crash, no stray read", every input must keep the rules of
// tests/unit/acpi/table_invariants.hpp.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "table_invariants.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto broken = vsmmu::acpi::test::dt_invariants(std::span<const std::uint8_t>(data, size));
  if (broken.empty()) return 0;
  std::fprintf(stderr, "dt_fuzz: %s\n", broken.c_str());
  std::abort();
}
