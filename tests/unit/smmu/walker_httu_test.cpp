// Hardware translation-table updates (IHI 0070 3.13 HTTU; Arm ARM D8.4.5-D8.4.6, AArch64.SetAccessFlag /
// SetDirtyState / S1DirectBasePermissions / S2DirectBasePermissions) and nested walks whose stage-1 table
// accesses go through stage 2 (IHI 0070 3.4, 7.3 CLASS=TT, TTRnW).
#include <gtest/gtest.h>

#include <functional>

#include "tests/unit/smmu/walk_fixture.hpp"

namespace vsmmu::smmu {
namespace {

using namespace test;

// Stage-1 HTTU configuration: CD.HA, CD.HD.
Stage1Params s1_httu(const TableBuilder& b, bool ha, bool hd) {
  Cd cd = cd_for(b);
  cd.set(Cd::HA, ha).set(Cd::HD, hd);
  return s1_of(cd);
}
Stage2Params s2_httu(const TableBuilder& b, bool ha, bool hd) {
  Ste ste = ste_for(b);
  ste.set(Ste::S2HA, ha).set(Ste::S2HD, hd);
  return s2_of(ste);
}

// ---- Access flag ----

// IHI 0070 3.13.1: with HA, an access to a page whose AF is 0 sets AF in the descriptor instead of faulting.
TEST(HttuAccessFlag, HaSetsAfAtBothStages) {
  OneMapping s1(Stage::s1, MapAttributes{.access_flag = false});
  Walker w1(s1.tm.mem);
  auto t = w1.stage1(s1_httu(s1.b, true, false), kVa, kRead);
  ASSERT_TRUE(t);
  EXPECT_TRUE(Descriptor::AF.extract(s1.leaf()));
  EXPECT_EQ(t->descriptor, s1.leaf());

  OneMapping s2(Stage::s2, MapAttributes{.access_flag = false});
  Walker w2(s2.tm.mem);
  ASSERT_TRUE(w2.stage2(s2_httu(s2.b, true, false), kVa, kRead));
  EXPECT_TRUE(Descriptor::AF.extract(s2.leaf()));
}

// Setting AF on an access that takes a permission fault is CONSTRAINED UNPREDICTABLE
// (AArch64.SettingAccessFlagPermitted); this SMMU leaves the descriptor alone.
TEST(HttuAccessFlag, NoUpdateOnPermissionFault) {
  OneMapping e(Stage::s1, MapAttributes{.write = false, .access_flag = false});
  Walker w(e.tm.mem);
  auto t = w.stage1(s1_httu(e.b, true, false), kVa, kWrite);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().type, FaultType::permission);
  EXPECT_FALSE(Descriptor::AF.extract(e.leaf()));
}

// IHI 0070 5.4 AFFD: with HA set AFFD is IGNORED, so AF is really set.
TEST(HttuAccessFlag, HaOverridesAffd) {
  OneMapping e(Stage::s1, MapAttributes{.access_flag = false});
  Cd cd = cd_for(e.b);
  cd.set(Cd::HA, true).set(Cd::AFFD, true);
  Walker w(e.tm.mem);
  ASSERT_TRUE(w.stage1(s1_of(cd), kVa, kRead));
  EXPECT_TRUE(Descriptor::AF.extract(e.leaf()));
}

// ---- Dirty state ----

// Arm ARM D8.4.6: with HD, a write to a DBM page that is writable-clean (AP[2] = 1) makes it writable-dirty
// by clearing AP[2]; DBM stays set.
TEST(HttuDirty, Stage1WriteClearsAp2) {
  OneMapping e(Stage::s1, MapAttributes{.write = false, .dbm = true});
  Walker w(e.tm.mem);
  auto t = w.stage1(s1_httu(e.b, true, true), kVa, kWrite);
  ASSERT_TRUE(t);
  EXPECT_FALSE(Descriptor::AP2.extract(e.leaf()));
  EXPECT_TRUE(Descriptor::DBM.extract(e.leaf()));
  EXPECT_TRUE(t->perm.write);
  EXPECT_FALSE(t->write_needs_dirty);
}

// A read never sets dirty state; the translation says a write is allowed once the page is dirtied.
TEST(HttuDirty, ReadLeavesPageCleanButReportsWritableViaDbm) {
  OneMapping e(Stage::s1, MapAttributes{.write = false, .dbm = true});
  const std::uint64_t before = e.leaf();
  Walker w(e.tm.mem);
  auto t = w.stage1(s1_httu(e.b, true, true), kVa, kRead);
  ASSERT_TRUE(t);
  EXPECT_EQ(e.leaf(), before);
  EXPECT_TRUE(t->perm.write);
  EXPECT_TRUE(t->write_needs_dirty);
}

// Without DBM a read-only page stays read-only under HD; with DBM but without HD (or with HD but not HA,
// which IHI 0070 5.4 says behaves as neither) it is read-only too.
TEST(HttuDirty, WriteFaultsWithoutDbmOrWithoutHd) {
  struct Case {
    bool dbm, ha, hd;
  };
  for (Case c : {Case{false, true, true}, Case{true, true, false}, Case{true, false, true}}) {
    OneMapping e(Stage::s1, MapAttributes{.write = false, .dbm = c.dbm});
    const std::uint64_t before = e.leaf();
    Walker w(e.tm.mem);
    auto t = w.stage1(s1_httu(e.b, c.ha, c.hd), kVa, kWrite);
    ASSERT_FALSE(t) << fmt::format("dbm={} ha={} hd={}", c.dbm, c.ha, c.hd);
    EXPECT_EQ(t.error().type, FaultType::permission);
    EXPECT_EQ(e.leaf(), before);
  }
}

// DBM does not override hierarchical permissions: under APTable[1] (read-only) a write still faults
// (AArch64.S1DirectBasePermissions applies APTable after DBM).
TEST(HttuDirty, ApTableReadOnlyStillFaults) {
  OneMapping e(Stage::s1, MapAttributes{.write = false, .dbm = true});
  const std::uint64_t l2 = entry_at(e.tm.mem, e.b, kVa, 2);
  ASSERT_TRUE(e.tm.mem.write64(l2, Descriptor::APTable.insert(read_desc(e.tm.mem, l2), 2)));
  Walker w(e.tm.mem);
  auto t = w.stage1(s1_httu(e.b, true, true), kVa, kWrite);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().type, FaultType::permission);
  EXPECT_TRUE(Descriptor::AP2.extract(e.leaf()));
  auto r = w.stage1(s1_httu(e.b, true, true), kVa, kRead);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->perm.write);
  EXPECT_FALSE(r->write_needs_dirty);
}

