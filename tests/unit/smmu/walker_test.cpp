// Walker geometry: every granule and start level at both stages, concatenated stage-2 roots, page and
// block descriptors, reserved descriptor encodings, nested walks (Arm ARM D8.2 / J1.1.4 pseudocode,
// IHI 0070 3.4).
#include <gtest/gtest.h>

#include <vector>

#include "tests/unit/smmu/walk_fixture.hpp"

namespace vsmmu::smmu {
namespace {

using namespace test;

struct GeometryCase {
  Granule granule;
  unsigned ia_bits;
};

std::string name_of(const ::testing::TestParamInfo<GeometryCase>& info) {
  return fmt::format("G{}K_IA{}", granule_size(info.param.granule) / 1024, info.param.ia_bits);
}

// Input sizes at both ends of every start level a granule has, with IDR3.STT (T0SZ up to 48/47) and
// 52-bit VA/IPA for 64KB.
std::vector<GeometryCase> geometry_cases() {
  std::vector<GeometryCase> cases;
  for (Granule g : {Granule::k4K, Granule::k16K, Granule::k64K}) {
    const unsigned lowest = g == Granule::k64K ? 17 : 16;
    const unsigned highest = g == Granule::k64K ? 52 : 48;
    for (int level = 0; level <= 3; ++level) {
      const unsigned lo = std::max(lowest, level_shift(g, level) + 1);
      const unsigned hi = std::min(highest, level_shift(g, level) + bits_per_level(g));
      if (lo > hi) continue;
      cases.push_back({g, lo});
      if (hi != lo) cases.push_back({g, hi});
    }
  }
  return cases;
}

// Probe addresses: the first page, the last page, and one in the middle with every level's index non-zero.
std::vector<std::uint64_t> probes(Granule g, unsigned ia_bits) {
  const std::uint64_t top = (1ULL << ia_bits) - granule_size(g);
  return {0, top, (0x5a5a5a5a5a5a5a5aULL & (top)) & ~(granule_size(g) - 1)};
}

class StageOneGeometry : public ::testing::TestWithParam<GeometryCase> {};

// Arm ARM J1.1.4.13 AArch64.S1StartLevel: the start level follows from T0SZ and the granule; one
// descriptor read per level down to the page.
TEST_P(StageOneGeometry, PageTranslatesAtEveryStartLevel) {
  const auto [g, ia_bits] = GetParam();
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, Stage::s1, g, ia_bits);
  ASSERT_TRUE(b.init());
  WalkCapabilities caps = full_caps();
  caps.vax = true;
  caps.oas_bits = 52;
  const Stage1Params p = s1_of(cd_for(b, 6), caps);
  EXPECT_EQ(static_cast<int>(p.start_level), s1_start_level(g, ia_bits));
  const std::uint64_t out = 0x12'3450'0000ULL & ~(granule_size(g) - 1);
  for (std::uint64_t va : probes(g, ia_bits)) {
    ASSERT_TRUE(b.map(va, out, granule_size(g), MapAttributes{}));
    Walker w(tm.mem);
    auto t = w.stage1(p, va + 0x18, kRead);
    ASSERT_TRUE(t) << fmt::format("va {:#x}", va);
    EXPECT_EQ(t->output, out + 0x18);
    EXPECT_EQ(t->level, 3);
    EXPECT_EQ(t->size_log2, granule_shift(g));
    EXPECT_EQ(w.descriptor_reads(), static_cast<std::uint64_t>(4 - p.start_level));
    ASSERT_TRUE(b.unmap(va, granule_size(g)));
  }
}

INSTANTIATE_TEST_SUITE_P(AllGranules, StageOneGeometry, ::testing::ValuesIn(geometry_cases()), name_of);

struct S2Case {
  Granule granule;
  unsigned ia_bits;
  int start_level;
};

// Every S2SL0 a granule allows (4KB level 3 needs STT; level 1 of 16KB/64KB and level 0 of 4KB need a
// large enough OAS), at the smallest input it accepts and the largest, which concatenates 16 tables.
std::vector<S2Case> stage2_cases() {
  std::vector<S2Case> cases;
  for (Granule g : {Granule::k4K, Granule::k16K, Granule::k64K}) {
    const unsigned highest = g == Granule::k64K ? 52 : 48;
    for (int level = g == Granule::k4K ? 0 : 1; level <= 3; ++level) {
      const unsigned lo = std::max(16U, level_shift(g, level) + 1);
      const unsigned hi = std::min(highest, level_shift(g, level) + bits_per_level(g) + 4);
      if (lo > hi) continue;
      cases.push_back({g, lo, level});
      if (hi != lo) cases.push_back({g, hi, level});
    }
  }
  return cases;
}

class StageTwoGeometry : public ::testing::TestWithParam<S2Case> {};

TEST_P(StageTwoGeometry, PageTranslatesAtEveryS2SL0IncludingConcatenatedRoots) {
  const auto [g, ia_bits, level] = GetParam();
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, g, ia_bits, static_cast<unsigned>(level));
  ASSERT_TRUE(b.init());
  WalkCapabilities caps = full_caps();
  caps.oas_bits = 52;
  const Stage2Params p = s2_of(ste_for(b, 6), caps);
  EXPECT_EQ(static_cast<int>(p.start_level), level);
  const std::uint64_t out = 0xabc'0000'0000ULL;
  for (std::uint64_t ipa : probes(g, ia_bits)) {
    ASSERT_TRUE(b.map(ipa, out, granule_size(g), MapAttributes{}));
    Walker w(tm.mem);
    auto t = w.stage2(p, ipa + 8, kRead);
    ASSERT_TRUE(t) << fmt::format("ipa {:#x}", ipa);
    EXPECT_EQ(t->output, out + 8);
    EXPECT_EQ(w.descriptor_reads(), static_cast<std::uint64_t>(4 - level));
    ASSERT_TRUE(b.unmap(ipa, granule_size(g)));
  }
}

