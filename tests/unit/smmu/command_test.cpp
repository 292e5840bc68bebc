// Commands (IHI 0070 4): the opcode table, field positions, round trips and RES0 detection.
#include <gtest/gtest.h>

#include <bit>
#include <set>

#include "smmu/command.hpp"

namespace vsmmu::smmu {
namespace {

// IHI 0070 4.1.1: every architected opcode and its name; the rest of 0x00-0xFF is Reserved or IMPDEF.
TEST(CommandOpcodes, TableListsEveryArchitectedOpcodeOfIhi0070_4_1_1) {
  const std::pair<std::uint8_t, std::string_view> expected[] = {
      {0x01, "CMD_PREFETCH_CONFIG"}, {0x02, "CMD_PREFETCH_ADDR"},  {0x03, "CMD_CFGI_STE"},
      {0x04, "CMD_CFGI_STE_RANGE"},  {0x05, "CMD_CFGI_CD"},        {0x06, "CMD_CFGI_CD_ALL"},
      {0x07, "CMD_CFGI_VMS_PIDM"},   {0x10, "CMD_TLBI_NH_ALL"},    {0x11, "CMD_TLBI_NH_ASID"},
      {0x12, "CMD_TLBI_NH_VA"},      {0x13, "CMD_TLBI_NH_VAA"},    {0x18, "CMD_TLBI_EL3_ALL"},
      {0x1A, "CMD_TLBI_EL3_VA"},     {0x20, "CMD_TLBI_EL2_ALL"},   {0x21, "CMD_TLBI_EL2_ASID"},
      {0x22, "CMD_TLBI_EL2_VA"},     {0x23, "CMD_TLBI_EL2_VAA"},   {0x28, "CMD_TLBI_S12_VMALL"},
      {0x2A, "CMD_TLBI_S2_IPA"},     {0x30, "CMD_TLBI_NSNH_ALL"},  {0x40, "CMD_ATC_INV"},
      {0x41, "CMD_PRI_RESP"},        {0x44, "CMD_RESUME"},         {0x45, "CMD_STALL_TERM"},
      {0x46, "CMD_SYNC"},            {0x50, "CMD_TLBI_S_EL2_ALL"}, {0x51, "CMD_TLBI_S_EL2_ASID"},
      {0x52, "CMD_TLBI_S_EL2_VA"},   {0x53, "CMD_TLBI_S_EL2_VAA"}, {0x58, "CMD_TLBI_S_S12_VMALL"},
      {0x5A, "CMD_TLBI_S_S2_IPA"},   {0x60, "CMD_TLBI_SNH_ALL"},   {0x70, "CMD_DPTI_ALL"},
      {0x73, "CMD_DPTI_PA"},
  };
  std::set<unsigned> defined;
  for (auto [value, name] : expected) {
    auto info = opcode_info(value);
    ASSERT_TRUE(info) << std::hex << unsigned(value);
    EXPECT_EQ(static_cast<std::uint8_t>(info->opcode), value);
    EXPECT_EQ(info->name, name);
    EXPECT_EQ(opcode_name(static_cast<Opcode>(value)), name);
    defined.insert(value);
  }
  EXPECT_EQ(all_opcodes().size(), std::size(expected));
  for (unsigned v = 0; v < 256; ++v)
    if (!defined.contains(v)) {
      EXPECT_FALSE(opcode_info(static_cast<std::uint8_t>(v))) << std::hex << v;
      EXPECT_EQ(opcode_name(static_cast<Opcode>(v)), "UNKNOWN");
    }
}

// Every opcode's defined bits survive the 16-byte little-endian encoding (IHI 0070 4.1.1: entries are
// little-endian), and a command using only them has no RES0 violation, while each other bit is one.
TEST(CommandOpcodes, EveryOpcodeRoundTripsAndEveryUndefinedBitIsRes0) {
  for (const auto& info : all_opcodes()) {
    SCOPED_TRACE(info.name);
    Command cmd{};
    cmd.dw = {info.dw0_defined, info.dw1_defined};
    cmd.set(Command::Opcode, info.opcode);
    EXPECT_EQ(Command::from_bytes(cmd.to_bytes()), cmd);
    EXPECT_EQ(cmd.get(Command::Opcode), info.opcode);
    EXPECT_FALSE(res0_violation(cmd));
    // The opcode field is part of what every opcode defines.
    EXPECT_EQ(info.dw0_defined & Command::Opcode.mask, Command::Opcode.mask);
    for (unsigned w = 0; w < 2; ++w)
      for (unsigned bit = 0; bit < 64; ++bit) {
        const std::uint64_t b = 1ULL << bit;
        if ((w == 0 ? info.dw0_defined : info.dw1_defined) & b) continue;
        Command bad = cmd;
        bad.dw[w] |= b;
        auto v = res0_violation(bad);
        EXPECT_EQ(v.dw0, w == 0 ? b : 0U) << "dw" << w << " bit " << bit;
        EXPECT_EQ(v.dw1, w == 1 ? b : 0U) << "dw" << w << " bit " << bit;
      }
    // Each listed parameter reads back the bits it covers.
    for (const auto& f : info.fields) EXPECT_EQ(f.value(cmd.dw), f.mask >> f.shift) << f.name;
  }
}

// IHI 0070 4.4.2.4 CMD_TLBI_NH_VA(VMID, ASID, Addr, Leaf) with the 4.4.1.1 TG/TTL/NUM/SCALE fields:
// VMID[47:32], ASID[63:48] in dword 0; Leaf[0], TTL[9:8], TG[11:10], Address[63:12] in dword 1.
TEST(CommandFields, TlbiNhVaEncodesAsIhi0070_4_4_2_4) {
  Command cmd{};
  cmd.set(Command::Opcode, Opcode::TLBI_NH_VA)
      .set(Command::VMID, 1)
      .set(Command::ASID, 5)
      .set(Command::Address, 0x400000)
      .set(Command::Leaf, true)
      .set(Command::TG, 1)  // 4KB
      .set(Command::TTL, 3);
  EXPECT_EQ(cmd.dw[0], 0x0005000100000012ULL);
  EXPECT_EQ(cmd.dw[1], 0x0000000000400701ULL);
  EXPECT_FALSE(res0_violation(cmd));
}

// IHI 0070 4.4.1.1: NUM[16:12] and SCALE[24:20] give (NUM+1) * 2^SCALE granules; bit 25 joins SCALE
// only when IDR5.DS == 1, which vsmmu never advertises, so it is RES0.
TEST(CommandFields, TlbiRangeFieldsSitAtIhi0070_4_4_1_1) {
  Command cmd{};
  cmd.set(Command::Opcode, Opcode::TLBI_S2_IPA).set(Command::NUM, 31).set(Command::SCALE, 31);
  EXPECT_EQ(cmd.dw[0], 0x0000'0000'01F1'F02AULL);
  EXPECT_EQ(cmd.get(Command::NUM), 31U);
  EXPECT_EQ(cmd.get(Command::SCALE), 31U);
  EXPECT_FALSE(res0_violation(cmd));
  cmd.dw[0] |= 1ULL << 25;
  EXPECT_EQ(res0_violation(cmd).dw0, 1ULL << 25);
}

// IHI 0070 4.4.3.1: TLBI_S2_IPA carries IPA[51:12]; address bits 63:52 are RES0 there, unlike a VA.
TEST(CommandFields, S2IpaAddressStopsAtBit51) {
  Command cmd{};
  cmd.set(Command::Opcode, Opcode::TLBI_S2_IPA).set(Command::IPA, 0x000F'FFFF'FFFF'F000ULL);
  EXPECT_FALSE(res0_violation(cmd));
  cmd.dw[1] |= 1ULL << 52;
  EXPECT_EQ(res0_violation(cmd).dw1, 1ULL << 52);
  Command va{};
  va.set(Command::Opcode, Opcode::TLBI_NH_VA).set(Command::Address, 0xFFFF'FFFF'FFFF'F000ULL);
  EXPECT_FALSE(res0_violation(va));
}

// IHI 0070 4.3.2, 4.3.6: CMD_CFGI_ALL is CMD_CFGI_STE_RANGE (0x04) with Range == 31 in dword 1 [4:0].
TEST(CommandFields, CfgiAllIsCfgiSteRangeWithRange31) {
  Command cmd{};
  cmd.set(Command::Opcode, Opcode::CFGI_STE_RANGE).set(Command::Range, Command::kCfgiAllRange);
  EXPECT_EQ(cmd.dw[0], 0x04U);
  EXPECT_EQ(cmd.dw[1], 0x1FU);
  EXPECT_FALSE(res0_violation(cmd));
}

// IHI 0070 4.7.3 CMD_SYNC: CS[13:12], MSH[23:22], MSIAttr[27:24], MSIData[63:32]; MSIAddr[51:2].
TEST(CommandFields, CmdSyncEncodesAsIhi0070_4_7_3) {
  Command cmd{};
  cmd.set(Command::Opcode, Opcode::CMD_SYNC)
      .set(Command::CS, SyncCs::irq)
      .set(Command::MSH, 3)
      .set(Command::MSIAttr, 0xF)
      .set(Command::MSIData, 0xCAFE)
      .set(Command::MSIAddr, 0x0800'0040ULL);
  EXPECT_EQ(cmd.dw[0], 0x0000'CAFE'0FC0'1046ULL);
  EXPECT_EQ(cmd.dw[1], 0x0800'0040ULL);
  EXPECT_FALSE(res0_violation(cmd));
  EXPECT_FALSE(Command::MSIAddr.fits(0x0800'0042ULL));  // a 4-byte-aligned word address
}

// IHI 0070 4.3.3 CMD_CFGI_CD: SSec[10], SubstreamID[31:12], StreamID[63:32]; Leaf in dword 1 [0].
// 4.5.2 CMD_PRI_RESP: SSV[11]; PRGIndex[8:0] and Resp[13:12] in dword 1. 4.7.1 CMD_RESUME: Action[13:12]
// (Ac, Ab), StreamID[63:32]; STAG[15:0] in dword 1.
TEST(CommandFields, ConfigPriAndResumeEncodeAsIhi0070) {
  Command cd{};
  cd.set(Command::Opcode, Opcode::CFGI_CD).set(Command::SSec, true).set(Command::SSID, 3).set(Command::SID, 0x10)
      .set(Command::Leaf, true);
  EXPECT_EQ(cd.dw[0], 0x0000'0010'0000'3405ULL);
  EXPECT_EQ(cd.dw[1], 1U);
  Command pri{};
  pri.set(Command::Opcode, Opcode::PRI_RESP).set(Command::SSV, true).set(Command::SSID, 7).set(Command::SID, 2)
      .set(Command::PRGIndex, 0x1FF).set(Command::Resp, PriResp::success);
  EXPECT_EQ(pri.dw[0], 0x0000'0002'0000'7841ULL);
  EXPECT_EQ(pri.dw[1], 0x21FFULL);
  Command resume{};
  resume.set(Command::Opcode, Opcode::RESUME).set(Command::Action, ResumeAction::abort).set(Command::SID, 9)
      .set(Command::STAG, 0xBEEF);
  EXPECT_EQ(resume.dw[0], 0x0000'0009'0000'2044ULL);
  EXPECT_EQ(resume.dw[1], 0xBEEFULL);
  for (const auto& c : {cd, pri, resume}) EXPECT_FALSE(res0_violation(c));
}

// IHI 0070 4.1.5, 4.1.3: a parameter an opcode does not define is RES0 and may raise CERROR_ILL.
TEST(CommandRes0, ParametersOfOtherOpcodesAreRes0) {
  Command ste{};
  ste.set(Command::Opcode, Opcode::CFGI_STE).set(Command::SID, 0x10).set(Command::SSV, true);
  EXPECT_EQ(res0_violation(ste).dw0, Command::SSV.mask);  // CFGI_STE has no SubstreamID (4.3.1)
  Command all{};
  all.set(Command::Opcode, Opcode::TLBI_NH_ALL).set(Command::VMID, 3).set(Command::ASID, 1);
  EXPECT_EQ(res0_violation(all).dw0, 1ULL << 48);  // ASID[63:48]: TLBI_NH_ALL takes VMID only (4.4.2.1)
  Command atc{};
  atc.set(Command::Opcode, Opcode::ATC_INV).set(Command::SSec, true);
  EXPECT_EQ(res0_violation(atc).dw0, Command::SSec.mask);  // ATC_INV has no SSec (4.5.1)
}

TEST(CommandRes0, UndefinedOpcodeReportsEveryBit) {
  Command cmd{};
  cmd.dw = {0x1234'0000'0000'0099ULL, 0x5ULL};
  auto v = res0_violation(cmd);
  EXPECT_EQ(v.dw0, cmd.dw[0]);
  EXPECT_EQ(v.dw1, cmd.dw[1]);
}

// The Secure-only TLBIs take the parameters of their Non-secure counterparts (IHI 0070 4.4.2.11-14,
// 4.4.3.3-4, 4.4.4.2), apart from the NS bit of TLBI_S_S2_IPA that vsmmu does not model.
TEST(CommandOpcodes, SecureFormsMirrorTheirNonSecureForms) {
  const std::pair<std::uint8_t, std::uint8_t> pairs[] = {{0x50, 0x20}, {0x51, 0x21}, {0x52, 0x22}, {0x53, 0x23},
                                                          {0x58, 0x28}, {0x5A, 0x2A}, {0x60, 0x30}};
  for (auto [s, ns] : pairs) {
    auto a = opcode_info(s);
    auto b = opcode_info(ns);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->dw0_defined & ~Command::Opcode.mask, b->dw0_defined & ~Command::Opcode.mask) << a->name;
    EXPECT_EQ(a->dw1_defined, b->dw1_defined) << a->name;
  }
}

// Commands with an SSV bit qualify a SubstreamID (IHI 0070 4.1.6); CFGI_CD's SubstreamID has none.
TEST(CommandOpcodes, SsvComesWithSubstreamId) {
  for (const auto& info : all_opcodes()) {
    const bool ssv = (info.dw0_defined & Command::SSV.mask) != 0;
    const bool ssid = (info.dw0_defined & Command::SSID.mask) == Command::SSID.mask;
    if (ssv) {
      EXPECT_TRUE(ssid) << info.name;
    }
    if (ssid && info.opcode != Opcode::CFGI_CD) {
      EXPECT_TRUE(ssv) << info.name;
    }
  }
}

}  // namespace
}  // namespace vsmmu::smmu
