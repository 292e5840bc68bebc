// Stage-2 dirty tracking on the simulated host (kernel profile "nested-dirty": NEST_PARENT|DIRTY_TRACKING).
// A device's writes set S2AP[1] on DBM leaves through the SMMU model's HTTU; IOMMU_HWPT_GET_DIRTY_BITMAP
// reports them one bit per page_size page from the bitmap pointer, a block as all of its pages, and makes the
// leaves clean again unless NO_CLEAR (iommufd_hwpt_get_dirty_bitmap, iova_bitmap, io-pgtable-arm
// read_and_clear_dirty; iommufd selftest "dirty_tracking": bitmap sizes incl. huge mappings, unaligned bitmap
// pointers +PAGE_SIZE and +0xff1, NO_CLEAR).
#include <bit>

#include "tests/sim/host/sim_fixture.hpp"

namespace vsmmu::host::sim::test {
namespace {

constexpr std::uint64_t kBlocks = 0x4000'0000;       // 4 MiB of 2 MiB blocks (IOVA and memory 2 MiB aligned)
constexpr std::uint64_t kBlocksLen = 4ULL << 20;
constexpr std::uint64_t kPages = 0x5000'1000;        // 256 KiB of 4 KiB pages (no 2 MiB block fits)
constexpr std::uint64_t kPagesLen = 256ULL << 10;

class SimDirty : public ::testing::Test {
 protected:
  void SetUp() override { build("nested-dirty", uapi::kHwptAllocNestParent | uapi::kHwptAllocDirtyTracking); }
  void build(const char* kernel, std::uint32_t flags) {
    host = make_host(kernel);
    ASSERT_TRUE(host);
    dev = must(host->bind_device("nic0"));
    ioas = must(host->ioas_alloc());
    ASSERT_TRUE(host->ioas_map_file(ioas, ram.fd.get(), 0, kBlocksLen, kBlocks, kMapRW));
    ASSERT_TRUE(host->ioas_map_file(ioas, ram.fd.get(), kBlocksLen, kPagesLen, kPages, kMapRW));
    hwpt = must(host->hwpt_alloc(paging_request(dev, ioas, flags)));
    ASSERT_TRUE(host->attach(dev, hwpt));
    ASSERT_TRUE(host->set_dirty_tracking(hwpt, true));  // a clean start: mapped writable leaves begin dirty
  }
  void write(std::uint64_t iova) {
    const std::array<std::byte, 8> data{std::byte{1}};
    ASSERT_TRUE(must(host->dma_write("nic0.dma", iova, data)).ok()) << std::hex << iova;
  }
  // The set bits of a bitmap of `bits` bits.
  static std::vector<std::uint64_t> set_bits(const std::byte* bitmap, std::uint64_t bits) {
    std::vector<std::uint64_t> out;
    for (std::uint64_t i = 0; i < bits; ++i)
      if (std::to_integer<unsigned>(bitmap[i / 8]) & (1U << (i % 8))) out.push_back(i);
    return out;
  }
  std::vector<std::uint64_t> dirty(std::uint64_t iova, std::uint64_t len, std::uint64_t page = 4096,
                                   std::uint32_t flags = 0) {
    std::vector<std::byte> bitmap((len / page + 7) / 8);
    auto r = host->get_dirty_bitmap(hwpt, iova, len, page, bitmap.data(), flags);
    EXPECT_TRUE(r) << r.error();
    return set_bits(bitmap.data(), len / page);
  }

