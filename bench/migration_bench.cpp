// Live migration on the simulated host (docs/performance.md, "Live migration"): what one dirty-log round and
// the vSMMU's state cost, each beside a baseline measured in the same run.
//
// Dirty log (kernel profile "nested-dirty": the nest parent is NEST_PARENT|DIRTY_TRACKING, hardware mode):
// - BM_HarvestHardware: one DirtyTracker::harvest (GuestMemory::dirty()) of a 16 GiB guest RAM region (one memfd,
//   sparse: only the pages the benchmark writes are ever touched) into a bitmap, the region's stage 2 mapped in
//   4 KiB pages (IOMMU_OPTION_HUGE_PAGES off: 4 Mi leaf PTEs). The VM is a GuestHarness in that RAM with nic0
//   behind its vSMMU, attached to a stage-1 address space that maps the whole region VA = GPA with 1 GiB blocks.
//   Before each round (untimed) nic0's DMA engine writes 8 bytes into 1 % of the region's pages (every 100th
//   page, from one of four offsets in turn: no two dirty pages are adjacent, so every dirty leaf is a run of its
//   own; 4 % of the memfd is ever touched), which the SMMU model marks dirty in the stage-2 leaves (S2AP[1] on
//   DBM leaves, IHI 0070 3.13.3).
//   Timed: the harvest alone: the walk of every leaf, the read-and-clear of the dirty ones and their TLB
//   invalidation (drivers/iommu/io-pgtable-arm.c arm_lpae_read_and_clear_dirty), the tracker's bitmap.
// - BM_HarvestConservative: the same region and VM on kernel profile "upstream", which refuses
//   NEST_PARENT|DIRTY_TRACKING (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c): every page is reported.
// - BM_HarvestFloor: a linear scan of as many 8-byte PTEs in a std::vector (1 % with DBM and S2AP[1] set, the
//   same pattern), clearing a bitmap and setting a bit for each dirty one: what any walk of 4 KiB leaves costs.
// Counters: pages, dirty_pages (per round, checked), bitmap_bytes_per_GiB (DirtyTracker::bitmap_bytes(1 GiB)).
//
// vSMMU state, 64 devices (bench/profiles/sixty-four-devices.json: nic0-nic63 behind smmu0, kernel
// "nested-dirty"): a GuestHarness with all 64 attached (vSIDs 0x100-0x13f, one stage-1 address space), so every
// stream translates.
// - BM_SaveState: VirtualSmmu::save_state(); counter state_bytes.
// - BM_Restore: VirtualSmmu::restore() of that state on a second simulated host whose guest RAM holds a copy of
//   the source's (made once, untimed), as a VMM does after copying RAM; destroying it is untimed. Checked once:
//   every stream translates on the destination.
// - BM_CreateFresh: the baseline, VirtualSmmu::create() of the same 64-device vSMMU on the second host.
//
// The RAM of the harvest benchmarks is VSMMU_BENCH_RAM_GIB GiB (16 unless set; the bench-smoke ctest sets 1).
#include <sys/mman.h>
#include <unistd.h>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/bench_support.hpp"
#include "host/handles.hpp"
#include "host/sim/profile.hpp"
#include "host/sim/sim_host.hpp"
#include "nesting/dirty_tracking.hpp"
#include "nesting/guest_memory.hpp"
#include "nesting/virtual_smmu.hpp"
#include "smmu/translation_table.hpp"
#include "testing/guest_harness.hpp"

