#include "invalidation/planner.hpp"

namespace vsmmu::invalidation {

using smmu::Command;
using smmu::Opcode;

const Plan& Planner::plan(std::span<const Command> commands, const AdvertisedFeatures& features,
                          const PlanOptions& options, std::uint32_t first_index) {
  Plan& out = plan_;
  out.steps.clear();
  out.stats = {};
  out.stopped = false;
  out.entries.clear();
  out.guest_index.clear();
  // Room for every command: the buffers never move while batches view them.
  out.entries.reserve(commands.size());
  out.guest_index.reserve(commands.size());
  open_ = 0;
  for (std::size_t i = 0; i < commands.size(); ++i) {
    const Command& c = commands[i];
    const auto index = static_cast<std::uint32_t>(first_index + i);
    ++out.stats.commands;
    CommandClass v = classify(c, features);
    if (v.disposition == Disposition::forward) {
      forward(c, index, options);
      continue;
    }
    if (v.disposition == Disposition::local_noop) continue;
    flush(options);  // whatever comes next stays after the open batch in guest order
    switch (v.disposition) {
      case Disposition::reinstall_ste:
        out.steps.emplace_back(StreamReinstall{index, stes_named(c)});
        break;
      case Disposition::fault_response:
        out.steps.emplace_back(FaultResponse{index, c});
        break;
      case Disposition::sync:
        out.steps.emplace_back(SyncPoint{index, c});
        break;
      case Disposition::illegal:
        out.steps.emplace_back(IllegalCommand{index, std::move(v.reason)});
        out.stopped = true;
        return out;
      case Disposition::forward:
      case Disposition::local_noop:
        break;
    }
  }
  flush(options);
  return out;
}

void Planner::forward(const Command& c, std::uint32_t index, const PlanOptions& options) {
  if (options.max_batch_entries != 0 && plan_.entries.size() - open_ >= options.max_batch_entries) flush(options);
  plan_.entries.push_back(c);
  plan_.guest_index.push_back(index);
}

// Ends the open batch.
void Planner::flush(const PlanOptions& options) {
  if (plan_.entries.size() == open_) return;
  if (options.coalesce) coalesce();
  const std::size_t n = plan_.entries.size() - open_;
  plan_.stats.forwarded += static_cast<std::uint32_t>(n);
  ++plan_.stats.batches;
  plan_.steps.emplace_back(ForwardBatch{std::span(plan_.entries).subspan(open_, n), std::span(plan_.guest_index).subspan(open_, n)});
  open_ = plan_.entries.size();
}

// Within one batch (no CMD_SYNC or STE reinstall between them) an invalidation is redundant when a LATER one
// covers its whole architectural scope: the later one executes after it and completes at the same CMD_SYNC
// (IHI 0070 4.4, 4.7), so whatever the earlier one would remove - including entries re-cached in between - the
// later one removes. Only later ones count: an earlier wide invalidation does not cover entries re-cached
// before a later narrow one. The rules, each checked against the scope of both commands:
//  - an identical later command (every field equal: opcode, ASID, address, Leaf, TG, TTL, NUM, SCALE, SID,
//    SSID ...) has the same scope: any forwardable command;
//  - a later TLBI_NH_ALL or TLBI_NSNH_ALL removes every stage-1 entry of the VMID, global (nG = 0) ones included
//    (4.4.2.1): it covers TLBI_NH_VA, TLBI_NH_VAA, TLBI_NH_ASID and TLBI_NH_ALL/NSNH_ALL, not CFGI_* or ATC_INV;
//  - a later CFGI_CD_ALL(SID) removes every CD cached for that StreamID (4.3.4): it covers CFGI_CD(SID, any
//    SSID, Leaf 0 or 1).
// And what is NOT a rule, on purpose:
//  - TLBI_NH_ASID(ASID) does not cover TLBI_NH_VA(ASID, VA): NH_ASID spares global entries, NH_VA removes the
//    global entries at VA too (4.4.2.2, 4.4.2.3); dropping the VA form would leave a global translation of
//    a page the guest unmapped in the TLB;
//  - different Leaf, TTL, TG or range (NUM, SCALE) forms never cover each other: a Leaf = 1 form spares
//    non-leaf walk caches and a TTL hint spares other levels (4.4.1), so only exact duplicates merge;
//  - TLBI_NH_VAA(VA) could cover TLBI_NH_VA(ASID, VA) with equal address fields; not done (Linux guests send
//    NH_VAA rarely), so the rule stays simple to check.
void Planner::coalesce() {
  auto& entries = plan_.entries;
  auto& guest_index = plan_.guest_index;
  const std::size_t end = entries.size();
  const std::size_t n = end - open_;
  if (n < 2) return;
  bool later_all = false;  // TLBI_NH_ALL / TLBI_NSNH_ALL
  later_cd_all_.reset();   // CFGI_CD_ALL by SID
  later_same_.reset(n);    // every kept command
  // From the last to the first; the kept ones are packed towards the end, in order, then moved to the front.
  std::size_t kept = end;
  for (std::size_t i = end; i-- > open_;) {
    const Command c = entries[i];
    const Opcode op = c.get(Command::Opcode);
    bool redundant = later_same_.contains(c);
    switch (op) {
      case Opcode::TLBI_NH_VA:
      case Opcode::TLBI_NH_VAA:
      case Opcode::TLBI_NH_ASID:
        redundant = redundant || later_all;
        break;
      case Opcode::TLBI_NH_ALL:
      case Opcode::TLBI_NSNH_ALL:
        redundant = redundant || later_all;
        later_all = true;
        break;
      case Opcode::CFGI_CD:
        redundant = redundant || later_cd_all_.contains(c.get(Command::SID));
        break;
      case Opcode::CFGI_CD_ALL:
        later_cd_all_.insert(c.get(Command::SID));
        break;
      default:
        break;
    }
    if (redundant) continue;
    later_same_.insert(c);
    --kept;
    entries[kept] = c;
    guest_index[kept] = guest_index[i];
  }
  const auto first = static_cast<std::ptrdiff_t>(open_), from = static_cast<std::ptrdiff_t>(kept);
  std::copy(entries.begin() + from, entries.end(), entries.begin() + first);
  std::copy(guest_index.begin() + from, guest_index.end(), guest_index.begin() + first);
  plan_.stats.coalesced += static_cast<std::uint32_t>(kept - open_);
  entries.resize(end - (kept - open_));
  guest_index.resize(end - (kept - open_));
}

Plan plan(std::span<const Command> commands, const AdvertisedFeatures& features, const PlanOptions& options,
          std::uint32_t first_index) {
  Planner p;
  p.plan(commands, features, options, first_index);
  return std::move(p).take();
}

}  // namespace vsmmu::invalidation
