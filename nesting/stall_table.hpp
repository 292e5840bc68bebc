// The vSMMU's outstanding stalls (IHI 0070 3.12.2): each fault group the host's fault queue delivered
// (host/fault_queue_reader.hpp) and the guest was told of, by the StreamID and STAG its stall event record
// carries, until the guest answers it (CMD_RESUME, CMD_STALL_TERM, IHI 0070 4.7.2-4.7.3) or the vSMMU answers it
// for the guest (the stream reconfigured, the device removed, the vSMMU destroyed). Bounded by the vSMMU's
// IDR5.STALL_MAX: a fault beyond it is not taken (the caller answers it INVALID at once).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace vsmmu::nesting {

// The vSMMU's bound on outstanding stalls, given to the guest as IDR5.STALL_MAX (capped by the physical
// SMMU's, when that reports one). Linux's guest driver sizes its iopf queue independently of it.
inline constexpr std::uint32_t kVsmmuStallMax = 256;

class StallTable {
 public:
  explicit StallTable(std::uint32_t max_outstanding = kVsmmuStallMax) : max_(max_outstanding) {}

  // A new stall of stream `vsid` answered through host fault-queue `cookie`: its STAG, 16 bits, unique among
  // the stream's outstanding stalls (IHI 0070 3.12.2: StreamID and STAG identify a stalled transaction), or
  // nullopt when max_outstanding() stalls are outstanding.
  std::optional<std::uint16_t> add(std::uint32_t vsid, std::uint32_t cookie);
  // The cookie of the stall (vsid, stag), which is no longer outstanding; nullopt when there is none.
  std::optional<std::uint32_t> take(std::uint32_t vsid, std::uint16_t stag);
  // Every outstanding stall of the stream (as (STAG, cookie)), which are no longer outstanding.
  std::vector<std::pair<std::uint16_t, std::uint32_t>> take_stream(std::uint32_t vsid);
  // Every outstanding stall (as (vSID, cookie)).
  std::vector<std::pair<std::uint32_t, std::uint32_t>> take_all();

  bool has_stream(std::uint32_t vsid) const;
  std::size_t outstanding() const { return stalls_.size(); }
  std::uint32_t max_outstanding() const { return max_; }

 private:
  std::uint32_t max_;
  std::uint16_t next_stag_ = 0;
  std::map<std::pair<std::uint32_t, std::uint16_t>, std::uint32_t> stalls_;  // (vSID, STAG) -> cookie
};

}  // namespace vsmmu::nesting