namespace {

using namespace vsmmu;
using namespace vsmmu::nesting;
using namespace vsmmu::testkit;
using bench::must;

constexpr std::uint64_t kGiB = 1ULL << 30;
constexpr std::uint64_t kPage = DirtyTracker::kPageSize;
constexpr std::uint64_t kDirtyStride = 100;            // 1 % of the pages dirty per round
constexpr std::uint64_t kRamGpa = 0x1'0000'0000ULL;    // 4 GiB: clear of the SMMU's MSI window
constexpr std::uint64_t kHarnessRam = 64ULL << 20;     // the harness's tables and queues, at the region's start
constexpr std::uint16_t kAsid = 1;
constexpr std::uint32_t kNic0 = 0x10;
constexpr unsigned kDevices = 64;
constexpr std::uint32_t kFirstVsid = 0x100;

std::uint64_t ram_bytes() {
  const char* env = std::getenv("VSMMU_BENCH_RAM_GIB");
  const std::uint64_t gib = env ? std::strtoull(env, nullptr, 10) : 16;
  if (gib == 0 || gib > 64) throw std::invalid_argument("VSMMU_BENCH_RAM_GIB must be 1-64");
  return gib * kGiB;
}

// The pages a round dirties: every kDirtyStride-th, from one of four offsets in turn, so the benchmark touches
// (and the memfd holds) 4 % of the region however many rounds it runs.
std::uint64_t dirty_offset(std::uint64_t round) {
  constexpr std::array<std::uint64_t, 4> kOffsets{0, 37, 74, 11};
  return kOffsets[round % kOffsets.size()];
}

// ---- 16 GiB of guest RAM, its stage 2 in 4 KiB pages, nic0 DMAing into it

struct RamVm {
  std::uint64_t size = 0;
  std::unique_ptr<host::sim::SimHost> host;
  host::UniqueFd memfd;
  void* addr = nullptr;
  std::unique_ptr<GuestMemory> memory;
  std::unique_ptr<GuestHarness> guest;
  std::vector<std::byte> bitmap;
  std::uint64_t round = 0;

  explicit RamVm(const char* kernel) : size(ram_bytes()) {
    host = must(host::sim::SimHost::create(must(host::sim::embedded_kernel_profile(kernel)),
                                           must(host::sim::embedded_hardware_profile("default"))));
    memfd = host::UniqueFd(::memfd_create("vsmmu-migration-bench", MFD_CLOEXEC));
    if (!memfd || ::ftruncate(memfd.get(), static_cast<off_t>(size)) != 0) throw std::runtime_error("memfd");
    addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd.get(), 0);
    if (addr == MAP_FAILED) throw std::runtime_error("mmap of the guest RAM memfd");
    // GuestMemory has no IOAS option of its own: the IOAS it made gets IOMMU_OPTION_HUGE_PAGES off (the sim
    // host's control) before the region is added, so every stage-2 leaf is a 4 KiB page.
    memory = must(GuestMemory::map(*host, {}));
    must(host->ioas_huge_pages(memory->ioas(), false));
    must(memory->add_region({kRamGpa, size, memfd.get(), 0, static_cast<std::byte*>(addr)}));
    GuestHarnessConfig c;
    c.devices = {{"nic0", -1, kNic0}};
    guest = must(GuestHarness::create_in(*memory, kRamGpa, kHarnessRam, c));
    must(guest->map(kAsid, kRamGpa, kRamGpa, size));  // VA = GPA, 1 GiB blocks
    must(guest->attach(kNic0, kAsid));
    bitmap.resize(DirtyTracker::bitmap_bytes(size));
    must(memory->dirty().start());
  }
  ~RamVm() {
    if (memory && memory->dirty().tracking()) (void)memory->dirty().stop();
    guest.reset();
    memory.reset();
    if (addr && addr != MAP_FAILED) ::munmap(addr, size);
  }
  RamVm(const RamVm&) = delete;
  RamVm& operator=(const RamVm&) = delete;

  std::uint64_t pages() const { return size / kPage; }
  // nic0 writes 8 bytes into every kDirtyStride-th page; returns how many pages it wrote.
  std::uint64_t dirty_round() {
    const std::uint64_t off = dirty_offset(round++);
    const std::array<std::byte, 8> data{std::byte{0x5a}};
    std::uint64_t n = 0;
    for (std::uint64_t page = off; page < pages(); page += kDirtyStride, ++n) {
      auto r = must(host->dma_write("nic0.dma", kRamGpa + page * kPage, data));
      if (!r.ok()) throw std::runtime_error(fmt::format("nic0's DMA to page {:#x} faulted", page));
    }
    return n;
  }
  DirtyHarvest harvest() { return must(memory->dirty().harvest(kRamGpa, bitmap, 0)); }
};

