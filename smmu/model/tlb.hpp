// The model's TLB: cached leaf translations tagged the way IHI 0070 3.17 and 4.4 describe, so that only
// the invalidation commands the architecture names remove an entry. A translation whose invalidation
// software forgot stays cached and keeps translating (a stale hit), as on hardware.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>

#include "smmu/command.hpp"
#include "smmu/registers.hpp"
#include "smmu/translation_table.hpp"
#include "smmu/walker.hpp"

namespace vsmmu::smmu::model {

// What an entry translates. Stage-1-only entries are tagged by ASID; stage-2-only entries by VMID;
// nested entries (a combined S1+S2 translation, VA -> PA) by both (IHI 0070 3.17.1).
enum class TlbStage : std::uint8_t { s1, s2, nested };

// The tags of an access's translation regime, used for lookup and insertion.
struct TlbRegime {
  TlbStage stage = TlbStage::s1;
  std::uint16_t vmid = 0;      // ignored for TlbStage::s1 (no stage 2: nothing to scope it)
  std::uint16_t asid = 0;      // ignored for TlbStage::s2
  bool privileged = false;     // permissions were computed for this PnU
};

struct TlbEntry {
  TlbRegime regime;
  bool global = false;         // stage-1 leaf with nG == 0: matches every ASID
  std::uint64_t input_base = 0;  // aligned to 2^size_log2
  unsigned size_log2 = 12;
  std::uint64_t output_base = 0;
  Permissions perm;
  // The leaf the TLBI hints (TTL, TG) refer to: stage 1 for s1 and nested entries, stage 2 for s2 entries.
  int level = 3;
  Granule granule = Granule::k4K;

  std::uint64_t translate(std::uint64_t input) const {
    return output_base + (input - input_base);
  }
  bool contains(std::uint64_t input) const { return (input >> size_log2) == (input_base >> size_log2); }
};

// Which entries an invalidation command names (IHI 0070 4.4). Fields left empty match everything.
struct TlbInvalidation {
  // Stages the command affects.
  bool s1 = false, s2 = false, nested = false;
  std::optional<std::uint16_t> vmid;   // scopes s2 and nested entries; stage-1-only entries have no VMID
  std::optional<std::uint16_t> asid;   // scopes s1 and nested entries; global entries are spared by ASID-only
                                       // invalidations (no address) and matched by address ones
  // An address range [first, first + size) of input addresses (VA, or IPA for stage 2); empty: all.
  std::optional<std::uint64_t> first;
  std::uint64_t size = 0;
  // Hints (IHI 0070 4.4.1): entries from another granule or level need not be invalidated, so they are
  // not: a driver that passes a wrong hint sees the stale entry it asked for.
  std::optional<Granule> granule;
  std::optional<int> level;
};

// The entries a TLB invalidation command names on an SMMU with these ID registers (IHI 0070 4.4): TLBI_NH_*
// scope nested entries by VMID (when IDR0.S2P gives entries a VMID); TLBI_S2_IPA removes stage-2 entries only
// (IHI 0070 4.4.3.1); with IDR3.RIL and TG != 0 an address form covers (NUM+1) * 2^SCALE granules of TG from
// Address with TTL (when non-zero) naming the leaf level, without RIL those fields are not acted on (4.4.1).
// `cmd` must be a TLBI_* opcode.
TlbInvalidation tlb_invalidation(const Command& cmd, Idr0 idr0, Idr3 idr3);

class Tlb {
 public:
  explicit Tlb(std::size_t capacity) : capacity_(capacity) {}

  // The entry covering `input` in this regime (or a global one), if any.
  std::optional<TlbEntry> lookup(const TlbRegime& regime, std::uint64_t input) const;
  // Caches a leaf translation; evicts an arbitrary entry when full (the architecture allows a TLB to drop
  // entries at any time).
  void insert(const TlbEntry& entry);
  // Removes the entries the command names; returns how many.
  std::size_t invalidate(const TlbInvalidation& inv);
  void clear();
  std::size_t size() const { return entries_.size(); }
  std::uint64_t evictions() const { return evictions_; }

 private:
  struct Key {
    std::uint64_t page = 0;    // input >> size_log2
    std::uint16_t vmid = 0;    // 0 for stage-1-only entries
    std::uint16_t asid = 0;    // 0 for stage-2-only and global entries
    TlbStage stage = TlbStage::s1;
    std::uint8_t size_log2 = 12;
    bool privileged = false;
    bool global = false;
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept;
  };
  static Key key(const TlbRegime& regime, bool global, unsigned size_log2, std::uint64_t input);
  bool matches(const TlbInvalidation& inv, const TlbEntry& e) const;

  std::size_t capacity_;
  std::unordered_map<Key, TlbEntry, KeyHash> entries_;
  std::uint64_t sizes_present_ = 0;  // bit n: some entry has size_log2 == n (lookups probe only these)
  std::size_t global_entries_ = 0;
  std::uint64_t evictions_ = 0;
};

}  // namespace vsmmu::smmu::model
