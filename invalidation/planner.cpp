#include "invalidation/planner.hpp"

#include <unordered_set>

namespace vsmmu::invalidation {

using smmu::Command;
using smmu::Opcode;

namespace {

struct CommandHash {
  std::size_t operator()(const Command& c) const { return std::hash<std::uint64_t>{}(c.dw[0] * 0x9e3779b97f4a7c15ULL ^ c.dw[1]); }
};

// Within one batch (no CMD_SYNC or STE reinstall between them) an invalidation is redundant when a LATER one
// covers it: the later one executes after it and completes at the same CMD_SYNC (IHI 0070 4.4, 4.7).
// Only later ones count: an earlier wide invalidation does not cover entries re-cached before a later narrow one.
void coalesce(ForwardBatch& batch, PlanStats& stats) {
  const std::size_t n = batch.entries.size();
  if (n < 2) return;
  bool later_all = false;                       // TLBI_NH_ALL / TLBI_NSNH_ALL
  std::unordered_set<std::uint16_t> later_asid; // TLBI_NH_ASID
  std::unordered_set<std::uint32_t> later_cd_all;  // CFGI_CD_ALL by SID
  std::unordered_set<Command, CommandHash> later_same;
  std::vector<bool> keep(n, true);
  for (std::size_t i = n; i-- > 0;) {
    const Command& c = batch.entries[i];
    const Opcode op = c.get(Command::Opcode);
    bool redundant = later_same.contains(c);
    switch (op) {
      case Opcode::TLBI_NH_VA:
        redundant = redundant || later_all || later_asid.contains(c.get(Command::ASID));
        break;
      case Opcode::TLBI_NH_VAA:
        redundant = redundant || later_all;
        break;
      case Opcode::TLBI_NH_ASID:
        redundant = redundant || later_all;
        if (!redundant) later_asid.insert(c.get(Command::ASID));
        break;
      case Opcode::TLBI_NH_ALL:
      case Opcode::TLBI_NSNH_ALL:
        redundant = redundant || later_all;
        later_all = true;
        break;
      case Opcode::CFGI_CD:
        redundant = redundant || later_cd_all.contains(c.get(Command::SID));
        break;
      case Opcode::CFGI_CD_ALL:
        later_cd_all.insert(c.get(Command::SID));
        break;
      default:
        break;
    }
    if (redundant) {
      keep[i] = false;
    } else {
      later_same.insert(c);
    }
  }
  std::size_t out = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!keep[i]) continue;
    batch.entries[out] = batch.entries[i];
    batch.guest_index[out] = batch.guest_index[i];
    ++out;
  }
  stats.coalesced += static_cast<std::uint32_t>(n - out);
  batch.entries.resize(out);
  batch.guest_index.resize(out);
}

class Planner {
 public:
  Planner(const PlanOptions& options, Plan& plan) : options_(options), plan_(plan) {}

  void forward(const Command& c, std::uint32_t index) {
    if (options_.max_batch_entries != 0 && open_.entries.size() >= options_.max_batch_entries) flush();
    open_.entries.push_back(c);
    open_.guest_index.push_back(index);
  }
  // Ends the open batch so that whatever comes next stays after it in guest order.
  void flush() {
    if (open_.entries.empty()) return;
    if (options_.coalesce) coalesce(open_, plan_.stats);
    plan_.stats.forwarded += static_cast<std::uint32_t>(open_.entries.size());
    ++plan_.stats.batches;
    plan_.steps.emplace_back(std::move(open_));
    open_ = {};
  }
  void step(Step s) {
    flush();
    plan_.steps.push_back(std::move(s));
  }

 private:
  const PlanOptions& options_;
  Plan& plan_;
  ForwardBatch open_;
};

}  // namespace

Plan plan(std::span<const Command> commands, const AdvertisedFeatures& features, const PlanOptions& options,
          std::uint32_t first_index) {
  Plan out;
  Planner p(options, out);
  for (std::size_t i = 0; i < commands.size(); ++i) {
    const Command& c = commands[i];
    const auto index = static_cast<std::uint32_t>(first_index + i);
    ++out.stats.commands;
    Verdict v = classify(c, features);
    switch (v.disposition) {
      case Disposition::forward:
        p.forward(c, index);
        break;
      case Disposition::reinstall_ste:
        p.step(StreamReinstall{index, stes_named(c)});
        break;
      case Disposition::fault_response:
        p.step(FaultResponse{index, c});
        break;
      case Disposition::sync:
        p.step(SyncPoint{index, c});
        break;
      case Disposition::local_noop:
        break;
      case Disposition::illegal:
        p.step(IllegalCommand{index, std::move(v.reason)});
        out.stopped = true;
        return out;
    }
  }
  p.flush();
  return out;
}

}  // namespace vsmmu::invalidation