// A read-only page without DBM is simply not writable: nothing for a TLB to re-walk for.
TEST(HttuDirty, ReadOnlyPageWithoutDbmNeedsNoDirtyUpdate) {
  for (Stage stage : {Stage::s1, Stage::s2}) {
    OneMapping e(stage, MapAttributes{.write = false});
    Walker w(e.tm.mem);
    auto t = stage == Stage::s1 ? w.stage1(s1_httu(e.b, true, true), kVa, kRead)
                                : w.stage2(s2_httu(e.b, true, true), kVa, kRead);
    ASSERT_TRUE(t);
    EXPECT_FALSE(t->perm.write);
    EXPECT_FALSE(t->write_needs_dirty);
  }
}

// IHI 0070 3.13.3: the dirty state of a block covers the whole block: one write dirties it, and every page
// inside then translates as dirty.
TEST(HttuDirty, BlockIsDirtiedAsAWhole) {
  OneMapping e(Stage::s1, MapAttributes{.write = false, .dbm = true}, 2 * kMiB);
  ASSERT_EQ(e.b.leaf(kVa).value().level, 2);
  Walker w(e.tm.mem);
  const Stage1Params p = s1_httu(e.b, true, true);
  ASSERT_TRUE(w.stage1(p, kVa + 0x1230, kWrite));
  EXPECT_FALSE(Descriptor::AP2.extract(e.leaf()));
  const std::uint64_t other = (kVa & ~(2 * kMiB - 1)) + 0x1f'f000;
  auto t = w.stage1(p, other, kRead);
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->write_needs_dirty);
  EXPECT_EQ(t->size_log2, 21U);
}