  GuestRam ram{8ULL << 20};
  std::unique_ptr<SimHost> host;
  DeviceId dev = 0;
  ObjectId ioas = 0, hwpt = 0;
};

std::vector<std::uint64_t> range(std::uint64_t first, std::uint64_t n) {
  std::vector<std::uint64_t> v(n);
  for (std::uint64_t i = 0; i < n; ++i) v[i] = first + i;
  return v;
}

TEST_F(SimDirty, FourKPagesReportExactlyWhatWasWritten) {
  EXPECT_TRUE(dirty(kPages, kPagesLen).empty());
  write(kPages + 3 * 0x1000 + 0x10);
  write(kPages + 10 * 0x1000);
  std::array<std::byte, 8> sink{};
  ASSERT_TRUE(must(host->dma_read("nic0.dma", kPages + 20 * 0x1000, sink)).ok());  // a read dirties nothing
  EXPECT_EQ(dirty(kPages, kPagesLen), (std::vector<std::uint64_t>{3, 10}));
  EXPECT_TRUE(dirty(kPages, kPagesLen).empty()) << "read-and-clear: the bits went with the first read";
  write(kPages + 3 * 0x1000);
  EXPECT_EQ(dirty(kPages, kPagesLen), (std::vector<std::uint64_t>{3})) << "cleared leaves get dirty again";
}

TEST_F(SimDirty, A2MBlockDirtiesAllItsPages) {
  write(kBlocks + 0x20'0000 + 0x1234);  // inside the second block
  EXPECT_EQ(dirty(kBlocks, kBlocksLen), range(512, 512));
  write(kBlocks + 0x20'0000);
  EXPECT_EQ(dirty(kBlocks, kBlocksLen, 2ULL << 20), (std::vector<std::uint64_t>{1})) << "page_size 2 MiB";
  write(kBlocks + 0x20'0000);
  // Asking for half a block still reports (and clears) the whole block: the bits are per leaf.
  EXPECT_EQ(dirty(kBlocks + 0x30'0000, 0x10'0000), range(0, 256));
  EXPECT_TRUE(dirty(kBlocks, kBlocksLen).empty());
}

TEST_F(SimDirty, NoClearLeavesTheBitsSet) {
  write(kPages + 5 * 0x1000);
  const std::vector<std::uint64_t> want{5};
  EXPECT_EQ(dirty(kPages, kPagesLen, 4096, uapi::kDirtyBitmapNoClear), want);
  EXPECT_EQ(dirty(kPages, kPagesLen, 4096, uapi::kDirtyBitmapNoClear), want);
  EXPECT_EQ(dirty(kPages, kPagesLen), want);
  EXPECT_TRUE(dirty(kPages, kPagesLen).empty());
}

// Unaligned bitmap pointers (+PAGE_SIZE, +0xff1): bit i is bit i%8 of byte i/8 from the pointer; nothing
// before or after it is touched; the kernel only sets bits.
TEST_F(SimDirty, UnalignedBitmapPointers) {
  for (std::size_t offset : {std::size_t{4096}, std::size_t{0xff1}}) {
    write(kBlocks + 0x1000);  // first block: bits 0..511
    write(kPages + 7 * 0x1000);
    std::vector<std::byte> buffer(3 * 4096, std::byte{0});
    std::byte* bitmap = buffer.data() + offset;
    bitmap[100] = std::byte{0x80};  // a bit the caller set stays set (bit 807)
    ASSERT_TRUE(host->get_dirty_bitmap(hwpt, kBlocks, kBlocksLen, 4096, bitmap, 0));
    auto bits = set_bits(bitmap, 1024);
    auto want = range(0, 512);
    want.push_back(100 * 8 + 7);
    EXPECT_EQ(bits, want) << "offset " << offset;
    for (std::size_t i = 0; i < offset; ++i) ASSERT_EQ(buffer[i], std::byte{0}) << "byte before the bitmap, offset " << offset;
    for (std::size_t i = offset + 128; i < buffer.size(); ++i) ASSERT_EQ(buffer[i], std::byte{0}) << "byte after";
    std::fill(buffer.begin(), buffer.end(), std::byte{0});
    ASSERT_TRUE(host->get_dirty_bitmap(hwpt, kPages, kPagesLen, 4096, bitmap, 0));
    EXPECT_EQ(set_bits(bitmap, kPagesLen / 4096), (std::vector<std::uint64_t>{7}));
  }
}

// iommufd_check_iova_range and friends: flags EOPNOTSUPP, not a paging HWPT ENOENT, misaligned or zero page
// size EINVAL, a range with an unmapped hole EINVAL, a HWPT without DIRTY_TRACKING EOPNOTSUPP.
TEST_F(SimDirty, BitmapErrors) {
  std::vector<std::byte> bm(4096);
  EXPECT_EQ(err_of(host->get_dirty_bitmap(hwpt, kPages, 0x1000, 4096, bm.data(), 2)), EOPNOTSUPP);
  EXPECT_EQ(err_of(host->get_dirty_bitmap(ioas, kPages, 0x1000, 4096, bm.data(), 0)), ENOENT);
  EXPECT_EQ(err_of(host->get_dirty_bitmap(hwpt, kPages + 0x800, 0x1000, 4096, bm.data(), 0)), EINVAL);
  EXPECT_EQ(err_of(host->get_dirty_bitmap(hwpt, kPages, 0x1000, 0, bm.data(), 0)), EINVAL);
  EXPECT_EQ(err_of(host->get_dirty_bitmap(hwpt, kPages, 0x1000, 0x2000, bm.data(), 0)), EINVAL);
  EXPECT_EQ(err_of(host->get_dirty_bitmap(hwpt, kPages, kPagesLen + 0x1000, 4096, bm.data(), 0)), EINVAL);
  EXPECT_EQ(err_of(host->get_dirty_bitmap(hwpt, ~0ULL - 0xfff, 0x2000, 4096, bm.data(), 0)), EOVERFLOW);
  EXPECT_EQ(err_of(host->get_dirty_bitmap(hwpt, kPages, 0, 4096, bm.data(), 0)), EOVERFLOW) << "length 0";
  const auto plain = must(host->hwpt_alloc(paging_request(dev, ioas, 0)));
  EXPECT_EQ(err_of(host->get_dirty_bitmap(plain, kPages, 0x1000, 4096, bm.data(), 0)), EOPNOTSUPP);
  EXPECT_EQ(err_of(host->set_dirty_tracking(plain, true)), EOPNOTSUPP);
  EXPECT_TRUE(host->set_dirty_tracking(hwpt, false));
}

// Upstream arm-smmu-v3 tracks dirty pages on HWPTs that are not nest parents (DIRTY_TRACKING alone).
class SimDirtyUpstream : public SimDirty {
  void SetUp() override { build("upstream", uapi::kHwptAllocDirtyTracking); }
};

TEST_F(SimDirtyUpstream, PlainDirtyTrackingHwpt) {
  write(kPages + 0x1000);
  EXPECT_EQ(dirty(kPages, kPagesLen), (std::vector<std::uint64_t>{1}));
}

// IOMMU_OPTION_HUGE_PAGES off (iopt_disable_large_pages): the same 2 MiB-aligned memory is mapped with 4 KiB
// leaves, so a write dirties one page; turning it off once paging HWPTs hold mappings is EINVAL.
TEST(SimDirtyHugePages, OffGivesPageLeaves) {
  auto host = make_host("nested-dirty");
  ASSERT_TRUE(host);
  GuestRam ram(4 << 20);
  const auto dev = must(host->bind_device("nic0"));
  const auto ioas = must(host->ioas_alloc());
  EXPECT_TRUE(must(host->ioas_huge_pages(ioas, std::nullopt)));
  EXPECT_FALSE(must(host->ioas_huge_pages(ioas, false)));
  EXPECT_EQ(err_of(host->ioas_huge_pages(99, false)), ENOENT);
  const auto hwpt = must(host->hwpt_alloc(paging_request(dev, ioas, uapi::kHwptAllocNestParent | uapi::kHwptAllocDirtyTracking)));
  ASSERT_TRUE(host->ioas_map_file(ioas, ram.fd.get(), 0, ram.size, kBlocks, kMapRW));
  EXPECT_EQ(err_of(host->ioas_huge_pages(ioas, true)), 0) << "turning large pages on is always allowed";
  EXPECT_EQ(err_of(host->ioas_huge_pages(ioas, false)), EINVAL) << "mappings exist in a paging HWPT";
  ASSERT_TRUE(host->attach(dev, hwpt));
  ASSERT_TRUE(host->set_dirty_tracking(hwpt, true));
  const std::array<std::byte, 8> data{std::byte{1}};
  ASSERT_TRUE(must(host->dma_write("nic0.dma", kBlocks + 0x20'3000, data)).ok());
  std::vector<std::byte> bm(ram.size / 4096 / 8);
  ASSERT_TRUE(host->get_dirty_bitmap(hwpt, kBlocks, ram.size, 4096, bm.data(), 0));
  std::vector<std::uint64_t> bits;
  for (std::uint64_t i = 0; i < ram.size / 4096; ++i)
    if (std::to_integer<unsigned>(bm[i / 8]) & (1U << (i % 8))) bits.push_back(i);
  EXPECT_EQ(bits, (std::vector<std::uint64_t>{0x203}));
}

// Through nesting: a guest DMA (stage 1 maps VA -> IPA) dirties the IPA's page of the nest parent, which is
// what live migration copies.
TEST(SimDirtyNested, GuestDmaDirtiesTheParentsPage) {
  auto host = make_host("nested-dirty");
  ASSERT_TRUE(host);
  GuestRam ram(32 << 20);
  GuestStage1 guest(ram);
  constexpr std::uint64_t kVa = 0x8000'0000;
  guest.map(kVa, GuestRam::kBase + 0x30'0000, 0x2000);
  NestedSetup s;
  const auto vste = guest.vste();
  build_nested(*host, ram, vste, s, "nic0", 16, uapi::kHwptAllocDirtyTracking);
  ASSERT_TRUE(s.attachment);
  ASSERT_TRUE(host->set_dirty_tracking(s.parent.id(), true));
  const std::array<std::byte, 8> data{std::byte{3}};
  ASSERT_TRUE(must(host->dma_write("nic0.dma", kVa + 0x1008, data)).ok());
  std::vector<std::byte> bm(ram.size / 4096 / 8);
  ASSERT_TRUE(host->get_dirty_bitmap(s.parent.id(), GuestRam::kBase, ram.size, 4096, bm.data(), 0));
  std::vector<std::uint64_t> bits;
  for (std::uint64_t i = 0; i < ram.size / 4096; ++i)
    if (std::to_integer<unsigned>(bm[i / 8]) & (1U << (i % 8))) bits.push_back(i);
  // The parent maps guest RAM with 2 MiB blocks: the block holding IPA +0x301000 is reported whole.
  EXPECT_EQ(bits, range(0x200, 0x200));
}

}  // namespace
}  // namespace vsmmu::host::sim::test
