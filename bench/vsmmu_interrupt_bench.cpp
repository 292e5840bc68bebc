// Guest MMIO accesses per CMD_SYNC (docs/performance.md, "Interrupts: MMIO accesses per CMD_SYNC"): each access
// to the vSMMU's registers is a VM exit in a real VMM, so how a guest learns that its CMD_SYNC completed decides
// what an unmap costs it beyond the invalidation. A GuestHarness on the default simulated host (nic0 as vSID
// 0x10 attached to a stage-1 address space); its scripted guest driver, which behaves as Linux's arm-smmu-v3,
// issues through its command queue and counts its register accesses (SmmuDriver::mmio_accesses). Three
// configurations, measured in one run:
// - qemu:  QEMU's accelerated SMMUv3 (hw/arm/smmuv3-accel.c): IDR0.MSI = 0, so the guest polls CMDQ_CONS by
//          MMIO, and one HWPT_INVALIDATE per guest command (InvalidationPolicy::per_command): the baseline;
// - wired: this vSMMU without the MSI wish: CMDQ_CONS polling, invalidations batched per CMD_SYNC;
// - msi:   the MSI wish: Linux's MSIPOLL, the CMD_SYNC's MSI written by the vSMMU into its own queue slot, which
//          the guest polls in RAM (arm_smmu_cmdq_build_sync_cmd, __arm_smmu_cmdq_poll_until_msi).
// Two operations: an unmap (TLBI_NH_VA + CMD_SYNC) and a batch of 32 TLBI_NH_VA + CMD_SYNC. Counters: mmio_per_op
// (reads_per_op, writes_per_op) and host_calls_per_op (HWPT_INVALIDATE); time per operation is the in-process cost
// (no VM exit is paid here).
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include "bench/bench_support.hpp"
#include "host/sim/sim_host.hpp"
#include "smmu/driver/commands.hpp"
#include "testing/guest_harness.hpp"

namespace {

using namespace vsmmu;
using namespace vsmmu::nesting;
using namespace vsmmu::smmu;
using namespace vsmmu::smmu::driver;
using namespace vsmmu::testkit;

using bench::must;

constexpr std::uint32_t kNic0 = 0x10;
constexpr std::uint16_t kAsid = 1;
constexpr std::uint64_t kVa = 0x10'0000'0000;
constexpr std::uint64_t kPage = 0x1000;

enum Config : std::int64_t { kQemu = 0, kWired = 1, kMsi = 2 };
const char* config_name(std::int64_t c) { return c == kQemu ? "qemu" : c == kWired ? "wired" : "msi"; }

struct Vm {
  std::unique_ptr<host::sim::SimHost> host;
  std::unique_ptr<GuestHarness> guest;

  explicit Vm(std::int64_t config) {
    host = must(host::sim::SimHost::create_default());
    GuestHarnessConfig c;
    c.vsmmu.policy = config == kQemu ? InvalidationPolicy::per_command : InvalidationPolicy::batched;
    c.vsmmu.wishes.msi = config == kMsi;
    c.devices = {{"nic0", -1, kNic0}};
    guest = must(GuestHarness::create(*host, c));
    if (guest->driver().msipoll() != (config == kMsi)) throw std::runtime_error("MSIPOLL is not as configured");
    must(guest->attach(kNic0, kAsid));
  }
};

// Args: configuration, TLBIs before the CMD_SYNC (1: an unmap; 32: a batch).
void BM_CmdSync(benchmark::State& state) {
  Vm vm(state.range(0));
  std::vector<Command> cmds;
  for (std::int64_t i = 0; i < state.range(1); ++i) cmds.push_back(cmd_tlbi_nh_va(0, kAsid, kVa + static_cast<std::uint64_t>(i) * kPage));
  SmmuDriver& driver = vm.guest->driver();
  const MmioAccesses before = driver.mmio_accesses();
  const VirtualSmmuStats stats = vm.guest->vsmmu().stats();
  for (auto _ : state)
    if (!driver.issue(cmds)) {
      state.SkipWithError("issue failed");
      break;
    }
  const MmioAccesses after = driver.mmio_accesses();
  const auto ops = static_cast<double>(state.iterations());
  state.counters["mmio_per_op"] = static_cast<double>(after.total() - before.total()) / ops;
  state.counters["reads_per_op"] = static_cast<double>(after.reads - before.reads) / ops;
  state.counters["writes_per_op"] = static_cast<double>(after.writes - before.writes) / ops;
  state.counters["host_calls_per_op"] =
      static_cast<double>(vm.guest->vsmmu().stats().invalidate_calls - stats.invalidate_calls) / ops;
  state.SetLabel(fmt::format("{} {}", config_name(state.range(0)), state.range(1) == 1 ? "unmap" : "batch32"));
}

BENCHMARK(BM_CmdSync)
    ->ArgNames({"config", "tlbis"})
    ->ArgsProduct({{kQemu, kWired, kMsi}, {1, 32}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
