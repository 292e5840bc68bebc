// Translation throughput of the software SMMUv3 (smmu/model): a nested stream with 4KB granules and 4-level
// tables at both stages (48-bit VA, 48-bit IPA), translated with TLB hits, and with a full nested walk per
// translation (24 descriptor reads: 4 stage-1 levels, each table address and the output through 4 stage-2
// levels). Figures and the command that produced them: docs/performance.md.
#include <benchmark/benchmark.h>

#include <array>
#include <cstdio>
#include <cstdlib>

#include "testing/dma.hpp"
#include "testing/testbed.hpp"

namespace {

using namespace vsmmu::smmu;
using namespace vsmmu::smmu::model;
using namespace vsmmu::testkit;

constexpr std::uint32_t kSid = 0x10;
constexpr std::uint16_t kVmid = 1;
constexpr std::uint16_t kAsid = 1;
constexpr std::uint64_t kVa = 0x7f00'0000'0000ULL;
constexpr std::uint64_t kPages = 512;  // the working set: 2 MiB of 4KB pages

// A nested stream over `kPages` pages, on an SMMU whose TLB holds `tlb_entries` (0: every access walks).
class NestedBench {
 public:
  explicit NestedBench(std::size_t tlb_entries) {
    ModelConfig config = ModelConfig::reference();
    config.tlb_entries = tlb_entries;
    must(bed_.start(config), "start");
    must(bed_.map_guest_ram(), "stage-2 map");
    const std::uint64_t data = bed_.layout.guest_ipa + bed_.layout.guest_pool_size;
    must(bed_.s1.map(kVa, data, kPages * 4096, MapAttributes{.allow_blocks = false}), "stage-1 map");
    auto cd = bed_.nested_stream(kSid, kVmid, kAsid);
    if (!cd) fail(cd.error().to_string());
  }
  SmmuModel& smmu() { return *bed_.smmu; }

 private:
  static void fail(const std::string& why) {
    std::fprintf(stderr, "benchmark setup failed: %s\n", why.c_str());
    std::abort();
  }
  static void must(const vsmmu::Result<void>& r, const char* what) {
    if (!r) fail(std::string(what) + ": " + r.error().to_string());
  }
  Testbed bed_;
};

void report(benchmark::State& state, SmmuModel& smmu, const Counters& before) {
  const Counters after = smmu.counters();
  const auto n = static_cast<double>(after.translations - before.translations);
  state.SetItemsProcessed(state.iterations());
  state.counters["translations/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["tlb_hit_ratio"] = static_cast<double>(after.tlb_hits - before.tlb_hits) / n;
  state.counters["descriptor_reads/translation"] =
      static_cast<double>(after.descriptor_reads - before.descriptor_reads) / n;
}

// One translation per iteration over the working set, after warming the configuration cache (and the TLB,
// when it has room).
void translate_loop(benchmark::State& state, std::size_t tlb_entries) {
  NestedBench b(tlb_entries);
  const DmaStream stream{kSid, std::nullopt, {}};
  for (std::uint64_t p = 0; p < (tlb_entries > 0 ? kPages : 1); ++p)
    if (!b.smmu().translate(stream, kVa + p * 4096, false)) state.SkipWithError("warm-up translation faulted");
  const Counters before = b.smmu().counters();
  std::uint64_t i = 0;
  for (auto _ : state) {
    auto t = b.smmu().translate(stream, kVa + (i++ % kPages) * 4096 + 0x80, false);
    benchmark::DoNotOptimize(t);
  }
  report(state, b.smmu(), before);
}

// Each translation a TLB hit (the working set fits the TLB).
void BM_NestedTranslateTlbHit(benchmark::State& state) { translate_loop(state, 8192); }
BENCHMARK(BM_NestedTranslateTlbHit);

// Each translation a full nested walk: the SMMU keeps no TLB entries (its configuration cache still holds
// the STE and CD, as it would on hardware).
void BM_NestedTranslateFullWalk(benchmark::State& state) { translate_loop(state, 0); }
BENCHMARK(BM_NestedTranslateFullWalk);

// A device's 64-byte DMA read through the TLB-hit path, data movement included.
void BM_NestedDmaRead64BytesTlbHit(benchmark::State& state) {
  NestedBench b(8192);
  DmaMaster dev(b.smmu(), kSid);
  std::array<std::byte, 64> buf{};
  for (std::uint64_t p = 0; p < kPages; ++p)
    if (!dev.read(kVa + p * 4096, buf)) state.SkipWithError("warm-up DMA faulted");
  const Counters before = b.smmu().counters();
  std::uint64_t i = 0;
  for (auto _ : state) {
    auto r = dev.read(kVa + (i++ % kPages) * 4096 + 0x40, buf);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(buf);
  }
  report(state, b.smmu(), before);
}
BENCHMARK(BM_NestedDmaRead64BytesTlbHit);

}  // namespace

BENCHMARK_MAIN();
