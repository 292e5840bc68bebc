// One-line renderings of decoded records, as logs and the CLI print them.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "smmu/format.hpp"

namespace vsmmu::smmu {
namespace {

Ste nested_ste() {
  Ste ste{};
  ste.set(Ste::V, true)
      .set(Ste::Config, StreamConfig::nested)
      .set(Ste::S1ContextPtr, 0x8000)
      .set(Ste::S1CSH, Shareability::inner)
      .set(Ste::S2VMID, 1)
      .set(Ste::S2T0SZ, 24)
      .set(Ste::S2SL0, 1)
      .set(Ste::S2PS, 5)
      .set(Ste::S2AA64, true)
      .set(Ste::S2TTB, 0x4000'0000);
  return ste;
}

TEST(FormatSte, NestedPrintsBothStages) {
  EXPECT_EQ(fmt::format("{}", nested_ste()),
            "STE V=1 Config=nested S1Fmt=linear S1ContextPtr=0x8000 S1CDMax=0 S1DSS=terminate S1CIR=NC S1COR=NC "
            "S1CSH=ISH S1STALLD=0 EATS=abort STRW=EL1 MEV=0 SHCFG=0 S2VMID=1 S2T0SZ=24 S2SL0=1 S2IR0=NC S2OR0=NC "
            "S2SH0=NSH S2TG=4K S2PS=48bit S2AA64=1 S2ENDI=0 S2AFFD=0 S2PTW=0 S2HD=0 S2HA=0 S2S=0 S2R=0 S2FWB=0 "
            "S2TTB=0x40000000");
}

// IHI 0070 5.2: S2 fields are IGNORED when stage 2 bypasses, S1 fields when stage 1 does.
TEST(FormatSte, OnlyTheStagesTheConfigUsesArePrinted) {
  Ste s1 = nested_ste();
  s1.set(Ste::Config, StreamConfig::s1_translate);
  const std::string s1_text = fmt::format("{}", s1);
  EXPECT_NE(s1_text.find("S1ContextPtr=0x8000"), std::string::npos);
  EXPECT_EQ(s1_text.find("S2"), std::string::npos);

  Ste s2 = nested_ste();
  s2.set(Ste::Config, StreamConfig::s2_translate);
  const std::string s2_text = fmt::format("{}", s2);
  EXPECT_EQ(s2_text.find("S1"), std::string::npos);
  EXPECT_NE(s2_text.find("S2TTB=0x40000000"), std::string::npos);

  Ste bypass = nested_ste();
  bypass.set(Ste::Config, StreamConfig::bypass);
  EXPECT_EQ(fmt::format("{}", bypass), "STE V=1 Config=bypass EATS=abort STRW=EL1 MEV=0 SHCFG=0");
}

TEST(FormatSte, InvalidAbortAndReservedPrintNothingElse) {
  Ste invalid = nested_ste();
  invalid.set(Ste::V, false);
  EXPECT_EQ(fmt::format("{}", invalid), "STE V=0 Config=nested");
  Ste abort = nested_ste();
  abort.set(Ste::Config, StreamConfig::abort);
  EXPECT_EQ(fmt::format("{}", abort), "STE V=1 Config=abort");
  Ste reserved = nested_ste();
  reserved.set(Ste::Config, StreamConfig::reserved2);
  EXPECT_EQ(fmt::format("{}", reserved), "STE V=1 Config=0x2");  // reserved encodings print raw
}

TEST(FormatCd, PrintsTtb0HalfAndSkipsDisabledTtb1) {
  Cd cd{};
  cd.set(Cd::V, true)
      .set(Cd::T0SZ, 16)
      .set(Cd::IPS, 5)
      .set(Cd::ASID, 5)
      .set(Cd::EPD1, true)
      .set(Cd::AA64, true)
      .set(Cd::TTB0, 0x8'0000)
      .set(Cd::MAIR, 0x44ff04);
  EXPECT_EQ(fmt::format("{}", cd),
            "CD V=1 ASID=5 T0SZ=16 TG0=4K IR0=NC OR0=NC SH0=NSH EPD0=0 TTB0=0x80000 EPD1=1 IPS=48bit AA64=1 ENDI=0 "
            "AFFD=0 WXN=0 UWXN=0 TBI0=0 TBI1=0 PAN=0 HD=0 HA=0 S=0 R=0 A=0 ASET=0 MAIR=0x44ff04");
  cd.set(Cd::EPD1, false).set(Cd::TG1, 2).set(Cd::T1SZ, 16).set(Cd::TTB1, 0x9'0000);
  EXPECT_NE(fmt::format("{}", cd).find("EPD1=0 T1SZ=16 TG1=4K IR1=NC OR1=NC SH1=NSH TTB1=0x90000 IPS"),
            std::string::npos);  // TG1 uses the TCR_EL1.TG1 encoding, 2 is 4KB
  EXPECT_EQ(fmt::format("{}", Cd{}), "CD V=0");
}

TEST(FormatL1, Descriptors) {
  EXPECT_EQ(fmt::format("{}", StreamTableL1{}.set(StreamTableL1::Span, 9).set(StreamTableL1::L2Ptr, 0x10000)),
            "L1STD Span=9 L2Ptr=0x10000");
  EXPECT_EQ(fmt::format("{}", CdTableL1{}.set(CdTableL1::V, true).set(CdTableL1::L2Ptr, 0x5000)),
            "L1CD V=1 L2Ptr=0x5000");
}

TEST(FormatCommand, PrintsOnlyTheOpcodesParameters) {
  Command cmd{};
  cmd.dw = {0x0005'0001'0000'0012ULL, 0x40'0701ULL};  // worked out in command_test (IHI 0070 4.4.2.4)
  EXPECT_EQ(fmt::format("{}", cmd), "CMD_TLBI_NH_VA VMID=1 ASID=5 Addr=0x400000 Leaf=1 TG=4K TTL=3 NUM=0 SCALE=0");

  Command sync{};
  sync.set(Command::Opcode, Opcode::CMD_SYNC).set(Command::CS, SyncCs::sev);
  EXPECT_EQ(fmt::format("{}", sync), "CMD_SYNC CS=SEV MSIAddr=0x0 MSIData=0x0 MSH=0 MSIAttr=0");

  Command atc{};
  atc.set(Command::Opcode, Opcode::ATC_INV).set(Command::SID, 0x10).set(Command::Size, 52);
  EXPECT_EQ(fmt::format("{}", atc), "CMD_ATC_INV SID=0x10 SSID=- Global=0 Addr=0x0 Size=52");
  atc.set(Command::SSV, true).set(Command::SSID, 3);
  EXPECT_EQ(fmt::format("{}", atc), "CMD_ATC_INV SID=0x10 SSID=0x3 Global=0 Addr=0x0 Size=52");
}

TEST(FormatCommand, CfgiAllUnknownAndRes0) {
  Command all{};
  all.set(Command::Opcode, Opcode::CFGI_STE_RANGE).set(Command::Range, 31);
  EXPECT_EQ(fmt::format("{}", all), "CMD_CFGI_ALL SID=0x0 SSec=0 Range=31");

  Command unknown{};
  unknown.dw = {0x1234'0000'0000'0099ULL, 0x5};
  EXPECT_EQ(fmt::format("{}", unknown), "CMD_UNKNOWN(0x99) dw0=0x1234000000000099 dw1=0x5");

  Command bad{};
  bad.set(Command::Opcode, Opcode::TLBI_NH_ALL).set(Command::VMID, 2).set(Command::ASID, 1);
  EXPECT_EQ(fmt::format("{}", bad), "CMD_TLBI_NH_ALL VMID=2 RES0!(dw0=0x1000000000000 dw1=0x0)");
}

TEST(FormatEvent, TranslationFaultReadsLikeTheSpec) {
  Event evt{};
  evt.set(Event::ID, EventId::F_TRANSLATION)
      .set(Event::SID, 0x10)
      .set(Event::InputAddr, 0x400000)
      .set(Event::CLASS, EventClass::IN)
      .set(Event::S2, true)
      .set(Event::IPA, 0x8000'0000);
  EXPECT_EQ(fmt::format("{}", evt),
            "EVT F_TRANSLATION SID=0x10 SSID=- Addr=0x400000 RnW=W InD=0 PnU=0 S2=1 CLASS=IN NSIPA=0 "
            "IPA=0x80000000 Stall=0 STAG=0x0");
  Event fetch{};
  fetch.set(Event::ID, EventId::F_CD_FETCH).set(Event::SID, 3).set(Event::SSV, true).set(Event::SSID, 1)
      .set(Event::FetchAddr, 0x1000'0040);
  EXPECT_EQ(fmt::format("{}", fetch), "EVT F_CD_FETCH SID=0x3 SSID=0x1 FetchAddr=0x10000040 GPCF=0 Reason=0x0");
  Event impdef{};
  impdef.dw[0] = 0xE3;
  EXPECT_EQ(fmt::format("{}", impdef), "EVT IMPDEF(0xe3) dw0=0xe3 dw1=0x0 dw2=0x0 dw3=0x0");
  Event reserved{};
  reserved.dw[0] = 0x30;
  EXPECT_EQ(fmt::format("{}", reserved), "EVT UNKNOWN(0x30) dw0=0x30 dw1=0x0 dw2=0x0 dw3=0x0");
}

TEST(FormatRegisters, IdRegistersOfAQemuSmmu) {
  EXPECT_EQ(fmt::format("{}", Idr0::of(0x0d44101b)),
            "IDR0 S2P=1 S1P=1 TTF=AArch64 COHACC=1 BTM=0 HTTU=none DORMHINT=0 Hyp=0 ATS=0 NS1ATS=0 ASID16=1 MSI=0 "
            "SEV=0 ATOS=0 PRI=0 VMW=0 VMID16=1 CD2L=0 VATOS=0 TTENDIAN=LE ATSRECERR=0 STALL_MODEL=terminate "
            "TERM_MODEL=1 ST_LEVEL=2lvl RME_IMPL=0");
  EXPECT_EQ(fmt::format("{}", Idr1::of(0x02730010)),
            "IDR1 SIDSIZE=16 SSIDSIZE=0 PRIQS=0 EVENTQS=19 CMDQS=19 ATTR_PERMS_OVR=0 ATTR_TYPES_OVR=0 REL=0 "
            "QUEUES_PRESET=0 TABLES_PRESET=0 ECMDQ=0");
  EXPECT_EQ(fmt::format("{}", Idr5::of(0x74)),
            "IDR5 OAS=44bit GRAN4K=1 GRAN16K=1 GRAN64K=1 DS=0 D128=0 VAX=48bit STALL_MAX=0");
  EXPECT_EQ(fmt::format("{}", Idr4::of(0x12)), "IDR4 0x12");
}

TEST(FormatRegisters, ControlAndQueueRegisters) {
  EXPECT_EQ(fmt::format("{}", Cr0::of(0xD)), "CR0 SMMUEN=1 PRIQEN=0 EVENTQEN=1 CMDQEN=1 ATSCHK=0 VMW=0 DPT_WALK_EN=0");
  EXPECT_EQ(fmt::format("{}", Gbpa::of(0x0010'1000)),
            "GBPA Update=0 ABORT=1 INSTCFG=0 PRIVCFG=0 SHCFG=1 ALLOCCFG=0 MTCFG=0 MemAttr=0");
  EXPECT_EQ(fmt::format("{}", Gerror::of(0x101)), "GERROR CMDQ_ERR SFM_ERR");
  EXPECT_EQ(fmt::format("{}", Gerror{}), "GERROR none");
  EXPECT_EQ(fmt::format("{}", StrtabBaseCfg::of(0x10210)), "STRTAB_BASE_CFG FMT=2lvl LOG2SIZE=16 SPLIT=8");
  EXPECT_EQ(fmt::format("{}", StrtabBaseCfg::of(0x30000)), "STRTAB_BASE_CFG FMT=0x3 LOG2SIZE=0 SPLIT=0");
  EXPECT_EQ(fmt::format("{}", QueueBase::of(0x4000'0000'0008'0008ULL)), "Q_BASE ADDR=0x80000 LOG2SIZE=8 RA/WA=1");
  EXPECT_EQ(fmt::format("{}", QueueCons::of(0x0100'0005)), "Q_CONS RD=0x5 ERR=ILL OVACKFLG=0");
  EXPECT_EQ(fmt::format("{:>12}", Cr2::of(2)), "CR2 E2H=0 RECINVSID=1 PTM=0 REC_CFG_ATS=0");  // width < text
}

}  // namespace
}  // namespace vsmmu::smmu