// Stage 2: S2HD with DBM sets S2AP[1] on a write (Arm ARM D8.4.6, AArch64.S2Translate); reads leave it.
TEST(HttuDirty, Stage2WriteSetsS2ap1) {
  OneMapping e(Stage::s2, MapAttributes{.write = false, .dbm = true});
  Walker w(e.tm.mem);
  const Stage2Params p = s2_httu(e.b, true, true);
  ASSERT_TRUE(w.stage2(p, kVa, kRead));
  EXPECT_FALSE(Descriptor::S2AP_W.extract(e.leaf()));
  ASSERT_TRUE(w.stage2(p, kVa, kWrite));
  EXPECT_TRUE(Descriptor::S2AP_W.extract(e.leaf()));

  OneMapping plain(Stage::s2, MapAttributes{.write = false, .dbm = true});
  Walker w2(plain.tm.mem);
  auto t = w2.stage2(s2_httu(plain.b, true, false), kVa, kWrite);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().type, FaultType::permission);
  EXPECT_TRUE(t.error().stage2);
}

// AF and dirty state are set by one update when both are needed.
TEST(HttuDirty, AccessFlagAndDirtyInOneUpdate) {
  OneMapping e(Stage::s1, MapAttributes{.write = false, .access_flag = false, .dbm = true});
  Walker w(e.tm.mem);
  ASSERT_TRUE(w.stage1(s1_httu(e.b, true, true), kVa, kWrite));
  EXPECT_TRUE(Descriptor::AF.extract(e.leaf()));
  EXPECT_FALSE(Descriptor::AP2.extract(e.leaf()));
}

// ---- Racing updates ----

// Memory whose compare-and-swap lets a "concurrent agent" rewrite the word first, a given number of times.
class RacingMemory final : public PhysicalMemory {
 public:
  explicit RacingMemory(RegionMemory& inner) : inner_(inner) {}
  std::function<std::uint64_t(std::uint64_t)> rewrite;  // what the other agent stores
  unsigned races = 0;                                    // how many CASes lose
  unsigned cas_calls = 0;

  std::expected<void, BusFault> read(std::uint64_t pa, std::span<std::byte> out) const override {
    return inner_.read(pa, out);
  }
  std::expected<void, BusFault> write(std::uint64_t pa, std::span<const std::byte> in) override {
    return inner_.write(pa, in);
  }
  std::expected<bool, BusFault> compare_exchange64(std::uint64_t pa, std::uint64_t expected,
                                                   std::uint64_t desired) override {
    ++cas_calls;
    if (races > 0) {
      --races;
      EXPECT_TRUE(inner_.write64(pa, rewrite(expected)));
    }
    return inner_.compare_exchange64(pa, expected, desired);
  }

 private:
  RegionMemory& inner_;
};

// Arm ARM AArch64.S1Translate: when the descriptor changed between the walk and the update, the walk
// restarts and sees the new descriptor. Here software made the page read-only meanwhile: the retried
// write takes a permission fault.
TEST(HttuRace, LostUpdateRestartsTheWalk) {
  OneMapping e(Stage::s1, MapAttributes{.write = false, .dbm = true});
  RacingMemory mem(e.tm.mem);
  mem.races = 1;
  mem.rewrite = [](std::uint64_t d) { return Descriptor::DBM.insert(d, false); };
  Walker w(mem);
  auto t = w.stage1(s1_httu(e.b, true, true), kVa, kWrite);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().type, FaultType::permission);
  EXPECT_EQ(mem.cas_calls, 1U);
  EXPECT_EQ(w.descriptor_reads(), 8U);  // two full walks
}

// Another agent that set AF first: the retry needs no update.
TEST(HttuRace, RetrySucceedsWhenTheOtherAgentDidTheWork) {
  OneMapping e(Stage::s1, MapAttributes{.access_flag = false});
  RacingMemory mem(e.tm.mem);
  mem.races = 1;
  mem.rewrite = [](std::uint64_t d) { return Descriptor::AF.insert(d, true); };
  Walker w(mem);
  ASSERT_TRUE(w.stage1(s1_httu(e.b, true, false), kVa, kRead));
  EXPECT_EQ(mem.cas_calls, 1U);
}

// An update that keeps losing is reported as an aborted walk (IHI 0070 5.4 IR0 permits F_WALK_EABT for a
// failed HTTU update) instead of spinning forever.
TEST(HttuRace, EndlessRaceEndsInWalkAbort) {
  OneMapping e(Stage::s1, MapAttributes{.access_flag = false});
  RacingMemory mem(e.tm.mem);
  mem.races = 1000;
  mem.rewrite = [](std::uint64_t d) { return d ^ (1ULL << 58); };  // a software bit keeps flipping
  Walker w(mem);
  auto t = w.stage1(s1_httu(e.b, true, false), kVa, kRead);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().type, FaultType::walk_eabt);
  EXPECT_EQ(t.error().fetch_address, e.b.leaf(kVa).value().descriptor_address);
  EXPECT_EQ(mem.cas_calls, 16U);
}

