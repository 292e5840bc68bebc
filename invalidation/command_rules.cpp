#include "invalidation/command_rules.hpp"

#include <cerrno>

#include <fmt/format.h>

namespace vsmmu::invalidation {

using smmu::Command;
using smmu::Opcode;

CommandClass classify(const Command& cmd, const AdvertisedFeatures& f) {
  if (std::string problem = smmu::command_problem(cmd, f); !problem.empty())
    return {Disposition::illegal, std::move(problem)};
  switch (cmd.get(Command::Opcode)) {
    case Opcode::TLBI_NH_ALL:
    case Opcode::TLBI_NSNH_ALL:
    case Opcode::TLBI_NH_ASID:
    case Opcode::TLBI_NH_VA:
    case Opcode::TLBI_NH_VAA:
    case Opcode::CFGI_CD:
    case Opcode::CFGI_CD_ALL:
    case Opcode::ATC_INV:
      return {Disposition::forward, {}};
    case Opcode::CFGI_STE:
    case Opcode::CFGI_STE_RANGE:
      return {Disposition::reinstall_ste, {}};
    case Opcode::PREFETCH_CONFIG:
    case Opcode::PREFETCH_ADDR:
      return {Disposition::local_noop, {}};
    case Opcode::CMD_SYNC:
      return {Disposition::sync, {}};
    case Opcode::PRI_RESP:
    case Opcode::RESUME:
    case Opcode::STALL_TERM:
      return {Disposition::fault_response, {}};
    default:
      // Legal on an SMMU with these features but with no meaning for a stage-1 vSMMU's host (stage-2 and EL2
      // invalidations on a vSMMU that advertised S2P or Hyp, which it never does).
      return {Disposition::illegal, fmt::format("{} has no host equivalent on a stage-1 vSMMU",
                                                smmu::opcode_name(cmd.get(Command::Opcode)))};
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

std::optional<std::uint32_t> stream_named(const Command& cmd) {
  switch (cmd.get(Command::Opcode)) {
    case Opcode::CFGI_CD:
    case Opcode::CFGI_CD_ALL:
    case Opcode::ATC_INV:
      return static_cast<std::uint32_t>(cmd.get(Command::SID));
    default:
      return std::nullopt;
  }
}

smmu::Cerror cerror_for_host_errno(int err) {
  const bool refused = err == EIO || err == EINVAL || err == EOPNOTSUPP || err == E2BIG || err == ENOENT;
  return refused ? smmu::Cerror::ill : smmu::Cerror::abt;
}

}  // namespace vsmmu::invalidation
