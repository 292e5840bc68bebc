#include "invalidation/command_rules.hpp"

#include <array>

#include <fmt/format.h>

namespace vsmmu::invalidation {

using smmu::Command;
using smmu::Opcode;

namespace {

Verdict illegal(std::string reason) { return {Disposition::illegal, std::move(reason)}; }

// Opcode value -> its description (nullptr: not defined by the architecture). classify() runs for every guest
// command: one index instead of the two table searches of smmu::opcode_info + smmu::res0_violation.
const smmu::OpcodeInfo* find_opcode(std::uint8_t value) {
  static const auto table = [] {
    std::array<const smmu::OpcodeInfo*, 256> t{};
    for (const auto& info : smmu::all_opcodes()) t[static_cast<std::uint8_t>(info.opcode)] = &info;
    return t;
  }();
  return table[value];
}

// Range invalidation fields (NUM, SCALE) and the TTL hint, checked the way the kernel's strict validation does:
// range fields only when RIL is advertised; TTL and range need a granule (TG != 0) (IHI 0070 4.4.1.1).
std::string range_problem(const Command& cmd, const AdvertisedFeatures& f) {
  const bool has_range = cmd.get(Command::NUM) != 0 || cmd.get(Command::SCALE) != 0;
  if (has_range && !f.ril) return "range fields NUM/SCALE set but the vSMMU does not advertise RIL (IDR3.RIL=0)";
  if (cmd.get(Command::TG) == 0) {
    if (cmd.get(Command::TTL) != 0) return "TTL hint given with TG=0 (no granule)";
    if (has_range) return "range invalidation with TG=0 (no granule)";
  }
  return {};
}

std::string asid_problem(const Command& cmd, const AdvertisedFeatures& f) {
  if (!f.asid16 && cmd.get(Command::ASID) > 0xff)
    return fmt::format("ASID {:#x} wider than the advertised 8 bits (IDR0.ASID16=0)", cmd.get(Command::ASID));
  return {};
}

std::string sid_problem(const Command& cmd, const AdvertisedFeatures& f) {
  if (f.sid_bits < 32 && cmd.get(Command::SID) >> f.sid_bits)
    return fmt::format("SID {:#x} beyond the advertised {} bits (IDR1.SIDSIZE)", cmd.get(Command::SID), f.sid_bits);
  return {};
}

// Commands with SSV qualify their SSID by it; CFGI_CD always names one (a CD-table index, IHI 0070 4.3.3),
// which must be 0 when the vSMMU advertises no substreams.
std::string ssid_problem(const Command& cmd, const AdvertisedFeatures& f, bool always_present) {
  const bool present = always_present || cmd.get(Command::SSV);
  if (!present) return {};
  const std::uint64_t ssid = cmd.get(Command::SSID);
  if (f.ssid_bits == 0) {
    if (always_present && ssid == 0) return {};
    return always_present ? fmt::format("SSID {:#x} but the vSMMU advertises no substreams (IDR1.SSIDSIZE=0)", ssid)
                          : "SSV=1 but the vSMMU advertises no substreams (IDR1.SSIDSIZE=0)";
  }
  if (ssid >> f.ssid_bits) return fmt::format("SSID {:#x} beyond the advertised {} bits (IDR1.SSIDSIZE)", ssid, f.ssid_bits);
  return {};
}

// First non-empty problem, in the order the checks are given.
template <class... Checks>
std::string first_problem(Checks&&... checks) {
  std::string out;
  ((out.empty() ? (void)(out = checks()) : (void)0), ...);
  return out;
}

}  // namespace

Verdict classify(const Command& cmd, const AdvertisedFeatures& f) {
  const smmu::OpcodeInfo* info = find_opcode(static_cast<std::uint8_t>(cmd.raw(Command::Opcode)));
  if (!info) return illegal(fmt::format("opcode {:#04x} is not defined by the architecture", cmd.raw(Command::Opcode)));
  // smmu::res0_violation, with the description already found
  if (const smmu::Res0Violation res0{cmd.dw[0] & ~info->dw0_defined, cmd.dw[1] & ~info->dw1_defined})
    return illegal(fmt::format("{} has RES0 bits set (dw0 {:#x}, dw1 {:#x})", info->name, res0.dw0, res0.dw1));

  auto verdict = [&](Disposition d, std::string problem) {
    return problem.empty() ? Verdict{d, {}} : illegal(fmt::format("{}: {}", info->name, problem));
  };
  auto range = [&] { return range_problem(cmd, f); };
  auto asid = [&] { return asid_problem(cmd, f); };
  auto sid = [&] { return sid_problem(cmd, f); };
  auto ssid = [&] { return ssid_problem(cmd, f, info->opcode == Opcode::CFGI_CD); };

  switch (info->opcode) {
    case Opcode::TLBI_NH_ALL:
    case Opcode::TLBI_NSNH_ALL:
      return verdict(Disposition::forward, {});
    case Opcode::TLBI_NH_ASID:
      return verdict(Disposition::forward, asid());
    case Opcode::TLBI_NH_VA:
      return verdict(Disposition::forward, first_problem(asid, range));
    case Opcode::TLBI_NH_VAA:
      return verdict(Disposition::forward, range());
    case Opcode::CFGI_CD:
      return verdict(Disposition::forward, first_problem(sid, ssid));
    case Opcode::CFGI_CD_ALL:
      return verdict(Disposition::forward, sid());
    case Opcode::ATC_INV: {
      if (!f.ats) return illegal("ATC_INV: the vSMMU does not advertise ATS (IDR0.ATS=0)");
      auto size = [&]() -> std::string {
        if (cmd.get(Command::Size) > 52) return fmt::format("Size {} above 52 (2^52 pages is everything)", cmd.get(Command::Size));
        return {};
      };
      return verdict(Disposition::forward, first_problem(sid, ssid, size));
    }
    case Opcode::CFGI_STE:
    case Opcode::CFGI_STE_RANGE:
      return verdict(Disposition::reinstall_ste, info->opcode == Opcode::CFGI_STE ? sid() : std::string{});
    case Opcode::PREFETCH_CONFIG:
    case Opcode::PREFETCH_ADDR:
      return verdict(Disposition::local_noop, first_problem(sid, ssid));
    case Opcode::CMD_SYNC:
      return verdict(Disposition::sync, {});
    case Opcode::PRI_RESP:
      if (!f.pri) return illegal("PRI_RESP: the vSMMU does not advertise PRI (IDR0.PRI=0)");
      return verdict(Disposition::fault_response, first_problem(sid, ssid));
    case Opcode::RESUME:
    case Opcode::STALL_TERM:
      if (!f.stall) return illegal(fmt::format("{}: the vSMMU does not advertise stalls (IDR0.STALL_MODEL)", info->name));
      return verdict(Disposition::fault_response, sid());
    default:
      // Stage-2, EL2 and EL3 invalidations and VMS configuration name state a stage-1-only vSMMU does not have.
      return illegal(fmt::format("{} is not valid on a stage-1-only SMMU (IDR0.S2P=0, no EL2/EL3 translation)", info->name));
  }
}

SidRange stes_named(const Command& cmd) {
  const std::uint32_t sid = cmd.get(Command::SID);
  if (cmd.get(Command::Opcode) == Opcode::CFGI_STE) return {sid, 1};
  const std::uint64_t range = cmd.get(Command::Range);
  const std::uint64_t count = 1ULL << (range + 1);
  if (count > 0xffffffffULL) return {0, 1ULL << 32};
  return {static_cast<std::uint32_t>(sid & ~(count - 1)), count};
}

}  // namespace vsmmu::invalidation
