// IORT parser fuzz target: parse, judge, render and patch arbitrary bytes. Beyond "no crash, no stray
// read" (ASan/UBSan), every input must keep the rules of tests/unit/acpi/table_invariants.hpp.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "table_invariants.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto broken = vsmmu::acpi::test::iort_invariants(std::span<const std::uint8_t>(data, size));
  if (broken.empty()) return 0;
  std::fprintf(stderr, "iort_fuzz: %s\n", broken.c_str());
  std::abort();
}
