// Turns a run of guest commands (CMDQ between CONS and PROD) into a plan of host work: everything between two
// CMD_SYNCs goes to the host in ONE HWPT_INVALIDATE (split only where a kernel limit or guest ordering forces
// it), STE reinstalls keep their place in guest order, and an illegal command stops the plan there, as the
// hardware's command queue stops (IHI 0070 4.1.3 / 7.1). Pure: no I/O, no host calls.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "invalidation/command_rules.hpp"
#include "smmu/command.hpp"

namespace vsmmu::invalidation {

// Commands for one HWPT_INVALIDATE; entry k came from the guest command at guest_index[k], so a kernel
// rejection at entry k maps back to that exact guest command.
struct ForwardBatch {
  std::vector<smmu::Command> entries;
  std::vector<std::uint32_t> guest_index;
};

struct StreamReinstall {
  std::uint32_t guest_index = 0;
  SidRange sids;
};

struct FaultResponse {
  std::uint32_t guest_index = 0;
  smmu::Command command;
};

struct SyncPoint {
  std::uint32_t guest_index = 0;
  smmu::Command command;  // CS, MSI fields: how the vSMMU signals completion
};

struct IllegalCommand {
  std::uint32_t guest_index = 0;
  std::string reason;
};

using Step = std::variant<ForwardBatch, StreamReinstall, FaultResponse, SyncPoint, IllegalCommand>;

struct PlanOptions {
  std::uint32_t max_batch_entries = 0;  // 0: no limit (the kernel copies any count it can allocate)
  bool coalesce = true;                 // drop invalidations a later, wider one in the same batch covers
};

struct PlanStats {
  std::uint32_t commands = 0;           // guest commands covered by the plan (up to and including an illegal one)
  std::uint32_t forwarded = 0;          // entries sent to the host
  std::uint32_t coalesced = 0;          // forwardable commands dropped as redundant
  std::uint32_t batches = 0;
};

struct Plan {
  std::vector<Step> steps;
  PlanStats stats;
  bool stopped = false;                 // ends at an IllegalCommand
};

// Plans `commands`; guest_index values are offsets into `commands` plus `first_index`.
Plan plan(std::span<const smmu::Command> commands, const AdvertisedFeatures& features, const PlanOptions& options = {},
          std::uint32_t first_index = 0);

}  // namespace vsmmu::invalidation
