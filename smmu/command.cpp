// The opcode table (IHI 0070 4.1.1) with each opcode's parameters (4.2 - 4.7). Defined-bit masks are
// derived from the Command field definitions, so a field's position is written once, in command.hpp.
#include "smmu/command.hpp"

#include <algorithm>
#include <array>

namespace vsmmu::smmu {
namespace {

using C = Command;

// One opcode's parameter list, in print order, with its masks derived from the same fields.
constexpr std::size_t kMaxParams = 8;  // TLBI_NH_VA: VMID ASID Addr Leaf TG TTL NUM SCALE
struct OpcodeDef {
  Opcode opcode;
  std::string_view name;
  std::uint64_t dw0;
  std::uint64_t dw1;
  std::array<FieldDesc, kMaxParams> fields;
  std::size_t count;
};

template <class... Fs>
constexpr OpcodeDef op(Opcode opcode, std::string_view name, Named<Fs>... params) {
  static_assert(sizeof...(Fs) <= kMaxParams);
  return {opcode, name, mask_of<0>(C::Opcode, Fs{}...), mask_of<1>(Fs{}...),
          {describe(params.name, params.field, params.show)...}, sizeof...(Fs)};
}

// Parameters shared by several commands, named once.
constexpr auto kSid = named("SID", C::SID, Show::hex);
constexpr auto kSsid = named("SSID", C::SSID, Show::ssid);
constexpr auto kSsv = named("SSV", C::SSV, Show::ssv);
constexpr auto kSsec = named("SSec", C::SSec);
constexpr auto kVmid = named("VMID", C::VMID);
constexpr auto kAsid = named("ASID", C::ASID);
constexpr auto kAddr = named("Addr", C::Address, Show::addr);
constexpr auto kLeaf = named("Leaf", C::Leaf);
constexpr auto kTg = named("TG", C::TG, Show::tlbi_tg);
constexpr auto kTtl = named("TTL", C::TTL);
constexpr auto kNum = named("NUM", C::NUM);
constexpr auto kScale = named("SCALE", C::SCALE);
constexpr auto kIpa = named("IPA", C::IPA, Show::addr);

// The address-based TLBIs end with the address, Leaf and the range/level-hint fields (IHI 0070 4.4.1.1).
template <class... Pre, class A>
constexpr OpcodeDef by_addr(Opcode opcode, std::string_view name, Named<A> addr, Named<Pre>... pre) {
  return op(opcode, name, pre..., addr, kLeaf, kTg, kTtl, kNum, kScale);
}

// In opcode order (IHI 0070 4.1.1); checked below.
constexpr std::array kOpcodes{
    op(Opcode::PREFETCH_CONFIG, "CMD_PREFETCH_CONFIG", kSid, kSsid, kSsv, kSsec),
    // NS (meaningful on a Secure queue only, which vsmmu does not have) is not modelled.
    op(Opcode::PREFETCH_ADDR, "CMD_PREFETCH_ADDR", kSid, kSsid, kSsv, kSsec, kAddr, named("Size", C::PrefetchSize),
       named("Stride", C::Stride)),
    op(Opcode::CFGI_STE, "CMD_CFGI_STE", kSid, kSsec, kLeaf),
    op(Opcode::CFGI_STE_RANGE, "CMD_CFGI_STE_RANGE", kSid, kSsec, named("Range", C::Range)),
    // CFGI_CD's SubstreamID is a CD-table index with no SSV qualifier (IHI 0070 4.3.3).
    op(Opcode::CFGI_CD, "CMD_CFGI_CD", kSid, named("SSID", C::SSID, Show::hex), kSsec, kLeaf),
    op(Opcode::CFGI_CD_ALL, "CMD_CFGI_CD_ALL", kSid, kSsec),
    op(Opcode::CFGI_VMS_PIDM, "CMD_CFGI_VMS_PIDM", kVmid, kSsec),
    op(Opcode::TLBI_NH_ALL, "CMD_TLBI_NH_ALL", kVmid),
    op(Opcode::TLBI_NH_ASID, "CMD_TLBI_NH_ASID", kVmid, kAsid),
    by_addr(Opcode::TLBI_NH_VA, "CMD_TLBI_NH_VA", kAddr, kVmid, kAsid),
    by_addr(Opcode::TLBI_NH_VAA, "CMD_TLBI_NH_VAA", kAddr, kVmid),
    op(Opcode::TLBI_EL3_ALL, "CMD_TLBI_EL3_ALL"),
    by_addr(Opcode::TLBI_EL3_VA, "CMD_TLBI_EL3_VA", kAddr),
    op(Opcode::TLBI_EL2_ALL, "CMD_TLBI_EL2_ALL"),
    op(Opcode::TLBI_EL2_ASID, "CMD_TLBI_EL2_ASID", kAsid),
    by_addr(Opcode::TLBI_EL2_VA, "CMD_TLBI_EL2_VA", kAddr, kAsid),
    by_addr(Opcode::TLBI_EL2_VAA, "CMD_TLBI_EL2_VAA", kAddr),
    op(Opcode::TLBI_S12_VMALL, "CMD_TLBI_S12_VMALL", kVmid),
    // An IPA[51:12] rather than a VA (IHI 0070 4.1.6, 4.4.3.1).
    by_addr(Opcode::TLBI_S2_IPA, "CMD_TLBI_S2_IPA", kIpa, kVmid),
    op(Opcode::TLBI_NSNH_ALL, "CMD_TLBI_NSNH_ALL"),
    op(Opcode::ATC_INV, "CMD_ATC_INV", kSid, kSsid, kSsv, named("Global", C::Global), kAddr, named("Size", C::Size)),
    op(Opcode::PRI_RESP, "CMD_PRI_RESP", kSid, kSsid, kSsv, named("PRGIndex", C::PRGIndex),
       named("Resp", C::Resp, Show::pri_resp)),
    op(Opcode::RESUME, "CMD_RESUME", kSid, kSsec, named("STAG", C::STAG, Show::hex),
       named("Action", C::Action, Show::resume_action)),
    op(Opcode::STALL_TERM, "CMD_STALL_TERM", kSid, kSsec),
    op(Opcode::CMD_SYNC, "CMD_SYNC", named("CS", C::CS, Show::sync_cs), named("MSIAddr", C::MSIAddr, Show::addr),
       named("MSIData", C::MSIData, Show::hex), named("MSH", C::MSH), named("MSIAttr", C::MSIAttr)),
    // The Secure-only forms take the parameters of their Non-secure counterparts.
    op(Opcode::TLBI_S_EL2_ALL, "CMD_TLBI_S_EL2_ALL"),
    op(Opcode::TLBI_S_EL2_ASID, "CMD_TLBI_S_EL2_ASID", kAsid),
    by_addr(Opcode::TLBI_S_EL2_VA, "CMD_TLBI_S_EL2_VA", kAddr, kAsid),
    by_addr(Opcode::TLBI_S_EL2_VAA, "CMD_TLBI_S_EL2_VAA", kAddr),
    op(Opcode::TLBI_S_S12_VMALL, "CMD_TLBI_S_S12_VMALL", kVmid),
    // NS is not modelled, as for PREFETCH_ADDR.
    by_addr(Opcode::TLBI_S_S2_IPA, "CMD_TLBI_S_S2_IPA", kIpa, kVmid),
    op(Opcode::TLBI_SNH_ALL, "CMD_TLBI_SNH_ALL"),
    op(Opcode::DPTI_ALL, "CMD_DPTI_ALL"),
    // DPTI_PA's Address/SIZE/Leaf are not modelled: vsmmu always reports IDR3.DPT == 0, which makes the
    // command CERROR_ILL whatever it carries (IHI 0070 4.6.2).
    op(Opcode::DPTI_PA, "CMD_DPTI_PA"),
};
static_assert(std::ranges::is_sorted(kOpcodes, {}, &OpcodeDef::opcode), "kOpcodes must be in opcode order");

constexpr auto kInfos = [] {
  std::array<OpcodeInfo, kOpcodes.size()> out{};
  for (std::size_t i = 0; i < kOpcodes.size(); ++i) {
    const auto& d = kOpcodes[i];
    out[i] = OpcodeInfo{d.opcode, d.name, d.dw0, d.dw1, std::span<const FieldDesc>(d.fields.data(), d.count)};
  }
  return out;
}();

const OpcodeInfo* find(std::uint8_t value) {
  return find_code(kInfos, value, [](const OpcodeInfo& i) { return i.opcode; });
}

}  // namespace

std::optional<OpcodeInfo> opcode_info(std::uint8_t opcode) {
  if (const auto* i = find(opcode)) return *i;
  return std::nullopt;
}

std::span<const OpcodeInfo> all_opcodes() { return kInfos; }

std::string_view opcode_name(Opcode op) {
  const auto* i = find(static_cast<std::uint8_t>(op));
  return i ? i->name : std::string_view("UNKNOWN");
}

Res0Violation res0_violation(const Command& cmd) {
  const auto* i = find(static_cast<std::uint8_t>(cmd.raw(Command::Opcode)));
  if (!i) return {cmd.dw[0], cmd.dw[1]};
  return {cmd.dw[0] & ~i->dw0_defined, cmd.dw[1] & ~i->dw1_defined};
}

}  // namespace vsmmu::smmu
