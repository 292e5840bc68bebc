// Builders for guest commands used by the invalidation tests.
#pragma once

#include "smmu/command.hpp"

namespace vsmmu::invalidation::testing {

using smmu::Command;
using smmu::Opcode;

inline Command cmd(Opcode op) { return Command{}.set(Command::Opcode, op); }
inline Command tlbi_va(std::uint16_t asid, std::uint64_t va) {
  return cmd(Opcode::TLBI_NH_VA).set(Command::ASID, asid).set(Command::Address, va).set(Command::TG, 1).set(Command::Leaf, true);
}
inline Command tlbi_vaa(std::uint64_t va) { return cmd(Opcode::TLBI_NH_VAA).set(Command::Address, va).set(Command::TG, 1); }
inline Command tlbi_asid(std::uint16_t asid) { return cmd(Opcode::TLBI_NH_ASID).set(Command::ASID, asid); }
inline Command tlbi_all() { return cmd(Opcode::TLBI_NH_ALL); }
inline Command cfgi_cd(std::uint32_t sid, std::uint32_t ssid) {
  return cmd(Opcode::CFGI_CD).set(Command::SID, sid).set(Command::SSID, ssid);  // no SSV (IHI 0070 4.3.3)
}
inline Command cfgi_cd_all(std::uint32_t sid) { return cmd(Opcode::CFGI_CD_ALL).set(Command::SID, sid); }
inline Command cfgi_ste(std::uint32_t sid) { return cmd(Opcode::CFGI_STE).set(Command::SID, sid); }
inline Command cfgi_ste_range(std::uint32_t sid, unsigned range) {
  return cmd(Opcode::CFGI_STE_RANGE).set(Command::SID, sid).set(Command::Range, range);
}
inline Command sync() { return cmd(Opcode::CMD_SYNC); }

}  // namespace vsmmu::invalidation::testing
