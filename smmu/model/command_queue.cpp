// The command queue (IHI 0070 3.5, chapter 4) and its errors (7.1): the SMMU consumes commands from CONS to
// PROD; a command it cannot fetch or does not accept stops the queue with CONS on it, CMDQ_CONS.ERR saying
// why and GERROR.CMDQ_ERR toggled, until software acknowledges through GERRORN.
#include "smmu/command_legality.hpp"
#include "base/log.hpp"
#include "smmu/model/smmu_model.hpp"

namespace vsmmu::smmu::model {
void SmmuModel::commands_published() {
  while (regs_.cmdq_running() && regs_.cmdq_pending() != 0) {
    Command cmd;
    if (regs_.read_commands(std::span(&cmd, 1)) != 1) {
      regs_.command_error(Cerror::abt);
      return;
    }
    if (auto err = execute(cmd)) {
      log::debug("smmu.model", "CMDQ stops: CERROR {} for {:#018x} {:#018x}", static_cast<int>(*err), cmd.dw[0],
                 cmd.dw[1]);
      regs_.command_error(*err);
      return;
    }
    ++counters_.commands;
    regs_.cmdq_consume(1);
  }
}

std::optional<Cerror> SmmuModel::execute(const Command& cmd) {
  // One judge for every SMMU of the project (the vSMMU asks the same one).
  if (const std::string problem = command_problem(cmd, command_features_); !problem.empty()) {
    log::debug("smmu.model", "CERROR_ILL: {}", problem);
    return Cerror::ill;
  }

  const std::uint32_t sid = cmd.get(Command::SID);
  switch (cmd.get(Command::Opcode)) {
    case Opcode::CFGI_STE: config_cache_.invalidate_streams(sid, 1); break;
    case Opcode::CFGI_STE_RANGE: {
      // 2^(Range+1) StreamIDs from SID aligned down; Range 31 is CFGI_ALL (IHI 0070 4.3.2).
      const std::uint64_t count = 2ULL << cmd.get(Command::Range);
      config_cache_.invalidate_streams(sid & ~(count - 1), count);
      break;
    }
    case Opcode::CFGI_CD:
      config_cache_.invalidate_context(sid, static_cast<std::uint32_t>(cmd.get(Command::SSID)));
      break;
    case Opcode::CFGI_CD_ALL: config_cache_.invalidate_contexts(sid); break;
    case Opcode::TLBI_NH_ALL:
    case Opcode::TLBI_NH_ASID:
    case Opcode::TLBI_NH_VA:
    case Opcode::TLBI_NH_VAA:
    case Opcode::TLBI_S12_VMALL:
    case Opcode::TLBI_S2_IPA:
    case Opcode::TLBI_NSNH_ALL: invalidate_tlb(cmd); break;
    case Opcode::CMD_SYNC: regs_.complete_sync(cmd); break;
    // Stalled transactions (IHI 0070 4.7.1, 4.7.2); the model retries or terminates them as the command is
    // consumed, so a following CMD_SYNC sees them done.
    case Opcode::RESUME: resume(sid, cmd.get(Command::STAG), cmd.get(Command::Action)); break;
    case Opcode::STALL_TERM:
      for (auto& [id, s] : stalls_)
        if (s.held && s.stream.sid == sid) terminate(s, DmaOutcome::aborted);
      break;
    // Accepted and with nothing to do here: prefetches are hints, no EL2 stream world or ATC is modelled.
    default: break;
  }
  return std::nullopt;
}

// TLB invalidation (IHI 0070 4.4): the entries tlb_invalidation() says the command names.
void SmmuModel::invalidate_tlb(const Command& cmd) {
  counters_.tlb_invalidated += tlb_.invalidate(tlb_invalidation(cmd, config_.idr0, config_.idr3));
}

}  // namespace vsmmu::smmu::model
