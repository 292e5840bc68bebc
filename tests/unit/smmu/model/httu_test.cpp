// Hardware translation-table updates on DMA (IHI 0070 3.13): with IDR0.HTTU and the STE's S2HA/S2HD (or the
// CD's HA/HD), the SMMU sets the access flag on use and marks DBM pages dirty on write, and only then.
#include "tests/unit/smmu/model/model_fixture.hpp"

namespace vsmmu::smmu::model::test {
namespace {

constexpr std::uint32_t kSid = 0x44;
constexpr std::uint64_t kVa = 0x1234'5000'0000ULL;
constexpr std::uint64_t kPage = 4096;

class HttuTest : public ModelTest {
 protected:
  void SetUp() override { start(config()); }
  virtual ModelConfig config() const { return ModelConfig::reference(); }

  // A nested stream whose stage-2 STE has the given HTTU controls; the guest's data page is stage-2
  // writable-clean (DBM = 1, S2AP write = 0), the rest of guest RAM plainly writable.
  void nested_with(bool s2ha, bool s2hd) {
    ASSERT_TRUE(s2.map(kGuestIpa, kGuestPa, 16 * kMiB, MapAttributes{.allow_blocks = false}));
    ASSERT_TRUE(s2.map(kGuestData, kGuestDataPa, kPage, MapAttributes{.write = false, .dbm = true}));
    ASSERT_TRUE(s1.map(kVa, kGuestData, kPage, MapAttributes{}));
    auto table = guest_pool.allocate(64, 64);
    ASSERT_TRUE(table);
    ASSERT_TRUE(guest.write_record(*table, cd(s1)));
    ASSERT_TRUE(driver->write_ste(kSid, s1_ste(*table, true).set(Ste::S2HA, s2ha).set(Ste::S2HD, s2hd)));
    ASSERT_TRUE(driver->issue(cmd_cfgi_ste(kSid)));
  }
  Descriptor s2_leaf() const { return Descriptor{{s2.leaf(kGuestData).value().descriptor}}; }
  bool s2_dirty() const { return s2_leaf().get(Descriptor::S2AP_W); }
};

// IHI 0070 3.13.3: a write through a writable-clean stage-2 page marks it dirty (S2AP[1] = 1); a read
// does not.
TEST_F(HttuTest, StageTwoPageBecomesDirtyOnWriteOnly) {
  nested_with(true, true);
  DmaMaster dev(*smmu, kSid);
  ASSERT_TRUE(dev.read64(kVa));
  EXPECT_FALSE(s2_dirty());
  ASSERT_TRUE(dev.write64(kVa, 0x99));  // the cached read-only entry is walked again and updated
  EXPECT_TRUE(s2_dirty());
  EXPECT_EQ(mem.read64(kGuestDataPa).value(), 0x99U);
}

// Without S2HD the page stays clean and the write is a stage-2 permission fault (IHI 0070 5.2 S2HD).
TEST_F(HttuTest, WithoutS2hdAWriteToACleanPageFaults) {
  nested_with(true, false);
  auto r = DmaMaster(*smmu, kSid).write64(kVa, 1);
  ASSERT_FALSE(r);
  ASSERT_TRUE(r.error().event);
  EXPECT_EQ(r.error().event->get(Event::ID), EventId::F_PERMISSION);
  EXPECT_TRUE(r.error().event->get(Event::S2));
  EXPECT_EQ(r.error().event->get(Event::IPA), kGuestData);
  EXPECT_FALSE(s2_dirty());
  EXPECT_EQ(mem.read64(kGuestDataPa).value(), 0U);
}

class NoHttuSmmu : public HttuTest {
  ModelConfig config() const override {
    ModelConfig c = ModelConfig::reference();
    c.idr0.set(Idr0::HTTU, Httu::none);
    return c;
  }
};

// An SMMU without HTTU never updates descriptors: the DBM page stays clean and the write faults.
TEST_F(NoHttuSmmu, DirtyStateIsNeverSet) {
  nested_with(false, false);
  EXPECT_FALSE(DmaMaster(*smmu, kSid).write64(kVa, 1));
  EXPECT_FALSE(s2_dirty());
}

// Dirty state is recorded once: software that cleans a page without invalidating the TLB loses the next
// write's dirtiness to the cached writable entry; after TLBI_S12_VMALL it is marked again. This is why a
// dirty-log harvest must invalidate (IHI 0070 3.13.5).
TEST_F(HttuTest, CleaningWithoutInvalidationLosesDirtiness) {
  nested_with(true, true);
  DmaMaster dev(*smmu, kSid);
  ASSERT_TRUE(dev.write64(kVa, 1));
  ASSERT_TRUE(s2_dirty());
  ASSERT_TRUE(s2.write_leaf(kGuestData, s2_leaf().set(Descriptor::S2AP_W, false).dw[0]));  // clean
  ASSERT_TRUE(dev.write64(kVa, 2));
  EXPECT_FALSE(s2_dirty());
  ASSERT_TRUE(driver->issue(cmd_tlbi_s12_vmall(kVmid)));
  ASSERT_TRUE(dev.write64(kVa, 3));
  EXPECT_TRUE(s2_dirty());
}

// Stage 1 with CD.HA/HD: the access flag is set on first use and a writable-clean page (AP[2] = 1, DBM)
// becomes writable-dirty (AP[2] = 0) on a write (IHI 0070 3.13.2, 5.4 HA/HD).
TEST_F(HttuTest, StageOneAccessFlagAndDirtyState) {
  ASSERT_TRUE(s2.map(kGuestIpa, kGuestPa, kGuestSize, MapAttributes{.allow_blocks = false}));
  ASSERT_TRUE(s1.map(kVa, kGuestData, kPage, MapAttributes{.write = false, .access_flag = false, .dbm = true}));
  auto table = guest_pool.allocate(64, 64);
  ASSERT_TRUE(table);
  ASSERT_TRUE(guest.write_record(*table, cd(s1).set(Cd::HA, true).set(Cd::HD, true)));
  ASSERT_TRUE(driver->write_ste(kSid, s1_ste(*table, true)));
  const auto leaf = [&] { return Descriptor{{s1.leaf(kVa).value().descriptor}}; };
  DmaMaster dev(*smmu, kSid);
  ASSERT_TRUE(dev.read64(kVa));
  EXPECT_TRUE(leaf().get(Descriptor::AF));
  EXPECT_TRUE(leaf().get(Descriptor::AP2));  // still clean
  ASSERT_TRUE(dev.write64(kVa, 7));
  EXPECT_FALSE(leaf().get(Descriptor::AP2));  // dirty
}

// Without CD.HA an access-flag-clear page is an access fault and stays as it was.
TEST_F(HttuTest, StageOneAccessFlagFaultWithoutHa) {
  ASSERT_TRUE(s2.map(kGuestIpa, kGuestPa, kGuestSize, MapAttributes{.allow_blocks = false}));
  ASSERT_TRUE(s1.map(kVa, kGuestData, kPage, MapAttributes{.access_flag = false}));
  auto table = guest_pool.allocate(64, 64);
  ASSERT_TRUE(table);
  ASSERT_TRUE(guest.write_record(*table, cd(s1)));
  ASSERT_TRUE(driver->write_ste(kSid, s1_ste(*table, true)));
  auto r = DmaMaster(*smmu, kSid).read64(kVa);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().event->get(Event::ID), EventId::F_ACCESS);
  EXPECT_FALSE(Descriptor{{s1.leaf(kVa).value().descriptor}}.get(Descriptor::AF));
}

}  // namespace
}  // namespace vsmmu::smmu::model::test
