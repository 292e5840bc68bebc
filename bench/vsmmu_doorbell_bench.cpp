// The worst case of ONE guest MMIO write (docs/performance.md, "One doorbell, worst case"): a hostile guest
// fills a 2^16-entry command queue and writes CMDQ_PROD once. What is timed is that single write: everything
// the VirtualSmmu does under its lock before the write returns, which is how long the VMM thread that
// forwarded the write is held. The guest's queue writes and the work left for later (drained
// afterwards with process_events(), as a VMM's poll loop does) are not timed.
// Scenarios (two translating devices, nic0 and nic1, behind one vIOMMU):
// - cfgi_all: 32767 CFGI_ALL and a CMD_SYNC - every command re-reads every stream's STE; none changed;
// - tlbi_sync: 16383 x (TLBI_NH_VA + CMD_SYNC) - every pair is one HWPT_INVALIDATE under either policy.
// Counters: cmds_in_write (guest commands consumed by the write), host_calls_in_write, attaches_in_write.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "bench/bench_support.hpp"
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

constexpr unsigned kCmdqLog2 = 16;
constexpr std::uint64_t kVa = 0x10'0000'0000;

enum Scenario : std::int64_t { kCfgiAll = 0, kTlbiSync = 1 };

std::vector<Command> scenario_commands(std::int64_t scenario) {
  const std::uint32_t n = (1U << kCmdqLog2) / 2 - 1;  // the queue holds one write's worth twice over
  std::vector<Command> out;
  if (scenario == kCfgiAll) {
    out.assign(n, cmd_cfgi_all());
    out.push_back(cmd_sync());
  } else {
    for (std::uint32_t i = 0; i < n / 2; ++i) {
      out.push_back(cmd_tlbi_nh_va(0, 1, kVa + i * 0x1000ULL));
      out.push_back(cmd_sync());
    }
  }
  return out;
}

void BM_OneDoorbell(benchmark::State& state) {
  auto host = must(host::sim::SimHost::create_default());
  GuestHarnessConfig c;
  c.devices = {{"nic0", -1, 0x10}, {"nic1", -1, 0x18}};
  c.driver.cmdq_log2 = kCmdqLog2;
  c.vsmmu.policy = state.range(1) == 0 ? InvalidationPolicy::batched : InvalidationPolicy::per_command;
  auto guest = must(GuestHarness::create(*host, c));
  if (guest->driver().cmdq_log2() != kCmdqLog2) throw std::runtime_error("the command queue is smaller than asked");
  must(guest->attach(0x10, 1));
  must(guest->attach(0x18, 2));
  VirtualSmmu& v = guest->vsmmu();
  const std::vector<Command> cmds = scenario_commands(state.range(0));
  const QueueIndex q{kCmdqLog2};
  const std::uint64_t base = guest->driver().cmdq_base();
  double cmds_in_write = 0, calls_in_write = 0, attaches_in_write = 0, writes = 0;
  for (auto _ : state) {
    const std::uint32_t start = QueueProd::of(must(v.read32(regs::CMDQ_PROD.offset))).get(QueueProd::WR);
    for (std::uint32_t i = 0; i < cmds.size(); ++i)
      std::memcpy(guest->bytes(base + q.index(q.advance(start, i)) * Command::bytes, Command::bytes).data(), &cmds[i],
                  Command::bytes);
    const std::uint32_t end = q.advance(start, static_cast<std::uint32_t>(cmds.size()));
    const VirtualSmmuStats before = v.stats();
    const auto t0 = Clock::now();
    (void)v.write32(regs::CMDQ_PROD.offset, QueueProd{}.set(QueueProd::WR, end).value());
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - t0).count());
    const VirtualSmmuStats after = v.stats();
    cmds_in_write += static_cast<double>(after.commands - before.commands);
    calls_in_write += static_cast<double>(after.host_calls - before.host_calls);
    attaches_in_write += static_cast<double>(after.attaches - before.attaches);
    ++writes;
    // The rest, as the VMM's poll loop does it (untimed).
    for (int rounds = 0; QueueCons::of(must(v.read32(regs::CMDQ_CONS.offset))).get(QueueCons::RD) != end; ++rounds) {
      if (rounds > 1'000'000) {
        state.SkipWithError("the command queue never drained");
        return;
      }
      (void)v.process_events();
    }
    if (QueueCons::of(must(v.read32(regs::CMDQ_CONS.offset))).get(QueueCons::ERR) != Cerror::none) {
      state.SkipWithError("a command error");
      return;
    }
  }
  state.counters["cmds_in_write"] = cmds_in_write / writes;
  state.counters["host_calls_in_write"] = calls_in_write / writes;
  state.counters["attaches_in_write"] = attaches_in_write / writes;
  state.SetLabel(fmt::format("{} {}", state.range(0) == kCfgiAll ? "cfgi_all" : "tlbi_sync",
                             state.range(1) == 0 ? "batched" : "per_command"));
}

BENCHMARK(BM_OneDoorbell)
    ->ArgNames({"scenario", "per_command"})
    ->ArgsProduct({{kCfgiAll, kTlbiSync}, {0, 1}})
    ->UseManualTime()
    ->Iterations(8)  // each iteration also drains the whole queue (untimed): a fixed count keeps that bounded
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
