// The hot path - a guest unmaps a buffer - from the guest command queue to the host (docs/performance.md,
// "Guest command queue to host"): a GuestHarness on the default simulated host (nic0 as vSID 0x10, attached to
// a stage-1 address space) whose guest has written commands into its command queue in guest RAM; what is timed
// is each CMDQ_PROD write and everything the VirtualSmmu does under it: read the commands from guest RAM, plan
// them (invalidation::plan), send HWPT_INVALIDATEs to the host, reinstall STEs, complete the CMD_SYNCs.
// The guest publishes after each CMD_SYNC (it waits for that sync before it writes more, as Linux does).
// Writing the commands into guest RAM is the guest's cost and is done outside the timed part; the *ViaDriver
// benchmark includes it (smmu::driver::SmmuDriver::push: register reads, the writes, CMDQ_PROD).
//
// Each scenario runs under both invalidation policies: batched (one HWPT_INVALIDATE per CMD_SYNC) and
// per_command (one per guest command, QEMU's accelerated SMMUv3: the baseline). Counters:
// - host_calls_per_1k: HWPT_INVALIDATE calls per 1000 guest commands;
// - ns_per_cmd: wall time per guest command;
// - own_ns_per_cmd: (wall time - time inside HWPT_INVALIDATE) per guest command: the vSMMU's own cost (other
//   host calls, e.g. the attach a CFGI_STE makes, count as own).
// BM_Plan times planning alone on the same commands.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "bench/bench_support.hpp"
#include "invalidation/planner.hpp"
#include "testing/guest_harness.hpp"
#include "host/sim/sim_host.hpp"
#include "smmu/driver/commands.hpp"
#include "smmu/registers.hpp"

namespace {

using namespace vsmmu;
using namespace vsmmu::nesting;
using namespace vsmmu::smmu;
using namespace vsmmu::smmu::driver;
using namespace vsmmu::testkit;
using Clock = std::chrono::steady_clock;

using bench::must;

constexpr std::uint32_t kNic0 = 0x10;
constexpr std::uint16_t kAsid = 1;
constexpr std::uint64_t kVa = 0x10'0000'0000;
constexpr std::uint64_t kPage = 0x1000;
constexpr unsigned kCmdqLog2 = 11;  // 2048 entries: every scenario fits in the queue at once

enum Scenario : std::int64_t { kTlbi1000 = 0, kSingle = 1, kMixed = 2 };

// The guest's commands for a scenario; every CMD_SYNC ends what one CMDQ_PROD write publishes.
std::vector<Command> scenario_commands(std::int64_t scenario) {
  std::vector<Command> out;
  std::uint64_t va = kVa;
  const auto tlbi = [&] {
    out.push_back(cmd_tlbi_nh_va(0, kAsid, va));
    va += kPage;
  };
  switch (scenario) {
    case kTlbi1000:  // (a) 1000 TLBI_NH_VA of distinct pages, a CMD_SYNC after every 32 and at the end
      for (int i = 0; i < 1000; ++i) {
        tlbi();
        if ((i + 1) % 32 == 0 || i == 999) out.push_back(cmd_sync());
      }
      break;
    case kSingle:  // (b) one TLBI_NH_VA + CMD_SYNC, published alone; 256 of them per iteration
      for (int i = 0; i < 256; ++i) {
        tlbi();
        out.push_back(cmd_sync());
      }
      break;
    case kMixed:  // (c) per 32 commands: 29 TLBI_NH_VA, CFGI_CD, CFGI_STE, CMD_SYNC; 32 of them
      for (int group = 0; group < 32; ++group) {
        for (int i = 0; i < 29; ++i) tlbi();
        out.push_back(cmd_cfgi_cd(kNic0, 0));
        out.push_back(cmd_cfgi_ste(kNic0));
        out.push_back(cmd_sync());
      }
      break;
    default:
      throw std::invalid_argument("unknown scenario");
  }
  return out;
}

const char* scenario_name(std::int64_t scenario) {
  switch (scenario) {
    case kTlbi1000: return "tlbi1000_sync32";
    case kSingle: return "tlbi_sync";
    case kMixed: return "mixed_cfgi_ste";
    default: return "?";
  }
}

InvalidationPolicy policy_of(std::int64_t arg) { return arg == 0 ? InvalidationPolicy::batched : InvalidationPolicy::per_command; }

// A VM with nic0 behind its vSMMU, attached to kAsid's (empty) stage-1 address space.
struct Vm {
  std::unique_ptr<host::sim::SimHost> host;
  std::unique_ptr<GuestHarness> guest;

