// The mutation sweeps: every one-byte change (0x00, 0xff, low bit, high bit) and every truncation of the
// real-shaped tables in tests/data - QEMU virt's IORT with and without CANWBS, a table with every node type, a
// guest IORT, host device trees - keeps the rules of table_invariants.hpp, the same the fuzzers check on random
// input. IORT mutations are swept twice: as they are (mostly a checksum error: malformed) and with the checksum
// made right, so the verdicts, warnings and patches behind a sound header are exercised too. Under the asan
// preset this is also "no stray read" for each of them.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include <fmt/format.h>

#include "acpi/devicetree.hpp"
#include "acpi/iort.hpp"
#include "acpi/iort_nesting.hpp"
#include "acpi/nesting_status.hpp"
#include "fixtures.hpp"
#include "table_invariants.hpp"

namespace vsmmu::acpi {
namespace {

using test::Bytes;

// Every mutant of `original`: the four one-byte changes at each offset, then each shorter length.
template <class F>
void for_each_mutant(const Bytes& original, F&& visit) {
  for (std::size_t at = 0; at < original.size(); ++at) {
    const std::uint8_t b = original[at];
    for (const std::uint8_t v : {std::uint8_t{0x00}, std::uint8_t{0xff}, static_cast<std::uint8_t>(b ^ 0x01),
                                 static_cast<std::uint8_t>(b ^ 0x80)}) {
      if (v == b) continue;
      Bytes m = original;
      m[at] = v;
      visit(m, fmt::format("byte {:#x} {:#04x} -> {:#04x}", at, b, v));
    }
  }
  for (std::size_t len = 0; len < original.size(); ++len)
    visit(Bytes(original.begin(), original.begin() + static_cast<std::ptrdiff_t>(len)), fmt::format("first {} bytes", len));
}

HostNesting iort_status(const Bytes& t) {
  auto r = iort::parse(t);
  if (!r) return HostNesting::malformed;
  return iort::host_status(*r, iort::nesting_report(r->table));
}

TEST(MutationSweep, EveryMutantOfTheIortTablesKeepsTheRules) {
  std::map<HostNesting, std::size_t> seen;
  std::size_t mutants = 0;
  for (const char* name : {"iort/qemu-virt.dat", "iort/qemu-virt-canwbs.dat", "iort/all-node-types.dat",
                           "iort/guest-two-smmus.dat"}) {
    const Bytes original = test::read_golden(name);
    ASSERT_FALSE(original.empty()) << name;
    for_each_mutant(original, [&](Bytes m, const std::string& what) {
      for (const bool fixed : {false, true}) {
        if (fixed) {
          if (m.size() < iort::layout::kAcpiHeaderSize) return;
          test::fix_checksum(m);
        }
        ++mutants;
        EXPECT_EQ(test::iort_invariants(m), "") << name << ", " << what << (fixed ? ", checksum fixed" : "");
        ++seen[iort_status(m)];
      }
    });
  }
  // The sweep reaches every verdict a script can get, so the rules were checked where each one applies.
  for (const auto s : {HostNesting::possible, HostNesting::needs_s2fwb, HostNesting::impossible, HostNesting::malformed})
    EXPECT_GT(seen[s], 0U) << "no mutant was " << to_string(s) << " among " << mutants;
}

TEST(MutationSweep, EveryMutantOfTheDeviceTreesKeepsTheRules) {
  std::map<HostNesting, std::size_t> seen;
  std::size_t mutants = 0;
  for (const char* name : {"dt/host-mixed-iommus.dtb", "dt/vsmmu-new-tree.dtb"}) {
    const Bytes original = test::read_golden(name);
    ASSERT_FALSE(original.empty()) << name;
    for_each_mutant(original, [&](const Bytes& m, const std::string& what) {
      ++mutants;
      EXPECT_EQ(test::dt_invariants(m), "") << name << ", " << what;
      auto r = dt::inspect(m);
      ++seen[r ? r->status() : HostNesting::malformed];
    });
  }
  for (const auto s : {HostNesting::needs_s2fwb, HostNesting::impossible, HostNesting::malformed})
    EXPECT_GT(seen[s], 0U) << "no mutant was " << to_string(s) << " among " << mutants;
}

}  // namespace
}  // namespace vsmmu::acpi
