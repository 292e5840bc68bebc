// Coalescing never changes what the guest sees: for random runs of guest commands over random TLB and
// configuration-cache contents (global and non-global, 4 KiB pages and 2 MiB blocks, several ASIDs and
// streams, entries re-cached between commands), executing the batched plan leaves the SMMU's TLB and CD cache
// exactly as executing every command one by one (the per_command policy) does, at every CMD_SYNC and at the
// end; so every later DMA (a lookup in the same caches over the same tables) has the same outcome.
// The caches are the software SMMU's (smmu/model), which scope each command as IHI 0070 4.3 and 4.4 say.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "invalidation/planner.hpp"
#include "smmu/model/config_cache.hpp"
#include "smmu/model/tlb.hpp"

namespace vsmmu::invalidation {
namespace {

using smmu::Command;
using smmu::Granule;
using smmu::Opcode;
using smmu::model::ConfigCache;
using smmu::model::ContextEntry;
using smmu::model::Tlb;
using smmu::model::TlbEntry;
using smmu::model::TlbStage;

constexpr unsigned kAsids = 3;    // ASIDs 1..3
constexpr unsigned kStreams = 3;  // StreamIDs 1..3
constexpr unsigned kSsids = 4;    // SubstreamIDs 0..3
constexpr unsigned kPages = 1024; // VAs: the first 4 MiB, two 2 MiB blocks

AdvertisedFeatures features() {
  AdvertisedFeatures f;
  f.ssid_bits = 2;
  f.ril = true;
  return f;
}

// The vSMMU's view: stage 1 only, 16-bit ASIDs, range invalidation.
smmu::Idr0 idr0() { return smmu::Idr0{}.set(smmu::Idr0::S1P, true).set(smmu::Idr0::ASID16, true); }
smmu::Idr3 idr3() { return smmu::Idr3{}.set(smmu::Idr3::RIL, true); }

// The SMMU state a guest command can change.
struct Caches {
  Tlb tlb{1U << 16};
  ConfigCache config{64, 64};
};

TlbEntry random_entry(std::mt19937_64& rng) {
  TlbEntry e;
  e.regime.stage = TlbStage::s1;
  e.regime.asid = static_cast<std::uint16_t>(1 + rng() % kAsids);
  e.global = rng() % 4 == 0;
  const bool block = rng() % 5 == 0;
  e.size_log2 = block ? 21 : 12;
  e.level = block ? 2 : 3;
  e.granule = Granule::k4K;
  const std::uint64_t va = (rng() % kPages) << 12;
  e.input_base = va & ~((1ULL << e.size_log2) - 1);
  e.output_base = 0x8000'0000ULL + e.input_base;
  e.perm = {true, rng() % 2 == 0, false};
  return e;
}

void random_context(std::mt19937_64& rng, Caches& c) {
  ContextEntry ctx;
  ctx.s1.ttb = rng() & 0xffff'f000ULL;
  c.config.insert_context(static_cast<std::uint32_t>(1 + rng() % kStreams), static_cast<std::uint32_t>(rng() % kSsids), ctx);
}

// A guest command of the kinds the planner coalesces or must keep apart, with the fields a guest driver uses
// and the ones a careless or hostile one might (Leaf = 0, TTL hints, range forms, TG = 0).
Command random_command(std::mt19937_64& rng) {
  const auto asid = static_cast<std::uint16_t>(1 + rng() % kAsids);
  const auto sid = static_cast<std::uint32_t>(1 + rng() % kStreams);
  const std::uint64_t va = (rng() % kPages) << 12;
  auto address_form = [&](Command c) {
    c.set(Command::Address, va).set(Command::Leaf, rng() % 3 != 0);
    if (rng() % 4 != 0) {
      c.set(Command::TG, 1);  // 4 KiB
      if (rng() % 3 == 0) c.set(Command::TTL, 2 + rng() % 2);
      if (rng() % 3 == 0) c.set(Command::NUM, rng() % 4).set(Command::SCALE, rng() % 3);
    }
    return c;
  };
  switch (rng() % 16) {
    case 0: case 1: case 2: case 3: case 4:
      return address_form(Command{}.set(Command::Opcode, Opcode::TLBI_NH_VA).set(Command::ASID, asid));
    case 5: case 6:
      return address_form(Command{}.set(Command::Opcode, Opcode::TLBI_NH_VAA));
    case 7: case 8:
      return Command{}.set(Command::Opcode, Opcode::TLBI_NH_ASID).set(Command::ASID, asid);
    case 9:
      return Command{}.set(Command::Opcode, rng() % 2 ? Opcode::TLBI_NH_ALL : Opcode::TLBI_NSNH_ALL);
    case 10: case 11:
      return Command{}.set(Command::Opcode, Opcode::CFGI_CD).set(Command::SID, sid)
          .set(Command::SSID, rng() % kSsids).set(Command::Leaf, rng() % 2 == 0);
    case 12:
      return Command{}.set(Command::Opcode, Opcode::CFGI_CD_ALL).set(Command::SID, sid);
    case 13:
      return Command{}.set(Command::Opcode, Opcode::CFGI_STE).set(Command::SID, sid);
    default:
      return Command{}.set(Command::Opcode, Opcode::CMD_SYNC);
  }
}

// What one forwarded command does to the SMMU (the host's physical SMMU runs the guest's command as is, with
// the VMID the kernel puts in: stage-1 entries here, so no VMID).
void execute(const Command& c, Caches& caches) {
  switch (c.get(Command::Opcode)) {
    case Opcode::CFGI_CD:
      caches.config.invalidate_context(c.get(Command::SID), static_cast<std::uint32_t>(c.get(Command::SSID)));
      break;
    case Opcode::CFGI_CD_ALL: caches.config.invalidate_contexts(c.get(Command::SID)); break;
    default: caches.tlb.invalidate(smmu::model::tlb_invalidation(c, idr0(), idr3())); break;
  }
}

// Everything a later DMA could observe: the lookup of every (ASID, page) and every (SID, SSID) context.
std::vector<std::string> observe(const Caches& c) {
  std::vector<std::string> out;
  for (std::uint16_t asid = 1; asid <= kAsids; ++asid)
    for (std::uint64_t page = 0; page < kPages; ++page) {
      smmu::model::TlbRegime regime;
      regime.asid = asid;
      if (auto e = c.tlb.lookup(regime, page << 12))
        out.push_back(fmt::format("asid {} va {:#x} -> {:#x} global {} w {}", asid, page << 12, e->translate(page << 12),
                                  e->global, e->perm.write));
    }
  for (std::uint32_t sid = 1; sid <= kStreams; ++sid)
    for (std::uint32_t ssid = 0; ssid < kSsids; ++ssid)
      if (const auto* ctx = c.config.context(sid, ssid))
        out.push_back(fmt::format("sid {} ssid {} ttb {:#x}", sid, ssid, ctx->s1.ttb));
  out.push_back(fmt::format("tlb entries {}", c.tlb.size()));
  return out;
}

// Runs `commands` on `caches` as the plan says: every kept command at its place in guest order, with the same
// re-caching (`refills[i]`: entries a DMA cached just before guest command i) on both sides. Returns what a
// DMA would observe at each CMD_SYNC and at the end.
std::vector<std::vector<std::string>> run(const Plan& plan, std::span<const Command> commands,
                                          const std::vector<std::vector<TlbEntry>>& refills, Caches& caches) {
  std::vector<const Command*> kept(commands.size(), nullptr);
  std::vector<bool> sync_at(commands.size(), false);
  for (const auto& step : plan.steps) {
    if (const auto* b = std::get_if<ForwardBatch>(&step))
      for (std::size_t k = 0; k < b->entries.size(); ++k) kept[b->guest_index[k]] = &b->entries[k];
    if (const auto* s = std::get_if<SyncPoint>(&step)) sync_at[s->guest_index] = true;
  }
  std::vector<std::vector<std::string>> seen;
  for (std::size_t i = 0; i < commands.size(); ++i) {
    for (const auto& e : refills[i]) caches.tlb.insert(e);
    if (kept[i]) execute(*kept[i], caches);
    if (sync_at[i]) seen.push_back(observe(caches));
  }
  seen.push_back(observe(caches));
  return seen;
}

TEST(CoalescingProperty, BatchedAndPerCommandPlansLeaveTheSameCachesForEveryDma) {
  std::mt19937_64 rng(0x5eed'0070);
  std::uint64_t coalesced = 0;
  for (int round = 0; round < 300; ++round) {
    std::vector<Command> commands(1 + rng() % 48);
    for (auto& c : commands) c = random_command(rng);
    std::vector<std::vector<TlbEntry>> refills(commands.size());
    for (auto& r : refills)
      for (unsigned n = rng() % 3 == 0 ? 1 + rng() % 4 : 0; n > 0; --n) r.push_back(random_entry(rng));

    Caches batched, per_command;
    for (int n = 0; n < 200; ++n) {
      const TlbEntry e = random_entry(rng);
      batched.tlb.insert(e);
      per_command.tlb.insert(e);
    }
    for (int n = 0; n < 8; ++n) {
      const std::uint64_t seed = rng();
      std::mt19937_64 a(seed), b(seed);
      random_context(a, batched);
      random_context(b, per_command);
    }
    // The policies as the vSMMU configures them (nesting/virtual_smmu.cpp).
    const Plan batched_plan = plan(commands, features());
    const Plan single_plan = plan(commands, features(), PlanOptions{.max_batch_entries = 1, .coalesce = false});
    ASSERT_FALSE(batched_plan.stopped);
    coalesced += batched_plan.stats.coalesced;
    const auto want = run(single_plan, commands, refills, per_command);
    const auto got = run(batched_plan, commands, refills, batched);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t s = 0; s < got.size(); ++s) {
      if (got[s] == want[s]) continue;
      std::string trace;
      for (const auto& c : commands) trace += fmt::format("  {:#018x} {:#018x}\n", c.dw[0], c.dw[1]);
      std::vector<std::string> only_batched, only_single;
      std::ranges::set_difference(got[s], want[s], std::back_inserter(only_batched));
      std::ranges::set_difference(want[s], got[s], std::back_inserter(only_single));
      FAIL() << "round " << round << ", observation " << s << ": batched keeps " << only_batched.size()
             << " translations per_command does not (first: " << (only_batched.empty() ? "-" : only_batched[0])
             << "), per_command keeps " << only_single.size() << " batched does not; commands:\n" << trace;
    }
  }
  // The property is only worth something if coalescing happened: identical, covered and NH_ALL cases.
  EXPECT_GT(coalesced, 100U);
}

// The issue that made this test: a global mapping, TLBI_NH_VA + TLBI_NH_ASID in one batch. The VA form must be
// sent: NH_ASID spares global entries (IHI 0070 4.4.2.2).
TEST(CoalescingProperty, GlobalEntryUnmappedByVaThenAsidIsGoneAfterTheSync) {
  Caches batched;
  TlbEntry global;
  global.regime.asid = 1;
  global.global = true;
  global.input_base = 0x4000;
  global.output_base = 0x9000'4000;
  global.perm = {true, true, false};
  batched.tlb.insert(global);
  const std::vector<Command> commands = {
      Command{}.set(Command::Opcode, Opcode::TLBI_NH_VA).set(Command::ASID, 1).set(Command::Address, 0x4000)
          .set(Command::TG, 1).set(Command::Leaf, true),
      Command{}.set(Command::Opcode, Opcode::TLBI_NH_ASID).set(Command::ASID, 1),
      Command{}.set(Command::Opcode, Opcode::CMD_SYNC)};
  const Plan p = plan(commands, features());
  run(p, commands, std::vector<std::vector<TlbEntry>>(commands.size()), batched);
  smmu::model::TlbRegime regime;
  regime.asid = 1;
  EXPECT_FALSE(batched.tlb.lookup(regime, 0x4000).has_value()) << "the device could still write the unmapped page";
}

}  // namespace
}  // namespace vsmmu::invalidation