INSTANTIATE_TEST_SUITE_P(AllGranules, StageTwoGeometry, ::testing::ValuesIn(stage2_cases()),
                         [](const ::testing::TestParamInfo<S2Case>& param_info) {
                           return fmt::format("G{}K_IA{}_L{}", granule_size(param_info.param.granule) / 1024,
                                              param_info.param.ia_bits, param_info.param.start_level);
                         });

// Arm ARM D8.2: with a 40-bit IPA and 4KB granule, stage 2 starts at level 1 with two concatenated tables;
// the second table holds the upper half.
TEST(StageTwoGeometry, ConcatenatedRootIndexesIntoTheSecondTable) {
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, Stage::s2, Granule::k4K, 40);
  ASSERT_TRUE(b.init());
  EXPECT_EQ(b.start_level(), 1U);
  EXPECT_EQ(b.s2sl0(), 1U);
  const std::uint64_t ipa = (1ULL << 39) + 0x4000'0000;
  ASSERT_TRUE(b.map(ipa, 0x8000'0000, 4096, MapAttributes{}));
  EXPECT_EQ(entry_at(tm.mem, b, ipa, 1), b.root() + 4096 + 8);
  Walker w(tm.mem);
  auto t = w.stage2(s2_of(ste_for(b)), ipa, kRead);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->output, 0x8000'0000U);
}

struct BlockCase {
  Granule granule;
  int level;
};

class Blocks : public ::testing::TestWithParam<BlockCase> {};

// Arm ARM D8.3 (AArch64.BlockDescSupported): blocks at levels 1 and 2 for 4KB, level 2 for 16KB and 64KB;
// the block maps 2^level_shift bytes and the input offset passes through.
TEST_P(Blocks, BlockMapsItsWholeSizeAtBothStages) {
  const auto [g, level] = GetParam();
  const std::uint64_t size = 1ULL << level_shift(g, level);
  for (Stage stage : {Stage::s1, Stage::s2}) {
    TableMemory tm;
    TableBuilder b(tm.mem, tm.pool, stage, g, 48);
    const std::uint64_t ia = 3 * size;
    const std::uint64_t oa = 5 * size;
    ASSERT_TRUE(b.map(ia, oa, size, MapAttributes{}));
    auto leaf = b.leaf(ia);
    ASSERT_TRUE(leaf);
    EXPECT_EQ(leaf->level, level);
    Walker w(tm.mem);
    const std::uint64_t offset = size - 0x40;
    auto t = stage == Stage::s1 ? w.stage1(s1_of(cd_for(b)), ia + offset, kRead)
                                : w.stage2(s2_of(ste_for(b)), ia + offset, kRead);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->output, oa + offset);
    EXPECT_EQ(t->level, level);
    EXPECT_EQ(t->size_log2, level_shift(g, level));
  }
}

INSTANTIATE_TEST_SUITE_P(AllGranules, Blocks,
                         ::testing::Values(BlockCase{Granule::k4K, 1}, BlockCase{Granule::k4K, 2},
                                           BlockCase{Granule::k16K, 2}, BlockCase{Granule::k64K, 2}),
                         [](const ::testing::TestParamInfo<BlockCase>& param_info) {
                           return fmt::format("G{}K_L{}", granule_size(param_info.param.granule) / 1024, param_info.param.level);
                         });

