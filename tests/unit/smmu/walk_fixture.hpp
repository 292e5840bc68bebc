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
constexpr std::uint64_t kPoolSize = 8ULL << 20;
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

constexpr std::uint64_t kVa = 0x12'3456'7000ULL;
constexpr std::uint64_t kOut = 0x8'0000'0000ULL;

// One stage's tables (4KB granule, 48-bit input) with one mapping of `size` bytes that covers kVa.
struct OneMapping {
  TableMemory tm;
  TableBuilder b;
  explicit OneMapping(Stage stage, MapAttributes attrs = {}, std::uint64_t size = 4096)
      : b(tm.mem, tm.pool, stage, Granule::k4K, 48) {
    EXPECT_TRUE(b.map(kVa & ~(size - 1), kOut, size, attrs));
  }
  std::uint64_t leaf() const { return b.leaf(kVa).value().descriptor; }
  void set_leaf(std::uint64_t d) { EXPECT_TRUE(b.write_leaf(kVa, d)); }
  std::expected<Translation, WalkFault> walk(AccessType a, const Cd& cd) {
    Walker w(tm.mem);
    return w.stage1(s1_of(cd), kVa + 0x10, a);
  }
  std::expected<Translation, WalkFault> walk(AccessType a) {
    Walker w(tm.mem);
    return b.stage() == Stage::s1 ? w.stage1(s1_of(cd_for(b)), kVa + 0x10, a)
                                  : w.stage2(s2_of(ste_for(b)), kVa + 0x10, a);
  }
};

// A window of PA space seen at other addresses: the guest's IPA view of its RAM, so a stage-1 builder
// writes its tables where stage 2 maps them.
class OffsetMemory final : public PhysicalMemory {
 public:
  OffsetMemory(PhysicalMemory& pa, std::uint64_t pa_minus_ipa) : pa_(pa), delta_(pa_minus_ipa) {}
  std::expected<void, BusFault> read(std::uint64_t a, std::span<std::byte> out) const override {
    return pa_.read(a + delta_, out);
  }
  std::expected<void, BusFault> write(std::uint64_t a, std::span<const std::byte> in) override {
    return pa_.write(a + delta_, in);
  }
  std::expected<bool, BusFault> compare_exchange64(std::uint64_t a, std::uint64_t expected,
                                                   std::uint64_t desired) override {
    return pa_.compare_exchange64(a + delta_, expected, desired);
  }

 private:
  PhysicalMemory& pa_;
  std::uint64_t delta_;
};

// A guest with 4KB/48-bit stage-1 tables in its RAM at IPA kGuestRamIpa, which a 4KB/48-bit stage 2 maps
// page by page to kGuestRamPa (so one page's stage-2 entry can be changed alone).
struct NestedEnv {
  static constexpr std::uint64_t kGuestRamIpa = 0x8000'0000;
  static constexpr std::uint64_t kGuestRamPa = 0x1'8000'0000;
  static constexpr std::uint64_t kGuestRamSize = 4 * kMiB;

  static constexpr std::uint64_t kHostPoolSize = 4 * kMiB;

  RegionMemory pa;
  OffsetMemory ipa_view{pa, kGuestRamPa - kGuestRamIpa};
  TablePageAllocator s2_pool{pa, kPoolBase, kHostPoolSize};
  TablePageAllocator s1_pool{ipa_view, kGuestRamIpa, kGuestRamSize};
  TableBuilder s1{ipa_view, s1_pool, Stage::s1, Granule::k4K, 48};
  TableBuilder s2{pa, s2_pool, Stage::s2, Granule::k4K, 48};

  NestedEnv() {
    EXPECT_TRUE(pa.add_ram(kPoolBase, kHostPoolSize));
    EXPECT_TRUE(pa.add_ram(kGuestRamPa, kGuestRamSize));
    EXPECT_TRUE(s1.init());
    EXPECT_TRUE(s2.map(kGuestRamIpa, kGuestRamPa, kGuestRamSize, MapAttributes{.allow_blocks = false}));
  }
  Cd cd() const { return cd_for(s1); }
  Ste ste() const { return ste_for(s2); }
  // IPA of the stage-1 descriptor for va at level.
  std::uint64_t s1_entry_ipa(std::uint64_t va, int level) const { return entry_at(ipa_view, s1, va, level); }
};

}  // namespace vsmmu::smmu::test
