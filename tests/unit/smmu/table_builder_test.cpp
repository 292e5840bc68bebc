// The table builder writes what a page-table library would: blocks where size and alignment allow,
// concatenated stage-2 roots with the S2SL0 that names them, splits on partial unmap; and the walker
// reads back exactly what was mapped (Arm ARM D8.2-D8.3; IHI 0070 5.2 S2SL0/S2T0SZ).
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "tests/unit/smmu/walk_fixture.hpp"

namespace vsmmu::smmu {
namespace {

using namespace test;

// ---- TablePageAllocator ----

TEST(TablePageAllocator, HandsOutAlignedZeroedPages) {
  RegionMemory mem;
  ASSERT_TRUE(mem.add_ram(0x10000, 0x10000));
  ASSERT_TRUE(mem.write64(0x11000, ~0ULL));  // stale data where the second table goes
  TablePageAllocator alloc(mem, 0x10008, 0xfff8);
  auto a = alloc.allocate(64, 64);
  ASSERT_TRUE(a);
  EXPECT_EQ(*a, 0x10040U);
  auto b = alloc.allocate(4096, 4096);
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, 0x11000U);
  EXPECT_EQ(mem.read64(0x11000).value(), 0U);
  EXPECT_EQ(alloc.used_up_to(), 0x12000U);
}

TEST(TablePageAllocator, RefusesWhatDoesNotFit) {
  RegionMemory mem;
  ASSERT_TRUE(mem.add_ram(0, 0x4000));
  TablePageAllocator alloc(mem, 0, 0x4000);
  EXPECT_EQ(alloc.allocate(0x1000, 3).error().err, EINVAL);
  EXPECT_EQ(alloc.allocate(0, 8).error().err, EINVAL);
  ASSERT_TRUE(alloc.allocate(0x3000, 0x1000));
  EXPECT_EQ(alloc.allocate(0x2000, 0x1000).error().err, ENOMEM);
  EXPECT_TRUE(alloc.allocate(0x1000, 0x1000));
}

TEST(TablePageAllocator, PoolWithoutMemoryIsAnError) {
  RegionMemory mem;
  TablePageAllocator alloc(mem, 0x1000, 0x1000);
  EXPECT_EQ(alloc.allocate(0x1000, 0x1000).error().err, EFAULT);
}

// ---- Start levels and S2SL0 ----

struct LevelCase {
  Stage stage;
  Granule granule;
  unsigned ia_bits;
  unsigned start_level;
  unsigned s2sl0;
  std::uint64_t root_bytes;
};

// Stage 1 starts where AArch64.S1StartLevel says; stage 2 one level deeper whenever at most 16 concatenated
// tables suffice (Linux io-pgtable-arm's choice), with the matching S2SL0 (VTCR_EL2.SL0 encoding).
TEST(TableBuilderLevels, StartLevelAndS2sl0) {
  const LevelCase cases[] = {
      {Stage::s1, Granule::k4K, 48, 0, 2, 4096},
      {Stage::s1, Granule::k4K, 39, 1, 1, 4096},
      {Stage::s1, Granule::k4K, 32, 1, 1, 64},
      {Stage::s1, Granule::k16K, 48, 0, 3, 64},
      {Stage::s1, Granule::k64K, 48, 1, 2, 512},
      {Stage::s2, Granule::k4K, 48, 0, 2, 4096},
      {Stage::s2, Granule::k4K, 44, 0, 2, 256},
      {Stage::s2, Granule::k4K, 43, 1, 1, 16 * 4096},
      {Stage::s2, Granule::k4K, 40, 1, 1, 2 * 4096},
      {Stage::s2, Granule::k4K, 34, 2, 0, 16 * 4096},
      {Stage::s2, Granule::k16K, 48, 1, 2, 2 * 16384},
      {Stage::s2, Granule::k16K, 40, 2, 1, 16 * 16384},
      {Stage::s2, Granule::k64K, 48, 1, 2, 512},
      {Stage::s2, Granule::k64K, 42, 2, 1, 65536},
      {Stage::s2, Granule::k64K, 52, 1, 2, 8192},
  };
  for (const LevelCase& c : cases) {
    TableMemory tm;
    TableBuilder b(tm.mem, tm.pool, c.stage, c.granule, c.ia_bits);
    const std::string what =
        fmt::format("{} {}K {} bits", c.stage == Stage::s1 ? "s1" : "s2", granule_size(c.granule) / 1024, c.ia_bits);
    ASSERT_TRUE(b.init()) << what;
    EXPECT_EQ(b.start_level(), c.start_level) << what;
    EXPECT_EQ(b.t0sz(), 64 - c.ia_bits) << what;
    EXPECT_EQ(b.root() % c.root_bytes, 0U) << what;
    EXPECT_EQ(tm.pool.used_up_to() - b.root(), std::max<std::uint64_t>(c.root_bytes, 64)) << what;
    if (c.stage == Stage::s2) {
      EXPECT_EQ(b.s2sl0(), c.s2sl0) << what;
      // What the builder chose is what the STE decoder accepts.
      WalkCapabilities caps = full_caps();
      caps.oas_bits = 52;
      auto p = stage2_params(ste_for(b, 6), caps);
      ASSERT_TRUE(p) << what << ": " << p.error().reason;
      EXPECT_EQ(p->start_level, c.start_level) << what;
    }
  }
}

TEST(TableBuilderLevels, RefusesImpossibleSizes) {
  TableMemory tm;
  EXPECT_EQ(TableBuilder(tm.mem, tm.pool, Stage::s1, Granule::k4K, 49).init().error().err, EINVAL);
  EXPECT_EQ(TableBuilder(tm.mem, tm.pool, Stage::s1, Granule::k4K, 12).init().error().err, EINVAL);
  EXPECT_TRUE(TableBuilder(tm.mem, tm.pool, Stage::s1, Granule::k64K, 52).init());
  // A forced stage-2 start level must resolve 1 to stride + 4 bits (AArch64.S2InconsistentSL).
  EXPECT_EQ(TableBuilder(tm.mem, tm.pool, Granule::k4K, 44, 1).init().error().err, EINVAL);
  EXPECT_EQ(TableBuilder(tm.mem, tm.pool, Granule::k4K, 30, 1).init().error().err, EINVAL);
  EXPECT_TRUE(TableBuilder(tm.mem, tm.pool, Granule::k4K, 43, 1).init());
}

// ---- map ----

// Arm ARM D8.3: a 2MB-aligned 2MB range maps with one level-2 block (4KB); misaligned output or
// allow_blocks = false use pages.
TEST(TableBuilderMap, UsesBlocksOnlyWhenSizeAndAlignmentAllow) {
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, Stage::s1, Granule::k4K, 48);
  ASSERT_TRUE(b.map(0x4000'0000, 0x8000'0000, 2 * kMiB, MapAttributes{}));
  EXPECT_EQ(b.leaf(0x4010'0000).value().level, 2);
  ASSERT_TRUE(b.map(0x4020'0000, 0x8020'1000, 2 * kMiB, MapAttributes{}));
  EXPECT_EQ(b.leaf(0x4030'0000).value().level, 3);
  ASSERT_TRUE(b.map(0x4040'0000, 0x8040'0000, 2 * kMiB, MapAttributes{.allow_blocks = false}));
  EXPECT_EQ(b.leaf(0x4050'0000).value().level, 3);
  ASSERT_TRUE(b.map(1 * kGiB * 8, 1 * kGiB * 8, 1 * kGiB + 4096, MapAttributes{}));
  EXPECT_EQ(b.leaf(8 * kGiB).value().level, 1);
  EXPECT_EQ(b.leaf(9 * kGiB).value().level, 3);
}

// Blocks need an aligned start too: a 4MB range at 1MB offset is pages, blocks, pages.
TEST(TableBuilderMap, MixedRangeUsesBlocksInTheMiddle) {
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, Stage::s2, Granule::k4K, 40);
  ASSERT_TRUE(b.map(0x10'0000, 0x10'0000, 4 * kMiB, MapAttributes{}));
  EXPECT_EQ(b.leaf(0x10'0000).value().level, 3);
  EXPECT_EQ(b.leaf(0x20'0000).value().level, 2);
  EXPECT_EQ(b.leaf(0x40'0000).value().level, 3);
  EXPECT_EQ(b.leaf(0x4f'f000).value().level, 3);
  EXPECT_EQ(b.leaf(0x50'0000).error().err, ENOENT);
}

TEST(TableBuilderMap, RefusesOverlapsAndBadRanges) {
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, Stage::s1, Granule::k4K, 39);
  ASSERT_TRUE(b.map(0x20'0000, 0, 2 * kMiB, MapAttributes{}));
  EXPECT_EQ(b.map(0x20'0000, 0, 4096, MapAttributes{}).error().err, EEXIST);   // inside a block
  EXPECT_EQ(b.map(0x1f'f000, 0, 8192, MapAttributes{}).error().err, EEXIST);   // runs into it
  ASSERT_TRUE(b.map(0x1000, 0, 4096, MapAttributes{}));
  EXPECT_EQ(b.map(0, 0, 2 * kMiB, MapAttributes{}).error().err, EEXIST);       // a block over a table
  EXPECT_EQ(b.map(0x1000, 0, 4096, MapAttributes{}).error().err, EEXIST);
  EXPECT_EQ(b.map(0x800, 0, 4096, MapAttributes{}).error().err, EINVAL);
  EXPECT_EQ(b.map(0x2000, 0x800, 4096, MapAttributes{}).error().err, EINVAL);
  EXPECT_EQ(b.map(0x2000, 0, 0, MapAttributes{}).error().err, EINVAL);
  EXPECT_EQ(b.map((1ULL << 39) - 4096, 0, 8192, MapAttributes{}).error().err, ERANGE);
  EXPECT_EQ(b.map(0x2000, 1ULL << 48, 4096, MapAttributes{}).error().err, ERANGE);  // 4KB cannot hold it
  EXPECT_EQ(b.map(0x2000, 0, 4096, MapAttributes{.read = false}).error().err, EINVAL);
}

// The descriptors carry the attributes asked for (Arm ARM D8.3.2 stage 1 AP/UXN/PXN/AF/DBM; D8.3.3 stage 2
// S2AP/XN/MemAttr).
TEST(TableBuilderMap, DescriptorAttributes) {
  TableMemory tm;
  TableBuilder s1(tm.mem, tm.pool, Stage::s1, Granule::k4K, 48);
  ASSERT_TRUE(s1.map(0, 0x1000, 4096,
                     MapAttributes{.write = false, .execute = true, .unprivileged = false, .access_flag = false,
                                   .dbm = true}));
  const std::uint64_t d1 = s1.leaf(0).value().descriptor;
  EXPECT_TRUE(Descriptor::Valid.extract(d1) && Descriptor::Table.extract(d1));
  EXPECT_TRUE(Descriptor::AP2.extract(d1));
  EXPECT_FALSE(Descriptor::AP1.extract(d1));
  EXPECT_FALSE(Descriptor::UXN.extract(d1) || Descriptor::PXN.extract(d1));
  EXPECT_FALSE(Descriptor::AF.extract(d1));
  EXPECT_TRUE(Descriptor::DBM.extract(d1));
  EXPECT_EQ(Descriptor::output_address(d1, 12, false), 0x1000U);

  TableBuilder s2(tm.mem, tm.pool, Stage::s2, Granule::k4K, 48);
  ASSERT_TRUE(s2.map(0, 0x2000, 4096, MapAttributes{.read = true, .write = false}));
  const std::uint64_t d2 = s2.leaf(0).value().descriptor;
  EXPECT_TRUE(Descriptor::S2AP_R.extract(d2));
  EXPECT_FALSE(Descriptor::S2AP_W.extract(d2));
  EXPECT_EQ(Descriptor::S2XN.extract(d2), 2U);
  EXPECT_EQ(Descriptor::MemAttr.extract(d2), 0xfU);
  EXPECT_TRUE(Descriptor::AF.extract(d2));
}

// With the 64KB granule, output addresses up to 52 bits go in bits [15:12] (FEAT_LPA layout).
TEST(TableBuilderMap, FiftyTwoBitOutputWith64K) {
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, Stage::s1, Granule::k64K, 48);
  ASSERT_TRUE(b.map(0x10000, 0xa'bcde'f123'0000ULL, 0x10000, MapAttributes{}));
  const std::uint64_t d = b.leaf(0x10000).value().descriptor;
  EXPECT_EQ(Descriptor::OA_51_48.extract(d), 0xaU);
  EXPECT_EQ(Descriptor::output_address(d, 16, true), 0xa'bcde'f123'0000ULL);
}

// ---- unmap ----

// Unmapping part of a block splits it into the next level with the same output and attributes; only the
// requested part goes.
TEST(TableBuilderUnmap, PartialUnmapSplitsTheBlock) {
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, Stage::s1, Granule::k4K, 48);
  const MapAttributes attrs{.write = false, .execute = true, .dbm = true};
  ASSERT_TRUE(b.map(1 * kGiB, 3 * kGiB, 1 * kGiB, attrs));
  const std::uint64_t block = b.leaf(1 * kGiB).value().descriptor;
  ASSERT_TRUE(b.unmap(1 * kGiB + 0x20'3000, 0x1000));
  EXPECT_EQ(b.leaf(1 * kGiB + 0x20'3000).error().err, ENOENT);
  auto page = b.leaf(1 * kGiB + 0x20'4000);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->level, 3);
  EXPECT_EQ(Descriptor::output_address(page->descriptor, 12, false), 3 * kGiB + 0x20'4000);
  auto l2 = b.leaf(1 * kGiB + 0x40'0000);
  ASSERT_TRUE(l2);
  EXPECT_EQ(l2->level, 2);
  // Same attributes as the block: everything but the address and the descriptor type.
  const std::uint64_t attr_mask = ~(Descriptor::Address.mask | Descriptor::Table.mask);
  EXPECT_EQ(page->descriptor & attr_mask, block & attr_mask);
  EXPECT_EQ(l2->descriptor & attr_mask, block & attr_mask);

  Walker w(tm.mem);
  const Stage1Params p = s1_of(cd_for(b));
  auto t = w.stage1(p, 1 * kGiB + 0x3fff'f010, kRead);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->output, 3 * kGiB + 0x3fff'f010);
  auto split_page = w.stage1(p, 1 * kGiB + 0x20'4010, kRead);
  ASSERT_TRUE(split_page);
  EXPECT_EQ(split_page->output, 3 * kGiB + 0x20'4010);
  EXPECT_EQ(split_page->level, 3);
  EXPECT_FALSE(w.stage1(p, 1 * kGiB + 0x20'3000, kRead));
}

TEST(TableBuilderUnmap, WholeRangesAndTablesGo) {
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, Stage::s2, Granule::k16K, 40);
  ASSERT_TRUE(b.map(0, 0, 64 * kMiB, MapAttributes{}));
  ASSERT_TRUE(b.map(64 * kMiB, 0, 16384, MapAttributes{}));
  ASSERT_TRUE(b.unmap(0, 64 * kMiB + 32 * kMiB));
  EXPECT_EQ(b.leaf(0).error().err, ENOENT);
  EXPECT_EQ(b.leaf(64 * kMiB).error().err, ENOENT);
  // What was unmapped can be mapped again.
  EXPECT_TRUE(b.map(0, 0, 32 * kMiB, MapAttributes{}));
  EXPECT_TRUE(b.unmap(1ULL << 39, 16384));  // nothing there: nothing to do
  EXPECT_EQ(b.unmap(0, 100).error().err, EINVAL);
}

TEST(TableBuilderLeaf, WriteLeafRewritesTheDescriptor) {
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, Stage::s1, Granule::k4K, 48);
  EXPECT_EQ(b.leaf(0).error().err, ENOENT);
  ASSERT_TRUE(b.map(0x5000, 0x9000, 4096, MapAttributes{}));
  auto l = b.leaf(0x5000);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->descriptor_address, entry_at(tm.mem, b, 0x5000, 3));
  ASSERT_TRUE(b.write_leaf(0x5000, Descriptor::AP2.insert(l->descriptor, true)));
  EXPECT_TRUE(Descriptor::AP2.extract(read_desc(tm.mem, l->descriptor_address)));
  EXPECT_EQ(b.write_leaf(0x6000, 0).error().err, ENOENT);
}

// ---- builder and walker agree ----

// Random mappings at every granule and stage: every mapped page translates to where it was mapped, every
// hole faults.
TEST(TableBuilderWalker, RandomMappingsTranslateBack) {
  std::mt19937_64 rng(12345);
  for (Granule g : {Granule::k4K, Granule::k16K, Granule::k64K}) {
    for (Stage stage : {Stage::s1, Stage::s2}) {
      TableMemory tm;
      TableBuilder b(tm.mem, tm.pool, stage, g, 40);
      const std::uint64_t page = granule_size(g);
      std::map<std::uint64_t, std::uint64_t> mapped;  // input page -> output page
      for (int i = 0; i < 60; ++i) {
        const std::uint64_t pages = 1 + rng() % 8;
        const std::uint64_t ia = (rng() % ((1ULL << 40) / page - pages)) * page;
        const std::uint64_t oa = (rng() % ((1ULL << 40) / page - pages)) * page;
        bool free = true;
        for (std::uint64_t k = 0; k < pages; ++k) free = free && !mapped.contains(ia + k * page);
        if (!free) continue;
        ASSERT_TRUE(b.map(ia, oa, pages * page, MapAttributes{}));
        for (std::uint64_t k = 0; k < pages; ++k) mapped[ia + k * page] = oa + k * page;
      }
      Walker w(tm.mem);
      const Stage1Params p1 = stage == Stage::s1 ? s1_of(cd_for(b)) : Stage1Params{};
      const Stage2Params p2 = stage == Stage::s2 ? s2_of(ste_for(b)) : Stage2Params{};
      auto walk = [&](std::uint64_t ia) {
        return stage == Stage::s1 ? w.stage1(p1, ia, kRead) : w.stage2(p2, ia, kRead);
      };
      for (auto [ia, oa] : mapped) {
        auto t = walk(ia + 8);
        ASSERT_TRUE(t);
        EXPECT_EQ(t->output, oa + 8);
        if (!mapped.contains(ia + page)) {
          EXPECT_FALSE(walk(ia + page));
        }
      }
    }
  }
}

}  // namespace
}  // namespace vsmmu::smmu