// ---- Nested: stage-1 table accesses through stage 2 ----

constexpr std::uint64_t kNestedVa = 0x7f00'1234'5000ULL;
constexpr std::uint64_t kIpa = 0x1'0000'0000ULL;
constexpr std::uint64_t kPa = 0x3'0000'0000ULL;

struct NestedHttu : ::testing::Test {
  NestedEnv env;
  void SetUp() override {
    ASSERT_TRUE(env.s1.map(kNestedVa, kIpa, 4096, MapAttributes{}));
    ASSERT_TRUE(env.s2.map(kIpa, kPa, 4096, MapAttributes{}));
  }
  // The stage-2 leaf that maps the guest page holding the stage-1 descriptor for kNestedVa at `level`.
  std::uint64_t table_page_ipa(int level) const { return env.s1_entry_ipa(kNestedVa, level) & ~0xfffULL; }
  void set_s2_leaf(std::uint64_t ipa, std::uint64_t d) { ASSERT_TRUE(env.s2.write_leaf(ipa, d)); }
  std::uint64_t s2_leaf(std::uint64_t ipa) const { return env.s2.leaf(ipa).value().descriptor; }
};

// IHI 0070 7.3: a stage-2 fault on the IPA of a stage-1 descriptor is reported as a stage-2 fault of
// CLASS=TT with that IPA, read (TTRnW=1).
TEST(NestedTableWalk, Stage2FaultOnStage1TableFetchAtEachLevel) {
  for (int level = 0; level <= 3; ++level) {
    NestedEnv e;
    ASSERT_TRUE(e.s1.map(kNestedVa, kIpa, 4096, MapAttributes{}));
    const std::uint64_t desc_ipa = e.s1_entry_ipa(kNestedVa, level);
    ASSERT_TRUE(e.s2.unmap(desc_ipa & ~0xfffULL, 4096));
    Walker w(e.pa);
    auto t = w.nested(s1_of(e.cd()), s2_of(e.ste()), kNestedVa, kRead);
    ASSERT_FALSE(t) << level;
    EXPECT_EQ(t.error().type, FaultType::translation);
    EXPECT_TRUE(t.error().stage2);
    EXPECT_TRUE(t.error().on_table_walk);
    EXPECT_FALSE(t.error().table_write);
    EXPECT_EQ(t.error().ipa, desc_ipa);
    EXPECT_EQ(t.error().level, 3);  // the stage-2 level that faulted
  }
}

// The same for an access-flag fault on the stage-2 page holding a stage-1 table.
TEST_F(NestedHttu, Stage2AccessFaultOnStage1TableFetch) {
  const std::uint64_t page = table_page_ipa(1);
  set_s2_leaf(page, Descriptor::AF.insert(s2_leaf(page), false));
  Walker w(env.pa);
  auto t = w.nested(s1_of(env.cd()), s2_of(env.ste()), kNestedVa, kRead);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().type, FaultType::access);
  EXPECT_TRUE(t.error().stage2 && t.error().on_table_walk);
}

// A table walk is a read: a stage-2 page without read permission refuses it, one without write
// permission does not.
TEST_F(NestedHttu, TableFetchNeedsStage2ReadOnly) {
  const std::uint64_t page = table_page_ipa(2);
  set_s2_leaf(page, Descriptor::S2AP_W.insert(s2_leaf(page), false));
  Walker w(env.pa);
  EXPECT_TRUE(w.nested(s1_of(env.cd()), s2_of(env.ste()), kNestedVa, kWrite));
  set_s2_leaf(page, Descriptor::S2AP_R.insert(s2_leaf(page), false));
  auto t = w.nested(s1_of(env.cd()), s2_of(env.ste()), kNestedVa, kRead);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().type, FaultType::permission);
  EXPECT_TRUE(t.error().on_table_walk);
  EXPECT_FALSE(t.error().table_write);
}

// A stage-2 fault on the final IPA is not a table-walk fault; it reports the IPA.
TEST_F(NestedHttu, Stage2FaultOnOutputIpa) {
  ASSERT_TRUE(env.s2.unmap(kIpa, 4096));
  Walker w(env.pa);
  auto t = w.nested(s1_of(env.cd()), s2_of(env.ste()), kNestedVa + 0x44, kRead);
  ASSERT_FALSE(t);
  EXPECT_TRUE(t.error().stage2);
  EXPECT_FALSE(t.error().on_table_walk);
  EXPECT_EQ(t.error().ipa, kIpa + 0x44);
}

