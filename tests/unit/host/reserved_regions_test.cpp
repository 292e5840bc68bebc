// The reserved_regions file of an iommu group, as drivers/iommu/iommu.c iommu_group_show_resv_regions writes
// it ("0x%016llx 0x%016llx %s\n": start, inclusive end, type), and the MSI window a nested guest must map 1:1.
#include "host/reserved_regions.hpp"

#include <gtest/gtest.h>

namespace vsmmu::host {
namespace {

TEST(ReservedRegions, AnArmSmmuV3GroupListsItsSoftwareMsiWindow) {
  auto r = parse_reserved_regions("0x0000000008000000 0x00000000080fffff msi\n", "group 7");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 1U);
  EXPECT_EQ((*r)[0], (ReservedRegion{IovaRange{0x8000000, 0x80fffff}, ReservedRegionType::msi}));
  EXPECT_EQ(msi_window(*r), kArmSmmuV3SwMsi);
  EXPECT_EQ(kArmSmmuV3SwMsi.size(), 0x100000U);  // MSI_IOVA_LENGTH
}

TEST(ReservedRegions, EveryTypeTheKernelNamesIsRead) {
  // An IORT RMR (direct), a firmware carve-out (reserved), the SW MSI window: as the kernel sorts them.
  auto r = parse_reserved_regions("0x0000000000001000 0x0000000000001fff direct\n"
                                  "0x0000000000002000 0x0000000000002fff direct-relaxable\n"
                                  "0x0000000008000000 0x00000000080fffff msi\n"
                                  "0x00000000fee00000 0x00000000feefffff reserved\n",
                                  "g");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 4U);
  EXPECT_EQ((*r)[0].type, ReservedRegionType::direct);
  EXPECT_EQ((*r)[1].type, ReservedRegionType::direct_relaxable);
  EXPECT_EQ((*r)[3].type, ReservedRegionType::reserved);
  EXPECT_EQ(msi_window(*r), kArmSmmuV3SwMsi);
}

TEST(ReservedRegions, AGroupWithoutMsiRegionHasNoWindow) {
  auto r = parse_reserved_regions("", "empty");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->empty());
  EXPECT_FALSE(msi_window(*r));
  auto d = parse_reserved_regions("0x0000000000001000 0x0000000000001fff direct\n", "g");
  ASSERT_TRUE(d);
  EXPECT_FALSE(msi_window(*d));
}

TEST(ReservedRegions, MalformedLinesAreRefusedWithTheLineAndWhy) {
  struct Case {
    const char* text;
    const char* says;
  };
  const Case cases[] = {
      {"0x0000000008000000 0x00000000080fffff\n", "2 fields instead of 3"},
      {"0x0000000008000000 0x00000000080fffff msi extra\n", "4 fields instead of 3"},
      {"8000000 0x00000000080fffff msi\n", "the start '8000000'"},
      {"0x0000000008000000 0x80fffffz msi\n", "the end '0x80fffffz'"},
      {"0x 0x00000000080fffff msi\n", "the start '0x'"},
      {"0x00000000000000008000000 0x00000000080fffff msi\n", "64-bit hex number"},
      {"0x0000000008000000 0x0000000007ffffff msi\n", "below the start"},
      {"0x0000000008000000 0x00000000080fffff sw-msi\n", "unknown type 'sw-msi'"},
  };
  for (const auto& c : cases) {
    const std::string text = std::string("0x0000000000001000 0x0000000000001fff direct\n") + c.text;
    auto r = parse_reserved_regions(text, "/sys/kernel/iommu_groups/3/reserved_regions");
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.error().err, EINVAL);
    EXPECT_NE(r.error().message.find("/sys/kernel/iommu_groups/3/reserved_regions line 2"), std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find(c.says), std::string::npos) << r.error().message;
  }
}

TEST(ReservedRegions, RangesOverlapByTheirInclusiveEnds) {
  const IovaRange w = kArmSmmuV3SwMsi;
  EXPECT_TRUE(w.overlaps(0x80ff000, 0x1000));    // its last page
  EXPECT_FALSE(w.overlaps(0x8100000, 0x1000));   // just above
  EXPECT_FALSE(w.overlaps(0x7fff000, 0x1000));   // just below
  EXPECT_TRUE(w.overlaps(0x0, 0x40000000));      // RAM that covers it
  EXPECT_FALSE(w.overlaps(0x8000000, 0));        // nothing
  EXPECT_EQ(to_string(w), "0x8000000-0x80fffff");
}

}  // namespace
}  // namespace vsmmu::host