RamVm& ram_vm(const char* kernel) {
  static std::unique_ptr<RamVm> hardware, conservative;
  auto& vm = std::string(kernel) == "upstream" ? conservative : hardware;
  if (!vm) vm = std::make_unique<RamVm>(kernel);
  return *vm;
}

void harvest_counters(benchmark::State& state, std::uint64_t pages, std::uint64_t dirty) {
  state.counters["pages"] = static_cast<double>(pages);
  state.counters["dirty_pages"] = static_cast<double>(dirty);
  state.counters["bitmap_bytes_per_GiB"] = static_cast<double>(DirtyTracker::bitmap_bytes(kGiB));
}

void run_harvest(benchmark::State& state, const char* kernel, bool expect_conservative) {
  RamVm& vm = ram_vm(kernel);
  if (vm.memory->dirty().status().mode != (expect_conservative ? DirtyMode::conservative : DirtyMode::hardware)) {
    state.SkipWithError("the dirty tracker is not in the expected mode");
    return;
  }
  std::uint64_t dirty = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::uint64_t written = vm.dirty_round();
    state.ResumeTiming();
    const DirtyHarvest h = vm.harvest();
    const std::uint64_t expected = expect_conservative ? vm.pages() : written;
    if (h.dirty != expected || h.conservative != expect_conservative) {
      state.SkipWithError(fmt::format("harvested {} dirty pages (conservative {}), expected {}", h.dirty,
                                      h.conservative, expected).c_str());
      break;
    }
    dirty = h.dirty;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * vm.size));
  harvest_counters(state, vm.pages(), dirty);
}

void BM_HarvestHardware(benchmark::State& state) { run_harvest(state, "nested-dirty", false); }
void BM_HarvestConservative(benchmark::State& state) { run_harvest(state, "upstream", true); }

void BM_HarvestFloor(benchmark::State& state) {
  using smmu::Descriptor;
  const std::uint64_t pages = ram_bytes() / kPage;
  // A valid 4 KiB page descriptor (bits[1:0] = 0b11) with DBM; dirty ones also have S2AP[1].
  const std::uint64_t clean = Descriptor::DBM.insert(0b11, true);
  const std::uint64_t mask = Descriptor::S2AP_W.insert(Descriptor::DBM.insert(0, true), true);
  std::vector<std::uint64_t> ptes(pages);
  std::vector<std::uint64_t> words(DirtyTracker::bitmap_bytes(pages * kPage) / 8);
  std::uint64_t round = 0, dirty = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::uint64_t off = dirty_offset(round++);
    for (std::uint64_t i = 0; i < pages; ++i) ptes[i] = clean | (i * kPage);
    for (std::uint64_t i = off; i < pages; i += kDirtyStride) ptes[i] |= mask;
    state.ResumeTiming();
    std::memset(words.data(), 0, words.size() * 8);
    for (std::uint64_t i = 0; i < pages; ++i)
      if ((ptes[i] & mask) == mask) words[i / 64] |= 1ULL << (i % 64);
    benchmark::DoNotOptimize(words.data());
    benchmark::ClobberMemory();
    state.PauseTiming();
    dirty = 0;
    for (std::uint64_t w : words) dirty += static_cast<std::uint64_t>(__builtin_popcountll(w));
    state.ResumeTiming();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * pages * kPage));
  harvest_counters(state, pages, dirty);
}

// Each round's DMA (4 Mi pages / 100 of them) is untimed but not free: a fixed number of rounds per repetition.
BENCHMARK(BM_HarvestFloor)->Iterations(10)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HarvestHardware)->Iterations(10)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HarvestConservative)->Iterations(10)->Unit(benchmark::kMillisecond);

