// The one printer of architecture records: each record is a list of FieldDesc (from the opcode and event
// tables, or the field lists below), and each Show kind names its values here and nowhere else.
#include "smmu/format.hpp"

#include <array>
#include <iterator>

namespace vsmmu::smmu {
namespace {

// Value names per Show kind, indexed by the raw value; an empty or missing name is a reserved encoding,
// printed as raw hex.
using Names = std::span<const std::string_view>;

constexpr std::string_view kTlbiTg[] = {"any", "4K", "16K", "64K"};
constexpr std::string_view kSyncCs[] = {"none", "IRQ", "SEV"};
constexpr std::string_view kPriResp[] = {"denied", "failure", "success"};
constexpr std::string_view kResumeAction[] = {"term", "retry", "abort"};
constexpr std::string_view kRnW[] = {"W", "R"};
constexpr std::string_view kEvtClass[] = {"CD", "TT", "IN"};
constexpr std::string_view kSteConfig[] = {"abort", "", "", "", "bypass", "s1_translate", "s2_translate", "nested"};
constexpr std::string_view kS1Fmt[] = {"linear", "2lvl_4K", "2lvl_64K"};
constexpr std::string_view kS1Dss[] = {"terminate", "bypass", "substream0"};
constexpr std::string_view kEats[] = {"abort", "translate", "s1chk"};
constexpr std::string_view kStrw[] = {"EL1", "EL3", "EL2", "EL2_E2H"};
constexpr std::string_view kCache[] = {"NC", "WBRA", "WT", "WB"};
constexpr std::string_view kShare[] = {"NSH", "", "OSH", "ISH"};
constexpr std::string_view kTg0[] = {"4K", "64K", "16K"};
constexpr std::string_view kTg1[] = {"", "16K", "4K", "64K"};
constexpr std::string_view kAddrSize[] = {"32bit", "36bit", "40bit", "42bit", "44bit", "48bit", "52bit", "56bit"};
constexpr std::string_view kTtf[] = {"", "AArch32", "AArch64", "AArch32+AArch64"};
constexpr std::string_view kHttu[] = {"none", "A", "AD", "AD+table_A"};
constexpr std::string_view kTtEndian[] = {"mixed", "", "LE", "BE"};
constexpr std::string_view kStallModel[] = {"stall+terminate", "terminate", "stall_forced"};
constexpr std::string_view kStLevel[] = {"linear", "2lvl"};
constexpr std::string_view kVax[] = {"48bit", "52bit", "56bit"};
constexpr std::string_view kStrtabFmt[] = {"linear", "2lvl"};
constexpr std::string_view kCr1Cache[] = {"NC", "WB", "WT"};
constexpr std::string_view kCerror[] = {"NONE", "ILL", "ABT", "ATC_INV_SYNC"};

constexpr Names names(Show show) {
  switch (show) {
    case Show::tlbi_tg: return kTlbiTg;
    case Show::sync_cs: return kSyncCs;
    case Show::pri_resp: return kPriResp;
    case Show::resume_action: return kResumeAction;
    case Show::rnw: return kRnW;
    case Show::evt_class: return kEvtClass;
    case Show::ste_config: return kSteConfig;
    case Show::s1fmt: return kS1Fmt;
    case Show::s1dss: return kS1Dss;
    case Show::eats: return kEats;
    case Show::strw: return kStrw;
    case Show::cache: return kCache;
    case Show::share: return kShare;
    case Show::tg0: return kTg0;
    case Show::tg1: return kTg1;
    case Show::addr_size: return kAddrSize;
    case Show::ttf: return kTtf;
    case Show::httu: return kHttu;
    case Show::ttendian: return kTtEndian;
    case Show::stall_model: return kStallModel;
    case Show::st_level: return kStLevel;
    case Show::vax: return kVax;
    case Show::strtab_fmt: return kStrtabFmt;
    case Show::cr1_cache: return kCr1Cache;
    case Show::cerror: return kCerror;
    case Show::dec:
    case Show::hex:
    case Show::addr:
    case Show::flag:
    case Show::ssv:
    case Show::ssid: break;
  }
  return {};
}

void append_value(std::string& out, Show show, std::uint64_t v) {
  auto it = std::back_inserter(out);
  if (show == Show::dec || show == Show::flag) {
    fmt::format_to(it, "{}", v);
    return;
  }
  Names n = names(show);
  if (v < n.size() && !n[v].empty())
    out += n[v];
  else
    fmt::format_to(it, "{:#x}", v);
}

// Appends " Name=value" for each field; an SSID whose record says SSV == 0 prints "-".
void append_fields(std::string& out, std::span<const std::uint64_t> dw, std::span<const FieldDesc> fields) {
  bool ssv = true;
  for (const auto& f : fields)
    if (f.show == Show::ssv) ssv = f.value(dw) != 0;
  for (const auto& f : fields) {
    const std::uint64_t v = f.value(dw);
    if (f.show == Show::ssv) continue;
    if (f.show == Show::flag) {
      if (v != 0) (out += ' ') += f.name;
      continue;
    }
    ((out += ' ') += f.name) += '=';
    if (f.show == Show::ssid && !ssv)
      out += '-';
    else
      append_value(out, f.show, v);
  }
}

template <class R>
std::string print(std::string_view title, const R& rec, std::span<const FieldDesc> fields) {
  std::string out(title);
  append_fields(out, rec.dw, fields);
  return out;
}

// The raw words of a record nothing else can say anything about.
template <class R>
void append_raw(std::string& out, const R& rec) {
  for (std::size_t i = 0; i < R::words; ++i) fmt::format_to(std::back_inserter(out), " dw{}={:#x}", i, rec.dw[i]);
}

// ---- STE (IHI 0070 5.2): fields grouped by the Config that uses them.
constexpr std::array kSteHead{describe("V", Ste::V), describe("Config", Ste::Config, Show::ste_config)};
constexpr std::array kSteS1{
    describe("S1Fmt", Ste::S1Fmt, Show::s1fmt),     describe("S1ContextPtr", Ste::S1ContextPtr, Show::addr),
    describe("S1CDMax", Ste::S1CDMax),              describe("S1DSS", Ste::S1DSS, Show::s1dss),
    describe("S1CIR", Ste::S1CIR, Show::cache),     describe("S1COR", Ste::S1COR, Show::cache),
    describe("S1CSH", Ste::S1CSH, Show::share),     describe("S1STALLD", Ste::S1STALLD),
};
// Fields that apply whenever traffic passes (stage 1, stage 2 or neither translating).
constexpr std::array kSteCommon{
    describe("EATS", Ste::EATS, Show::eats), describe("STRW", Ste::STRW, Show::strw),
    describe("MEV", Ste::MEV),               describe("SHCFG", Ste::SHCFG),
};
constexpr std::array kSteS2{
    describe("S2VMID", Ste::S2VMID),          describe("S2T0SZ", Ste::S2T0SZ),
    describe("S2SL0", Ste::S2SL0),            describe("S2IR0", Ste::S2IR0, Show::cache),
    describe("S2OR0", Ste::S2OR0, Show::cache), describe("S2SH0", Ste::S2SH0, Show::share),
    describe("S2TG", Ste::S2TG, Show::tg0),   describe("S2PS", Ste::S2PS, Show::addr_size),
    describe("S2AA64", Ste::S2AA64),          describe("S2ENDI", Ste::S2ENDI),
    describe("S2AFFD", Ste::S2AFFD),          describe("S2PTW", Ste::S2PTW),
    describe("S2HD", Ste::S2HD),              describe("S2HA", Ste::S2HA),
    describe("S2S", Ste::S2S),                describe("S2R", Ste::S2R),
    describe("S2FWB", Ste::S2FWB),            describe("S2TTB", Ste::S2TTB, Show::addr),
};

// ---- CD (IHI 0070 5.4). TTB1's half is printed only when walks through it are enabled (EPD1 == 0).
constexpr std::array kCdMain{
    describe("V", Cd::V),
    describe("ASID", Cd::ASID),
    describe("T0SZ", Cd::T0SZ),
    describe("TG0", Cd::TG0, Show::tg0),
    describe("IR0", Cd::IR0, Show::cache),
    describe("OR0", Cd::OR0, Show::cache),
    describe("SH0", Cd::SH0, Show::share),
    describe("EPD0", Cd::EPD0),
    describe("TTB0", Cd::TTB0, Show::addr),
    describe("EPD1", Cd::EPD1),
};
constexpr std::array kCdTtb1{
    describe("T1SZ", Cd::T1SZ),
    describe("TG1", Cd::TG1, Show::tg1),
    describe("IR1", Cd::IR1, Show::cache),
    describe("OR1", Cd::OR1, Show::cache),
    describe("SH1", Cd::SH1, Show::share),
    describe("TTB1", Cd::TTB1, Show::addr),
};
constexpr std::array kCdTail{
    describe("IPS", Cd::IPS, Show::addr_size), describe("AA64", Cd::AA64), describe("ENDI", Cd::ENDI),
    describe("AFFD", Cd::AFFD), describe("WXN", Cd::WXN), describe("UWXN", Cd::UWXN), describe("TBI0", Cd::TBI0),
    describe("TBI1", Cd::TBI1), describe("PAN", Cd::PAN), describe("HD", Cd::HD), describe("HA", Cd::HA),
    describe("S", Cd::S), describe("R", Cd::R), describe("A", Cd::A), describe("ASET", Cd::ASET),
    describe("MAIR", Cd::MAIR, Show::hex),
};

constexpr std::array kStreamTableL1{describe("Span", StreamTableL1::Span),
                                    describe("L2Ptr", StreamTableL1::L2Ptr, Show::addr)};
constexpr std::array kCdTableL1{describe("V", CdTableL1::V), describe("L2Ptr", CdTableL1::L2Ptr, Show::addr)};

// ---- Registers (IHI 0070 6.3).
constexpr std::array kIdr0{
    describe("S2P", Idr0::S2P),       describe("S1P", Idr0::S1P),           describe("TTF", Idr0::TTF, Show::ttf),
    describe("COHACC", Idr0::COHACC), describe("BTM", Idr0::BTM),           describe("HTTU", Idr0::HTTU, Show::httu),
    describe("DORMHINT", Idr0::DORMHINT), describe("Hyp", Idr0::Hyp),      describe("ATS", Idr0::ATS),
    describe("NS1ATS", Idr0::NS1ATS), describe("ASID16", Idr0::ASID16),     describe("MSI", Idr0::MSI),
    describe("SEV", Idr0::SEV),       describe("ATOS", Idr0::ATOS),         describe("PRI", Idr0::PRI),
    describe("VMW", Idr0::VMW),       describe("VMID16", Idr0::VMID16),     describe("CD2L", Idr0::CD2L),
    describe("VATOS", Idr0::VATOS),   describe("TTENDIAN", Idr0::TTENDIAN, Show::ttendian),
    describe("ATSRECERR", Idr0::ATSRECERR),
    describe("STALL_MODEL", Idr0::STALL_MODEL, Show::stall_model),
    describe("TERM_MODEL", Idr0::TERM_MODEL), describe("ST_LEVEL", Idr0::ST_LEVEL, Show::st_level),
    describe("RME_IMPL", Idr0::RME_IMPL),
};
constexpr std::array kIdr1{
    describe("SIDSIZE", Idr1::SIDSIZE),   describe("SSIDSIZE", Idr1::SSIDSIZE),
    describe("PRIQS", Idr1::PRIQS),       describe("EVENTQS", Idr1::EVENTQS),
    describe("CMDQS", Idr1::CMDQS),       describe("ATTR_PERMS_OVR", Idr1::ATTR_PERMS_OVR),
    describe("ATTR_TYPES_OVR", Idr1::ATTR_TYPES_OVR), describe("REL", Idr1::REL),
    describe("QUEUES_PRESET", Idr1::QUEUES_PRESET),   describe("TABLES_PRESET", Idr1::TABLES_PRESET),
    describe("ECMDQ", Idr1::ECMDQ),
};
constexpr std::array kIdr2{describe("BA_VATOS", Idr2::BA_VATOS, Show::hex)};
constexpr std::array kIdr3{
    describe("HAD", Idr3::HAD),     describe("PBHA", Idr3::PBHA),       describe("XNX", Idr3::XNX),
    describe("PPS", Idr3::PPS),     describe("MPAM", Idr3::MPAM),       describe("FWB", Idr3::FWB),
    describe("STT", Idr3::STT),     describe("RIL", Idr3::RIL),         describe("BBML", Idr3::BBML),
    describe("E0PD", Idr3::E0PD),   describe("PTWNNC", Idr3::PTWNNC),   describe("DPT", Idr3::DPT),
    describe("PASIDTT", Idr3::PASIDTT), describe("EPAN", Idr3::EPAN),   describe("S1PI", Idr3::S1PI),
    describe("S2PI", Idr3::S2PI),   describe("S2PO", Idr3::S2PO),       describe("THE", Idr3::THE),
    describe("MTEPERM", Idr3::MTEPERM), describe("AIE", Idr3::AIE),
};
constexpr std::array kIdr5{
    describe("OAS", Idr5::OAS, Show::addr_size), describe("GRAN4K", Idr5::GRAN4K),
    describe("GRAN16K", Idr5::GRAN16K),          describe("GRAN64K", Idr5::GRAN64K),
    describe("DS", Idr5::DS),                    describe("D128", Idr5::D128),
    describe("VAX", Idr5::VAX, Show::vax),       describe("STALL_MAX", Idr5::STALL_MAX),
};
constexpr std::array kIidr{
    describe("ProductID", Iidr::ProductID, Show::hex), describe("Variant", Iidr::Variant),
    describe("Revision", Iidr::Revision),              describe("Implementer", Iidr::Implementer, Show::hex),
};
constexpr std::array kAidr{describe("ArchMajorRev", Aidr::ArchMajorRev), describe("ArchMinorRev", Aidr::ArchMinorRev)};
constexpr std::array kCr0{
    describe("SMMUEN", Cr0::SMMUEN), describe("PRIQEN", Cr0::PRIQEN), describe("EVENTQEN", Cr0::EVENTQEN),
    describe("CMDQEN", Cr0::CMDQEN), describe("ATSCHK", Cr0::ATSCHK), describe("VMW", Cr0::VMW),
    describe("DPT_WALK_EN", Cr0::DPT_WALK_EN),
};
constexpr std::array kCr1{
    describe("QUEUE_IC", Cr1::QUEUE_IC, Show::cr1_cache), describe("QUEUE_OC", Cr1::QUEUE_OC, Show::cr1_cache),
    describe("QUEUE_SH", Cr1::QUEUE_SH, Show::share),     describe("TABLE_IC", Cr1::TABLE_IC, Show::cr1_cache),
    describe("TABLE_OC", Cr1::TABLE_OC, Show::cr1_cache), describe("TABLE_SH", Cr1::TABLE_SH, Show::share),
};
constexpr std::array kCr2{describe("E2H", Cr2::E2H), describe("RECINVSID", Cr2::RECINVSID), describe("PTM", Cr2::PTM),
                          describe("REC_CFG_ATS", Cr2::REC_CFG_ATS)};
constexpr std::array kStatusr{describe("DORMANT", Statusr::DORMANT)};
constexpr std::array kGbpa{
    describe("Update", Gbpa::Update),   describe("ABORT", Gbpa::ABORT),     describe("INSTCFG", Gbpa::INSTCFG),
    describe("PRIVCFG", Gbpa::PRIVCFG), describe("SHCFG", Gbpa::SHCFG),     describe("ALLOCCFG", Gbpa::ALLOCCFG),
    describe("MTCFG", Gbpa::MTCFG),     describe("MemAttr", Gbpa::MemAttr),
};
constexpr std::array kIrqCtrl{describe("GERROR_IRQEN", IrqCtrl::GERROR_IRQEN),
                              describe("PRIQ_IRQEN", IrqCtrl::PRIQ_IRQEN),
                              describe("EVENTQ_IRQEN", IrqCtrl::EVENTQ_IRQEN)};
constexpr std::array kGerror{
    describe("CMDQ_ERR", Gerror::CMDQ_ERR, Show::flag),
    describe("EVTQ_ABT_ERR", Gerror::EVTQ_ABT_ERR, Show::flag),
    describe("PRIQ_ABT_ERR", Gerror::PRIQ_ABT_ERR, Show::flag),
    describe("MSI_CMDQ_ABT_ERR", Gerror::MSI_CMDQ_ABT_ERR, Show::flag),
    describe("MSI_EVTQ_ABT_ERR", Gerror::MSI_EVTQ_ABT_ERR, Show::flag),
    describe("MSI_PRIQ_ABT_ERR", Gerror::MSI_PRIQ_ABT_ERR, Show::flag),
    describe("MSI_GERROR_ABT_ERR", Gerror::MSI_GERROR_ABT_ERR, Show::flag),
    describe("SFM_ERR", Gerror::SFM_ERR, Show::flag),
    describe("CMDQP_ERR", Gerror::CMDQP_ERR, Show::flag),
    describe("DPT_ERR", Gerror::DPT_ERR, Show::flag),
};
constexpr std::array kStrtabBase{describe("ADDR", StrtabBase::ADDR, Show::addr), describe("RA", StrtabBase::RA)};
constexpr std::array kStrtabBaseCfg{describe("FMT", StrtabBaseCfg::FMT, Show::strtab_fmt),
                                    describe("LOG2SIZE", StrtabBaseCfg::LOG2SIZE),
                                    describe("SPLIT", StrtabBaseCfg::SPLIT)};
constexpr std::array kQueueBase{describe("ADDR", QueueBase::ADDR, Show::addr),
                                describe("LOG2SIZE", QueueBase::LOG2SIZE), describe("RA/WA", QueueBase::RA)};
constexpr std::array kQueueProd{describe("WR", QueueProd::WR, Show::hex), describe("OVFLG", QueueProd::OVFLG)};
constexpr std::array kQueueCons{describe("RD", QueueCons::RD, Show::hex),
                                describe("ERR", QueueCons::ERR, Show::cerror),
                                describe("OVACKFLG", QueueCons::OVACKFLG)};
constexpr std::array kIrqCfg0{describe("ADDR", IrqCfg0::ADDR, Show::addr)};
constexpr std::array kIrqCfg1{describe("DATA", IrqCfg1::DATA, Show::hex)};
constexpr std::array kIrqCfg2{describe("SH", IrqCfg2::SH, Show::share), describe("MemAttr", IrqCfg2::MemAttr, Show::hex),
                              describe("LO", IrqCfg2::LO)};

}  // namespace

std::string to_string(const Ste& ste) {
  std::string out = print("STE", ste, kSteHead);
  const StreamConfig config = ste.get(Ste::Config);
  // V == 0 makes every other field IGNORED; abort and the reserved Configs use nothing else (5.2).
  if (!ste.get(Ste::V) || config == StreamConfig::abort || is_reserved(config)) return out;
  if (has_stage1(config)) append_fields(out, ste.dw, kSteS1);
  append_fields(out, ste.dw, kSteCommon);
  if (has_stage2(config)) append_fields(out, ste.dw, kSteS2);
  return out;
}

std::string to_string(const StreamTableL1& l1) { return print("L1STD", l1, kStreamTableL1); }

std::string to_string(const Cd& cd) {
  std::string out = print("CD", cd, std::span(kCdMain).first(1));
  if (!cd.get(Cd::V)) return out;
  append_fields(out, cd.dw, std::span(kCdMain).subspan(1));
  if (!cd.get(Cd::EPD1)) append_fields(out, cd.dw, kCdTtb1);
  append_fields(out, cd.dw, kCdTail);
  return out;
}

std::string to_string(const CdTableL1& l1) { return print("L1CD", l1, kCdTableL1); }

std::string to_string(const Command& cmd) {
  const auto raw_op = static_cast<std::uint8_t>(cmd.raw(Command::Opcode));
  const auto info = opcode_info(raw_op);
  if (!info) {
    std::string out = fmt::format("CMD_UNKNOWN({:#04x})", raw_op);
    append_raw(out, cmd);
    return out;
  }
  // CFGI_ALL is spelled as CFGI_STE_RANGE with Range == 31 (IHI 0070 4.3.6).
  const bool cfgi_all = info->opcode == Opcode::CFGI_STE_RANGE && cmd.raw(Command::Range) == Command::kCfgiAllRange;
  std::string out = print(cfgi_all ? "CMD_CFGI_ALL" : info->name, cmd, info->fields);
  if (auto bad = res0_violation(cmd)) fmt::format_to(std::back_inserter(out), " RES0!(dw0={:#x} dw1={:#x})", bad.dw0, bad.dw1);
  return out;
}

std::string to_string(const Event& evt) {
  const auto raw_id = static_cast<std::uint8_t>(evt.raw(Event::ID));
  const auto info = event_info(raw_id);
  if (!info) {
    // 0xE0-0xEF are IMPLEMENTATION DEFINED events, the rest Reserved (IHI 0070 7.3.21).
    const bool impdef = raw_id >= 0xE0 && raw_id <= 0xEF;
    std::string out = fmt::format("EVT {}({:#04x})", impdef ? "IMPDEF" : "UNKNOWN", raw_id);
    append_raw(out, evt);
    return out;
  }
  return print(fmt::format("EVT {}", info->name), evt, info->fields);
}

std::string to_string(const Idr0& r) { return print("IDR0", r, kIdr0); }
std::string to_string(const Idr1& r) { return print("IDR1", r, kIdr1); }
std::string to_string(const Idr2& r) { return print("IDR2", r, kIdr2); }
std::string to_string(const Idr3& r) { return print("IDR3", r, kIdr3); }
std::string to_string(const Idr4& r) { return fmt::format("IDR4 {:#x}", r.value()); }
std::string to_string(const Idr5& r) { return print("IDR5", r, kIdr5); }
std::string to_string(const Iidr& r) { return print("IIDR", r, kIidr); }
std::string to_string(const Aidr& r) { return print("AIDR", r, kAidr); }
std::string to_string(const Cr0& r) { return print("CR0", r, kCr0); }
std::string to_string(const Cr1& r) { return print("CR1", r, kCr1); }
std::string to_string(const Cr2& r) { return print("CR2", r, kCr2); }
std::string to_string(const Statusr& r) { return print("STATUSR", r, kStatusr); }
std::string to_string(const Gbpa& r) { return print("GBPA", r, kGbpa); }
std::string to_string(const IrqCtrl& r) { return print("IRQ_CTRL", r, kIrqCtrl); }
std::string to_string(const Gerror& r) {
  std::string out = print("GERROR", r, kGerror);
  return out.size() == std::string_view("GERROR").size() ? out + " none" : out;
}
std::string to_string(const StrtabBase& r) { return print("STRTAB_BASE", r, kStrtabBase); }
std::string to_string(const StrtabBaseCfg& r) { return print("STRTAB_BASE_CFG", r, kStrtabBaseCfg); }
std::string to_string(const QueueBase& r) { return print("Q_BASE", r, kQueueBase); }
std::string to_string(const QueueProd& r) { return print("Q_PROD", r, kQueueProd); }
std::string to_string(const QueueCons& r) { return print("Q_CONS", r, kQueueCons); }
std::string to_string(const IrqCfg0& r) { return print("IRQ_CFG0", r, kIrqCfg0); }
std::string to_string(const IrqCfg1& r) { return print("IRQ_CFG1", r, kIrqCfg1); }
std::string to_string(const IrqCfg2& r) { return print("IRQ_CFG2", r, kIrqCfg2); }

}  // namespace vsmmu::smmu
