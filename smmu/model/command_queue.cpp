// The command queue (IHI 0070 3.5, chapter 4) and its errors (7.1): the SMMU consumes commands from CONS to
// PROD; a command it cannot fetch or does not accept stops the queue with CONS on it, CMDQ_CONS.ERR saying
// why and GERROR.CMDQ_ERR toggled, until software acknowledges through GERRORN.
#include "smmu/log.hpp"
#include "smmu/model/smmu_model.hpp"

namespace vsmmu::smmu::model {
namespace {

bool is_tlbi_by_address(Opcode op) {
  return op == Opcode::TLBI_NH_VA || op == Opcode::TLBI_NH_VAA || op == Opcode::TLBI_S2_IPA;
}

}  // namespace

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

// Whether this SMMU accepts the opcode with these parameters beyond the RES0 rule (IHI 0070 4.1.1, 4.4:
// commands for features or Security states the SMMU lacks are CERROR_ILL).
bool SmmuModel::command_supported(const Command& cmd) const {
  const auto& i0 = config_.idr0;
  switch (cmd.get(Command::Opcode)) {
    case Opcode::TLBI_NH_ALL:
    case Opcode::TLBI_NH_ASID:
    case Opcode::TLBI_NH_VA:
    case Opcode::TLBI_NH_VAA: return i0.get(Idr0::S1P);
    case Opcode::TLBI_EL2_ALL:
    case Opcode::TLBI_EL2_ASID:
    case Opcode::TLBI_EL2_VA:
    case Opcode::TLBI_EL2_VAA: return i0.get(Idr0::Hyp) && i0.get(Idr0::S1P);
    case Opcode::TLBI_S12_VMALL:
    case Opcode::TLBI_S2_IPA: return i0.get(Idr0::S2P);
    case Opcode::ATC_INV: return i0.get(Idr0::ATS);
    case Opcode::PRI_RESP: return i0.get(Idr0::PRI);
    case Opcode::RESUME:
    case Opcode::STALL_TERM: return i0.get(Idr0::STALL_MODEL) != StallModel::terminate;
    case Opcode::CMD_SYNC: return cmd.get(Command::CS) != SyncCs::reserved;
    // No VMS (IDR3.MPAM/PPS are never modelled), no Secure state, no DPT.
    case Opcode::CFGI_VMS_PIDM:
    case Opcode::TLBI_EL3_ALL:
    case Opcode::TLBI_EL3_VA:
    case Opcode::TLBI_S_EL2_ALL:
    case Opcode::TLBI_S_EL2_ASID:
    case Opcode::TLBI_S_EL2_VA:
    case Opcode::TLBI_S_EL2_VAA:
    case Opcode::TLBI_S_S12_VMALL:
    case Opcode::TLBI_S_S2_IPA:
    case Opcode::TLBI_SNH_ALL:
    case Opcode::DPTI_ALL:
    case Opcode::DPTI_PA: return false;
    default: return true;
  }
}

std::optional<Cerror> SmmuModel::execute(const Command& cmd) {
  const auto info = opcode_info(static_cast<std::uint8_t>(cmd.raw(Command::Opcode)));
  if (!info) return Cerror::ill;                  // undefined opcode
  if (res0_violation(cmd)) return Cerror::ill;    // a bit the opcode does not define is set
  if (!command_supported(cmd)) return Cerror::ill;
  // The Non-secure queue names no Secure stream (IHI 0070 4.3.1 SSec).
  if ((info->dw0_defined & Command::SSec.mask) != 0 && cmd.get(Command::SSec)) return Cerror::ill;

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
    // Accepted and with nothing to do here: prefetches are hints, no EL2 stream world or ATC is modelled,
    // and no transaction is ever stalled.
    default: break;
  }
  return std::nullopt;
}

// TLB invalidation (IHI 0070 4.4). TLBI_NH_* scope nested entries by VMID; stage-1-only entries have no VMID
// to match. TLBI_S2_IPA removes stage-2 entries only: a combined stage 1+2 entry needs TLBI_S12_VMALL or a
// TLBI_NH_* as well (IHI 0070 4.4.3.1).
void SmmuModel::invalidate_tlb(const Command& cmd) {
  const Opcode op = cmd.get(Command::Opcode);
  TlbInvalidation inv;
  const bool vmid_tags = config_.idr0.get(Idr0::S2P);
  if (vmid_tags) {
    std::uint16_t vmid = cmd.get(Command::VMID);
    if (!config_.idr0.get(Idr0::VMID16)) vmid = static_cast<std::uint8_t>(vmid);
    inv.vmid = vmid;
  }
  std::uint16_t asid = cmd.get(Command::ASID);
  if (!config_.idr0.get(Idr0::ASID16)) asid = static_cast<std::uint8_t>(asid);
  switch (op) {
    case Opcode::TLBI_NH_ALL: inv.s1 = inv.nested = true; break;
    case Opcode::TLBI_NH_ASID:
    case Opcode::TLBI_NH_VA:
      inv.s1 = inv.nested = true;
      inv.asid = asid;
      break;
    case Opcode::TLBI_NH_VAA: inv.s1 = inv.nested = true; break;
    case Opcode::TLBI_S12_VMALL: inv.s2 = inv.nested = true; break;
    case Opcode::TLBI_S2_IPA: inv.s2 = true; break;
    default:  // TLBI_NSNH_ALL: every Non-secure, non-Hyp entry
      inv = TlbInvalidation{};
      inv.s1 = inv.s2 = inv.nested = true;
      break;
  }
  if (is_tlbi_by_address(op)) {
    inv.first = op == Opcode::TLBI_S2_IPA ? cmd.get(Command::IPA) : cmd.get(Command::Address);
    inv.size = 1;
    // With IDR3.RIL and TG != 0 the command covers (NUM+1) * 2^SCALE granules of TG from Address, and TTL
    // (when non-zero) names the level of the leaves. Without RIL these fields are not acted on (IHI 0070 4.4.1).
    const auto granule = granule_from_tlbi_tg(static_cast<unsigned>(cmd.get(Command::TG)));
    if (config_.idr3.get(Idr3::RIL) && granule) {
      inv.granule = granule;
      inv.size = (cmd.get(Command::NUM) + 1) << (cmd.get(Command::SCALE) + granule_shift(*granule));
      if (const auto ttl = cmd.get(Command::TTL); ttl != 0) inv.level = static_cast<int>(ttl);
    }
  }
  counters_.tlb_invalidated += tlb_.invalidate(inv);
}


}  // namespace vsmmu::smmu::model
