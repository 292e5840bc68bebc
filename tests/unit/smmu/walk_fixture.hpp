// Shared by the walker and table-builder tests: RAM for tables, builders, and the CD/STE records that
// point the walker at what a builder wrote.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>

#include "smmu/cd.hpp"
#include "smmu/memory.hpp"
#include "smmu/ste.hpp"
#include "smmu/table_builder.hpp"
#include "smmu/walker.hpp"

namespace vsmmu::smmu::test {

constexpr std::uint64_t kPoolBase = 0x4000'0000;
constexpr std::uint64_t kPoolSize = 32ULL << 20;
constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kGiB = 1024 * kMiB;

constexpr AccessType kRead{};
constexpr AccessType kWrite{.write = true};
constexpr AccessType kExec{.instruction = true};
constexpr AccessType kPrivRead{.privileged = true};
constexpr AccessType kPrivWrite{.write = true, .privileged = true};
constexpr AccessType kPrivExec{.instruction = true, .privileged = true};

// An SMMU with every granule, HTTU with dirty state, small tables (STT) and 48-bit OAS.
inline WalkCapabilities full_caps() {
  WalkCapabilities c;
  c.httu_access = true;
  c.httu_dirty = true;
  c.stt = true;
  return c;
}

// RAM holding a pool that builders allocate tables from.
struct TableMemory {
  RegionMemory mem;
  TablePageAllocator pool{mem, kPoolBase, kPoolSize};
  TableMemory() { EXPECT_TRUE(mem.add_ram(kPoolBase, kPoolSize)); }
};

inline Cd cd_for(const TableBuilder& b, unsigned ips = 5) {
  Cd cd;
  cd.set(Cd::V, true)
      .set(Cd::AA64, true)
      .set(Cd::EPD1, true)
      .set(Cd::T0SZ, b.t0sz())
      .set(Cd::TG0, tg0_from_granule(b.granule()))
      .set(Cd::IPS, ips)
      .set(Cd::TTB0, b.root());
  return cd;
}

inline Ste ste_for(const TableBuilder& b, unsigned ps = 5) {
  Ste ste;
  ste.set(Ste::V, true)
      .set(Ste::Config, StreamConfig::s2_translate)
      .set(Ste::S2AA64, true)
      .set(Ste::S2T0SZ, b.t0sz())
      .set(Ste::S2SL0, b.s2sl0())
      .set(Ste::S2TG, tg0_from_granule(b.granule()))
      .set(Ste::S2PS, ps)
      .set(Ste::S2TTB, b.root());
  return ste;
}

inline Stage1Params s1_of(const Cd& cd, const WalkCapabilities& caps = full_caps()) {
  auto p = stage1_params(cd, caps);
  if (!p) ADD_FAILURE() << "CD refused: " << p.error().field << ": " << p.error().reason;
  return p.value_or(Stage1Params{});
}
inline Stage2Params s2_of(const Ste& ste, const WalkCapabilities& caps = full_caps()) {
  auto p = stage2_params(ste, caps);
  if (!p) ADD_FAILURE() << "STE refused: " << p.error().field << ": " << p.error().reason;
  return p.value_or(Stage2Params{});
}

// PA of the entry for `ia` at `level`, following table descriptors from the builder's root.
inline std::uint64_t entry_at(const PhysicalMemory& mem, const TableBuilder& b, std::uint64_t ia, int level) {
  const Granule g = b.granule();
  const unsigned ia_bits = 64 - b.t0sz();
  std::uint64_t table = b.root();
  for (int l = static_cast<int>(b.start_level());; ++l) {
    const unsigned shift = level_shift(g, l);
    const unsigned width = l == static_cast<int>(b.start_level()) ? ia_bits - shift : bits_per_level(g);
    const std::uint64_t pa = table + ((ia >> shift) & ((1ULL << width) - 1)) * 8;
    if (l == level) return pa;
    table = Descriptor::output_address(mem.read64(pa).value(), granule_shift(g), g == Granule::k64K);
  }
}

inline std::uint64_t read_desc(const PhysicalMemory& mem, std::uint64_t pa) { return mem.read64(pa).value(); }

}  // namespace vsmmu::smmu::test
