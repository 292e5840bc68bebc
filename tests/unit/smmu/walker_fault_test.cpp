// Walker faults and permissions: translation, address-size, access-flag, permission and external-abort
// faults at both stages, with the level each is reported at (Arm ARM J1.1.4 AArch64.S1Walk / S2Walk /
// S1Translate / S2Translate; IHI 0070 3.4, 5.2, 5.4); stage-1 AP/UXN/PXN/APTable/UXNTable/PXNTable/WXN/PAN
// and stage-2 S2AP/XN (AArch64.S1DirectBasePermissions / S2DirectBasePermissions).
#include <gtest/gtest.h>

#include "tests/unit/smmu/walk_fixture.hpp"

namespace vsmmu::smmu {
namespace {

using namespace test;

void expect_fault(const std::expected<Translation, WalkFault>& t, FaultType type, int level, bool stage2) {
  ASSERT_FALSE(t) << fmt::format("translated to {:#x}", t ? t->output : 0);
  EXPECT_EQ(t.error().type, type);
  EXPECT_EQ(t.error().level, level);
  EXPECT_EQ(t.error().stage2, stage2);
  EXPECT_FALSE(t.error().on_table_walk);
}

// ---- Translation faults ----

// An invalid descriptor at any level is a translation fault at that level (AArch64.DecodeDescriptorType).
TEST(TranslationFault, InvalidDescriptorAtEachLevel) {
  for (Stage stage : {Stage::s1, Stage::s2}) {
    for (int level = 0; level <= 3; ++level) {
      OneMapping p(stage);
      const std::uint64_t entry = entry_at(p.tm.mem, p.b, kVa, level);
      ASSERT_TRUE(p.tm.mem.write64(entry, Descriptor::Valid.insert(read_desc(p.tm.mem, entry), false)));
      expect_fault(p.walk(kRead), FaultType::translation, level, stage == Stage::s2);
    }
  }
}

// IHI 0070 3.4: a VA outside TTB0's range is a stage-1 translation fault (level 0, AArch64.VAIsOutOfRange);
// this SMMU walks no TTB1, so upper-range VAs fault as with EPD1 = 1.
TEST(TranslationFault, VaAboveT0szRange) {
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, Stage::s1, Granule::k4K, 39);
  ASSERT_TRUE(b.map((1ULL << 39) - 4096, kOut, 4096, MapAttributes{}));
  Walker w(tm.mem);
  const Stage1Params p = s1_of(cd_for(b));
  EXPECT_TRUE(w.stage1(p, (1ULL << 39) - 1, kRead));
  expect_fault(w.stage1(p, 1ULL << 39, kRead), FaultType::translation, 0, false);
  expect_fault(w.stage1(p, 0xffff'ffff'ffff'f000ULL, kRead), FaultType::translation, 0, false);
  EXPECT_EQ(w.descriptor_reads(), 3U);  // the faulting lookups read nothing
}

// IHI 0070 3.4.1: with TBI0, VA[63:56] take no part in the range check or the translation.
TEST(TranslationFault, TopByteIgnoredOnlyWithTbi0) {
  OneMapping p(Stage::s1);
  Cd cd = cd_for(p.b);
  Walker w(p.tm.mem);
  const std::uint64_t tagged = 0x5a00'0000'0000'0000ULL | kVa;
  expect_fault(w.stage1(s1_of(cd), tagged, kRead), FaultType::translation, 0, false);
  cd.set(Cd::TBI0, true);
  auto t = w.stage1(s1_of(cd), tagged | 0x20, kRead);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->output, kOut + 0x20);
}

// IHI 0070 5.4 EPD0: a TLB miss on a TTB0 address with EPD0 = 1 is a translation fault, with no walk.
TEST(TranslationFault, Epd0DisablesWalks) {
  OneMapping p(Stage::s1);
  Cd cd = cd_for(p.b);
  cd.set(Cd::EPD0, true).set(Cd::T0SZ, 0).set(Cd::TG0, 3);  // the TTB0 fields are IGNORED
  Walker w(p.tm.mem);
  expect_fault(w.stage1(s1_of(cd), kVa, kRead), FaultType::translation, 0, false);
  EXPECT_EQ(w.descriptor_reads(), 0U);
}

// IHI 0070 3.4 stage-2 check 1: an IPA outside S2T0SZ's range is a stage-2 translation fault; the event
// reports the IPA.
TEST(TranslationFault, IpaAboveS2T0szRange) {
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, Stage::s2, Granule::k4K, 40);
  ASSERT_TRUE(b.init());
  Walker w(tm.mem);
  auto t = w.stage2(s2_of(ste_for(b)), 1ULL << 40, kRead);
  expect_fault(t, FaultType::translation, 0, true);
  EXPECT_EQ(t.error().ipa, 1ULL << 40);
}

// ---- Address size faults ----

// IHI 0070 5.4 IPS: stage-1 output addresses and next-level table addresses are checked against
// min(IPS, OAS); the fault is at the level of the descriptor holding the address.
TEST(AddressSizeFault, Stage1OutputAboveIps) {
  TableMemory tm;
  TableBuilder b(tm.mem, tm.pool, Stage::s1, Granule::k4K, 48);
  ASSERT_TRUE(b.map(0x1000, (1ULL << 40) - 4096, 4096, MapAttributes{}));
  ASSERT_TRUE(b.map(0x2000, 1ULL << 40, 4096, MapAttributes{}));
  ASSERT_TRUE(b.map(0x4000'0000, 1ULL << 40, 1 * kGiB, MapAttributes{}));  // a level-1 block
  Walker w(tm.mem);
  const Stage1Params p = s1_of(cd_for(b, /*IPS 40 bits*/ 2));
  EXPECT_TRUE(w.stage1(p, 0x1000, kRead));
  expect_fault(w.stage1(p, 0x2000, kRead), FaultType::address_size, 3, false);
  expect_fault(w.stage1(p, 0x4000'0000, kRead), FaultType::address_size, 1, false);
}

TEST(AddressSizeFault, Stage1TableAddressAboveIps) {
  OneMapping p(Stage::s1);
  const std::uint64_t l1 = entry_at(p.tm.mem, p.b, kVa, 1);
  const std::uint64_t d = read_desc(p.tm.mem, l1);
  ASSERT_TRUE(p.tm.mem.write64(l1, Descriptor::with_address(d, 1ULL << 44, false)));
  expect_fault(p.walk(kRead, cd_for(p.b, /*IPS 40 bits*/ 2)), FaultType::address_size, 1, false);
}

// IHI 0070 5.4 IPS: a value above the OAS behaves as the OAS.
TEST(AddressSizeFault, IpsAboveOasIsCappedToOas) {
  OneMapping p(Stage::s1);
  WalkCapabilities caps = full_caps();
  caps.oas_bits = 32;
  const Stage1Params s1 = s1_of(cd_for(p.b, /*48 bits*/ 5), caps);
  EXPECT_EQ(s1.ips_bits, 32U);
  Walker w(p.tm.mem);
  expect_fault(w.stage1(s1, kVa, kRead), FaultType::address_size, 3, false);  // kOut needs 36 bits
}

// IHI 0070 5.2 S2PS: stage-2 output and table addresses above min(S2PS, OAS) are stage-2 address-size
// faults.
TEST(AddressSizeFault, Stage2OutputAndTableAbovePs) {
  OneMapping p(Stage::s2);
  Walker w(p.tm.mem);
  auto t = w.stage2(s2_of(ste_for(p.b, /*32 bits*/ 0)), kVa, kRead);
  expect_fault(t, FaultType::address_size, 3, true);
  EXPECT_EQ(t.error().ipa, kVa);
  const std::uint64_t l2 = entry_at(p.tm.mem, p.b, kVa, 2);
  ASSERT_TRUE(p.tm.mem.write64(l2, Descriptor::with_address(read_desc(p.tm.mem, l2), 1ULL << 36, false)));
  expect_fault(w.stage2(s2_of(ste_for(p.b, /*36 bits*/ 1)), kVa, kRead), FaultType::address_size, 2, true);
}

// Arm ARM J1.1.4.75: the output address-size check comes before the access flag check.
TEST(AddressSizeFault, TakesPriorityOverAccessFlag) {
  OneMapping p(Stage::s1, MapAttributes{.access_flag = false});
  expect_fault(p.walk(kRead, cd_for(p.b, /*32 bits*/ 0)), FaultType::address_size, 3, false);
  expect_fault(p.walk(kRead), FaultType::access, 3, false);
}

// ---- External abort on a descriptor fetch ----

// IHI 0070 7.3 F_WALK_EABT: a descriptor fetch from an address with nothing behind it reports the fetch
// address and the level.
TEST(WalkExternalAbort, FetchFromAHole) {
  for (Stage stage : {Stage::s1, Stage::s2}) {
    OneMapping p(stage);
    const std::uint64_t l2 = entry_at(p.tm.mem, p.b, kVa, 2);
    const std::uint64_t hole = 0x7000'0000;  // below 48 bits, no RAM
    ASSERT_TRUE(p.tm.mem.write64(l2, Descriptor::with_address(read_desc(p.tm.mem, l2), hole, false)));
    auto t = p.walk(kRead);
    expect_fault(t, FaultType::walk_eabt, 3, stage == Stage::s2);
    EXPECT_EQ(t.error().fetch_address, hole + ((kVa >> 12) & 511) * 8);
  }
}

TEST(WalkExternalAbort, TableBaseInAHole) {
  OneMapping p(Stage::s1);
  Cd cd = cd_for(p.b);
  cd.set(Cd::TTB0, 0x7000'0000);
  auto t = p.walk(kRead, cd);
  expect_fault(t, FaultType::walk_eabt, 0, false);
  EXPECT_EQ(t.error().fetch_address, 0x7000'0000U + ((kVa >> 39) & 511) * 8);
}

// ---- Access flag ----

// Arm ARM J1.1.4.75: AF = 0 without HA is an access flag fault at the leaf's level, at either stage.
TEST(AccessFlagFault, AfClearFaultsWithoutHa) {
  for (Stage stage : {Stage::s1, Stage::s2}) {
    OneMapping p(stage, MapAttributes{.access_flag = false});
    const std::uint64_t before = p.leaf();
    expect_fault(p.walk(kRead), FaultType::access, 3, stage == Stage::s2);
    EXPECT_EQ(p.leaf(), before);
  }
}

// IHI 0070 5.4 AFFD / 5.2 S2AFFD: AF is considered 1 and no fault occurs; nothing is written.
TEST(AccessFlagFault, AffdTreatsAfAsSet) {
  OneMapping s1(Stage::s1, MapAttributes{.access_flag = false});
  Cd cd = cd_for(s1.b);
  cd.set(Cd::AFFD, true);
  const std::uint64_t before = s1.leaf();
  EXPECT_TRUE(s1.walk(kWrite, cd));
  EXPECT_EQ(s1.leaf(), before);

  OneMapping s2(Stage::s2, MapAttributes{.access_flag = false});
  Ste ste = ste_for(s2.b);
  ste.set(Ste::S2AFFD, true);
  Walker w(s2.tm.mem);
  EXPECT_TRUE(w.stage2(s2_of(ste), kVa, kRead));
}

// ---- Stage-1 permissions ----

struct ApCase {
  bool ap2, ap1;
  bool priv_read, priv_write, unpriv_read, unpriv_write;
};

// Arm ARM D8.4.1 (AArch64.S1DirectBasePermissions): AP[2:1] = 00 privileged RW; 01 RW at both; 10
// privileged RO; 11 RO at both.
TEST(Stage1Permission, AccessPermissionsMatrix) {
  const ApCase cases[] = {
      {false, false, true, true, false, false},
      {false, true, true, true, true, true},
      {true, false, true, false, false, false},
      {true, true, true, false, true, false},
  };
  for (const ApCase& c : cases) {
    OneMapping p(Stage::s1);
    p.set_leaf(Descriptor::AP1.insert(Descriptor::AP2.insert(p.leaf(), c.ap2), c.ap1));
    const std::string what = fmt::format("AP[2:1]={:d}{:d}", c.ap2, c.ap1);
    EXPECT_EQ(p.walk(kPrivRead).has_value(), c.priv_read) << what;
    EXPECT_EQ(p.walk(kPrivWrite).has_value(), c.priv_write) << what;
    EXPECT_EQ(p.walk(kRead).has_value(), c.unpriv_read) << what;
    EXPECT_EQ(p.walk(kWrite).has_value(), c.unpriv_write) << what;
    if (!c.unpriv_read) {
      expect_fault(p.walk(kRead), FaultType::permission, 3, false);
    }
    if (auto t = p.walk(kPrivRead)) {
      EXPECT_EQ(t->perm.write, c.priv_write) << what;
    }
  }
}

// UXN forbids unprivileged instruction fetches, PXN privileged ones; execute needs no read permission.
TEST(Stage1Permission, UxnAndPxn) {
  OneMapping p(Stage::s1, MapAttributes{.write = false, .execute = true});
  EXPECT_TRUE(p.walk(kExec));
  EXPECT_TRUE(p.walk(kPrivExec));
  p.set_leaf(Descriptor::UXN.insert(p.leaf(), true));
  expect_fault(p.walk(kExec), FaultType::permission, 3, false);
  EXPECT_TRUE(p.walk(kPrivExec));
  p.set_leaf(Descriptor::PXN.insert(Descriptor::UXN.insert(p.leaf(), false), true));
  EXPECT_TRUE(p.walk(kExec));
  expect_fault(p.walk(kPrivExec), FaultType::permission, 3, false);
}

// IHI 0070 5.4 UWXN note: in VMSAv8-64 every EL0-writable region is privileged execute-never.
TEST(Stage1Permission, UnprivilegedWritableIsPrivilegedExecuteNever) {
  OneMapping p(Stage::s1, MapAttributes{.write = true, .execute = true, .unprivileged = true});
  expect_fault(p.walk(kPrivExec), FaultType::permission, 3, false);
  EXPECT_TRUE(p.walk(kExec));
  auto t = p.walk(kPrivRead);
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->perm.execute);
}

// Hierarchical permissions in table descriptors (Arm ARM D8.4.2, AArch64.S1ApplyTablePerms): APTable[0]
// removes unprivileged access, APTable[1] write access, UXNTable/PXNTable execution, at every level below.
TEST(Stage1Permission, HierarchicalTableControls) {
  struct Case {
    std::uint64_t bits;
    bool el0_data;  // the page grants unprivileged data access (AP[1])
    AccessType denied;
    AccessType allowed;
  };
  const Case cases[] = {
      {Descriptor::APTable.insert(0, 1), true, kRead, kPrivWrite},
      {Descriptor::APTable.insert(0, 2), false, kPrivWrite, kPrivRead},
      {Descriptor::UXNTable.insert(0, true), false, kExec, kPrivExec},
      {Descriptor::PXNTable.insert(0, true), false, kPrivExec, kExec},
  };
  for (int level = 0; level <= 2; ++level) {
    for (const Case& c : cases) {
      // Writable, executable at both privileges (EL0-writable pages are never privileged-executable, so
      // the PXN cases use a page without EL0 data access).
      OneMapping p(Stage::s1, MapAttributes{.write = true, .execute = true, .unprivileged = c.el0_data});
      const std::uint64_t entry = entry_at(p.tm.mem, p.b, kVa, level);
      ASSERT_TRUE(p.tm.mem.write64(entry, read_desc(p.tm.mem, entry) | c.bits));
      const std::string what = fmt::format("level {} table bits {:#x}", level, c.bits);
      auto denied = p.walk(c.denied);
      ASSERT_FALSE(denied) << what;
      EXPECT_EQ(denied.error().type, FaultType::permission) << what;
      EXPECT_TRUE(p.walk(c.allowed)) << what;
    }
  }
}

// IHI 0070 5.4 WXN: an instruction read from a writable page is a permission fault.
TEST(Stage1Permission, WxnMakesWritablePagesExecuteNever) {
  OneMapping p(Stage::s1, MapAttributes{.write = true, .execute = true, .unprivileged = false});
  Cd cd = cd_for(p.b);
  cd.set(Cd::WXN, true);
  expect_fault(p.walk(kPrivExec, cd), FaultType::permission, 3, false);
  p.set_leaf(Descriptor::AP2.insert(p.leaf(), true));  // read-only: executable again
  EXPECT_TRUE(p.walk(kPrivExec, cd));
}

// IHI 0070 5.4 PAN: privileged data accesses to pages unprivileged accesses may use are refused;
// instruction fetches are not data accesses.
TEST(Stage1Permission, PanRefusesPrivilegedDataAccessToUserPages) {
  OneMapping p(Stage::s1, MapAttributes{.write = false, .execute = true, .unprivileged = true});
  Cd cd = cd_for(p.b);
  cd.set(Cd::PAN, true);
  expect_fault(p.walk(kPrivRead, cd), FaultType::permission, 3, false);
  EXPECT_TRUE(p.walk(kPrivExec, cd));
  EXPECT_TRUE(p.walk(kRead, cd));
  p.set_leaf(Descriptor::AP1.insert(p.leaf(), false));
  EXPECT_TRUE(p.walk(kPrivRead, cd));
}

// ---- Stage-2 permissions ----

// Arm ARM D8.4.3: S2AP[0] grants read, S2AP[1] write, independently (write-only is expressible).
TEST(Stage2Permission, S2apMatrix) {
  for (unsigned s2ap = 0; s2ap < 4; ++s2ap) {
    OneMapping p(Stage::s2, MapAttributes{.read = (s2ap & 1) != 0, .write = (s2ap & 2) != 0});
    EXPECT_EQ(p.walk(kRead).has_value(), (s2ap & 1) != 0) << s2ap;
    EXPECT_EQ(p.walk(kWrite).has_value(), (s2ap & 2) != 0) << s2ap;
    if ((s2ap & 1) == 0) {
      expect_fault(p.walk(kRead), FaultType::permission, 3, true);
    }
  }
}

// Arm ARM AArch64.S2DirectBasePermissions: without FEAT_XNX, XN (bit 54) forbids execution at both
// privileges; an instruction fetch needs only execute permission (AArch64.S2CheckPermissions).
TEST(Stage2Permission, XnForbidsInstructionFetch) {
  OneMapping p(Stage::s2, MapAttributes{.read = false, .write = false, .execute = true});
  EXPECT_TRUE(p.walk(kExec));
  EXPECT_TRUE(p.walk(kPrivExec));
  p.set_leaf(Descriptor::S2XN.insert(p.leaf(), 2));
  expect_fault(p.walk(kExec), FaultType::permission, 3, true);
  expect_fault(p.walk(kPrivExec), FaultType::permission, 3, true);
}

// With FEAT_XNX (IHI 0070 IDR3.XNX), XN[1:0]: 00 executable, 01 privileged execute-never, 10 never,
// 11 unprivileged execute-never.
TEST(Stage2Permission, XnxDistinguishesPrivilege) {
  const bool priv_exec[] = {true, false, false, true};
  const bool unpriv_exec[] = {true, true, false, false};
  WalkCapabilities caps = full_caps();
  caps.xnx = true;
  for (unsigned xn = 0; xn < 4; ++xn) {
    OneMapping p(Stage::s2, MapAttributes{.execute = true});
    p.set_leaf(Descriptor::S2XN.insert(p.leaf(), xn));
    Walker w(p.tm.mem);
    const Stage2Params s2 = s2_of(ste_for(p.b), caps);
    EXPECT_EQ(w.stage2(s2, kVa, kPrivExec).has_value(), priv_exec[xn]) << xn;
    EXPECT_EQ(w.stage2(s2, kVa, kExec).has_value(), unpriv_exec[xn]) << xn;
  }
}

}  // namespace
}  // namespace vsmmu::smmu
