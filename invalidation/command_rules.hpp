// What a vSMMU does with each guest command: forward it to the host (the kernel's HWPT_INVALIDATE accepts it),
// handle it locally (STE reinstalls, prefetches, CMD_SYNC), or refuse it with CERROR_ILL. Validation mirrors
// the kernel's strict per-opcode rules so behaviour is the same on old and new kernels
// (reference/kernel-uapi.md, "arm-smmu-v3 nesting rules").
#pragma once

#include <cstdint>
#include <string>

#include "smmu/command.hpp"

namespace vsmmu::invalidation {

// The vSMMU's advertised features that bound what a guest command may contain (IDR0/IDR1/IDR3 it exposes).
struct AdvertisedFeatures {
  unsigned sid_bits = 16;   // IDR1.SIDSIZE
  unsigned ssid_bits = 0;   // IDR1.SSIDSIZE: 0 means no substreams
  bool asid16 = true;       // IDR0.ASID16
  bool ril = false;         // IDR3.RIL: range invalidation
  bool ats = false;         // IDR0.ATS
  bool pri = false;         // IDR0.PRI
  bool stall = false;       // IDR0.STALL_MODEL allows stalls
};

enum class Disposition : std::uint8_t {
  forward,        // goes to the host in an HWPT_INVALIDATE batch
  reinstall_ste,  // CFGI_STE / CFGI_STE_RANGE / CFGI_ALL: re-read guest STEs, update host attachments
  sync,           // CMD_SYNC: completes everything before it
  local_noop,     // PREFETCH_*: architecturally allowed to do nothing
  fault_response, // PRI_RESP / RESUME / STALL_TERM: answered through the host's fault queue, not HWPT_INVALIDATE
  illegal,        // CERROR_ILL
};

struct Verdict {
  Disposition disposition = Disposition::illegal;
  std::string reason;  // for illegal: which rule, readable (logged, shown by tools)
};

Verdict classify(const smmu::Command& cmd, const AdvertisedFeatures& features);

// The stream IDs a CFGI_STE / CFGI_STE_RANGE / CFGI_ALL names: 2^(Range+1) STEs from SID aligned down
// (IHI 0070 4.3.2); CFGI_STE names one.
struct SidRange {
  std::uint32_t first = 0;
  std::uint64_t count = 0;
  bool contains(std::uint32_t sid) const { return sid >= first && sid - first < count; }
};
SidRange stes_named(const smmu::Command& cmd);

}  // namespace vsmmu::invalidation