// ---- the vSMMU's state with 64 devices

std::vector<DeviceSpec> sixty_four() {
  std::vector<DeviceSpec> d;
  for (unsigned i = 0; i < kDevices; ++i) d.push_back({fmt::format("nic{}", i), -1, kFirstVsid + i});
  return d;
}

std::unique_ptr<host::sim::SimHost> sixty_four_host() {
  return must(host::sim::SimHost::create(must(host::sim::embedded_kernel_profile("nested-dirty")),
                                         must(host::sim::load_hardware_profile(MIGRATION_BENCH_HARDWARE))));
}

struct Migration {
  GuestHarnessConfig config;
  std::unique_ptr<host::sim::SimHost> source_host;
  std::unique_ptr<GuestHarness> source;
  std::vector<std::byte> state;
  std::unique_ptr<host::sim::SimHost> dest_host;
  std::unique_ptr<GuestMemory> dest_memory;

  Migration() {
    config.devices = sixty_four();
    source_host = sixty_four_host();
    source = must(GuestHarness::create(*source_host, config));
    for (unsigned i = 0; i < kDevices; ++i) must(source->attach(kFirstVsid + i, kAsid));
    state = must(source->vsmmu().save_state());
    // The destination's guest RAM: a copy of the source's, as the VMM leaves it before loading the state.
    dest_host = sixty_four_host();
    const std::array layout{GuestRamLayout{config.ram_gpa, config.ram_size}};
    dest_memory = must(GuestMemory::allocate(*dest_host, layout));
    const auto from = source->bytes(config.ram_gpa, config.ram_size);
    std::byte* to = dest_memory->host_pointer(config.ram_gpa, config.ram_size);
    if (from.empty() || !to) throw std::runtime_error("guest RAM is not one region");
    std::memcpy(to, from.data(), from.size());
  }
};

Migration& migration() {
  static std::unique_ptr<Migration> m;
  if (!m) m = std::make_unique<Migration>();
  return *m;
}

void BM_SaveState(benchmark::State& state) {
  Migration& m = migration();
  std::size_t bytes = 0;
  for (auto _ : state) {
    auto s = must(m.source->vsmmu().save_state());
    bytes = s.size();
    benchmark::DoNotOptimize(s.data());
  }
  state.counters["state_bytes"] = static_cast<double>(bytes);
  state.counters["devices"] = kDevices;
}

void BM_Restore(benchmark::State& state) {
  Migration& m = migration();
  bool checked = false;
  for (auto _ : state) {
    auto v = VirtualSmmu::restore(*m.dest_memory, m.config.vsmmu, sixty_four(), m.state);
    state.PauseTiming();
    if (!v) {
      state.SkipWithError(v.error().to_string().c_str());
      break;
    }
    if (!checked) {
      for (unsigned i = 0; i < kDevices; ++i)
        if (must((*v)->stream_status(kFirstVsid + i)).state != StreamState::translate) {
          state.SkipWithError(fmt::format("vSID {:#x} does not translate after the restore", kFirstVsid + i).c_str());
          return;
        }
      checked = true;
    }
    v->reset();
    state.ResumeTiming();
  }
  state.counters["state_bytes"] = static_cast<double>(m.state.size());
  state.counters["devices"] = kDevices;
}

void BM_CreateFresh(benchmark::State& state) {
  Migration& m = migration();
  for (auto _ : state) {
    auto v = VirtualSmmu::create(*m.dest_memory, m.config.vsmmu, sixty_four());
    state.PauseTiming();
    if (!v) {
      state.SkipWithError(v.error().to_string().c_str());
      break;
    }
    v->reset();
    state.ResumeTiming();
  }
  state.counters["devices"] = kDevices;
}

BENCHMARK(BM_SaveState)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CreateFresh)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Restore)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
