// The model's configuration cache: decoded STEs by StreamID and CDs by (StreamID, SubstreamID), filled on
// use and emptied only by CFGI_* commands (IHI 0070 4.3, 16.2). A structure software changed without the
// invalidation keeps being used, as on hardware. Only structures that decoded successfully are cached:
// an invalid or ILLEGAL one is fetched again on the next transaction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>

#include "smmu/cd.hpp"
#include "smmu/ste.hpp"
#include "smmu/walker.hpp"

namespace vsmmu::smmu::model {

// An STE as the model uses it: the record plus what was derived from it once.
struct StreamEntry {
  Ste ste;
  StreamConfig config = StreamConfig::abort;
  std::optional<Stage2Params> s2;  // when the configuration has stage 2
  bool s2fwb = false;              // effective S2FWB: STE.S2FWB with stage 2 and IDR3.FWB
  bool s2_record = false;          // STE.S2R: stage-2 faults are recorded
  bool s2_stall = false;           // STE.S2S: stage-2 faults stall (IHI 0070 5.5)
};

// A CD as the model uses it.
struct ContextEntry {
  Cd cd;
  Stage1Params s1;
  bool record = false;             // CD.R: stage-1 faults are recorded
  bool abort = false;              // CD.A: faulting transactions abort (0: RAZ/WI)
  bool stall = false;              // CD.S: stage-1 faults stall (legal only where STALL_MODEL and S1STALLD allow)
};

class ConfigCache {
 public:
  ConfigCache(std::size_t stream_capacity, std::size_t context_capacity)
      : stream_capacity_(stream_capacity), context_capacity_(context_capacity) {}

  const StreamEntry* stream(std::uint32_t sid) const;
  const ContextEntry* context(std::uint32_t sid, std::uint32_t ssid) const;
  void insert_stream(std::uint32_t sid, const StreamEntry& e);
  void insert_context(std::uint32_t sid, std::uint32_t ssid, const ContextEntry& e);

  // CFGI_STE / CFGI_STE_RANGE / CFGI_ALL: the STEs and everything located through them (their CDs).
  void invalidate_streams(std::uint64_t first_sid, std::uint64_t count);
  // CFGI_CD: one CD of a stream.
  void invalidate_context(std::uint32_t sid, std::uint32_t ssid);
  // CFGI_CD_ALL: every CD of a stream.
  void invalidate_contexts(std::uint32_t sid);
  void clear();

  std::size_t streams() const { return streams_.size(); }
  std::size_t contexts() const { return contexts_.size(); }

 private:
  static std::uint64_t context_key(std::uint32_t sid, std::uint32_t ssid) {
    return (std::uint64_t{sid} << 32) | ssid;
  }
  std::size_t stream_capacity_;
  std::size_t context_capacity_;
  std::unordered_map<std::uint32_t, StreamEntry> streams_;
  std::unordered_map<std::uint64_t, ContextEntry> contexts_;
};

}  // namespace vsmmu::smmu::model
