// Classification and validation of guest commands on a stage-1-only vSMMU. The forwarded set is the one the kernel's
// arm_vsmmu_convert_user_cmd accepts (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c); field rules mirror the
// stricter per-opcode validation proposed upstream (docs/kernel-rules.md) and IHI 0070 chapter 4.
#include <gtest/gtest.h>

#include "invalidation/command_rules.hpp"
#include "command_helpers.hpp"

namespace vsmmu::invalidation {
namespace {

using namespace testing;

AdvertisedFeatures features() {
  AdvertisedFeatures f;
  f.sid_bits = 16;
  f.ssid_bits = 5;
  f.asid16 = true;
  f.ril = true;
  f.ats = true;
  return f;
}

Disposition of(const Command& c, const AdvertisedFeatures& f = features()) { return classify(c, f).disposition; }

TEST(CommandRules, KernelAcceptedOpcodesAreForwarded) {
  // arm-smmu-v3-iommufd.c: NH_ALL, NSNH_ALL, NH_ASID, NH_VA, NH_VAA, ATC_INV, CFGI_CD, CFGI_CD_ALL.
  for (const Command& c : {tlbi_all(), cmd(Opcode::TLBI_NSNH_ALL), tlbi_asid(3), tlbi_va(3, 0x1000), tlbi_vaa(0x2000),
                           cfgi_cd(0x10, 1), cfgi_cd_all(0x10), cmd(Opcode::ATC_INV).set(Command::SID, 0x10)})
    EXPECT_EQ(of(c), Disposition::forward) << classify(c, features()).reason;
}

TEST(CommandRules, StreamTableCommandsAreTheVmmsJob) {
  // The kernel refuses CFGI_STE/CFGI_ALL with EIO: the VMM re-reads the guest STE and re-attaches.
  EXPECT_EQ(of(cfgi_ste(1)), Disposition::reinstall_ste);
  EXPECT_EQ(of(cfgi_ste_range(0, smmu::Command::kCfgiAllRange)), Disposition::reinstall_ste);
  EXPECT_EQ(of(sync()), Disposition::sync);
  EXPECT_EQ(of(cmd(Opcode::PREFETCH_CONFIG).set(Command::SID, 1)), Disposition::local_noop);
}

TEST(CommandRules, StageTwoAndHypervisorInvalidationsAreIllegalOnAStageOneVsmmu) {
  // IHI 0070 4.4: S2/EL2/EL3 TLBIs need the SMMU to implement them; our vSMMU advertises S1P only.
  for (Opcode op : {Opcode::TLBI_S12_VMALL, Opcode::TLBI_S2_IPA, Opcode::TLBI_EL2_ALL, Opcode::TLBI_EL2_ASID,
                    Opcode::TLBI_EL2_VA, Opcode::TLBI_EL2_VAA, Opcode::TLBI_EL3_ALL, Opcode::TLBI_EL3_VA})
    EXPECT_EQ(of(cmd(op)), Disposition::illegal) << smmu::opcode_name(op);
}

TEST(CommandRules, UndefinedOpcodeIsIllegal) {
  Command c = cmd(Opcode::CMD_SYNC);
  c.dw[0] = 0x7f;  // IHI 0070 4.1.3: an undefined opcode gives CERROR_ILL
  const CommandClass v = classify(c, features());
  EXPECT_EQ(v.disposition, Disposition::illegal);
  EXPECT_NE(v.reason.find("0x7f"), std::string::npos) << v.reason;
}

TEST(CommandRules, Res0BitsMakeACommandIllegal) {
  Command c = tlbi_asid(1);
  c.dw[1] = 1ULL << 40;  // TLBI_NH_ASID defines nothing in dword 1 (IHI 0070 4.4.2)
  EXPECT_EQ(of(c), Disposition::illegal);
}

TEST(CommandRules, AsidWiderThanAdvertisedIsIllegal) {
  AdvertisedFeatures f = features();
  f.asid16 = false;  // IDR0.ASID16=0: 8-bit ASIDs
  EXPECT_EQ(of(tlbi_asid(0xff), f), Disposition::forward);
  EXPECT_EQ(of(tlbi_asid(0x100), f), Disposition::illegal);
  EXPECT_EQ(of(tlbi_va(0x100, 0x1000), f), Disposition::illegal);
}

TEST(CommandRules, RangeFieldsNeedRilAndAGranule) {
  AdvertisedFeatures f = features();
  Command ranged = tlbi_va(1, 0x10000).set(Command::NUM, 3).set(Command::SCALE, 1);
  EXPECT_EQ(of(ranged, f), Disposition::forward);
  f.ril = false;  // IDR3.RIL=0: range fields are not defined
  EXPECT_EQ(of(ranged, f), Disposition::illegal);
  EXPECT_EQ(of(tlbi_va(1, 0x10000).set(Command::TG, 0).set(Command::TTL, 3)), Disposition::illegal);
}

TEST(CommandRules, SubstreamsOnlyWhenAdvertised) {
  AdvertisedFeatures f = features();
  EXPECT_EQ(of(cfgi_cd(0x10, 31), f), Disposition::forward);
  EXPECT_EQ(of(cfgi_cd(0x10, 32), f), Disposition::illegal);  // beyond SSIDSIZE=5
  f.ssid_bits = 0;
  EXPECT_EQ(of(cfgi_cd(0x10, 0), f), Disposition::forward);   // CFGI_CD always names SSID 0 then
  EXPECT_EQ(of(cfgi_cd(0x10, 1), f), Disposition::illegal);
  EXPECT_EQ(of(cmd(Opcode::ATC_INV).set(Command::SID, 1).set(Command::SSV, true), AdvertisedFeatures{.ats = true}),
            Disposition::illegal);  // SSV=1 without substreams
  EXPECT_EQ(of(cfgi_cd_all(0x10), f), Disposition::forward);
}

TEST(CommandRules, SidBeyondSidsizeIsIllegal) {
  EXPECT_EQ(of(cfgi_cd_all(0xffff)), Disposition::forward);
  EXPECT_EQ(of(cfgi_cd_all(0x10000)), Disposition::illegal);
}

TEST(CommandRules, AtcInvNeedsAtsAndASaneSize) {
  AdvertisedFeatures f = features();
  Command atc = cmd(Opcode::ATC_INV).set(Command::SID, 1).set(Command::Size, 52);
  EXPECT_EQ(of(atc, f), Disposition::forward);
  EXPECT_EQ(of(Command(atc).set(Command::Size, 53), f), Disposition::illegal);  // 2^52 pages is everything
  f.ats = false;
  EXPECT_EQ(of(atc, f), Disposition::illegal);
}

TEST(CommandRules, FaultResponsesGoThroughTheFaultQueue) {
  AdvertisedFeatures f = features();
  EXPECT_EQ(of(cmd(Opcode::PRI_RESP).set(Command::SID, 1), f), Disposition::illegal);
  f.pri = true;
  EXPECT_EQ(of(cmd(Opcode::PRI_RESP).set(Command::SID, 1), f), Disposition::fault_response);
  f.stall = true;
  EXPECT_EQ(of(cmd(Opcode::RESUME).set(Command::SID, 1), f), Disposition::fault_response);
}

TEST(CommandRules, CfgiRangeNamesAnAlignedPowerOfTwo) {
  // IHI 0070 4.3.2: CFGI_STE_RANGE invalidates 2^(Range+1) STEs starting at SID aligned down.
  SidRange r = stes_named(cfgi_ste_range(0x13, 2));
  EXPECT_EQ(r.first, 0x10U);
  EXPECT_EQ(r.count, 8U);
  EXPECT_TRUE(r.contains(0x17));
  EXPECT_FALSE(r.contains(0x18));
  SidRange all = stes_named(cfgi_ste_range(0x1234, smmu::Command::kCfgiAllRange));
  EXPECT_EQ(all.first, 0U);
  EXPECT_EQ(all.count, 1ULL << 32);
  EXPECT_EQ(stes_named(cfgi_ste(7)).count, 1U);
}

TEST(CommandRules, SyncWithReservedCompletionSignalIsIllegal) {
  // IHI 0070 4.7.3: CS = 0b11 is Reserved; the project's SMMU model says CERROR_ILL, so does the vSMMU.
  EXPECT_EQ(of(sync().set(Command::CS, smmu::SyncCs::reserved)), Disposition::illegal);
  EXPECT_EQ(of(sync().set(Command::CS, smmu::SyncCs::irq)), Disposition::sync);
}

TEST(CommandRules, SecureStreamFromTheNonSecureQueueIsIllegal) {
  // IHI 0070 4.1.6: SSec = 1 on the Non-secure command queue is ILLEGAL.
  EXPECT_EQ(of(cfgi_ste(1).set(Command::SSec, true)), Disposition::illegal);
  EXPECT_EQ(of(cfgi_cd(0x10, 1).set(Command::SSec, true)), Disposition::illegal);
}

TEST(CommandRules, TheVsmmuJudgesWithTheSmmusOwnRules) {
  // One judge (smmu/command_legality): the reason a guest's command is refused is the SMMU rule's.
  for (const Command& c : {sync().set(Command::CS, smmu::SyncCs::reserved), cmd(Opcode::TLBI_S2_IPA),
                           tlbi_asid(1).set(Command::NUM, 1)}) {
    const CommandClass v = classify(c, features());
    EXPECT_EQ(v.reason, smmu::command_problem(c, features()));
  }
}

TEST(CommandRules, CdInvalidationsNeedStageOne) {
  // IHI 0070 4.3.3, 4.3.4: on an SMMU without stage 1 (IDR0.S1P = 0), CFGI_CD and CFGI_CD_ALL are CERROR_ILL.
  AdvertisedFeatures f = features();
  EXPECT_EQ(of(cfgi_cd(0x10, 1), f), Disposition::forward);
  EXPECT_EQ(of(cfgi_cd_all(0x10), f), Disposition::forward);
  f.s1p = false;
  EXPECT_EQ(of(cfgi_cd(0x10, 1), f), Disposition::illegal);
  EXPECT_EQ(of(cfgi_cd_all(0x10), f), Disposition::illegal);
  EXPECT_EQ(of(cfgi_ste(0x10), f), Disposition::reinstall_ste) << "STEs exist without stage 1";
}

// CFGI_CD, CFGI_CD_ALL and ATC_INV name a StreamID (IHI 0070 4.3.3, 4.3.4, 4.5.1): only that device's vIOMMU
// gets them. TLBIs name an ASID or VA of every stream: every vIOMMU gets them.
TEST(CommandRules, OnlyCdAndAtcInvalidationsNameAStream) {
  EXPECT_EQ(stream_named(cfgi_cd(0x10, 1)), std::optional<std::uint32_t>(0x10));
  EXPECT_EQ(stream_named(cfgi_cd_all(0x11)), std::optional<std::uint32_t>(0x11));
  EXPECT_EQ(stream_named(cmd(Opcode::ATC_INV).set(Command::SID, 0x12)), std::optional<std::uint32_t>(0x12));
  for (const Command& c : {tlbi_va(1, 0x1000), tlbi_asid(1), tlbi_all(), tlbi_vaa(0x1000), sync()})
    EXPECT_EQ(stream_named(c), std::nullopt) << smmu::opcode_name(c.get(Command::Opcode));
}

// A command whose contents the host refuses is CERROR_ILL (the guest skips it); one the host could not carry
// out now is CERROR_ABT (the guest retries it) - IHI 0070 7.1, Linux's arm_smmu_cmdq_skip_err.
TEST(CommandRules, AHostRefusalIsIllegalAndAHostFailureAnAbort) {
  for (int err : {EIO, EINVAL, EOPNOTSUPP, E2BIG, ENOENT}) EXPECT_EQ(cerror_for_host_errno(err), smmu::Cerror::ill) << err;
  for (int err : {ENOMEM, EFAULT, EINTR, EBUSY}) EXPECT_EQ(cerror_for_host_errno(err), smmu::Cerror::abt) << err;
}

}  // namespace
}  // namespace vsmmu::invalidation
