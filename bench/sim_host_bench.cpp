// The simulated host's hot paths (docs/performance.md, "Simulated host"):
// - IOMMU_HWPT_INVALIDATE of N guest TLBI_NH_VA commands on a vIOMMU: validation, VMID rewrite, and the
//   physical command queue of the SMMU model in groups of 63 + CMD_SYNC;
// - IOMMU_HWPT_GET_DIRTY_BITMAP over 1 GiB of a NEST_PARENT|DIRTY_TRACKING HWPT (kernel profile
//   "nested-dirty"), mapped with 4 KiB pages or 2 MiB blocks: read only (NO_CLEAR), read-and-clear of a clean
//   range, and read-and-clear of a fully dirty range (the clear and its TLB invalidation included).
#include <sys/mman.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include "bench/bench_support.hpp"
#include "host/handles.hpp"
#include "host/sim/sim_host.hpp"
#include "smmu/command.hpp"
#include "smmu/ste.hpp"

namespace {

using namespace vsmmu;
using namespace vsmmu::host;

using bench::must;

std::unique_ptr<sim::SimHost> make(const char* kernel) {
  return must(sim::SimHost::create(must(sim::embedded_kernel_profile(kernel)), must(sim::embedded_hardware_profile("default"))));
}

constexpr std::uint32_t kMapRW = uapi::kIoasMapFixedIova | uapi::kIoasMapReadable | uapi::kIoasMapWriteable;


// ---- HWPT_INVALIDATE

void BM_HwptInvalidate(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  auto host = make("upstream");
  const auto dev = must(host->bind_device("nic0"));
  const auto ioas = must(host->ioas_alloc());
  const auto parent = must(host->hwpt_alloc(paging_request(dev, ioas, uapi::kHwptAllocNestParent)));
  const auto viommu = must(host->viommu_alloc(dev, parent, uapi::kViommuTypeArmSmmuv3));
  std::vector<std::byte> data;
  for (std::uint32_t i = 0; i < n; ++i) {
    smmu::Command c;
    c.set(smmu::Command::Opcode, smmu::Opcode::TLBI_NH_VA)
        .set(smmu::Command::ASID, 1)
        .set(smmu::Command::Address, 0x1000'0000ULL + i * 0x1000ULL)
        .set(smmu::Command::Leaf, true);
    auto b = c.to_bytes();
    data.insert(data.end(), b.begin(), b.end());
  }
  InvalidateRequest req;
  req.id = viommu;
  req.entry_num = n;
  req.data = data;
  const auto before = must(host->smmu_counters("smmu0"));
  for (auto _ : state) {
    auto out = host->hwpt_invalidate(req);
    if (out.error || out.handled != n) state.SkipWithError("HWPT_INVALIDATE failed");
    benchmark::DoNotOptimize(out);
  }
  const auto after = must(host->smmu_counters("smmu0"));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * n);
  state.counters["syncs/call"] = static_cast<double>(after.syncs - before.syncs) / static_cast<double>(state.iterations());
  state.counters["ns/cmd"] = benchmark::Counter(static_cast<double>(state.iterations()) * n,
                                                benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_HwptInvalidate)->Arg(1)->Arg(8)->Arg(63)->Arg(64)->Arg(256)->Arg(1024)->Unit(benchmark::kMicrosecond);

// ---- GET_DIRTY_BITMAP over 1 GiB

constexpr std::uint64_t kGiB = 1ULL << 30;

struct DirtySetup {
  std::unique_ptr<sim::SimHost> host;
  UniqueFd memfd;
  DeviceId dev = 0;
  ObjectId ioas = 0, hwpt = 0;
  std::uint64_t iova = 0;
  std::vector<std::byte> bitmap = std::vector<std::byte>(kGiB / 4096 / 8);

  // blocks: large IOMMU pages on, the IOVA 2 MiB- but not 1 GiB-aligned: 512 leaves of 2 MiB; else
  // IOMMU_OPTION_HUGE_PAGES off: 262144 leaves of 4 KiB.
  explicit DirtySetup(bool blocks) : host(make("nested-dirty")) {
    memfd = UniqueFd(::memfd_create("vsmmu-bench", MFD_CLOEXEC));
    if (!memfd || ::ftruncate(memfd.get(), static_cast<off_t>(kGiB)) != 0) throw std::runtime_error("memfd");
    dev = must(host->bind_device("nic0"));
    ioas = must(host->ioas_alloc());
    iova = 0x1'0020'0000ULL;
    must(host->ioas_huge_pages(ioas, blocks));
    hwpt = must(
        host->hwpt_alloc(paging_request(dev, ioas, uapi::kHwptAllocNestParent | uapi::kHwptAllocDirtyTracking)));
    map();
  }
  // A fresh mapping: io-pgtable maps writable leaves dirty (DBM with write permission).
  void map() { must(host->ioas_map_file(ioas, memfd.get(), 0, kGiB, iova, kMapRW)); }
  void remap() {
    must(host->ioas_unmap(ioas, iova, kGiB));
    map();
  }
  void get(std::uint32_t flags) { must(host->get_dirty_bitmap(hwpt, iova, kGiB, 4096, bitmap.data(), flags)); }
};

void report(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kGiB));
  state.counters["pages"] = static_cast<double>(kGiB / 4096);
}

void BM_DirtyBitmapNoClearAllDirty(benchmark::State& state) {
  DirtySetup s(state.range(0) != 0);
  for (auto _ : state) s.get(uapi::kDirtyBitmapNoClear);
  report(state);
}
void BM_DirtyBitmapClearClean(benchmark::State& state) {
  DirtySetup s(state.range(0) != 0);
  s.get(0);  // now clean
  for (auto _ : state) s.get(0);
  report(state);
}
void BM_DirtyBitmapClearAllDirty(benchmark::State& state) {
  DirtySetup s(state.range(0) != 0);
  for (auto _ : state) {
    state.PauseTiming();
    s.remap();  // every leaf dirty again
    state.ResumeTiming();
    s.get(0);
  }
  report(state);
}
// Arg 0: 4 KiB pages, 1: 2 MiB blocks.
BENCHMARK(BM_DirtyBitmapNoClearAllDirty)->ArgName("blocks")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DirtyBitmapClearClean)->ArgName("blocks")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DirtyBitmapClearAllDirty)->ArgName("blocks")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