  explicit Vm(InvalidationPolicy policy) {
    host = must(host::sim::SimHost::create_default());
    GuestHarnessConfig c;
    c.vsmmu.policy = policy;
    c.devices = {{"nic0", -1, kNic0}};
    c.driver.cmdq_log2 = kCmdqLog2;
    guest = must(GuestHarness::create(*host, c));
    if (guest->driver().cmdq_log2() != kCmdqLog2) throw std::runtime_error("the command queue is smaller than asked");
    must(guest->attach(kNic0, kAsid));
  }
  std::uint32_t reg(const RegisterInfo& r) { return must(guest->vsmmu().read32(r.offset)); }
};

struct Totals {
  VirtualSmmuStats before;
  std::chrono::nanoseconds wall{0};
};

void report(benchmark::State& state, Vm& vm, const Totals& t, const char* label) {
  const VirtualSmmuStats after = vm.guest->vsmmu().stats();
  const auto commands = static_cast<double>(after.commands - t.before.commands);
  if (commands == 0) return;
  const auto calls = static_cast<double>(after.invalidate_calls - t.before.invalidate_calls);
  const auto host_ns = static_cast<double>((after.host_time - t.before.host_time).count());
  const auto wall_ns = static_cast<double>(t.wall.count());
  state.counters["host_calls_per_1k"] = 1000.0 * calls / commands;
  state.counters["all_host_calls_per_1k"] = 1000.0 * static_cast<double>(after.host_calls - t.before.host_calls) / commands;
  state.counters["ns_per_cmd"] = wall_ns / commands;
  state.counters["own_ns_per_cmd"] = (wall_ns - host_ns) / commands;
  state.SetItemsProcessed(static_cast<std::int64_t>(commands));
  state.SetLabel(fmt::format("{} {}", scenario_name(state.range(0)), label));
}

const char* policy_label(std::int64_t arg) { return arg == 0 ? "batched" : "per_command"; }

// Args: scenario, policy (0 batched, 1 per_command).
void BM_GuestCommandQueue(benchmark::State& state) {
  Vm vm(policy_of(state.range(1)));
  const std::vector<Command> cmds = scenario_commands(state.range(0));
  const QueueIndex q{kCmdqLog2};
  const std::uint64_t base = vm.guest->driver().cmdq_base();
  Totals t{vm.guest->vsmmu().stats(), {}};
  for (auto _ : state) {
    // The guest's part: the commands into the queue from PROD on (wrapping at its end).
    const std::uint32_t start = QueueProd::of(vm.reg(regs::CMDQ_PROD)).get(QueueProd::WR);
    for (std::uint32_t i = 0; i < cmds.size();) {
      const std::uint32_t at = q.index(q.advance(start, i));
      const std::uint32_t run = std::min<std::uint32_t>(static_cast<std::uint32_t>(cmds.size()) - i, q.entries() - at);
      std::memcpy(vm.guest->bytes(base + at * Command::bytes, run * Command::bytes).data(), &cmds[i], run * Command::bytes);
      i += run;
    }
    // Timed: one CMDQ_PROD write per CMD_SYNC; the vSMMU does all its work inside it.
    const auto t0 = Clock::now();
    for (std::uint32_t i = 0; i < cmds.size(); ++i) {
      if (cmds[i].get(Command::Opcode) != Opcode::CMD_SYNC) continue;
      (void)vm.guest->vsmmu().write32(regs::CMDQ_PROD.offset, QueueProd{}.set(QueueProd::WR, q.advance(start, i + 1)).value());
    }
    const auto elapsed = Clock::now() - t0;
    t.wall += elapsed;
    state.SetIterationTime(std::chrono::duration<double>(elapsed).count());
    // Every command consumed, none refused.
    const QueueCons cons = QueueCons::of(vm.reg(regs::CMDQ_CONS));
    if (cons.get(QueueCons::RD) != q.advance(start, static_cast<std::uint32_t>(cmds.size())) ||
        cons.get(QueueCons::ERR) != Cerror::none) {
      state.SkipWithError("the vSMMU did not consume every command");
      break;
    }
  }
  report(state, vm, t, policy_label(state.range(1)));
}

// The same through the guest driver's push(): the guest's writes into its queue and its register reads included.
void BM_GuestCommandQueueViaDriver(benchmark::State& state) {
  Vm vm(policy_of(state.range(1)));
  const std::vector<Command> cmds = scenario_commands(state.range(0));
  std::vector<std::span<const Command>> groups;  // each up to and including a CMD_SYNC
  for (std::size_t begin = 0, i = 0; i < cmds.size(); ++i)
    if (cmds[i].get(Command::Opcode) == Opcode::CMD_SYNC) {
      groups.emplace_back(cmds.data() + begin, i + 1 - begin);
      begin = i + 1;
    }
  Totals t{vm.guest->vsmmu().stats(), {}};
  const auto t0 = Clock::now();
  for (auto _ : state)
    for (const auto& g : groups)
      if (!vm.guest->driver().push(g)) {
        state.SkipWithError("push failed");
        break;
      }
  t.wall = Clock::now() - t0;
  report(state, vm, t, policy_label(state.range(1)));
}

// Planning alone on a scenario's commands, as one run between CONS and PROD: invalidation::plan() (fresh
// buffers each time) or, with reused = 1, one invalidation::Planner kept across runs as the vSMMU keeps it.
void BM_Plan(benchmark::State& state) {
  const std::vector<Command> cmds = scenario_commands(state.range(0));
  invalidation::PlanOptions options;
  if (policy_of(state.range(1)) == InvalidationPolicy::per_command) options = {.max_batch_entries = 1, .coalesce = false};
  const invalidation::AdvertisedFeatures features;
  invalidation::Planner planner;
  const bool reused = state.range(2) != 0;
  for (auto _ : state) {
    if (reused) {
      benchmark::DoNotOptimize(&planner.plan(cmds, features, options));
    } else {
      auto plan = invalidation::plan(cmds, features, options);
      benchmark::DoNotOptimize(plan);
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * cmds.size()));
  state.counters["ns_per_cmd"] = benchmark::Counter(static_cast<double>(state.iterations() * cmds.size()),
                                                    benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetLabel(fmt::format("{} {}{}", scenario_name(state.range(0)), policy_label(state.range(1)), reused ? " reused" : ""));
}

void scenarios_by_policy(benchmark::internal::Benchmark* b) {
  b->ArgNames({"scenario", "per_command"});
  for (std::int64_t s : {kTlbi1000, kSingle, kMixed})
    for (std::int64_t p : {0, 1}) b->Args({s, p});
}

BENCHMARK(BM_GuestCommandQueue)->Apply(scenarios_by_policy)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GuestCommandQueueViaDriver)->Apply(scenarios_by_policy)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Plan)
    ->ArgNames({"scenario", "per_command", "reused"})
    ->ArgsProduct({{kTlbi1000, kSingle, kMixed}, {0, 1}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
