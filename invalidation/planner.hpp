// Turns a run of guest commands (CMDQ between CONS and PROD) into a plan of host work: everything between two
// CMD_SYNCs goes to the host in ONE HWPT_INVALIDATE (split only where a kernel limit or guest ordering forces
// it), STE reinstalls keep their place in guest order, and an illegal command stops the plan there, as the
// hardware's command queue stops (IHI 0070 4.1.3 / 7.1). Pure: no I/O, no host calls.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "invalidation/command_rules.hpp"
#include "smmu/command.hpp"

namespace vsmmu::invalidation {

// Commands for one HWPT_INVALIDATE; entry k came from the guest command at guest_index[k], so a kernel
// rejection at entry k maps back to that exact guest command. Both views are into the Plan that holds the batch.
struct ForwardBatch {
  std::span<const smmu::Command> entries;
  std::span<const std::uint32_t> guest_index;
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

// Move-only: its ForwardBatches view its own entry buffers (a move keeps them where they are).
struct Plan {
  std::vector<Step> steps;
  PlanStats stats;
  bool stopped = false;                 // ends at an IllegalCommand
  // Every batch's entries and guest indices, batch after batch.
  std::vector<smmu::Command> entries;
  std::vector<std::uint32_t> guest_index;

  Plan() = default;
  Plan(Plan&&) = default;
  Plan& operator=(Plan&&) = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
};

namespace detail {

// A hash set that keeps its memory from one use to the next (open addressing, emptied by starting a new
// generation), so coalescing a batch allocates nothing once the set has grown to the largest batch seen.
template <class Key>
class ReusableSet {
 public:
  // Empties the set, with room for `expected` keys before it has to grow.
  void reset(std::size_t expected = 0) {
    count_ = 0;
    used_ = std::bit_ceil(std::max<std::size_t>(16, 2 * expected));
    if (slots_.size() < used_) slots_.resize(used_);
    next_generation();
  }
  bool contains(const Key& key) const {
    if (used_ == 0) return false;  // never reset
    for (std::size_t i = home(key);; i = (i + 1) & (used_ - 1)) {
      const Slot& s = slots_[i];
      if (s.generation != generation_) return false;
      if (s.key == key) return true;
    }
  }
  void insert(const Key& key) {
    if (2 * (count_ + 1) > used_) grow();
    for (std::size_t i = home(key);; i = (i + 1) & (used_ - 1)) {
      Slot& s = slots_[i];
      if (s.generation != generation_) {
        s = {key, generation_};
        ++count_;
        return;
      }
      if (s.key == key) return;
    }
  }

 private:
  struct Slot {
    Key key{};
    std::uint32_t generation = 0;
  };
  static std::uint64_t bits(const smmu::Command& c) { return c.dw[0] ^ std::rotl(c.dw[1], 29); }
  static std::uint64_t bits(std::uint32_t k) { return k; }
  // The top log2(used_) bits of a multiplicative hash.
  std::size_t home(const Key& key) const {
    return static_cast<std::size_t>((bits(key) * 0x9e3779b97f4a7c15ULL) >> (64 - std::countr_zero(used_)));
  }
  void next_generation() {
    if (++generation_ != 0) return;
    for (auto& s : slots_) s.generation = 0;  // wrapped: stale slots could look current
    generation_ = 1;
  }
  void grow() {
    std::vector<Key> keys;
    for (std::size_t i = 0; i < used_; ++i)
      if (slots_[i].generation == generation_) keys.push_back(slots_[i].key);
    reset(used_);  // twice the slots
    for (const Key& k : keys) insert(k);
  }

  std::vector<Slot> slots_;  // the first used_ are in use
  std::size_t used_ = 0;
  std::size_t count_ = 0;
  std::uint32_t generation_ = 0;
};

}  // namespace detail

// Plans into buffers it keeps, so that planning run after run allocates only when a run is larger than any
// before it. The vSMMU keeps one for its command queue.
class Planner {
 public:
  // The plan of `commands` (as plan() below); valid until the next call.
  const Plan& plan(std::span<const smmu::Command> commands, const AdvertisedFeatures& features,
                   const PlanOptions& options = {}, std::uint32_t first_index = 0);
  // Gives the last plan away.
  Plan take() && { return std::move(plan_); }

 private:
  void forward(const smmu::Command& c, std::uint32_t index, const PlanOptions& options);
  void flush(const PlanOptions& options);
  void coalesce();

  Plan plan_;
  std::size_t open_ = 0;  // the open batch: plan_.entries[open_, end)
  detail::ReusableSet<smmu::Command> later_same_;
  detail::ReusableSet<std::uint32_t> later_cd_all_;
};

// Plans `commands`; guest_index values are offsets into `commands` plus `first_index`.
Plan plan(std::span<const smmu::Command> commands, const AdvertisedFeatures& features, const PlanOptions& options = {},
          std::uint32_t first_index = 0);

}  // namespace vsmmu::invalidation