// Arm ARM AArch64.S1Translate: the HTTU update of a stage-1 descriptor is a write through stage 2. On a
// stage-2 read-only page it is a stage-2 permission fault on the table walk, TTRnW=0.
TEST_F(NestedHttu, Stage1UpdateNeedsStage2WritePermission) {
  ASSERT_TRUE(env.s1.write_leaf(kNestedVa, Descriptor::AF.insert(env.s1.leaf(kNestedVa).value().descriptor, false)));
  const std::uint64_t leaf_ipa = env.s1_entry_ipa(kNestedVa, 3);
  const std::uint64_t page = leaf_ipa & ~0xfffULL;
  set_s2_leaf(page, Descriptor::S2AP_W.insert(s2_leaf(page), false));
  Cd cd = env.cd();
  cd.set(Cd::HA, true);
  Walker w(env.pa);
  auto t = w.nested(s1_of(cd), s2_of(env.ste()), kNestedVa, kRead);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().type, FaultType::permission);
  EXPECT_TRUE(t.error().stage2);
  EXPECT_TRUE(t.error().on_table_walk);
  EXPECT_TRUE(t.error().table_write);
  EXPECT_EQ(t.error().ipa, leaf_ipa);
  EXPECT_FALSE(Descriptor::AF.extract(env.s1.leaf(kNestedVa).value().descriptor));
}

// With S2HD and DBM on that page, the stage-1 update dirties the stage-2 page and succeeds.
TEST_F(NestedHttu, Stage1UpdateDirtiesTheStage2PageOfTheTable) {
  ASSERT_TRUE(env.s1.write_leaf(kNestedVa, Descriptor::AF.insert(env.s1.leaf(kNestedVa).value().descriptor, false)));
  const std::uint64_t page = table_page_ipa(3);
  set_s2_leaf(page, Descriptor::DBM.insert(Descriptor::S2AP_W.insert(s2_leaf(page), false), true));
  Cd cd = env.cd();
  cd.set(Cd::HA, true);
  Ste ste = env.ste();
  ste.set(Ste::S2HA, true).set(Ste::S2HD, true);
  // The data page is writable-clean too; it is only read, so it stays clean.
  set_s2_leaf(kIpa, Descriptor::DBM.insert(Descriptor::S2AP_W.insert(s2_leaf(kIpa), false), true));
  Walker w(env.pa);
  auto t = w.nested(s1_of(cd), s2_of(ste), kNestedVa, kRead);
  ASSERT_TRUE(t);
  EXPECT_TRUE(Descriptor::AF.extract(env.s1.leaf(kNestedVa).value().descriptor));
  EXPECT_TRUE(Descriptor::S2AP_W.extract(s2_leaf(page)));
  EXPECT_FALSE(Descriptor::S2AP_W.extract(s2_leaf(kIpa)));
}

// A nested write dirties both stages' leaves.
TEST_F(NestedHttu, WriteDirtiesBothStages) {
  ASSERT_TRUE(env.s1.unmap(kNestedVa, 4096));
  ASSERT_TRUE(env.s1.map(kNestedVa, kIpa, 4096, MapAttributes{.write = false, .dbm = true}));
  ASSERT_TRUE(env.s2.unmap(kIpa, 4096));
  ASSERT_TRUE(env.s2.map(kIpa, kPa, 4096, MapAttributes{.write = false, .dbm = true}));
  Cd cd = env.cd();
  cd.set(Cd::HA, true).set(Cd::HD, true);
  Ste ste = env.ste();
  ste.set(Ste::S2HA, true).set(Ste::S2HD, true);
  Walker w(env.pa);
  auto r = w.nested(s1_of(cd), s2_of(ste), kNestedVa, kRead);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->perm.write);
  EXPECT_TRUE(r->write_needs_dirty);
  auto t = w.nested(s1_of(cd), s2_of(ste), kNestedVa, kWrite);
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->write_needs_dirty);
  EXPECT_FALSE(Descriptor::AP2.extract(env.s1.leaf(kNestedVa).value().descriptor));
  EXPECT_TRUE(Descriptor::S2AP_W.extract(s2_leaf(kIpa)));
}

}  // namespace
}  // namespace vsmmu::smmu
