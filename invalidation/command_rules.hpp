// What a vSMMU does with each guest command: forward it to the host (the kernel's HWPT_INVALIDATE accepts it),
// handle it locally (STE reinstalls, prefetches, CMD_SYNC), or refuse it with CERROR_ILL. Legality is
// smmu::command_problem's, the judge the project's software SMMU uses too; its rules (RES0 fields detected,
// feature-gated opcodes and fields) are also what the kernel's stricter per-opcode validation checks, so
// behaviour is the same on old and new kernels (docs/virtual-smmu.md, "Commands").
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "smmu/command.hpp"
#include "smmu/command_legality.hpp"
#include "smmu/registers.hpp"

namespace vsmmu::invalidation {

// The vSMMU's advertised features that bound what a guest command may contain (the IDR0/IDR1/IDR3 it exposes):
// the one legality judge's own (smmu/command_legality.hpp), so a guest gets from the vSMMU the answer an SMMU
// with these ID registers gives. A stage-1-only vSMMU: S1P, no S2P, no Hyp.
using AdvertisedFeatures = smmu::CommandFeatures;

enum class Disposition : std::uint8_t {
  forward,        // goes to the host in an HWPT_INVALIDATE batch
  reinstall_ste,  // CFGI_STE / CFGI_STE_RANGE / CFGI_ALL: re-read guest STEs, update host attachments
  sync,           // CMD_SYNC: completes everything before it
  local_noop,     // PREFETCH_*: architecturally allowed to do nothing
  fault_response, // PRI_RESP / RESUME / STALL_TERM: answered through the host's fault queue, not HWPT_INVALIDATE
  illegal,        // CERROR_ILL
};

// What classify() decides for one guest command: where it goes, and for an illegal one, why.
struct CommandClass {
  Disposition disposition = Disposition::illegal;
  std::string reason;  // for illegal: which rule, readable (logged, shown by tools)
};

CommandClass classify(const smmu::Command& cmd, const AdvertisedFeatures& features);

// The stream IDs a CFGI_STE / CFGI_STE_RANGE / CFGI_ALL names: 2^(Range+1) STEs from SID aligned down
// (IHI 0070 4.3.2); CFGI_STE names one.
struct SidRange {
  std::uint32_t first = 0;
  std::uint64_t count = 0;
  bool contains(std::uint32_t sid) const { return sid >= first && sid - first < count; }
};
SidRange stes_named(const smmu::Command& cmd);

// The StreamID a forwarded command concerns when it names one (CFGI_CD, CFGI_CD_ALL, ATC_INV: only the vIOMMU
// of that StreamID's device has anything cached for it); nullopt for the rest (TLBIs), which concern every
// vIOMMU.
std::optional<std::uint32_t> stream_named(const smmu::Command& cmd);

// The command-queue error for a command the host refused with errno `err` (IHI 0070 7.1): the kernel refusing
// its contents (EIO, EINVAL, EOPNOTSUPP, E2BIG, ENOENT) is CERROR_ILL, which the guest's driver skips; a host
// that could not carry it out now (ENOMEM, EFAULT, EINTR ...) is CERROR_ABT, which a driver retries after
// acknowledging it, as Linux's arm_smmu_cmdq_skip_err does (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c).
smmu::Cerror cerror_for_host_errno(int err);

}  // namespace vsmmu::invalidation
