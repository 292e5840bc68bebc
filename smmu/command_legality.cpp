#include "smmu/command_legality.hpp"

#include <array>

#include <fmt/format.h>

#include "smmu/id_features.hpp"

namespace vsmmu::smmu {

namespace {

// Opcode value -> its description (nullptr: Reserved). Judged for every command a guest writes: one index.
const OpcodeInfo* find_opcode(std::uint8_t value) {
  static const auto table = [] {
    std::array<const OpcodeInfo*, 256> t{};
    for (const auto& info : all_opcodes()) t[static_cast<std::uint8_t>(info.opcode)] = &info;
    return t;
  }();
  return table[value];
}

// Range invalidation (NUM, SCALE) and the TTL hint (IHI 0070 4.4.1.1): NUM and SCALE are RES0 without
// IDR3.RIL; NUM, SCALE and TTL are RES0 when TG = 0. TG (and TTL with it) alone, which 4.4.1.1 also makes RES0
// without RIL, is accepted and not acted on: the hint only narrows an invalidation, and the kernel decides
// for itself whether it takes it (docs/virtual-smmu.md, "Commands").
std::string range_problem(const Command& cmd, const CommandFeatures& f) {
  const bool has_range = cmd.get(Command::NUM) != 0 || cmd.get(Command::SCALE) != 0;
  if (has_range && !f.ril) return "range fields NUM/SCALE set but IDR3.RIL = 0 (they are RES0)";
  if (cmd.get(Command::TG) == 0) {
    if (cmd.get(Command::TTL) != 0) return "TTL hint given with TG = 0 (no granule: TTL is RES0)";
    if (has_range) return "range invalidation with TG = 0 (no granule: NUM/SCALE are RES0)";
  }
  return {};
}

// ASID[15:8] is RES0 with 8-bit ASIDs (IHI 0070 4.4).
std::string asid_problem(const Command& cmd, const CommandFeatures& f) {
  if (!f.asid16 && cmd.get(Command::ASID) > 0xff)
    return fmt::format("ASID {:#x} wider than 8 bits with IDR0.ASID16 = 0 (ASID[15:8] is RES0)", cmd.get(Command::ASID));
  return {};
}

// A StreamID beyond IDR1.SIDSIZE (IHI 0070 4.1.7).
std::string sid_problem(const Command& cmd, const CommandFeatures& f) {
  if (f.sid_bits < 32 && cmd.get(Command::SID) >> f.sid_bits)
    return fmt::format("SID {:#x} beyond the {} bits of IDR1.SIDSIZE", cmd.get(Command::SID), f.sid_bits);
  return {};
}

// Commands with SSV qualify their SSID by it; CFGI_CD always names one (a CD-table index, IHI 0070 4.3.3),
// which must be 0 without substreams (IDR1.SSIDSIZE = 0).
std::string ssid_problem(const Command& cmd, const CommandFeatures& f, bool always_present) {
  const bool present = always_present || cmd.get(Command::SSV);
  if (!present) return {};
  const std::uint64_t ssid = cmd.get(Command::SSID);
  if (f.ssid_bits == 0) {
    if (always_present && ssid == 0) return {};
    return always_present ? fmt::format("SSID {:#x} but IDR1.SSIDSIZE = 0 (no substreams)", ssid)
                          : "SSV = 1 but IDR1.SSIDSIZE = 0 (no substreams)";
  }
  if (ssid >> f.ssid_bits) return fmt::format("SSID {:#x} beyond the {} bits of IDR1.SSIDSIZE", ssid, f.ssid_bits);
  return {};
}

std::string missing(bool implemented, const char* feature) {
  return implemented ? std::string{} : fmt::format("the SMMU does not implement {}", feature);
}

// First non-empty problem, in the order the checks are given.
template <class... Checks>
std::string first_problem(Checks&&... checks) {
  std::string out;
  ((out.empty() ? (void)(out = checks()) : (void)0), ...);
  return out;
}

}  // namespace

CommandFeatures command_features(const IdRegisters& ids) {
  const IdFeatures id = IdFeatures::of(ids);
  CommandFeatures f;
  f.sid_bits = id.sidsize;
  f.ssid_bits = id.ssidsize;
  f.asid16 = id.asid16;
  f.ril = id.ril;
  f.ats = id.ats;
  f.pri = id.pri;
  f.stall = id.stall_model != StallModel::terminate;
  f.s1p = id.s1p;
  f.s2p = id.s2p;
  f.hyp = id.hyp;
  return f;
}

std::string command_problem(const Command& cmd, const CommandFeatures& f) {
  const OpcodeInfo* info = find_opcode(static_cast<std::uint8_t>(cmd.raw(Command::Opcode)));
  if (!info) return fmt::format("opcode {:#04x} is Reserved (IHI 0070 4.1.1)", cmd.raw(Command::Opcode));
  if (const std::uint64_t dw0 = cmd.dw[0] & ~info->dw0_defined, dw1 = cmd.dw[1] & ~info->dw1_defined; dw0 || dw1)
    return fmt::format("{} has RES0 bits set (dw0 {:#x}, dw1 {:#x})", info->name, dw0, dw1);
  // The Non-secure queue names no Secure stream (IHI 0070 4.1.6).
  if ((info->dw0_defined & Command::SSec.mask) != 0 && cmd.get(Command::SSec))
    return fmt::format("{}: SSec = 1 on the Non-secure command queue", info->name);

  auto range = [&] { return range_problem(cmd, f); };
  auto asid = [&] { return asid_problem(cmd, f); };
  auto sid = [&] { return sid_problem(cmd, f); };
  auto ssid = [&] { return ssid_problem(cmd, f, info->opcode == Opcode::CFGI_CD); };
  auto stage1 = [&] { return missing(f.s1p, "stage 1 (IDR0.S1P = 0)"); };
  auto stage2 = [&] { return missing(f.s2p, "stage 2 (IDR0.S2P = 0)"); };
  auto el2 = [&] { return missing(f.hyp && f.s1p, "EL2 translation regimes (IDR0.Hyp = 0)"); };

  std::string problem;
  switch (info->opcode) {
    case Opcode::TLBI_NSNH_ALL: break;
    case Opcode::TLBI_NH_ALL: problem = stage1(); break;
    case Opcode::TLBI_NH_ASID: problem = first_problem(stage1, asid); break;
    case Opcode::TLBI_NH_VA: problem = first_problem(stage1, asid, range); break;
    case Opcode::TLBI_NH_VAA: problem = first_problem(stage1, range); break;
    case Opcode::TLBI_EL2_ALL:
    case Opcode::TLBI_EL2_ASID:
    case Opcode::TLBI_EL2_VA:
    case Opcode::TLBI_EL2_VAA: problem = el2(); break;
    case Opcode::TLBI_S12_VMALL:
    case Opcode::TLBI_S2_IPA: problem = stage2(); break;
    // CDs exist only with stage 1: on an SMMU without IDR0.S1P, CFGI_CD and CFGI_CD_ALL are illegal (IHI 0070
    // 4.3.3, 4.3.4; tested in CommandRules.CdInvalidationsNeedStageOne).
    case Opcode::CFGI_CD: problem = first_problem(stage1, sid, ssid); break;
    case Opcode::CFGI_CD_ALL: problem = first_problem(stage1, sid); break;
    case Opcode::CFGI_STE: problem = sid(); break;
    case Opcode::CFGI_STE_RANGE: break;
    case Opcode::PREFETCH_CONFIG:
    case Opcode::PREFETCH_ADDR: problem = first_problem(sid, ssid); break;
    case Opcode::ATC_INV: {
      auto size = [&]() -> std::string {
        if (cmd.get(Command::Size) > 52) return fmt::format("Size {} above 52 (2^52 pages is everything)", cmd.get(Command::Size));
        return {};
      };
      problem = first_problem([&] { return missing(f.ats, "ATS (IDR0.ATS = 0)"); }, sid, ssid, size);
      break;
    }
    case Opcode::PRI_RESP: problem = first_problem([&] { return missing(f.pri, "PRI (IDR0.PRI = 0)"); }, sid, ssid); break;
    case Opcode::RESUME:
    case Opcode::STALL_TERM:
      problem = first_problem([&] { return missing(f.stall, "stalls (IDR0.STALL_MODEL = terminate)"); }, sid);
      break;
    // CS = 0b11 is Reserved (IHI 0070 4.7.3).
    case Opcode::CMD_SYNC:
      if (cmd.get(Command::CS) == SyncCs::reserved) problem = "CS = 0b11 is Reserved";
      break;
    // No VMS (IDR3.MPAM), no Secure state, no DPT is implemented by any SMMU of this project.
    default: problem = "the SMMU does not implement it (no VMS, Secure state or DPT)"; break;
  }
  return problem.empty() ? problem : fmt::format("{}: {}", info->name, problem);
}

}  // namespace vsmmu::smmu
