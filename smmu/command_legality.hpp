// Which commands an SMMU accepts: the one judge of command legality, used by every SMMU this project
// implements - the software SMMU (smmu/model, the simulated host's hardware) and the guest-facing vSMMU
// (invalidation::classify) - so that the same command on the same ID registers gets the same answer.
// A command is CERROR_ILL (IHI 0070 4.1.3) when its opcode is Reserved, when it sets a bit its opcode does not
// define or that the ID registers make RES0 (the implementation choice of 4.1.5: detect, not ignore), when it
// asks for a feature the SMMU does not implement, when a field holds a Reserved encoding, or when it names a
// Secure stream from the Non-secure queue (4.1.6 SSec).
#pragma once

#include <cstdint>
#include <string>

#include "smmu/command.hpp"
#include "smmu/registers.hpp"

namespace vsmmu::smmu {

// The ID register fields that bound what a command may contain.
struct CommandFeatures {
  unsigned sid_bits = 16;   // IDR1.SIDSIZE
  unsigned ssid_bits = 0;   // IDR1.SSIDSIZE: 0 means no substreams
  bool asid16 = true;       // IDR0.ASID16
  bool ril = false;         // IDR3.RIL: range invalidation and the TTL hint
  bool ats = false;         // IDR0.ATS
  bool pri = false;         // IDR0.PRI
  bool stall = false;       // IDR0.STALL_MODEL allows stalls (not terminate-only)
  bool s1p = true;          // IDR0.S1P
  bool s2p = false;         // IDR0.S2P
  bool hyp = false;         // IDR0.Hyp: EL2 translation regimes
};

CommandFeatures command_features(const IdRegisters& ids);

// Why `cmd` is CERROR_ILL on an SMMU with `features` ("" when it is legal), naming the opcode and the rule.
std::string command_problem(const Command& cmd, const CommandFeatures& features);

}  // namespace vsmmu::smmu
