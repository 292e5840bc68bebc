// Simulated physical memory: whole-or-nothing accesses and the aligned 64-bit CAS that HTTU needs.
#include <gtest/gtest.h>

#include "smmu/cd.hpp"
#include "smmu/memory.hpp"
#include "smmu/ste.hpp"

namespace vsmmu::smmu {
namespace {

TEST(RegionMemory, AccessSpanningAdjacentRegionsSucceeds) {
  RegionMemory mem;
  ASSERT_TRUE(mem.add_ram(0x1000, 0x1000));
  ASSERT_TRUE(mem.add_ram(0x2000, 0x1000));
  ASSERT_TRUE(mem.write64(0x1ffc, 0x1122334455667788ULL));
  EXPECT_EQ(mem.read64(0x1ffc).value(), 0x1122334455667788ULL);
  EXPECT_EQ(mem.read32(0x2000).value(), 0x11223344U);
}

TEST(RegionMemory, AccessTouchingAHoleMovesNothing) {
  RegionMemory mem;
  ASSERT_TRUE(mem.add_ram(0x1000, 0x1000));
  auto w = mem.write64(0x1ffc, ~0ULL);  // last 4 bytes fall outside
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().address, 0x1ffcU);
  EXPECT_EQ(mem.read32(0x1ffc).value(), 0U);
}

TEST(RegionMemory, OverlappingRegionsAreRefused) {
  RegionMemory mem;
  ASSERT_TRUE(mem.add_ram(0x1000, 0x2000));
  auto r = mem.add_ram(0x2000, 0x1000);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EEXIST);
  EXPECT_FALSE(mem.add_ram(0x0, 0x1001));
  EXPECT_TRUE(mem.add_ram(0x0, 0x1000));
}

TEST(RegionMemory, BorrowedMemoryIsSharedWithItsOwner) {
  std::array<std::byte, 4096> backing{};
  RegionMemory mem;
  ASSERT_TRUE(mem.add_borrowed(0x40000000, backing));
  ASSERT_TRUE(mem.write32(0x40000010, 0xdeadbeef));
  EXPECT_EQ(backing[0x10], std::byte{0xef});
}

TEST(RegionMemory, CompareExchangeNeedsAlignmentAndMatchingValue) {
  RegionMemory mem;
  ASSERT_TRUE(mem.add_ram(0, 0x1000));
  ASSERT_TRUE(mem.write64(8, 5));
  EXPECT_FALSE(mem.compare_exchange64(8, 4, 6).value());
  EXPECT_TRUE(mem.compare_exchange64(8, 5, 6).value());
  EXPECT_EQ(mem.read64(8).value(), 6U);
  EXPECT_FALSE(mem.compare_exchange64(12, 0, 1));  // misaligned: abort
}

TEST(RegionMemory, RecordsRoundTripLittleEndian) {
  RegionMemory mem;
  ASSERT_TRUE(mem.add_ram(0, 0x1000));
  Ste ste;
  ste.set(Ste::V, true).set(Ste::Config, StreamConfig::nested).set(Ste::S2VMID, 7);
  ASSERT_TRUE(mem.write_record(0x40, ste));
  EXPECT_EQ(mem.read64(0x40).value(), 0xfU);  // V | Config=0b111 (IHI 0070 5.2)
  EXPECT_EQ(mem.read_record<Ste>(0x40).value(), ste);
}

}  // namespace
}  // namespace vsmmu::smmu