// A block descriptor (bit 1 clear) where the granule has none, or at level 3, is reserved: translation
// fault at that level (AArch64.DecodeDescriptorType).
TEST(Blocks, ReservedBlockLevelsAreTranslationFaults) {
  struct Case {
    Granule g;
    int level;
  };
  for (Case c : {Case{Granule::k4K, 0}, Case{Granule::k4K, 3}, Case{Granule::k16K, 0}, Case{Granule::k16K, 1},
                 Case{Granule::k16K, 3}, Case{Granule::k64K, 1}, Case{Granule::k64K, 3}}) {
    TableMemory tm;
    TableBuilder b(tm.mem, tm.pool, Stage::s1, c.g, 48);
    ASSERT_TRUE(b.map(0, 0, granule_size(c.g), MapAttributes{.allow_blocks = false}));
    const std::uint64_t entry = entry_at(tm.mem, b, 0, c.level);
    std::uint64_t d = read_desc(tm.mem, entry);
    ASSERT_TRUE(tm.mem.write64(entry, Descriptor::Table.insert(d, false)));
    Walker w(tm.mem);
    auto t = w.stage1(s1_of(cd_for(b)), 0, kRead);
    ASSERT_FALSE(t) << fmt::format("{}K level {}", granule_size(c.g) / 1024, c.level);
    EXPECT_EQ(t.error().type, FaultType::translation);
    EXPECT_EQ(t.error().level, c.level);
    EXPECT_FALSE(t.error().stage2);
  }
}

// With a 52-bit OAS the 64KB granule has level-1 blocks and OA[51:48] in descriptor bits [15:12]
// (FEAT_LPA; AArch64.S1LeafBase).
TEST(Blocks, LargePhysicalAddressWith64KGranule) {
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, Stage::s2, Granule::k64K, 52);
  const std::uint64_t oa = 0xf'1234'5678'0000ULL;
  ASSERT_TRUE(b.map(0x10000, oa, 0x10000, MapAttributes{}));
  WalkCapabilities caps = full_caps();
  caps.oas_bits = 52;
  const Stage2Params p = s2_of(ste_for(b, 6), caps);
  EXPECT_TRUE(p.lpa);
  Walker w(tm.mem);
  auto t = w.stage2(p, 0x10008, kRead);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->output, oa + 8);

  // A level-1 block (4TB) is a leaf only with LPA.
  const std::uint64_t l1 = entry_at(tm.mem, b, 1ULL << 42, 1);
  Descriptor blk;
  blk.set(Descriptor::Valid, true).set(Descriptor::AF, true).set(Descriptor::S2AP_R, true);
  ASSERT_TRUE(tm.mem.write64(l1, Descriptor::with_address(blk.dw[0], 1ULL << 50, true)));
  auto big = w.stage2(p, (1ULL << 42) + 0x123456, kRead);
  ASSERT_TRUE(big);
  EXPECT_EQ(big->output, (1ULL << 50) + 0x123456);
  EXPECT_EQ(big->level, 1);
}

// IHI 0070 3.4 / Arm ARM D8.2: a nested walk reads every stage-1 descriptor through stage 2, so a 4-level
// by 4-level walk makes 4 x (4 + 1) + 4 descriptor reads.
TEST(Nested, FourByFourLevelWalk) {
  NestedEnv env;
  ASSERT_EQ(env.s2.start_level(), 0U);
  ASSERT_TRUE(env.s1.map(0x7f12'3456'7000ULL, 0x1'0000'0000ULL, 4096, MapAttributes{}));
  ASSERT_TRUE(env.s2.map(0x1'0000'0000ULL, 0x3'0000'0000ULL, 4096, MapAttributes{}));
  Walker w(env.pa);
  auto t = w.nested(s1_of(env.cd()), s2_of(env.ste()), 0x7f12'3456'7abcULL, kWrite);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->output, 0x3'0000'0abcULL);
  EXPECT_EQ(t->ipa, 0x1'0000'0abcULL);
  EXPECT_EQ(t->size_log2, 12U);
  EXPECT_EQ(t->level, 3);
  EXPECT_TRUE(t->perm.read && t->perm.write);
  EXPECT_EQ(t->descriptor_address, env.s1_entry_ipa(0x7f12'3456'7000ULL, 3) + (NestedEnv::kGuestRamPa - NestedEnv::kGuestRamIpa));
  EXPECT_EQ(w.descriptor_reads(), 24U);
}

// The nested result is as large as the smaller leaf and carries the intersection of both stages'
// permissions.
TEST(Nested, SizeIsTheSmallerLeafAndPermissionsIntersect) {
  NestedEnv env;
  ASSERT_TRUE(env.s1.map(0x4000'0000, 0x1'0000'0000ULL, 2 * kMiB, MapAttributes{.write = false, .execute = true}));
  ASSERT_TRUE(env.s2.map(0x1'0000'0000ULL, 0x3'0000'0000ULL, 2 * kMiB, MapAttributes{.allow_blocks = false}));
  Walker w(env.pa);
  auto t = w.nested(s1_of(env.cd()), s2_of(env.ste()), 0x4012'3456, kRead);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->output, 0x3'0012'3456ULL);
  EXPECT_EQ(t->size_log2, 12U);
  EXPECT_TRUE(t->perm.read);
  EXPECT_FALSE(t->perm.write);     // stage 1 read-only
  EXPECT_FALSE(t->perm.execute);   // stage 2 XN
}

}  // namespace
}  // namespace vsmmu::smmu
