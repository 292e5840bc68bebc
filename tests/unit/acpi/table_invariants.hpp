// What must hold for every IORT and every device-tree blob, however mangled: the rules the iort_fuzz and dt_fuzz
// targets check on random inputs and the mutation sweeps (mutation_sweep_test.cpp) check on every one-byte change
// and truncation of the real-shaped tables in tests/data. One definition for both.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace vsmmu::acpi::test {

// Parses, judges, renders (text summary, JSON) and patches (refusing and forced) `bytes` as `vsmmu iort check`
// and `vsmmu iort patch` do. Returns the first rule broken, or "" when all hold:
// - every problem points inside the input; the nesting report adds warnings only;
// - the status is malformed exactly when the parser found an error; possible only with a root complex allowed by
//   CANWBS; the summary suggests `iort patch` exactly for root complexes whose verdict CANWBS would change, and
//   `iort patch --rc N` accepts each of them;
// - a patch succeeds only on a table whose errors are at most its checksum and yields a valid table where every
//   root complex is either patched (CANWBS set, forced exactly when unsuitable) or skipped (unchanged).
std::string iort_invariants(std::span<const std::uint8_t> bytes);

// Inspects and renders `bytes` as `vsmmu dt check` does, then adds a vSMMU to it as `vsmmu dt gen` does.
// Returns the first rule broken, or "": the status is never possible (a device tree cannot carry CANWBS) and is
// malformed exactly when there is an error; a tree we extended inspects as a sound tree with our coherent SMMUv3.
std::string dt_invariants(std::span<const std::uint8_t> bytes);

}  // namespace vsmmu::acpi::test
